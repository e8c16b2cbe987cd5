"""`books draft`: the gas a custody wallet paid, and the movements no entry names, drafted as a
books CSV that `books import` takes as it is — after which the run's balance_mismatch on the
native coin is gone. And the views of the books: `books list`, `books balances`,
`accounts list`. Real Anvil, real ledgers (SQLite and PostgreSQL), the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from chains.evm.devnet import Devnet
from tests.conftest import CliResult, Scenario
from tests.integration.helpers import position
from tests.integration.test_surveillance_runs import OUTSIDER, Desk

COLUMNS = ["entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo", "tx_hash"]


def _cli(desk: Desk, *args: str) -> CliResult:
    result: CliResult = desk.cli("--config", str(desk.config), *args)
    return result


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _mismatches(doc: dict[str, Any]) -> dict[str, str]:
    return {b["asset"]: b["amount"] for b in doc["breaks"] if b["kind"] == "balance_mismatch" and b["status"] == "open"}


def test_the_fee_a_wallet_paid_is_drafted_imported_and_the_mismatch_goes(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    desk = Desk(cli, devnet, scenario)
    signed = desk.sign([desk.instruction("wd-1", OUTSIDER, 250_000_000)], desk.approvers[:2])
    assert desk.import_(signed).code == 0
    tx = desk.pay(OUTSIDER, 250_000_000)  # authorized; seg-1 pays the gas itself
    receipt = devnet.w3.eth.get_transaction_receipt(tx)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert fee > 0
    code, doc = desk.run()
    assert code == 1 and _mismatches(doc)["ETH"] == str(-fee), doc["breaks"]
    assert not [b for b in doc["breaks"] if b["kind"] == "unauthorized_transfer"], "the outflow was signed for"

    # seg-1's entries name customer C1 only: gas is the firm's, so the draft asks which account.
    draft = scenario.folder / "draft.csv"
    refused = _cli(desk, "books", "draft", "--out", str(draft))
    assert refused.code == 2 and not draft.exists()
    assert "seg-1 ETH (fees): no house account books into this wallet" in refused.stderr
    assert "--account" in refused.stderr
    unknown = _cli(desk, "books", "draft", "--out", str(draft), "--account", "H9")
    assert unknown.code == 2 and "'H9' is not an account of the ledger" in unknown.stderr

    made = _cli(desk, "books", "draft", "--out", str(draft), "--account", "H1", "--json")
    assert made.code == 0, made.stderr
    assert json.loads(made.stdout) == {
        "file": str(draft), "entries": 1, "fees": 1, "unbooked": 0, "already_booked": 0, "outside_configuration": 0
    }
    [row] = _rows(draft)
    assert list(row) == COLUMNS
    whole, frac = divmod(fee, 10**18)
    amount = f"-{whole}.{frac:018d}".rstrip("0").rstrip(".")
    assert row == {
        "entry_id": f"fee-eth-{tx}",
        "date": row["date"],
        "account": "H1",
        "wallet": "seg-1",
        "asset": "ETH",
        "amount": amount,
        "kind": "adjustment",
        "memo": f"gas fee paid by seg-1 for tx {tx} (block {receipt['blockNumber']})",
        "tx_hash": tx,
    }
    first = draft.read_bytes()
    again = _cli(desk, "books", "draft", "--out", str(draft), "--account", "H1")
    assert again.code == 2 and "already exists" in again.stderr and draft.read_bytes() == first
    assert _cli(desk, "books", "draft", "--out", str(draft), "--account", "H1", "--force").code == 0
    assert draft.read_bytes() == first, "made again, the same entries and ids"

    imported = _cli(desk, "books", "import", str(draft))
    assert imported.code == 0, imported.stderr
    code, doc = desk.run()
    assert "ETH" not in _mismatches(doc), doc["breaks"]
    assert position(doc, "seg-1", "ETH")["difference"] == "0"
    assert [b["status"] for b in doc["breaks"] if b["kind"] == "balance_mismatch" and b["asset"] == "ETH"] == [
        "resolved"
    ]
    # Drafting again: the fee is booked, nothing to draft; importing the draft again is a no-op.
    stdout = _cli(desk, "books", "draft", "--out", "-", "--account", "H1")
    assert stdout.code == 0 and stdout.stdout == ",".join(COLUMNS) + "\n", stdout.stdout
    assert "1 already booked, left out" in stdout.stderr
    twice = _cli(desk, "books", "import", str(draft), "--json")
    assert twice.code == 0 and json.loads(twice.stdout)["already_imported"] is True


def test_unbooked_movements_are_drafted_to_the_one_account_booking_them(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    desk = Desk(cli, devnet, scenario)
    signed = desk.sign([desk.instruction("wd-1", OUTSIDER, 250_000_000)], desk.approvers[:2])
    assert desk.import_(signed).code == 0
    tx = desk.pay(OUTSIDER, 250_000_000)
    devnet.mint(desk.custody.usdc, desk.key.address, 5_000_000)  # an inflow no entry names
    devnet.mine()
    code, doc = desk.run()
    assert code == 1 and set(_mismatches(doc)) == {"USDC", "ETH"}

    draft = scenario.folder / "unbooked.csv"
    made = _cli(desk, "books", "draft", "--unbooked", "--out", str(draft))
    assert made.code == 0, made.stderr
    rows = _rows(draft)
    assert [(r["account"], r["wallet"], r["asset"], r["amount"], r["kind"]) for r in rows] == [
        ("C1", "seg-1", "USDC", "-250", "withdrawal"),
        ("C1", "seg-1", "USDC", "5", "deposit"),
    ], rows
    assert rows[0]["entry_id"].startswith(f"obs-eth-{tx}-log:") and rows[0]["tx_hash"] == tx
    assert "withdrawal to 0x000000000000000000000000000000000000dEaD" in rows[0]["memo"]
    assert _cli(desk, "books", "import", str(draft)).code == 0
    code, doc = desk.run()
    assert set(_mismatches(doc)) == {"ETH"}, "the USDC movements are booked; the fee is not yet"
    both = _cli(desk, "books", "draft", "--unbooked", "--fees", "--account", "H1", "--out", "-")
    assert both.code == 0, both.stderr
    [fee] = list(csv.DictReader(io.StringIO(both.stdout)))
    assert fee["entry_id"] == f"fee-eth-{tx}" and fee["account"] == "H1"
    since = _cli(desk, "books", "draft", "--fees", "--account", "H1", "--since", "2999-01-01", "--out", "-")
    assert since.code == 0 and since.stdout == ",".join(COLUMNS) + "\n"
    bad = _cli(desk, "books", "draft", "--since", "yesterday", "--out", "-")
    assert bad.code == 2 and "--since" in bad.stderr and "ISO date" in bad.stderr


def test_books_list_balances_and_accounts_list(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    desk = Desk(cli, devnet, scenario)
    extra = scenario.write_csv(
        "extra.csv",
        "entry_id,date,account,wallet,asset,amount,kind,memo,tx_hash",
        ["X1,2026-12-01,H1,house-1,USDC,12.5,adjustment,a wallet about to leave the configuration,"],
    )
    assert _cli(desk, "books", "import", str(extra)).code == 0
    del scenario.wallets["house-1"]  # its entries stay in the books; no run compares them now
    scenario.write()

    listed = json.loads(_cli(desk, "books", "list", "--json").stdout)
    assert listed["total"] == 5 and [e["entry_id"] for e in listed["entries"]][0] == "X1", "newest first"
    x1 = listed["entries"][0]
    assert x1 == {
        "entry_id": "X1", "date": "2026-12-01", "account": "H1", "wallet": "house-1", "asset": "USDC",
        "amount": "12500000", "amount_display": "12.500000", "kind": "adjustment",
        "memo": "a wallet about to leave the configuration", "tx_hash": None,
    }
    only = json.loads(_cli(desk, "books", "list", "--wallet", "seg-1", "--asset", "ETH", "--json").stdout)
    assert [(e["wallet"], e["asset"], e["amount_display"]) for e in only["entries"]] == [
        ("seg-1", "ETH", "10.000000000000000000")
    ]
    limited = json.loads(_cli(desk, "books", "list", "--limit", "2", "--json").stdout)
    assert len(limited["entries"]) == 2 and limited["total"] == 5
    human = _cli(desk, "books", "list", "--limit", "2")
    assert "2 of 5 entries shown" in human.stderr and "12.500000 USDC" in human.stdout

    balances = json.loads(_cli(desk, "books", "balances", "--json").stdout)["balances"]
    by_key = {(b["wallet"], b["asset"]): b for b in balances}
    assert by_key[("seg-1", "USDC")] == {
        "wallet": "seg-1", "chain": "eth", "asset": "USDC", "book": "1000000500000",
        "book_display": "1000000.500000", "reconciled": True,
    }
    assert by_key[("house-1", "USDC")]["reconciled"] is False and by_key[("house-1", "USDC")]["chain"] is None
    code, doc = desk.run()
    for b in balances:  # the same book balances the run compares
        if b["reconciled"]:
            assert position(doc, b["wallet"], b["asset"])["book"] == b["book"]
    assert "NO: not in the configuration" in _cli(desk, "books", "balances").stdout

    accounts = json.loads(_cli(desk, "accounts", "list", "--json").stdout)
    assert accounts == {
        "accounts": [
            {"account": "C1", "class": "futures", "name": "Customer One"},
            {"account": "H1", "class": "house", "name": "House"},
        ]
    }
    assert "Customer One" in _cli(desk, "accounts", "list").stdout
