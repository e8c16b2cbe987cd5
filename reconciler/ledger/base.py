"""The ledger's core: the engine and its sessions, the schema's readiness, and the helpers every
concern of the ledger shares.

Invariants: every transaction is one session, committed on success and rolled back on any
failure, its errors said as LedgerError with every credential scrubbed; a ledger is used only
when its schema is exactly the newest this code knows, and no run is left ``running`` by a
process that is gone.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, func, insert, make_url, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import abbreviate_ids
from reconciler.errors import LedgerError
from reconciler.ledger import liveness, schema, trail
from reconciler.ledger.daemon_models import JobFiring
from reconciler.ledger.locks import host_name
from reconciler.ledger.models import Run
from reconciler.redaction import redact_db_url, redact_urls, scrub

log = logging.getLogger(__name__)

_IN_CHUNK = 500
MAX_FIRING_ATTEMPTS = 2  # a scheduled firing runs once, and once more if its process died


class LedgerBase:
    """The engine, sessions, schema and readiness that the ledger's concerns (books, runs,
    breaks: reconciler.ledger.store.Ledger) are built on."""

    def __init__(self, url: str, *, reader: bool = False) -> None:
        """The ledger at ``url``; a ``reader`` only reads it (a unit worker process): on
        SQLite its transactions take no write lock (they could not write if they tried), so
        readers never wait on one another."""
        self.url = url
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise LedgerError(f"cannot use database URL {redact_url(url)!r}: {_first_line(exc, url)}") from exc
        self.alerts: trail.AlertSetup | None = None  # set by the composition root
        # [audit] key_env's key, set by the composition root: every record written carries its HMAC.
        self.audit_key: bytes | None = None
        if self.engine.dialect.name == "sqlite":
            if self.engine.url.database in (None, "", ":memory:"):
                raise LedgerError("an in-memory SQLite database cannot keep a ledger: give a file path")
            event.listen(self.engine, "connect", _sqlite_reader_pragmas if reader else _sqlite_pragmas)
            # Every transaction takes SQLite's write lock up front: a read-then-write never
            # interleaves with another writer (no lost updates, no upgrade deadlocks).
            event.listen(self.engine, "begin", _sqlite_begin_deferred if reader else _sqlite_begin_immediate)

    @property
    def sqlite_path(self) -> Path | None:
        if self.engine.dialect.name != "sqlite" or not self.engine.url.database:
            return None
        return Path(self.engine.url.database)

    @contextmanager
    def _session(self, attach: Sequence[tuple[str, Path]] = ()) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any failure. On SQLite, the
        files ``attach`` names are attached to its connection (each as its schema name) before
        it begins and detached after it ends (SQLite attaches only outside a transaction)."""
        try:
            if not attach or self.engine.dialect.name != "sqlite":
                with Session(self.engine, expire_on_commit=False) as session, session.begin():
                    yield session
                return
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                for name, path in attach:
                    raw.execute(f"ATTACH DATABASE ? AS {name}", (str(path),))
                try:
                    with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                        yield session
                finally:
                    for name, _ in attach:
                        raw.execute(f"DETACH DATABASE {name}")
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        except IntegrityError as exc:
            raise LedgerError(f"database refused the write: {_first_line(exc, self.url)}") from exc
        except SQLAlchemyError as exc:
            raise LedgerError(f"database error: {_first_line(exc, self.url)}") from exc
        except self.engine.dialect.loaded_dbapi.Error as exc:  # the driver's own (attaching a stage)
            raise LedgerError(f"database error: {_first_line(exc, self.url)}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def init(self) -> tuple[int, int]:
        """Create or upgrade the schema to the newest revision; idempotent. Returns the schema
        version found (0: none) and the version now."""
        try:
            with self.engine.begin() as conn:
                found = schema.state(conn)
                if found.newer:
                    raise LedgerError(_newer_message(found.revision))
                before, after = schema.upgrade(conn)
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc, self.url)}") from exc
        except SQLAlchemyError as exc:
            raise LedgerError(f"migrating the database failed: {_first_line(exc, self.url)}") from exc
        return schema.version_number(before), schema.version_number(after)

    def ensure_ready(self, reap: bool = True) -> None:
        """Refuse a database without the newest schema, naming the command that fixes it;
        never create one (a mistyped path must not look like an empty, clean ledger). Then,
        unless ``reap`` is off (a read-only command), close runs whose process is gone."""
        path = self.sqlite_path
        if path is not None and not path.exists():
            raise LedgerError(f"no ledger at {path}: run `reconciler init` to create it (or check [database] url)")
        try:
            with self.engine.connect() as conn:
                found = schema.state(conn)
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc, self.url)}") from exc
        if found.revision is None:
            raise LedgerError(
                f"the database {redact_url(self.url)} has no reconciler ledger: run `reconciler init` to create it"
            )
        if found.newer:
            raise LedgerError(_newer_message(found.revision))
        if not found.current:
            raise LedgerError(
                f"the ledger schema is version {schema.version_number(found.revision)}, this reconciler uses "
                f"{schema.version_number(schema.head())}: run `reconciler init` to upgrade it"
            )
        if reap:
            self.reap_abandoned_runs()

    def reap_abandoned_runs(self, this_host: str | None = None) -> list[str]:
        """Close as incomplete every run left ``running`` by a process that is provably gone
        (SIGKILL, power loss: see reconciler.ledger.liveness; ``this_host`` defaults to this
        machine's name). A run that may still live is left alone, however long its database
        session has been gone. A scheduled firing whose run is closed here is marked lost, so a
        daemon runs it again, once (a re-run that dies too is not run again)."""
        host = this_host if this_host is not None else host_name()
        reaped: list[tuple[str, str]] = []
        with self._session() as s:
            query = select(Run).where(col(Run.status) == "running")
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # a run writing its outcome lives
            running = list(s.scalars(query))
            if not running:
                return []
            conn = s.connection()
            now = liveness.database_now(conn)
            for run in running:
                verdict = liveness.judge(conn, run, host, now)
                if verdict is None:
                    continue
                firing = s.scalars(select(JobFiring).where(col(JobFiring.run_id) == run.id)).first()
                run.status = "incomplete"
                run.exit_code = 2
                run.finished_at = _now()
                run.reason = (
                    f"the process running it ({run.host}:{run.pid}) ended without recording an outcome "
                    f"(killed or lost power: {verdict.detail}); nothing it saw was saved"
                )
                if firing is not None:
                    firing.lost_at = _now()
                    if firing.attempts >= MAX_FIRING_ATTEMPTS:
                        run.reason += "; it was the firing's re-run, so the firing is not run again"
                    else:
                        run.reason += "; a daemon runs its firing again, once"
                reaped.append((run.id, verdict.how))
                trail.record_run_outcome(s, self.alerts, run, self.audit_key)
        for run_id, how in reaped:
            log.warning("event=run_reaped run_id=%s reason=process_gone proof=%s", run_id, how)
        return [run_id for run_id, _ in reaped]


