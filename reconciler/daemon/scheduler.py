"""The daemon: APScheduler 3.x triggers wired to the same plain functions the CLI calls, and the
background workers (webhook delivery) beside them.

Invariants:
- A firing is identified by (job, scheduled time) — interval triggers are aligned to a fixed
  epoch and cron triggers are absolute, so every instance computes the same scheduled times —
  and runs only in the instance whose run row claimed it (a unique key in the ledger; the others
  skip it). Each instance keeps its own in-memory job store, rebuilt from the configuration
  (APScheduler 3.x job stores must not be shared).
- Exactly once: a firing whose run's process died (reaped: SIGKILL, power loss) is run again,
  once, by the next start of a daemon or by another instance within ``RECOVER_EVERY``; the
  re-run is claimed in the ledger (one instance wins) and says what it re-runs (``rerun_of``); a
  re-run that dies too is not run again. A segregation statement re-run is as of its firing's
  scheduled time, not of when it runs.
- A job never overlaps itself in one instance; a firing skipped because the job's previous run
  still runs is logged (``event=job_fired … outcome=skipped reason=still_running``) and counted,
  like every other outcome. Missed firings are coalesced: at start each job fires once for its
  latest scheduled time, which a firing already done (before the restart, or by another
  instance) makes a no-op.
- Jobs never wait on a webhook: they only queue alerts (in their own transaction) and wake the
  delivery worker.
- Stopping takes at most ``STOP_WITHIN`` seconds whatever is in flight: the jobs in progress are
  asked to stop at their next safe point, where each records its run incomplete; a job that has
  not got there in time has its run recorded incomplete by the stopping thread instead; workers
  that do not end in time are abandoned (their claimed alerts handed back). Jobs and workers run
  in daemon threads, so nothing left behind holds the process up. Nothing is half-written
  (results are written in one transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.app.documents import break_doc, run_doc, scan_doc
from reconciler.app.run import RunOptions, run_reconciliation
from reconciler.app.shards import help_firing, sharded
from reconciler.bootstrap import adapter_for, open_ledger, valuation_reader_for
from reconciler.daemon.workers import Worker
from reconciler.errors import ReconcilerError
from reconciler.inputs.config import schedule_interval
from reconciler.inputs.settings import Settings
from reconciler.interrupt import Interrupted, signal_name
from reconciler.ledger import daemon_store
from reconciler.ledger.runs import FiringTaken

log = logging.getLogger(__name__)
_APSCHEDULER_LOG = logging.getLogger("apscheduler.scheduler")


class _SkippedSaidByUs(logging.Filter):
    """Drops APScheduler's own line for a skipped firing: `Daemon._skipped` says it as
    ``event=job_fired job=… outcome=skipped reason=still_running``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)

JOBS = ("run", "scan", "segregation_statement")
EPOCH = datetime(2000, 1, 1)
_LOOKBACKS = (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=9), timedelta(days=400))
STOP_WITHIN = 10.0  # seconds from SIGTERM to exit, whatever is in flight
_STOP_BUDGET = STOP_WITHIN - 2.5  # for `Daemon.stop`; the rest is the caller's (metrics server, exit)
_RECORD_BUDGET = 1.5  # of it, kept to record the runs of jobs that did not stop in time
RECOVER_EVERY = 15.0  # seconds between looks for firings whose run's process died
_RECOVER_ID = "recover-lost-firings"


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
    rerun_of: str | None = None  # the firing's earlier run, whose process died


