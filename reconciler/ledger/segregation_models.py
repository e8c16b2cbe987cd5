"""Ledger tables of segregation: the back office's daily figures and the statements computed.

Amounts in USD are integer cents (ExactInt), like base units elsewhere: exact on SQLite and
PostgreSQL alike. A statement keeps the inputs it was computed from (JSON) beside what it
printed, so it can be recomputed to the cent.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from reconciler.domain import MAX_ACCOUNT_LENGTH, MAX_DEPOSITORY_LENGTH
from reconciler.ledger.types import ExactInt


def _cents(nullable: bool = False) -> Column[int]:
    return Column(ExactInt(), nullable=nullable)


class EquityBalance(SQLModel, table=True):
    """A customer account's cash balance and open trade equity on one business day."""

    __tablename__ = "equity_balance"
    business_date: date = Field(primary_key=True)
    account: str = Field(primary_key=True, foreign_key="account.account", max_length=MAX_ACCOUNT_LENGTH)
    cash_cents: int = Field(sa_column=_cents())
    open_trade_equity_cents: int = Field(sa_column=_cents())
    import_id: str = Field(foreign_key="import_batch.id", max_length=36)


class OffchainBalance(SQLModel, table=True):
    """Funds of a customer class held off chain (a bank, a clearing house) on one business day."""

    __tablename__ = "offchain_balance"
    business_date: date = Field(primary_key=True)
    seg_class: str = Field(primary_key=True, max_length=32)
    depository: str = Field(primary_key=True, max_length=MAX_DEPOSITORY_LENGTH)
    amount_cents: int = Field(sa_column=_cents())
    import_id: str = Field(foreign_key="import_batch.id", max_length=36)


class SegregationRun(SQLModel, table=True):
    """One `segregation statement`: the instant it is as of and every input it used."""

    __tablename__ = "segregation_run"
    run_id: str = Field(primary_key=True, foreign_key="run.id", max_length=36)
    as_of: datetime  # UTC
    business_date: date
    inputs: str = Field(sa_column=Column(Text, nullable=False))  # engine.segregation.stored.inputs_to_json
    recorded_at: datetime

    __table_args__ = (Index("ix_segregation_run_business_date", "business_date"),)


class SegregationStatementRow(SQLModel, table=True):
    """One class's statement of one segregation run, as printed, with its totals in cents
    (null when the statement was incomplete)."""

    __tablename__ = "segregation_statement"
    run_id: str = Field(primary_key=True, foreign_key="segregation_run.run_id", max_length=36)
    seg_class: str = Field(primary_key=True, max_length=32)
    complete: bool
    amount_required_cents: int | None = Field(default=None, sa_column=_cents(nullable=True))
    funds_in_segregation_cents: int | None = Field(default=None, sa_column=_cents(nullable=True))
    excess_cents: int | None = Field(default=None, sa_column=_cents(nullable=True))
    target_residual_interest_cents: int | None = Field(default=None, sa_column=_cents(nullable=True))
    document: str = Field(sa_column=Column(Text, nullable=False))
