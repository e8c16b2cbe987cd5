"""Queries and writes on the ledger.

Invariants: an import writes all of its rows or none; a run's results (chains, balance
snapshots, break changes and the run's status) are written in one transaction; amounts are
summed exactly: by PostgreSQL over NUMERIC, in Python on SQLite, never with SQLite's SUM over
text.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlmodel import col

# Every table joins the metadata wherever a ledger is used (a test compares it with the migrations).
import reconciler.ledger.daemon_models  # noqa: F401
import reconciler.ledger.segregation_models  # noqa: F401
from reconciler.domain import (
    MAX_ENTRY_ID_LENGTH,
    AccountRow,
    BlockRef,
    BookRow,
    BreakEventRecord,
    BreakKey,
    BreakKind,
    BreakRecord,
    BreakStatus,
    EntryIds,
    Finding,
    Position,
    Severity,
    abbreviate_ids,
)
from reconciler.engine.balances import BalanceBound
from reconciler.engine.lifecycle import ActiveBreak, plan_breaks
from reconciler.errors import InputError, LedgerError
from reconciler.ledger import schema, snapshots, trail
from reconciler.ledger.daemon_models import JobFiring
from reconciler.ledger.locks import (
    LEDGER_HELD,
    LockTimeout,
    RunLock,
    host_name,
    postgres_run_alive,
    process_alive,
    process_start,
)
from reconciler.ledger.models import (
    Account,
    BookEntry,
    BreakEvent,
    BreakRow,
    ImportBatch,
    Run,
    RunChain,
    TokenBaseline,
    WalletBaseline,
)
from reconciler.redaction import redact_db_url, redact_urls, scrub
from reconciler.walletconfig import TokenImplementation, WalletConfig

log = logging.getLogger(__name__)

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
    # The endpoints that answered (redacted: scheme://host[:port]) with the client each said it
    # runs (web3_clientVersion, None if it would not say): where the run's data came from.
    sources: tuple[tuple[str, str | None], ...] = ()
    # The node's head when the block was pinned (``block`` is ``confirmations`` below it), so an
    # on-chain zero at a lagging pin can be understood; None where it is not known (read before
    # it was recorded, or the chain was not read). Kept in the run's document, not a column.
    head: int | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    reason: str | None
    exit_code: int | None
    trigger: str = "cli"
    job: str = "run"
    scheduled_for: datetime | None = None
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class Baselines:
    """The newest baseline of each wallet (by (chain, wallet name)) and token (by (chain, token
    address)), and whether a person reviewed it (`wallets baseline`) or a run recorded it."""

    wallets: dict[tuple[str, str], WalletConfig]
    reviewed: dict[tuple[str, str], bool]
    tokens: dict[tuple[str, str], TokenImplementation]


@dataclass(frozen=True, slots=True)
class NewBaselines:
    """Baselines to record: wallet configurations with the hash of the block they were read
    at, token implementations with their chain."""

    wallets: tuple[tuple[WalletConfig, str], ...] = ()
    tokens: tuple[tuple[str, TokenImplementation], ...] = ()
    reviewed: bool = False
    note: str = ""


class FiringTaken(LedgerError):
    """Another daemon instance claimed this scheduled firing first: skip it."""


class RunWrite(Protocol):
    """More of a run's results, written inside its one transaction (transfer observations,
    checkpoints, statements): ledger modules provide them."""

    def apply(self, s: Session, run_id: str) -> None: ...


class BookChunks(Protocol):
    """A books file being read (reconciler.inputs.books.BookStream): its valid rows chunk by
    chunk, in file order; good only once every chunk was read with no problem (``check()``
    raises otherwise)."""

    @property
    def ok(self) -> bool: ...

    def chunks(self) -> Iterator[list[BookRow]]: ...

    def check(self) -> None: ...


ReadBooks = Callable[[Set[str], EntryIds], BookChunks]


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """A balance snapshot as a run recorded it, for reproducing the run's document."""

    chain: str
    wallet: str
    asset: str
    decimals: int | None
    book: int
    onchain: int


