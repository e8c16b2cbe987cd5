"""Tables of the operating side: scheduled firings claimed by daemon instances, the alert outbox,
and the tamper-evident audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class JobFiring(SQLModel, table=True):
    """One scheduled firing of a job, claimed by exactly one daemon instance (the unique key is
    the claim: a second instance's insert fails and it skips the firing). ``run_id`` is the
    firing's latest run; when that run's process died (``lost_at``) the firing is claimed once
    more (``attempts`` 1 -> 2, a conditional update only one instance wins) and run again."""

    __tablename__ = "job_firing"
    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=32)
    scheduled_for: datetime
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    instance: str = Field(max_length=300)
    claimed_at: datetime
    attempts: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    lost_at: datetime | None = None  # when its latest run was found dead (process gone)

    __table_args__ = (UniqueConstraint("job", "scheduled_for", name="ux_job_firing"),)


PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"  # a RunUnit's status


class RunUnit(SQLModel, table=True):
    """One (chain, shard) of a sharded run: its pin, which wallets (count and digest), who
    holds it and since when, and what it found (``result``, JSON) or why it failed."""

    __tablename__ = "run_unit"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", max_length=36)
    chain: str = Field(max_length=64)
    shard: int
    shards: int
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    wallets: int
    wallets_digest: str = Field(max_length=64)
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    proc_start: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed_ms: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The coordinator's views of the books and baselines (JSON, reconciler.app.units): every
    # unit of the run reads through them, whichever daemon does it.
    views: str | None = Field(default=None, sa_column=Column(Text, nullable=True))

    __table_args__ = (
        UniqueConstraint("run_id", "chain", "shard", name="ux_run_unit"),
        Index("ix_run_unit_run_status", "run_id", "status"),
    )


class OutboxRow(SQLModel, table=True):
    """An alert waiting for (or done with) delivery to one webhook. Written in the same
    transaction as the change it announces, so no alert is lost to a crash; delivered at least
    once, always with the same event id."""

    __tablename__ = "alert_outbox"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36)
    event: str = Field(max_length=32)
    destination: str = Field(max_length=64)  # sha256 of the webhook URL: the URL may hold a secret
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None

    __table_args__ = (
        UniqueConstraint("event_id", "destination", name="ux_alert_outbox_event"),
        Index("ix_alert_outbox_pending", "delivered_at", "next_attempt_at"),
    )


class AuditRow(SQLModel, table=True):
    """One record of the audit trail: ``hash`` = SHA-256 of ``prev_hash`` and the canonical JSON
    ``record``; each record names the previous one's hash, so an edit or a deletion breaks the
    chain from there on. ``seq`` and ``at`` repeat what the record says (since revision 0011 its
    time is inside it); ``hmac`` is HMAC-SHA256(key, prev_hash + record) when ``[audit] key_env``
    was set as it was written."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: datetime
    kind: str = Field(max_length=32)
    record: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    hmac: str | None = Field(default=None, max_length=64)

    __table_args__ = (Index("ux_audit_log_seq", "seq", unique=True),)
