"""Segregation end to end: a real Anvil with an on-chain price feed, a real ledger (SQLite and
PostgreSQL), the CLI. Expected figures are computed by hand in the comments."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from web3.contract import Contract

from chains.evm.devnet import AnvilNode, Devnet
from reconciler.app.segregation_documents import statement_doc
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.stored import inputs_from_json
from reconciler.inputs.config import load_settings
from reconciler.ledger import segregation_store as store
from reconciler.ledger.store import Ledger
from tests.conftest import CliResult, Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address

EQUITY_HEADER = "date,account,cash_usd,open_trade_equity_usd"
OFFCHAIN_HEADER = "date,class,depository,amount_usd"
USDC = 10**6


def _send(net: Devnet, fn: Any) -> None:
    receipt = net.w3.eth.wait_for_transaction_receipt(fn.transact({"from": net.deployer}), timeout=30)
    assert receipt["status"] == 1


def _statement(cli: Any, config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result: CliResult = cli("--config", str(config), "segregation", "statement", "--json", *args)
    doc = json.loads(result.stdout)  # stdout carries exactly one JSON document
    assert doc["exit_code"] == result.code, result.stderr
    return result.code, doc, result.stderr


def _futures(doc: dict[str, Any]) -> dict[str, Any]:
    [st] = [s for s in doc["statements"] if s["class"] == "futures"]
    return st


def _segregation_scenario(
    net: Devnet, scenario: Scenario, url: str, dco: list[str]
) -> tuple[Path, Contract, Contract, dict[str, str]]:
    """USDC (a token) priced by an on-chain feed at 1.00000000; seg-1 (futures) holds 1,050,000
    USDC; customer C1 is owed 1,000,000.00 in cash by the back office; target 20,000.00."""
    token = net.deploy_token("Test USD", "USDC", 6)
    feed = net.deploy("PriceFeed", 8, "USDC / USD", 100_000_000)
    wallets = {"seg-1": new_address(), "house-1": new_address()}
    scenario.add_chain("eth", url, 31337)
    scenario.add_token("USDC", "eth", token.address, 6, price_feed=feed.address, dco_haircuts=dco)
    scenario.add_wallet("seg-1", "eth", wallets["seg-1"], "futures")
    scenario.add_wallet("house-1", "eth", wallets["house-1"], "house")
    scenario.extra = '\n[segregation]\ntimezone = "America/Chicago"\n\n[segregation.targets]\nfutures = "20000"\n'
    net.mint(token, wallets["seg-1"], 1_050_000 * USDC)
    net.mine()
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,Customer One", "H1,house,House"])
    scenario.write_csv("equity.csv", EQUITY_HEADER, ["2026-01-02,C1,1000000.00,0"])
    return scenario.write(), token, feed, wallets


def _load(cli: Any, config: Path) -> None:
    for args in (
        ("init",),
        ("accounts", "import", str(config.parent / "accounts.csv")),
        ("equity", "import", str(config.parent / "equity.csv")),
    ):
        result: CliResult = cli("--config", str(config), *args)
        assert result.code == 0, result.stderr


# ----------------------------------------------------------------------------- de-peg


def test_a_stablecoin_de_peg_on_the_feed_turns_the_excess_into_a_deficiency(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    config, _token, feed, _ = _segregation_scenario(devnet, scenario, devnet.url, ["0.02"])
    _load(cli, config)

    code, doc, _ = _statement(cli, config)
    st = _futures(doc)
    # 1,050,000 USDC x 1.00000000 = 1,050,000.00; less 2% = 1,029,000.00; required 1,000,000.00
    assert code == 0, doc
    assert doc["status"] == "complete" and doc["breaks"] == []
    assert (st["funds_in_segregation"], st["amount_required"], st["excess"]) == (
        "1029000.00",
        "1000000.00",
        "29000.00",
    )
    assert st["excess_over_target"] == "9000.00"  # 29,000 - 20,000
    assert st["holdings"][0]["price_usd"] == "1.00000000" and st["holdings"][0]["price_source"].startswith("feed ")
    assert doc["chains"]["eth"]["block_number"] == devnet.head()
    assert doc["chains"]["eth"]["block_hash"] == devnet.w3.eth.get_block(devnet.head())["hash"].to_0x_hex()

    _send(devnet, feed.functions.setAnswer(97_000_000))  # USDC at 0.97
    code, doc, _ = _statement(cli, config)
    st = _futures(doc)
    # 1,050,000 x 0.97 = 1,018,500.00; less 2% = 998,130.00; excess 998,130.00 - 1,000,000.00 = -1,870.00
    assert code == 1
    assert (st["funds_in_segregation"], st["excess"], st["excess_over_target"]) == (
        "998130.00",
        "-1870.00",
        "-21870.00",
    )
    [brk] = doc["breaks"]
    assert (brk["kind"], brk["severity"], brk["status"]) == ("segregation_deficit", "critical", "open")
    assert (brk["chain"], brk["wallet"], brk["asset"]) == ("*", "futures", None)
    assert "deficiency of 1,870.00 USD" in brk["detail"]
    deficit_run = doc["run_id"]

    # the statement is a run, and breaks follow the usual lifecycle
    runs = json.loads(cli("--config", str(config), "runs", "list", "--json").stdout)["runs"]
    assert runs[0]["id"] == deficit_run and runs[0]["job"] == "segregation_statement"
    listed = json.loads(cli("--config", str(config), "breaks", "list", "--json").stdout)["breaks"]
    assert [b["kind"] for b in listed] == ["segregation_deficit"]

    # seen again while it lasts; resolved when the peg comes back
    code, doc, _ = _statement(cli, config)
    assert code == 1 and doc["breaks"][0]["times_seen"] == 2
    _send(devnet, feed.functions.setAnswer(100_000_000))
    code, doc, _ = _statement(cli, config)
    assert code == 0
    assert [(b["kind"], b["status"]) for b in doc["breaks"]] == [("segregation_deficit", "resolved")]

    # each statement is stored with its inputs and recomputes to the cent
    ledger = Ledger(load_settings(str(config)).database_url)
    try:
        stored = store.get_statement(ledger, deficit_run)
    finally:
        ledger.close()
    again = [statement_doc(s) for s in compute_statements(inputs_from_json(stored.inputs))]
    assert again == [s.document for s in stored.statements]
    [futures_row] = [s for s in stored.statements if s.seg_class.value == "futures"]
    assert (futures_row.excess_cents, futures_row.funds_in_segregation_cents) == (-187_000, 99_813_000)
    assert stored.inputs["feeds"]["USDC"]["answer"]["answer"] == "97000000"


def test_a_raised_haircut_drops_the_excess_below_target(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    config, _, _, _ = _segregation_scenario(devnet, scenario, devnet.url, ["0.02"])
    _load(cli, config)
    assert _statement(cli, config)[0] == 0

    scenario.assets["USDC"]["dco_haircuts"] = ["0.02", "0.03"]  # a second clearing house, at 3%
    config = scenario.write()
    code, doc, _ = _statement(cli, config, "--class", "futures")
    st = _futures(doc)
    # 1,050,000 x 0.97 = 1,018,500.00; excess 18,500.00 < target 20,000.00 (over target -1,500.00)
    assert code == 1
    assert [s["class"] for s in doc["statements"]] == ["futures"]
    assert (st["holdings"][0]["haircut"], st["excess"], st["excess_over_target"]) == ("0.03", "18500.00", "-1500.00")
    [brk] = doc["breaks"]
    assert (brk["kind"], brk["severity"], brk["wallet"]) == ("residual_interest_below_target", "error", "futures")
    assert "below the targeted residual interest of 20,000.00 USD by 1,500.00 USD" in brk["detail"]


def test_a_stale_feed_leaves_the_statement_incomplete_and_exits_2(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    config, _, feed, _ = _segregation_scenario(devnet, scenario, devnet.url, ["0.02"])
    _load(cli, config)
    head_time = int(devnet.w3.eth.get_block("latest")["timestamp"])
    _send(devnet, feed.functions.setRound(100_000_000, head_time - 2 * 86_400))  # 2 days old, max age 24h

    code, doc, stderr = _statement(cli, config)

    assert code == 2 and doc["status"] == "incomplete"
    st = _futures(doc)
    assert st["complete"] is False and any("stale" in p and "price_max_age is 24h" in p for p in st["problems"])
    assert st["funds_in_segregation"] is None and st["excess"] is None and st["holdings"][0]["value"] is None
    [price] = [p for p in doc["prices"] if p["asset"] == "USDC"]
    assert price["price_usd"] is None and "stale" in price["problem"]
    assert "statement incomplete" in stderr and "stale" in stderr
    # an incomplete statement gives no all-clear and no deficit either
    assert doc["breaks"] == []


def test_house_tokens_and_customer_deposits_in_the_wrong_wallets(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    fund = devnet.deploy_token("Tokenized MMF", "TMMF", 18)
    config, token, _, wallets = _segregation_scenario(devnet, scenario, devnet.url, ["0.02"])
    scenario.add_token("TMMF", "eth", fund.address, 18, kind="mmf", price_usd="1.00", dco_haircuts=["0.05"])
    config = scenario.write()
    devnet.mint(fund, wallets["seg-1"], 10 * 10**18)
    devnet.mint(token, wallets["house-1"], 5 * USDC)
    devnet.mine()
    scenario.write_csv(
        "books.csv",
        BOOKS_HEADER,
        [
            "E1,2026-11-24,H1,seg-1,USDC,20000,deposit,residual interest",  # allowed
            "E2,2026-11-24,H1,seg-1,TMMF,10,deposit,firm's own fund shares",  # not residual interest
            "E3,2026-11-24,C1,house-1,USDC,5,deposit,customer deposit to the wrong wallet",
        ],
    )
    _load(cli, config)
    assert cli("--config", str(config), "books", "import", str(config.parent / "books.csv")).code == 0

    code, doc, _ = _statement(cli, config)

    assert code == 1
    found = {(b["kind"], b["wallet"], b["asset"]): b for b in doc["breaks"]}
    assert set(found) == {("commingling", "seg-1", "TMMF"), ("commingling", "house-1", "USDC")}
    assert found[("commingling", "seg-1", "TMMF")]["amount_display"] == "10.000000000000000000"
    assert found[("commingling", "house-1", "USDC")]["severity"] == "critical"


# ----------------------------------------------------------------------------- output formats


def test_csv_and_table_outputs(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    config, _, _, _ = _segregation_scenario(devnet, scenario, devnet.url, ["0.02"])
    _load(cli, config)
    result = cli("--config", str(config), "segregation", "statement", "--csv", "--class", "futures")
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    totals = {r["line"]: r["amount_usd"] for r in rows if r["line"] not in ("customer", "holding", "offchain")}
    assert totals["funds_in_segregation"] == "1029000.00" and totals["excess"] == "29000.00"
    assert [r["amount_usd"] for r in rows if r["line"] == "customer"] == ["1000000.00"]

    table = cli("--config", str(config), "segregation", "statement", "--class", "futures")
    assert table.code == 0 and "1,029,000.00" in table.stdout and "excess (deficiency)" in table.stdout

    both = cli("--config", str(config), "segregation", "statement", "--csv", "--json")
    assert both.code == 2 and both.stdout == ""


# ----------------------------------------------------------------------------- imports


def test_equity_and_offchain_imports_reject_bad_files_whole(cli: Any, scenario: Scenario) -> None:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_wallet("seg-1", "eth", new_address(), "futures")
    config = scenario.write()
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One", "H1,house,House"])
    assert cli("--config", str(config), "init").code == 0
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0

    bad = scenario.write_csv(
        "equity.csv",
        EQUITY_HEADER,
        [
            "2026-11-24,C1,100.00,0",
            "2026-11-24,C1,12.345,0",
            "2026-11-31,C9,1e3,0",
            "2026-11-24,H1,5,0",
            "2026-11-24,C1,1,2",
        ],
    )
    result = cli("--config", str(config), "equity", "import", str(bad))
    assert result.code == 2 and result.stdout == ""
    assert "nothing was imported" in result.stderr
    assert "line 3, column cash_usd: '12.345' has 3 fractional digits; USD amounts have at most 2 (cents)" in (
        result.stderr
    )
    assert "line 4, column date: '2026-11-31'" in result.stderr
    assert "line 4, column account: unknown account 'C9'" in result.stderr
    assert "line 4, column cash_usd: '1e3' is not a plain decimal amount" in result.stderr
    assert "line 5, column account: 'H1' is a house account" in result.stderr
    assert "line 6, column account: 'C1' on 2026-11-24 already appears on line 2" in result.stderr

    good = scenario.write_csv("equity-ok.csv", EQUITY_HEADER, ["2026-11-24,C1,-1250000.5,300.25"])
    assert cli("--config", str(config), "equity", "import", str(good)).code == 0
    same = cli("--config", str(config), "equity", "import", str(good))  # the same bytes: a no-op
    assert same.code == 0 and "already imported on" in same.stderr and "nothing to do" in same.stderr
    other = scenario.write_csv("equity-again.csv", EQUITY_HEADER, ["2026-11-24,C1,-1250000.50,300.25"])
    again = cli("--config", str(config), "equity", "import", str(other))
    assert again.code == 2 and "line 2, column account: 'C1' on 2026-11-24 is already in the ledger" in again.stderr

    offchain = scenario.write_csv(
        "offchain.csv",
        OFFCHAIN_HEADER,
        [
            "2026-11-24,futures,Bank A,20000.00",
            "2026-11-24,house,Bank B,1.00",
            "2026-11-24,futures,Bank A,5",
            "2026-11-24,swaps,,-3",
        ],
    )
    result = cli("--config", str(config), "offchain", "import", str(offchain))
    assert result.code == 2
    assert "line 3, column class: 'house' funds are not segregated" in result.stderr
    assert "line 4, column depository: 'Bank A' for futures on 2026-11-24 already appears on line 2" in result.stderr
    assert "line 5, column class: 'swaps' is not one of futures, cleared_swaps, foreign_futures" in result.stderr
    assert "line 5, column depository: is empty" in result.stderr
    assert "line 5, column amount_usd: '-3' is negative" in result.stderr
    unknown = scenario.write_csv("offchain-bad-header.csv", "date,class,bank,amount_usd", [])
    result = cli("--config", str(config), "offchain", "import", str(unknown))
    assert result.code == 2 and "line 1: missing column(s) depository" in result.stderr

    ok = scenario.write_csv("offchain-ok.csv", OFFCHAIN_HEADER, ["2026-11-24,futures,Bank A,20000.00"])
    imported = cli("--config", str(config), "offchain", "import", str(ok), "--json")
    assert imported.code == 0 and json.loads(imported.stdout)["imported"] == 1
    ledger = Ledger(load_settings(str(config)).database_url)
    try:
        [row] = store.offchain_for(ledger, datetime(2026, 11, 25).date())
        [equity] = store.equity_for(ledger, datetime(2026, 11, 24).date())
    finally:
        ledger.close()
    assert (row.depository, row.amount_cents) == ("Bank A", 2_000_000)
    assert (equity.cash_cents, equity.open_trade_equity_cents) == (-125_000_050, 30_025)


# ----------------------------------------------------------------------------- as of an instant


CHICAGO_OFFSET = 6 * 3600  # CST, November
MONDAY_W47 = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def dated_node() -> Iterator[AnvilNode]:
    """A chain of its own whose clock starts on Monday 2026-11-16 (UTC), so that instants of
    week 2026-W47 lie in its past."""
    node = AnvilNode.start(chain_id=31337, extra_args=["--timestamp", str(MONDAY_W47)])
    yield node
    node.stop()


@pytest.fixture
def dated(dated_node: AnvilNode) -> Iterator[Devnet]:
    net = Devnet(dated_node.url)
    net.install_multicall3()
    snap = net.snapshot()
    yield net
    net.revert(snap)


def _at(net: Devnet, timestamp: int) -> None:
    net.rpc("evm_setNextBlockTimestamp", [timestamp])


def test_as_of_an_instant_between_two_blocks_pins_the_earlier(cli: Any, dated: Devnet, scenario: Scenario) -> None:
    token = dated.deploy_token("Test USD", "USDC", 6)
    seg = new_address()
    scenario.add_chain("eth", dated.url, 31337)
    scenario.add_token("USDC", "eth", token.address, 6, price_usd="1.00", dco_haircuts=["0"])
    scenario.add_wallet("seg-1", "eth", seg, "futures")
    scenario.extra = '\n[segregation]\ntimezone = "America/Chicago"\n'
    config = scenario.write()
    assert cli("--config", str(config), "init").code == 0

    close = int(datetime(2026, 11, 24, 23, 0, tzinfo=UTC).timestamp())  # 17:00 in Chicago
    _at(dated, close - 60)
    dated.mint(token, seg, 100 * USDC)  # block A, at 16:59
    block_a = dated.w3.eth.get_block("latest")
    _at(dated, close + 60)
    dated.mint(token, seg, 5 * USDC)  # block B, at 17:01
    assert dated.w3.eth.get_block("latest")["number"] == block_a["number"] + 1

    code, doc, _ = _statement(cli, config, "--as-of", "2026-11-24T17:00", "--tz", "America/Chicago")

    assert code == 0, doc
    assert doc["as_of"] == "2026-11-24T17:00:00-06:00" and doc["business_date"] == "2026-11-24"
    assert doc["chains"]["eth"]["block_number"] == block_a["number"]
    assert doc["chains"]["eth"]["block_hash"] == block_a["hash"].to_0x_hex()
    assert doc["chains"]["eth"]["block_time"] == "2026-11-24T22:59:00+00:00"
    assert _futures(doc)["holdings"][0]["units"] == str(100 * USDC)  # B's 5 USDC came after the close

    # the same instant written with its offset, or as the date's close of business, pins the same block
    for args in (("--as-of", "2026-11-24T23:00:00Z"), ("--as-of", "2026-11-24")):
        assert _statement(cli, config, *args)[1]["chains"]["eth"]["block_number"] == block_a["number"]

    # an instant the chain has not passed yet cannot be pinned: the statement is incomplete
    code, doc, stderr = _statement(cli, config, "--as-of", "2026-11-27T17:00")
    assert code == 2 and "has not passed 2026-11-27T17:00:00-06:00 yet" in doc["chains"]["eth"]["error"]
    assert _futures(doc)["complete"] is False
    # nor one before the chain's first block (in October, Chicago keeps daylight time: -05:00)
    code, doc, _ = _statement(cli, config, "--as-of", "2026-10-30T17:00")
    assert code == 2 and "has no block at or before 2026-10-30T17:00:00-05:00" in doc["chains"]["eth"]["error"]


def test_a_statement_as_of_an_instant_uses_only_what_was_booked_by_its_business_date(
    cli: Any, dated: Devnet, scenario: Scenario
) -> None:
    """The issue's example: a withdrawal booked for T+1 must not change the statement of T
    (required 1,100,000.00, not 650,000.00, for the same block)."""
    token = dated.deploy_token("Test USD", "USDC", 6)
    seg = new_address()
    scenario.add_chain("eth", dated.url, 31337)
    scenario.add_token("USDC", "eth", token.address, 6, price_usd="1.00", dco_haircuts=["0"])
    scenario.add_wallet("seg-1", "eth", seg, "futures")
    # only [schedule] names the firm's zone: business dates follow it
    scenario.extra = '\n[schedule]\ntimezone = "America/Chicago"\n'
    config = scenario.write()
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,Customer One"])
    books = scenario.write_csv(
        "books.csv",
        BOOKS_HEADER,
        [
            "E1,2026-11-24,C1,seg-1,USDC,1100000,deposit,booked on T's business date: counts",
            "E2,2026-11-25,C1,seg-1,USDC,-450000,withdrawal,booked for T+1",
            "E3,2099-01-02,C1,seg-1,USDC,1,deposit,booked for a day that has not come",
        ],
    )
    accounts = config.parent / "accounts.csv"
    for args in (("init",), ("accounts", "import", str(accounts)), ("books", "import", str(books))):
        assert cli("--config", str(config), *args).code == 0, args

    close = int(datetime(2026, 11, 24, 23, 0, tzinfo=UTC).timestamp())  # T: 17:00 in Chicago
    _at(dated, close - 60)
    dated.mint(token, seg, 1_100_000 * USDC)
    _at(dated, close + 86_400 + 60)  # a block after T+1's close, so both instants are final
    dated.mine()

    code, first, _ = _statement(cli, config, "--as-of", "2026-11-24T17:00")
    st = _futures(first)
    assert code == 0, first
    assert first["business_date"] == "2026-11-24"
    assert (st["amount_required"], st["funds_in_segregation"], st["excess"]) == ("1100000.00", "1100000.00", "0.00")
    # the same instant, later and written otherwise (UTC: already the 25th there), gives the same statement
    code, again, _ = _statement(cli, config, "--as-of", "2026-11-24T23:00:00Z")
    assert again["business_date"] == "2026-11-24"
    for key in ("as_of", "business_date", "chains", "prices", "statements"):
        assert again[key] == first[key], key
    code, late, _ = _statement(cli, config, "--as-of", "2026-11-25T00:30:00Z", "--tz", "UTC")
    assert late["business_date"] == "2026-11-24", "the business date is the firm's, whatever --tz shows"
    assert _futures(late)["amount_required"] == "1100000.00"
    # the stored inputs say which entries were summed
    ledger = Ledger(load_settings(str(config)).database_url)
    try:
        stored = store.get_statement(ledger, first["run_id"])
    finally:
        ledger.close()
    assert stored.inputs["books_through"] == "2026-11-24"
    assert [h[3] for h in stored.inputs["book"]] == [str(1_100_000 * USDC)]

    # T+1: the withdrawal counts now (the far-future entry still does not)
    code, next_day, _ = _statement(cli, config, "--as-of", "2026-11-25T17:00")
    assert next_day["business_date"] == "2026-11-25"
    assert (_futures(next_day)["amount_required"], _futures(next_day)["excess"]) == ("650000.00", "450000.00")
    # now: every entry dated on or before today's business date, never one dated later
    code, now, _ = _statement(cli, config)
    assert _futures(now)["amount_required"] == "650000.00"


def test_report_pilot_is_as_of_fridays_close(cli: Any, dated: Devnet, scenario: Scenario) -> None:
    usdc = dated.deploy_token("Test USD", "USDC", 6)
    feed = dated.deploy("PriceFeed", 8, "USDC / USD", 99_990_000)  # 0.9999
    fund = dated.deploy_token("Tokenized MMF", "TMMF", 18)
    seg, cs, house = new_address(), new_address(), new_address()
    scenario.add_chain("eth", dated.url, 31337)
    scenario.add_token("USDC", "eth", usdc.address, 6, price_feed=feed.address, price_max_age="7d")
    scenario.add_token("TMMF", "eth", fund.address, 18, kind="mmf", price_usd="1.02")
    scenario.add_wallet("seg-1", "eth", seg, "futures")
    scenario.add_wallet("cs-1", "eth", cs, "cleared_swaps")
    scenario.add_wallet("house-1", "eth", house, "house")
    scenario.extra = '\n[segregation]\ntimezone = "America/Chicago"\n'
    config = scenario.write()
    friday_close = int(datetime(2026, 11, 20, 23, 0, tzinfo=UTC).timestamp())
    dated.mint(usdc, seg, 1_000_000 * USDC)
    dated.mint(fund, cs, 2_500 * 10**18)
    dated.mint(usdc, house, 7 * USDC)  # the house's own: not held for customers
    _at(dated, friday_close + 1)
    dated.mint(usdc, seg, 1 * USDC)  # after the close

    result = cli("--config", str(config), "report", "pilot", "--week", "2026-W47", "--json")

    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    block = dated.w3.eth.get_block(dated.head() - 1)
    assert doc["chains"]["eth"]["block_number"] == block["number"]
    assert {k: doc[k] for k in ("week", "as_of", "complete")} == {
        "week": "2026-W47",
        "as_of": "2026-11-20T17:00:00-06:00",
        "complete": True,
    }
    # futures: 1,000,000 USDC x 0.9999 = 999,900.00; cleared swaps: 2,500 TMMF x 1.02 = 2,550.00
    assert doc["rows"] == [
        {
            "class": "futures",
            "asset": "USDC",
            "units": "1000000000000",
            "units_display": "1000000.000000",
            "encumbered_units": "0",
            "encumbered_units_display": "0.000000",
            "market_value_usd": "999900.00",
        },
        {
            "class": "cleared_swaps",
            "asset": "TMMF",
            "units": str(2_500 * 10**18),
            "units_display": "2500.000000000000000000",
            "encumbered_units": "0",
            "encumbered_units_display": "0.000000000000000000",
            "market_value_usd": "2550.00",
        },
    ]
    assert doc["totals"] == [
        {"class": "futures", "market_value_usd": "999900.00"},
        {"class": "cleared_swaps", "market_value_usd": "2550.00"},
        {"class": "foreign_futures", "market_value_usd": "0.00"},
    ]
    bad = cli("--config", str(config), "report", "pilot", "--week", "2026-47")
    assert bad.code == 2 and "is not an ISO week" in bad.stderr
