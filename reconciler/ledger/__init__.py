"""The ledger database: the only package that imports SQLModel/SQLAlchemy.

Invariant: table classes never leave this package; callers get domain values.
"""
