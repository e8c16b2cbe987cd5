"""The ledger database: the only package that imports SQLModel/SQLAlchemy.

``store.Ledger`` is assembled from its concerns: ``base`` (engine, sessions, schema
readiness), ``books``, ``runs`` and ``breaks``; the other concerns are functions taking a
Ledger (``surveillance_store``, ``segregation_store``, ``daemon_store``, ``outbox_store``,
``trail``, ``snapshots``). Tables are in the ``*models`` modules, the schema's versions in
``migrations/`` (Alembic).

Invariants: table classes never leave this package; callers get domain values. The ledger
imports the core (value types, row records, column limits) and nothing of the file formats
(reconciler.inputs), the chains, the use cases or the command line.
"""
