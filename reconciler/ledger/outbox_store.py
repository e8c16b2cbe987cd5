"""The alert outbox on the ledger: which alerts are due, and what became of each attempt.

Invariants: a row is never deleted and never loses its event id, so an alert is delivered at
least once and always under the same id; a row is handed to one deliverer at a time — `due`
claims the rows it returns by moving their ``next_attempt_at`` past a lease in the same
transaction that selected them (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so two daemons never
claim one row; SQLite: the write lock every transaction takes serializes the claims), and a
deliverer that dies mid-delivery only delays the row until the lease ends; a delivered row is
never changed again; the error text stored is scrubbed of URLs (a webhook's URL may carry a
key, and its secret is never passed here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlmodel import col

from reconciler.ledger.daemon_models import OutboxRow
from reconciler.ledger.store import Ledger
from reconciler.redaction import redact_urls

ERROR_LIMIT = 500  # characters of last_error kept: enough for the reason, never a whole body


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An alert claimed for one delivery attempt to one webhook."""

    id: int
    event_id: str
    event: str
    destination: str  # sha256 of the webhook URL
    body: str  # sent byte for byte as stored (UTF-8)
    attempts: int  # attempts made before this one


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of the outbox as it stands, for inspection (tests, `health`, metrics)."""

    id: int
    event_id: str
    event: str
    destination: str
    body: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


def due(
    ledger: Ledger,
    now: datetime,
    limit: int,
    *,
    lease: timedelta = timedelta(minutes=5),
    max_attempts: int | None = None,
) -> list[PendingAlert]:
    """Claim up to ``limit`` undelivered alerts whose next attempt is due at ``now`` (oldest
    first): each is not due again before ``now + lease`` unless `mark_failed` or `release`
    says otherwise. Rows that already had ``max_attempts`` attempts are given up and never
    claimed (they stay undelivered, counted by `pending_count`)."""
    with ledger._session() as s:
        query = (
            select(OutboxRow)
            .where(col(OutboxRow.delivered_at).is_(None), col(OutboxRow.next_attempt_at) <= now)
            .order_by(col(OutboxRow.next_attempt_at), col(OutboxRow.id))
            .limit(limit)
        )
        if max_attempts is not None:
            query = query.where(col(OutboxRow.attempts) < max_attempts)
        if s.get_bind().dialect.name == "postgresql":
            # Rows another daemon holds are skipped, not waited for: it is delivering them.
            query = query.with_for_update(skip_locked=True)
        rows = list(s.scalars(query))
        for row in rows:
            row.next_attempt_at = now + lease
        return [_pending(r) for r in rows]


def mark_delivered(ledger: Ledger, alert_id: int, at: datetime) -> None:
    """The receiver accepted the alert: it counts as an attempt and is never claimed again."""
    with ledger._session() as s:
        s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id) == alert_id, col(OutboxRow.delivered_at).is_(None))
            .values(delivered_at=at, attempts=col(OutboxRow.attempts) + 1)
        )


def mark_failed(ledger: Ledger, alert_id: int, error: str, next_attempt_at: datetime, *, attempted: bool = True) -> int:
    """Record why the attempt failed and when to try again; ``attempted`` False when nothing was
    sent (no webhook configured for the row's destination). Returns the attempts made so far."""
    with ledger._session() as s:
        row = s.get(OutboxRow, alert_id, with_for_update=True)
        if row is None or row.delivered_at is not None:
            return 0 if row is None else row.attempts
        if attempted:
            row.attempts += 1
        row.last_error = clean_error(error)
        row.next_attempt_at = next_attempt_at
        return row.attempts


def release(ledger: Ledger, alert_ids: Sequence[int], at: datetime) -> None:
    """Hand back claimed alerts that were not attempted (the daemon is stopping, or their
    webhook just failed): due again at ``at``, attempts and last error unchanged."""
    if not alert_ids:
        return
    with ledger._session() as s:
        s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id).in_(list(alert_ids)), col(OutboxRow.delivered_at).is_(None))
            .values(next_attempt_at=at)
        )


def pending_count(ledger: Ledger) -> int:
    """Alerts not delivered yet (including any given up after ``max_attempts``)."""
    with ledger._session() as s:
        count = s.scalar(select(func.count()).select_from(OutboxRow).where(col(OutboxRow.delivered_at).is_(None)))
        return int(count or 0)


def entries(ledger: Ledger, *, undelivered_only: bool = False) -> list[OutboxEntry]:
    """Every row of the outbox, oldest first."""
    with ledger._session() as s:
        query = select(OutboxRow).order_by(col(OutboxRow.id))
        if undelivered_only:
            query = query.where(col(OutboxRow.delivered_at).is_(None))
        return [
            OutboxEntry(
                id=_id(r),
                event_id=r.event_id,
                event=r.event,
                destination=r.destination,
                body=r.body,
                created_at=_utc(r.created_at),
                attempts=r.attempts,
                next_attempt_at=_utc(r.next_attempt_at),
                delivered_at=_utc(r.delivered_at) if r.delivered_at is not None else None,
                last_error=r.last_error,
            )
            for r in s.scalars(query)
        ]


def clean_error(error: str) -> str:
    """The error as stored: URLs redacted (scheme://host only), one line, bounded. Redacted
    before it is cut, so no half of a key survives."""
    text = " ".join(redact_urls(error).split())
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


def _pending(row: OutboxRow) -> PendingAlert:
    return PendingAlert(
        id=_id(row),
        event_id=row.event_id,
        event=row.event,
        destination=row.destination,
        body=row.body,
        attempts=row.attempts,
    )


def _id(row: OutboxRow) -> int:
    assert row.id is not None
    return row.id


def _utc(at: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back naive."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