def _connect_args(url: str) -> dict[str, Any]:
    """PostgreSQL sessions say which process holds them (``application_name`` =
    ``reconciler:PID`` in pg_stat_activity), unless the URL names them itself."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or "application_name" in parsed.query:
        return {}
    return {"application_name": f"reconciler:{os.getpid()}"}


def _now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # The driver's own implicit BEGIN (deferred) is replaced by _sqlite_begin_immediate.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_reader_pragmas(dbapi_connection: Any, record: object) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")  # a reader's connection refuses any write
    cursor.close()


def _sqlite_begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def _newer_message(revision: str | None) -> str:
    return (
        f"the ledger schema is version {schema.version_number(revision)} (revision {revision}), newer than this "
        f"reconciler knows ({schema.version_number(schema.head())}): upgrade the reconciler; nothing was changed"
    )


_SHOWN_MATCHES = 5
MIN_PREFIX = 4  # the shortest id prefix accepted, as git's abbreviated hashes


def _resolve_prefix(s: Session, table: Any, column: Any, given: str, what: str, lister: str) -> str:
    """A full id, or any unique prefix of one of at least MIN_PREFIX characters (like git; ids
    are lowercase hex, so case does not matter). A prefix that several ids start with is
    refused, naming them in the short form tables print."""
    if given and s.get(table, given) is not None:
        return given
    wanted = given.strip().lower()
    if 0 < len(wanted) < MIN_PREFIX:
        # "6" would pick one break in sixteen: acknowledging a critical break by a slip of the key.
        raise LedgerError(
            f"{what} id prefix {given!r} is too short: give at least {MIN_PREFIX} characters of the id "
            f"({lister} shows them)"
        )
    if wanted:
        escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        starts = column.like(escaped + "%", escape="\\")
        matches = [str(m) for m in s.scalars(select(column).where(starts).order_by(column).limit(_SHOWN_MATCHES + 1))]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            total = s.scalar(select(func.count()).select_from(table).where(starts)) or len(matches)
            short = abbreviate_ids(matches)  # the next match too: it may share the listed ones' prefix
            shown = ", ".join(short[m] for m in matches[:_SHOWN_MATCHES]) + (", …" if total > _SHOWN_MATCHES else "")
            raise LedgerError(f"{what} id prefix {given} matches {total} {what}s ({shown}); give more characters")
    raise LedgerError(f"no {what} with id {given!r}; {lister} lists them")


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _iso(at: datetime) -> str:
    """Stored times are UTC; SQLite hands them back naive."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def _utc(at: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back naive."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _first_line(exc: BaseException, url: str = "") -> str:
    """The driver's message, first line, scrubbed of the database URL's password (a driver's
    text can quote the connection string) and of any URL's credentials; scrubbed before it
    is cut, so no half of a secret survives."""
    text = redact_urls(scrub(str(getattr(exc, "orig", None) or exc), [url]))
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def redact_url(url: str) -> str:
    """The database URL with every password (userinfo, ``password=``-like parameters) as ***."""
    return redact_db_url(url)


