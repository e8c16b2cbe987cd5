"""Segregation statements: what each customer class is owed, what it holds, and the findings.

Pure: standard library Decimal and the reconciler's own value and settings types; no SQL, no
web3. Invariants:

- USD arithmetic is exact. Every product and sum is computed in a 400-digit context that traps
  Inexact, so no intermediate figure is ever rounded (a uint256 of units times an int256 feed
  answer fits with room to spare). Each reported total is rounded to the cent once, from the
  exact sum of its parts, with ROUND_HALF_EVEN; the excess is the rounded funds minus the rounded
  requirement, so the statement's lines add up as printed. Per-line figures (a holding's market
  value, a customer's equity) are rounded for display only and may differ from the total by a
  cent.
- Never a silent zero: a price that is missing, stale, non-positive or unreadable, or a chain
  that could not be read, makes the statement of every class it touches incomplete. An
  incomplete statement has no totals (null), raises no deficit, residual-interest or
  concentration finding, and resolves none (its keys are left out of the coverage).
- Customer equity is valued at market, without haircut (the CFTC computation values the
  securities a customer owns at market in its net liquidating equity); haircuts apply to the
  funds in segregation only. Debit balances never reduce the amount required.
- Break keys: class-level findings (segregation_deficit, residual_interest_below_target,
  concentration_limit) are keyed chain "*", wallet = the class ("futures"); no chain or asset
  can be named "*" or carry ":" (configuration names are [A-Za-z0-9_.-]), so they never collide
  with a wallet's keys. Commingling is keyed by the wallet and asset where the misplaced entries
  sit, on that wallet's chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from typing import Any

from reconciler.domain import (
    AssetKind,
    BlockRef,
    BreakKey,
    BreakKind,
    Finding,
    SegClass,
    Severity,
    format_amount,
)
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
    market_value: Decimal | None  # exact
    haircut: Haircut
    value: Decimal | None  # exact: market value less haircut


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


# --------------------------------------------------------------------------- prices, haircuts


def feed_price(asset: AssetSettings, reading: FeedReading) -> Price:
    """The price an AggregatorV3 answer gives, or why it gives none: unreadable, non-positive,
    stamped after the pinned block, or older than the asset's price_max_age at the pinned
    block's time. answeredInRound is not judged (Chainlink deprecated it)."""
    source = f"feed {reading.feed} on {reading.chain} at block {reading.block_number}"
    if reading.answer is None:
        return Price(asset.name, None, source, f"price feed {reading.feed} could not be read: {reading.error}", reading)
    a = reading.answer
    source = f"feed {reading.feed} round {a.round_id} at block {reading.block_number}"
    if a.decimals > MAX_FEED_DECIMALS:
        return Price(asset.name, None, source, f"price feed {reading.feed} reports {a.decimals} decimals", reading)
    if a.answer <= 0:
        return Price(
            asset.name,
            None,
            source,
            f"price feed {reading.feed} answered {a.answer} (round {a.round_id}): a price must be positive",
            reading,
        )
    age = reading.block_time - a.updated_at
    if age < 0:
        return Price(
            asset.name,
            None,
            source,
            f"price feed {reading.feed} says it was updated at {_utc(a.updated_at)}, after block "
            f"{reading.block_number} ({_utc(reading.block_time)}): the answer cannot be trusted",
            reading,
        )
    max_age = int(asset.price_max_age.total_seconds())
    if age > max_age:
        return Price(
            asset.name,
            None,
            source,
            f"price feed {reading.feed} was last updated at {_utc(a.updated_at)}, {_duration(age)} before block "
            f"{reading.block_number} ({_utc(reading.block_time)}); assets.{asset.name}.price_max_age is "
            f"{_duration(max_age)}: stale",
            reading,
        )
    with localcontext(EXACT):
        value = Decimal(a.answer).scaleb(-a.decimals)
    return Price(asset.name, value, source, None, reading)


