"""The units of a sharded firing: (chain, shard) slices of a run's wallets that any daemon on the
same PostgreSQL ledger claims, reads and hands back.

Invariants:
- PostgreSQL is the coordinator: a unit is claimed in one transaction that locks its row with
  ``FOR UPDATE SKIP LOCKED`` (two claimants never wait on each other, and never get the same
  unit) and stamps it with the claimant's host, pid and process start and a heartbeat.
- A unit whose claimant is provably gone (on this host: its pid no longer lives, or is another
  process; from another host: its heartbeat is older than the lease) is claimed again; each
  claim counts an attempt, and a unit whose claimants died ``MAX_UNIT_ATTEMPTS`` times is
  failed, naming why. A unit only of a run still ``running`` is claimed.
- A claim's attempt number fences its result: a process judged gone that comes back writes
  nothing once the unit was claimed again.
- A unit that fails (its chain unreadable from that process, a configuration that differs) is
  not retried: it is ``failed`` with the reason, and the run that owns it is incomplete naming
  it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BlockRef
from reconciler.errors import LedgerError
from reconciler.ledger.base import _first_line, redact_url
from reconciler.ledger.daemon_models import DONE, FAILED, PENDING, RUNNING, JobFiring, RunUnit
from reconciler.ledger.liveness import HEARTBEAT_EVERY, HEARTBEAT_LEASE, database_now, now_expression
from reconciler.ledger.locks import host_name, process_alive, process_start
from reconciler.ledger.models import Run
from reconciler.ledger.store import Ledger

log = logging.getLogger(__name__)

MAX_UNIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Claimed:
    """A unit this process holds: what to read, and the attempt that fences its result."""

    id: int
    run_id: str
    chain: str
    shard: int
    shards: int
    block: BlockRef
    wallets: int
    wallets_digest: str
    attempt: int
    views: str | None = None  # the run's views of the ledger (reconciler.app.units.views_to_json)


@dataclass(frozen=True, slots=True)
class UnitState:
    chain: str
    shard: int
    status: str
    attempts: int
    instance: str | None
    elapsed_ms: int | None
    error: str | None
    result: str | None


class UnitsPublished(LedgerError):
    """A chain's units were published for this run already (its pin was taken again)."""


def _fail(ledger: Ledger, exc: SQLAlchemyError) -> LedgerError:
    return LedgerError(f"database {redact_url(ledger.url)} failed: {_first_line(exc, ledger.url)}")


def publish(
    ledger: Ledger,
    run_id: str,
    chain: str,
    block: BlockRef,
    shards: list[tuple[int, int, str]],
    views: str | None = None,
) -> None:
    """The units of one chain of a run, pending: (shard, wallets, digest) each, all at ``block``,
    each read through ``views`` (the run's views of the ledger). Publishing again (the chain
    re-pinned after a reorg) is refused: a reorg fails the chain."""
    try:
        with ledger._session() as s:
            taken = select(col(RunUnit.id)).where(col(RunUnit.run_id) == run_id, col(RunUnit.chain) == chain)
            if s.scalar(taken.limit(1)) is not None:
                raise UnitsPublished(f"the units of chain {chain} of run {run_id} were published already")
            s.add_all(
                RunUnit(
                    run_id=run_id,
                    chain=chain,
                    shard=shard,
                    shards=len(shards),
                    block_number=block.number,
                    block_hash=block.hash,
                    wallets=count,
                    wallets_digest=digest,
                    views=views,
                )
                for shard, count, digest in shards
            )
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc


def _gone(row: RunUnit, now: datetime, this_host: str) -> str | None:
    """Why the process holding ``row`` is known to be gone; None while it lives."""
    if row.host == this_host and row.pid is not None:
        if process_alive(row.pid, row.proc_start):
            return None
        return f"process {row.pid} on {row.host} is gone"
    last = row.heartbeat_at or row.claimed_at
    if last is None:
        return "it was never heard of"
    silent = now - (last if last.tzinfo else last.replace(tzinfo=UTC))
    if silent <= HEARTBEAT_LEASE:
        return None
    return f"no heartbeat from {row.host} for {int(silent.total_seconds())}s"


def _hung(row: RunUnit, now: datetime, after: timedelta | None) -> str | None:
    """Why a live claimant is taken to be hung: it has held the unit longer than ``after``."""
    if after is None or row.claimed_at is None:
        return None
    held = now - (row.claimed_at if row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=UTC))
    if held <= after:
        return None
    return (
        f"held by {row.host}:{row.pid} for {int(held.total_seconds())}s, longer than "
        f"[schedule] unit_timeout ({int(after.total_seconds())}s)"
    )


