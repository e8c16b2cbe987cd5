"""Firings run exactly once, live runs never reaped: a run's heartbeat (refreshed by its process
while it runs, so a run on another host is judged gone only when it stops), the run a re-run
repeats, and each firing's attempts and when its run was found dead.

Rows recorded before this revision: runs have no heartbeat (their start stands in for it) and
re-run nothing; every firing has had one attempt and none is lost, so an upgrade re-runs no old
firing.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as run:
        run.add_column(sa.Column("heartbeat_at", sa.DateTime, nullable=True))
        run.add_column(sa.Column("rerun_of", sa.String(36), nullable=True))
    with op.batch_alter_table("job_firing") as firing:
        firing.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("1")))
        firing.add_column(sa.Column("lost_at", sa.DateTime, nullable=True))


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