def _raw_rows(s: Session, query: Any) -> Iterator[tuple[Any, ...]]:
    """``query``'s rows as the driver returns them (no result processing), streamed from its
    cursor: SQLAlchemy's work per row was most of reading a fleet's books on SQLite."""
    compiled = query.compile(dialect=s.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.params  # made anew at each access: once, not once per parameter
    params = tuple(values[name] for name in compiled.positiontup or ())
    cursor = s.connection().exec_driver_sql(str(compiled), params).cursor
    while batch := cursor.fetchmany(10_000):
        yield from batch


_UNSET = object()  # no value seen yet in a column (insert_plain)


def insert_plain(
    s: Session,
    table: Table,
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    batch: int = 5000,
    bound: Collection[str] = (),
) -> None:
    """Insert ``rows`` (each a value per column of ``names``, in that order; the others default)
    inside the session's transaction, through the driver's executemany with each column's own
    bind processing: what ``s.execute(insert(table), rows)`` stores, without SQLAlchemy's work
    per row (most of a first run's write of 400,000 positions and 100,000 baselines). The
    columns ``bound`` names hold the driver's form already (SQLite); a value the row before
    had in the same column (a run's id, its time) is processed once. On SQLite the rows are
    taken from ``rows`` by another thread, a batch ahead: they must not be read through the
    session's own connection."""
    connection = s.connection()
    dialect = connection.dialect
    it = iter(rows)
    if dialect.paramstyle != "qmark":  # PostgreSQL: SQLAlchemy's executemany (insertmanyvalues)
        while part := list(itertools.islice(it, batch)):
            s.execute(insert(table), [dict(zip(names, row, strict=True)) for row in part])
        return
    processed = [
        (i, p)
        for i, n in enumerate(names)
        if n not in bound and (p := table.columns[n].type._cached_bind_processor(dialect)) is not None
    ]
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    last: list[tuple[Any, Any]] = [(_UNSET, None)] * len(names)

    def next_batch() -> list[tuple[Any, ...]]:
        part = list(itertools.islice(it, batch))
        if not processed:
            return [tuple(row) for row in part]
        values = []
        for row in part:
            out = list(row)
            for i, p in processed:
                value = out[i]
                before, after = last[i]
                if value is not before:
                    after = p(value)
                    last[i] = (value, after)
                out[i] = after
            values.append(tuple(out))
        return values

    # The next batch is made (its rows read and bound) by another thread while SQLite stores
    # this one: the driver lets go of the interpreter while it stores each row.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="insert") as maker:
        coming = maker.submit(next_batch)
        while values := coming.result():
            coming = maker.submit(next_batch)
            connection.exec_driver_sql(sql, values)