def resolve_price(asset: AssetSettings, inputs: SegregationInputs) -> Price:
    """A feed, when configured, is the price (price_usd beside it is not a fallback: a stale feed
    must not be papered over); else price_usd; else none."""
    if asset.price_feed is not None:
        reading = inputs.feeds.get(asset.name)
        if reading is None:
            why = inputs.unread.get(asset.chain)
            problem = (
                f"chain {asset.chain} was not read ({why})" if why else f"price feed {asset.price_feed} was not read"
            )
            return Price(asset.name, None, f"feed {asset.price_feed}", f"no price for {asset.name}: {problem}")
        return feed_price(asset, reading)
    if asset.price_usd is not None:
        return Price(asset.name, asset.price_usd, "price_usd")
    return Price(
        asset.name,
        None,
        "none",
        f"assets.{asset.name} has neither price_usd nor price_feed: it cannot be valued",
    )


def haircut_for(asset: AssetSettings, floor: Decimal) -> Haircut:
    """The pilot's hierarchy: the highest haircut of the clearing houses that accept the asset;
    where none does, the firm's own, never below the floor (the floor when it has none)."""
    if asset.dco_haircuts:
        return Haircut(max(asset.dco_haircuts), "dco")
    if asset.haircut is not None and asset.haircut >= floor:
        return Haircut(asset.haircut, "firm")
    return Haircut(floor, "floor")


# --------------------------------------------------------------------------- §23.156 schedule


class ImCategory(StrEnum):
    CASH = "cash"
    GOVERNMENT_DEBT = "government_debt"  # zero-risk-weight sovereign debt
    CORPORATE_DEBT = "corporate_debt"  # investment grade, GSE, 20%-risk-weight sovereign
    EQUITY_SP500 = "equity_sp500"
    EQUITY_OTHER = "equity_other"  # S&P 1500 Composite, not in the S&P 500
    GOLD = "gold"


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    category: ImCategory
    max_years: Decimal | None  # residual maturity up to this many years; None: any
    haircut: Decimal


# 17 CFR 23.156(a)(3): standardized haircuts for initial margin that swap dealers collect or post.
SWAP_DEALER_IM_SCHEDULE: tuple[ScheduleEntry, ...] = (
    ScheduleEntry(ImCategory.CASH, None, Decimal("0")),
    ScheduleEntry(ImCategory.GOVERNMENT_DEBT, Decimal("1"), Decimal("0.005")),
    ScheduleEntry(ImCategory.GOVERNMENT_DEBT, Decimal("5"), Decimal("0.02")),
    ScheduleEntry(ImCategory.GOVERNMENT_DEBT, None, Decimal("0.04")),
    ScheduleEntry(ImCategory.CORPORATE_DEBT, Decimal("1"), Decimal("0.01")),
    ScheduleEntry(ImCategory.CORPORATE_DEBT, Decimal("5"), Decimal("0.04")),
    ScheduleEntry(ImCategory.CORPORATE_DEBT, None, Decimal("0.08")),
    ScheduleEntry(ImCategory.EQUITY_SP500, None, Decimal("0.15")),
    ScheduleEntry(ImCategory.EQUITY_OTHER, None, Decimal("0.25")),
    ScheduleEntry(ImCategory.GOLD, None, Decimal("0.15")),
)
CURRENCY_MISMATCH_ADDON = Decimal("0.08")
# Crypto assets and payment stablecoins are not eligible initial margin under 23.156 at all;
# a money-market fund share is eligible only through what the fund holds (not modelled here).
IM_INELIGIBLE_KINDS: frozenset[AssetKind] = frozenset({AssetKind.STABLECOIN, AssetKind.NATIVE, AssetKind.WRAPPED})


