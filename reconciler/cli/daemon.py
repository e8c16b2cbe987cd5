"""`daemon`, `alerts deliver` and `health`: the scheduled jobs around the clock, queued webhook
alerts, and a supervisor's check.

The scheduler (and APScheduler with it), the metrics and the ledger are imported when a command
runs, not when the command line starts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, info, open_ledger, out
from reconciler.cli.tables import say, shown
from reconciler.errors import ReconcilerError
from reconciler.inputs.settings import Settings
from reconciler.interrupt import Interrupted, interruptible

if TYPE_CHECKING:  # the scheduler, metrics and the ledger are imported when a command runs
    from reconciler.ledger.watch_store import WatchedHead

alerts_app = typer.Typer(help="Alerts queued for webhooks.", no_args_is_help=True)


def daemon(ctx: typer.Context) -> None:
    """Run the jobs of [schedule] (run, scan, segregation_statement) around the clock until
    SIGTERM or SIGINT, which stop it within 10 seconds (the job in progress is recorded
    incomplete) with exit 0. Alerts are delivered beside the jobs, never in their way. Several
    instances may share one PostgreSQL ledger: each firing runs exactly once, and a firing whose
    process died is run again, once."""
    from chains.evm.adapter import EvmAdapter
    from reconciler.app.run import RunReport
    from reconciler.bootstrap import adapter_for
    from reconciler.daemon.metrics import Metrics
    from reconciler.daemon.scheduler import STOP_WITHIN, Daemon, JobOutcome
    from reconciler.daemon.watch import watchers
    from reconciler.daemon.workers import DeliveryWorker
    from reconciler.ledger import daemon_store

    settings = _settings(ctx)
    jobs = [j for j in ("run", "scan", "segregation_statement") if getattr(settings.schedule, j)]
    if not jobs and not settings.watch.enabled:
        raise ReconcilerError(
            'nothing is scheduled: set [schedule] run, scan or segregation_statement (e.g. run = "*/5 * * * *"), '
            "or [watch] enabled = true"
        )
    ledger = open_ledger(settings)
    guard_file = daemon_store.DaemonGuard(ledger)
    guard_file.acquire()
    # every firing's outcome is logged (INFO) unless the log level was raised with --debug
    logging.getLogger("reconciler").setLevel(min(logging.getLogger("reconciler").getEffectiveLevel(), logging.INFO))
    metrics = Metrics()
    server = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    if server is not None:
        info.print(f"metrics at {server.url}")
    delivery = DeliveryWorker(settings, metrics)

    def watched(report: RunReport) -> None:
        delivery.wake()  # a watched head's alerts go out now
        changed = any(report.run.id in (b.last_run_id, b.resolved_run_id) for b in report.breaks)
        if report.run.status == "complete" and changed:  # the open-break gauges, when they moved
            observed = open_ledger(settings)
            try:
                metrics.refresh_from_ledger(observed)
            finally:
                observed.close()

    watch = watchers(settings, adapter_for, EvmAdapter.from_settings, metrics, watched)

    def after(outcome: JobOutcome) -> None:
        if outcome.run_id is None:
            metrics.observe_job(outcome.job, outcome.outcome)
            return
        observed = open_ledger(settings)
        try:
            metrics.observe_stored_run(observed.get_run(outcome.run_id), outcome=outcome.outcome)
            metrics.refresh_from_ledger(observed)
        finally:
            observed.close()
        delivery.wake()  # what the job queued goes out now, from the worker's thread

    runner = Daemon(settings, after_job=after, workers=[delivery, *watch])
    following = f"; following the head of {', '.join(settings.chains)}" if watch else ""
    scheduled = f"{', '.join(jobs)} on schedule ({settings.schedule.timezone})" if jobs else "nothing scheduled"
    info.print(f"daemon: {scheduled}{following}; SIGTERM or Ctrl-C stops it")
    stopped_by = int(signal.SIGTERM)
    told = time.monotonic()
    try:
        with interruptible() as guard:
            runner.start()
            while True:
                guard.check()
                time.sleep(0.2)
    except Interrupted as exc:
        stopped_by = exc.signum
        told = time.monotonic()
    finally:
        runner.stop(stopped_by)
        if server is not None:
            server.close()
        guard_file.release()
        ledger.close()
    err.print(f"daemon stopped ({signal.Signals(stopped_by).name})")
    _exit_by(told + STOP_WITHIN - 0.5)
    raise typer.Exit(0)


def _exit_by(deadline: float) -> None:
    """The last resort of the promise to stop in time: the interpreter joins every non-daemon
    thread at exit (concurrent.futures' workers, reading chains for a run, among them), and one
    stuck in a call would hold the process up. Jobs and workers run in daemon threads, so such a
    thread is one a job left behind: it gets until ``deadline``, then the process ends anyway
    (its run was recorded when the daemon stopped)."""
    stuck = [t for t in threading.enumerate() if not t.daemon and t is not threading.current_thread()]
    for thread in stuck:
        thread.join(max(deadline - time.monotonic(), 0.0))
    left = [t.name for t in stuck if t.is_alive()]
    if not left:
        return
    logging.getLogger("reconciler.daemon").warning("event=daemon_exit_forced threads=%s", ",".join(left))
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


@alerts_app.command("deliver")
def alerts_deliver(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Deliver the queued alerts that are due now (the daemon does this every few seconds; use
    this where no daemon runs). Each attempt takes at most 10 seconds, whatever the receiver
    does. Exit 0 when nothing due is left undelivered, 1 otherwise."""
    from reconciler.daemon.alerts import deliver_pending

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        with interruptible() as guard:
            done = deliver_pending(ledger, settings, should_stop=lambda: guard.interrupted)
    finally:
        ledger.close()
    doc = {
        "delivered": len(done.delivered),
        "failed": len(done.failed),
        "pending": done.pending,
        "timed_out": len(done.timed_out),
    }
    if json_out:
        _emit_json(doc)
    else:
        timed = f" ({doc['timed_out']} timed out)" if doc["timed_out"] else ""
        err.print(
            f"{doc['delivered']} delivered, {doc['failed']} failed{timed} (retried later), {doc['pending']} pending"
        )
    raise typer.Exit(1 if done.failed else 0)


def health(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """For a process supervisor or a load balancer: exit 0 when the last run of every scheduled
    job finished complete within twice its interval and no alert has waited for delivery longer
    than [alerts] max_pending_age (5 minutes), 1 otherwise, saying why."""
    from reconciler.daemon.health import HealthReport, assess, assess_alerts, assess_watch, scheduled_jobs
    from reconciler.ledger import daemon_store, watch_store
    from reconciler.ledger.trail import destination_of

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        last = daemon_store.last_finished_runs(ledger)
        # Alerts of the webhooks configured now (a removed webhook's alerts wait for its return).
        backlog = daemon_store.alert_backlog(ledger, {destination_of(w.url) for w in settings.webhooks})
        watched = watch_store.watched_heads(ledger) if settings.watch.enabled else {}
    finally:
        ledger.close()
    node_heads = _node_heads(settings) if settings.watch.enabled else {}
    now = datetime.now(UTC)
    if settings.watch.enabled and not scheduled_jobs(settings.schedule):
        report = HealthReport(True)  # following the head only: nothing scheduled to fall behind
    else:
        report = assess(settings.schedule, last, now)
    late = assess_alerts(backlog, settings.alert_max_pending_age, now)
    if settings.watch.enabled:
        late += assess_watch(settings.chains, watched, node_heads, settings.watch.max_lag, now)
    if late:
        report = HealthReport(False, [*report.problems, *late])
    oldest = backlog.oldest_created_at
    if json_out:
        _emit_json(
            {
                "ok": report.ok,
                "problems": report.problems,
                "alerts": {
                    "backlog": backlog.pending,
                    "oldest_pending_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
                },
                **({"watch": _watch_doc(settings, watched, node_heads, now)} if settings.watch.enabled else {}),
            }
        )
    else:
        for problem in report.problems:
            say(err, shown(problem))
        out.print("healthy" if report.ok else "UNHEALTHY")
    raise typer.Exit(0 if report.ok else 1)


def _watch_doc(
    settings: Settings, watched: Mapping[str, WatchedHead], node_heads: Mapping[str, int | None], now: datetime
) -> dict[str, Any]:
    """Per chain: the watched head, the node's head as read now (null: no answer) and how long
    ago the watcher was last caught up (null: never watched)."""
    doc: dict[str, Any] = {}
    for chain in settings.chains:
        head = watched.get(chain)
        doc[chain] = {
            "watched_head": head.block.number if head else None,
            "node_head": node_heads.get(chain),
            "caught_up_seconds_ago": round((now - head.caught_up_at).total_seconds(), 1) if head else None,
        }
    return doc


def _node_heads(settings: Settings) -> dict[str, int | None]:
    """Each chain's head as its node answers now (None where it does not answer: the head the
    watcher last read stands in)."""
    from chains.evm.adapter import EvmAdapter

    heads: dict[str, int | None] = {}
    for chain in settings.chains.values():
        adapter = EvmAdapter.from_settings(chain)
        try:
            heads[chain.name] = adapter.head()
        except Exception:  # noqa: BLE001 - an unreachable node: judged by what the watcher last read
            heads[chain.name] = None
        finally:
            adapter.close()
    return heads