@dataclass(frozen=True, slots=True)
class StoredRun:
    summary: RunSummary
    document: dict[str, Any] | None
    chains: list[ChainResult]
    positions: list[StoredPosition]


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise LedgerError(f"cannot use database URL {redact_url(url)!r}: {_first_line(exc, url)}") from exc
        self.alerts: trail.AlertSetup | None = None  # set by the composition root
        if self.engine.dialect.name == "sqlite":
            if self.engine.url.database in (None, "", ":memory:"):
                raise LedgerError("an in-memory SQLite database cannot keep a ledger: give a file path")
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # Every transaction takes SQLite's write lock up front: a read-then-write never
            # interleaves with another writer (no lost updates, no upgrade deadlocks).
            event.listen(self.engine, "begin", _sqlite_begin_immediate)

    @property
    def sqlite_path(self) -> Path | None:
        if self.engine.dialect.name != "sqlite" or not self.engine.url.database:
            return None
        return Path(self.engine.url.database)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any failure."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        except IntegrityError as exc:
            raise LedgerError(f"database refused the write: {_first_line(exc, self.url)}") from exc
        except SQLAlchemyError as exc:
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

    def ensure_ready(self) -> None:
        """Refuse a database without the newest schema, naming the command that fixes it;
        never create one (a mistyped path must not look like an empty, clean ledger)."""
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
        self.reap_abandoned_runs()

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

    def books_import_of(self, sha256: str) -> datetime | None:
        """When a books file with exactly these bytes was first accepted, or None."""
        with self._session() as s:
            at = s.scalar(
                select(func.min(col(ImportBatch.imported_at))).where(
                    col(ImportBatch.kind) == "books", col(ImportBatch.sha256) == sha256
                )
            )
        return None if at is None else _utc(at)

    def import_books(self, rows: Sequence[BookRow], source: str, sha256: str) -> int:
        """Rows parsed whole (reconciler.inputs.books.parse_books_csv): checked against the
        ledger, all stored or none."""
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
            bound = BalanceBound(_book_sums(s, {(r.wallet, r.asset) for r in rows}))
            bound.add(rows)
            if problems := bound.problems():
                raise InputError(source, problems)
            batch_id = _add_books_batch(s, source, sha256, len(rows))
            for i in range(0, len(rows), _BOOKS_INSERT):
                _insert_book_rows(s, batch_id, rows[i : i + _BOOKS_INSERT])
            return len(rows)

    def import_books_stream(self, read: ReadBooks, source: str, sha256: str) -> int:
        """A books file as it is read (``read``: the known accounts and the entry ids seen so far
        -> its rows chunk by chunk, a reconciler.inputs.books.BookStream over file_lines):
        checked and inserted chunk by chunk in ONE transaction, so memory stays bounded and a
        problem on any line, the last included, leaves the ledger as it was. Inserting stops at
        the first problem; checking goes on, so that every problem of the file is reported at
        once."""
        with self._session() as s:
            known = set(s.scalars(select(col(Account.account))))
            entry_ids = _ImportedEntryIds(s)
            stream = read(known, entry_ids)
            batch_id = _add_books_batch(s, source, sha256, 0)
            # The ledger's balance of each wallet x asset the file touches, looked up when the
            # pair first appears (no earlier chunk inserted any of it), then the file's rows.
            existing: dict[tuple[str, str], int] = {}
            looked_up: set[tuple[str, str]] = set()
            bound = BalanceBound(existing)
            count = 0
            for rows in stream.chunks():
                if not stream.ok:
                    continue
                if new := {(r.wallet, r.asset) for r in rows} - looked_up:
                    existing.update(_book_sums(s, new))
                    looked_up |= new
                bound.add(rows)
                _insert_book_rows(s, batch_id, rows)
                count += len(rows)
            stream.check()
            if problems := bound.problems():
                raise InputError(source, problems)
            entry_ids.drop()
            s.execute(update(ImportBatch).where(col(ImportBatch.id) == batch_id).values(rows=count))
            return count

    def book_balances(self) -> dict[tuple[str, str], int]:
        """The book balance of every wallet x asset with entries: the sum of its entries."""
        with self._session() as s:
            return _book_sums(s)

    # ------------------------------------------------------------------ runs

    def begin_run(
        self, trigger: str = "cli", job: str = "run", scheduled_for: datetime | None = None
    ) -> tuple[RunSummary, RunLock]:
        """Record a run as ``running``, with host, pid and process start, marked alive (on
        PostgreSQL by a session lock) before its row exists, so it is never mistaken for
        abandoned. The caller releases the returned lock when the run ends.

        A scheduled run (trigger "schedule" with its ``scheduled_for``) also claims that firing
        of its job, in the same transaction: when another daemon instance claimed it first,
        FiringTaken is raised and nothing is recorded."""
        lock = RunLock(self.engine, self.sqlite_path)
        run_id = str(uuid.uuid4())
        try:
            lock.mark_alive(run_id)
        except SQLAlchemyError as exc:
            lock.release()
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        pid = os.getpid()
        run = Run(
            id=run_id,
            started_at=_now(),
            status="running",
            host=host_name(),
            pid=pid,
            proc_start=process_start(pid),
            trigger=trigger,
            job=job,
            scheduled_for=scheduled_for,
        )
        claim = trigger == "schedule" and scheduled_for is not None
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                s.add(run)
                if claim and scheduled_for is not None:
                    s.flush()
                    s.add(
                        JobFiring(
                            job=job,
                            scheduled_for=scheduled_for,
                            run_id=run_id,
                            instance=f"{run.host}:{pid}",
                            claimed_at=run.started_at,
                        )
                    )
        except IntegrityError as exc:
            lock.release()
            if claim:
                raise FiringTaken(f"{job} firing of {scheduled_for} was claimed by another instance") from exc
            raise LedgerError(f"database refused the write: {_first_line(exc, self.url)}") from exc
        except SQLAlchemyError as exc:
            lock.release()
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        except BaseException:
            lock.release()
            raise
        return _run_summary(run), lock

    def hold_ledger(self, run_id: str, lock: RunLock, timeout: float, on_wait: Callable[[], None]) -> None:
        """Wait, at most ``timeout`` seconds, for the ledger's writer lock; a run that gives up
        is recorded incomplete ("another run holds the ledger") and LedgerError is raised."""
        try:
            lock.acquire(timeout, on_wait)
        except LockTimeout:
            reason = f"{LEDGER_HELD} (waited {timeout:g}s); try again when it has finished"
        except SQLAlchemyError as exc:
            reason = f"database failed while waiting for the ledger: {_first_line(exc, self.url)}"
        else:
            return
        self.abandon_run(run_id, reason)
        raise LedgerError(reason)

    def reap_abandoned_runs(self) -> list[str]:
        """Close as incomplete every run left ``running`` by a process that is gone (SIGKILL,
        power loss). A run whose process cannot be judged from here (another host, on SQLite)
        is left alone."""
        reaped: list[str] = []
        with self._session() as s:
            running = list(s.scalars(select(Run).where(col(Run.status) == "running")))
            if not running:
                return reaped
            conn = s.connection()
            for run in running:
                if self.engine.dialect.name == "postgresql":
                    gone = not postgres_run_alive(conn, run.id)
                elif run.host == host_name() and run.pid is not None:
                    gone = not process_alive(run.pid, run.proc_start)
                else:
                    gone = False
                if gone:
                    run.status = "incomplete"
                    run.exit_code = 2
                    run.finished_at = _now()
                    run.reason = (
                        f"the process running it ({run.host}:{run.pid}) ended without recording an outcome "
                        "(killed or lost power); nothing it saw was saved"
                    )
                    reaped.append(run.id)
                    trail.record_run_outcome(s, self.alerts, run.id, "incomplete", run.reason, 2, run.job)
        for run_id in reaped:
            log.warning("event=run_reaped run_id=%s reason=process_gone", run_id)
        return reaped

    def finish_run(
        self,
        run_id: str,
        chains: Sequence[ChainResult],
        positions: Sequence[Position],
        findings: Sequence[Finding],
        coverage: Container[BreakKey],
        decimals: Mapping[str, int],
        status: str,
        reason: str | None,
        exit_code_for: _ExitCode,
        baselines: NewBaselines | None = None,
        writes: Sequence[RunWrite] = (),
        notes: Mapping[BreakKey, str] | None = None,
    ) -> tuple[RunSummary, list[BreakRecord]]:
        """Write everything the run found in one transaction and return the breaks to report:
        every break active after the run, plus those this run resolved.

        The findings meet the breaks as they are inside this transaction (rows locked on
        PostgreSQL; SQLite's write lock is taken at BEGIN), never as an earlier read saw them:
        an acknowledgement or a manual resolution made meanwhile is respected.
        """
        now = _now()
        blocks = {c.chain: c.block for c in chains}
        with self._session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LedgerError(f"run {run_id} vanished from the ledger")
            if run.status != "running":
                raise LedgerError(f"run {run_id} was closed meanwhile as {run.status}: {run.reason}")
            active_rows = {
                r.id: r
                for r in s.scalars(
                    select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value).with_for_update()
                )
            }
            plan = plan_breaks(
                [_active(r) for r in active_rows.values()],
                findings,
                coverage,
            )
            snaps = snapshots.plan(s, run_id, blocks, positions)
            for c in chains:
                taken = snaps.chains.get(c.chain)
                s.add(
                    RunChain(
                        run_id=run_id,
                        chain=c.chain,
                        chain_id=c.chain_id,
                        block_number=c.block.number if c.block else None,
                        block_hash=c.block.hash if c.block else None,
                        read_path=c.read_path,
                        error=c.error,
                        sources=_sources_json(c.sources),
                        **(taken.columns() if taken is not None else {}),
                    )
                )
            s.flush()  # the run's chain rows first
            snapshots.insert_rows(s, snaps.rows)
            s.flush()
            if baselines is not None:
                _add_baselines(s, baselines, run_id)
            for extra in writes:
                extra.apply(s, run_id)
            existing = active_rows
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
                    decimals=decimals.get(f.key.asset) if f.key.asset else None,
                )
                s.add(row)
                opened.append((row, f.detail))
            s.flush()  # break rows before the events that reference them (no ORM relationship orders them)
            s.add_all(_event(row, run_id, "opened", now, detail) for row, detail in opened)
            changes: list[tuple[str, BreakRecord, str | None, str]] = [
                ("opened", _record(row), run_id, detail) for row, detail in opened
            ]
            for active, f in plan.seen_again:
                row = existing[active.id]
                block = blocks.get(f.key.chain)
                escalated = f.severity.rank > Severity(row.severity).rank
                row.amount = f.amount
                row.detail = f.detail
                row.severity = f.severity.value
                row.last_run_id = run_id
                row.last_seen_at = now
                row.times_seen += 1
                if f.key.asset and f.key.asset in decimals:
                    row.decimals = decimals[f.key.asset]
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                s.add(_event(row, run_id, "seen", now, f.detail))
                changes.append(("seen", _record(row), run_id, f.detail))
                if escalated:
                    s.add(_event(row, run_id, "escalated", now, f"severity rose to {f.severity.value}"))
                    changes.append(("escalated", _record(row), run_id, f"severity rose to {f.severity.value}"))
            for active in plan.resolved:
                row = existing[active.id]
                row.status = BreakStatus.RESOLVED.value
                row.resolved_run_id = run_id
                row.resolved_at = now
                block = blocks.get(row.chain)
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                why = (notes or {}).get(active.key, "not found by a run that checked it")
                s.add(_event(row, run_id, "resolved", now, why))
                changes.append(("resolved", _record(row), run_id, why))
            s.flush()
            trail.record_break_events(s, self.alerts, changes)
            after = list(s.scalars(select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value)))
            resolved_rows = [existing[b.id] for b in plan.resolved]
            report = [_record(r) for r in sorted(after + resolved_rows, key=_order)]
            run.status = status
            run.reason = reason
            run.finished_at = now
            run.exit_code = exit_code_for(status, report)
            trail.record_run_outcome(s, self.alerts, run_id, status, reason, run.exit_code, run.job)
            return _run_summary(run), report

    def abandon_run(self, run_id: str, reason: str) -> None:
        """Mark a run incomplete after a failure or a signal stopped it (a finished run keeps
        its outcome)."""
        with self._session() as s:
            run = s.get(Run, run_id, with_for_update=True)
            if run is None or run.status != "running":
                return
            run.status, run.reason, run.finished_at, run.exit_code = "incomplete", reason, _now(), 2
            trail.record_run_outcome(s, self.alerts, run_id, "incomplete", reason, 2, run.job)

    def baselines(self) -> Baselines:
        wallets: dict[tuple[str, str], WalletConfig] = {}
        reviewed: dict[tuple[str, str], bool] = {}
        tokens: dict[tuple[str, str], TokenImplementation] = {}
        with self._session() as s:
            # Only the newest row per (chain, wallet), as plain columns: older rows are the
            # history of reviews, and an ORM object per row cost most of this at 10,000 wallets.
            newest = select(func.max(col(WalletBaseline.id))).group_by(
                col(WalletBaseline.chain), col(WalletBaseline.wallet)
            )
            rows = s.execute(
                select(
                    col(WalletBaseline.chain),
                    col(WalletBaseline.wallet),
                    col(WalletBaseline.config),
                    col(WalletBaseline.reviewed),
                ).where(col(WalletBaseline.id).in_(newest.scalar_subquery()))
            )
            for chain, wallet, config, was_reviewed in rows:
                wallets[(chain, wallet)] = WalletConfig.from_json(json.loads(config))
                reviewed[(chain, wallet)] = bool(was_reviewed)
            for t in s.scalars(select(TokenBaseline).order_by(col(TokenBaseline.id))):
                tokens[(t.chain, t.token)] = TokenImplementation.from_json(json.loads(t.implementation))
        return Baselines(wallets, reviewed, tokens)

    def record_baselines(self, baselines: NewBaselines) -> None:
        with self._session() as s:
            _add_baselines(s, baselines, None)

    def save_document(self, run_id: str, document: Mapping[str, Any]) -> None:
        """Keep the run's `--json` document as printed, without its positions (those are the
        run's balance snapshots), so `runs show` reproduces it."""
        doc = {k: v for k, v in document.items() if k != "positions"}
        with self._session() as s:
            s.execute(update(Run).where(col(Run.id) == run_id).values(document=json.dumps(doc)))

    def list_runs(self, limit: int) -> list[RunSummary]:
        with self._session() as s:
            rows = s.scalars(select(Run).order_by(col(Run.started_at).desc(), col(Run.id)).limit(limit))
            return [_run_summary(r) for r in rows]

    def get_run(self, run_id: str) -> StoredRun:
        with self._session() as s:
            run = s.get(Run, _resolve_prefix(s, Run, col(Run.id), run_id, "run", "`reconciler runs list`"))
            assert run is not None
            chains = [
                ChainResult(
                    c.chain,
                    c.chain_id,
                    BlockRef(c.block_number, c.block_hash) if c.block_number is not None and c.block_hash else None,
                    c.read_path,
                    c.error,
                    _sources_from_json(c.sources),
                )
                for c in s.scalars(select(RunChain).where(col(RunChain.run_id) == run.id))
            ]
            positions = [
                StoredPosition(chain, p.wallet, p.asset, p.decimals, p.book, p.onchain)
                for chain, p in snapshots.run_positions(s, run.id)
            ]
            document = json.loads(run.document) if run.document else None
            return StoredRun(_run_summary(run), document, chains, positions)

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
            row = s.get(BreakRow, _break_id(s, break_id), with_for_update=True)
            assert row is not None
            if row.status != BreakStatus.OPEN.value:
                raise LedgerError(f"break {break_id} is {row.status}; only an open break can be acknowledged")
            row.status = BreakStatus.ACKNOWLEDGED.value
            s.add(_event(row, None, "acknowledged", _now(), note))
            s.flush()
            trail.record_break_events(s, self.alerts, [("acknowledged", _record(row), None, note)])
            return _record(row)

    def resolve(self, break_id: str, note: str) -> BreakRecord:
        """Close a break by hand (open or acknowledged -> resolved), the note kept in its audit
        trail: for a break no run can check any more (its wallet or asset left the
        configuration). If a run finds the condition again, it opens a new break."""
        with self._session() as s:
            row = s.get(BreakRow, _break_id(s, break_id), with_for_update=True)
            assert row is not None
            if row.status == BreakStatus.RESOLVED.value:
                raise LedgerError(f"break {row.id} is already resolved")
            row.status = BreakStatus.RESOLVED.value
            row.resolved_at = _now()
            s.add(_event(row, None, "resolved", row.resolved_at, f"resolved by hand: {note}"))
            s.flush()
            trail.record_break_events(s, self.alerts, [("resolved", _record(row), None, f"resolved by hand: {note}")])
            return _record(row)

    def get_break(self, break_id: str) -> tuple[BreakRecord, list[BreakEventRecord]]:
        with self._session() as s:
            row = s.get(BreakRow, _break_id(s, break_id))
            assert row is not None
            events = s.scalars(
                select(BreakEvent).where(col(BreakEvent.break_id) == row.id).order_by(col(BreakEvent.id))
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


def _add_baselines(s: Session, baselines: NewBaselines, run_id: str | None) -> None:
    now = _now()
    # Plain rows in one executemany, in order (the newest id per wallet is its baseline): a
    # first run at 10,000 wallets records 10,000 of them.
    wallet_rows = [
        {
            "chain": config.chain,
            "wallet": config.wallet,
            "address": config.address,
            "block_number": config.block_number,
            "block_hash": block_hash,
            "config": json.dumps(config.to_json()),
            "reviewed": baselines.reviewed,
            "note": baselines.note,
            "recorded_at": now,
            "run_id": run_id,
        }
        for config, block_hash in baselines.wallets
    ]
    if wallet_rows:
        s.execute(insert(WalletBaseline), wallet_rows)
    s.add_all(
        TokenBaseline(
            chain=chain,
            token=impl.token,
            block_number=impl.block_number,
            implementation=json.dumps(impl.to_json()),
            reviewed=baselines.reviewed,
            recorded_at=now,
            run_id=run_id,
        )
        for chain, impl in baselines.tokens
    )


def _sources_json(sources: Sequence[tuple[str, str | None]]) -> str | None:
    if not sources:
        return None
    return json.dumps([{"endpoint": endpoint, "client_version": version} for endpoint, version in sources])


def _sources_from_json(text: str | None) -> tuple[tuple[str, str | None], ...]:
    if not text:
        return ()
    return tuple((str(s["endpoint"]), s.get("client_version")) for s in json.loads(text))


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # The driver's own implicit BEGIN (deferred) is replaced by _sqlite_begin_immediate.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _newer_message(revision: str | None) -> str:
    return (
        f"the ledger schema is version {schema.version_number(revision)} (revision {revision}), newer than this "
        f"reconciler knows ({schema.version_number(schema.head())}): upgrade the reconciler; nothing was changed"
    )


_SHOWN_MATCHES = 5


def _resolve_prefix(s: Session, table: Any, column: Any, given: str, what: str, lister: str) -> str:
    """A full id, or any unique prefix of one (like git; ids are lowercase hex, so case does not
    matter). A prefix that several ids start with is refused, naming them in the short form
    tables print."""
    if given and s.get(table, given) is not None:
        return given
    wanted = given.strip().lower()
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


def _break_id(s: Session, given: str) -> str:
    return _resolve_prefix(s, BreakRow, col(BreakRow.id), given, "break", "`reconciler breaks list --all`")


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


# ---------------------------------------------------------------------- books import helpers

_BOOKS_INSERT = 10_000  # rows per executemany of a books import
_BOOK_ENTRY = BookEntry.metadata.tables["book_entry"]
# The entry ids of a books file being imported, with their lines: temporary, in the import's
# own transaction, so that a file of millions of rows finds its duplicates without holding them.
_IMPORT_IDS = Table(
    "reconciler_import_ids",
    MetaData(),
    Column("entry_id", String(MAX_ENTRY_ID_LENGTH), primary_key=True),
    Column("line", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)


class _ImportedEntryIds:
    """reconciler.domain.EntryIds for a books import in progress: the file's ids so far in
    _IMPORT_IDS, the ledger's in book_entry (whose rows from this file are in both)."""

    def __init__(self, s: Session) -> None:
        self._s = s
        _IMPORT_IDS.create(s.connection())
        if s.get_bind().dialect.name == "postgresql":
            # book_entry and the temporary table grow inside this one transaction, where no
            # ANALYZE sees them: the planner would go on scanning them whole for each chunk's
            # ids (quadratic: minutes for a million rows) instead of using their primary keys.
            s.execute(text("SET LOCAL enable_seqscan = off"))

    def seen(self, ids: Sequence[tuple[str, int]]) -> dict[str, int | None]:
        s = self._s
        found: dict[str, int | None] = {}
        for chunk in _chunks([entry_id for entry_id, _ in ids]):
            query = select(_IMPORT_IDS.c.entry_id, _IMPORT_IDS.c.line).where(_IMPORT_IDS.c.entry_id.in_(chunk))
            found.update((entry_id, int(line)) for entry_id, line in s.execute(query))
        for chunk in _chunks([entry_id for entry_id, _ in ids if entry_id not in found]):
            query_stored = select(col(BookEntry.entry_id)).where(col(BookEntry.entry_id).in_(chunk))
            found.update((entry_id, None) for entry_id in s.scalars(query_stored))
        if new := [{"entry_id": entry_id, "line": line} for entry_id, line in ids if entry_id not in found]:
            s.execute(insert(_IMPORT_IDS), new)
        return found

    def drop(self) -> None:
        _IMPORT_IDS.drop(self._s.connection())


def _add_books_batch(s: Session, source: str, sha256: str, rows: int) -> str:
    batch_id = str(uuid.uuid4())
    s.add(ImportBatch(id=batch_id, kind="books", source=source, sha256=sha256, rows=rows, imported_at=_now()))
    s.flush()
    return batch_id


def _insert_book_rows(s: Session, batch_id: str, rows: Sequence[BookRow]) -> None:
    """One executemany of plain rows (Core, not an ORM object per row)."""
    if not rows:
        return
    s.execute(
        insert(_BOOK_ENTRY),
        [
            {
                "entry_id": r.entry_id,
                "entry_date": r.date,
                "account": r.account,
                "wallet": r.wallet,
                "asset": r.asset,
                "amount": r.amount,
                "kind": r.kind.value,
                "memo": r.memo,
                "tx_hash": r.tx_hash,
                "import_id": batch_id,
            }
            for r in rows
        ],
    )


def _book_sums(s: Session, pairs: Set[tuple[str, str]] | None = None) -> dict[tuple[str, str], int]:
    """The book balance of each wallet x asset (of ``pairs`` only, when given), exactly: summed
    by PostgreSQL over NUMERIC(78, 0), and in Python on SQLite, where amounts are text that
    SQLite's SUM would turn into floats (streamed, so memory stays bounded however long the
    books grow)."""
    wallet, asset, amount = col(BookEntry.wallet), col(BookEntry.asset), col(BookEntry.amount)
    if pairs is not None and not pairs:
        return {}
    assets = sorted({a for _, a in pairs}) if pairs is not None else []
    wallet_chunks: Iterable[Sequence[str] | None] = (
        _chunks(sorted({w for w, _ in pairs})) if pairs is not None else [None]
    )
    postgres = s.get_bind().dialect.name == "postgresql"
    totals: dict[tuple[str, str], int] = {}
    # Each row brings new string objects; keep one per name (a wallet has an entry per asset,
    # and 400,000 keys at 100,000 wallets held each name several times over).
    names: dict[str, str] = {}
    for wallets in wallet_chunks:
        where = [] if wallets is None else [wallet.in_(wallets), asset.in_(assets)]
        if postgres:
            query = select(wallet, asset, func.sum(amount)).where(*where).group_by(wallet, asset)
        else:
            query = select(wallet, asset, amount).where(*where).execution_options(yield_per=10_000)
        for w, a, value in s.execute(query):
            key = (names.setdefault(w, w), names.setdefault(a, a))
            if pairs is None or key in pairs:
                totals[key] = totals.get(key, 0) + int(value)
    return totals


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


def _active(row: BreakRow) -> ActiveBreak:
    return ActiveBreak(id=row.id, key=_key(row), status=BreakStatus(row.status), amount=row.amount)


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
        decimals=row.decimals,
    )


def _iso(at: datetime) -> str:
    """Stored times are UTC; SQLite hands them back naive."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def _run_summary(run: Run) -> RunSummary:
    return RunSummary(
        id=run.id,
        started_at=_utc(run.started_at),
        finished_at=_utc(run.finished_at) if run.finished_at else None,
        status=run.status,
        reason=run.reason,
        exit_code=run.exit_code,
        trigger=run.trigger,
        job=run.job,
        scheduled_for=_utc(run.scheduled_for) if run.scheduled_for else None,
        instance=f"{run.host}:{run.pid}" if run.host else None,
    )


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