def execute_job(
    settings: Settings,
    job: str,
    scheduled_for: datetime,
    checkpoint: Callable[[], None] = lambda: None,
    rerun_of: str | None = None,
) -> JobOutcome:
    """Run one scheduled firing exactly as the CLI would, claimed for this instance; a firing
    another instance claimed is skipped. With ``rerun_of`` (the firing's run whose process
    died) the lost firing is claimed and run again; a segregation statement then is as of the
    firing's scheduled time."""
    from reconciler.app.statement import run_statement, statement_document  # pulls in valuation code

    ledger = open_ledger(settings)
    try:
        if job == "segregation_statement":
            report = run_statement(
                settings,
                ledger,
                valuation_reader_for,
                # A firing on time is as of now; a re-run is as of the time it should have run.
                as_of=scheduled_for.astimezone(ZoneInfo(settings.segregation.timezone)) if rerun_of else None,
                checkpoint=checkpoint,
                trigger="schedule",
                scheduled_for=scheduled_for,
                rerun_of=rerun_of,
            )
            run, code = report.run, report.exit_code
            # Kept with the run as `segregation statement --json` prints it: `runs show` gives
            # each day's scheduled statement back as it was.
            document = statement_document(report, settings, [break_doc(b, settings) for b in report.breaks])
            try:
                ledger.save_document(run.id, document)
            except ReconcilerError as exc:
                log.error("event=run_document_unsaved run_id=%s reason=%r", run.id, str(exc))
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
                rerun_of=rerun_of,
                shards=settings.schedule.shards,
            )
            result = run_reconciliation(settings, ledger, adapter_for, options)
            run, code = result.run, result.exit_code
    except FiringTaken:
        why = "re-run by another instance" if rerun_of else "claimed by another instance"
        if job == "run" and sharded(settings, ledger):
            # The firing is shared: help with its units (the claimant assembles the run).
            try:
                done = help_firing(settings, ledger, adapter_for, job, scheduled_for, checkpoint)
            finally:
                ledger.close()
            why = f"{why}; {done} of its units done here"
        else:
            ledger.close()
        return JobOutcome(job, scheduled_for, "skipped", None, why, rerun_of)
    except BaseException:
        ledger.close()
        raise
    ledger.close()
    outcome = {0: "complete", 1: "breaks"}.get(code, "incomplete")
    return JobOutcome(job, scheduled_for, outcome, run.id, run.reason, rerun_of)


class DaemonThreadExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler ships no types
    """Each job in a daemon thread of its own. APScheduler's default pool uses
    concurrent.futures, whose threads the interpreter joins at exit: a job stuck in a call would
    hold a stopping daemon up for as long as the call lasts."""

    def _do_submit_job(self, job: Any, run_times: Any) -> None:
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:  # noqa: BLE001 - reported to the scheduler as APScheduler's pools do
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)

        threading.Thread(target=target, name=f"job-{job.id}", daemon=True).start()


