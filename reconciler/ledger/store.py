"""Queries and writes on the ledger.

Invariants: an import writes all of its rows or none; a run's results (chains, balance
snapshots, break changes and the run's status) are written in one transaction; amounts are
summed in Python, never with SQLite's SUM over text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import (
    BlockRef,
    BreakEventRecord,
    BreakKey,
    BreakKind,
    BreakRecord,
    BreakStatus,
    Position,
    Severity,
)
from reconciler.engine.lifecycle import ActiveBreak, BreakPlan
from reconciler.errors import InputError, LedgerError
from reconciler.imports import AccountRow, BookRow
from reconciler.ledger.models import (
    SCHEMA_VERSION,
    Account,
    BalanceSnapshot,
    BookEntry,
    BreakEvent,
    BreakRow,
    ImportBatch,
    Run,
    RunChain,
    SchemaMeta,
)

_IN_CHUNK = 500
_ExitCode = Callable[[str, Sequence[BreakRecord]], int]


def _now() -> datetime:
    return datetime.now(UTC)


def key_text(key: BreakKey) -> str:
    return "|".join([key.kind.value, key.chain, key.wallet, key.asset or "", key.tx_hash or ""])


@dataclass(frozen=True, slots=True)
class ChainResult:
    """What a run learned of one chain: its pinned block, or why it could not be read."""

    chain: str
    chain_id: int | None
    block: BlockRef | None
    read_path: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    reason: str | None
    exit_code: int | None


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise LedgerError(f"cannot use database URL {redact_url(url)!r}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any failure."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc)}") from exc
        except IntegrityError as exc:
            raise LedgerError(f"database refused the write: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise LedgerError(f"database error: {_first_line(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def init(self) -> int:
        """Create or migrate the schema; idempotent. Returns the schema version."""
        try:
            SchemaMeta.metadata.create_all(self.engine)
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc)}") from exc
        with self._session() as s:
            meta = s.get(SchemaMeta, 1)
            if meta is None:
                s.add(SchemaMeta(id=1, version=SCHEMA_VERSION, migrated_at=_now()))
            elif meta.version > SCHEMA_VERSION:
                raise LedgerError(
                    f"the database schema is version {meta.version}, newer than this "
                    f"reconciler ({SCHEMA_VERSION}); upgrade the reconciler"
                )
        return SCHEMA_VERSION

    def ensure_ready(self) -> None:
        """Use the schema, creating it on a database that has none yet."""
        try:
            tables = set(inspect(self.engine).get_table_names())
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc)}") from exc
        if "schema_meta" not in tables or "break" not in tables:
            self.init()
            return
        with self._session() as s:
            meta = s.get(SchemaMeta, 1)
            if meta is None or meta.version != SCHEMA_VERSION:
                self.init()

    # ------------------------------------------------------------------ imports

    def known_accounts(self) -> set[str]:
        with self._session() as s:
            return set(s.scalars(select(col(Account.account))))

    def import_accounts(self, rows: Sequence[AccountRow], source: str, sha256: str) -> tuple[int, int]:
        """Insert new accounts; re-importing an identical account is a no-op. Changing an
        account's class is refused (it would move the customer between segregation pools)."""
        with self._session() as s:
            existing = {
                a.account: a
                for chunk in _chunks([r.account for r in rows])
                for a in s.scalars(select(Account).where(col(Account.account).in_(chunk)))
            }
            problems = [
                f"line {r.line}, column class: account {r.account!r} is already {existing[r.account].seg_class}, "
                f"not {r.seg_class.value}; an account's class does not change by import"
                for r in rows
                if r.account in existing and existing[r.account].seg_class != r.seg_class.value
            ]
            if problems:
                raise InputError(source, problems)
            batch_id = str(uuid.uuid4())
            s.add(
                ImportBatch(
                    id=batch_id, kind="accounts", source=source, sha256=sha256, rows=len(rows), imported_at=_now()
                )
            )
            added = updated = 0
            for r in rows:
                old = existing.get(r.account)
                if old is None:
                    s.add(Account(account=r.account, seg_class=r.seg_class.value, name=r.name, import_id=batch_id))
                    added += 1
                elif old.name != r.name:
                    old.name = r.name
                    updated += 1
            return added, updated

    def import_books(self, rows: Sequence[BookRow], source: str, sha256: str) -> int:
        with self._session() as s:
            ids = [r.entry_id for r in rows]
            stored = {
                e
                for chunk in _chunks(ids)
                for e in s.scalars(select(col(BookEntry.entry_id)).where(col(BookEntry.entry_id).in_(chunk)))
            }
            if stored:
                raise InputError(
                    source,
                    [
                        f"line {r.line}, column entry_id: {r.entry_id!r} is already in the ledger; "
                        "entry ids are unique forever"
                        for r in rows
                        if r.entry_id in stored
                    ],
                )
            batch_id = str(uuid.uuid4())
            s.add(
                ImportBatch(id=batch_id, kind="books", source=source, sha256=sha256, rows=len(rows), imported_at=_now())
            )
            s.flush()
            s.add_all(
                BookEntry(
                    entry_id=r.entry_id,
                    entry_date=r.date,
                    account=r.account,
                    wallet=r.wallet,
                    asset=r.asset,
                    amount=r.amount,
                    kind=r.kind.value,
                    memo=r.memo,
                    tx_hash=r.tx_hash,
                    import_id=batch_id,
                )
                for r in rows
            )
            return len(rows)

    def book_balances(self) -> dict[tuple[str, str], int]:
        totals: dict[tuple[str, str], int] = {}
        with self._session() as s:
            rows = s.execute(
                select(col(BookEntry.wallet), col(BookEntry.asset), col(BookEntry.amount)).execution_options(
                    yield_per=10_000  # memory stays bounded however long the books grow
                )
            )
            for wallet, asset, amount in rows:
                totals[(wallet, asset)] = totals.get((wallet, asset), 0) + amount
        return totals

    # ------------------------------------------------------------------ runs

    def start_run(self) -> RunSummary:
        run = Run(id=str(uuid.uuid4()), started_at=_now(), status="running")
        with self._session() as s:
            s.add(run)
        return _run_summary(run)

    def active_breaks(self) -> list[ActiveBreak]:
        with self._session() as s:
            rows = s.scalars(select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value))
            return [ActiveBreak(id=r.id, key=_key(r), status=BreakStatus(r.status), amount=r.amount) for r in rows]

    def finish_run(
        self,
        run_id: str,
        chains: Sequence[ChainResult],
        positions: Sequence[Position],
        plan: BreakPlan,
        status: str,
        reason: str | None,
        exit_code_for: _ExitCode,
    ) -> tuple[RunSummary, list[BreakRecord]]:
        """Write everything the run found in one transaction and return the breaks to report:
        every break active after the run, plus those this run resolved."""
        now = _now()
        blocks = {c.chain: c.block for c in chains}
        with self._session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LedgerError(f"run {run_id} vanished from the ledger")
            for c in chains:
                s.add(
                    RunChain(
                        run_id=run_id,
                        chain=c.chain,
                        chain_id=c.chain_id,
                        block_number=c.block.number if c.block else None,
                        block_hash=c.block.hash if c.block else None,
                        read_path=c.read_path,
                        error=c.error,
                    )
                )
            for p in positions:
                block = blocks[p.chain]
                assert block is not None, "positions only exist for chains that were read"
                s.add(
                    BalanceSnapshot(
                        run_id=run_id,
                        chain=p.chain,
                        wallet=p.wallet,
                        asset=p.asset,
                        block_number=block.number,
                        book=p.book,
                        onchain=p.onchain,
                    )
                )
            s.flush()
            # One query for every break this run touches; no per-break round trips.
            ids = [a.id for a, _ in plan.seen_again] + [a.id for a in plan.resolved]
            existing = {
                r.id: r
                for chunk in _chunks(ids)
                for r in s.scalars(select(BreakRow).where(col(BreakRow.id).in_(chunk)))
            }
            opened: list[tuple[BreakRow, str]] = []
            for f in plan.opened:
                block = blocks.get(f.key.chain)
                row = BreakRow(
                    id=str(uuid.uuid4()),
                    key=key_text(f.key),
                    kind=f.key.kind.value,
                    severity=f.severity.value,
                    status=BreakStatus.OPEN.value,
                    chain=f.key.chain,
                    wallet=f.key.wallet,
                    asset=f.key.asset,
                    tx_hash=f.key.tx_hash,
                    amount=f.amount,
                    detail=f.detail,
                    block_number=block.number if block else None,
                    block_hash=block.hash if block else None,
                    first_run_id=run_id,
                    last_run_id=run_id,
                    opened_at=now,
                    last_seen_at=now,
                    times_seen=1,
                )
                s.add(row)
                opened.append((row, f.detail))
            s.flush()  # break rows before the events that reference them (no ORM relationship orders them)
            s.add_all(_event(row, run_id, "opened", now, detail) for row, detail in opened)
            for active, f in plan.seen_again:
                row = existing[active.id]
                block = blocks.get(f.key.chain)
                row.amount = f.amount
                row.detail = f.detail
                row.severity = f.severity.value
                row.last_run_id = run_id
                row.last_seen_at = now
                row.times_seen += 1
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                s.add(_event(row, run_id, "seen", now, f.detail))
            for active in plan.resolved:
                row = existing[active.id]
                row.status = BreakStatus.RESOLVED.value
                row.resolved_run_id = run_id
                row.resolved_at = now
                block = blocks.get(row.chain)
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                s.add(_event(row, run_id, "resolved", now, "not found by a run that checked it"))
            s.flush()
            active_rows = list(s.scalars(select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value)))
            resolved_rows = [existing[b.id] for b in plan.resolved]
            report = [_record(r) for r in sorted(active_rows + resolved_rows, key=_order)]
            run.status = status
            run.reason = reason
            run.finished_at = now
            run.exit_code = exit_code_for(status, report)
            return _run_summary(run), report

    def abandon_run(self, run_id: str, reason: str) -> None:
        """Best effort: mark a run incomplete after a failure that stopped it."""
        with self._session() as s:
            s.execute(
                update(Run)
                .where(col(Run.id) == run_id)
                .values(status="incomplete", reason=reason, finished_at=_now(), exit_code=2)
            )

    # ------------------------------------------------------------------ breaks

    def list_breaks(self, statuses: Sequence[BreakStatus] | None = None) -> list[BreakRecord]:
        with self._session() as s:
            query = select(BreakRow)
            if statuses:
                query = query.where(col(BreakRow.status).in_([st.value for st in statuses]))
            return [_record(r) for r in sorted(s.scalars(query), key=_order)]

    def acknowledge(self, break_id: str, note: str) -> BreakRecord:
        """open -> acknowledged, with the note in the audit trail. Acknowledging does not
        clear a break: only a run that no longer finds it resolves it."""
        with self._session() as s:
            row = s.get(BreakRow, break_id)
            if row is None:
                raise LedgerError(f"no break with id {break_id!r}; `reconciler breaks list --all` lists them")
            if row.status != BreakStatus.OPEN.value:
                raise LedgerError(f"break {break_id} is {row.status}; only an open break can be acknowledged")
            row.status = BreakStatus.ACKNOWLEDGED.value
            s.add(_event(row, None, "acknowledged", _now(), note))
            s.flush()
            return _record(row)

    def get_break(self, break_id: str) -> tuple[BreakRecord, list[BreakEventRecord]] | None:
        with self._session() as s:
            row = s.get(BreakRow, break_id)
            if row is None:
                return None
            events = s.scalars(
                select(BreakEvent).where(col(BreakEvent.break_id) == break_id).order_by(col(BreakEvent.id))
            )
            return _record(row), [
                BreakEventRecord(
                    event=e.event,
                    at=_iso(e.at),
                    run_id=e.run_id,
                    amount=e.amount,
                    block_number=e.block_number,
                    block_hash=e.block_hash,
                    note=e.note,
                )
                for e in events
            ]


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _event(row: BreakRow, run_id: str | None, event: str, at: datetime, note: str) -> BreakEvent:
    """An audit-trail entry carrying the break's evidence as it stands now."""
    return BreakEvent(
        break_id=row.id,
        run_id=run_id,
        event=event,
        at=at,
        amount=row.amount,
        block_number=row.block_number,
        block_hash=row.block_hash,
        note=note,
    )


def _key(row: BreakRow) -> BreakKey:
    return BreakKey(BreakKind(row.kind), row.chain, row.wallet, row.asset, row.tx_hash)


def _order(row: BreakRow) -> tuple[str, str, str, str, str]:
    return (row.chain, row.wallet, row.asset or "", row.kind, row.tx_hash or "")


def _record(row: BreakRow) -> BreakRecord:
    return BreakRecord(
        id=row.id,
        key=_key(row),
        severity=Severity(row.severity),
        status=BreakStatus(row.status),
        amount=row.amount,
        detail=row.detail,
        block_number=row.block_number,
        block_hash=row.block_hash,
        first_run_id=row.first_run_id,
        last_run_id=row.last_run_id,
        resolved_run_id=row.resolved_run_id,
        times_seen=row.times_seen,
    )


def _iso(at: datetime) -> str:
    """Stored times are UTC; SQLite hands them back naive."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def _run_summary(run: Run) -> RunSummary:
    return RunSummary(
        id=run.id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        reason=run.reason,
        exit_code=run.exit_code,
    )


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url
