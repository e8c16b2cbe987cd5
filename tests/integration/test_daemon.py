"""The daemon as real processes: scheduled firings, exactly once across instances on one
PostgreSQL ledger, a second instance refused on SQLite, clean stops, coalesced catch-up, and the
tamper-evident audit trail. Time-based behaviour waits on observable effects (run rows) with
deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json
from tests.integration.test_alerts import receiver  # noqa: F401 - the webhook receiver fixture

RECONCILER = str(Path(sys.executable).parent / "reconciler")


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_CONFIG"] = str(config)
    return env


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RECONCILER, "daemon"], env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _scheduled(url: str) -> list[tuple[str, str, datetime, str, str | None]]:
    """(run id, job, scheduled_for, status, instance) of every scheduled run."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT id, job, scheduled_for, status, host, pid FROM run "
                "WHERE trigger = 'schedule' ORDER BY started_at"
            )
        ).all()
    engine.dispose()
    return [(r[0], r[1], _utc(r[2]), r[3], f"{r[4]}:{r[5]}") for r in rows]


def _reruns(url: str) -> dict[str, str]:
    """re-run id -> the id of the run of the same firing whose process died."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT id, rerun_of FROM run WHERE rerun_of IS NOT NULL")).all()
    engine.dispose()
    return {r[0]: r[1] for r in rows}


def _utc(value: Any) -> datetime:
    """Stored times are UTC; SQLite hands raw rows back as text."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _wait_for(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out, err


def _setup(cli: Any, devnet: Devnet, scenario: Scenario, schedule: str) -> Path:
    make_custody(devnet, scenario, devnet.url)
    scenario.extra = f'\n[schedule]\ntimezone = "UTC"\n{schedule}\n'
    config = scenario.write()
    load(cli, config)
    return config


