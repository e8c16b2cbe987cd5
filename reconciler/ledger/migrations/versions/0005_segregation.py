"""Segregation: the back office's daily customer equity and off-chain funds, and each statement
with the inputs it was computed from.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconciler.ledger.types import ExactInt

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "equity_balance",
        sa.Column("business_date", sa.Date, primary_key=True),
        sa.Column("account", sa.String(200), sa.ForeignKey("account.account"), primary_key=True),
        sa.Column("cash_cents", ExactInt(), nullable=False),
        sa.Column("open_trade_equity_cents", ExactInt(), nullable=False),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("import_batch.id"), nullable=False),
    )
    op.create_table(
        "offchain_balance",
        sa.Column("business_date", sa.Date, primary_key=True),
        sa.Column("seg_class", sa.String(32), primary_key=True),
        sa.Column("depository", sa.String(200), primary_key=True),
        sa.Column("amount_cents", ExactInt(), nullable=False),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("import_batch.id"), nullable=False),
    )
    op.create_table(
        "segregation_run",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("as_of", sa.DateTime, nullable=False),
        sa.Column("business_date", sa.Date, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_segregation_run_business_date", "segregation_run", ["business_date"])
    op.create_table(
        "segregation_statement",
        sa.Column("run_id", sa.String(36), sa.ForeignKey("segregation_run.run_id"), primary_key=True),
        sa.Column("seg_class", sa.String(32), primary_key=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("amount_required_cents", ExactInt(), nullable=True),
        sa.Column("funds_in_segregation_cents", ExactInt(), nullable=True),
        sa.Column("excess_cents", ExactInt(), nullable=True),
        sa.Column("target_residual_interest_cents", ExactInt(), nullable=True),
        sa.Column("document", sa.Text, nullable=False),
    )


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
