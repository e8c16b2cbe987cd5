"""Whether the process behind a ``running`` run still lives: the heartbeat its process writes,
and the judgement the reaper makes.

Invariants: a run is judged gone only on proof that its process is, never on a lost database
session alone (a connection that drops and comes back leaves its run alive):

- on PostgreSQL, a run whose liveness lock (a session advisory lock its process holds) is still
  held lives;
- otherwise, on the run's own host, its process is gone when its pid no longer exists or now
  belongs to a process that started at another time (a reused pid);
- from another host (or for a run without a pid), its process is gone when its heartbeat is
  older than the lease: the process refreshes it every ``HEARTBEAT_EVERY`` while the run lasts,
  in its own short transaction, and a connection cut for less than the lease only delays it.

Heartbeats are written and judged by one clock, the database's on PostgreSQL (hosts' clocks may
disagree), so only the lease decides; SQLite ledgers are used from one host and use its clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from reconciler.ledger.locks import postgres_run_alive, process_alive
from reconciler.ledger.models import Run

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=10)
HEARTBEAT_LEASE = timedelta(minutes=2)


def now_expression(dialect: str) -> Any:
    """The value a heartbeat is written with: the database's UTC time on PostgreSQL, this
    host's on SQLite (stored, as every time, in UTC)."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.now())
    return datetime.now(UTC)


def database_now(conn: Connection) -> datetime:
    """The clock heartbeats are judged by (see `now_expression`), as naive UTC."""
    if conn.dialect.name == "postgresql":
        at = conn.execute(select(func.timezone("UTC", func.now()))).scalar_one()
        assert isinstance(at, datetime)
        return at.replace(tzinfo=None)
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a run's process is known to be gone."""

    how: str  # "process" (its pid is gone) or "heartbeat" (silent past the lease)
    detail: str


def judge(conn: Connection, run: Run, this_host: str, now: datetime) -> Verdict | None:
    """A `Verdict` when the run's process is provably gone; None while it lives or cannot be
    judged. ``now`` comes from `database_now`."""
    if conn.dialect.name == "postgresql" and postgres_run_alive(conn, run.id):
        return None
    if run.host == this_host and run.pid is not None:
        if process_alive(run.pid, run.proc_start):
            return None
        return Verdict("process", f"process {run.pid} on {run.host} is gone")
    last = run.heartbeat_at or run.started_at
    silent = _naive(now) - _naive(last)
    if silent <= HEARTBEAT_LEASE:
        return None
    return Verdict(
        "heartbeat",
        f"no heartbeat from {run.host or 'its host'} for {int(silent.total_seconds())}s "
        f"(a live run refreshes it every {int(HEARTBEAT_EVERY.total_seconds())}s; "
        f"lease {int(HEARTBEAT_LEASE.total_seconds())}s)",
    )


class Heartbeat:
    """Refreshes one run's ``heartbeat_at`` every ``every`` from a thread of its own, each time
    in a short transaction of its own, until `stop`. A failed refresh (the database unreachable
    for a while) is logged and tried again at the next beat: it never stops the run."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        describe: Callable[[BaseException], str],
        every: timedelta = HEARTBEAT_EVERY,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.every = every.total_seconds()
        self._describe = describe
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}", daemon=True)
        self.failures = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No beat starts after this; one in flight matches no row once the run has ended."""
        self._stopped.set()

    def beat(self) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Run)
                    .where(col(Run.id) == self.run_id, col(Run.status) == "running")
                    .values(heartbeat_at=now_expression(conn.dialect.name))
                )
        except SQLAlchemyError as exc:
            self.failures += 1
            log.warning("event=heartbeat_failed run_id=%s reason=%r", self.run_id, self._describe(exc))
            return False
        return True

    def _loop(self) -> None:
        while not self._stopped.wait(self.every):
            self.beat()
