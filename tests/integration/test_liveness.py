"""A live run is never reaped, a dead one is, and its firing is run again exactly once: real
ledgers (SQLite and PostgreSQL), real processes, a real database outage through a TCP proxy.

The examiner's questions: can a run that is still working be closed as "killed" (and its
findings lost, or a second run of the same firing started beside it)? Can a firing whose
process died be run twice, or never?"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from chains.evm.devnet import Devnet
from reconciler.domain import Severity
from reconciler.ledger import daemon_store, outbox_store
from reconciler.ledger.liveness import HEARTBEAT_LEASE, Heartbeat
from reconciler.ledger.runs import FiringTaken
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import AlertRoute, AlertSetup
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody
from tests.integration.rpcproxy import RpcProxy
from tests.integration.tcpproxy import TcpProxy

RECONCILER = str(Path(sys.executable).parent / "reconciler")
SLOT = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)  # a Friday, 17:00 in Chicago


def _ledger(url: str) -> Ledger:
    ledger = Ledger(url)
    ledger.init()
    ledger.alerts = AlertSetup(routes=(AlertRoute("d" * 64, Severity.INFO),))  # so run.incomplete is queued
    return ledger


def _dead_pid() -> int:
    """The pid of a process that has ended (a reused pid would have another start time)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _die(ledger: Ledger, run_id: str, lock: Any) -> None:
    """What SIGKILL leaves: the run's locks and heartbeat gone with its process, the row
    ``running`` under a pid that no longer exists."""
    lock.release()
    with ledger.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE run SET pid = :pid WHERE id = :id"), {"pid": _dead_pid(), "id": run_id})


def _run_row(url: str, run_id: str) -> dict[str, Any]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sqlalchemy.text("SELECT * FROM run WHERE id = :id"), {"id": run_id}).mappings().one()
    engine.dispose()
    return dict(row)


