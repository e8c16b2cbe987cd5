"""Ledger tables. Amounts use ExactInt; times are UTC; nothing here reaches the engine."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from reconciler.domain import (
    MAX_ACCOUNT_LENGTH,
    MAX_ASSET_LENGTH,
    MAX_ENTRY_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_WALLET_LENGTH,
)
from reconciler.ledger.types import ExactInt


def _amount(nullable: bool = False) -> Column[int]:
    return Column(ExactInt(), nullable=nullable)


class Account(SQLModel, table=True):
    __tablename__ = "account"
    account: str = Field(primary_key=True, max_length=MAX_ACCOUNT_LENGTH)
    seg_class: str = Field(max_length=32)
    name: str = ""
    import_id: str = Field(max_length=36, index=True)


class ImportBatch(SQLModel, table=True):
    """Evidence of each accepted import: which file, its digest, how many rows."""

    __tablename__ = "import_batch"
    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=32)
    source: str
    sha256: str = Field(max_length=64)
    rows: int
    imported_at: datetime


class BookEntry(SQLModel, table=True):
    __tablename__ = "book_entry"
    entry_id: str = Field(primary_key=True, max_length=MAX_ENTRY_ID_LENGTH)
    entry_date: date
    account: str = Field(foreign_key="account.account", max_length=MAX_ACCOUNT_LENGTH, index=True)
    wallet: str = Field(max_length=MAX_WALLET_LENGTH)
    asset: str = Field(max_length=MAX_ASSET_LENGTH)
    amount: int = Field(sa_column=_amount())
    kind: str = Field(max_length=32)
    memo: str = ""
    tx_hash: str | None = Field(default=None, max_length=66)
    import_id: str = Field(foreign_key="import_batch.id", max_length=36)

    __table_args__ = (Index("ix_book_entry_wallet_asset", "wallet", "asset"),)


class Run(SQLModel, table=True):
    __tablename__ = "run"
    id: str = Field(primary_key=True, max_length=36)
    started_at: datetime = Field(index=True)
    finished_at: datetime | None = None
    status: str = Field(max_length=16, index=True)  # running | complete | incomplete
    reason: str | None = None
    exit_code: int | None = None
    # Who runs it: a run left `running` by a process that is gone is closed by the next command.
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    proc_start: str | None = Field(default=None, max_length=32)
    trigger: str = Field(default="cli", max_length=16)  # cli | schedule
    job: str = Field(default="run", max_length=32)  # run | scan | segregation_statement
    scheduled_for: datetime | None = None
    # The `--json` document as printed, without its positions (those live in balance_snapshot).
    document: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The audit trail's head right after this run's outcome record (its seq and hash): what
    # `runs show` prints for an examiner to keep outside the database.
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    audit_hash: str | None = Field(default=None, max_length=64)
    # Refreshed by the run's process while it runs (reconciler.ledger.liveness): from another host,
    # a run is judged gone only when this is older than the lease.
    heartbeat_at: datetime | None = None
    # A scheduled firing run again after its first run's process died: that first run's id.
    rerun_of: str | None = Field(default=None, max_length=36)


class RunChain(SQLModel, table=True):
    __tablename__ = "run_chain"
    run_id: str = Field(foreign_key="run.id", primary_key=True, max_length=36)
    chain: str = Field(primary_key=True, max_length=200)
    chain_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    block_hash: str | None = Field(default=None, max_length=66)
    read_path: str | None = Field(default=None, max_length=16)
    error: str | None = None
    # JSON list of {"endpoint", "client_version"}: the endpoints (redacted) that answered.
    sources: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Positions are stored when they change (see ledger/snapshots.py). NULL snapshot_seq: a run
    # recorded before revision 0008 (its balance_snapshot rows are all of its positions) or one
    # that recorded no positions for the chain.
    snapshot_seq: int | None = None  # per chain, increasing with each run that recorded positions
    snapshot_base: str | None = Field(default=None, max_length=36)  # the run holding the full set
    snapshot_offset: int | None = None  # where the chain's positions start in the run's document
    snapshot_rows: int | None = None  # change rows stored after the base up to this run (0: a full set)
    positions: int | None = None  # how many positions the run had on the chain
    positions_keys: str | None = Field(default=None, max_length=64)  # sha256 of the ordered keys
    positions_digest: str | None = Field(default=None, max_length=64)  # sha256 of keys and values

    __table_args__ = (
        Index("ix_run_chain_snapshot_seq", "chain", "snapshot_seq"),
        Index("ix_run_chain_snapshot_base", "snapshot_base", "chain"),
    )


class BalanceSnapshot(SQLModel, table=True):
    __tablename__ = "balance_snapshot"
    run_id: str = Field(foreign_key="run.id", primary_key=True, max_length=36)
    chain: str = Field(primary_key=True, max_length=200)
    wallet: str = Field(primary_key=True, max_length=200)
    asset: str = Field(primary_key=True, max_length=200)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    book: int = Field(sa_column=_amount())
    onchain: int = Field(sa_column=_amount())
    decimals: int | None = None
    seq: int | None = None  # the order the run printed it in


class BreakRow(SQLModel, table=True):
    """A break and its lifecycle. At most one active (not resolved) break per key."""

    __tablename__ = "break"
    id: str = Field(primary_key=True, max_length=36)
    key: str = Field(max_length=600)
    kind: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=16)
    chain: str = Field(max_length=200)
    wallet: str = Field(max_length=200)
    asset: str | None = Field(default=None, max_length=200)
    tx_hash: str | None = Field(default=None, max_length=66)
    amount: int | None = Field(default=None, sa_column=_amount(nullable=True))
    detail: str = ""
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    block_hash: str | None = Field(default=None, max_length=66)
    first_run_id: str = Field(foreign_key="run.id", max_length=36)
    last_run_id: str = Field(foreign_key="run.id", max_length=36)
    resolved_run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    times_seen: int = 1
    decimals: int | None = None  # the asset's, so amounts display even after it left the config
    # Found in a block short of its chain's confirmations (the watcher): True until that block
    # (the evidence block) is confirmed, then False; None for a break never tentative.
    tentative: bool | None = None
    evidence_block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    evidence_block_hash: str | None = Field(default=None, max_length=66)

    __table_args__ = (
        Index(
            "ux_break_active_key",
            "key",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
    )


class BreakEvent(SQLModel, table=True):
    """The audit trail of a break: opened, seen, acknowledged, resolved — with evidence."""

    __tablename__ = "break_event"
    id: int | None = Field(default=None, primary_key=True)
    break_id: str = Field(foreign_key="break.id", max_length=36, index=True)
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    event: str = Field(max_length=16)
    at: datetime
    amount: int | None = Field(default=None, sa_column=_amount(nullable=True))
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    block_hash: str | None = Field(default=None, max_length=66)
    note: str = ""
    # The audit-trail record that carries this event (one record per event row).
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))

    __table_args__ = (
        UniqueConstraint("break_id", "run_id", "event"),
        Index("ux_break_event_audit_seq", "audit_seq", unique=True),
    )


class WalletBaseline(SQLModel, table=True):
    """A wallet's on-chain configuration as reviewed (`wallets baseline`), or as first seen by
    a run (reviewed = false). The newest row per (chain, wallet) is the one runs compare with;
    older rows stay as the history of reviews."""

    __tablename__ = "wallet_baseline"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=200)
    wallet: str = Field(max_length=200)
    address: str = Field(max_length=42)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    config: str = Field(sa_column=Column(Text, nullable=False))  # WalletConfig.to_json()
    reviewed: bool
    note: str = ""
    recorded_at: datetime
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)

    __table_args__ = (Index("ix_wallet_baseline_chain_wallet", "chain", "wallet"),)


class TokenBaseline(SQLModel, table=True):
    """Where a proxied token's logic lived when it was baselined (issuer-side changes)."""

    __tablename__ = "token_baseline"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=200)
    token: str = Field(max_length=42)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    implementation: str = Field(sa_column=Column(Text, nullable=False))  # TokenImplementation.to_json()
    reviewed: bool
    recorded_at: datetime
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)

    __table_args__ = (Index("ix_token_baseline_chain_token", "chain", "token"),)


