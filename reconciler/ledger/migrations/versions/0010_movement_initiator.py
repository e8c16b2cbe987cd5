"""Who moved each observed token transfer: the movement's ``initiator`` (wallet, spender or
issuer) and, for the token's issuer, the ``function`` (forcedTransfer, recoveryAddress, mint,
burn…), as classified from the transaction's calls (ERC-3643 permissioned fund tokens).

Movements stored before this revision keep NULL in both: who moved them was never read.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("movement") as movement:
        movement.add_column(sa.Column("initiator", sa.String(16), nullable=True))
        movement.add_column(sa.Column("function", sa.String(64), nullable=True))
    op.create_index("ix_movement_chain_initiator", "movement", ["chain", "initiator"])


def downgrade() -> None:  # pragma: no cover - a ledger is never downgraded
    raise NotImplementedError("the ledger is never downgraded; restore a backup instead")
