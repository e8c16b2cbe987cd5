"""The pilot's weekly report (digital assets held for customers, by class and asset, at market)
and the close of business it is taken at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from reconciler.domain import SegClass
from reconciler.engine.segregation.valuation import _prices
from reconciler.engine.segregation.values import (
    CUSTOMER_CLASSES,
    SegregationInputs,
    _sum_or_none,
    encumbered_units,
    to_cents,
    units_value,
)

# --------------------------------------------------------------------------- pilot report


@dataclass(frozen=True, slots=True)
class PilotRow:
    seg_class: SegClass
    asset: str
    units: int
    decimals: int
    market_value: Decimal | None  # exact: of every unit held (the report says what is held)
    encumbered: int | None = 0  # of them, what the issuer froze; None: not known


@dataclass(frozen=True, slots=True)
class PilotTotal:
    seg_class: SegClass
    market_value: Decimal | None  # rounded


@dataclass(frozen=True, slots=True)
class PilotReport:
    rows: tuple[PilotRow, ...]
    totals: tuple[PilotTotal, ...]
    problems: tuple[str, ...]


def pilot_report(inputs: SegregationInputs) -> PilotReport:
    """Digital assets held for customers: the on-chain holdings of each customer class's wallets
    by asset, in units and at market value (no haircut), zero rows left out; beside the units,
    how many of them the issuer froze (ERC-3643), still held and still reported."""
    prices = _prices(inputs)
    problems: list[str] = []
    rows: list[PilotRow] = []
    totals: list[PilotTotal] = []
    for seg_class in CUSTOMER_CLASSES:
        wallets = [w for w in inputs.wallets.values() if w.seg_class is seg_class]
        for chain in sorted({w.chain for w in wallets} - set(inputs.chains)):
            problems.append(f"chain {chain} was not read ({inputs.unread.get(chain, 'not read')})")
        units: dict[str, int] = {}
        encumbered: dict[str, int | None] = {}
        for w in wallets:
            for a in inputs.assets.values():
                if a.chain == w.chain and w.chain in inputs.chains:
                    held = inputs.holdings.get((w.name, a.name), 0)
                    units[a.name] = units.get(a.name, 0) + held
                    hold = inputs.holds.get((w.name, a.name))
                    frozen = encumbered_units(held, hold)
                    so_far = encumbered.get(a.name, 0)
                    encumbered[a.name] = None if frozen is None or so_far is None else so_far + frozen
                    if frozen is None:
                        why = hold.note if hold is not None and hold.note else "the issuer's views did not answer"
                        problems.append(f"{a.name} held in {w.name}: could not tell how much is frozen ({why})")
        class_rows = []
        for name, amount in sorted(units.items()):
            if amount == 0:
                continue
            asset = inputs.assets[name]
            price = prices[name]
            if price.problem:
                problems.append(f"{name}: {price.problem}")
            market = None if price.usd is None else units_value(amount, asset.decimals, price.usd)
            class_rows.append(PilotRow(seg_class, name, amount, asset.decimals, market, encumbered.get(name, 0)))
        rows += class_rows
        total = _sum_or_none(r.market_value for r in class_rows)
        unread = any(w.chain not in inputs.chains for w in wallets)
        totals.append(PilotTotal(seg_class, None if total is None or unread else to_cents(total)))
    return PilotReport(tuple(rows), tuple(totals), tuple(dict.fromkeys(problems)))


# --------------------------------------------------------------------------- time


def close_of_business(day: date, tz: Any, hour: int = 17) -> datetime:
    """``hour``:00 local time on ``day`` in ``tz`` (a tzinfo)."""
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=tz)


def pilot_week_close(week: str, tz: Any) -> datetime:
    """The last close of business of ISO week "2026-W47": its Friday, 17:00 in ``tz``. No
    holiday calendar: a week whose Friday is a holiday still closes on Friday."""
    year, _, number = week.partition("-W")
    if not (len(year) == 4 and year.isdigit() and len(number) == 2 and number.isdigit()):
        raise ValueError(f"{week!r} is not an ISO week like 2026-W47")
    try:
        friday = date.fromisocalendar(int(year), int(number), 5)
    except ValueError as exc:
        raise ValueError(f"{week!r} is not an ISO week: {exc}") from exc
    return close_of_business(friday, tz)