class MovementRow(SQLModel, table=True):
    """One movement of one custody wallet as the chain showed it (evidence; never deleted: a
    movement whose block was reorged away is marked ``reorged``). A transfer between two custody
    wallets is two rows: out of one, into the other."""

    __tablename__ = "movement"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=200)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    block_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    tx_hash: str = Field(max_length=66)
    position: str = Field(max_length=64)
    log_index: int | None = None
    trace_position: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=16)  # token | approval | native | fee
    wallet: str = Field(max_length=200)
    direction: str = Field(max_length=16)  # in | out | approval | fee
    asset: str = Field(max_length=200)
    token: str | None = Field(default=None, max_length=42)
    from_address: str = Field(max_length=42)
    to_address: str = Field(max_length=42)
    amount: int = Field(sa_column=_amount())
    status: str = Field(max_length=16)  # observed | reorged
    instruction_id: str | None = Field(default=None, max_length=200)
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    observed_at: datetime
    # Who moved a token transfer's tokens (wallet | spender | issuer) and, for the issuer, the
    # function; NULL where that could not be told (and for rows stored before revision 0010).
    initiator: str | None = Field(default=None, max_length=16)
    function: str | None = Field(default=None, max_length=64)

    __table_args__ = (
        UniqueConstraint("chain", "block_hash", "tx_hash", "position", "wallet", "direction", name="ux_movement"),
        Index("ix_movement_chain_block", "chain", "block_number"),
        Index("ix_movement_instruction", "instruction_id"),
        Index("ix_movement_tx_hash", "tx_hash"),
        Index("ix_movement_chain_initiator", "chain", "initiator"),
    )


