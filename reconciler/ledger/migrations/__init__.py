"""Alembic migrations of the ledger schema, applied by `reconciler init` (see ledger/schema.py)."""
