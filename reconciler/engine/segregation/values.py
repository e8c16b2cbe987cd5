"""Segregation values: the inputs a statement is computed from, the statement and its lines,
and exact USD arithmetic (one rounding to the cent per reported figure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from enum import StrEnum

from reconciler.domain import BlockRef, BreakKey, Finding, SegClass
from reconciler.inputs.settings import AssetSettings, SegregationSettings, WalletSettings

CUSTOMER_CLASSES: tuple[SegClass, ...] = (SegClass.FUTURES, SegClass.CLEARED_SWAPS, SegClass.FOREIGN_FUTURES)
ALL_CLASSES: tuple[SegClass, ...] = (*CUSTOMER_CLASSES, SegClass.HOUSE)
CLASS_CHAIN = "*"  # the chain of a class-level break key
CENT = Decimal("0.01")
ROUNDING = ROUND_HALF_EVEN
# Exact arithmetic: a 78-digit amount times a 77-digit answer is 155 digits; sums add a few.
EXACT = Context(prec=400, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ROUNDER = Context(prec=400, rounding=ROUNDING, traps=[InvalidOperation, DivisionByZero, Overflow])
MAX_FEED_DECIMALS = 77


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class BookHolding:
    """One account's book balance in one wallet x asset (the sum of its entries), base units."""

    account: str
    wallet: str
    asset: str
    units: int


@dataclass(frozen=True, slots=True)
class EquityRow:
    """The back office's figures for one customer account and business day, in cents."""

    business_date: date
    account: str
    cash_cents: int
    open_trade_equity_cents: int


@dataclass(frozen=True, slots=True)
class OffchainRow:
    """Funds of a class held off chain (a bank account, clearing-house margin), in cents."""

    business_date: date
    seg_class: SegClass
    depository: str
    amount_cents: int


@dataclass(frozen=True, slots=True)
class ChainPin:
    """The block a statement read one chain at, with its timestamp (Unix seconds)."""

    chain: str
    block: BlockRef
    timestamp: int


@dataclass(frozen=True, slots=True)
class FeedAnswer:
    """What a Chainlink-style AggregatorV3 feed answered at the pinned block."""

    decimals: int
    round_id: int
    answer: int  # signed: a broken feed can answer zero or less
    started_at: int
    updated_at: int
    answered_in_round: int


@dataclass(frozen=True, slots=True)
class FeedReading:
    """One feed read at one pinned block: its answer, or why it could not be read (a revert,
    no contract, a malformed answer)."""

    feed: str
    chain: str
    block_number: int
    block_time: int
    answer: FeedAnswer | None = None
    error: str | None = None


class ConcentrationScope(StrEnum):
    ASSET = "asset"  # one fund
    FAMILY = "family"  # one fund family (fund_family, else issuer, else the asset itself)
    ALL = "all"  # every fund the limit applies to, together


@dataclass(frozen=True, slots=True)
class ConcentrationLimit:
    """At most ``share`` of a class's funds in segregation may be the firm's own investments in
    the non-government money-market funds this limit groups by ``scope``."""

    name: str
    share: Decimal
    scope: ConcentrationScope


# Reg 1.25(b)(3)(i), for money-market funds that are not government funds.
CONCENTRATION_LIMITS: tuple[ConcentrationLimit, ...] = (
    ConcentrationLimit("single non-government money-market fund", Decimal("0.10"), ConcentrationScope.ASSET),
    ConcentrationLimit("one family of non-government money-market funds", Decimal("0.25"), ConcentrationScope.FAMILY),
    ConcentrationLimit("all non-government money-market funds", Decimal("0.50"), ConcentrationScope.ALL),
)


@dataclass(frozen=True, slots=True)
class IssuerHold:
    """What the issuer of an ERC-3643 token holds back of one wallet's position at the pin:
    the tokens it froze (``getFrozenTokens``), whether it froze the wallet (``isFrozen``), whether
    the token is paused (``paused()``). None where the view could not tell (``note`` says why)."""

    frozen: int | None
    wallet_frozen: bool | None
    paused: bool | None
    note: str = ""


def encumbered_units(units: int, hold: IssuerHold | None) -> int | None:
    """How many of ``units`` held cannot move: all of them when the wallet is frozen or the
    token paused, else the frozen tokens (never more than held); 0 without a hold (not an
    ERC-3643 asset, or a statement stored before holds were read). None when the issuer's
    views could not tell: never taken as "nothing frozen"."""
    if hold is None or units <= 0:
        return 0
    if hold.wallet_frozen is True or hold.paused is True:
        return units
    if hold.frozen is None or hold.wallet_frozen is None or hold.paused is None:
        return None
    return min(hold.frozen, units)