class Daemon:
    """One daemon instance: its own scheduler and job store, jobs from `[schedule]`, and the
    background workers it starts and stops with them."""

    def __init__(
        self,
        settings: Settings,
        after_job: Callable[[JobOutcome], None] = lambda o: None,
        workers: Sequence[Worker] = (),
        recover_every: float = RECOVER_EVERY,
    ) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.schedule.timezone)
        self.after_job = after_job
        self.workers = list(workers)
        self.recover_every = recover_every
        self._stop = threading.Event()
        self._stop_signal = int(signal.SIGTERM)
        self.triggers = {
            job: trigger_for(spec, self.tz)
            for job in JOBS
            if (spec := getattr(settings.schedule, job)) is not None
        }
        # A job's firings (its trigger's and its catch-up) never overlap in this instance.
        self._busy = {job: threading.Lock() for job in self.triggers}
        self._active = 0  # firings and re-runs in progress
        self._idle = threading.Condition()
        self._rerunning: set[str] = set()  # runs whose lost firing this instance is re-running
        self._recovered_once = False
        self.scheduler = BackgroundScheduler(
            timezone=self.tz,
            executors={"default": DaemonThreadExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        # said in our own words (`_skipped`), once, instead of APScheduler's "maximum number of
        # running instances reached"
        if not any(isinstance(f, _SkippedSaidByUs) for f in _APSCHEDULER_LOG.filters):
            _APSCHEDULER_LOG.addFilter(_SkippedSaidByUs())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def checkpoint(self) -> None:
        if self._stop.is_set():
            raise Interrupted(self._stop_signal)

    # -------------------------------------------------------------- firings

    def fire(self, job: str) -> JobOutcome | None:
        now = datetime.now(self.tz)
        slot = last_fire_time(self.triggers[job], now)
        if slot is None or self._stop.is_set():
            return None
        # Stored in UTC: the same instant for every instance, whatever the schedule's zone, and
        # distinct even in the hour a daylight-saving change repeats.
        scheduled_for = slot.astimezone(UTC)
        busy = self._busy[job]
        if not busy.acquire(blocking=False):
            return self._skipped(job, scheduled_for)
        try:
            return self._execute(job, scheduled_for)
        finally:
            busy.release()

    def _execute(self, job: str, scheduled_for: datetime, rerun_of: str | None = None) -> JobOutcome | None:
        with self._activity() as started:
            if not started:
                return None  # the daemon is stopping: no run begins any more
            try:
                outcome = execute_job(self.settings, job, scheduled_for, self.checkpoint, rerun_of)
            except Exception as exc:  # noqa: BLE001 - one failed firing never stops the daemon
                outcome = JobOutcome(job, scheduled_for, "incomplete", None, f"{type(exc).__name__}: {exc}", rerun_of)
            log.info(
                "event=job_fired job=%s scheduled_for=%s outcome=%s run_id=%s reason=%r%s",
                job,
                scheduled_for.isoformat(),
                outcome.outcome,
                outcome.run_id,
                outcome.reason,
                f" rerun_of={rerun_of}" if rerun_of else "",
            )
            self._report(outcome)
            return outcome

    def _skipped(self, job: str, scheduled_for: datetime) -> JobOutcome:
        """A firing not run because the job's previous run (in this instance) still runs."""
        outcome = JobOutcome(job, scheduled_for, "skipped", None, "still_running")
        log.warning(
            "event=job_fired job=%s outcome=skipped reason=still_running scheduled_for=%s",
            job,
            scheduled_for.isoformat(),
        )
        self._report(outcome)
        return outcome

    def _on_max_instances(self, event: Any) -> None:
        """APScheduler skipped a firing: the job's previous run has not ended."""
        job = self._job_of(str(event.job_id))
        if job is None:
            return  # not a firing (the look for lost firings, still busy with a re-run)
        for at in event.scheduled_run_times:
            self._skipped(job, at.astimezone(UTC))

    def _job_of(self, job_id: str) -> str | None:
        name = job_id.removesuffix("-catch-up")
        return name if name in self.triggers else None

    def _report(self, outcome: JobOutcome) -> None:
        try:
            self.after_job(outcome)
        except Exception:  # noqa: BLE001
            log.exception("event=after_job_failed job=%s", outcome.job)

    @contextmanager
    def _activity(self) -> Iterator[bool]:
        """Count a firing in progress, so that `stop` knows what to wait for; False (and not
        counted) once the daemon is stopping. The check and the count are one step under the
        lock `stop` takes to set the flag: no firing slips in after `stop` looked."""
        with self._idle:
            if self._stop.is_set():
                started = False
            else:
                started = True
                self._active += 1
        try:
            yield started
        finally:
            if started:
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()

    # -------------------------------------------------------------- lost firings

    def recover(self) -> list[JobOutcome]:
        """Run again, once, every firing of this instance's jobs whose run's process died.
        Opening the ledger closes the runs whose process is provably gone (and marks their
        firings lost); the re-run's claim in the ledger lets one instance only run each."""
        if self._stop.is_set():
            return []
        try:
            ledger = open_ledger(self.settings)
            try:
                lost = daemon_store.lost_firings(ledger, list(self.triggers))
            finally:
                ledger.close()
        except ReconcilerError as exc:
            log.error("event=recover_failed reason=%r", str(exc))
            return []
        # Said at start and whenever something was lost; quietly (debug) otherwise.
        level = logging.INFO if lost or not self._recovered_once else logging.DEBUG
        log.log(level, "event=lost_firings_checked lost=%d", len(lost))
        self._recovered_once = True
        outcomes: list[JobOutcome] = []
        for firing in lost:
            if self._stop.is_set():
                break
            if firing.run_id in self._rerunning:
                continue
            log.warning(
                "event=firing_rerun job=%s scheduled_for=%s rerun_of=%s reason=process_gone",
                firing.job,
                firing.scheduled_for.isoformat(),
                firing.run_id,
            )
            self._rerunning.add(firing.run_id)
            try:
                outcome = self._execute(firing.job, firing.scheduled_for, rerun_of=firing.run_id)
                if outcome is not None:
                    outcomes.append(outcome)
            finally:
                self._rerunning.discard(firing.run_id)
        return outcomes

    # -------------------------------------------------------------- start and stop

    def start(self) -> None:
        if not self.triggers and not self.settings.watch.enabled:
            raise ValueError("nothing is scheduled")
        now = datetime.now(self.tz)
        # First what died with an earlier process (reaped and re-run, once), then the schedule.
        self.scheduler.add_job(
            self.recover, "interval", seconds=self.recover_every, next_run_time=now, id=_RECOVER_ID, name=_RECOVER_ID
        )
        for job, trigger in self.triggers.items():
            self.scheduler.add_job(self.fire, trigger, args=[job], id=job, name=job)
            # Coalesce what was missed while no instance ran: one firing for the latest slot.
            self.scheduler.add_job(self.fire, "date", run_date=now, args=[job], id=f"{job}-catch-up")
        for worker in self.workers:
            worker.start()
        self.scheduler.start()
        log.info(
            "event=daemon_started jobs=%s timezone=%s workers=%s",
            ",".join(self.triggers),
            self.tz.key,
            ",".join(w.name for w in self.workers) or "none",
        )

    def stop(self, signum: int = int(signal.SIGTERM), within: float = _STOP_BUDGET) -> None:
        """Stop within ``within`` seconds, whatever is in flight: no firing starts any more; the
        jobs in progress stop at their next safe point, recording their runs incomplete, and a
        job that has not got there in time has its run recorded incomplete here instead;
        workers are asked to stop, and those that do not end in time are abandoned."""
        deadline = time.monotonic() + within
        with self._idle:
            self._stop_signal = signum
            self._stop.set()
        for worker in self.workers:
            worker.request_stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        settle_by = deadline - _RECORD_BUDGET
        settled = self._wait_idle(settle_by)
        late = [w for w in self.workers if not w.join(settle_by - time.monotonic())]
        if late or not settled:
            _bounded(lambda: self._leave_behind(late, settled, signum), deadline - time.monotonic())
        log.info("event=daemon_stopped signal=%s", signal.Signals(signum).name)

    def _wait_idle(self, by: float) -> bool:
        with self._idle:
            while self._active:
                left = by - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _leave_behind(self, late: Sequence[Worker], settled: bool, signum: int) -> None:
        for worker in late:
            log.warning("event=worker_abandoned worker=%s reason=stopping", worker.name)
            worker.abandon()
        if settled:
            return
        reason = (
            f"interrupted by {signal_name(signum)}: the daemon stopped before the job reached a safe point "
            f"(it stops within {STOP_WITHIN:g}s); nothing it saw was saved"
        )
        ledger = open_ledger(self.settings)
        try:
            closed = ledger.abandon_runs_of_this_process(reason)
        finally:
            ledger.close()
        for run_id in closed:
            log.error("event=run_interrupted run_id=%s reason=%r", run_id, reason)


def _bounded(fn: Callable[[], None], seconds: float) -> None:
    """Run ``fn`` in a daemon thread and wait for it at most ``seconds`` (at least a little):
    a stopping daemon never waits on the database for longer than it has."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - logged below, in the stopping thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="stopping", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.2))
    if thread.is_alive():
        log.error("event=stop_cleanup_unfinished reason='the database did not answer in time'")
    elif failure:
        log.error("event=stop_cleanup_failed reason=%r", str(failure[0]))
