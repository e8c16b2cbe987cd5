"""`reconciler health`: is every scheduled job keeping up?

Invariant: healthy only when every job named in ``[schedule]`` has a last run that is complete
and finished no longer ago than twice the job's interval — never "all clear" for a job that never
ran, ran incomplete, or fell behind; a schedule that names no job is not healthy either (nothing
would be watched); and no alert has waited for delivery longer than ``[alerts]
max_pending_age``; with ``[watch]``, no chain's watched head is behind the node's head for longer
than ``[watch] max_lag``. Pure: the caller reads the last runs and the alert backlog, this module
judges them at ``now``.

The interval of "30s", "10m", "1h" is that duration. The interval of a cron expression is the
gap between its fire times around ``now`` (the last one at or before ``now`` and the next one),
in the schedule's time zone: for a regular expression that is the gap between any two
consecutive fire times ("*/5 * * * *": 5 min), and for "0 17 * * mon-fri" it is a day on
weekdays and the whole weekend from Friday 17:00 to Monday 17:00, so Friday's statement is not
called stale on Sunday. Triggers are built as the scheduler builds them (APScheduler's
``CronTrigger.from_crontab``, whose weekday numbers start at Monday = 0: write day names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from reconciler.inputs.config import schedule_interval
from reconciler.inputs.settings import ScheduleSettings
from reconciler.ledger.daemon_store import AlertBacklog
from reconciler.ledger.runs import RunSummary
from reconciler.ledger.watch_store import WatchedHead

JOBS = ("run", "scan", "segregation_statement")
# How far back to look for a cron expression's last fire time; an expression rarer than that
# ("0 0 29 2 *", leap days) is given the gap between its next two fire times.
_LOOKBACKS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=9),
    timedelta(days=40),
    timedelta(days=400),
)


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    problems: list[str] = field(default_factory=list)


def scheduled_jobs(schedule: ScheduleSettings) -> dict[str, str]:
    """job -> its schedule as written, for the jobs ``[schedule]`` names."""
    return {job: spec for job in JOBS if (spec := getattr(schedule, job)) is not None}


def job_interval(spec: str, tz: ZoneInfo, now: datetime) -> timedelta | None:
    """The job's interval at ``now`` (see the module's docstring); None for a cron expression
    that has no fire time around ``now``."""
    fixed = schedule_interval(spec)
    if fixed is not None:
        return fixed
    trigger = CronTrigger.from_crontab(spec, timezone=tz)
    following = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
    last = _last_fire(trigger, now)
    if following is None:
        return None
    if last is None:
        # No fire time in the last year: fall back to the gap between the next two.
        after = trigger.get_next_fire_time(following, following + timedelta(microseconds=1))
        return None if after is None else _gap(following, after)
    return _gap(last, following)


def _gap(earlier: datetime, later: datetime) -> timedelta:
    return later.astimezone(ZoneInfo("UTC")) - earlier.astimezone(ZoneInfo("UTC"))


def _last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now``."""
    for lookback in _LOOKBACKS:
        at: datetime | None = trigger.get_next_fire_time(None, now - lookback)
        if at is None or at > now:
            continue
        while True:
            following: datetime | None = trigger.get_next_fire_time(at, at + timedelta(microseconds=1))
            if following is None or following > now:
                return at
            at = following
    return None


def last_finished_runs(runs: Iterable[RunSummary], jobs: Iterable[str] = JOBS) -> dict[str, RunSummary | None]:
    """From runs listed newest first (`Ledger.list_runs`), each job's newest run that is no
    longer running (a run in progress says nothing yet about whether the job keeps up)."""
    wanted = set(jobs)
    last: dict[str, RunSummary | None] = dict.fromkeys(wanted)
    for run in runs:
        if run.job in wanted and last[run.job] is None and run.status != "running":
            last[run.job] = run
    return last


