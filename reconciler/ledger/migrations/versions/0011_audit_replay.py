"""An audit trail that vouches for the tables: each record's number (``seq``) and optional HMAC
beside it, each event row naming the record that carries it, each run the head right after its
outcome; and the existing rows brought forward into the trail.

Records already in the trail stay as they were (they verify by their hash, as before). After
them this revision appends one record per run (``run.carried``), per break (``break.carried``)
and per break event (``event.carried``) as the upgrade finds them, in the trail's format of this
revision (each with its time and the row's whole state inside the hash), so that from the
upgrade on every row of ``run``, ``break`` and ``break_event`` is vouched for by a record. A run
that already has an outcome record (``run.finished``) gets that record's head. No key is
available here: these records carry no HMAC (``reconciler init`` with ``[audit] key_env`` set
writes a keyed record after them).

The record format is written out here, frozen, rather than imported: a migration must keep
doing what it did when the code around it changes (a test checks that what it writes verifies).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
BATCH = 1_000

_meta = sa.MetaData()
_audit = sa.Table(
    "audit_log",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger),
    sa.Column("at", sa.DateTime),
    sa.Column("kind", sa.String(32)),
    sa.Column("record", sa.Text),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("hash", sa.String(64)),
    sa.Column("hmac", sa.String(64)),
)
_run = sa.Table(
    "run",
    _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16)),
    sa.Column("reason", sa.String),
    sa.Column("exit_code", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("proc_start", sa.String(32)),
    sa.Column("trigger", sa.String(16)),
    sa.Column("job", sa.String(32)),
    sa.Column("scheduled_for", sa.DateTime),
    sa.Column("audit_seq", sa.BigInteger),
    sa.Column("audit_hash", sa.String(64)),
)
_break = sa.Table(
    "break",
    _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(600)),
    sa.Column("kind", sa.String(64)),
    sa.Column("severity", sa.String(16)),
    sa.Column("status", sa.String(16)),
    sa.Column("chain", sa.String(200)),
    sa.Column("wallet", sa.String(200)),
    sa.Column("asset", sa.String(200)),
    sa.Column("tx_hash", sa.String(66)),
    sa.Column("amount", sa.String),  # ExactInt: text on SQLite, NUMERIC on PostgreSQL; read by _amount
    sa.Column("detail", sa.String),
    sa.Column("block_number", sa.BigInteger),
    sa.Column("block_hash", sa.String(66)),
    sa.Column("first_run_id", sa.String(36)),
    sa.Column("last_run_id", sa.String(36)),
    sa.Column("resolved_run_id", sa.String(36)),
    sa.Column("opened_at", sa.DateTime),
    sa.Column("last_seen_at", sa.DateTime),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("times_seen", sa.Integer),
    sa.Column("decimals", sa.Integer),
)
_event = sa.Table(
    "break_event",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("break_id", sa.String(36)),
    sa.Column("run_id", sa.String(36)),
    sa.Column("event", sa.String(16)),
    sa.Column("at", sa.DateTime),
    sa.Column("amount", sa.String),
    sa.Column("block_number", sa.BigInteger),
    sa.Column("block_hash", sa.String(66)),
    sa.Column("note", sa.String),
    sa.Column("audit_seq", sa.BigInteger),
)


def _instant(at: datetime | None) -> str | None:
    if at is None:
        return None
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _amount(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(int(value))
    return str(int(str(value)))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _run_state(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "started_at": _instant(r.started_at),
        "finished_at": _instant(r.finished_at),
        "status": r.status,
        "reason": r.reason,
        "exit_code": _int(r.exit_code),
        "trigger": r.trigger,
        "job": r.job,
        "scheduled_for": _instant(r.scheduled_for),
        "host": r.host,
        "pid": _int(r.pid),
        "proc_start": r.proc_start,
    }


def _break_state(b: Any) -> dict[str, Any]:
    return {
        "id": b.id,
        "key": b.key,
        "kind": b.kind,
        "severity": b.severity,
        "status": b.status,
        "chain": b.chain,
        "wallet": b.wallet,
        "asset": b.asset,
        "tx_hash": b.tx_hash,
        "amount": _amount(b.amount),
        "decimals": _int(b.decimals),
        "detail": b.detail,
        "block_number": _int(b.block_number),
        "block_hash": b.block_hash,
        "first_run_id": b.first_run_id,
        "last_run_id": b.last_run_id,
        "resolved_run_id": b.resolved_run_id,
        "opened_at": _instant(b.opened_at),
        "last_seen_at": _instant(b.last_seen_at),
        "resolved_at": _instant(b.resolved_at),
        "times_seen": _int(b.times_seen),
    }


def _event_state(e: Any) -> dict[str, Any]:
    return {
        "break_id": e.break_id,
        "event": e.event,
        "at": _instant(e.at),
        "note": e.note,
        "amount": _amount(e.amount),
        "block_number": _int(e.block_number),
        "block_hash": e.block_hash,
        "run_id": e.run_id,
    }


def _batches(conn: sa.Connection, query: Any) -> Iterator[list[Any]]:
    result = conn.execute(query.execution_options(yield_per=BATCH))
    while rows := result.fetchmany(BATCH):
        yield list(rows)


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("audit_log") as audit:
        audit.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
        audit.add_column(sa.Column("hmac", sa.String(64), nullable=True))
    with op.batch_alter_table("break_event") as events:
        events.add_column(sa.Column("audit_seq", sa.BigInteger, nullable=True))
    with op.batch_alter_table("run") as run:
        run.add_column(sa.Column("audit_seq", sa.BigInteger, nullable=True))
        run.add_column(sa.Column("audit_hash", sa.String(64), nullable=True))

    # The records so far, numbered in the order they were written (their own "seq" says the
    # same in an intact trail; verification compares the two). A run's outcome record gives it
    # its head.
    numbered: list[dict[str, Any]] = []
    heads: dict[str, tuple[int, str]] = {}
    seq = 0
    prev = GENESIS
    records = sa.select(_audit.c.id, _audit.c.kind, _audit.c.record, _audit.c.hash).order_by(_audit.c.id)
    for batch in _batches(conn, records):
        for row in batch:
            seq += 1
            numbered.append({"i": row.id, "s": seq})
            prev = row.hash
            if row.kind == "run.finished":
                try:
                    run_id = json.loads(row.record).get("run_id")
                except (ValueError, AttributeError):
                    run_id = None
                if isinstance(run_id, str):
                    heads[run_id] = (seq, row.hash)
    renumber = _audit.update().where(_audit.c.id == sa.bindparam("i")).values(seq=sa.bindparam("s"))
    for start in range(0, len(numbered), BATCH):
        conn.execute(renumber, numbered[start : start + BATCH])
    with op.batch_alter_table("audit_log") as audit:
        audit.alter_column("seq", existing_type=sa.BigInteger, nullable=False)
        audit.create_index("ux_audit_log_seq", ["seq"], unique=True)
    if heads:
        conn.execute(
            _run.update()
            .where(_run.c.id == sa.bindparam("r"))
            .values(audit_seq=sa.bindparam("s"), audit_hash=sa.bindparam("h")),
            [{"r": r, "s": s, "h": h} for r, (s, h) in heads.items()],
        )

    # Every row as found, carried into the trail.
    now = datetime.now(UTC)
    at = _instant(now)
    pending: list[dict[str, Any]] = []
    event_seqs: list[dict[str, Any]] = []

    def add(kind: str, body: dict[str, Any]) -> int:
        nonlocal seq, prev
        seq += 1
        record = _canonical({**body, "kind": kind, "seq": seq, "at": at, "v": 2, "carried": True})
        digest = hashlib.sha256((prev + record).encode()).hexdigest()
        pending.append(
            {"seq": seq, "at": now, "kind": kind, "record": record, "prev_hash": prev, "hash": digest, "hmac": None}
        )
        prev = digest
        if len(pending) >= BATCH:
            flush()
        return seq

    def flush() -> None:
        if pending:
            conn.execute(_audit.insert(), pending)
            pending.clear()

    for batch in _batches(conn, sa.select(_run).order_by(_run.c.started_at, _run.c.id)):
        for r in batch:
            add("run.carried", {"run": _run_state(r)})
    for batch in _batches(conn, sa.select(_break).order_by(_break.c.opened_at, _break.c.id)):
        for b in batch:
            add("break.carried", {"break": _break_state(b)})
    for batch in _batches(conn, sa.select(_event).order_by(_event.c.id)):
        for e in batch:
            event_seqs.append({"i": e.id, "s": add("event.carried", {"event": _event_state(e)})})
    flush()
    # Each event row names its record (after the scan of break_event: no row changes under it).
    link = _event.update().where(_event.c.id == sa.bindparam("i")).values(audit_seq=sa.bindparam("s"))
    for start in range(0, len(event_seqs), BATCH):
        conn.execute(link, event_seqs[start : start + BATCH])
    op.create_index("ux_break_event_audit_seq", "break_event", ["audit_seq"], unique=True)


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
