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
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:  # alembic costs ~0.1 s to import: only `init` (an upgrade) pays for it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_RELEASE = "0001"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def known_revisions() -> set[str]:
    """The revisions this code knows, from the migrations' file names (``0008_….py`` is
    revision 0008; a test checks this against Alembic's own reading of the scripts), so that
    checking a ledger's version does not import Alembic."""
    return {p.name[:4] for p in (_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}


def head() -> str:
    return max(known_revisions())


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
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if revision is not None:
            return SchemaState(str(revision), False)
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
    from alembic import command

    found = state(connection)
    cfg = _config(connection)
    if found.first_release:
        command.stamp(cfg, FIRST_RELEASE)
    command.upgrade(cfg, "head")
    return found.revision, head()
