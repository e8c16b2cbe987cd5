"""Transfer surveillance: what moved in or out of each custody wallet (kept as evidence, even
when its block is reorged away), how far each chain was observed, and the signed instructions
that authorize outflows.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconciler.ledger.types import ExactInt

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "movement",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("block_time", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("log_index", sa.Integer, nullable=True),
        sa.Column("trace_position", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("asset", sa.String(200), nullable=False),
        sa.Column("token", sa.String(42), nullable=True),
        sa.Column("from_address", sa.String(42), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("amount", ExactInt(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instruction_id", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
        sa.Column("observed_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("chain", "block_hash", "tx_hash", "position", "wallet", "direction", name="ux_movement"),
    )
    op.create_index("ix_movement_chain_block", "movement", ["chain", "block_number"])
    op.create_index("ix_movement_instruction", "movement", ["instruction_id"])
    op.create_index("ix_movement_tx_hash", "movement", ["tx_hash"])
    op.create_table(
        "scan_checkpoint",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_scan_checkpoint_chain", "scan_checkpoint", ["chain", "block_number"])
    op.create_table(
        "instruction",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(200), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("amount", ExactInt(), nullable=False),
        sa.Column("valid_until", sa.DateTime, nullable=False),
        sa.Column("signatures", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("import_batch.id"), nullable=False),
    )


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