class ScanCheckpoint(SQLModel, table=True):
    """How far a chain's movements were observed, appended per scan: the newest row per chain is
    the checkpoint; older rows are the blocks a reorg is walked back over."""

    __tablename__ = "scan_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=200)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    recorded_at: datetime

    __table_args__ = (Index("ix_scan_checkpoint_chain", "chain", "block_number"),)


class WatchHead(SQLModel, table=True):
    """Per chain, the newest block the daemon's watcher judged and the node's head as it last
    read it; ``caught_up_at``: the last time the two were equal (what `health` measures)."""

    __tablename__ = "watch_head"
    chain: str = Field(primary_key=True, max_length=200)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    node_head: int = Field(sa_column=Column(BigInteger, nullable=False))
    caught_up_at: datetime
    updated_at: datetime


class ExecutionRow(SQLModel, table=True):
    """One execution of one custody wallet judged by surveillance: the transaction, what the
    rules found in it, and the owners/modules mapping entries it wrote (each later run reads
    those entries at its pin, so an owner or module written outside the lists stays visible).
    Kept as evidence; an execution whose block was reorged away is marked ``reorged``."""

    __tablename__ = "wallet_execution"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=200)
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    tx_hash: str = Field(max_length=66)
    wallet: str = Field(max_length=200)
    status: str = Field(max_length=16)  # observed | reorged
    rules: str = Field(default="", sa_column=Column(Text, nullable=False))  # comma-separated rule names found
    owners_written: str = Field(default="", sa_column=Column(Text, nullable=False))  # comma-separated EIP-55
    modules_written: str = Field(default="", sa_column=Column(Text, nullable=False))
    run_id: str | None = Field(default=None, foreign_key="run.id", max_length=36)
    observed_at: datetime

    __table_args__ = (
        UniqueConstraint("chain", "block_hash", "tx_hash", "wallet", name="ux_wallet_execution"),
        Index("ix_wallet_execution_chain_block", "chain", "block_number"),
        Index("ix_wallet_execution_wallet", "chain", "wallet"),
    )


class InstructionRow(SQLModel, table=True):
    """A signed transfer instruction as imported. It authorizes nothing by being here: its
    signatures are verified again whenever it is used."""

    __tablename__ = "instruction"
    id: str = Field(primary_key=True, max_length=200)
    chain: str = Field(max_length=200)
    wallet: str = Field(max_length=200)
    asset: str = Field(max_length=200)
    to_address: str = Field(max_length=42)
    amount: int = Field(sa_column=_amount())
    valid_until: datetime
    signatures: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of 0x-hex
    document: str = Field(sa_column=Column(Text, nullable=False))  # the JSON line as imported
    import_id: str = Field(foreign_key="import_batch.id", max_length=36)


class ImportedWallet(SQLModel, table=True):
    """A custody wallet imported with `wallets import` (the configuration's [wallets.X], for
    fleets too large for a TOML file). Runs see these and the configured ones as one set.
    Lists are ';'-joined EIP-55 addresses; ``kind`` is "" when the file did not declare one."""

    __tablename__ = "imported_wallet"
    # Byte order on PostgreSQL too ("C"), as on SQLite: names sort the same on both, and a chain
    # read chunk by chunk (name > the last one) follows the index.
    name: str = Field(
        sa_column=Column(
            String(MAX_WALLET_LENGTH).with_variant(String(MAX_WALLET_LENGTH, collation="C"), "postgresql"),
            primary_key=True,
        )
    )
    chain: str = Field(max_length=MAX_NAME_LENGTH)
    address: str = Field(max_length=42)
    seg_class: str = Field(max_length=32)
    kind: str = Field(default="", max_length=16)
    approvers: str = Field(default="", sa_column=Column(Text, nullable=False))
    threshold: int = 0
    allowed_spenders: str = Field(default="", sa_column=Column(Text, nullable=False))
    import_id: str = Field(foreign_key="import_batch.id", max_length=36)

    __table_args__ = (
        UniqueConstraint("chain", "address", name="ux_imported_wallet_chain_address"),
        # A chain's wallets read chunk by chunk in name order (Ledger.wallets).
        Index("ix_imported_wallet_chain_name", "chain", "name"),
    )