def _wait_for(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_dead_firing_is_claimed_again_by_exactly_one_of_two_instances_and_only_once(db_url: str) -> None:
    ledger = _ledger(db_url)
    try:
        first, lock = ledger.begin_run("schedule", "segregation_statement", SLOT)
        assert ledger.reap_abandoned_runs() == [], "its process lives: never reaped"
        _die(ledger, first.id, lock)
        assert ledger.reap_abandoned_runs() == [first.id]
        dead = _run_row(db_url, first.id)
        assert dead["status"] == "incomplete" and "ended without recording an outcome" in dead["reason"]
        assert "is gone" in dead["reason"] and "runs its firing again, once" in dead["reason"]
        [lost] = daemon_store.lost_firings(ledger, ["segregation_statement"])
        assert (lost.job, lost.scheduled_for, lost.run_id) == ("segregation_statement", SLOT, first.id)
        assert daemon_store.lost_firings(ledger, ["run"]) == [], "only the jobs asked about"

        # Two instances find it at the same moment: one claims it, the other is told it is taken.
        start = threading.Barrier(2)
        won: list[tuple[Any, Any]] = []
        taken: list[FiringTaken] = []

        def claim() -> None:
            mine = Ledger(db_url)
            try:
                start.wait()
                won.append(mine.begin_run("schedule", "segregation_statement", SLOT, rerun_of=first.id))
            except FiringTaken as exc:
                taken.append(exc)
            finally:
                mine.close()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(won) == 1 and len(taken) == 1, (won, taken)
        [(rerun, rerun_lock)] = won
        assert (rerun.job, rerun.scheduled_for, rerun.trigger, rerun.rerun_of) == (
            "segregation_statement",
            SLOT,
            "schedule",
            first.id,
        )
        assert daemon_store.lost_firings(ledger, ["segregation_statement"]) == [], "claimed: no longer lost"
        with pytest.raises(FiringTaken):
            ledger.begin_run("schedule", "segregation_statement", SLOT, rerun_of=first.id)
        listed = {r.id: r for r in ledger.list_runs(10)}
        assert listed[rerun.id].rerun_of == first.id and listed[first.id].rerun_of is None

        # The re-run dies too: recorded and alerted, never run a third time.
        _die(ledger, rerun.id, rerun_lock)
        assert ledger.reap_abandoned_runs() == [rerun.id]
        again = _run_row(db_url, rerun.id)
        assert again["status"] == "incomplete" and "not run again" in again["reason"]
        assert daemon_store.lost_firings(ledger, ["segregation_statement"]) == []
        with pytest.raises(FiringTaken):
            ledger.begin_run("schedule", "segregation_statement", SLOT, rerun_of=rerun.id)
        alerted = [json.loads(e.body) for e in outbox_store.entries(ledger)]
        assert [a["run_id"] for a in alerted if a["event"] == "run.incomplete"] == [first.id, rerun.id]
    finally:
        ledger.close()


def test_a_run_seen_from_another_host_is_gone_only_when_its_heartbeat_is_older_than_the_lease(db_url: str) -> None:
    ledger = _ledger(db_url)
    try:
        run, lock = ledger.begin_run()
        # From another host the pid means nothing: only the liveness lock (PostgreSQL) and the
        # heartbeat speak for the run.
        assert ledger.reap_abandoned_runs(this_host="examiner-host") == []
        with ledger.engine.begin() as conn:
            stale = "heartbeat_at - INTERVAL '3 minutes'" if conn.dialect.name == "postgresql" else (
                "datetime(heartbeat_at, '-3 minutes')"
            )
            conn.execute(sqlalchemy.text(f"UPDATE run SET heartbeat_at = {stale} WHERE id = :id"), {"id": run.id})
        if ledger.engine.dialect.name == "postgresql":
            # Its session still holds the liveness lock: alive, however old the heartbeat.
            assert ledger.reap_abandoned_runs(this_host="examiner-host") == []
        assert ledger.reap_abandoned_runs() == [], "on its own host its process is seen alive"
        lock.release()  # the session is gone (a dropped connection), the heartbeat stale
        assert ledger.reap_abandoned_runs() == [], "its own host still sees the process: not gone"
        assert ledger.reap_abandoned_runs(this_host="examiner-host") == [run.id]
        row = _run_row(db_url, run.id)
        assert row["status"] == "incomplete" and "no heartbeat from" in row["reason"]
        assert f"lease {int(HEARTBEAT_LEASE.total_seconds())}s" in row["reason"]
    finally:
        ledger.close()


def test_the_heartbeat_is_refreshed_while_the_run_lasts_and_not_after(db_url: str) -> None:
    ledger = _ledger(db_url)
    try:
        run, lock = ledger.begin_run()
        lock.release()
        beat = Heartbeat(ledger.engine, run.id, str, every=timedelta(milliseconds=200)).start()
        before = _run_row(db_url, run.id)["heartbeat_at"]
        _wait_for(lambda: _run_row(db_url, run.id)["heartbeat_at"] != before, "a fresh heartbeat", 10)
        ledger.abandon_run(run.id, "done")
        ended = _run_row(db_url, run.id)["heartbeat_at"]
        assert beat.beat() is True and _run_row(db_url, run.id)["heartbeat_at"] == ended, "an ended run keeps it"
        beat.stop()
        assert beat.failures == 0
    finally:
        ledger.close()


@pytest.mark.postgres
def test_a_live_run_whose_database_connection_is_cut_for_30s_is_not_reaped_and_finishes(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    """The defect: a run's liveness was its PostgreSQL session alone, so a connection dropped
    for a while had the next command close the run as "killed or lost power" while it worked."""
    direct = sqlalchemy.engine.make_url(pg_url)
    with RpcProxy(devnet.url) as chain, TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as db:
        scenario = Scenario(folder=tmp_path, db_url=pg_url)
        make_custody(devnet, scenario, chain.url, rpc_timeout=120)
        config = scenario.write()
        load(cli, config)
        through_proxy = direct.set(port=db.port).render_as_string(hide_password=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        env.update(RECONCILER_CONFIG=str(config), RECONCILER_DATABASE_URL=through_proxy)
        chain.delay(55, times=1)  # the run's first chain request: it works for about a minute
        proc = subprocess.Popen(
            [RECONCILER, "run", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for(lambda: bool(chain.seen()), "the run to ask the chain")
            runs = json.loads(cli("--config", str(config), "runs", "list", "--json").stdout)["runs"]
            [run_id] = [r["id"] for r in runs if r["status"] == "running"]
            db.cut()
            cut_at = datetime.now(UTC)
            examiner = Ledger(pg_url)
            try:
                outage_end = time.monotonic() + 30
                looks = 0
                while time.monotonic() < outage_end:
                    listed = cli("--config", str(config), "runs", "list", "--json")  # reaps what is provably dead
                    assert listed.code == 0, listed.stderr
                    assert {r["id"]: r["status"] for r in json.loads(listed.stdout)["runs"]}[run_id] == "running"
                    # an instance on another host sees a heartbeat younger than the lease
                    assert examiner.reap_abandoned_runs(this_host="examiner-host") == []
                    looks += 1
                    time.sleep(2)
            finally:
                examiner.close()
            assert db.refused > 0, "the run's process really lost the database"
            db.restore()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert looks >= 5
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["run_id"] == run_id and doc["status"] == "complete"
    assert "event=heartbeat_failed" in err, "the heartbeat noticed the outage"
    row = _run_row(pg_url, run_id)
    assert row["status"] == "complete"
    assert row["heartbeat_at"].replace(tzinfo=UTC) > cut_at + timedelta(seconds=30), "the heartbeat came back"