def test_a_daemon_runs_its_jobs_on_schedule_and_stops_cleanly_on_sigterm(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    config = _setup(cli, devnet, scenario, 'run = "1s"\nscan = "1s"')
    proc = _start(config)
    try:
        _wait_for(lambda: Counter(r[1] for r in _scheduled(scenario.db_url) if r[3] != "running")["run"] >= 3,
                  "three scheduled runs")
        _wait_for(lambda: any(r[1] == "scan" for r in _scheduled(scenario.db_url)), "a scheduled scan")
    finally:
        _, err = _stop(proc)
    assert proc.returncode == 0, err
    rows = _scheduled(scenario.db_url)
    assert all(r[3] != "running" for r in rows), rows
    assert all(r[4] == rows[0][4] for r in rows) and rows[0][4].endswith(f":{proc.pid}")
    for job in ("run", "scan"):
        slots = [r[2] for r in rows if r[1] == job]
        assert len(slots) == len(set(slots)), f"a {job} firing ran twice"
    listed = json.loads(cli("--config", str(config), "runs", "list", "--limit", "200", "--json").stdout)["runs"]
    scheduled = [r for r in listed if r["trigger"] == "schedule"]
    assert scheduled and all(r["scheduled_for"] is not None for r in scheduled)
    assert {r["job"] for r in scheduled} == {"run", "scan"}


def test_a_second_daemon_on_a_sqlite_ledger_is_refused(cli: Any, devnet: Devnet, tmp_path: Path) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    config = _setup(cli, devnet, scenario, 'run = "10s"')
    first = _start(config)
    try:
        _wait_for(lambda: bool(_scheduled(scenario.db_url)), "the first daemon's first run")
        second = subprocess.run(
            [RECONCILER, "daemon"], env=_env(config), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        assert "already runs against the SQLite ledger" in second.stderr and "PostgreSQL" in second.stderr
    finally:
        _stop(first)
    assert first.returncode == 0


@pytest.mark.postgres
def test_three_daemons_on_one_postgresql_ledger_run_each_firing_exactly_once(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=pg_url)
    # 3 s: an instance finishes its firing long before the next, so no slot finds every instance
    # busy even on a loaded 2-core machine (a slot all instances miss is coalesced, as downtime is)
    config = _setup(cli, devnet, scenario, 'run = "3s"')
    procs = [_start(config) for _ in range(3)]
    try:
        _wait_for(
            lambda: len({r[4] for r in _scheduled(pg_url)}) >= 2 and len(_scheduled(pg_url)) >= 3,
            "firings spread over instances",
            90,
        )
        # One instance dies hard; the others go on.
        victim = procs.pop(0)
        victim.kill()
        victim.communicate(timeout=30)
        before = len(_scheduled(pg_url))
        _wait_for(lambda: len(_scheduled(pg_url)) >= before + 3, "firings after the kill", 90)
    finally:
        for proc in procs:
            _stop(proc)
    assert all(p.returncode == 0 for p in procs)
    # the next command closes what the killed instance left running
    assert cli("--config", str(config), "runs", "list", "--json").code == 0
    rows = _scheduled(pg_url)
    assert all(r[3] != "running" for r in rows)
    # A firing the killed instance had in progress is run again, once, by another instance
    # (rerun_of names the run that died); any other firing ran exactly once.
    reruns = _reruns(pg_url)
    by_id = {r[0]: r for r in rows}
    for rerun_id, dead_id in reruns.items():
        assert by_id[dead_id][3] == "incomplete" and by_id[dead_id][2] == by_id[rerun_id][2]
    slots = [r[2] for r in rows if r[0] not in reruns]
    assert len(slots) == len(set(slots)), "a firing ran twice"
    ordered = sorted(slots)
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
    assert all(g == 3 for g in gaps), f"a firing was lost: gaps {gaps}"


def test_a_restarted_daemon_coalesces_the_firings_it_missed_into_one(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    config = _setup(cli, devnet, scenario, 'run = "1s"')
    proc = _start(config)
    try:
        _wait_for(lambda: len(_scheduled(scenario.db_url)) >= 1, "a first run")
    finally:
        _stop(proc)
    last = max(r[2] for r in _scheduled(scenario.db_url))
    # down for several slots: wait until the clock is 4 slots past the last firing
    _wait_for(lambda: datetime.now(UTC) >= last + timedelta(seconds=4), "the downtime to pass")
    count = len(_scheduled(scenario.db_url))
    proc = _start(config)
    try:
        _wait_for(lambda: len(_scheduled(scenario.db_url)) > count, "the catch-up run")
        first_new = sorted(_scheduled(scenario.db_url), key=lambda r: r[2])[count]
    finally:
        _stop(proc)
    caught = first_new[2]
    assert caught >= last + timedelta(seconds=4), "the missed slots were coalesced into the latest one"


def test_an_edited_or_deleted_audit_record_is_detected(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], "0x000000000000000000000000000000000000dEaD", 5)
    run_json(cli, config)
    _, doc, _ = run_json(cli, config)
    brk = doc["breaks"][0]
    assert cli("--config", str(config), "breaks", "ack", brk["id"], "--note", "on it").code == 0
    ok = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert ok.code == 0, ok.stdout
    intact = json.loads(ok.stdout)
    assert intact["ok"] is True and intact["records"] >= 5
    shown = cli("--config", str(config), "runs", "show", doc["run_id"], "--json")
    run_head = json.loads(shown.stdout)["audit_head"]
    assert run_head["seq"] < intact["head"]["seq"], "the head right after its outcome (the ack came later)"
    assert f"audit trail head after this run: {run_head['seq']}:{run_head['hash']}" in shown.stderr

    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.begin() as conn:
        target = conn.execute(sqlalchemy.text("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 2")).scalar_one()
        conn.execute(
            sqlalchemy.text("UPDATE audit_log SET record = record || ' ' WHERE id = :i"),
            {"i": target},
        )
    edited = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert edited.code == 1 and json.loads(edited.stdout)["first_bad_record"] == target
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM audit_log WHERE id = :i"), {"i": target})
    deleted = cli("--config", str(config), "breaks", "verify-audit", "--json")
    found = json.loads(deleted.stdout)
    assert deleted.code == 1 and found["first_bad_record"] > target and "deleted" in found["problem"]
    engine.dispose()


def test_health_and_metrics_of_a_running_daemon(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _setup(cli, devnet, scenario, 'run = "30s"')
    scenario.extra += f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    scenario.write()
    unhealthy = cli("--config", str(config), "health", "--json")
    assert unhealthy.code == 1 and any("never ran" in p for p in json.loads(unhealthy.stdout)["problems"])
    proc = _start(config)
    try:
        _wait_for(lambda: any(r[3] == "complete" for r in _scheduled(scenario.db_url)), "a complete scheduled run")

        def scraped() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    return str(answer.read().decode())
            except OSError:
                return ""

        _wait_for(lambda: 'reconciler_job_runs_total{job="run",outcome="complete"}' in scraped(), "the metric")
        text = scraped()
        for name in ("run_last_timestamp_seconds", "chain_pinned_block", "open_breaks", "run_duration_seconds"):
            assert f"reconciler_{name}" in text
        healthy = cli("--config", str(config), "health")
        assert healthy.code == 0, healthy.stderr
    finally:
        _, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "event=job_fired job=run" in err, "every firing's outcome is logged"


def test_a_chain_down_while_the_daemon_runs_gives_incomplete_runs_an_alert_and_a_catch_up(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811 - the imported fixture
) -> None:
    from tests.integration.rpcproxy import RpcProxy

    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=2)
        hook = receiver.url("/hook")
        scenario.extra = f'\n[schedule]\nrun = "1s"\n\n[[alerts.webhooks]]\nurl = "{hook}"\nmin_severity = "error"\n'
        config = scenario.write()
        load(cli, config)
        proc = _start(config)
        try:
            _wait_for(lambda: any(r[3] == "complete" for r in _scheduled(scenario.db_url)), "a complete run")
            proxy.fail(503, "down for maintenance")
            _wait_for(lambda: any(r[3] == "incomplete" for r in _scheduled(scenario.db_url)), "an incomplete run")

            def alerted() -> bool:
                return any(json.loads(r.body)["event"] == "run.incomplete" for r in receiver.at("/hook"))

            _wait_for(alerted, "the run.incomplete alert")
            proxy.reset()
            failed_at = max(r[2] for r in _scheduled(scenario.db_url) if r[3] == "incomplete")
            _wait_for(
                lambda: any(r[3] == "complete" and r[2] > failed_at for r in _scheduled(scenario.db_url)),
                "a complete run once the chain is back",
            )
        finally:
            _, err = _stop(proc)
    assert proc.returncode == 0, err


def test_alerts_deliver_sends_what_a_run_queued_where_no_daemon_runs(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811 - the imported fixture
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.extra = f'\n[[alerts.webhooks]]\nurl = "{receiver.url("/hook")}"\nmin_severity = "error"\n'
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], "0x000000000000000000000000000000000000dEaD", 5)
    code, doc, _ = run_json(cli, config)
    assert code == 1 and receiver.at("/hook") == [], "a run only queues its alerts"
    sent = cli("--config", str(config), "alerts", "deliver", "--json")
    assert sent.code == 0, sent.stderr
    assert json.loads(sent.stdout)["delivered"] == 2, "the break and the run's outcome"
    [request] = receiver.at("/hook")
    body = json.loads(request.body)
    assert body["event"] == "break.opened" and body["break"]["id"] == doc["breaks"][0]["id"]
    assert request.headers["X-Reconciler-Event-Id"]
    [finished] = receiver.finished
    assert json.loads(finished.body)["run_id"] == doc["run_id"]
