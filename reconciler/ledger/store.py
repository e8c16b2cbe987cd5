"""Queries and writes on the ledger: the Ledger, assembled from its concerns.

The core (engine, sessions, schema, readiness) is reconciler.ledger.base; accounts and books
are reconciler.ledger.books, runs and baselines reconciler.ledger.runs, breaks
reconciler.ledger.breaks, imported wallets reconciler.ledger.wallets_store. The ledger modules
of other concerns (surveillance_store, segregation_store, daemon_store, outbox_store) are
functions taking a Ledger.

Invariants: an import writes all of its rows or none; a run's results (chains, balance
snapshots, break changes and the run's status) are written in one transaction; amounts are
summed exactly: by PostgreSQL over NUMERIC, in Python on SQLite, never with SQLite's SUM over
text.
"""

from __future__ import annotations

# Every table joins the metadata wherever a ledger is used (a test compares it with the migrations).
import reconciler.ledger.daemon_models  # noqa: F401
import reconciler.ledger.segregation_models  # noqa: F401
from reconciler.ledger.books import BooksMixin
from reconciler.ledger.breaks import BreaksMixin
from reconciler.ledger.runs import RunsMixin
from reconciler.ledger.wallets_store import WalletsMixin


class Ledger(BooksMixin, RunsMixin, BreaksMixin, WalletsMixin):
    """The ledger database at one URL (SQLite or PostgreSQL); ``alerts`` is set by the
    composition root (reconciler.bootstrap)."""
