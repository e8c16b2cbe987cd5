"""The daemon keeps its promises, as real processes on real Anvil and real ledgers: a trickling
webhook receiver holds up no firing, shows in the log, the metrics and `health`, and does not
keep SIGTERM waiting; a firing skipped because its job still runs is logged and counted; a
firing whose daemon was SIGKILLed is run again once — by the next start, or by another instance
on a shared PostgreSQL ledger — and a statement re-run is as of its firing's time.

Every wait is on an observable effect (a run row, a log line, a connection, a metric) with a
deadline."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from reconciler.daemon.scheduler import STOP_WITHIN
from reconciler.ledger import outbox_store
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import destination_of
from tests.conftest import Scenario
from tests.integration.daemons import DaemonProcess, free_port, scheduled_runs, scrape, wait_for
from tests.integration.helpers import load, make_custody
from tests.integration.rpcproxy import RpcProxy
from tests.integration.webhook_receivers import TricklingReceiver

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
PATH_KEY = "/hook/PATHKEY0123456789"
DEADLINE = 10.0  # a webhook attempt's, in seconds
SLACK = 2.0  # seconds of scheduling noise on a loaded 2-core machine


def _schedule(scenario: Scenario, lines: str) -> None:
    scenario.extra = f'\n[schedule]\ntimezone = "UTC"\n{lines}\n' + scenario.extra


def _outbox(url: str) -> list[outbox_store.OutboxEntry]:
    ledger = Ledger(url)
    try:
        return outbox_store.entries(ledger)
    finally:
        ledger.close()


def _runs_list(cli: Any, config: Path) -> dict[str, dict[str, Any]]:
    listed = cli("--config", str(config), "runs", "list", "--limit", "500", "--json")
    assert listed.code == 0, listed.stderr
    return {r["id"]: r for r in json.loads(listed.stdout)["runs"]}


def test_a_trickling_receiver_holds_up_no_firing_is_seen_everywhere_and_sigterm_still_stops_in_10s(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    port = free_port()
    custody = make_custody(devnet, scenario, devnet.url)
    with TricklingReceiver("body", interval=0.5) as receiver:
        url = receiver.url(PATH_KEY)
        scenario.extra = (
            f'\n[alerts]\nmax_pending_age = "3s"\n\n[[alerts.webhooks]]\nurl = "{url}"\nmin_severity = "error"\n'
            f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        _schedule(scenario, 'run = "1s"')
        config = scenario.write()
        load(cli, config)
        devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 5)  # a theft: alerts to deliver
        daemon = DaemonProcess(config)
        try:
            [first] = wait_for(lambda: receiver.in_flight()[:1], "an attempt hanging on the receiver", 120)

            def runs_meanwhile() -> list[dict[str, Any]]:
                return [
                    r
                    for r in scheduled_runs(scenario.db_url)
                    if r["started_at"] > first.opened_wall and r["status"] != "running"
                ]

            # While the attempt hangs (it lasts 10 s), the schedule goes on: firings keep running.
            meanwhile = wait_for(lambda: runs_meanwhile()[:3] if len(runs_meanwhile()) >= 3 else None, "runs", 30)
            assert first.done.wait(DEADLINE + SLACK), "the attempt never ended"
            assert first.ended_wall is not None and first.closed_by_client_at is not None, "the daemon hung up"
            assert (first.ended_wall - first.opened_wall).total_seconds() < DEADLINE + SLACK
            assert all(r["finished_at"] < first.ended_wall for r in meanwhile), "runs finished while it hung"

            def timed_out() -> dict[Any, float] | None:
                got = scrape(port)
                timeouts = got.get(("reconciler_webhook_attempts_total", (("outcome", "timeout"),)), 0)
                return got if timeouts >= 1 else None

            metrics = wait_for(timed_out, "the timed-out attempt in the metrics", 30)
            assert metrics[("reconciler_alert_backlog", ())] >= 1
            assert metrics[("reconciler_alert_oldest_pending_seconds", ())] > 0
            assert metrics[("reconciler_job_runs_total", (("job", "run"), ("outcome", "breaks")))] >= 3

            def unhealthy() -> dict[str, Any] | None:
                checked = cli("--config", str(config), "health", "--json")
                doc: dict[str, Any] = json.loads(checked.stdout)
                late = [p for p in doc["problems"] if p.startswith("alerts:")]
                return doc if checked.code == 1 and late else None

            health = wait_for(unhealthy, "health to name the alert backlog", 30)
            [late] = [p for p in health["problems"] if p.startswith("alerts:")]
            assert "max_pending_age" in late and "within 10s" in late and "PATHKEY" not in late
            assert health["alerts"]["backlog"] >= 1 and health["alerts"]["oldest_pending_seconds"] > 3
            destination = destination_of(url)[:12]
            timeout_line = rf"event=webhook_timeout destination={destination} elapsed=(\d+\.\d+) deadline=10 "
            assert re.search(timeout_line, daemon.log)

            # SIGTERM while an attempt hangs: the daemon is gone within 10 s.
            wait_for(lambda: [c for c in receiver.in_flight() if c is not first], "another hanging attempt", 60)
            took = daemon.stop()
        finally:
            daemon.ensure_gone()
    assert daemon.proc.returncode == 0, daemon.log
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f}s"
    assert "PATHKEY" not in daemon.log
    assert all(r["status"] != "running" for r in scheduled_runs(scenario.db_url))
    waiting = [e for e in _outbox(scenario.db_url) if e.delivered_at is None]
    assert waiting, "undelivered alerts stay queued for the next start"
    # none is held by a claim of the stopped daemon: each is due again within its short backoff
    assert all(e.next_attempt_at < datetime.now(UTC) + timedelta(seconds=60) for e in waiting)


def test_a_firing_skipped_because_its_job_still_runs_is_logged_and_counted(
    cli: Any, devnet: Devnet, tmp_path: Path
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    port = free_port()
    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=30)
        scenario.extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        _schedule(scenario, 'run = "1s"')
        config = scenario.write()
        load(cli, config)
        proxy.delay(1.5)  # every request: a run takes several of its 1 s intervals
        daemon = DaemonProcess(config)
        try:
            skipped = daemon.wait_for_line(
                r"event=job_fired job=run outcome=skipped reason=still_running scheduled_for=(\S+)", 90
            )

            def counted() -> float:
                return scrape(port).get(("reconciler_job_runs_total", (("job", "run"), ("outcome", "skipped"))), 0)

            assert wait_for(lambda: counted() >= 1, "the skipped firing counted", 30)
            daemon.stop()
        finally:
            daemon.ensure_gone()
    slot = datetime.fromisoformat(skipped.group(1))
    ran = {r["scheduled_for"] for r in scheduled_runs(scenario.db_url)}
    assert slot not in ran, "a skipped firing made no run"
    assert len(re.findall(r"outcome=skipped reason=still_running", daemon.log)) >= 1


def _running_firing(url: str, **match: Any) -> dict[str, Any] | None:
    return next(
        (r for r in scheduled_runs(url) if r["status"] == "running" and all(r[k] == v for k, v in match.items())),
        None,
    )


def test_a_firing_whose_daemon_was_killed_is_run_again_once_by_the_next_start_and_not_a_third_time(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    with RpcProxy(devnet.url) as proxy, TricklingReceiver("ok") as receiver:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=300)
        scenario.extra = f'\n[[alerts.webhooks]]\nurl = "{receiver.url()}"\nmin_severity = "error"\n'
        _schedule(scenario, 'run = "1h"')  # one firing per hour: the catch-up at start is the one
        config = scenario.write()
        load(cli, config)
        proxy.delay(300)  # the node hangs: the firing is mid-run when its daemon dies

        first_daemon = DaemonProcess(config)
        try:
            first = wait_for(lambda: _running_firing(scenario.db_url, rerun_of=None), "the firing to start", 90)
            first_daemon.kill()
        finally:
            first_daemon.ensure_gone()

        second_daemon = DaemonProcess(config)  # the node still hangs: the re-run dies mid-run too
        try:
            rerun = wait_for(
                lambda: _running_firing(scenario.db_url, rerun_of=first["id"]), "the re-run at the next start", 90
            )
            assert (rerun["job"], rerun["scheduled_for"]) == (first["job"], first["scheduled_for"])
            assert rerun["pid"] == second_daemon.pid
            second_daemon.wait_for_line(rf"event=firing_rerun job=run scheduled_for=\S+ rerun_of={first['id']}")
            second_daemon.kill()
        finally:
            second_daemon.ensure_gone()

        proxy.reset()
        third_daemon = DaemonProcess(config)
        try:
            third_daemon.wait_for_line(r"event=lost_firings_checked lost=0", 90)
            third_daemon.stop()
        finally:
            third_daemon.ensure_gone()
    same_firing = [r for r in scheduled_runs(scenario.db_url) if r["scheduled_for"] == first["scheduled_for"]]
    assert [r["id"] for r in same_firing] == [first["id"], rerun["id"]], "run once more, never a third time"
    listed = _runs_list(cli, config)
    assert listed[first["id"]]["status"] == "incomplete" and listed[first["id"]]["rerun_of"] is None
    assert "ended without recording an outcome" in listed[first["id"]]["reason"]
    assert "runs its firing again, once" in listed[first["id"]]["reason"]
    assert listed[rerun["id"]]["rerun_of"] == first["id"] and listed[rerun["id"]]["status"] == "incomplete"
    assert listed[rerun["id"]]["scheduled_for"] == listed[first["id"]]["scheduled_for"]
    assert listed[rerun["id"]]["trigger"] == "schedule" and listed[rerun["id"]]["job"] == "run"
    assert "not run again" in listed[rerun["id"]]["reason"]
    alerted = [json.loads(e.body) for e in _outbox(scenario.db_url)]
    incomplete = {a["run_id"] for a in alerted if a["event"] == "run.incomplete"}
    assert {first["id"], rerun["id"]} <= incomplete, "each death is alerted"


def test_a_killed_segregation_statement_is_run_again_as_of_its_firing_time(
    cli: Any, devnet: Devnet, tmp_path: Path
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=300)
        _schedule(scenario, 'segregation_statement = "20s"')
        config = scenario.write()
        load(cli, config)
        proxy.delay(300)
        killed = DaemonProcess(config)
        try:
            first = wait_for(lambda: _running_firing(scenario.db_url, rerun_of=None), "the statement to start", 90)
            killed.kill()
        finally:
            killed.ensure_gone()
        proxy.reset()
        restarted = DaemonProcess(config)
        try:

            def rerun_done() -> dict[str, Any] | None:
                return next(
                    (
                        r
                        for r in scheduled_runs(scenario.db_url)
                        if r["rerun_of"] == first["id"] and r["status"] != "running"
                    ),
                    None,
                )

            rerun = wait_for(rerun_done, "the statement's re-run to finish", 120)
            restarted.stop()
        finally:
            restarted.ensure_gone()
    assert rerun["job"] == "segregation_statement" and rerun["scheduled_for"] == first["scheduled_for"]
    assert rerun["started_at"] - first["scheduled_for"] > timedelta(seconds=1), "it ran later than its firing"
    shown = cli("--config", str(config), "runs", "show", rerun["id"], "--json")
    assert shown.code == 0, shown.stderr
    assert datetime.fromisoformat(json.loads(shown.stdout)["as_of"]) == first["scheduled_for"], "as of its firing"


@pytest.mark.postgres
def test_another_instance_runs_again_the_firing_of_a_daemon_that_died(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=pg_url)
    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=300)
        _schedule(scenario, 'run = "1h"')
        config = scenario.write()
        load(cli, config)
        proxy.delay(300)
        doomed = DaemonProcess(config)
        others: list[DaemonProcess] = []
        try:
            first = wait_for(lambda: _running_firing(pg_url, rerun_of=None), "the firing to start", 90)
            assert first["pid"] == doomed.pid
            others = [DaemonProcess(config) for _ in range(2)]
            for other in others:  # both are up, and found the firing taken and alive
                other.wait_for_line(r"event=job_fired job=run .*outcome=skipped", 90)
            proxy.reset()
            doomed.kill()

            def rerun_done() -> dict[str, Any] | None:
                return next(
                    (r for r in scheduled_runs(pg_url) if r["rerun_of"] == first["id"] and r["status"] != "running"),
                    None,
                )

            rerun = wait_for(rerun_done, "another instance to run the firing again", 120)
            for other in others:
                assert other.stop() < STOP_WITHIN
        finally:
            doomed.ensure_gone()
            for other in others:
                other.ensure_gone()
    assert rerun["status"] == "complete", rerun["reason"]
    assert rerun["pid"] in {o.pid for o in others} and rerun["scheduled_for"] == first["scheduled_for"]
    same_firing = [r for r in scheduled_runs(pg_url) if r["scheduled_for"] == first["scheduled_for"]]
    assert [r["id"] for r in same_firing] == [first["id"], rerun["id"]], "exactly one instance ran it again"


def test_sigterm_stops_the_daemon_within_10s_even_with_a_job_stuck_in_a_call(
    cli: Any, devnet: Devnet, tmp_path: Path
) -> None:
    """A segregation statement blocked in an RPC call never reaches a safe point before the call
    returns (rpc_timeout, here 300 s): the stopping daemon records its run itself and exits."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with RpcProxy(devnet.url) as proxy:
        make_custody(devnet, scenario, proxy.url, rpc_timeout=300)
        _schedule(scenario, 'segregation_statement = "1h"')
        config = scenario.write()
        load(cli, config)
        proxy.delay(300)
        daemon = DaemonProcess(config)
        try:
            stuck = wait_for(lambda: _running_firing(scenario.db_url), "the statement to block on the node", 90)
            wait_for(lambda: bool(proxy.seen()), "the statement's call to the node")
            took = daemon.stop()
        finally:
            daemon.ensure_gone()
    assert daemon.proc.returncode == 0, daemon.log
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f}s"
    [row] = [r for r in scheduled_runs(scenario.db_url) if r["id"] == stuck["id"]]
    assert row["status"] == "incomplete"
    assert row["reason"].startswith("interrupted by SIGTERM: the daemon stopped before the job reached a safe point")
    assert f"event=run_interrupted run_id={stuck['id']}" in daemon.log
    assert "event=daemon_stopped signal=SIGTERM" in daemon.log
