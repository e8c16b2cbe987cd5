"""The schema of the first release (balance reconciliation), as it shipped.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconciler.ledger.types import ExactInt

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schema_meta",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("migrated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "import_batch",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("imported_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "account",
        sa.Column("account", sa.String(200), primary_key=True),
        sa.Column("seg_class", sa.String(32), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("import_id", sa.String(36), nullable=False, index=True),
    )
    op.create_table(
        "book_entry",
        sa.Column("entry_id", sa.String(200), primary_key=True),
        sa.Column("entry_date", sa.Date, nullable=False),
        sa.Column("account", sa.String(200), sa.ForeignKey("account.account"), nullable=False, index=True),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(200), nullable=False),
        sa.Column("amount", ExactInt(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("memo", sa.String, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("import_batch.id"), nullable=False),
    )
    op.create_index("ix_book_entry_wallet_asset", "book_entry", ["wallet", "asset"])
    op.create_table(
        "run",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
    )
    op.create_table(
        "run_chain",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("chain", sa.String(200), primary_key=True),
        sa.Column("chain_id", sa.BigInteger, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("read_path", sa.String(16), nullable=True),
        sa.Column("error", sa.String, nullable=True),
    )
    op.create_table(
        "balance_snapshot",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("chain", sa.String(200), primary_key=True),
        sa.Column("wallet", sa.String(200), primary_key=True),
        sa.Column("asset", sa.String(200), primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("book", ExactInt(), nullable=False),
        sa.Column("onchain", ExactInt(), nullable=False),
    )
    op.create_table(
        "break",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(600), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(200), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("amount", ExactInt(), nullable=True),
        sa.Column("detail", sa.String, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("first_run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("last_run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=False),
        sa.Column("resolved_run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.Column("times_seen", sa.Integer, nullable=False),
    )
    op.create_index(
        "ux_break_active_key",
        "break",
        ["key"],
        unique=True,
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    )
    op.create_table(
        "break_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("break_id", sa.String(36), sa.ForeignKey("break.id"), nullable=False, index=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("amount", ExactInt(), nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("note", sa.String, nullable=False),
        sa.UniqueConstraint("break_id", "run_id", "event"),
    )
    op.execute(sa.text("INSERT INTO schema_meta (id, version, migrated_at) VALUES (1, 1, CURRENT_TIMESTAMP)"))


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
