"""The ledger's breaks: listing them, a person's acknowledgement or resolution with its note, and
a break with its history; the conversions between break rows and the core's records.

Invariant: every change to a break adds an event with its evidence and joins the hash-chained
audit trail in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BreakEventRecord, BreakKey, BreakKind, BreakRecord, BreakStatus, Severity
from reconciler.engine.lifecycle import ActiveBreak
from reconciler.errors import LedgerError
from reconciler.ledger import trail
from reconciler.ledger.base import LedgerBase, _iso, _now, _resolve_prefix
from reconciler.ledger.models import BreakEvent, BreakRow


def key_text(key: BreakKey) -> str:
    return "|".join([key.kind.value, key.chain, key.wallet, key.asset or "", key.tx_hash or ""])


class BreaksMixin(LedgerBase):
    """Breaks and their lifecycle by hand."""

    def list_breaks(self, statuses: Sequence[BreakStatus] | None = None) -> list[BreakRecord]:
        with self._session() as s:
            query = select(BreakRow)
            if statuses:
                query = query.where(col(BreakRow.status).in_([st.value for st in statuses]))
            return [_record(r) for r in sorted(s.scalars(query), key=_order)]

    def acknowledge(self, break_id: str, note: str) -> BreakRecord:
        """open -> acknowledged, with the note in the audit trail. Acknowledging does not
        clear a break: only a run that no longer finds it resolves it."""
        with self._session() as s:
            row = s.get(BreakRow, _break_id(s, break_id), with_for_update=True)
            assert row is not None
            if row.status != BreakStatus.OPEN.value:
                raise LedgerError(f"break {break_id} is {row.status}; only an open break can be acknowledged")
            row.status = BreakStatus.ACKNOWLEDGED.value
            event = _event(row, None, "acknowledged", _now(), note)
            s.add(event)
            s.flush()
            trail.record_break_events(s, self.alerts, [change(row, event)], self.audit_key)
            return _record(row)

    def resolve(self, break_id: str, note: str) -> BreakRecord:
        """Close a break by hand (open or acknowledged -> resolved), the note kept in its audit
        trail: for a break no run can check any more (its wallet or asset left the
        configuration). If a run finds the condition again, it opens a new break."""
        with self._session() as s:
            row = s.get(BreakRow, _break_id(s, break_id), with_for_update=True)
            assert row is not None
            if row.status == BreakStatus.RESOLVED.value:
                raise LedgerError(f"break {row.id} is already resolved")
            row.status = BreakStatus.RESOLVED.value
            row.resolved_at = _now()
            event = _event(row, None, "resolved", row.resolved_at, f"resolved by hand: {note}")
            s.add(event)
            s.flush()
            trail.record_break_events(s, self.alerts, [change(row, event)], self.audit_key)
            return _record(row)

    def get_break(self, break_id: str) -> tuple[BreakRecord, list[BreakEventRecord]]:
        with self._session() as s:
            row = s.get(BreakRow, _break_id(s, break_id))
            assert row is not None
            events = s.scalars(
                select(BreakEvent).where(col(BreakEvent.break_id) == row.id).order_by(col(BreakEvent.id))
            )
            return _record(row), [
                BreakEventRecord(
                    event=e.event,
                    at=_iso(e.at),
                    run_id=e.run_id,
                    amount=e.amount,
                    block_number=e.block_number,
                    block_hash=e.block_hash,
                    note=e.note,
                )
                for e in events
            ]


def _break_id(s: Session, given: str) -> str:
    return _resolve_prefix(s, BreakRow, col(BreakRow.id), given, "break", "`reconciler breaks list --all`")


def _event(row: BreakRow, run_id: str | None, event: str, at: datetime, note: str) -> BreakEvent:
    """An audit-trail entry carrying the break's evidence as it stands now."""
    return BreakEvent(
        break_id=row.id,
        run_id=run_id,
        event=event,
        at=at,
        amount=row.amount,
        block_number=row.block_number,
        block_hash=row.block_hash,
        note=note,
    )


def change(row: BreakRow, event: BreakEvent) -> trail.BreakChange:
    """The change an event row records, with the break's state as it stands now."""
    return trail.BreakChange(event, trail.break_state(row), _record(row))


def _active(row: BreakRow) -> ActiveBreak:
    return ActiveBreak(id=row.id, key=_key(row), status=BreakStatus(row.status), amount=row.amount)


def _key(row: BreakRow) -> BreakKey:
    return BreakKey(BreakKind(row.kind), row.chain, row.wallet, row.asset, row.tx_hash)


def _order(row: BreakRow) -> tuple[str, str, str, str, str]:
    return (row.chain, row.wallet, row.asset or "", row.kind, row.tx_hash or "")


def _record(row: BreakRow) -> BreakRecord:
    return BreakRecord(
        id=row.id,
        key=_key(row),
        severity=Severity(row.severity),
        status=BreakStatus(row.status),
        amount=row.amount,
        detail=row.detail,
        block_number=row.block_number,
        block_hash=row.block_hash,
        first_run_id=row.first_run_id,
        last_run_id=row.last_run_id,
        resolved_run_id=row.resolved_run_id,
        times_seen=row.times_seen,
        decimals=row.decimals,
        tentative=bool(row.tentative),
    )
