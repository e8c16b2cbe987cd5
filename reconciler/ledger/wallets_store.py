"""The ledger's imported custody wallets (`wallets import`): stored whole or not at all, read
all at once as plain tuples, or one chain at a time in name order, chunk by chunk.

Invariants: a wallet's name, chain, address and class never change by import (a file that
says otherwise is refused naming its line), so an identical row is a no-op and a file holding
only known rows adds nothing; a name and a (chain, address) are each stored once; every read
hands out ``WalletRow`` tuples, never table objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import WalletRow
from reconciler.errors import LedgerError
from reconciler.ledger.base import LedgerBase, _chunks, _first_line, _now, redact_url
from reconciler.ledger.models import ImportBatch, ImportedWallet

_INSERT = 5_000  # rows per executemany
_READ = 10_000  # rows fetched at a time when every imported wallet is read
WALLETS_IMPORT = "wallets"  # import_batch.kind

_COLUMNS = (
    col(ImportedWallet.name),
    col(ImportedWallet.chain),
    col(ImportedWallet.address),
    col(ImportedWallet.seg_class),
    col(ImportedWallet.kind),
    col(ImportedWallet.approvers),
    col(ImportedWallet.threshold),
    col(ImportedWallet.allowed_spenders),
)


_SELECTED = "name, chain, address, seg_class, kind, approvers, threshold, allowed_spenders"


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(";")) if text else ()


def _row(values: Sequence[Any]) -> WalletRow:
    name, chain, address, seg_class, kind, approvers, threshold, spenders = values
    return WalletRow(
        str(name),
        str(chain),
        str(address),
        str(seg_class),
        str(kind or ""),
        _split(approvers),
        int(threshold),
        _split(spenders),
    )


def _stored(row: WalletRow, batch_id: str) -> dict[str, Any]:
    return {
        "name": row.name,
        "chain": row.chain,
        "address": row.address,
        "seg_class": row.seg_class,
        "kind": row.kind,
        "approvers": ";".join(row.approvers),
        "threshold": row.threshold,
        "allowed_spenders": ";".join(row.allowed_spenders),
        "import_id": batch_id,
    }


class WalletChunks(Protocol):
    """A wallets file being read (reconciler.inputs.wallets.WalletStream): its valid rows chunk
    by chunk, each with its line; problems found here are added to it; good only once every
    chunk was read with no problem (``check()`` raises otherwise)."""

    @property
    def ok(self) -> bool: ...

    def chunks(self) -> Iterator[list[tuple[int, WalletRow]]]: ...

    def add(self, line: int, column: str | None, reason: str) -> None: ...

    def check(self) -> None: ...


class WalletsMixin(LedgerBase):
    """Custody wallets imported into the ledger."""

    def import_wallets(self, stream: WalletChunks, source: str, sha256: str) -> tuple[int, int]:
        """A wallets file as it is read (``stream``: reconciler.inputs.wallets.WalletStream),
        checked and inserted chunk by chunk in ONE transaction, so memory stays bounded and a
        problem on any line, the last included, leaves the ledger as it was. Returns how many
        wallets were added and how many the ledger already held, identical (kept as they are).
        A name, or a chain and address, met earlier in the file or held by the ledger with
        anything different is a problem of its line: an imported wallet is never moved,
        reclassified or renamed by another file. A file that adds nothing is not recorded as
        an import."""
        table = ImportedWallet.__table__  # type: ignore[attr-defined]
        with self._session() as s:
            if self.engine.dialect.name == "postgresql":
                # The checks look rows up by name and address as the import inserts them; the
                # planner's statistics still say the table is as small as it was, so it would
                # scan the whole table for every chunk (a million wallets took 4 minutes).
                s.execute(text("SET LOCAL enable_seqscan = off"))
            batch_id = str(uuid.uuid4())
            s.add(
                ImportBatch(id=batch_id, kind=WALLETS_IMPORT, source=source, sha256=sha256, rows=0, imported_at=_now())
            )
            s.flush()
            added = unchanged = 0
            for chunk in stream.chunks():
                if not chunk:
                    continue
                new = _judge(s, chunk, batch_id, stream)
                unchanged += len(chunk) - len(new)
                if not stream.ok:
                    continue  # checking goes on, to report every problem of the file at once
                _insert(s, table, new, batch_id)
                added += len(new)
            stream.check()
            if added:
                s.execute(update(ImportBatch).where(col(ImportBatch.id) == batch_id).values(rows=added))
            else:
                s.execute(delete(ImportBatch).where(col(ImportBatch.id) == batch_id))
            return added, unchanged

    # Reads go through a connection of their own, outside any transaction of this process: a
    # command reads its wallets when it first needs them, which may be while its run holds
    # SQLite's write lock (BEGIN IMMEDIATE) on another connection; an autocommit read is not
    # blocked by that, where a session of the ledger would wait for the lock it holds itself.

    def _read(self, sql: str, params: Sequence[Any] = (), stream: bool = False) -> Iterator[Sequence[Any]]:
        """Rows of one SELECT (``%s`` placeholders), read ``_READ`` at a time; ``stream``: on
        PostgreSQL through a server-side cursor, so memory holds one batch."""
        postgres = self.engine.dialect.name == "postgresql"
        try:
            raw = self.engine.raw_connection()
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc, self.url)}") from exc
        try:
            if postgres:
                driver = raw.driver_connection
                assert driver is not None
                cursor = driver.cursor(name="reconciler_wallets") if stream else driver.cursor()
            else:
                cursor = raw.cursor()
                sql = sql.replace("%s", "?")
            cursor.execute(sql, tuple(params))
            while batch := cursor.fetchmany(_READ):
                yield from batch
            cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:  # the driver's own: this is its cursor
            raise LedgerError(f"database error: {_first_line(exc, self.url)}") from exc
        finally:
            raw.rollback()
            raw.close()

    def holds_imported_wallets(self) -> bool:
        """Whether this database has the imported wallets' table (a ledger at revision 0013 or
        newer). A SQLite file that does not exist has none, and is not created."""
        path = self.sqlite_path
        if path is not None and not path.exists():
            return False
        if self.engine.dialect.name == "postgresql":
            query = "SELECT to_regclass('imported_wallet') IS NOT NULL"
        else:
            query = "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'imported_wallet'"
        return any(bool(v[0]) for v in self._read(query))

    def imported_wallets_stamp(self) -> tuple[Any, ...]:
        """What changes whenever the imported wallets do (they are only ever added, by an
        import): the number of wallet imports and the newest's time."""
        [stamp] = self._read("SELECT COUNT(*), MAX(imported_at) FROM import_batch WHERE kind = %s", [WALLETS_IMPORT])
        return tuple(stamp)

    def imported_wallets(self) -> Iterator[WalletRow]:
        """Every imported wallet, by name (byte order), read a few thousand rows at a time."""
        for values in self._read(f"SELECT {_SELECTED} FROM imported_wallet ORDER BY name", stream=True):
            yield _row(values)

    def wallets(self, chain: str, after_name: str | None = None, limit: int = 1_000) -> list[WalletRow]:
        """The imported wallets of ``chain`` in name order (byte order): at most ``limit`` of
        them, those named after ``after_name`` (None: from the first). Read a chain chunk by
        chunk by passing the last name of each chunk as the next ``after_name``."""
        where, params = "chain = %s", [chain]
        if after_name is not None:
            where += " AND name > %s"
            params.append(after_name)
        sql = f"SELECT {_SELECTED} FROM imported_wallet WHERE {where} ORDER BY name LIMIT {int(limit)}"
        return [_row(v) for v in self._read(sql, params)]

    def imported_wallet_count(self, chain: str | None = None) -> int:
        if chain is None:
            rows = self._read("SELECT COUNT(*) FROM imported_wallet")
        else:
            rows = self._read("SELECT COUNT(*) FROM imported_wallet WHERE chain = %s", [chain])
        return int(next(iter(rows))[0])