def swap_dealer_im_haircut(
    category: ImCategory, residual_years: Decimal | None = None, currency_mismatch: bool = False
) -> Decimal:
    """The §23.156 haircut of eligible collateral: the schedule's rate for its category and
    residual maturity, plus 8% where its currency differs from the settlement currency."""
    for entry in SWAP_DEALER_IM_SCHEDULE:
        if entry.category is not category:
            continue
        if entry.max_years is None or (residual_years is not None and residual_years <= entry.max_years):
            return entry.haircut + (CURRENCY_MISMATCH_ADDON if currency_mismatch else Decimal("0"))
        if residual_years is None:
            raise ValueError(f"{category.value}: the haircut depends on residual maturity; give residual_years")
    raise ValueError(f"no schedule entry for {category.value}")  # pragma: no cover - every category has one


def im_eligible(kind: AssetKind) -> bool:
    """Whether collateral of this kind can be swap-dealer initial margin under §23.156."""
    return kind not in IM_INELIGIBLE_KINDS


# --------------------------------------------------------------------------- computation


def compute_statements(inputs: SegregationInputs) -> list[Statement]:
    """One statement per class of ``inputs.classes``, in that order."""
    prices = _prices(inputs)
    return [_statement(inputs, c, prices) for c in inputs.classes]


def _prices(inputs: SegregationInputs) -> dict[str, Price]:
    return {name: resolve_price(asset, inputs) for name, asset in inputs.assets.items()}


def _unknown_asset_price(name: str) -> Price:
    return Price(name, None, "none", f"asset {name} is not in the configuration: it cannot be valued")


def _statement(inputs: SegregationInputs, seg_class: SegClass, prices: Mapping[str, Price]) -> Statement:
    problems: list[str] = []
    floor = inputs.segregation.haircut_floor

    class_wallets = sorted(
        (w for w in inputs.wallets.values() if w.seg_class is seg_class), key=lambda w: (w.chain, w.name)
    )
    for chain in sorted({w.chain for w in class_wallets}):
        if chain not in inputs.chains:
            why = inputs.unread.get(chain, "not read")
            problems.append(
                f"chain {chain} was not read ({why}): the holdings of its {seg_class.value} wallets are unknown"
            )

    holdings: list[HoldingLine] = []
    for wallet in class_wallets:
        if wallet.chain not in inputs.chains:
            continue
        for asset in sorted((a for a in inputs.assets.values() if a.chain == wallet.chain), key=lambda a: a.name):
            units = inputs.holdings.get((wallet.name, asset.name))
            if units is None:
                problems.append(f"no on-chain balance of {asset.name} was read for wallet {wallet.name}")
                continue
            if units == 0:
                continue
            price = prices[asset.name]
            haircut = haircut_for(asset, floor)
            market = None if price.usd is None else units_value(units, asset.decimals, price.usd)
            with localcontext(EXACT):
                value = None if market is None else market * (1 - haircut.rate)
            if price.problem:
                problems.append(f"{asset.name} held in {wallet.name}: {price.problem}")
            holdings.append(
                HoldingLine(wallet.chain, wallet.name, asset.name, units, asset.decimals, price, market, haircut, value)
            )

    offchain_rows = sorted(
        (r for r in inputs.offchain if r.seg_class is seg_class), key=lambda r: (r.business_date, r.depository)
    )
    offchain = tuple(OffchainLine(r.depository, cents_to_usd(r.amount_cents)) for r in offchain_rows)
    offchain_date = max((r.business_date for r in offchain_rows), default=None)

    customers: list[CustomerLine] = []
    equity_date: date | None = None
    if seg_class is not SegClass.HOUSE:
        customers, equity_date = _customers(inputs, seg_class, prices, problems)

    total_market = _sum_or_none(h.market_value for h in holdings)
    problems = list(dict.fromkeys(problems))  # one line per problem, in the order found
    if problems or seg_class is SegClass.HOUSE:
        return Statement(
            seg_class=seg_class,
            problems=tuple(problems),
            customers=tuple(customers),
            holdings=tuple(holdings),
            offchain=offchain,
            equity_date=equity_date,
            offchain_date=offchain_date,
            amount_required=None,
            funds_in_segregation=None,
            total_market_value=None if problems or total_market is None else to_cents(total_market),
            excess=None,
            target_residual_interest=None
            if seg_class is SegClass.HOUSE
            else to_cents(inputs.segregation.targets.get(seg_class, Decimal("0"))),
            excess_over_target=None,
        )
    with localcontext(EXACT):
        required_exact = sum(
            (c.net_liquidating_equity for c in customers if c.net_liquidating_equity and c.net_liquidating_equity > 0),
            Decimal("0"),
        )
        funds_exact = sum((h.value for h in holdings if h.value is not None), Decimal("0")) + sum(
            (o.amount for o in offchain), Decimal("0")
        )
    required = to_cents(required_exact)
    funds = to_cents(funds_exact)
    target = to_cents(inputs.segregation.targets.get(seg_class, Decimal("0")))
    with localcontext(EXACT):
        excess = funds - required
        over_target = excess - target
    return Statement(
        seg_class=seg_class,
        problems=(),
        customers=tuple(customers),
        holdings=tuple(holdings),
        offchain=offchain,
        equity_date=equity_date,
        offchain_date=offchain_date,
        amount_required=required,
        funds_in_segregation=funds,
        total_market_value=to_cents(total_market) if total_market is not None else Decimal("0.00"),
        excess=excess,
        target_residual_interest=target,
        excess_over_target=over_target,
    )


