"""Each thing said once, in our own words: SIGINT during a run, an unreachable node in `config
check --online`, a daemon log line without `key=None`, a firing skipped because the last one
still runs (not APScheduler's "maximum number of running instances reached"). And the words:
"chain eth" once in a reason, an empty scan range said as such, a freeze_check the token does
not have refused by `config check --online`. Real Anvil, real processes, a real SQLite ledger."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from reconciler.daemon.logformat import TidyFilter, tidy_message
from reconciler.daemon.scheduler import Daemon
from reconciler.errors import chain_message
from reconciler.inputs.config import load_settings
from tests.cli.terminal import Terminal, run_in_terminal
from tests.conftest import Scenario
from tests.integration.helpers import closed_port_url, make_custody
from tests.integration.rpcproxy import RpcProxy


def _ready(devnet: Devnet, tmp_path: Path, url: str | None = None, **chain: Any) -> Path:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    make_custody(devnet, scenario, url or devnet.url, **chain)
    config = scenario.write()
    for args in (["init"], ["accounts", "import", "accounts.csv"], ["books", "import", "books.csv"]):
        assert run_in_terminal(["--config", str(config), *args], cwd=tmp_path).code == 0
    return config


def test_ctrl_c_during_a_run_is_reported_once(devnet: Devnet, tmp_path: Path) -> None:
    with RpcProxy(devnet.url) as proxy:
        config = _ready(devnet, tmp_path, proxy.url, rpc_timeout=60)
        proxy.delay(120)
        running = Terminal(["--config", str(config), "run"])
        deadline = time.monotonic() + 60
        while not proxy.seen():
            assert time.monotonic() < deadline, "the run never asked the node"
            time.sleep(0.05)
        running.proc.send_signal(signal.SIGINT)
        screen = running.finish(timeout=60)
    assert screen.code == 2, screen.text
    assert screen.plain.count("interrupted by SIGINT") == 1, screen.plain
    assert "INCOMPLETE" in screen.plain and "error:" not in screen.plain


def test_an_unreachable_node_is_said_once_by_config_check_online(tmp_path: Path, devnet: Devnet) -> None:
    dead = closed_port_url()
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    scenario.add_chain("eth", f"{dead}/v3/k3yTh4tMustN0tShow", 31337, rpc_retries=0)
    scenario.add_native("ETH", "eth")
    scenario.add_wallet("w1", "eth", "0x000000000000000000000000000000000000dEaD")
    config = scenario.write()
    for json_out in ([], ["--json"]):
        screen = run_in_terminal(["--config", str(config), "config", "check", "--online", *json_out])
        assert screen.code == 2, screen.text
        assert screen.plain.count(f"cannot connect to {dead}") == 1 + len(json_out), screen.plain  # + the document
        assert "level=" not in screen.plain and "k3yTh4tMustN0tShow" not in screen.plain
        if not json_out:
            assert not screen.wider_than(80), screen.wider_than(80)


def test_a_freeze_check_the_token_does_not_have_fails_config_check_online(devnet: Devnet, tmp_path: Path) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    make_custody(devnet, scenario, devnet.url)
    scenario.assets["USDC"]["freeze_check"] = "isFrozen"  # the test token has it
    scenario.assets["USDC"]["pause_check"] = True
    good = scenario.write()
    checked = run_in_terminal(["--config", str(good), "config", "check", "--online"])
    assert checked.code == 0, checked.text
    assert "isFrozen(address) ✓" in checked.plain and "paused() ✓" in checked.plain
    doc = json.loads(run_in_terminal(["--config", str(good), "config", "check", "--online", "--json"]).text)
    [usdc] = [t for t in doc["chains"]["eth"]["tokens"] if t["asset"] == "USDC"]
    assert usdc["freeze_check_answered"] is True and usdc["pause_check_answered"] is True

    scenario.assets["USDC"]["freeze_check"] = "isBlacklisted"  # USDC's name, not this token's
    bad = scenario.write()
    refused = run_in_terminal(["--config", str(bad), "config", "check", "--online"])
    assert refused.code == 2, refused.text
    said = " ".join(refused.plain.split())
    assert "assets.USDC.freeze_check = 'isBlacklisted': the token at" in said
    assert "did not answer isBlacklisted(address) with a bool" in said and "FAILED" in said
    as_json = run_in_terminal(["--config", str(bad), "config", "check", "--online", "--json"]).text
    doc = json.loads(as_json[as_json.index("{") : as_json.rindex("}") + 1])
    assert doc["ok"] is False
    [usdc] = [t for t in doc["chains"]["eth"]["tokens"] if t["asset"] == "USDC"]
    assert usdc["freeze_check_answered"] is False


def test_log_lines_leave_out_none_and_show_outside_text_inert() -> None:
    assert tidy_message("event=job_fired job=run outcome=complete run_id=abc reason=None") == (
        "event=job_fired job=run outcome=complete run_id=abc"
    )
    tidy = tidy_message("event=chain_read chain=eth read_path=None observed=3")
    assert tidy == "event=chain_read chain=eth observed=3"
    assert tidy_message("event=x reason='None'") == "event=x reason='None'", "a quoted None is a value"
    assert tidy_message("event=x note=\x1b[2J\nfake") == "event=x note=\\x1b[2J\\nfake"
    record = logging.LogRecord("reconciler", logging.INFO, __file__, 1, "event=%s reason=%r", ("job_fired", None), None)
    assert TidyFilter().filter(record) and record.getMessage() == "event=job_fired"


def test_a_firing_skipped_because_the_last_still_runs_is_logged_in_our_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "l.db"}"\n\n[chains.eth]\nkind = "evm"\n'
        'rpc_urls = ["http://127.0.0.1:9"]\nchain_id = 31337\n\n[schedule]\nrun = "1h"\n'
    )
    daemon = Daemon(load_settings(str(config)))
    release = threading.Event()
    daemon.scheduler.add_job(release.wait, "interval", seconds=0.2, id="run", args=[30])
    caplog.set_level(logging.INFO)
    daemon.scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while "outcome=skipped" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    finally:
        release.set()
        daemon.scheduler.shutdown(wait=True)
    skipped = [r.getMessage() for r in caplog.records if "outcome=skipped" in r.getMessage()]
    assert skipped[0].startswith("event=job_fired job=run outcome=skipped reason=still_running scheduled_for=")
    assert "maximum number of running instances" not in caplog.text


def test_chain_is_named_once_in_a_reason() -> None:
    assert chain_message("eth", "chain eth block 20: eth_call failed") == "chain eth block 20: eth_call failed"
    assert chain_message("eth", "chain eth: no answer") == "chain eth: no answer"
    assert chain_message("eth", "cannot connect") == "chain eth: cannot connect"
    assert chain_message("eth", "chain ethereum block 1: x") == "chain eth: chain ethereum block 1: x"


def test_a_balance_read_failing_names_the_chain_once_and_an_empty_scan_says_so(
    devnet: Devnet, tmp_path: Path
) -> None:
    with RpcProxy(devnet.url) as proxy:
        config = _ready(devnet, tmp_path, proxy.url, rpc_retries=0, read_path="batch")
        first = run_in_terminal(["--config", str(config), "run", "--json"])
        assert first.code == 0, first.text
        pinned = json.loads(first.text)["chains"]["eth"]
        assert pinned["scan"]["new_blocks"] == 0, "the first scan starts at the pin: nothing before it"
        scanned = json.loads(run_in_terminal(["--config", str(config), "scan", "--json"]).text)
        eth = scanned["chains"]["eth"]
        assert eth["new_blocks"] == 0 and eth["from_block"] == eth["to_block"] + 1, eth  # the documented form
        again = run_in_terminal(["--config", str(config), "scan"])
        assert f"no new blocks up to {eth['to_block']:,}" in again.plain, again.plain
        page = tmp_path / "run.html"
        assert run_in_terminal(["--config", str(config), "report", "html", "latest", "--out", str(page)]).code == 0
        html = page.read_text()
        to = pinned["scan"]["to_block"]
        assert f"none new (up to {to})" in html and f"{to + 1}–{to}" not in html

        def refuse(request: dict[str, Any], _response: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32000, "message": "boom"}}

        proxy.on("eth_getBalance", refuse)
        failed = run_in_terminal(["--config", str(config), "run", "--json"])
    doc = json.loads(failed.text[failed.text.index("{") : failed.text.rindex("}") + 1])
    assert doc["status"] == "incomplete" and "chain eth" in doc["reason"], doc["reason"]
    assert "chain eth: chain eth" not in doc["reason"] and "chain eth: chain eth" not in failed.plain
