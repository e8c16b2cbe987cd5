"""The daemon: APScheduler 3.x triggers wired to the same plain functions the CLI calls.

Invariants: a firing is identified by (job, scheduled time) — interval triggers are aligned to a
fixed epoch and cron triggers are absolute, so every instance computes the same scheduled times
— and runs only in the instance whose run row claimed it (a unique key in the ledger; the others
skip it); a job never overlaps itself in one instance (max_instances 1) and missed firings are
coalesced: at start each job fires once for its latest scheduled time, which a firing already
done (before the restart, or by another instance) makes a no-op; each instance keeps its own
in-memory job store, rebuilt from the configuration (APScheduler 3.x job stores must not be
shared). Stopping asks the job in progress to stop at its next safe point, where it is recorded
incomplete; nothing is half-written (results are written in one transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.app.documents import run_doc, scan_doc
from reconciler.app.run import RunOptions, run_reconciliation
from reconciler.bootstrap import adapter_for, open_ledger, valuation_reader_for
from reconciler.inputs.config import schedule_interval
from reconciler.inputs.settings import Settings
from reconciler.interrupt import Interrupted
from reconciler.ledger.runs import FiringTaken

log = logging.getLogger(__name__)
_APSCHEDULER_LOG = logging.getLogger("apscheduler.scheduler")


class _SkippedSaidByUs(logging.Filter):
    """Drops APScheduler's own line for a skipped firing: `Daemon._skipped` says it as
    ``event=job_skipped job=… reason=still_running``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)

JOBS = ("run", "scan", "segregation_statement")
EPOCH = datetime(2000, 1, 1)
_LOOKBACKS = (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=9), timedelta(days=400))


def trigger_for(spec: str, tz: ZoneInfo) -> IntervalTrigger | CronTrigger:
    interval = schedule_interval(spec)
    if interval is not None:
        return IntervalTrigger(seconds=int(interval.total_seconds()), start_date=EPOCH.replace(tzinfo=tz), timezone=tz)
    return CronTrigger.from_crontab(spec, timezone=tz)


def last_fire_time(trigger: IntervalTrigger | CronTrigger, now: datetime) -> datetime | None:
    """The latest scheduled time at or before ``now``: the firing a job started now belongs to."""
    for lookback in _LOOKBACKS:
        at = trigger.get_next_fire_time(None, now - lookback)
        if at is None or at > now:
            continue
        while True:
            following = trigger.get_next_fire_time(at, at + timedelta(microseconds=1))
            if following is None or following > now:
                return at  # type: ignore[no-any-return]
            at = following
    return None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job: str
    scheduled_for: datetime
    outcome: str  # complete | breaks | incomplete | skipped
    run_id: str | None
    reason: str | None = None


def execute_job(
    settings: Settings, job: str, scheduled_for: datetime, checkpoint: Callable[[], None] = lambda: None
) -> JobOutcome:
    """Run one scheduled firing exactly as the CLI would, claimed for this instance; a firing
    another instance claimed is skipped."""
    from reconciler.app.statement import run_statement  # the statement pulls in valuation code

    ledger = open_ledger(settings)
    try:
        if job == "segregation_statement":
            report = run_statement(
                settings,
                ledger,
                valuation_reader_for,
                checkpoint=checkpoint,
                trigger="schedule",
                scheduled_for=scheduled_for,
            )
            run, code = report.run, report.exit_code
        else:
            render: Callable[[Any], dict[str, Any]] = (
                (lambda r: run_doc(r, settings)) if job == "run" else (lambda r: scan_doc(r, settings))
            )
            options = RunOptions(
                lock_timeout=settings.lock_timeout,
                trigger="schedule",
                job=job,
                scheduled_for=scheduled_for,
                checkpoint=checkpoint,
                render=render,
            )
            result = run_reconciliation(settings, ledger, adapter_for, options)
            run, code = result.run, result.exit_code
    except FiringTaken:
        return JobOutcome(job, scheduled_for, "skipped", None, "claimed by another instance")
    finally:
        ledger.close()
    outcome = {0: "complete", 1: "breaks"}.get(code, "incomplete")
    return JobOutcome(job, scheduled_for, outcome, run.id, run.reason)


