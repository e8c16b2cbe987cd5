"""The ledger's accounts and books: imports taken whole or not at all, and exact book balances.

Invariants: an import writes all of its rows or none; amounts are summed exactly: by
PostgreSQL over NUMERIC, in Python on SQLite, never with SQLite's SUM over text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, MetaData, String, Table, func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import MAX_ENTRY_ID_LENGTH, AccountRow, BookRow, EntryIds
from reconciler.engine.balances import BalanceBound
from reconciler.errors import InputError
from reconciler.ledger.base import LedgerBase, _chunks, _now, _raw_rows, _utc
from reconciler.ledger.models import Account, BookEntry, ImportBatch


class BookChunks(Protocol):
    """A books file being read (reconciler.inputs.books.BookStream): its valid rows chunk by
    chunk, in file order; good only once every chunk was read with no problem (``check()``
    raises otherwise)."""

    @property
    def ok(self) -> bool: ...

    def chunks(self) -> Iterator[list[BookRow]]: ...

    def check(self) -> None: ...

ReadBooks = Callable[[Set[str], EntryIds], BookChunks]


class BooksMixin(LedgerBase):
    """Accounts and book entries."""

    def known_accounts(self) -> set[str]:
        with self._session() as s:
            return set(s.scalars(select(col(Account.account))))

    def import_accounts(
        self, rows: Sequence[AccountRow], source: str, sha256: str, skip_unchanged: bool = False
    ) -> tuple[int, int]:
        """Insert new accounts; re-importing an identical account is a no-op. Changing an
        account's class is refused (it would move the customer between segregation pools).
        ``skip_unchanged``: a file that adds and renames nothing is not recorded as an import
        (the same file again)."""
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
            if skip_unchanged and all(r.account in existing and existing[r.account].name == r.name for r in rows):
                return 0, 0
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

    def import_of(self, kind: str, sha256: str) -> datetime | None:
        """When a file of this kind (accounts, books, instructions, equity, offchain) with
        exactly these bytes was first accepted, or None."""
        with self._session() as s:
            at = s.scalar(
                select(func.min(col(ImportBatch.imported_at))).where(
                    col(ImportBatch.kind) == kind, col(ImportBatch.sha256) == sha256
                )
            )
        return None if at is None else _utc(at)

    def books_import_of(self, sha256: str) -> datetime | None:
        """When a books file with exactly these bytes was first accepted, or None."""
        return self.import_of("books", sha256)

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

    def book_view(self) -> BookView:
        """The books as committed now, for a run to read chunk by chunk (``book_sums_of``)
        while imports go on: entries of an import committed later are left out of it."""
        with self._session() as s:
            batches = frozenset(str(b) for b in s.scalars(select(col(ImportBatch.id))))
            any_entries = s.scalar(select(col(BookEntry.entry_id)).limit(1)) is not None
        return BookView(batches, any_entries)

    def book_sums_of(self, view: BookView, wallets: Sequence[str]) -> dict[tuple[str, str], int]:
        """The book balance of each wallet x asset of ``wallets`` (every asset they have
        entries for) as ``view`` sees the books; served by the (wallet, asset) index."""
        if not wallets:
            return {}
        with self._session() as s:
            later = _later_batches(s, view)
            return _book_sums(s, wallets=wallets, exclude=later)

    def books_outside(self, view: BookView, covered: Callable[[str, str], bool]) -> dict[tuple[str, str], int]:
        """The book balance of each wallet x asset with entries that ``covered`` says no
        configured wallet x asset compares with (as ``view`` sees the books): the distinct
        pairs come from the (wallet, asset) index alone, and only those outside are summed."""
        with self._session() as s:
            later = _later_batches(s, view)
            wallet, asset = col(BookEntry.wallet), col(BookEntry.asset)
            query = select(wallet, asset).distinct().order_by(wallet, asset)  # the index's order (SQLite)
            if later:
                query = query.where(col(BookEntry.import_id).not_in(sorted(later)))
            pairs = _raw_rows(s, query) if s.get_bind().dialect.name == "sqlite" else s.execute(query)
            outside = {(w, a) for w, a in pairs if not covered(w, a)}
            return _book_sums(s, outside, exclude=later) if outside else {}

    def book_balances(self) -> dict[tuple[str, str], int]:
        """The book balance of every wallet x asset with entries: the sum of its entries."""
        with self._session() as s:
            return _book_sums(s)

    def accounts(self) -> list[StoredAccount]:
        """Every account, by name."""
        with self._session() as s:
            rows = s.execute(
                select(col(Account.account), col(Account.seg_class), col(Account.name)).order_by(col(Account.account))
            ).all()
        return [StoredAccount(str(a), str(c), str(n)) for a, c, n in rows]

    def book_entries(
        self,
        wallet: str | None = None,
        asset: str | None = None,
        account: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[StoredEntry], int]:
        """Book entries, newest first (by date, then entry id), at most ``limit``; and how many
        match in all."""
        where = [
            c == v
            for c, v in (
                (col(BookEntry.wallet), wallet),
                (col(BookEntry.asset), asset),
                (col(BookEntry.account), account),
            )
            if v is not None
        ]
        with self._session() as s:
            total = int(s.scalar(select(func.count()).select_from(BookEntry).where(*where)) or 0)
            query = (
                select(BookEntry)
                .where(*where)
                .order_by(col(BookEntry.entry_date).desc(), col(BookEntry.entry_id).desc())
            )
            if limit is not None:
                query = query.limit(limit)
            entries = [
                StoredEntry(
                    e.entry_id, e.entry_date, e.account, e.wallet, e.asset, int(e.amount), e.kind, e.memo, e.tx_hash
                )
                for e in s.scalars(query)
            ]
        return entries, total

    def wallet_accounts(self) -> dict[tuple[str, str], dict[str, str]]:
        """(wallet, asset) -> {account: class} of the accounts whose entries book into it."""
        with self._session() as s:
            rows = s.execute(
                select(col(BookEntry.wallet), col(BookEntry.asset), col(Account.account), col(Account.seg_class))
                .join(Account, col(Account.account) == col(BookEntry.account))
                .distinct()
            ).all()
        out: dict[tuple[str, str], dict[str, str]] = {}
        for wallet, asset, account, seg_class in rows:
            out.setdefault((str(wallet), str(asset)), {})[str(account)] = str(seg_class)
        return out

    def booked_transactions(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """(wallet, asset, tx hash in lower case) -> {entry id: kind} of the entries carrying it."""
        with self._session() as s:
            rows = s.execute(
                select(
                    col(BookEntry.wallet),
                    col(BookEntry.asset),
                    col(BookEntry.tx_hash),
                    col(BookEntry.entry_id),
                    col(BookEntry.kind),
                ).where(col(BookEntry.tx_hash).is_not(None))
            ).all()
        out: dict[tuple[str, str, str], dict[str, str]] = {}
        for wallet, asset, tx_hash, entry_id, kind in rows:
            out.setdefault((str(wallet), str(asset), str(tx_hash).lower()), {})[str(entry_id)] = str(kind)
        return out

    def stored_entry_ids(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` that are already in the ledger."""
        with self._session() as s:
            return {
                str(e)
                for chunk in _chunks(sorted(set(ids)))
                for e in s.scalars(select(col(BookEntry.entry_id)).where(col(BookEntry.entry_id).in_(chunk)))
            }


