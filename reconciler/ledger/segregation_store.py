"""Queries and writes of segregation on the ledger: imports of the back office's figures, the
inputs a statement needs, and the statements themselves.

Invariants: an import writes all of its rows or none, and refuses rows already stored (checked
again inside its transaction, so two imports cannot both add one); amounts are summed in
Python, never with SQLite's SUM over text; table classes never leave this module (callers get
the engine's value types).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import EquityImportRow, OffchainImportRow, SegClass
from reconciler.engine.segregation.values import CUSTOMER_CLASSES, BookHolding, EquityRow, OffchainRow
from reconciler.errors import InputError, LedgerError
from reconciler.ledger.models import Account, BookEntry, ImportBatch
from reconciler.ledger.segregation_models import (
    EquityBalance,
    OffchainBalance,
    SegregationRun,
    SegregationStatementRow,
)
from reconciler.ledger.store import Ledger

_IN_CHUNK = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


# --------------------------------------------------------------------------- reads for imports


def account_classes(ledger: Ledger) -> dict[str, SegClass]:
    with ledger._session() as s:
        return {a: SegClass(c) for a, c in s.execute(select(col(Account.account), col(Account.seg_class)))}


def stored_equity_keys(ledger: Ledger, keys: Iterable[tuple[date, str]]) -> set[tuple[date, str]]:
    wanted = sorted(set(keys))
    found: set[tuple[date, str]] = set()
    with ledger._session() as s:
        for chunk in _chunks(wanted):
            query = select(col(EquityBalance.business_date), col(EquityBalance.account)).where(
                tuple_(col(EquityBalance.business_date), col(EquityBalance.account)).in_(list(chunk))
            )
            found |= {(d, a) for d, a in s.execute(query)}
    return found


def stored_offchain_keys(ledger: Ledger, keys: Iterable[tuple[date, SegClass, str]]) -> set[tuple[date, SegClass, str]]:
    wanted = sorted({(d, c.value, dep) for d, c, dep in keys})
    found: set[tuple[date, SegClass, str]] = set()
    with ledger._session() as s:
        for chunk in _chunks(wanted):
            query = select(
                col(OffchainBalance.business_date), col(OffchainBalance.seg_class), col(OffchainBalance.depository)
            ).where(
                tuple_(
                    col(OffchainBalance.business_date), col(OffchainBalance.seg_class), col(OffchainBalance.depository)
                ).in_(list(chunk))
            )
            found |= {(d, SegClass(c), dep) for d, c, dep in s.execute(query)}
    return found


# --------------------------------------------------------------------------- imports


def import_equity(ledger: Ledger, rows: Sequence[EquityImportRow], source: str, sha256: str) -> int:
    with ledger._session() as s:
        stored: set[tuple[date, str]] = set()
        for chunk in _chunks(sorted({(r.business_date, r.account) for r in rows})):
            query = select(col(EquityBalance.business_date), col(EquityBalance.account)).where(
                tuple_(col(EquityBalance.business_date), col(EquityBalance.account)).in_(list(chunk))
            )
            stored |= {(d, a) for d, a in s.execute(query)}
        if stored:
            raise InputError(
                source,
                [
                    f"line {r.line}, column account: {r.account!r} on {r.business_date} is already in the ledger; "
                    "a day's figures are imported once"
                    for r in rows
                    if (r.business_date, r.account) in stored
                ],
            )
        batch_id = str(uuid.uuid4())
        s.add(ImportBatch(id=batch_id, kind="equity", source=source, sha256=sha256, rows=len(rows), imported_at=_now()))
        s.flush()
        s.add_all(
            EquityBalance(
                business_date=r.business_date,
                account=r.account,
                cash_cents=r.cash_cents,
                open_trade_equity_cents=r.open_trade_equity_cents,
                import_id=batch_id,
            )
            for r in rows
        )
        return len(rows)


def import_offchain(ledger: Ledger, rows: Sequence[OffchainImportRow], source: str, sha256: str) -> int:
    with ledger._session() as s:
        keys = sorted({(r.business_date, r.seg_class.value, r.depository) for r in rows})
        stored: set[tuple[date, str, str]] = set()
        for chunk in _chunks(keys):
            query = select(
                col(OffchainBalance.business_date), col(OffchainBalance.seg_class), col(OffchainBalance.depository)
            ).where(
                tuple_(
                    col(OffchainBalance.business_date), col(OffchainBalance.seg_class), col(OffchainBalance.depository)
                ).in_(list(chunk))
            )
            stored |= {(d, c, dep) for d, c, dep in s.execute(query)}
        if stored:
            raise InputError(
                source,
                [
                    f"line {r.line}, column depository: {r.depository!r} for {r.seg_class.value} on "
                    f"{r.business_date} is already in the ledger; a day's figures are imported once"
                    for r in rows
                    if (r.business_date, r.seg_class.value, r.depository) in stored
                ],
            )
        batch_id = str(uuid.uuid4())
        s.add(
            ImportBatch(id=batch_id, kind="offchain", source=source, sha256=sha256, rows=len(rows), imported_at=_now())
        )
        s.flush()
        s.add_all(
            OffchainBalance(
                business_date=r.business_date,
                seg_class=r.seg_class.value,
                depository=r.depository,
                amount_cents=r.amount_cents,
                import_id=batch_id,
            )
            for r in rows
        )
        return len(rows)


# --------------------------------------------------------------------------- statement inputs


def book_holdings(ledger: Ledger, through: date | None = None) -> list[BookHolding]:
    """Every account's non-zero book balance per wallet x asset, summed in Python, of the
    entries dated on or before ``through`` (None: every entry)."""
    totals: dict[tuple[str, str, str], int] = {}
    query = select(col(BookEntry.account), col(BookEntry.wallet), col(BookEntry.asset), col(BookEntry.amount))
    if through is not None:
        query = query.where(col(BookEntry.entry_date) <= through)
    with ledger._session() as s:
        rows = s.execute(query.execution_options(yield_per=10_000))
        for account, wallet, asset, amount in rows:
            key = (account, wallet, asset)
            totals[key] = totals.get(key, 0) + int(amount)
    return [BookHolding(a, w, s, u) for (a, w, s), u in sorted(totals.items()) if u != 0]


def equity_for(ledger: Ledger, business_date: date) -> list[EquityRow]:
    """Per customer class, the rows of the latest business day on or before ``business_date``
    that has figures for any account of the class (the back office's figures arrive after the
    close: a statement during the day uses the previous day's)."""
    out: list[EquityRow] = []
    with ledger._session() as s:
        for seg_class in CUSTOMER_CLASSES:
            joined = (
                select(func.max(col(EquityBalance.business_date)))
                .join(Account, col(Account.account) == col(EquityBalance.account))
                .where(col(Account.seg_class) == seg_class.value, col(EquityBalance.business_date) <= business_date)
            )
            day = s.execute(joined).scalar_one_or_none()
            if day is None:
                continue
            query = (
                select(EquityBalance)
                .join(Account, col(Account.account) == col(EquityBalance.account))
                .where(col(Account.seg_class) == seg_class.value, col(EquityBalance.business_date) == day)
                .order_by(col(EquityBalance.account))
            )
            out += [
                EquityRow(r.business_date, r.account, int(r.cash_cents), int(r.open_trade_equity_cents))
                for r in s.scalars(query)
            ]
    return out


def offchain_for(ledger: Ledger, business_date: date) -> list[OffchainRow]:
    """Per customer class, the rows of the latest business day on or before ``business_date``."""
    out: list[OffchainRow] = []
    with ledger._session() as s:
        for seg_class in CUSTOMER_CLASSES:
            day = s.execute(
                select(func.max(col(OffchainBalance.business_date))).where(
                    col(OffchainBalance.seg_class) == seg_class.value,
                    col(OffchainBalance.business_date) <= business_date,
                )
            ).scalar_one_or_none()
            if day is None:
                continue
            query = (
                select(OffchainBalance)
                .where(col(OffchainBalance.seg_class) == seg_class.value, col(OffchainBalance.business_date) == day)
                .order_by(col(OffchainBalance.depository))
            )
            out += [
                OffchainRow(r.business_date, SegClass(r.seg_class), r.depository, int(r.amount_cents))
                for r in s.scalars(query)
            ]
    return out


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class StatementFigures:
    """One class's statement as stored: totals in cents (None when incomplete) and its document."""

    seg_class: SegClass
    complete: bool
    amount_required_cents: int | None
    funds_in_segregation_cents: int | None
    excess_cents: int | None
    target_residual_interest_cents: int | None
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredStatement:
    run_id: str
    as_of: datetime
    business_date: date
    inputs: dict[str, Any]
    statements: list[StatementFigures]


@dataclass(frozen=True, slots=True)
class StatementWrite:
    """A statement's rows, written by ``Ledger.finish_run`` inside the run's own transaction
    (a ``RunWrite``): the statement exists exactly when its run's outcome does."""

    as_of: datetime
    business_date: date
    inputs: dict[str, Any]
    statements: tuple[StatementFigures, ...]

    def apply(self, s: Session, run_id: str) -> None:
        s.add(
            SegregationRun(
                run_id=run_id,
                as_of=self.as_of.astimezone(UTC),
                business_date=self.business_date,
                inputs=json.dumps(self.inputs, sort_keys=True),
                recorded_at=_now(),
            )
        )
        s.flush()
        s.add_all(
            SegregationStatementRow(
                run_id=run_id,
                seg_class=st.seg_class.value,
                complete=st.complete,
                amount_required_cents=st.amount_required_cents,
                funds_in_segregation_cents=st.funds_in_segregation_cents,
                excess_cents=st.excess_cents,
                target_residual_interest_cents=st.target_residual_interest_cents,
                document=json.dumps(st.document),
            )
            for st in self.statements
        )


def save_statements(ledger: Ledger, run_id: str, write: StatementWrite) -> None:
    """The same rows in a transaction of their own (for a caller outside ``finish_run``)."""
    with ledger._session() as s:
        write.apply(s, run_id)


def get_statement(ledger: Ledger, run_id: str) -> StoredStatement:
    with ledger._session() as s:
        run = s.get(SegregationRun, run_id)
        if run is None:
            raise LedgerError(f"no segregation statement was stored by run {run_id!r}")
        rows = s.scalars(select(SegregationStatementRow).where(col(SegregationStatementRow.run_id) == run_id)).all()
        order = {c.value: i for i, c in enumerate((*CUSTOMER_CLASSES, SegClass.HOUSE))}
        statements = [
            StatementFigures(
                seg_class=SegClass(r.seg_class),
                complete=r.complete,
                amount_required_cents=_int(r.amount_required_cents),
                funds_in_segregation_cents=_int(r.funds_in_segregation_cents),
                excess_cents=_int(r.excess_cents),
                target_residual_interest_cents=_int(r.target_residual_interest_cents),
                document=json.loads(r.document),
            )
            for r in sorted(rows, key=lambda r: order.get(r.seg_class, 99))
        ]
        as_of = run.as_of if run.as_of.tzinfo else run.as_of.replace(tzinfo=UTC)
        return StoredStatement(run.run_id, as_of, run.business_date, json.loads(run.inputs), statements)


def _int(value: int | None) -> int | None:
    return None if value is None else int(value)
