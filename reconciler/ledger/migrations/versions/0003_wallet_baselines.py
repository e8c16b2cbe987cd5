"""Reviewed wallet configurations and token implementations, against which every run compares.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_baseline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("wallet", sa.String(200), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("reviewed", sa.Boolean, nullable=False),
        sa.Column("note", sa.String, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
    )
    op.create_index("ix_wallet_baseline_chain_wallet", "wallet_baseline", ["chain", "wallet"])
    op.create_table(
        "token_baseline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("token", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("implementation", sa.Text, nullable=False),
        sa.Column("reviewed", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), nullable=True),
    )
    op.create_index("ix_token_baseline_chain_token", "token_baseline", ["chain", "token"])


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
