"""Following the head: tentative breaks and the watched head of each chain.

A break found in a block that had fewer than its chain's confirmations is opened tentative;
``evidence_block_number``/``evidence_block_hash`` name that block, so that a later head can
confirm the break (the block reached its confirmations and is still canonical) or retract it
(reorged away). Breaks recorded before this revision were never tentative: the three columns
stay NULL, which is also what the audit trail's records of them say (a NULL column is left out
of a record), so the trail verifies across the upgrade without a record of its own.

``watch_head`` holds, per chain, the newest block the daemon's watcher has judged and the
node's head as it last read it, so that `reconciler health` (another process) can tell how far
behind the watcher is.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("break") as brk:
        brk.add_column(sa.Column("tentative", sa.Boolean, nullable=True))
        brk.add_column(sa.Column("evidence_block_number", sa.BigInteger, nullable=True))
        brk.add_column(sa.Column("evidence_block_hash", sa.String(66), nullable=True))
    op.create_table(
        "watch_head",
        sa.Column("chain", sa.String(200), primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("node_head", sa.BigInteger, nullable=False),
        sa.Column("caught_up_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
