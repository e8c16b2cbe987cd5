"""Alembic environment: migrations always run on a connection the ledger hands in.

Invariant: no migration opens its own engine or reads a URL (so no credential is ever logged
from here), and every migration of one `init` runs inside the caller's single transaction.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `reconciler init` drives migrations
    raise RuntimeError("run migrations through `reconciler init`, not the alembic command")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
