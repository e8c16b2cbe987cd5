"""Runs against one ledger, however they overlap: every break exists exactly once, none is lost,
no run ends with a raw constraint error, and a run that cannot get the ledger says so and is
recorded. Real processes and both engines, plus a deterministic interleaving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from chains.base import ChainAdapter
from chains.evm.adapter import EvmAdapter
from chains.evm.devnet import Devnet
from reconciler.app.run import RunOptions, run_reconciliation
from reconciler.bootstrap import open_ledger
from reconciler.inputs.config import load_settings
from reconciler.inputs.settings import ChainSettings
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json
from tests.integration.rpcproxy import RpcProxy

RECONCILER = str(Path(sys.executable).parent / "reconciler")
OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_CONFIG"] = str(config)
    return env


def _run_processes(config: Path, count: int) -> list[tuple[int, dict[str, Any], str]]:
    procs = [
        subprocess.Popen(
            [RECONCILER, "run", "--json"], env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert out, f"exit {proc.returncode}, nothing on stdout; stderr: {err}"
        results.append((proc.returncode, json.loads(out), err))
    return results


def _break_rows(url: str, kind: str = "balance_mismatch") -> list[tuple[str, str, str, int]]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text('SELECT id, key, status, times_seen FROM "break" WHERE kind = :k ORDER BY opened_at'),
            {"k": kind},
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@contextmanager
def _holding_the_ledger(url: str) -> Iterator[Ledger]:
    """Another run, in this process, holding the ledger's writer lock."""
    ledger = Ledger(url)
    run, lock = ledger.begin_run()
    try:
        ledger.hold_ledger(run.id, lock, 10, lambda: None)
        yield ledger
    finally:
        lock.release()
        ledger.abandon_run(run.id, "test holder done")
        ledger.close()


def _wait_for(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_concurrent_run_processes_keep_every_break_exactly_once(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 7_000_000)

    # Round 1: three runs at once find the same theft: one break, seen by all three.
    results = _run_processes(config, 3)
    assert [code for code, _, _ in results] == [1, 1, 1], [err for _, _, err in results]
    ids = {b["id"] for _, doc, _ in results for b in doc["breaks"]}
    assert len(ids) == 1
    assert all(doc["status"] == "complete" for _, doc, _ in results)
    [(break_id, _, status, seen)] = _break_rows(scenario.db_url)
    assert (break_id, status, seen) == (ids.pop(), "open", 3)

    # Round 2: the books catch up; three runs at once: resolved once, nothing reopened.
    books = custody.book([("seg-1", "USDC", "-7", "adjustment")])
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    results = _run_processes(config, 3)
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert sorted(len(doc["breaks"]) for _, doc, _ in results) == [0, 0, 1]
    assert [(r[0], r[2]) for r in _break_rows(scenario.db_url)] == [(break_id, "resolved")]

    # Round 3: a second theft: exactly one new break, and no raw constraint error anywhere.
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 1_000_000)
    results = _run_processes(config, 3)
    assert [code for code, _, _ in results] == [1, 1, 1], [err for _, _, err in results]
    rows = _break_rows(scenario.db_url)
    assert [r[2] for r in rows] == ["resolved", "open"] and rows[1][3] == 3
    # the theft itself, observed by whichever run scanned its block first, exactly once
    [(_, _, theft_status, _)] = _break_rows(scenario.db_url, "unauthorized_transfer")
    assert theft_status == "open"
    for _, _, err in results:
        assert "UNIQUE constraint" not in err and "duplicate key" not in err


