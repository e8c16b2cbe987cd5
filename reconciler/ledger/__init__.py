"""The ledger database: the only package that imports SQLModel/SQLAlchemy.

Invariant: table classes never leave this package; callers get domain values.
"""

from reconciler.ledger import daemon_models, segregation_models  # noqa: F401 - their tables belong to the metadata
from reconciler.ledger.store import Ledger

__all__ = ["Ledger"]
