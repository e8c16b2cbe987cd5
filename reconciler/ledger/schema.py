"""The ledger's schema version, managed by Alembic.

Invariants: `reconciler init` is the only thing that creates or upgrades the schema, in one
transaction, under a lock so two `init`s cannot race; every other command uses a ledger only
when its schema is exactly the newest this code knows, and refuses a missing, older or newer
one with the command that fixes it. A database made by the first release (before Alembic; it
has `schema_meta` and no `alembic_version`) is recognised as revision 0001 and upgraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_RELEASE = "0001"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    heads = _script().get_heads()
    assert len(heads) == 1, f"migrations must form one line, found heads {heads}"
    return heads[0]


def known_revisions() -> set[str]:
    return {rev.revision for rev in _script().walk_revisions()}


def version_number(revision: str | None) -> int:
    """Revisions are numbered 0001, 0002, …: the schema version users see."""
    return int(revision) if revision and revision.isdigit() else 0


@dataclass(frozen=True, slots=True)
class SchemaState:
    revision: str | None  # None: no reconciler schema at all
    first_release: bool  # made before Alembic: has schema_meta, no alembic_version

    @property
    def current(self) -> bool:
        return self.revision == head()

    @property
    def newer(self) -> bool:
        return self.revision is not None and self.revision not in known_revisions()


def state(connection: Connection) -> SchemaState:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is not None:
        return SchemaState(revision, False)
    tables = set(inspect(connection).get_table_names())
    if "schema_meta" in tables:
        return SchemaState(FIRST_RELEASE, True)
    return SchemaState(None, False)


def upgrade(connection: Connection) -> tuple[str | None, str]:
    """Bring the schema to the newest revision inside the caller's transaction; returns the
    revision found and the revision now. Serialized against other `init`s."""
    if connection.dialect.name == "postgresql":
        # Two inits at once on one database: the second waits, then finds nothing to do.
        lock = text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :scope))")
        connection.execute(lock, {"scope": "/schema"})
    found = state(connection)
    cfg = _config(connection)
    if found.first_release:
        command.stamp(cfg, FIRST_RELEASE)
    command.upgrade(cfg, "head")
    return found.revision, head()
