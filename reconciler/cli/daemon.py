"""`daemon`, `alerts deliver` and `health`: the scheduled jobs around the clock, queued webhook
alerts, and a supervisor's check.

The scheduler (and APScheduler with it), the metrics and the ledger are imported when a command
runs, not when the command line starts.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, info, open_ledger, out
from reconciler.cli.tables import say, shown
from reconciler.errors import ReconcilerError
from reconciler.interrupt import Interrupted, interruptible

if TYPE_CHECKING:  # the scheduler, metrics and the ledger are imported when a command runs
    from reconciler.inputs.settings import Settings

alerts_app = typer.Typer(help="Alerts queued for webhooks.", no_args_is_help=True)


def daemon(ctx: typer.Context) -> None:
    """Run the jobs of [schedule] (run, scan, segregation_statement) around the clock until
    SIGTERM or SIGINT, which stop it cleanly (the job in progress is recorded incomplete) with
    exit 0. Several instances may share one PostgreSQL ledger: each firing runs exactly once."""
    from reconciler.daemon.metrics import Metrics
    from reconciler.daemon.scheduler import Daemon, JobOutcome
    from reconciler.ledger import daemon_store

    settings = _settings(ctx)
    jobs = [j for j in ("run", "scan", "segregation_statement") if getattr(settings.schedule, j)]
    if not jobs:
        raise ReconcilerError(
            'nothing is scheduled: set [schedule] run, scan or segregation_statement (e.g. run = "*/5 * * * *")'
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

    def after(outcome: JobOutcome) -> None:
        observed = open_ledger(settings)
        try:
            if outcome.run_id is None:
                metrics.observe_job(outcome.job, outcome.outcome)
            else:
                metrics.observe_stored_run(observed.get_run(outcome.run_id), outcome=outcome.outcome)
            metrics.refresh_from_ledger(observed)
        finally:
            observed.close()
        _deliver_alerts(settings)

    runner = Daemon(settings, after_job=after)
    info.print(f"daemon: {', '.join(jobs)} on schedule ({settings.schedule.timezone}); SIGTERM or Ctrl-C stops it")
    stopped_by = int(signal.SIGTERM)
    try:
        with interruptible() as guard:
            runner.start(extra=lambda: _deliver_alerts(settings))
            while True:
                guard.check()
                time.sleep(0.2)
    except Interrupted as exc:
        stopped_by = exc.signum
    finally:
        runner.stop(stopped_by)
        if server is not None:
            server.close()
        guard_file.release()
        ledger.close()
    err.print(f"daemon stopped ({signal.Signals(stopped_by).name})")
    raise typer.Exit(0)


def _deliver_alerts(settings: Settings, checkpoint: Callable[[], None] = lambda: None) -> None:
    """Deliver queued alerts, if webhooks are configured (the daemon's delivery job; what fails
    is retried later with the same event id)."""
    if not settings.webhooks:
        return
    from reconciler.daemon.alerts import deliver_pending

    def stopping() -> bool:
        try:
            checkpoint()
        except Interrupted:
            return True
        return False

    ledger = open_ledger(settings)
    try:
        deliver_pending(ledger, settings, should_stop=stopping)
    except ReconcilerError as exc:
        logging.getLogger("reconciler.alerts").error("event=alert_delivery_failed reason=%r", str(exc))
    finally:
        ledger.close()


@alerts_app.command("deliver")
def alerts_deliver(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Deliver the queued alerts that are due now (the daemon does this every few seconds; use
    this where no daemon runs). Exit 0 when nothing due is left undelivered, 1 otherwise."""
    from reconciler.daemon.alerts import deliver_pending

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        with interruptible() as guard:
            done = deliver_pending(ledger, settings, should_stop=lambda: guard.interrupted)
    finally:
        ledger.close()
    doc = {"delivered": len(done.delivered), "failed": len(done.failed), "pending": done.pending}
    if json_out:
        _emit_json(doc)
    else:
        err.print(f"{doc['delivered']} delivered, {doc['failed']} failed (retried later), {doc['pending']} pending")
    raise typer.Exit(1 if done.failed else 0)


def health(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """For a process supervisor or a load balancer: exit 0 when the last run of every scheduled
    job finished complete within twice its interval, 1 otherwise, saying why."""
    from reconciler.daemon.health import assess
    from reconciler.ledger import daemon_store

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        last = daemon_store.last_finished_runs(ledger)
    finally:
        ledger.close()
    report = assess(settings.schedule, last, datetime.now(UTC))
    if json_out:
        _emit_json({"ok": report.ok, "problems": report.problems})
    else:
        for problem in report.problems:
            say(err, shown(problem))
        out.print("healthy" if report.ok else "UNHEALTHY")
    raise typer.Exit(0 if report.ok else 1)