@dataclass(frozen=True, slots=True)
class SegregationInputs:
    """Everything one statement is computed from; stored with it (``inputs_to_json``) so that
    it can be recomputed to the cent later."""

    as_of: datetime  # aware
    business_date: date
    wallets: Mapping[str, WalletSettings]
    assets: Mapping[str, AssetSettings]
    segregation: SegregationSettings
    accounts: Mapping[str, SegClass]
    book: tuple[BookHolding, ...]  # non-zero balances per account x wallet x asset
    holdings: Mapping[tuple[str, str], int]  # (wallet, asset) -> units on chain, read chains only
    chains: Mapping[str, ChainPin]  # the chains that were read
    unread: Mapping[str, str] = field(default_factory=dict)  # chain -> why it was not read
    feeds: Mapping[str, FeedReading] = field(default_factory=dict)  # asset -> its feed's reading
    equity: tuple[EquityRow, ...] = ()  # per class, the rows of the day the loader chose
    offchain: tuple[OffchainRow, ...] = ()
    classes: tuple[SegClass, ...] = ALL_CLASSES  # statements to compute
    limits: tuple[ConcentrationLimit, ...] = CONCENTRATION_LIMITS
    holds: Mapping[tuple[str, str], IssuerHold] = field(default_factory=dict)  # (wallet, asset), ERC-3643 only
    # The book entries summed in ``book`` are those dated on or before this day (the business
    # date): what was booked for a later day never changes an earlier statement. None: inputs
    # stored before the cutoff was recorded (they summed every entry).
    books_through: date | None = None


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Price:
    asset: str
    usd: Decimal | None  # None: no usable price (see ``problem``)
    source: str  # "price_usd", or "feed 0x… round N"
    problem: str | None = None
    feed: FeedReading | None = None


@dataclass(frozen=True, slots=True)
class Haircut:
    rate: Decimal
    source: str  # "dco" | "firm" | "floor"


@dataclass(frozen=True, slots=True)
class CustomerLine:
    account: str
    collateral_usd: Decimal | None  # exact; None when a price is missing
    cash_usd: Decimal
    open_trade_equity_usd: Decimal
    net_liquidating_equity: Decimal | None  # exact

    @property
    def debit(self) -> bool:
        return self.net_liquidating_equity is not None and self.net_liquidating_equity < 0


@dataclass(frozen=True, slots=True)
class HoldingLine:
    chain: str
    wallet: str
    asset: str
    units: int
    decimals: int
    price: Price
    market_value: Decimal | None  # exact: of the free units only (units - encumbered)
    haircut: Haircut
    value: Decimal | None  # exact: market value less haircut
    encumbered: int | None = 0  # units the issuer froze (all when frozen or paused); None: not known


@dataclass(frozen=True, slots=True)
class OffchainLine:
    depository: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Statement:
    """One class's statement. Totals are rounded to the cent; None when incomplete. The house
    statement only says what house wallets hold (no requirement, no excess)."""

    seg_class: SegClass
    problems: tuple[str, ...]
    customers: tuple[CustomerLine, ...]
    holdings: tuple[HoldingLine, ...]
    offchain: tuple[OffchainLine, ...]
    equity_date: date | None
    offchain_date: date | None
    amount_required: Decimal | None
    funds_in_segregation: Decimal | None
    total_market_value: Decimal | None
    excess: Decimal | None
    target_residual_interest: Decimal | None
    excess_over_target: Decimal | None

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class SegregationResult:
    """The same fields as engine.passes.PassResult (kept separate so that passes may import this
    module without a cycle)."""

    findings: tuple[Finding, ...] = ()
    coverage: frozenset[BreakKey] = frozenset()


# --------------------------------------------------------------------------- rounding


def to_cents(value: Decimal) -> Decimal:
    """Round once, to the cent (ROUND_HALF_EVEN); never "-0.00"."""
    rounded = value.quantize(CENT, context=_ROUNDER)
    return rounded if rounded != 0 else Decimal("0.00")


def usd(value: Decimal | None) -> str | None:
    """A USD figure as the documents show it: rounded to the cent, plain digits."""
    return None if value is None else format(to_cents(value), "f")


def plain(value: Decimal) -> str:
    """A Decimal as plain digits (no exponent), exactly."""
    return format(value, "f")


def to_cent_units(value: Decimal) -> int:
    """A USD figure as whole cents (rounded to the cent first), exactly."""
    return int(to_cents(value).scaleb(2, context=EXACT))


def cents_to_usd(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2, context=EXACT)


def units_value(units: int, decimals: int, price: Decimal) -> Decimal:
    """units / 10^decimals * price, exactly."""
    with localcontext(EXACT):
        return Decimal(units).scaleb(-decimals) * price


def _sum_or_none(values: Iterable[Decimal | None]) -> Decimal | None:
    total = Decimal("0")
    with localcontext(EXACT):
        for v in values:
            if v is None:
                return None
            total += v
    return total
