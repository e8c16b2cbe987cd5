"""The audit trail and the alert outbox, written inside the transactions that make the changes.

Invariants: every change to a break (opened, seen, escalated, acknowledged, resolved) and every
run's outcome is appended to ``audit_log`` as canonical JSON (sorted keys, no spaces, amounts as
strings) whose SHA-256 is chained to the previous record's: appends are serialized (SQLite's
write lock; a PostgreSQL transaction-level advisory lock), so the chain never forks, and an edited
or deleted record is found by `verify`. Alerts are queued in ``alert_outbox`` in the same
transaction as the change they announce, one row per (event, webhook), each with a stable event
id; the webhook's URL is never stored (only its SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BreakRecord, Severity
from reconciler.ledger.daemon_models import AuditRow, OutboxRow

GENESIS = "0" * 64


def destination_of(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AlertRoute:
    destination: str  # destination_of(url)
    min_severity: Severity


@dataclass(frozen=True, slots=True)
class AlertSetup:
    """Where alerts go and how a break is shown in them (the `run --json` break document)."""

    routes: tuple[AlertRoute, ...] = ()
    render_break: Callable[[BreakRecord], dict[str, Any]] = field(default=lambda b: {"id": b.id})
    log: Callable[[str, dict[str, Any]], None] | None = None  # the log sink: every alert, webhooks or not


def canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256((prev_hash + record_json).encode()).hexdigest()


def _lock(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :scope))"), {"scope": "/audit"})


def append(s: Session, records: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Append (kind, record) pairs to the trail in order, chained to the newest record: one
    lookup of the head however many records a transaction adds."""
    if not records:
        return
    _lock(s)
    s.flush()
    last = s.scalars(select(AuditRow).order_by(col(AuditRow.id).desc()).limit(1)).first()
    prev = last.hash if last is not None else GENESIS
    # Our own sequence number, inside the hashed record: database ids may skip (a rolled-back
    # insert uses one up on PostgreSQL), so a gap in them proves nothing; a gap in seq does.
    seq = int(json.loads(last.record).get("seq", 0)) if last is not None else 0
    now = datetime.now(UTC)
    for kind, record in records:
        seq += 1
        body = canonical({"kind": kind, "seq": seq, **record})
        digest = chain_hash(prev, body)
        s.add(AuditRow(at=now, kind=kind, record=body, prev_hash=prev, hash=digest))
        s.flush()  # ids in chain order
        prev = digest


def break_record(event: str, brk: BreakRecord, run_id: str | None, note: str) -> dict[str, Any]:
    return {
        "event": event,
        "break_id": brk.id,
        "break_kind": brk.key.kind.value,
        "chain": brk.key.chain,
        "wallet": brk.key.wallet,
        "asset": brk.key.asset,
        "tx_hash": brk.key.tx_hash,
        "severity": brk.severity.value,
        "status": brk.status.value,
        "amount": None if brk.amount is None else str(brk.amount),
        "block_number": brk.block_number,
        "block_hash": brk.block_hash,
        "run_id": run_id,
        "note": note,
    }


def run_record(run_id: str, status: str, reason: str | None, exit_code: int | None, job: str) -> dict[str, Any]:
    return {"run_id": run_id, "job": job, "status": status, "reason": reason, "exit_code": exit_code}


@dataclass(frozen=True, slots=True)
class Verification:
    records: int
    head: str
    first_bad: int | None  # id of the first record that does not verify
    problem: str | None


def verify(s: Session) -> Verification:
    prev = GENESIS
    count = 0
    for row in s.scalars(select(AuditRow).order_by(col(AuditRow.id))):
        assert row.id is not None
        if chain_hash(row.prev_hash, row.record) != row.hash:
            return Verification(count, prev, row.id, f"record {row.id} does not match its hash (edited?)")
        if row.prev_hash != prev:
            return Verification(
                count, prev, row.id, f"record {row.id} does not follow the record before it (one deleted or edited?)"
            )
        try:
            seq = json.loads(row.record).get("seq")
        except ValueError:
            seq = None
        if seq != count + 1:
            return Verification(count, prev, row.id, f"record {row.id} is number {seq}, not {count + 1}")
        prev = row.hash
        count += 1
    return Verification(count, prev, None, None)


def head(s: Session) -> str:
    last = s.scalars(select(AuditRow).order_by(col(AuditRow.id).desc()).limit(1)).first()
    return last.hash if last is not None else GENESIS


def enqueue(s: Session, setup: AlertSetup | None, event: str, severity: Severity | None, body: dict[str, Any]) -> None:
    """Queue one alert for every webhook whose min_severity it reaches (run.incomplete: all)."""
    if setup is None:
        return
    if setup.log is not None:
        setup.log(event, body)
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    payload = json.dumps(body, sort_keys=False)
    queued: set[str] = set()
    for route in setup.routes:
        if severity is not None and severity.rank < route.min_severity.rank:
            continue
        if route.destination in queued:  # the same webhook listed twice: one delivery
            continue
        queued.add(route.destination)
        s.add(
            OutboxRow(
                event_id=event_id,
                event=event,
                destination=route.destination,
                body=payload,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )


def break_alert(setup: AlertSetup | None, event: str, brk: BreakRecord) -> dict[str, Any]:
    rendered = setup.render_break(brk) if setup is not None else {"id": brk.id}
    return {"event": event, "break": rendered}


def record_break_events(
    s: Session, setup: AlertSetup | None, changes: Sequence[tuple[str, BreakRecord, str | None, str]]
) -> None:
    """Audit and alert each (event, break, run id, note): opened, escalated and resolved breaks
    are alerted; a break merely seen again is only audited."""
    append(s, [(f"break.{event}", break_record(event, brk, run_id, note)) for event, brk, run_id, note in changes])
    for event, brk, _run_id, _note in changes:
        if event in ("opened", "escalated", "resolved"):
            enqueue(s, setup, f"break.{event}", brk.severity, break_alert(setup, f"break.{event}", brk))


def record_run_outcome(
    s: Session, setup: AlertSetup | None, run_id: str, status: str, reason: str | None, exit_code: int | None, job: str
) -> None:
    append(s, [("run.finished", run_record(run_id, status, reason, exit_code, job))])
    if status == "incomplete":
        enqueue(s, setup, "run.incomplete", None, {"event": "run.incomplete", "run_id": run_id, "reason": reason})
