"""Wallets in the ledger: custody wallets imported with `wallets import` (for fleets too large
for the configuration file), one row each, unique by name and by (chain, address), read by chain
in name order.

A ledger upgraded to this revision has no imported wallet: its runs see the configured wallets
only, exactly as before.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imported_wallet",
        # Byte order ("C") on PostgreSQL, as SQLite compares: names sort alike on both.
        sa.Column(
            "name", sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql"), primary_key=True
        ),
        sa.Column("chain", sa.String(200), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("seg_class", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("approvers", sa.Text, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("allowed_spenders", sa.Text, nullable=False),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("import_batch.id"), nullable=False),
        sa.UniqueConstraint("chain", "address", name="ux_imported_wallet_chain_address"),
    )
    op.create_index("ix_imported_wallet_chain_name", "imported_wallet", ["chain", "name"])


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
