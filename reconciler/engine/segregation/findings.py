"""The segregation breaks a statement raises: deficit and residual interest below target per
complete customer statement, commingling over all the books, and concentration of the firm's own
money-market fund investments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext

from reconciler.domain import AssetKind, BreakKey, BreakKind, Finding, SegClass, Severity, format_amount
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.valuation import _prices
from reconciler.engine.segregation.values import (
    CLASS_CHAIN,
    EXACT,
    ConcentrationLimit,
    ConcentrationScope,
    Price,
    SegregationInputs,
    SegregationResult,
    Statement,
    plain,
    to_cents,
    units_value,
)
from reconciler.inputs.settings import AssetSettings


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
