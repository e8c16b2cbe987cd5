"""`reconciler health` judges each scheduled job's last run at a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reconciler.daemon.health import assess, assess_alerts, job_interval, last_finished_runs
from reconciler.inputs.settings import ScheduleSettings
from reconciler.ledger.daemon_store import AlertBacklog
from reconciler.ledger.runs import RunSummary

NOW = datetime(2026, 11, 18, 18, 0, 0, tzinfo=UTC)  # a Wednesday, 12:00 in Chicago
CHICAGO = ZoneInfo("America/Chicago")


def run(
    job: str, finished_ago: timedelta | None, status: str = "complete", reason: str | None = None, now: datetime = NOW
) -> RunSummary:
    finished = None if finished_ago is None else now - finished_ago
    started = (finished or now) - timedelta(seconds=3)
    return RunSummary(
        id=f"{job}-{status}",
        started_at=started,
        finished_at=finished,
        status=status,
        reason=reason,
        exit_code=0 if status == "complete" else (None if status == "running" else 2),
        trigger="schedule",
        job=job,
    )


def test_jobs_that_finished_complete_within_twice_their_interval_are_healthy() -> None:
    schedule = ScheduleSettings(timezone="America/Chicago", run="*/5 * * * *", scan="30s")
    report = assess(
        schedule, {"run": run("run", timedelta(minutes=9)), "scan": run("scan", timedelta(seconds=59))}, NOW
    )
    assert report.ok and report.problems == []


def test_a_job_older_than_twice_its_interval_is_named_with_its_age_and_interval() -> None:
    schedule = ScheduleSettings(scan="30s")
    report = assess(schedule, {"scan": run("scan", timedelta(seconds=95))}, NOW)
    assert not report.ok
    assert report.problems == [
        "scan: last complete run 2026-11-18T17:58:25+00:00 is 95s old, more than twice its 30s interval"
    ]


def test_exactly_twice_the_interval_is_still_healthy() -> None:
    assert assess(ScheduleSettings(run="10m"), {"run": run("run", timedelta(minutes=20))}, NOW).ok
    assert not assess(ScheduleSettings(run="10m"), {"run": run("run", timedelta(minutes=20, seconds=1))}, NOW).ok


def test_a_cron_job_gets_the_gap_between_its_fire_times() -> None:
    schedule = ScheduleSettings(timezone="America/Chicago", run="*/5 * * * *")
    report = assess(schedule, {"run": run("run", timedelta(minutes=11))}, NOW)
    assert report.problems == [
        "run: last complete run 2026-11-18T17:49:00+00:00 is 11m old, more than twice its 5m interval"
    ]


def test_a_job_that_never_ran_or_ended_incomplete_is_unhealthy() -> None:
    schedule = ScheduleSettings(run="1h", scan="30s", segregation_statement="0 17 * * mon-fri")
    incomplete = run("scan", timedelta(seconds=5), status="incomplete", reason="chain eth: no RPC endpoint answered")
    report = assess(schedule, {"scan": incomplete, "segregation_statement": None}, NOW)
    assert not report.ok
    assert report.problems == [
        "run: never ran (scheduled '1h')",
        "scan: last run incomplete: chain eth: no RPC endpoint answered "
        "(run scan-incomplete, finished 2026-11-18T17:59:55+00:00)",
        "segregation_statement: never ran (scheduled '0 17 * * mon-fri')",
    ]


def test_jobs_not_in_the_schedule_are_not_judged() -> None:
    report = assess(ScheduleSettings(scan="30s"), {"scan": run("scan", timedelta(seconds=1)), "run": None}, NOW)
    assert report.ok


def test_a_schedule_with_no_job_is_not_healthy() -> None:
    report = assess(ScheduleSettings(), {}, NOW)
    assert not report.ok and "nothing is scheduled" in report.problems[0]


def test_a_run_in_progress_keeps_up_until_it_outlasts_twice_the_interval() -> None:
    schedule = ScheduleSettings(run="1m")
    young = run("run", None, status="running")
    assert assess(schedule, {"run": young}, NOW + timedelta(seconds=100)).ok
    report = assess(schedule, {"run": young}, NOW + timedelta(minutes=3))
    assert not report.ok and "is still running after 3m" in report.problems[0]


def test_weekday_statement_is_not_stale_over_the_weekend_but_is_when_monday_is_missed() -> None:
    schedule = ScheduleSettings(timezone="America/Chicago", segregation_statement="0 17 * * mon-fri")
    friday_close = datetime(2026, 11, 20, 17, 0, 5, tzinfo=CHICAGO)
    last = RunSummary(
        "stmt", friday_close - timedelta(seconds=5), friday_close, "complete", None, 0, job="segregation_statement"
    )
    sunday = datetime(2026, 11, 22, 20, 0, tzinfo=CHICAGO)
    assert assess(schedule, {"segregation_statement": last}, sunday).ok
    tuesday = datetime(2026, 11, 24, 17, 30, tzinfo=CHICAGO)
    report = assess(schedule, {"segregation_statement": last}, tuesday)
    assert not report.ok
    assert report.problems == [
        "segregation_statement: last complete run 2026-11-20T17:00:05-06:00 is 4d old, more than twice its 1d interval"
    ]


def test_interval_of_each_form() -> None:
    assert job_interval("30s", CHICAGO, NOW) == timedelta(seconds=30)
    assert job_interval("1h", CHICAGO, NOW) == timedelta(hours=1)
    assert job_interval("*/5 * * * *", CHICAGO, NOW) == timedelta(minutes=5)
    wednesday = datetime(2026, 11, 18, 12, 0, tzinfo=CHICAGO)
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=CHICAGO)
    assert job_interval("0 17 * * mon-fri", CHICAGO, wednesday) == timedelta(days=1)
    assert job_interval("0 17 * * mon-fri", CHICAGO, saturday) == timedelta(days=3)
    # US daylight saving time ends on 2026-11-01: that day is 25 hours long in Chicago
    assert job_interval("0 17 * * *", CHICAGO, datetime(2026, 11, 1, 12, 0, tzinfo=CHICAGO)) == timedelta(hours=25)
    # a rare expression: the gap between fire times around now, a year's lookback is enough
    assert job_interval("0 0 1 1 *", CHICAGO, wednesday) == timedelta(days=365)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        assess(ScheduleSettings(run="1h"), {}, datetime(2026, 1, 1))


def test_last_finished_runs_skips_runs_in_progress_and_other_jobs() -> None:
    runs = [  # newest first, as Ledger.list_runs gives them
        run("run", None, status="running"),
        run("scan", timedelta(seconds=1)),
        run("run", timedelta(minutes=5), status="incomplete", reason="node down"),
        run("run", timedelta(minutes=10)),
    ]
    last = last_finished_runs(runs)
    assert last["run"] is runs[2] and last["scan"] is runs[1] and last["segregation_statement"] is None


# ----------------------------------------------------------------------------- alert backlog


def test_an_alert_waiting_longer_than_max_pending_age_is_a_problem_naming_the_backlog() -> None:
    backlog = AlertBacklog(
        pending=3,
        oldest_created_at=NOW - timedelta(minutes=7, seconds=12),
        oldest_event="break.opened",
        oldest_destination="3fa2c1d0e9b8",
        oldest_attempts=4,
        oldest_error="attempt 4: no complete answer from https://hooks.example within 10s (timed out after 10.0s)",
    )
    [problem] = assess_alerts(backlog, timedelta(minutes=5), NOW)
    assert problem.startswith("alerts: a backlog of 3 alert(s) waiting for delivery, the oldest (break.opened to")
    assert "3fa2c1d0e9b8…, 4 attempt(s)) for 7m12s, more than [alerts] max_pending_age 5m" in problem
    assert problem.endswith("its last attempt: attempt 4: no complete answer from https://hooks.example within 10s "
                            "(timed out after 10.0s)")


@pytest.mark.parametrize(
    "backlog",
    [
        AlertBacklog(0),
        AlertBacklog(1, NOW - timedelta(minutes=5), "run.incomplete", "ab" * 6, 2, "HTTP 500"),  # exactly the limit
        AlertBacklog(9, NOW - timedelta(seconds=10), "break.opened", "ab" * 6, 0, None),
        AlertBacklog(1, NOW + timedelta(seconds=3), "break.opened", "ab" * 6, 0, None),  # a clock ahead: not late
    ],
)
def test_no_alert_waiting_longer_than_max_pending_age_is_no_problem(backlog: AlertBacklog) -> None:
    assert assess_alerts(backlog, timedelta(minutes=5), NOW) == []