def _sum_or_none(values: Iterable[Decimal | None]) -> Decimal | None:
    total = Decimal("0")
    with localcontext(EXACT):
        for v in values:
            if v is None:
                return None
            total += v
    return total


def _customers(
    inputs: SegregationInputs, seg_class: SegClass, prices: Mapping[str, Price], problems: list[str]
) -> tuple[list[CustomerLine], date | None]:
    """Each customer account of the class with books or back-office figures: its collateral
    (every entry of the account, in whichever wallet it is booked) at market, plus cash and
    open trade equity."""
    members = {a for a, c in inputs.accounts.items() if c is seg_class}
    units: dict[str, dict[str, int]] = {}
    for h in inputs.book:
        if h.account in members and h.units != 0:
            per_asset = units.setdefault(h.account, {})
            per_asset[h.asset] = per_asset.get(h.asset, 0) + h.units
    equity_rows = [r for r in inputs.equity if r.account in members]
    equity_date = max((r.business_date for r in equity_rows), default=None)
    equity = {r.account: r for r in equity_rows}
    lines: list[CustomerLine] = []
    for account in sorted(set(units) | set(equity)):
        collateral: Decimal | None = Decimal("0")
        for asset_name, amount in sorted(units.get(account, {}).items()):
            if amount == 0:
                continue
            asset = inputs.assets.get(asset_name)
            price = prices.get(asset_name) or _unknown_asset_price(asset_name)
            if asset is None or price.usd is None:
                problems.append(f"{asset_name} owned by customer {account}: {price.problem}")
                collateral = None
                continue
            if collateral is not None:
                with localcontext(EXACT):
                    collateral += units_value(amount, asset.decimals, price.usd)
        row = equity.get(account)
        cash = cents_to_usd(row.cash_cents) if row else Decimal("0")
        ote = cents_to_usd(row.open_trade_equity_cents) if row else Decimal("0")
        with localcontext(EXACT):
            nle = None if collateral is None else collateral + cash + ote
        lines.append(CustomerLine(account, collateral, cash, ote, nle))
    return lines, equity_date


# --------------------------------------------------------------------------- findings


def class_key(kind: BreakKind, seg_class: SegClass, asset: str | None = None) -> BreakKey:
    return BreakKey(kind, CLASS_CHAIN, seg_class.value, asset)


def _money(value: Decimal) -> str:
    return f"{to_cents(value):,.2f} USD"


