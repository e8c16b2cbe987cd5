"""Every execution of a custody wallet judged: which transaction, what the execution rules
found in it, and the owners/modules mapping entries it wrote (probed at every later pin).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_execution",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("owners_written", sa.Text, nullable=False),
        sa.Column("modules_written", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
        sa.Column("observed_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("chain", "block_hash", "tx_hash", "wallet", name="ux_wallet_execution"),
    )
    op.create_index("ix_wallet_execution_chain_block", "wallet_execution", ["chain", "block_number"])
    op.create_index("ix_wallet_execution_wallet", "wallet_execution", ["chain", "wallet"])


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
