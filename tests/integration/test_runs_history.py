"""Past runs and breaks nobody can check any more: `runs list|show`, `breaks resolve`, and book
balances that no configured wallet x asset covers."""

from __future__ import annotations

import json
from typing import Any

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def test_runs_show_reproduces_each_run_document_as_printed(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    _, clean, _ = run_json(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 3_000_000)
    _, broken, _ = run_json(cli, config)

    listed = cli("--config", str(config), "runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    assert [r["id"] for r in runs] == [broken["run_id"], clean["run_id"]], "newest first"
    for r in runs:
        assert set(r) == {
            "id", "started_at", "finished_at", "status", "reason", "exit_code",
            "trigger", "job", "scheduled_for", "instance", "rerun_of",
        }
        assert (r["trigger"], r["job"], r["scheduled_for"], r["status"]) == ("cli", "run", None, "complete")
        assert r["rerun_of"] is None, "only a scheduled firing run again after its process died names one"
        host, _, pid = r["instance"].rpartition(":")
        assert host and pid.isdigit()
    assert [r["exit_code"] for r in runs] == [1, 0]
    assert json.loads(cli("--config", str(config), "runs", "list", "--limit", "1", "--json").stdout)["runs"] == runs[:1]

    heads = []
    for printed in (clean, broken):
        shown = cli("--config", str(config), "runs", "show", printed["run_id"], "--json")
        assert shown.code == 0, shown.stderr
        doc = json.loads(shown.stdout)
        heads.append(doc.pop("audit_head"))  # the audit trail's head after the run, beside the document
        assert doc == printed
    assert heads[0]["seq"] < heads[1]["seq"] and all(len(h["hash"]) == 64 for h in heads)
    # a unique prefix is enough, like git
    again = json.loads(cli("--config", str(config), "runs", "show", broken["run_id"][:8], "--json").stdout)
    assert again.pop("audit_head") == heads[1] and again == broken
    missing = cli("--config", str(config), "runs", "show", "zzzzzzzz", "--json")
    assert missing.code == 2 and "no run with id 'zzzzzzzz'" in missing.stderr and missing.stdout == ""


def test_a_removed_wallet_is_reported_unreconciled_and_its_break_resolved_by_hand(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 500_000)
    _, first, _ = run_json(cli, config)
    [brk] = first["breaks"]
    assert first["unreconciled_books"] == []

    # seg-1 leaves the configuration (and with it USDC's only holder); its books do not vanish.
    del scenario.wallets["seg-1"]
    scenario.write()
    code, doc, err = run_json(cli, config)
    assert code == 1, "the break nobody can check any more stays open"
    assert doc["unreconciled_books"] == [
        {"wallet": "seg-1", "asset": "TMMF", "book": str(2500 * 10**18), "book_display": "2500." + "0" * 18},
        {"wallet": "seg-1", "asset": "USDC", "book": "1000000500000", "book_display": "1000000.500000"},
    ]
    [still] = doc["breaks"]
    assert (still["id"], still["status"]) == (brk["id"], "open")
    table = cli("--config", str(config), "run")
    assert "not reconciled" in table.stderr and "seg-1" in table.stdout

    no_note = cli("--config", str(config), "breaks", "resolve", brk["id"], "--note", " ")
    assert no_note.code == 2
    note = "wallet retired; see ticket 42"
    resolved = cli("--config", str(config), "breaks", "resolve", brk["id"][:8], "--note", note)
    assert resolved.code == 0, resolved.stderr
    shown = json.loads(cli("--config", str(config), "breaks", "show", brk["id"], "--json").stdout)
    assert shown["break"]["status"] == "resolved"
    assert shown["events"][-1]["event"] == "resolved" and note in shown["events"][-1]["note"]
    again = cli("--config", str(config), "breaks", "resolve", brk["id"], "--note", "twice")
    assert again.code == 2 and "already resolved" in again.stderr

    code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["breaks"] == []


def test_a_break_keeps_its_asset_decimals_after_the_asset_leaves_the_configuration(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 1_234_567)
    run_json(cli, config)
    del scenario.assets["USDC"]
    scenario.write()
    listed = cli("--config", str(config), "breaks", "list", "--json")
    [brk] = json.loads(listed.stdout)["breaks"]
    assert (brk["amount"], brk["amount_display"]) == ("-1234567", "-1.234567")
    code, doc, _ = run_json(cli, config)
    [row] = [u for u in doc["unreconciled_books"] if u["asset"] == "USDC"]
    assert row["book"] == "1000000500000" and row["book_display"] == "1000000500000"
