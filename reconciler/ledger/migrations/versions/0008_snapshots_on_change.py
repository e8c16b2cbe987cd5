"""Writes proportional to change: a run stores a chain's positions in full only when the set of
positions changed (or enough changes piled up since the last full set); otherwise only the
positions whose book or on-chain value changed since the chain's previous run. `runs show`
rebuilds every run's full list from the last full set and the changes after it.

Runs recorded before this revision keep all their rows and are read as they are (NULL
snapshot_seq).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_chain") as run_chain:
        run_chain.add_column(sa.Column("snapshot_seq", sa.Integer, nullable=True))
        run_chain.add_column(sa.Column("snapshot_base", sa.String(36), nullable=True))
        run_chain.add_column(sa.Column("snapshot_offset", sa.Integer, nullable=True))
        run_chain.add_column(sa.Column("snapshot_rows", sa.Integer, nullable=True))
        run_chain.add_column(sa.Column("positions", sa.Integer, nullable=True))
        run_chain.add_column(sa.Column("positions_keys", sa.String(64), nullable=True))
        run_chain.add_column(sa.Column("positions_digest", sa.String(64), nullable=True))
    op.create_index("ix_run_chain_snapshot_seq", "run_chain", ["chain", "snapshot_seq"])
    op.create_index("ix_run_chain_snapshot_base", "run_chain", ["snapshot_base", "chain"])


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