def _blocks(inputs: SegregationInputs) -> str:
    return ", ".join(f"{p.chain} block {p.block.number} ({p.block.hash})" for p in inputs.chains.values()) or "no chain"


def statement_findings(inputs: SegregationInputs, statements: Sequence[Statement]) -> SegregationResult:
    """Deficit and residual-interest findings of complete customer statements, commingling over
    all the books, and concentration of the firm's own fund investments."""
    findings: list[Finding] = []
    coverage: set[BreakKey] = set()
    prices = _prices(inputs)
    at = f"as of {inputs.as_of.isoformat()} at {_blocks(inputs)}"
    for st in statements:
        if st.seg_class is SegClass.HOUSE or not st.complete:
            continue
        assert st.excess is not None and st.funds_in_segregation is not None and st.amount_required is not None
        assert st.target_residual_interest is not None
        deficit_key = class_key(BreakKind.SEGREGATION_DEFICIT, st.seg_class)
        target_key = class_key(BreakKind.RESIDUAL_INTEREST_BELOW_TARGET, st.seg_class)
        coverage |= {deficit_key, target_key}
        figures = (
            f"funds in segregation {_money(st.funds_in_segregation)}, amount required {_money(st.amount_required)}"
        )
        if st.excess < 0:
            findings.append(
                Finding(
                    deficit_key,
                    Severity.CRITICAL,
                    None,
                    f"{st.seg_class.value}: {figures}: deficiency of {_money(EXACT.minus(st.excess))} {at}",
                )
            )
        elif st.excess < st.target_residual_interest:
            findings.append(
                Finding(
                    target_key,
                    Severity.ERROR,
                    None,
                    f"{st.seg_class.value}: {figures}: excess {_money(st.excess)} is below the targeted residual "
                    f"interest of {_money(st.target_residual_interest)} by "
                    f"{_money(EXACT.subtract(st.target_residual_interest, st.excess))} {at}",
                )
            )
        conc_findings, conc_coverage = _concentration(inputs, st, prices, at)
        findings += conc_findings
        coverage |= conc_coverage
    comm_findings, comm_coverage = commingling(inputs)
    findings += comm_findings
    coverage |= comm_coverage
    return SegregationResult(tuple(findings), frozenset(coverage))


def segregation_pass(inputs: SegregationInputs) -> SegregationResult:
    """The segregation checks as a pass: compute the statements, return findings and coverage."""
    return statement_findings(inputs, compute_statements(inputs))


def commingling(inputs: SegregationInputs) -> tuple[list[Finding], set[BreakKey]]:
    """A customer's entries booked to a house wallet or to a wallet of another customer class;
    a house account's entries in a customer wallet other than payment stablecoins (the only
    residual interest allowed), or a negative house balance there (the firm took out more than
    it put in). Judged on every wallet x asset of the books, whatever classes were asked for:
    it is a fact of the books, independent of prices and chains. One finding per wallet x
    asset, its amount the misplaced units."""
    offending: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for h in inputs.book:
        if h.units == 0:
            continue
        wallet = inputs.wallets.get(h.wallet)
        owner = inputs.accounts.get(h.account)
        asset = inputs.assets.get(h.asset)
        if wallet is None or owner is None or asset is None:
            continue  # books outside the configuration are reported by runs as unreconciled
        why: str | None = None
        if owner is SegClass.HOUSE:
            if wallet.seg_class is SegClass.HOUSE:
                continue
            if h.units < 0:
                why = (
                    f"house account {h.account} has a negative balance of {format_amount(h.units, asset.decimals)} "
                    f"{asset.name} in {wallet.seg_class.value} wallet {wallet.name}: the firm took out more than it "
                    "put in"
                )
            elif asset.kind is not AssetKind.STABLECOIN:
                why = (
                    f"house account {h.account} holds {format_amount(h.units, asset.decimals)} {asset.name} "
                    f"({asset.kind.value}) in {wallet.seg_class.value} wallet {wallet.name}; only payment "
                    "stablecoins may serve as residual interest"
                )
        elif wallet.seg_class is not owner:
            why = (
                f"{owner.value} customer {h.account} has {format_amount(h.units, asset.decimals)} {asset.name} "
                f"booked to {wallet.seg_class.value} wallet {wallet.name}"
            )
        if why is not None:
            offending.setdefault((h.wallet, h.asset), []).append((h.account, h.units, why))
    findings = []
    for (wallet_name, asset_name), items in sorted(offending.items()):
        wallet = inputs.wallets[wallet_name]
        findings.append(
            Finding(
                BreakKey(BreakKind.COMMINGLING, wallet.chain, wallet_name, asset_name),
                Severity.CRITICAL,
                sum(units for _, units, _ in items),
                "; ".join(why for _, _, why in sorted(items)),
            )
        )
    coverage = {
        BreakKey(BreakKind.COMMINGLING, w.chain, w.name, a.name)
        for w in inputs.wallets.values()
        for a in inputs.assets.values()
        if a.chain == w.chain
    }
    coverage |= {f.key for f in findings}
    return findings, coverage