@dataclass(frozen=True, slots=True)
class StoredAccount:
    account: str
    seg_class: str
    name: str


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A book entry as the ledger holds it (the books CSV's columns)."""

    entry_id: str
    date: date
    account: str
    wallet: str
    asset: str
    amount: int
    kind: str
    memo: str
    tx_hash: str | None


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


@dataclass(frozen=True, slots=True)
class BookView:
    """The books as committed when a run began: the import batches then committed (entries of
    a later one are left out), and whether there was any entry at all."""

    batches: frozenset[str]
    any_entries: bool


def _later_batches(s: Session, view: BookView) -> frozenset[str]:
    """Import batches committed since ``view`` was taken (usually none)."""
    return frozenset(str(b) for b in s.scalars(select(col(ImportBatch.id)))) - view.batches


def _book_sums(
    s: Session,
    pairs: Set[tuple[str, str]] | None = None,
    wallets: Sequence[str] | None = None,
    exclude: Set[str] = frozenset(),
) -> dict[tuple[str, str], int]:
    """The book balance of each wallet x asset (of ``pairs`` only, or of every asset of
    ``wallets``, when given), exactly: summed by PostgreSQL over NUMERIC(78, 0), and in Python
    on SQLite, where amounts are text that SQLite's SUM would turn into floats (streamed, so
    memory stays bounded however long the books grow). Entries of the import batches
    ``exclude`` names are left out."""
    wallet, asset, amount = col(BookEntry.wallet), col(BookEntry.asset), col(BookEntry.amount)
    if pairs is not None and not pairs:
        return {}
    assets = sorted({a for _, a in pairs}) if pairs is not None else []
    wallet_chunks: Iterable[Sequence[str] | None] = (
        _chunks(sorted({w for w, _ in pairs}))
        if pairs is not None
        else _chunks(list(wallets))
        if wallets is not None
        else [None]
    )
    postgres = s.get_bind().dialect.name == "postgresql"
    totals: dict[tuple[str, str], int] = {}
    # Each row brings new string objects; keep one per name (a wallet has an entry per asset,
    # and 400,000 keys at 100,000 wallets held each name several times over).
    names: dict[str, str] = {}
    for part in wallet_chunks:
        where = [] if part is None else [wallet.in_(part)]
        if pairs is not None:
            where.append(asset.in_(assets))
        if exclude:
            where.append(col(BookEntry.import_id).not_in(sorted(exclude)))
        if postgres:
            rows: Iterable[Any] = s.execute(
                select(wallet, asset, func.sum(amount)).where(*where).group_by(wallet, asset)
            )
        else:
            # The amounts are decimal text (ExactInt), read here as int() would read them
            # through SQLAlchemy.
            rows = _raw_rows(s, select(wallet, asset, amount).where(*where))
        for w, a, value in rows:
            key = (names.setdefault(w, w), names.setdefault(a, a))
            if pairs is None or key in pairs:
                totals[key] = totals.get(key, 0) + int(value)
    return totals
