"""The statement of each class: the amount required (customers' net liquidating equity, debits
excluded), the funds in segregation at market less haircut, the excess or deficiency and the
target residual interest; incomplete, with no totals, when anything it needs was not read.

A holding of a permissioned token (ERC-3643) is valued on its free units only: what the issuer
froze (all of it when the wallet is frozen or the token paused) cannot be moved to meet a
customer's claim, so it is held, shown (``encumbered``), and not counted as funds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, localcontext

from reconciler.domain import SegClass
from reconciler.engine.segregation.valuation import _prices, haircut_for
from reconciler.engine.segregation.values import (
    EXACT,
    CustomerLine,
    HoldingLine,
    OffchainLine,
    Price,
    SegregationInputs,
    Statement,
    _sum_or_none,
    cents_to_usd,
    encumbered_units,
    to_cents,
    units_value,
)


def compute_statements(inputs: SegregationInputs) -> list[Statement]:
    """One statement per class of ``inputs.classes``, in that order."""
    prices = _prices(inputs)
    return [_statement(inputs, c, prices) for c in inputs.classes]


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
            # Only what can move is collateral: the issuer's frozen tokens (all of them when it
            # froze the wallet or paused the token) are held but not valued.
            hold = inputs.holds.get((wallet.name, asset.name))
            encumbered = encumbered_units(units, hold)
            if encumbered is None:
                why = hold.note if hold is not None and hold.note else "the issuer's views did not answer"
                problems.append(f"{asset.name} held in {wallet.name}: could not tell how much is frozen ({why})")
            free = None if encumbered is None else units - encumbered
            market = None if price.usd is None or free is None else units_value(free, asset.decimals, price.usd)
            with localcontext(EXACT):
                value = None if market is None else market * (1 - haircut.rate)
            if price.problem:
                problems.append(f"{asset.name} held in {wallet.name}: {price.problem}")
            holdings.append(
                HoldingLine(
                    wallet.chain,
                    wallet.name,
                    asset.name,
                    units,
                    asset.decimals,
                    price,
                    market,
                    haircut,
                    value,
                    encumbered,
                )
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