def claim(
    ledger: Ledger, run_id: str, chain: str | None = None, hung_after: timedelta | None = None
) -> Claimed | None:
    """Claim one unit of ``run_id`` (of ``chain`` if given): a pending one, or one whose
    claimant is gone, or (``hung_after``) has held it longer than that. None when there is
    none to take (all done, failed, or held by live processes within the limit), or the run
    is no longer running."""
    this_host = host_name()
    try:
        with ledger._session() as s:
            status = s.scalar(select(col(Run.status)).where(col(Run.id) == run_id))
            if status != "running":
                return None
            now = database_now(s.connection()).replace(tzinfo=UTC)  # the clock heartbeats are written by
            query = (
                select(RunUnit)
                .where(col(RunUnit.run_id) == run_id, col(RunUnit.status).in_((PENDING, RUNNING)))
                .order_by(col(RunUnit.status) != PENDING, col(RunUnit.chain), col(RunUnit.shard))
                .with_for_update(skip_locked=True)
            )
            if chain is not None:
                query = query.where(col(RunUnit.chain) == chain)
            for row in s.scalars(query):
                if row.status == RUNNING:
                    why = _gone(row, now, this_host) or _hung(row, now, hung_after)
                    if why is None:
                        continue
                    log.warning(
                        "event=unit_reclaimed run_id=%s chain=%s shard=%d reason=%r attempts=%d",
                        run_id, row.chain, row.shard, why, row.attempts,
                    )
                    if row.attempts >= MAX_UNIT_ATTEMPTS:
                        row.status, row.finished_at = FAILED, now
                        row.error = f"its process died {row.attempts} times (last: {why})"
                        continue
                return _take(s, row, now)
            return None
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc


def _take(s: Session, row: RunUnit, now: datetime) -> Claimed:
    pid = os.getpid()
    row.status, row.attempts = RUNNING, row.attempts + 1
    row.host, row.pid, row.proc_start = host_name(), pid, process_start(pid)
    row.claimed_at = row.heartbeat_at = now
    s.flush()
    assert row.id is not None
    return Claimed(
        row.id,
        row.run_id,
        row.chain,
        row.shard,
        row.shards,
        BlockRef(row.block_number, row.block_hash),
        row.wallets,
        row.wallets_digest,
        row.attempts,
        row.views,
    )


def finish(ledger: Ledger, unit: Claimed, result: str | None, error: str | None, elapsed: float) -> bool:
    """Record a held unit done (its ``result``) or failed (its ``error``); False when the unit
    was claimed again meanwhile (this process was judged gone): nothing is written."""
    try:
        with ledger._session() as s:
            done = s.execute(
                update(RunUnit)
                .where(
                    col(RunUnit.id) == unit.id,
                    col(RunUnit.status) == RUNNING,
                    col(RunUnit.attempts) == unit.attempt,
                )
                .values(
                    status=DONE if error is None else FAILED,
                    result=result,
                    error=error,
                    finished_at=now_expression(s.connection().dialect.name),
                    elapsed_ms=int(elapsed * 1000),
                )
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc


def release(ledger: Ledger, unit: Claimed) -> None:
    """Hand a held unit back, pending, for another daemon (this one is stopping)."""
    try:
        with ledger._session() as s:
            s.execute(
                update(RunUnit)
                .where(
                    col(RunUnit.id) == unit.id,
                    col(RunUnit.status) == RUNNING,
                    col(RunUnit.attempts) == unit.attempt,
                )
                .values(status=PENDING)
                .execution_options(synchronize_session=False)
            )
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc


def states(ledger: Ledger, run_id: str, chain: str | None = None) -> list[UnitState]:
    """The units of a run (of one chain), in (chain, shard) order."""
    try:
        with ledger._session() as s:
            query = (
                select(RunUnit)
                .where(col(RunUnit.run_id) == run_id)
                .order_by(col(RunUnit.chain), col(RunUnit.shard))
            )
            if chain is not None:
                query = query.where(col(RunUnit.chain) == chain)
            return [
                UnitState(
                    r.chain,
                    r.shard,
                    r.status,
                    r.attempts,
                    f"{r.host}:{r.pid}" if r.host else None,
                    r.elapsed_ms,
                    r.error,
                    r.result,
                )
                for r in s.scalars(query)
            ]
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc


class UnitHeartbeat:
    """Refreshes a held unit's ``heartbeat_at`` every ``HEARTBEAT_EVERY`` from a thread of its
    own until `stop`; a failed beat is logged and tried again."""

    def __init__(self, ledger: Ledger, unit: Claimed, every: timedelta = HEARTBEAT_EVERY) -> None:
        self.ledger = ledger
        self.unit = unit
        self.every = every.total_seconds()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"unit-{unit.chain}-{unit.shard}", daemon=True)

    def __enter__(self) -> UnitHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                with self.ledger.engine.begin() as conn:
                    conn.execute(
                        update(RunUnit)
                        .where(col(RunUnit.id) == self.unit.id, col(RunUnit.attempts) == self.unit.attempt)
                        .values(heartbeat_at=now_expression(conn.dialect.name))
                    )
            except SQLAlchemyError as exc:
                log.warning(
                    "event=unit_heartbeat_failed chain=%s shard=%d reason=%r",
                    self.unit.chain, self.unit.shard, _first_line(exc, self.ledger.url),
                )


def run_status(ledger: Ledger, run_id: str) -> str | None:
    """The run's status (None: no such run)."""
    with ledger._session() as s:
        return s.scalar(select(col(Run.status)).where(col(Run.id) == run_id))


def firing_run(ledger: Ledger, job: str, scheduled_for: datetime) -> str | None:
    """The run that holds a firing now (its latest claim), if any."""
    try:
        with ledger._session() as s:
            return s.scalar(
                select(col(JobFiring.run_id)).where(
                    col(JobFiring.job) == job, col(JobFiring.scheduled_for) == scheduled_for
                )
            )
    except SQLAlchemyError as exc:
        raise _fail(ledger, exc) from exc