class Daemon:
    """One daemon instance: its own scheduler and job store, jobs from `[schedule]`."""

    def __init__(
        self, settings: Settings, after_job: Callable[[JobOutcome], None] = lambda o: None, alert_every: float = 5.0
    ) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.schedule.timezone)
        self.after_job = after_job
        self.alert_every = alert_every
        self._stop = threading.Event()
        self._stop_signal = int(signal.SIGTERM)
        self.triggers = {
            job: trigger_for(spec, self.tz)
            for job in JOBS
            if (spec := getattr(settings.schedule, job)) is not None
        }
        self.scheduler = BackgroundScheduler(
            timezone=self.tz,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        # A firing due while the job's previous one still runs is skipped (max_instances 1):
        # said in our own words, once, instead of APScheduler's "maximum number of running
        # instances reached".
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        if not any(isinstance(f, _SkippedSaidByUs) for f in _APSCHEDULER_LOG.filters):
            _APSCHEDULER_LOG.addFilter(_SkippedSaidByUs())

    def _skipped(self, event: Any) -> None:
        job = str(event.job_id).removesuffix("-catch-up")
        for at in getattr(event, "scheduled_run_times", None) or [None]:
            log.warning(
                "event=job_skipped job=%s scheduled_for=%s reason=still_running",
                job,
                at.astimezone(UTC).isoformat() if isinstance(at, datetime) else None,
            )

    def checkpoint(self) -> None:
        if self._stop.is_set():
            raise Interrupted(self._stop_signal)

    def fire(self, job: str) -> JobOutcome | None:
        now = datetime.now(self.tz)
        slot = last_fire_time(self.triggers[job], now)
        if slot is None or self._stop.is_set():
            return None
        # Stored in UTC: the same instant for every instance, whatever the schedule's zone, and
        # distinct even in the hour a daylight-saving change repeats.
        scheduled_for = slot.astimezone(UTC)
        try:
            outcome = execute_job(self.settings, job, scheduled_for, self.checkpoint)
        except Exception as exc:  # noqa: BLE001 - one failed firing never stops the daemon
            outcome = JobOutcome(job, scheduled_for, "incomplete", None, f"{type(exc).__name__}: {exc}")
        log.info(
            "event=job_fired job=%s scheduled_for=%s outcome=%s run_id=%s reason=%r",
            job,
            scheduled_for.isoformat(),
            outcome.outcome,
            outcome.run_id,
            outcome.reason,
        )
        try:
            self.after_job(outcome)
        except Exception:  # noqa: BLE001
            log.exception("event=after_job_failed job=%s", job)
        return outcome

    def start(self, extra: Callable[[], None] | None = None) -> None:
        if not self.triggers:
            raise ValueError("nothing is scheduled")
        now = datetime.now(self.tz)
        for job, trigger in self.triggers.items():
            self.scheduler.add_job(self.fire, trigger, args=[job], id=job, name=job)
            # Coalesce what was missed while no instance ran: one firing for the latest slot.
            self.scheduler.add_job(self.fire, "date", run_date=now, args=[job], id=f"{job}-catch-up")
        if extra is not None:
            self.scheduler.add_job(extra, "interval", seconds=self.alert_every, id="deliver-alerts")
        self.scheduler.start()
        log.info("event=daemon_started jobs=%s timezone=%s", ",".join(self.triggers), self.tz.key)

    def stop(self, signum: int = int(signal.SIGTERM)) -> None:
        """Ask the job in progress to stop at its next safe point (recorded incomplete), then
        wait for it."""
        self._stop_signal = signum
        self._stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        log.info("event=daemon_stopped signal=%s", signal.Signals(signum).name)
