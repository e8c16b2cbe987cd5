"""Valuation: the price of each asset (a price feed's answer at the pinned block, else the
configured price_usd, never a silent zero), the haircut of funds in segregation, and the §23.156
schedule of swap-dealer initial-margin haircuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from enum import StrEnum

from reconciler.domain import AssetKind
from reconciler.engine.segregation.values import (
    EXACT,
    MAX_FEED_DECIMALS,
    FeedReading,
    Haircut,
    Price,
    SegregationInputs,
)
from reconciler.inputs.settings import AssetSettings

# --------------------------------------------------------------------------- prices, haircuts


def _prices(inputs: SegregationInputs) -> dict[str, Price]:
    return {name: resolve_price(asset, inputs) for name, asset in inputs.assets.items()}




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