def _insert(s: Session, table: Any, rows: Sequence[WalletRow], batch_id: str) -> None:
    """New wallets, in the import's transaction: COPY on PostgreSQL (psycopg's executemany sends
    one INSERT per row: a million took 219 s, where SQLite's took 34 s), an executemany of plain
    rows on SQLite."""
    if not rows:
        return
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        for i in range(0, len(rows), _INSERT):
            s.execute(insert(table), [_stored(r, batch_id) for r in rows[i : i + _INSERT]])
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    columns = ", ".join(_stored(rows[0], batch_id))
    with driver.cursor() as cursor, cursor.copy(f"COPY imported_wallet ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(_stored(row, batch_id).values()))


def _judge(s: Session, chunk: Sequence[tuple[int, WalletRow]], batch_id: str, sink: WalletChunks) -> list[WalletRow]:
    """The rows of ``chunk`` to insert: new by name and by (chain, address) to the ledger, to
    the chunk and to the file so far (its earlier chunks are in the ledger under ``batch_id``).
    A row stored identically by an earlier import is left out without a word; any other clash
    is said to ``sink`` with the row's line."""
    stored: dict[str, tuple[WalletRow, str]] = {}
    names = [r.name for _, r in chunk]
    for chain in sorted({r.chain for _, r in chunk}):
        addresses = sorted({r.address for _, r in chunk if r.chain == chain})
        for part in _chunks(addresses):
            where = (col(ImportedWallet.chain) == chain) & col(ImportedWallet.address).in_(part)
            for values in s.execute(select(*_COLUMNS, col(ImportedWallet.import_id)).where(where)):
                stored[str(values[0])] = (_row(values[:-1]), str(values[-1]))
    for part in _chunks(names):
        for values in s.execute(
            select(*_COLUMNS, col(ImportedWallet.import_id)).where(col(ImportedWallet.name).in_(part))
        ):
            stored[str(values[0])] = (_row(values[:-1]), str(values[-1]))
    at_address = {(w.chain, w.address): (w, batch) for w, batch in stored.values()}
    in_chunk: dict[str, int] = {}
    in_chunk_at: dict[tuple[str, str], int] = {}
    new: list[WalletRow] = []
    for line, row in chunk:
        earlier = stored.get(row.name)
        if earlier is not None:
            wallet, batch = earlier
            if batch == batch_id:
                sink.add(line, "name", f"{row.name!r} appears earlier in this file")
            elif wallet != row:
                fields = [f for f in WalletRow._fields if getattr(wallet, f) != getattr(row, f)]
                sink.add(
                    line,
                    "class" if fields[0] == "seg_class" else fields[0],
                    f"wallet {row.name!r} is already in the ledger with {_differs(wallet, row, fields)}; an "
                    "imported wallet does not change by import (give the new one a new name)",
                )
            continue
        other = at_address.get((row.chain, row.address))
        if other is not None:
            wallet, batch = other
            said = "earlier in this file" if batch == batch_id else "in the ledger"
            sink.add(
                line,
                "address",
                f"{row.address} on chain {row.chain} is already wallet {wallet.name!r} {said}; a "
                "wallet is imported once",
            )
            continue
        if row.name in in_chunk:
            sink.add(line, "name", f"{row.name!r} already appears on line {in_chunk[row.name]}")
            continue
        if (row.chain, row.address) in in_chunk_at:
            sink.add(
                line,
                "address",
                f"{row.address} on chain {row.chain} already appears on line {in_chunk_at[row.chain, row.address]}",
            )
            continue
        in_chunk[row.name] = line
        in_chunk_at[row.chain, row.address] = line
        new.append(row)
    return new


def _differs(stored: WalletRow, row: WalletRow, fields: list[str]) -> str:
    said = []
    for field in fields:
        before, after = getattr(stored, field), getattr(row, field)
        if isinstance(before, tuple):
            before, after = ";".join(before), ";".join(after)
        label = "class" if field == "seg_class" else field
        said.append(f"{label} {before!r} (this file: {after!r})")
    return ", ".join(said)
