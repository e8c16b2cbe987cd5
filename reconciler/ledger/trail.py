"""The audit trail and the alert outbox, written inside the transactions that make the changes.

Invariants: every change to a break (opened, seen, escalated, acknowledged, resolved) and every
run's start and outcome is appended to ``audit_log`` as canonical JSON (sorted keys, no spaces,
amounts as strings) whose SHA-256 is chained to the previous record's: appends are serialized
(SQLite's write lock; a PostgreSQL transaction-level advisory lock), so the chain never forks.
Each record carries its own number and time inside what is hashed, and the whole state of what
it changed (the break row and its event row, or the run row), so `reconciler.ledger.audit` can
replay the trail against the tables; with ``[audit] key_env`` each record also carries an
HMAC-SHA256 under the key, which no one without the key can recompute. Each event row names the
record that carries it (``break_event.audit_seq``) and each finished run the head right after
its outcome (``run.audit_seq``, ``run.audit_hash``). Alerts are queued in ``alert_outbox`` in
the same transaction as the change they announce, one row per (event, webhook), each with a
stable event id; the webhook's URL is never stored (only its SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
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
from reconciler.ledger.models import BreakEvent, BreakRow, Run

GENESIS = "0" * 64
# Break events sent to webhooks (as ``break.<event>``); ``seen`` and ``acknowledged`` are only
# audited. ``confirmed`` and ``retracted`` end a tentative break's wait (reconciler.daemon.watch).
WATCH_JOB = "watch"  # the job name of the runs the daemon's watcher records
ALERTED_EVENTS = ("opened", "escalated", "resolved", "confirmed", "retracted")
# Records of this format carry their time and the full state of what they changed; records
# without ``"v"`` were written before revision 0011 and verify by their hash only.
FORMAT = 2


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


@dataclass(frozen=True, slots=True)
class Head:
    """A record of the trail by its number and hash: ``SEQ:HASH``, the form `--head` takes."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    def doc(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256((prev_hash + record_json).encode()).hexdigest()


def record_mac(key: bytes, prev_hash: str, record_json: str) -> str:
    return hmac.new(key, (prev_hash + record_json).encode(), hashlib.sha256).hexdigest()


def instant(at: datetime | None) -> str | None:
    """A stored time as the trail writes it: UTC, microseconds, ``Z`` (SQLite hands times back
    naive; they are UTC)."""
    if at is None:
        return None
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _amount(value: int | None) -> str | None:
    return None if value is None else str(int(value))


# ------------------------------------------------------------------ what a record says of a row
# The same functions read the rows back when the trail is verified: a field is compared exactly
# as it was recorded.


def break_state(row: BreakRow) -> dict[str, Any]:
    """Every column of a break row; the columns of revision 0015 (a tentative break's) only when
    set, so a record written before them still says the whole row of a break never tentative."""
    state = {
        "id": row.id,
        "key": row.key,
        "kind": row.kind,
        "severity": row.severity,
        "status": row.status,
        "chain": row.chain,
        "wallet": row.wallet,
        "asset": row.asset,
        "tx_hash": row.tx_hash,
        "amount": _amount(row.amount),
        "decimals": row.decimals,
        "detail": row.detail,
        "block_number": row.block_number,
        "block_hash": row.block_hash,
        "first_run_id": row.first_run_id,
        "last_run_id": row.last_run_id,
        "resolved_run_id": row.resolved_run_id,
        "opened_at": instant(row.opened_at),
        "last_seen_at": instant(row.last_seen_at),
        "resolved_at": instant(row.resolved_at),
        "times_seen": row.times_seen,
    }
    if row.tentative is not None:
        state["tentative"] = bool(row.tentative)
    if row.evidence_block_number is not None:
        state["evidence_block_number"] = row.evidence_block_number
    if row.evidence_block_hash is not None:
        state["evidence_block_hash"] = row.evidence_block_hash
    return state


def event_state(ev: BreakEvent) -> dict[str, Any]:
    """Every column of an event row but its database id and the record it names."""
    return {
        "break_id": ev.break_id,
        "event": ev.event,
        "at": instant(ev.at),
        "note": ev.note,
        "amount": _amount(ev.amount),
        "block_number": ev.block_number,
        "block_hash": ev.block_hash,
        "run_id": ev.run_id,
    }


def run_state(run: Run) -> dict[str, Any]:
    """Every column of a run row but the document it printed and the head it stores."""
    return {
        "id": run.id,
        "started_at": instant(run.started_at),
        "finished_at": instant(run.finished_at),
        "status": run.status,
        "reason": run.reason,
        "exit_code": run.exit_code,
        "trigger": run.trigger,
        "job": run.job,
        "scheduled_for": instant(run.scheduled_for),
        "host": run.host,
        "pid": run.pid,
        "proc_start": run.proc_start,
    }


# ------------------------------------------------------------------ appending


