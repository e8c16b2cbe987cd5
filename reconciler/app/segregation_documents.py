"""The documents of segregation (the `--json` and `--csv` shapes of design.md), built from values.

Invariants: USD figures are decimal strings rounded to the cent (``"1029000.00"``), null where a
statement is incomplete; units are strings of base units with a ``units_display`` twin at the
asset's full decimals; prices and haircuts are exact decimal strings as configured or as the feed
answered; block numbers are integers and hashes lowercase 0x hex.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from reconciler.domain import format_amount
from reconciler.engine.segregation.pilot import PilotReport
from reconciler.engine.segregation.values import CustomerLine, HoldingLine, Price, Statement, plain, usd

CSV_COLUMNS = (
    "class",
    "line",
    "account",
    "wallet",
    "depository",
    "asset",
    "units",
    "price_usd",
    "market_value_usd",
    "haircut",
    "amount_usd",
)


def iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def customer_doc(c: CustomerLine) -> dict[str, Any]:
    return {
        "account": c.account,
        "net_liquidating_equity": usd(c.net_liquidating_equity),
        "collateral_usd": usd(c.collateral_usd),
        "cash_usd": usd(c.cash_usd),
        "open_trade_equity_usd": usd(c.open_trade_equity_usd),
        "debit": c.debit,
    }


def holding_doc(h: HoldingLine) -> dict[str, Any]:
    return {
        "chain": h.chain,
        "wallet": h.wallet,
        "asset": h.asset,
        "units": str(h.units),
        "units_display": format_amount(h.units, h.decimals),
        # Of the units, what the issuer froze: the values below are of the rest.
        "encumbered": None if h.encumbered is None else str(h.encumbered),
        "encumbered_display": None if h.encumbered is None else format_amount(h.encumbered, h.decimals),
        "price_usd": None if h.price.usd is None else plain(h.price.usd),
        "price_source": h.price.source,
        "market_value": usd(h.market_value),
        "haircut": plain(h.haircut.rate),
        "haircut_source": h.haircut.source,
        "value": usd(h.value),
    }


def statement_doc(st: Statement) -> dict[str, Any]:
    return {
        "class": st.seg_class.value,
        "complete": st.complete,
        "problems": list(st.problems),
        "equity_date": st.equity_date.isoformat() if st.equity_date else None,
        "offchain_date": st.offchain_date.isoformat() if st.offchain_date else None,
        "customers": [customer_doc(c) for c in st.customers],
        "amount_required": usd(st.amount_required),
        "holdings": [holding_doc(h) for h in st.holdings],
        "offchain": [{"depository": o.depository, "amount": usd(o.amount)} for o in st.offchain],
        "total_market_value": usd(st.total_market_value),
        "funds_in_segregation": usd(st.funds_in_segregation),
        "excess": usd(st.excess),
        "target_residual_interest": usd(st.target_residual_interest),
        "excess_over_target": usd(st.excess_over_target),
    }


def price_doc(p: Price, chain: str) -> dict[str, Any]:
    feed: dict[str, Any] | None = None
    if p.feed is not None:
        a = p.feed.answer
        feed = {
            "address": p.feed.feed,
            "block_number": p.feed.block_number,
            "block_time": iso_seconds(p.feed.block_time),
            "error": p.feed.error,
            "decimals": a.decimals if a else None,
            "round_id": str(a.round_id) if a else None,
            "answer": str(a.answer) if a else None,
            "updated_at": iso_seconds(a.updated_at) if a and a.updated_at < 2**40 else None,
        }
    return {
        "asset": p.asset,
        "chain": chain,
        "price_usd": None if p.usd is None else plain(p.usd),
        "source": p.source,
        "problem": p.problem,
        "feed": feed,
    }


def statements_csv(statements: Sequence[Statement]) -> str:
    """One CSV of every statement: a line per customer, holding, off-chain balance and total;
    ``amount_usd`` carries each line's figure (a customer's equity, a holding's value after
    haircut, an off-chain balance, or the total the line names)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for st in statements:
        k = st.seg_class.value
        for c in st.customers:
            writer.writerow([k, "customer", c.account, "", "", "", "", "", "", "", usd(c.net_liquidating_equity) or ""])
        for h in st.holdings:
            d = holding_doc(h)
            writer.writerow(
                [
                    k,
                    "holding",
                    "",
                    h.wallet,
                    "",
                    h.asset,
                    d["units_display"],
                    d["price_usd"] or "",
                    d["market_value"] or "",
                    d["haircut"],
                    d["value"] or "",
                ]
            )
        for o in st.offchain:
            writer.writerow([k, "offchain", "", "", o.depository, "", "", "", "", "", usd(o.amount)])
        for line, value in (
            ("amount_required", st.amount_required),
            ("total_market_value", st.total_market_value),
            ("funds_in_segregation", st.funds_in_segregation),
            ("excess", st.excess),
            ("target_residual_interest", st.target_residual_interest),
            ("excess_over_target", st.excess_over_target),
        ):
            writer.writerow([k, line, "", "", "", "", "", "", "", "", usd(value) or ""])
    return buffer.getvalue()


def pilot_doc(week: str, as_of: datetime, chains: dict[str, Any], report: PilotReport) -> dict[str, Any]:
    return {
        "week": week,
        "as_of": as_of.isoformat(),
        "complete": not report.problems,
        "problems": list(report.problems),
        "chains": chains,
        "rows": [
            {
                "class": r.seg_class.value,
                "asset": r.asset,
                "units": str(r.units),
                "units_display": format_amount(r.units, r.decimals),
                "encumbered_units": None if r.encumbered is None else str(r.encumbered),
                "encumbered_units_display": None if r.encumbered is None else format_amount(r.encumbered, r.decimals),
                "market_value_usd": usd(r.market_value),
            }
            for r in report.rows
        ],
        "totals": [{"class": t.seg_class.value, "market_value_usd": usd(t.market_value)} for t in report.totals],
    }
