"""Evidence of the source: each run records, per chain, the RPC endpoints that answered
(redacted to scheme://host[:port]) and the client each said it runs.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_chain") as run_chain:
        # JSON list of {"endpoint", "client_version"}; NULL for runs recorded before this revision.
        run_chain.add_column(sa.Column("sources", sa.Text, nullable=True))


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