def assess(schedule: ScheduleSettings, last_runs: Mapping[str, RunSummary | None], now: datetime) -> HealthReport:
    """Judge each scheduled job by its last finished run (``last_runs[job]``; None or absent:
    it never ran) at ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    jobs = scheduled_jobs(schedule)
    if not jobs:
        return HealthReport(False, ["nothing is scheduled: [schedule] names none of run, scan, segregation_statement"])
    tz = ZoneInfo(schedule.timezone)
    problems: list[str] = []
    for job, spec in jobs.items():
        run = last_runs.get(job)
        if run is None:
            problems.append(f"{job}: never ran (scheduled {spec!r})")
            continue
        interval = job_interval(spec, tz, now)
        if interval is None:
            problems.append(f"{job}: the schedule {spec!r} has no fire time around {_when(now)}")
            continue
        if run.status == "running" or run.finished_at is None:
            # Given a run still in progress (callers should pass the last finished one): it
            # keeps up while it is younger than twice the interval.
            running_for = max(now - run.started_at, timedelta(0))
            if running_for > 2 * interval:
                problems.append(
                    f"{job}: run {run.id} started {_when(run.started_at)} is still running after "
                    f"{_span(running_for)}, more than twice its {_span(interval)} interval"
                )
            continue
        if run.status != "complete":
            why = run.reason or "no reason recorded"
            problems.append(f"{job}: last run incomplete: {why} (run {run.id}, finished {_when(run.finished_at)})")
            continue
        age = max(now - run.finished_at, timedelta(0))
        if age > 2 * interval:
            problems.append(
                f"{job}: last complete run {_when(run.finished_at)} is {_span(age)} old, "
                f"more than twice its {_span(interval)} interval"
            )
    return HealthReport(not problems, problems)


def assess_alerts(backlog: AlertBacklog, max_age: timedelta, now: datetime) -> list[str]:
    """The problem, if any, with alert delivery at ``now``: an alert has waited for delivery
    longer than ``max_age`` ([alerts] max_pending_age) — a receiver down, refusing, or too
    slow to answer within an attempt's deadline."""
    oldest = backlog.oldest_created_at
    if backlog.pending == 0 or oldest is None:
        return []
    waited = max(now - oldest, timedelta(0))
    if waited <= max_age:
        return []
    last = f"; its last attempt: {backlog.oldest_error}" if backlog.oldest_error else ""
    return [
        f"alerts: a backlog of {backlog.pending} alert(s) waiting for delivery, the oldest "
        f"({backlog.oldest_event} to the webhook with destination {backlog.oldest_destination}…, "
        f"{backlog.oldest_attempts} attempt(s)) for {_span(waited)}, more than [alerts] max_pending_age "
        f"{_span(max_age)}{last}"
    ]


def assess_watch(
    chains: Iterable[str],
    watched: Mapping[str, WatchedHead],
    node_heads: Mapping[str, int | None],
    max_lag: timedelta,
    now: datetime,
) -> list[str]:
    """The problems of following the head at ``now``: a chain whose watcher has not been caught
    up with the node's head for more than ``max_lag`` — behind it (the node's head read now by
    the caller; None: the node did not answer, the head the watcher last read stands in), or
    not known to be caught up because nobody looked (a stopped daemon, a node it cannot reach)
    — or that was never watched."""
    problems = []
    for chain in chains:
        head = watched.get(chain)
        if head is None:
            problems.append(f"watch: chain {chain}: no head watched yet (is the daemon running with [watch]?)")
            continue
        node = node_heads.get(chain)
        node_head = max(node if node is not None else head.node_head, head.node_head)
        behind = node_head - head.block.number
        lag = max(now - head.caught_up_at, timedelta(0))
        if lag <= max_lag:
            continue
        if behind > 0:
            problems.append(
                f"watch: chain {chain}: the watched head {head.block.number} is {behind} block(s) behind the node's "
                f"head {node_head}, last caught up {_span(lag)} ago, more than [watch] max_lag {_span(max_lag)}"
            )
        else:  # nothing known to be missed, but no one has looked: the watcher is stopped or cut off
            problems.append(
                f"watch: chain {chain}: the watcher last saw it was caught up (head {head.block.number}) "
                f"{_span(lag)} ago, more than [watch] max_lag {_span(max_lag)}: is the daemon running, and can it "
                "reach the node?"
            )
    return problems


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _span(delta: timedelta) -> str:
    """95s, 10m, 1h30m, 4d: seconds below two minutes, else the largest unit and the next one
    when it is not zero (rounded down)."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    first = next(i for i, (_, size) in enumerate(units) if seconds >= size)
    (big, big_size), (small, small_size) = units[first], units[min(first + 1, len(units) - 1)]
    rest = (seconds % big_size) // small_size
    return f"{seconds // big_size}{big}" + (f"{rest}{small}" if rest and small != big else "")