def _lock(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :scope))"), {"scope": "/audit"})


def head(s: Session) -> Head | None:
    last = s.execute(select(col(AuditRow.seq), col(AuditRow.hash)).order_by(col(AuditRow.seq).desc()).limit(1)).first()
    return None if last is None else Head(int(last[0]), str(last[1]))


def append(s: Session, records: Sequence[tuple[str, Mapping[str, Any]]], key: bytes | None) -> list[Head]:
    """Append (kind, record) pairs to the trail in order, chained to the newest record, each
    with its number and time inside it (and its HMAC when a key is given): one lookup of the
    head however many records a transaction adds. Returns each record's (seq, hash)."""
    if not records:
        return []
    _lock(s)
    s.flush()
    last = head(s)
    prev = last.hash if last is not None else GENESIS
    # Our own sequence number, inside the hashed record: database ids may skip (a rolled-back
    # insert uses one up on PostgreSQL), so a gap in them proves nothing; a gap in seq does.
    seq = last.seq if last is not None else 0
    now = datetime.now(UTC)
    at = instant(now)
    written: list[Head] = []
    for kind, record in records:
        seq += 1
        body = canonical({**record, "kind": kind, "seq": seq, "at": at, "v": FORMAT})
        digest = chain_hash(prev, body)
        mac = record_mac(key, prev, body) if key is not None else None
        s.add(AuditRow(seq=seq, at=now, kind=kind, record=body, prev_hash=prev, hash=digest, hmac=mac))
        written.append(Head(seq, digest))
        prev = digest
    s.flush()
    return written


@dataclass(frozen=True, slots=True)
class BreakChange:
    """One change to a break: its event row (whose ``audit_seq`` is set when it is recorded),
    the break row's state right after the change, and the break as alerts show it."""

    event: BreakEvent
    state: dict[str, Any]
    record: BreakRecord


def record_break_events(
    s: Session, setup: AlertSetup | None, changes: Sequence[BreakChange], key: bytes | None
) -> None:
    """Audit each change (one record per event row, naming it) and alert it: opened, escalated
    and resolved breaks are alerted, and a tentative break confirmed or retracted; a break merely
    seen again is only audited."""
    written = append(
        s, [(f"break.{c.event.event}", {"break": c.state, "event": event_state(c.event)}) for c in changes], key
    )
    for change, at in zip(changes, written, strict=True):
        change.event.audit_seq = at.seq
        event = change.event.event
        if event in ALERTED_EVENTS:
            brk = change.record
            body = break_alert(setup, f"break.{event}", brk)
            if event == "retracted":
                body["reason"] = "reorged"
            enqueue(s, setup, f"break.{event}", brk.severity, body)


def record_run_started(s: Session, run: Run, key: bytes | None) -> None:
    append(s, [("run.started", {"run": run_state(run)})], key)


def record_run_outcome(s: Session, setup: AlertSetup | None, run: Run, key: bytes | None) -> Head:
    """The run's outcome as the trail's newest record, the head right after it stored on the
    run row, and the alerts: ``run.finished`` (with that head, to every webhook: a receiver
    keeps an anchor outside the database) and ``run.incomplete`` when it is; none for a watched
    head's run."""
    [at] = append(s, [("run.finished", {"run": run_state(run)})], key)
    run.audit_seq, run.audit_hash = at.seq, at.hash
    if run.job == WATCH_JOB:
        # The watcher records a run per head it judges (every few seconds): its outcome is in the
        # trail and `runs list`, but a webhook per block would drown the receivers; what it finds
        # is alerted as breaks, and a watcher that falls behind shows in `health`.
        return at
    if run.status == "incomplete":
        enqueue(s, setup, "run.incomplete", None, {"event": "run.incomplete", "run_id": run.id, "reason": run.reason})
    enqueue(
        s,
        setup,
        "run.finished",
        None,
        {
            "event": "run.finished",
            "run_id": run.id,
            "job": run.job,
            "status": run.status,
            "exit_code": run.exit_code,
            "head": at.doc(),
        },
    )
    return at


def seal(s: Session, key: bytes) -> Head | None:
    """With a key newly configured, one keyed record after the unkeyed ones (its HMAC covers
    the hash of everything before it), so that verification, which requires the newest record
    to carry an HMAC, passes before anything else is recorded. Nothing when the trail is empty
    or its newest record is already keyed."""
    _lock(s)
    last = s.scalars(select(AuditRow).order_by(col(AuditRow.seq).desc()).limit(1)).first()
    if last is None or last.hmac is not None:
        return None
    [at] = append(s, [("audit.keyed", {"note": "the first record written with [audit] key_env set"})], key)
    return at


# ------------------------------------------------------------------ alerts


def enqueue(s: Session, setup: AlertSetup | None, event: str, severity: Severity | None, body: dict[str, Any]) -> None:
    """Queue one alert for every webhook whose min_severity it reaches (run events: all)."""
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