def _family(asset: AssetSettings) -> str:
    return asset.fund_family or asset.issuer or asset.name


def _group(limit: ConcentrationLimit, asset: AssetSettings) -> str:
    if limit.scope is ConcentrationScope.ASSET:
        return asset.name
    if limit.scope is ConcentrationScope.FAMILY:
        return f"family:{_family(asset)}"[:200]
    return "all:non-government-mmf"


def _concentration(
    inputs: SegregationInputs, st: Statement, prices: Mapping[str, Price], at: str
) -> tuple[list[Finding], set[BreakKey]]:
    """The firm's own investments in the class's wallets (house-account book entries there —
    customers' deposits are not investments) in non-government money-market funds, at market
    value, against each limit's share of the class's funds in segregation as the statement
    reports them; a breach is strictly above the share."""
    assert st.funds_in_segregation is not None
    funds = st.funds_in_segregation
    subject = [a for a in inputs.assets.values() if a.kind is AssetKind.MMF and not a.government_fund]
    class_wallets = {w.name for w in inputs.wallets.values() if w.seg_class is st.seg_class}
    invested: dict[str, Decimal] = {}
    for h in inputs.book:
        asset = inputs.assets.get(h.asset)
        if (
            asset is None
            or asset not in subject
            or h.wallet not in class_wallets
            or inputs.accounts.get(h.account) is not SegClass.HOUSE
            or h.units <= 0
        ):
            continue
        price = prices[asset.name].usd
        if price is None:
            continue  # cannot happen in a complete statement of this class unless unheld; skip
        with localcontext(EXACT):
            invested[asset.name] = invested.get(asset.name, Decimal("0")) + units_value(h.units, asset.decimals, price)
    findings: list[Finding] = []
    coverage: set[BreakKey] = set()
    for limit in inputs.limits:
        groups: dict[str, list[AssetSettings]] = {}
        for asset in subject:
            groups.setdefault(_group(limit, asset), []).append(asset)
        for group, members in sorted(groups.items()):
            key = class_key(BreakKind.CONCENTRATION_LIMIT, st.seg_class, group)
            coverage.add(key)
            with localcontext(EXACT):
                amount = sum((invested.get(a.name, Decimal("0")) for a in members), Decimal("0"))
                allowed = limit.share * funds
            if amount <= 0 or amount <= allowed:
                continue
            names = ", ".join(sorted(a.name for a in members if a.name in invested))
            findings.append(
                Finding(
                    key,
                    Severity.ERROR,
                    None,
                    f"{st.seg_class.value}: the firm's own investments in {limit.name} ({names}) are "
                    f"{_money(amount)} at market, above {plain(limit.share * 100)}% of the class's funds in "
                    f"segregation ({_money(funds)}), which allows {_money(allowed)} {at}",
                )
            )
    return findings, coverage


