"""The back office's segregation inputs, as CSV: customer equity and off-chain funds.

Invariant (as for books, reconciler.inputs.books): a file yields rows only when every line is
valid; otherwise InputError lists each problem as ``line N, column C: reason`` and the caller
writes nothing. Checks that need the ledger (known accounts, rows already stored) take their
facts as arguments; the store checks again inside its transaction.

USD amounts are plain decimals (``-?[0-9]+(\\.[0-9]+)?``: no exponent, ``+``, separators or
spaces) with at most two significant fractional digits (cents; ``12.50`` and ``12.500`` are
the same amount, ``12.505`` is refused), and are kept as integer cents. Cash and open trade
equity may be negative (a debit, a loss); an off-chain balance may not.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from datetime import date

from reconciler.domain import (
    AMOUNT_RE,
    MAX_ACCOUNT_LENGTH,
    MAX_DEPOSITORY_LENGTH,
    EquityImportRow,
    OffchainImportRow,
    SegClass,
)
from reconciler.engine.segregation.values import CUSTOMER_CLASSES
from reconciler.errors import InputError
from reconciler.inputs.csvfile import _DATE_RE, AMOUNT_FIELD_LIMIT, _Problems, _records

EQUITY_COLUMNS = ("date", "account", "cash_usd", "open_trade_equity_usd")
OFFCHAIN_COLUMNS = ("date", "class", "depository", "amount_usd")
# No real balance reaches 10^30 USD; the bound keeps every amount far inside NUMERIC(78, 0).
MAX_USD_WHOLE_DIGITS = 30


class UsdError(ValueError):
    """A USD amount that is not a plain decimal of at most two significant fractional digits."""


def parse_cents(text: str, allow_negative: bool = True) -> int:
    """'1250000.5' -> 125000050 cents."""
    shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}… ({len(text)} characters)"
    if not AMOUNT_RE.fullmatch(text):
        raise UsdError(f"{shown} is not a plain decimal amount in USD (digits, optional '-' and one '.', like 1250.50)")
    negative = text.startswith("-")
    if negative and not allow_negative:
        raise UsdError(f"{shown} is negative; a balance held at a depository is zero or more")
    whole, _, frac = (text[1:] if negative else text).partition(".")
    significant = frac.rstrip("0")
    if len(significant) > 2:
        raise UsdError(f"{shown} has {len(significant)} fractional digits; USD amounts have at most 2 (cents)")
    whole = whole.lstrip("0") or "0"
    if len(whole) > MAX_USD_WHOLE_DIGITS:
        raise UsdError(f"{shown} has {len(whole)} digits before the point; at most {MAX_USD_WHOLE_DIGITS} are allowed")
    cents = int(whole) * 100 + (int(significant.ljust(2, "0")) if significant else 0)
    return -cents if negative else cents


def _date(problems: _Problems, line: int, text: str) -> date | None:
    if not _DATE_RE.fullmatch(text):
        problems.add(line, "date", f"{text!r} is not an ISO date like 2026-11-24")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        problems.add(line, "date", f"{text!r}: {exc}")
        return None


def parse_equity_csv(
    text: str,
    source: str,
    accounts: Mapping[str, SegClass],
    stored: Set[tuple[date, str]] = frozenset(),
) -> list[EquityImportRow]:
    """``date,account,cash_usd,open_trade_equity_usd``: one row per customer account and day.
    ``accounts`` maps every known account to its class; ``stored`` holds the (date, account)
    pairs the ledger already has."""
    problems = _Problems()
    rows: list[EquityImportRow] = []
    first_line: dict[tuple[date, str], int] = {}
    limits = {"account": MAX_ACCOUNT_LENGTH, "cash_usd": AMOUNT_FIELD_LIMIT}
    limits["open_trade_equity_usd"] = AMOUNT_FIELD_LIMIT
    for line, rec in _records(text, source, EQUITY_COLUMNS, (), problems, limits):
        ok = True
        day = _date(problems, line, rec["date"])
        ok = ok and day is not None
        account = rec["account"]
        if not account.strip():
            problems.add(line, "account", "is empty")
            ok = False
        elif account not in accounts:
            problems.add(line, "account", f"unknown account {account!r}; import it first with `accounts import`")
            ok = False
        elif accounts[account] is SegClass.HOUSE:
            problems.add(
                line,
                "account",
                f"{account!r} is a house account; equity is imported for customer accounts only "
                "(the firm's own funds are not owed to anyone)",
            )
            ok = False
        amounts: dict[str, int] = {}
        for column in ("cash_usd", "open_trade_equity_usd"):
            try:
                amounts[column] = parse_cents(rec[column])
            except UsdError as exc:
                problems.add(line, column, str(exc))
                ok = False
        if ok and day is not None:
            key = (day, account)
            if key in first_line:
                problems.add(line, "account", f"{account!r} on {day} already appears on line {first_line[key]}")
                continue
            if key in stored:
                problems.add(
                    line,
                    "account",
                    f"{account!r} on {day} is already in the ledger; a day's figures are imported once",
                )
                continue
            first_line[key] = line
            rows.append(EquityImportRow(line, day, account, amounts["cash_usd"], amounts["open_trade_equity_usd"]))
    if problems.items:
        raise InputError(source, problems.items)
    return rows


def parse_offchain_csv(
    text: str,
    source: str,
    stored: Set[tuple[date, SegClass, str]] = frozenset(),
) -> list[OffchainImportRow]:
    """``date,class,depository,amount_usd``: funds of a customer class held off chain.
    ``stored`` holds the (date, class, depository) triples the ledger already has."""
    problems = _Problems()
    rows: list[OffchainImportRow] = []
    first_line: dict[tuple[date, SegClass, str], int] = {}
    classes = tuple(c.value for c in CUSTOMER_CLASSES)
    limits = {"depository": MAX_DEPOSITORY_LENGTH, "amount_usd": AMOUNT_FIELD_LIMIT}
    for line, rec in _records(text, source, OFFCHAIN_COLUMNS, (), problems, limits):
        ok = True
        day = _date(problems, line, rec["date"])
        ok = ok and day is not None
        seg_class: SegClass | None = None
        if rec["class"] == SegClass.HOUSE.value:
            problems.add(
                line,
                "class",
                f"'house' funds are not segregated: off-chain funds are imported for {', '.join(classes)} only",
            )
            ok = False
        elif rec["class"] not in classes:
            problems.add(line, "class", f"{rec['class']!r} is not one of {', '.join(classes)}")
            ok = False
        else:
            seg_class = SegClass(rec["class"])
        depository = rec["depository"]
        if not depository.strip():
            problems.add(line, "depository", "is empty")
            ok = False
        amount = 0
        try:
            amount = parse_cents(rec["amount_usd"], allow_negative=False)
        except UsdError as exc:
            problems.add(line, "amount_usd", str(exc))
            ok = False
        if ok and day is not None and seg_class is not None:
            key = (day, seg_class, depository)
            if key in first_line:
                problems.add(
                    line,
                    "depository",
                    f"{depository!r} for {seg_class.value} on {day} already appears on line {first_line[key]}",
                )
                continue
            if key in stored:
                problems.add(
                    line,
                    "depository",
                    f"{depository!r} for {seg_class.value} on {day} is already in the ledger; "
                    "a day's figures are imported once",
                )
                continue
            first_line[key] = line
            rows.append(OffchainImportRow(line, day, seg_class, depository, amount))
    if problems.items:
        raise InputError(source, problems.items)
    return rows
