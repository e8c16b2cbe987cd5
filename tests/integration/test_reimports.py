"""Every import of a byte-identical file already imported is a no-op that says so (exit 0); a
different file reusing an id already stored is still refused whole. And `instructions sign`
says what it signed and as whom, and its refusals say nothing was signed. Real ledgers (SQLite
and PostgreSQL), the CLI; instructions signed and verified against a real Anvil."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from eth_account import Account

from chains.evm.devnet import Devnet
from tests.conftest import CliResult, Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address
from tests.integration.test_surveillance_runs import OUTSIDER, Desk

TABLES = ("account", "book_entry", "instruction", "equity_balance", "offchain_balance", "import_batch")


def _counts(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        counts = {t: int(conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}
    engine.dispose()
    return counts


def _ready(cli: Any, scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_wallet("w1", "eth", new_address())
    config = scenario.write()
    assert cli("--config", str(config), "init").code == 0
    return config


@pytest.mark.parametrize(
    ("command", "name", "text", "clash"),
    [
        ("accounts", "accounts.csv", f"{ACCOUNTS_HEADER}\nC1,futures,One\nH1,house,House\n", None),
        (
            "books",
            "books.csv",
            f"{BOOKS_HEADER}\nE1,2026-11-24,C1,w1,USDC,5,deposit,\n",
            f"{BOOKS_HEADER}\nE1,2026-11-25,C1,w1,USDC,6,deposit,a different row\n",
        ),
        (
            "equity",
            "equity.csv",
            "date,account,cash_usd,open_trade_equity_usd\n2026-11-24,C1,100.00,0\n",
            "date,account,cash_usd,open_trade_equity_usd\n2026-11-24,C1,200.00,0\n",
        ),
        (
            "offchain",
            "offchain.csv",
            "date,class,depository,amount_usd\n2026-11-24,futures,Bank A,100.00\n",
            "date,class,depository,amount_usd\n2026-11-24,futures,Bank A,250.00\n",
        ),
    ],
)
def test_the_same_file_twice_is_a_no_op_and_a_clashing_one_is_refused(
    cli: Any, scenario: Scenario, command: str, name: str, text: str, clash: str | None
) -> None:
    config = _ready(cli, scenario)
    if command != "accounts":
        (scenario.folder / "acc.csv").write_text(f"{ACCOUNTS_HEADER}\nC1,futures,One\n")
        assert cli("--config", str(config), "accounts", "import", str(scenario.folder / "acc.csv")).code == 0
    path = scenario.folder / name
    path.write_text(text)
    first = cli("--config", str(config), command, "import", str(path), "--json")
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["already_imported"] is False
    before = _counts(scenario.db_url)

    again: CliResult = cli("--config", str(config), command, "import", str(path))
    as_json: CliResult = cli("--config", str(config), command, "import", str(path), "--json")

    assert again.code == 0 and as_json.code == 0, (again.stderr, as_json.stderr)
    assert f"{path}: already imported on " in again.stderr and "nothing to do" in again.stderr
    assert json.loads(as_json.stdout)["already_imported"] is True
    assert _counts(scenario.db_url) == before, "nothing was added, not even an import record"
    if clash is not None:
        other = scenario.folder / f"other-{name}"
        other.write_text(clash)
        refused = cli("--config", str(config), command, "import", str(other))
        assert refused.code == 2 and "rejected, nothing was imported" in refused.stderr, refused.stderr
        assert _counts(scenario.db_url) == before


def test_the_same_accounts_file_after_a_rename_renames_back(cli: Any, scenario: Scenario) -> None:
    """Accounts are upserted: the same bytes again are a no-op only when they change nothing."""
    config = _ready(cli, scenario)
    original = scenario.write_csv("a.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    renamed = scenario.write_csv("b.csv", ACCOUNTS_HEADER, ["C1,futures,Renamed"])
    for path in (original, renamed):
        assert cli("--config", str(config), "accounts", "import", str(path)).code == 0
    back = cli("--config", str(config), "accounts", "import", str(original), "--json")
    assert back.code == 0 and json.loads(back.stdout)["updated"] == 1
    assert json.loads(back.stdout)["already_imported"] is False
    listed = json.loads(cli("--config", str(config), "accounts", "list", "--json").stdout)["accounts"]
    assert listed == [{"account": "C1", "class": "futures", "name": "One"}]


def test_instructions_sign_says_what_it_signed_and_import_twice_is_a_no_op(
    cli: Any, devnet: Devnet, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = Desk(cli, devnet, scenario)
    path = scenario.folder / "instr.jsonl"
    lines = [desk.instruction("wd-1", OUTSIDER, 1_000_000), desk.instruction("wd-2", OUTSIDER, 2_000_000)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    signer = desk.approvers[0]
    monkeypatch.setenv("SIGNER", signer.key.hex())

    signed = cli("--config", str(desk.config), "instructions", "sign", str(path), "--key-env", "SIGNER")

    assert signed.code == 0, signed.stderr
    said = f"{path}: signed 2 instruction(s) as {signer.address} (an approver of seg-1)"
    assert said in " ".join(signed.stderr.split()), signed.stderr
    assert [len(json.loads(line)["signatures"]) for line in signed.stdout.splitlines()] == [1, 1]
    once = scenario.folder / "once.jsonl"
    once.write_text(signed.stdout)
    resigned = cli("--config", str(desk.config), "instructions", "sign", str(once), "--key-env", "SIGNER")
    said = " ".join(resigned.stderr.split())  # wrapped wherever the file's path ends
    assert "signed 0 instruction(s)" in said and "2 already carried its signature" in said
    assert resigned.stdout == signed.stdout

    stranger = Account.create()
    monkeypatch.setenv("STRANGER", stranger.key.hex())
    refused = cli("--config", str(desk.config), "instructions", "sign", str(path), "--key-env", "STRANGER")
    assert refused.code == 2 and refused.stdout == ""
    assert "rejected, nothing was signed" in refused.stderr and "nothing was imported" not in refused.stderr
    assert f"{stranger.address} is not an approver of wallets.seg-1" in refused.stderr
    missing = cli("--config", str(desk.config), "instructions", "sign", str(scenario.folder / "no.jsonl"),
                  "--key-env", "SIGNER")
    assert missing.code == 2 and "nothing was signed" in missing.stderr

    full = desk.sign(lines, desk.approvers[:2], "full.jsonl")
    first = desk.import_(full)
    assert first.code == 0 and json.loads(first.stdout)["imported"] == 2
    before = _counts(scenario.db_url)
    again = desk.import_(full)
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout) | {"file": None, "sha256": None} == {
        "file": None, "sha256": None, "imported": 0, "already_imported": True
    }
    assert _counts(scenario.db_url) == before
    human = cli("--config", str(desk.config), "instructions", "import", str(full))
    assert human.code == 0 and "already imported on" in human.stderr
    # A different file that reuses an id is still refused whole.
    reused = desk.sign([lines[0], desk.instruction("wd-3", OUTSIDER, 3)], desk.approvers[:2], "reuse.jsonl")
    clash = desk.import_(reused)
    assert clash.code == 2 and "'wd-1' is already in the ledger" in clash.stderr
    assert _counts(scenario.db_url) == before