def test_a_run_that_cannot_get_the_ledger_waits_says_so_and_gives_up_recorded(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.database["lock_timeout"] = "1s"
    config = scenario.write()
    load(cli, config)

    with _holding_the_ledger(scenario.db_url):
        result = cli("--config", str(config), "run", "--json")
    assert result.code == 2
    assert "waiting: another run holds the ledger" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "incomplete" and doc["exit_code"] == 2
    assert "another run holds the ledger" in doc["reason"]
    assert doc["positions"] == [] and doc["breaks"] == []
    assert doc["chains"]["eth"]["block_number"] is None and "another run holds" in doc["chains"]["eth"]["error"]
    runs = json.loads(cli("--config", str(config), "runs", "list", "--json").stdout)["runs"]
    mine = next(r for r in runs if r["id"] == doc["run_id"])
    assert mine["status"] == "incomplete" and "another run holds the ledger" in mine["reason"]

    # Once the other run is done, the next run goes through.
    code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["status"] == "complete"


class _ResolvedMeanwhile(EvmAdapter):
    """Chain reads during which an operator resolves a break by hand (another writer)."""

    action: Callable[[], None] = staticmethod(lambda: None)

    def balances(self, queries: Any, block: Any) -> list[int]:
        values = super().balances(queries, block)
        type(self).action()
        return values


def test_a_break_changed_by_another_writer_during_a_run_is_never_overwritten(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    """The defect: a run planned against breaks as it had read them, then wrote "seen" onto a
    break that had been resolved meanwhile, and reported a clean ledger. Plans are now made
    inside the writing transaction, against the breaks as they are."""
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 2_000_000)
    _, first, _ = run_json(cli, config)
    [opened] = first["breaks"]

    settings = load_settings(str(config))
    ledger = open_ledger(settings)
    other = Ledger(settings.database_url)
    _ResolvedMeanwhile.action = staticmethod(lambda: other.resolve(opened["id"], "booked elsewhere")) # type: ignore[assignment]

    def adapter_for(chain: ChainSettings) -> ChainAdapter:
        return _ResolvedMeanwhile.from_settings(chain)

    try:
        report = run_reconciliation(settings, ledger, adapter_for, RunOptions())
    finally:
        ledger.close()
        other.close()

    assert report.run.status == "complete" and report.exit_code == 1
    [still_there] = [b for b in report.breaks if b.status.value == "open"]
    assert still_there.id != opened["id"], "the theft is still there: a new break, not a resolved one"
    shown = json.loads(cli("--config", str(config), "breaks", "show", opened["id"], "--json").stdout)
    assert shown["break"]["status"] == "resolved" and shown["break"]["times_seen"] == 1
    assert [e["event"] for e in shown["events"]] == ["opened", "resolved"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "int"])
def test_a_stopped_run_never_stays_running(cli: Any, devnet: Devnet, scenario: Scenario, sig: signal.Signals) -> None:
    """SIGTERM/SIGINT: recorded incomplete with the reason, printed, exit 2. SIGKILL: closed as
    incomplete by the next command once its process is gone."""
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    engine = sqlalchemy.create_engine(scenario.db_url)

    def run_row(pid: int) -> tuple[str, str, str | None] | None:
        with engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.text("SELECT id, status, reason FROM run WHERE pid = :pid"), {"pid": pid}
            ).first()
        return None if row is None else (row[0], row[1], row[2])

    with _holding_the_ledger(scenario.db_url):
        proc = subprocess.Popen(
            [RECONCILER, "run", "--json"], env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "waiting: another run holds the ledger" in line, line
        found = run_row(proc.pid)
        assert found is not None and found[1] == "running"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)

    run_id = found[0]
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and out == ""

        def reaped() -> bool:
            listed = cli("--config", str(config), "runs", "list", "--json")
            assert listed.code == 0, listed.stderr
            return next(r for r in json.loads(listed.stdout)["runs"] if r["id"] == run_id)["status"] == "incomplete"

        _wait_for(reaped, "the killed run to be closed")
        _, status, reason = run_row(proc.pid) or ("", "", None)
        assert status == "incomplete" and reason is not None and "ended without recording an outcome" in reason
    else:
        assert proc.returncode == 2, err
        doc = json.loads(out)
        assert doc["run_id"] == run_id and doc["status"] == "incomplete"
        assert f"interrupted by {sig.name}" in doc["reason"]
        assert run_row(proc.pid) == (run_id, "incomplete", doc["reason"])
    engine.dispose()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_signal_while_the_node_answers_slowly_stops_the_run_recorded(
    cli: Any, devnet: Devnet, scenario: Scenario, sig: signal.Signals
) -> None:
    """The signal interrupts the blocking read at once (not after rpc_timeout): the run is
    recorded incomplete with the signal as its reason, printed, and the command exits 2."""
    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=60)
        config = scenario.write()
        load(cli, config)
        proxy.delay(120)
        proc = subprocess.Popen(
            [RECONCILER, "run", "--json"], env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _wait_for(lambda: bool(proxy.seen()), "the run to ask the slow node")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    doc = json.loads(out)
    assert doc["status"] == "incomplete" and f"interrupted by {sig.name}" in doc["reason"]
    assert doc["positions"] == [] and doc["breaks"] == []
    runs = json.loads(cli("--config", str(config), "runs", "list", "--json").stdout)["runs"]
    assert [(r["id"], r["status"], r["reason"]) for r in runs if r["id"] == doc["run_id"]] == [
        (doc["run_id"], "incomplete", doc["reason"])
    ]
