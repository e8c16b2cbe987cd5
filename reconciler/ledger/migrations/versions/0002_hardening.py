"""Runs know who runs them and keep the document they printed; breaks and snapshots keep the
asset's decimals; the ad-hoc schema_meta table gives way to Alembic's own version table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as run:
        run.add_column(sa.Column("host", sa.String(255), nullable=True))
        run.add_column(sa.Column("pid", sa.Integer, nullable=True))
        run.add_column(sa.Column("proc_start", sa.String(32), nullable=True))
        run.add_column(sa.Column("trigger", sa.String(16), nullable=False, server_default="cli"))
        run.add_column(sa.Column("job", sa.String(32), nullable=False, server_default="run"))
        run.add_column(sa.Column("scheduled_for", sa.DateTime, nullable=True))
        run.add_column(sa.Column("document", sa.Text, nullable=True))
    op.create_index("ix_run_status", "run", ["status"])
    op.create_index("ix_run_started_at", "run", ["started_at"])
    with op.batch_alter_table("break") as brk:
        brk.add_column(sa.Column("decimals", sa.Integer, nullable=True))
    with op.batch_alter_table("balance_snapshot") as snap:
        snap.add_column(sa.Column("decimals", sa.Integer, nullable=True))
        snap.add_column(sa.Column("seq", sa.Integer, nullable=True))  # the order the run printed it in
    # Runs of the first release that a killed process left `running` can never finish now.
    op.execute(
        sa.text(
            "UPDATE run SET status = 'incomplete', exit_code = 2, "
            "reason = 'left running by an earlier version of the reconciler (process gone)' "
            "WHERE status = 'running'"
        )
    )
    op.drop_table("schema_meta")


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
