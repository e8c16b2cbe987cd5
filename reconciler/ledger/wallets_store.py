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
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import WalletRow
from reconciler.errors import InputError, LedgerError
from reconciler.ledger.base import LedgerBase, _chunks, _first_line, _now, _utc, redact_url
from reconciler.ledger.models import ImportBatch, ImportedWallet

_INSERT = 5_000  # rows per executemany
_READ = 10_000  # rows fetched at a time when every imported wallet is read
MAX_LISTED_PROBLEMS = 100
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


class WalletsMixin(LedgerBase):
    """Custody wallets imported into the ledger."""

    def import_wallets(self, rows: Sequence[tuple[int, WalletRow]], source: str, sha256: str) -> tuple[int, int]:
        """Store the file's wallets (``rows``: each with its line), all or none; returns how
        many were added and how many were already there, identical. A row whose name, or whose
        chain and address, the ledger holds with anything different is refused, naming its line:
        an imported wallet is never moved, reclassified or renamed by another file. A file that
        adds nothing is not recorded as an import."""
        with self._session() as s:
            known = _known(s, rows) if s.scalar(select(func.count()).select_from(ImportedWallet)) else {}
            by_address = {(w.chain, w.address): w for w in known.values()}
            problems: list[str] = []
            new: list[WalletRow] = []
            for line, row in rows:
                stored = known.get(row.name)
                if stored is not None:
                    if stored != row:
                        fields = [f for f in WalletRow._fields if getattr(stored, f) != getattr(row, f)]
                        problems.append(
                            f"line {line}, column {fields[0] if fields[0] != 'seg_class' else 'class'}: wallet "
                            f"{row.name!r} is already in the ledger with {_differs(stored, row, fields)}; an imported "
                            "wallet does not change by import (give the new one a new name)"
                        )
                    continue
                other = by_address.get((row.chain, row.address))
                if other is not None:
                    problems.append(
                        f"line {line}, column address: {row.address} on chain {row.chain} is already imported as "
                        f"wallet {other.name!r}; a wallet is imported once"
                    )
                    continue
                new.append(row)
            if problems:
                shown = problems[:MAX_LISTED_PROBLEMS]
                if len(problems) > len(shown):
                    shown.append(f"… and {len(problems) - len(shown)} more problem(s)")
                raise InputError(source, shown)
            if not new:
                return 0, len(rows)
            batch_id = str(uuid.uuid4())
            s.add(
                ImportBatch(
                    id=batch_id, kind=WALLETS_IMPORT, source=source, sha256=sha256, rows=len(new), imported_at=_now()
                )
            )
            s.flush()
            table = ImportedWallet.__table__  # type: ignore[attr-defined]
            for i in range(0, len(new), _INSERT):
                s.execute(insert(table), [_stored(r, batch_id) for r in new[i : i + _INSERT]])
            return len(new), len(rows) - len(new)

    def holds_imported_wallets(self) -> bool:
        """Whether this database has the imported wallets' table (a ledger at revision 0013 or
        newer). A SQLite file that does not exist has none, and is not created."""
        path = self.sqlite_path
        if path is not None and not path.exists():
            return False
        try:
            with self.engine.connect() as conn:
                return inspect(conn).has_table(ImportedWallet.__tablename__)
        except OperationalError as exc:
            raise LedgerError(f"database {redact_url(self.url)} unreachable: {_first_line(exc, self.url)}") from exc

    def imported_wallets_stamp(self) -> tuple[int, datetime | None]:
        """What changes whenever the imported wallets do (they are only ever added, by an
        import): the number of wallet imports and the newest's time."""
        with self._session() as s:
            count, newest = s.execute(
                select(func.count(), func.max(col(ImportBatch.imported_at))).where(
                    col(ImportBatch.kind) == WALLETS_IMPORT
                )
            ).one()
        return int(count), None if newest is None else _utc(newest)

    def imported_wallets(self) -> Iterator[WalletRow]:
        """Every imported wallet, by name, read a few thousand rows at a time."""
        with self._session() as s:
            result = s.execute(select(*_COLUMNS).order_by(col(ImportedWallet.name)).execution_options(yield_per=_READ))
            for values in result:
                yield _row(values)

    def wallets(self, chain: str, after_name: str | None = None, limit: int = 1_000) -> list[WalletRow]:
        """The imported wallets of ``chain`` in name order: at most ``limit`` of them, those
        named after ``after_name`` (None: from the first). Read a chain chunk by chunk by
        passing the last name of each chunk as the next ``after_name``."""
        query = select(*_COLUMNS).where(col(ImportedWallet.chain) == chain)
        if after_name is not None:
            query = query.where(col(ImportedWallet.name) > after_name)
        with self._session() as s:
            return [_row(v) for v in s.execute(query.order_by(col(ImportedWallet.name)).limit(limit))]

    def imported_wallet_count(self, chain: str | None = None) -> int:
        query = select(func.count()).select_from(ImportedWallet)
        if chain is not None:
            query = query.where(col(ImportedWallet.chain) == chain)
        with self._session() as s:
            return int(s.scalar(query) or 0)


def _known(s: Session, rows: Sequence[tuple[int, WalletRow]]) -> dict[str, WalletRow]:
    """The stored wallets that share a name or an address with one of ``rows``."""
    known: dict[str, WalletRow] = {}
    names = [r.name for _, r in rows]
    addresses = sorted({r.address for _, r in rows})
    for column, values in ((col(ImportedWallet.name), names), (col(ImportedWallet.address), addresses)):
        for chunk in _chunks(values):
            for values_ in s.execute(select(*_COLUMNS).where(column.in_(chunk))):
                row = _row(values_)
                known[row.name] = row
    return known


def _differs(stored: WalletRow, row: WalletRow, fields: list[str]) -> str:
    said = []
    for field in fields:
        before, after = getattr(stored, field), getattr(row, field)
        if isinstance(before, tuple):
            before, after = ";".join(before), ";".join(after)
        label = "class" if field == "seg_class" else field
        said.append(f"{label} {before!r} (this file: {after!r})")
    return ", ".join(said)
