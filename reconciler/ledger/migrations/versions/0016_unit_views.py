"""The views a sharded run's units read the ledger through: the coordinator's, taken when the
run began (which book imports count, how far the wallet and token baselines go), so a daemon
that joins later reads the books and baselines the run began with, not those of its own start.

Rows recorded before this revision: units without views; a daemon reads those through views
of its own, as before.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_unit", sa.Column("views", sa.Text, nullable=True))


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
