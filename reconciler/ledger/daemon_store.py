"""Ledger queries of the operating side: the last run of each job, firings lost with their run,
the alert backlog, the audit trail's state, and the single-daemon guard of a SQLite ledger."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import func, select
from sqlmodel import col

from reconciler.errors import LedgerError
from reconciler.ledger import audit, trail
from reconciler.ledger.base import MAX_FIRING_ATTEMPTS, _utc
from reconciler.ledger.daemon_models import JobFiring, OutboxRow
from reconciler.ledger.models import Run
from reconciler.ledger.runs import RunSummary, _run_summary
from reconciler.ledger.store import Ledger


def last_finished_runs(ledger: Ledger) -> dict[str, RunSummary]:
    """The newest finished run of each job (by start): what `health` judges each job by."""
    with ledger._session() as s:
        newest = (
            select(col(Run.job), func.max(col(Run.started_at)).label("at"))
            .where(col(Run.status) != "running")
            .group_by(col(Run.job))
            .subquery()
        )
        rows = s.scalars(
            select(Run).join(newest, (col(Run.job) == newest.c.job) & (col(Run.started_at) == newest.c.at))
        )
        return {r.job: _run_summary(r) for r in rows}


@dataclass(frozen=True, slots=True)
class LostFiring:
    """A scheduled firing whose run's process died (reaped), not run again yet."""

    job: str
    scheduled_for: datetime  # UTC
    run_id: str  # the run that died
    lost_at: datetime


def lost_firings(ledger: Ledger, jobs: Collection[str]) -> list[LostFiring]:
    """Firings of ``jobs`` whose run was found dead and that may still be run again (one
    attempt so far), oldest first. Reading them claims nothing: `Ledger.begin_run` with
    ``rerun_of`` does."""
    if not jobs:
        return []
    with ledger._session() as s:
        rows = s.scalars(
            select(JobFiring)
            .where(
                col(JobFiring.job).in_(list(jobs)),
                col(JobFiring.lost_at).is_not(None),
                col(JobFiring.attempts) < MAX_FIRING_ATTEMPTS,
                col(JobFiring.run_id).is_not(None),
            )
            .order_by(col(JobFiring.scheduled_for))
        )
        return [
            LostFiring(r.job, _utc(r.scheduled_for), str(r.run_id), _utc(r.lost_at))
            for r in rows
            if r.lost_at is not None
        ]


@dataclass(frozen=True, slots=True)
class AlertBacklog:
    """Undelivered alerts: how many, and the oldest one (its age, event, destination prefix and
    last error) — what `health` and the metrics show of a slow or dead receiver."""

    pending: int
    oldest_created_at: datetime | None = None
    oldest_event: str | None = None
    oldest_destination: str | None = None
    oldest_attempts: int = 0
    oldest_error: str | None = None


def alert_backlog(ledger: Ledger, destinations: Collection[str] | None = None) -> AlertBacklog:
    """The undelivered alerts, for the webhooks with these destinations (SHA-256 of the URL)
    or, with None, for all."""
    with ledger._session() as s:
        where = [col(OutboxRow.delivered_at).is_(None)]
        if destinations is not None:
            if not destinations:
                return AlertBacklog(0)
            where.append(col(OutboxRow.destination).in_(list(destinations)))
        count = int(s.scalar(select(func.count()).select_from(OutboxRow).where(*where)) or 0)
        oldest = s.scalars(
            select(OutboxRow).where(*where).order_by(col(OutboxRow.created_at), col(OutboxRow.id)).limit(1)
        ).first()
        if oldest is None:
            return AlertBacklog(count)
        return AlertBacklog(
            count,
            _utc(oldest.created_at),
            oldest.event,
            oldest.destination[:12],
            oldest.attempts,
            oldest.last_error,
        )


def verify_audit(ledger: Ledger, pinned: trail.Head | None = None) -> audit.Verification:
    """The trail verified with the ledger's key (when one is configured) and against the tables;
    ``pinned``: an earlier head the trail must still contain."""
    with ledger._session() as s:
        return audit.verify(s, ledger.audit_key, pinned)


def audit_head(ledger: Ledger) -> trail.Head | None:
    with ledger._session() as s:
        return trail.head(s)


def seal_audit(ledger: Ledger) -> trail.Head | None:
    """With a key configured, a keyed record after unkeyed ones (see trail.seal)."""
    if ledger.audit_key is None:
        return None
    with ledger._session() as s:
        return trail.seal(s, ledger.audit_key)


class DaemonGuard:
    """On SQLite one daemon per ledger (an flock beside the database, released by the kernel
    when the process dies); on PostgreSQL any number, coordinated by claimed firings."""

    def __init__(self, ledger: Ledger) -> None:
        self.path: Path | None = ledger.sqlite_path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        lock_path = self.path.with_name(self.path.name + ".daemon")
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LedgerError(
                f"another daemon ({holder}) already runs against the SQLite ledger {self.path}: a SQLite ledger "
                "takes one daemon; to run several instances, use a PostgreSQL ledger"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