# --------------------------------------------------------------------------- pilot report


@dataclass(frozen=True, slots=True)
class PilotRow:
    seg_class: SegClass
    asset: str
    units: int
    decimals: int
    market_value: Decimal | None  # exact


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
    by asset, in units and at market value (no haircut), zero rows left out."""
    prices = _prices(inputs)
    problems: list[str] = []
    rows: list[PilotRow] = []
    totals: list[PilotTotal] = []
    for seg_class in CUSTOMER_CLASSES:
        wallets = [w for w in inputs.wallets.values() if w.seg_class is seg_class]
        for chain in sorted({w.chain for w in wallets} - set(inputs.chains)):
            problems.append(f"chain {chain} was not read ({inputs.unread.get(chain, 'not read')})")
        units: dict[str, int] = {}
        for w in wallets:
            for a in inputs.assets.values():
                if a.chain == w.chain and w.chain in inputs.chains:
                    units[a.name] = units.get(a.name, 0) + inputs.holdings.get((w.name, a.name), 0)
        class_rows = []
        for name, amount in sorted(units.items()):
            if amount == 0:
                continue
            asset = inputs.assets[name]
            price = prices[name]
            if price.problem:
                problems.append(f"{name}: {price.problem}")
            market = None if price.usd is None else units_value(amount, asset.decimals, price.usd)
            class_rows.append(PilotRow(seg_class, name, amount, asset.decimals, market))
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


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"Unix time {seconds}"


def _duration(seconds: int) -> str:
    """Seconds as the configuration writes durations: "24h", "90m", "45s"."""
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# --------------------------------------------------------------------------- stored inputs


def inputs_to_json(inputs: SegregationInputs) -> dict[str, Any]:
    """Everything the statement used, as JSON values (amounts and prices as exact strings), so
    that ``inputs_from_json`` rebuilds inputs that compute the same statement to the cent."""
    seg = inputs.segregation
    return {
        "as_of": inputs.as_of.isoformat(),
        "business_date": inputs.business_date.isoformat(),
        "classes": [c.value for c in inputs.classes],
        "wallets": [
            {"name": w.name, "chain": w.chain, "address": w.address, "class": w.seg_class.value}
            for w in inputs.wallets.values()
        ],
        "assets": [
            {
                "name": a.name,
                "chain": a.chain,
                "decimals": a.decimals,
                "kind": a.kind.value,
                "address": a.address,
                "native": a.native,
                "price_usd": None if a.price_usd is None else plain(a.price_usd),
                "price_feed": a.price_feed,
                "price_max_age_seconds": int(a.price_max_age.total_seconds()),
                "haircut": None if a.haircut is None else plain(a.haircut),
                "dco_haircuts": [plain(h) for h in a.dco_haircuts],
                "issuer": a.issuer,
                "fund_family": a.fund_family,
                "government_fund": a.government_fund,
            }
            for a in inputs.assets.values()
        ],
        "segregation": {
            "haircut_floor": plain(seg.haircut_floor),
            "timezone": seg.timezone,
            "targets": {c.value: plain(v) for c, v in seg.targets.items()},
        },
        "limits": [{"name": lim.name, "share": plain(lim.share), "scope": lim.scope.value} for lim in inputs.limits],
        "accounts": {a: c.value for a, c in sorted(inputs.accounts.items())},
        "book": [[h.account, h.wallet, h.asset, str(h.units)] for h in inputs.book],
        "holdings": [[w, a, str(u)] for (w, a), u in sorted(inputs.holdings.items())],
        "chains": {
            name: {"block_number": p.block.number, "block_hash": p.block.hash, "timestamp": p.timestamp}
            for name, p in inputs.chains.items()
        },
        "unread": dict(inputs.unread),
        "feeds": {
            asset: {
                "feed": r.feed,
                "chain": r.chain,
                "block_number": r.block_number,
                "block_time": r.block_time,
                "error": r.error,
                "answer": None
                if r.answer is None
                else {
                    "decimals": r.answer.decimals,
                    "round_id": str(r.answer.round_id),
                    "answer": str(r.answer.answer),
                    "started_at": str(r.answer.started_at),
                    "updated_at": str(r.answer.updated_at),
                    "answered_in_round": str(r.answer.answered_in_round),
                },
            }
            for asset, r in inputs.feeds.items()
        },
        "equity": [
            [r.business_date.isoformat(), r.account, str(r.cash_cents), str(r.open_trade_equity_cents)]
            for r in inputs.equity
        ],
        "offchain": [
            [r.business_date.isoformat(), r.seg_class.value, r.depository, str(r.amount_cents)] for r in inputs.offchain
        ],
    }


def inputs_from_json(doc: Mapping[str, Any]) -> SegregationInputs:
    seg = doc["segregation"]
    assets = {
        a["name"]: AssetSettings(
            name=a["name"],
            chain=a["chain"],
            decimals=a["decimals"],
            kind=AssetKind(a["kind"]),
            address=a["address"],
            native=a["native"],
            price_usd=None if a["price_usd"] is None else Decimal(a["price_usd"]),
            price_feed=a["price_feed"],
            price_max_age=timedelta(seconds=a["price_max_age_seconds"]),
            haircut=None if a["haircut"] is None else Decimal(a["haircut"]),
            dco_haircuts=tuple(Decimal(h) for h in a["dco_haircuts"]),
            issuer=a["issuer"],
            fund_family=a["fund_family"],
            government_fund=a["government_fund"],
        )
        for a in doc["assets"]
    }
    feeds = {}
    for asset, r in doc["feeds"].items():
        ans = r["answer"]
        feeds[asset] = FeedReading(
            feed=r["feed"],
            chain=r["chain"],
            block_number=r["block_number"],
            block_time=r["block_time"],
            error=r["error"],
            answer=None
            if ans is None
            else FeedAnswer(
                decimals=ans["decimals"],
                round_id=int(ans["round_id"]),
                answer=int(ans["answer"]),
                started_at=int(ans["started_at"]),
                updated_at=int(ans["updated_at"]),
                answered_in_round=int(ans["answered_in_round"]),
            ),
        )
    return SegregationInputs(
        as_of=datetime.fromisoformat(doc["as_of"]),
        business_date=date.fromisoformat(doc["business_date"]),
        wallets={
            w["name"]: WalletSettings(
                name=w["name"], chain=w["chain"], address=w["address"], seg_class=SegClass(w["class"])
            )
            for w in doc["wallets"]
        },
        assets=assets,
        segregation=SegregationSettings(
            haircut_floor=Decimal(seg["haircut_floor"]),
            timezone=seg["timezone"],
            targets={SegClass(c): Decimal(v) for c, v in seg["targets"].items()},
        ),
        accounts={a: SegClass(c) for a, c in doc["accounts"].items()},
        book=tuple(BookHolding(a, w, s, int(u)) for a, w, s, u in doc["book"]),
        holdings={(w, a): int(u) for w, a, u in doc["holdings"]},
        chains={
            name: ChainPin(name, BlockRef(c["block_number"], c["block_hash"]), c["timestamp"])
            for name, c in doc["chains"].items()
        },
        unread=dict(doc["unread"]),
        feeds=feeds,
        equity=tuple(EquityRow(date.fromisoformat(d), a, int(c), int(o)) for d, a, c, o in doc["equity"]),
        offchain=tuple(
            OffchainRow(date.fromisoformat(d), SegClass(c), dep, int(amt)) for d, c, dep, amt in doc["offchain"]
        ),
        classes=tuple(SegClass(c) for c in doc["classes"]),
        limits=tuple(
            ConcentrationLimit(lim["name"], Decimal(lim["share"]), ConcentrationScope(lim["scope"]))
            for lim in doc["limits"]
        ),
    )
