"""Reconciliation runs end to end: real Anvil, real ledger (SQLite and PostgreSQL), the CLI."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy

from chains.evm.devnet import AnvilNode, Devnet
from reconciler.inputs.config import load_settings
from tests.conftest import Scenario
from tests.integration.helpers import (
    closed_port_url,
    load,
    make_custody,
    new_address,
    position,
    run_json,
)

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def mismatches(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in doc["breaks"] if b["kind"] == "balance_mismatch"]


def test_clean_run_reports_every_position_and_exits_0(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)

    code, doc, _ = run_json(cli, config)

    assert code == 0
    assert doc["status"] == "complete" and doc["breaks"] == []
    head = devnet.head()
    assert doc["chains"]["eth"]["block_number"] == head
    assert doc["chains"]["eth"]["block_hash"] == devnet.w3.eth.get_block(head)["hash"].to_0x_hex()
    # every wallet x every asset of the chain, zero-and-zero rows included
    assert len(doc["positions"]) == 2 * 3
    usdc = position(doc, "seg-1", "USDC")
    assert usdc == {
        "chain": "eth",
        "wallet": "seg-1",
        "asset": "USDC",
        "book": "1000000500000",
        "book_display": "1000000.500000",
        "onchain": "1000000500000",
        "onchain_display": "1000000.500000",
        "difference": "0",
        "difference_display": "0.000000",
    }
    assert position(doc, "house-1", "USDC")["onchain"] == "0"
    assert position(doc, "house-1", "ETH")["onchain"] == str(7 * 10**18)


def test_unauthorized_outflow_gives_balance_mismatch_with_signed_amount(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 123_456_789)

    code, doc, _ = run_json(cli, config)

    assert code == 1
    assert doc["status"] == "complete"
    [brk] = doc["breaks"]
    assert brk["kind"] == "balance_mismatch" and brk["severity"] == "error" and brk["status"] == "open"
    assert (brk["chain"], brk["wallet"], brk["asset"]) == ("eth", "seg-1", "USDC")
    assert brk["amount"] == "-123456789"
    assert brk["amount_display"] == "-123.456789"
    assert brk["tx_hash"] is None
    assert position(doc, "seg-1", "USDC")["difference"] == "-123456789"
    assert str(doc["chains"]["eth"]["block_number"]) in brk["detail"]


def test_a_persisting_break_is_seen_again_and_a_cleared_one_is_resolved(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 5_000_000)

    _, first, _ = run_json(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 1_000_000)
    code, second, _ = run_json(cli, config)

    assert code == 1
    [b1], [b2] = first["breaks"], mismatches(second)
    assert b1["id"] == b2["id"], "a break that persists is the same break"
    # surveillance began at the first run's pin: the second outflow is also seen as it happened
    [theft] = [b for b in second["breaks"] if b["kind"] == "unauthorized_transfer"]
    assert (theft["amount"], theft["severity"], theft["wallet"]) == ("-1000000", "critical", "seg-1")
    assert b2["status"] == "open" and b2["times_seen"] == 2
    assert b2["amount"] == "-6000000", "the amount follows the latest run"

    # The back office books the loss: the chain and the books agree again.
    books = custody.book([("seg-1", "USDC", "-6", "adjustment")])
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    code, third, _ = run_json(cli, config)
    assert code == 1, "an unauthorized transfer stays open until a person resolves it"
    [b3] = mismatches(third)
    assert (b3["id"], b3["status"], b3["resolved_run_id"]) == (b1["id"], "resolved", third["run_id"])

    code, fourth, _ = run_json(cli, config)
    assert mismatches(fourth) == [] and code == 1

    listed = cli("--config", str(config), "breaks", "list", "--all", "--json")
    assert sorted(b["status"] for b in json.loads(listed.stdout)["breaks"]) == ["open", "resolved"]
    shown = cli("--config", str(config), "breaks", "show", b1["id"], "--json")
    events = [e["event"] for e in json.loads(shown.stdout)["events"]]
    assert events == ["opened", "seen", "resolved"]


def test_18_decimals_balances_above_2_64_are_exact(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    big = 2**70 + 1  # above 2^64 base units, odd so that rounding would show
    devnet.mint(custody.tmmf, custody.wallets["house-1"], big)
    config = scenario.write()
    load(cli, config)
    books = custody.book([("house-1", "TMMF", "1180.591620717411303425", "deposit")])
    assert cli("--config", str(config), "books", "import", str(books)).code == 0

    code, doc, _ = run_json(cli, config)
    assert code == 0, doc
    row = position(doc, "house-1", "TMMF")
    assert row["onchain"] == row["book"] == str(big)
    assert row["onchain_display"] == "1180.591620717411303425"

    devnet.transfer_as(custody.tmmf, custody.wallets["house-1"], OUTSIDER, 2**65 + 3)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    [brk] = mismatches(doc)
    assert brk["amount"] == str(-(2**65 + 3))
    [theft] = [b for b in doc["breaks"] if b["kind"] == "unauthorized_transfer"]
    assert theft["amount"] == str(-(2**65 + 3)) and theft["amount_display"] == "-36.893488147419103235"
    assert position(doc, "house-1", "TMMF")["onchain"] == str(big - 2**65 - 3)


def test_multicall_and_batch_read_paths_give_equal_positions(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 42)  # a break on both paths
    config = scenario.write()
    load(cli, config)
    _, via_multicall, _ = run_json(cli, config)

    scenario.chains["eth"]["read_path"] = "batch"
    scenario.write()
    _, via_batch, _ = run_json(cli, config)

    assert via_multicall["chains"]["eth"]["read_path"] == "multicall"
    assert via_batch["chains"]["eth"]["read_path"] == "batch"
    assert via_multicall["positions"] == via_batch["positions"]
    assert position(via_batch, "seg-1", "USDC")["difference"] == "-42"


def test_small_chunks_read_the_same_as_one_chunk(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url, chunk_size=1)
    for i in range(5):
        address = new_address()
        scenario.add_wallet(f"extra-{i}", "eth", address)
        devnet.mint(custody.usdc, address, 10**6 * (i + 1))
    config = scenario.write()
    load(cli, config)
    _, small, _ = run_json(cli, config)
    scenario.chains["eth"]["chunk_size"] = 500
    scenario.write()
    _, large, _ = run_json(cli, config)
    assert small["positions"] == large["positions"]
    assert position(small, "extra-4", "USDC")["onchain"] == "5000000"


def test_chain_id_mismatch_is_refused_with_exit_2(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.chains["eth"]["chain_id"] = 1
    config = scenario.write()
    load(cli, config)

    code, doc, stderr = run_json(cli, config)

    assert code == 2
    assert doc["status"] == "incomplete" and doc["positions"] == []
    eth = doc["chains"]["eth"]
    assert eth["block_number"] is None and eth["block_hash"] is None
    assert "31337" in eth["error"] and "chain_id = 1" in eth["error"]
    assert "31337" in doc["reason"] and "31337" in stderr


def test_decimals_mismatch_is_refused_with_exit_2(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.assets["USDC"]["decimals"] = 18
    config = scenario.write()
    load(cli, config)

    code, doc, stderr = run_json(cli, config)

    assert code == 2
    assert doc["status"] == "incomplete" and doc["positions"] == []
    assert "decimals() = 6" in doc["chains"]["eth"]["error"]
    assert "assets.USDC.decimals = 18" in stderr


def test_node_down_gives_exit_2_incomplete_run_and_keeps_open_breaks(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 77)
    _, before, _ = run_json(cli, config)
    [open_break] = before["breaks"]

    scenario.chains["eth"]["rpc_urls"] = [closed_port_url()]
    scenario.chains["eth"]["rpc_timeout"] = 2
    scenario.write()
    code, doc, _ = run_json(cli, config)

    assert code == 2, "never a clean result for a chain that could not be read"
    assert doc["status"] == "incomplete"
    assert doc["positions"] == []
    assert doc["chains"]["eth"]["block_number"] is None
    assert "cannot connect to" in doc["chains"]["eth"]["error"]
    # the open break was not resolved by a run that could not look
    assert [(b["id"], b["status"]) for b in doc["breaks"]] == [(open_break["id"], "open")]
    engine = sqlalchemy.create_engine(load_settings(str(config)).database_url)
    with engine.connect() as conn:
        status, reason = conn.execute(
            sqlalchemy.text("SELECT status, reason FROM run WHERE id = :id"), {"id": doc["run_id"]}
        ).one()
    engine.dispose()
    assert status == "incomplete" and "cannot connect to" in reason


def test_failover_to_the_next_rpc_url(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.chains["eth"]["rpc_urls"] = [closed_port_url(), devnet.url]
    config = scenario.write()
    load(cli, config)
    code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["status"] == "complete"


def test_confirmations_pin_below_head(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url, confirmations=3)
    config = scenario.write()
    load(cli, config)
    devnet.mine(3)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 9)  # mines 2 blocks
    head = devnet.head()

    code, doc, _ = run_json(cli, config)

    assert doc["chains"]["eth"]["block_number"] == head - 3
    assert code == 0, "the outflow is not yet 3 blocks deep"
    devnet.mine(3)
    code, doc, _ = run_json(cli, config)
    assert code == 1 and doc["breaks"][0]["amount"] == "-9"


def test_two_chains_in_one_run(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    with AnvilNode.start(chain_id=31339) as l2_node:
        l2 = Devnet(l2_node.url)
        l2.install_multicall3()
        l2_usdc = l2.deploy_token("L2 USD", "USDC", 6)
        l2_wallet = new_address()
        l2.mint(l2_usdc, l2_wallet, 70_000_000)
        scenario.add_chain("l2", l2_node.url, 31339)
        scenario.add_token("USDC-L2", "l2", l2_usdc.address, 6)
        scenario.add_wallet("seg-l2", "l2", l2_wallet)
        config = scenario.write()
        load(cli, config)
        books = custody.book([("seg-l2", "USDC-L2", "70", "deposit")])
        assert cli("--config", str(config), "books", "import", str(books)).code == 0
        l2.transfer_as(l2_usdc, l2_wallet, OUTSIDER, 1_500_000)

        code, doc, _ = run_json(cli, config)

        assert code == 1
        assert set(doc["chains"]) == {"eth", "l2"}
        assert doc["chains"]["l2"]["block_number"] == l2.head()
        assert doc["chains"]["eth"]["block_number"] == devnet.head()
        assert len(doc["positions"]) == 2 * 3 + 1
        [brk] = doc["breaks"]
        assert (brk["chain"], brk["wallet"], brk["asset"], brk["amount"]) == ("l2", "seg-l2", "USDC-L2", "-1500000")

        # One chain down: the other is still reconciled, the run is incomplete (exit 2).
        l2_node.stop()
        code, doc, _ = run_json(cli, config)
        assert code == 2
        assert doc["chains"]["eth"]["block_number"] == devnet.head()
        assert "error" in doc["chains"]["l2"]
        assert {p["chain"] for p in doc["positions"]} == {"eth"}
        assert [b["status"] for b in doc["breaks"]] == ["open"], "the l2 break stays open"


def test_multicall_fallback_is_logged(
    cli: Any, devnet: Devnet, scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    make_custody(devnet, scenario, devnet.url, multicall3="0x" + "00" * 19 + "01")
    config = scenario.write()
    load(cli, config)
    with caplog.at_level(logging.WARNING, logger="chains.evm.adapter"):
        code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["chains"]["eth"]["read_path"] == "batch"
    assert len(doc["positions"]) == 2 * 3 and position(doc, "seg-1", "USDC")["onchain"] == "1000000500000"
    [record] = [r for r in caplog.records if "multicall3_absent" in r.getMessage()]
    assert "fallback=batch" in record.getMessage() and "chain=eth" in record.getMessage()


def test_an_asset_address_without_a_contract_is_never_read_as_zero(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.add_token("GHOST", "eth", "0x000000000000000000000000000000000000bEEF", 6)
    config = scenario.write()
    load(cli, config)
    code, doc, _ = run_json(cli, config)
    assert code == 2 and doc["status"] == "incomplete" and doc["positions"] == []
    assert "no ERC-20 contract at 0x000000000000000000000000000000000000bEEF" in doc["chains"]["eth"]["error"]


def test_a_database_failure_while_saving_records_the_run_incomplete(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    engine = sqlalchemy.create_engine(load_settings(str(config)).database_url)
    with engine.begin() as conn:  # a real failure of the real database, half-way through a run
        conn.execute(sqlalchemy.text("DROP TABLE balance_snapshot"))

    code, doc, stderr = run_json(cli, config)

    assert code == 2
    assert doc["status"] == "incomplete" and doc["breaks"] == []
    assert "database failed during the run" in doc["reason"] and "balance_snapshot" in doc["reason"]
    with engine.connect() as conn:
        status, exit_code = conn.execute(
            sqlalchemy.text("SELECT status, exit_code FROM run WHERE id = :id"), {"id": doc["run_id"]}
        ).one()
    engine.dispose()
    assert (status, exit_code) == ("incomplete", 2)
    assert "run incomplete" in stderr


def test_an_acknowledged_break_stays_acknowledged_and_still_exits_1(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 10)
    _, first, _ = run_json(cli, config)
    [brk] = first["breaks"]

    acked = cli("--config", str(config), "breaks", "ack", brk["id"], "--note", "ops ticket 42", "--json")
    assert acked.code == 0 and json.loads(acked.stdout)["break"]["status"] == "acknowledged"
    again = cli("--config", str(config), "breaks", "ack", brk["id"], "--note", "twice")
    assert again.code == 2 and "only an open break" in again.stderr

    code, second, _ = run_json(cli, config)
    assert code == 1, "an acknowledged error is still an error"
    [seen] = second["breaks"]
    assert (seen["id"], seen["status"], seen["times_seen"]) == (brk["id"], "acknowledged", 2)
    shown = json.loads(cli("--config", str(config), "breaks", "show", brk["id"], "--json").stdout)
    assert [(e["event"], e["note"]) for e in shown["events"]][1] == ("acknowledged", "ops ticket 42")
