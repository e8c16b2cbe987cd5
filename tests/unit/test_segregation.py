"""The pure segregation computation: worked examples per class checked to the cent (every
expected figure computed by hand in the comments, never by the code under test), the haircut
hierarchy, commingling, concentration, prices, rounding, and properties."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.evm.blocks import last_at_or_before
from chains.evm.prices import decode_round_data
from reconciler.app.segregation_documents import statement_doc
from reconciler.domain import AssetKind, BlockRef, BreakKey, BreakKind, SegClass, Severity
from reconciler.engine.segregation.findings import segregation_pass
from reconciler.engine.segregation.pilot import pilot_report, pilot_week_close
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.stored import inputs_from_json, inputs_to_json
from reconciler.engine.segregation.valuation import (
    ImCategory,
    feed_price,
    haircut_for,
    im_eligible,
    swap_dealer_im_haircut,
)
from reconciler.engine.segregation.values import (
    CONCENTRATION_LIMITS,
    BookHolding,
    ChainPin,
    EquityRow,
    FeedAnswer,
    FeedReading,
    OffchainRow,
    SegregationInputs,
    Statement,
    to_cents,
)
from reconciler.errors import InputError
from reconciler.inputs.segregation import UsdError, parse_cents, parse_equity_csv
from reconciler.inputs.settings import AssetSettings, SegregationSettings, WalletSettings

D = Decimal
DAY = date(2026, 11, 24)
AS_OF = datetime(2026, 11, 24, 17, 0, tzinfo=ZoneInfo("America/Chicago"))
BLOCK = BlockRef(123, "0x" + "ab" * 32)
BLOCK_TIME = int(AS_OF.timestamp()) - 5
FUT, CS, FF, HOUSE = SegClass.FUTURES, SegClass.CLEARED_SWAPS, SegClass.FOREIGN_FUTURES, SegClass.HOUSE
USDC_UNIT = 10**6
SHARE = 10**18


def wallet(name: str, klass: SegClass, chain: str = "eth") -> WalletSettings:
    return WalletSettings(name=name, chain=chain, address=f"0x{abs(hash(name)) % 16**40:040x}", seg_class=klass)


def asset(
    name: str,
    kind: AssetKind = AssetKind.STABLECOIN,
    decimals: int = 6,
    price: str | None = "1.00",
    chain: str = "eth",
    **kw: Any,
) -> AssetSettings:
    return AssetSettings(
        name=name,
        chain=chain,
        decimals=decimals,
        kind=kind,
        address=None if kind is AssetKind.NATIVE else f"0x{abs(hash(name)) % 16**40:040x}",
        native=kind is AssetKind.NATIVE,
        price_usd=None if price is None else D(price),
        **kw,
    )


def make(
    wallets: list[WalletSettings],
    assets: list[AssetSettings],
    accounts: dict[str, SegClass],
    book: Sequence[tuple[str, str, str, int]] = (),
    holdings: dict[tuple[str, str], int] | None = None,
    equity: Sequence[tuple[str, str, str]] = (),  # (account, cash, ote) in USD
    offchain: Sequence[tuple[SegClass, str, str]] = (),  # (class, depository, USD)
    targets: dict[SegClass, str] | None = None,
    floor: str = "0.20",
    **kw: Any,
) -> SegregationInputs:
    """Inputs with every wallet x asset of the chain read (zero unless given)."""
    chains = {w.chain for w in wallets} | {a.chain for a in assets}
    all_holdings = {(w.name, a.name): 0 for w in wallets for a in assets if a.chain == w.chain}
    all_holdings.update(holdings or {})
    return SegregationInputs(
        as_of=AS_OF,
        business_date=DAY,
        wallets={w.name: w for w in wallets},
        assets={a.name: a for a in assets},
        segregation=SegregationSettings(
            haircut_floor=D(floor),
            timezone="America/Chicago",
            targets={k: D(v) for k, v in (targets or {}).items()},
        ),
        accounts=accounts,
        book=tuple(BookHolding(a, w, s, u) for a, w, s, u in book),
        holdings=all_holdings,
        chains={c: ChainPin(c, BLOCK, BLOCK_TIME) for c in sorted(chains)},
        equity=tuple(EquityRow(DAY, a, _cents(c), _cents(o)) for a, c, o in equity),
        offchain=tuple(OffchainRow(DAY, k, dep, _cents(v)) for k, dep, v in offchain),
        **kw,
    )


def _cents(text: str) -> int:
    return int(D(text) * 100)


def one(inputs: SegregationInputs, klass: SegClass) -> Statement:
    [statement] = [s for s in compute_statements(inputs) if s.seg_class is klass]
    return statement


def kinds(inputs: SegregationInputs) -> dict[BreakKey, tuple[Severity, int | None, str]]:
    result = segregation_pass(inputs)
    return {f.key: (f.severity, f.amount, f.detail) for f in result.findings}


# ----------------------------------------------------------------------------- futures, worked


def futures_example() -> SegregationInputs:
    usdc = asset("USDC", dco_haircuts=(D("0.02"), D("0.05")))  # two clearing houses: 5% applies
    tmmf = asset("TMMF", AssetKind.MMF, 18, "1.0375", haircut=D("0.10"))  # firm's 10% < floor 20%
    eth = asset("ETH", AssetKind.NATIVE, 18, "3012.47")  # no haircut configured: the floor, 20%
    return make(
        wallets=[wallet("seg-fut", FUT)],
        assets=[usdc, tmmf, eth],
        accounts={"C1": FUT, "C2": FUT, "C3": FUT},
        book=[
            ("C1", "seg-fut", "USDC", 600_000 * USDC_UNIT),
            ("C2", "seg-fut", "TMMF", 100_000 * SHARE),
        ],
        holdings={
            ("seg-fut", "USDC"): 650_000_123_456,  # 650,000.123456 USDC
            ("seg-fut", "TMMF"): 100_000 * SHARE,
            ("seg-fut", "ETH"): 1_500_000_000_000_000_000,  # 1.5 ETH
        },
        equity=[
            ("C1", "25000.50", "-12345.67"),
            ("C2", "0", "1000"),
            ("C3", "-50000.00", "-10000.00"),  # a debit customer
        ],
        offchain=[(FUT, "Bank A", "20000.00"), (FUT, "DCO margin", "5000.10")],
        targets={FUT: "250000"},
    )


def test_futures_statement_worked_by_hand_to_the_cent() -> None:
    st = one(futures_example(), FUT)
    doc = statement_doc(st)
    # Customers (collateral at market, no haircut):
    #   C1: 600,000 USDC x 1.00 + 25,000.50 cash - 12,345.67 OTE = 612,654.83
    #   C2: 100,000 TMMF x 1.0375 = 103,750.00, + 0 + 1,000.00 OTE = 104,750.00
    #   C3: 0 - 50,000.00 - 10,000.00 = -60,000.00: a debit, excluded from the requirement
    assert [(c["account"], c["net_liquidating_equity"], c["debit"]) for c in doc["customers"]] == [
        ("C1", "612654.83", False),
        ("C2", "104750.00", False),
        ("C3", "-60000.00", True),
    ]
    # Amount required: 612,654.83 + 104,750.00 = 717,404.83
    assert doc["amount_required"] == "717404.83"
    holdings = {h["asset"]: h for h in doc["holdings"]}
    # ETH: 1.5 x 3,012.47 = 4,518.705 at market; less 20% (floor) = 3,614.964
    assert holdings["ETH"]["market_value"] == "4518.70"  # 4,518.705 rounds half-even to .70
    assert (holdings["ETH"]["haircut"], holdings["ETH"]["haircut_source"]) == ("0.20", "floor")
    assert holdings["ETH"]["value"] == "3614.96"
    # TMMF: 100,000 x 1.0375 = 103,750.00; less 20% (the firm's 10% is below the floor) = 83,000.00
    assert (holdings["TMMF"]["market_value"], holdings["TMMF"]["value"]) == ("103750.00", "83000.00")
    assert (holdings["TMMF"]["haircut"], holdings["TMMF"]["haircut_source"]) == ("0.20", "floor")
    # USDC: 650,000.123456 x 1.00; less 5% (highest clearing-house haircut) = 617,500.1172832
    assert (holdings["USDC"]["market_value"], holdings["USDC"]["value"]) == ("650000.12", "617500.12")
    assert (holdings["USDC"]["haircut"], holdings["USDC"]["haircut_source"]) == ("0.05", "dco")
    assert holdings["USDC"]["units"] == "650000123456" and holdings["USDC"]["units_display"] == "650000.123456"
    assert doc["offchain"] == [
        {"depository": "Bank A", "amount": "20000.00"},
        {"depository": "DCO margin", "amount": "5000.10"},
    ]
    # Funds: 617,500.1172832 + 83,000 + 3,614.964 + 20,000 + 5,000.10 = 729,115.1812832 -> 729,115.18
    assert doc["funds_in_segregation"] == "729115.18"
    # Excess: 729,115.18 - 717,404.83 = 11,710.35; target 250,000.00; over target -238,289.65
    assert doc["excess"] == "11710.35"
    assert doc["target_residual_interest"] == "250000.00"
    assert doc["excess_over_target"] == "-238289.65"
    assert doc["complete"] is True and doc["problems"] == []
    assert doc["equity_date"] == "2026-11-24" and doc["offchain_date"] == "2026-11-24"


def test_futures_excess_below_target_is_an_error_keyed_by_class() -> None:
    found = kinds(futures_example())
    key = BreakKey(BreakKind.RESIDUAL_INTEREST_BELOW_TARGET, "*", "futures", None)
    severity, amount, detail = found[key]
    assert severity is Severity.ERROR and amount is None
    assert "11,710.35 USD" in detail and "250,000.00 USD" in detail and "block 123" in detail
    assert BreakKey(BreakKind.SEGREGATION_DEFICIT, "*", "futures", None) not in found
    coverage = segregation_pass(futures_example()).coverage
    assert key in coverage and BreakKey(BreakKind.SEGREGATION_DEFICIT, "*", "futures", None) in coverage


# ----------------------------------------------------------------------------- cleared swaps


def test_cleared_swaps_deficiency_worked_by_hand() -> None:
    usdc = asset("USDC", dco_haircuts=(D("0.05"),))
    inputs = make(
        wallets=[wallet("seg-cs", CS)],
        assets=[usdc],
        accounts={"S1": CS, "S2": CS},
        book=[("S1", "seg-cs", "USDC", 1_000_000 * USDC_UNIT), ("S2", "seg-cs", "USDC", 50_000 * USDC_UNIT)],
        holdings={("seg-cs", "USDC"): 1_050_000 * USDC_UNIT},
        equity=[("S2", "-200000.00", "0")],
        targets={CS: "100000"},
    )
    st = one(inputs, CS)
    # S1: 1,000,000.00. S2: 50,000 - 200,000 = -150,000.00 (debit, excluded). Required 1,000,000.00.
    # Funds: 1,050,000 x 0.95 = 997,500.00. Excess: 997,500.00 - 1,000,000.00 = -2,500.00.
    assert (st.amount_required, st.funds_in_segregation, st.excess) == (D("1000000.00"), D("997500.00"), D("-2500.00"))
    # Over target: -2,500.00 - 100,000.00 = -102,500.00
    assert st.excess_over_target == D("-102500.00")
    found = kinds(inputs)
    severity, _, detail = found[BreakKey(BreakKind.SEGREGATION_DEFICIT, "*", "cleared_swaps", None)]
    assert severity is Severity.CRITICAL and "deficiency of 2,500.00 USD" in detail
    # a deficit is not also "below target"
    assert BreakKey(BreakKind.RESIDUAL_INTEREST_BELOW_TARGET, "*", "cleared_swaps", None) not in found


# ----------------------------------------------------------------------------- foreign futures


def test_foreign_futures_the_designs_example() -> None:
    usdc = asset("USDC", dco_haircuts=(D("0.02"),))
    inputs = make(
        wallets=[wallet("cust-seg-1", FF)],
        assets=[usdc],
        accounts={"C1": FF},
        equity=[("C1", "1000000.00", "0")],  # all of C1's equity is cash at the back office
        holdings={("cust-seg-1", "USDC"): 1_050_000 * USDC_UNIT},
        offchain=[(FF, "Bank A", "0.00")],
        targets={FF: "250000"},
    )
    doc = statement_doc(one(inputs, FF))
    # 1,050,000 x 0.98 = 1,029,000.00; excess 29,000.00; over target 29,000 - 250,000 = -221,000.00
    assert doc["customers"][0]["net_liquidating_equity"] == "1000000.00"
    assert doc["amount_required"] == "1000000.00"
    assert doc["holdings"] == [
        {
            "chain": "eth",
            "wallet": "cust-seg-1",
            "asset": "USDC",
            "units": "1050000000000",
            "units_display": "1050000.000000",
            "encumbered": "0",
            "encumbered_display": "0.000000",
            "price_usd": "1.00",
            "price_source": "price_usd",
            "market_value": "1050000.00",
            "haircut": "0.02",
            "haircut_source": "dco",
            "value": "1029000.00",
        }
    ]
    assert doc["offchain"] == [{"depository": "Bank A", "amount": "0.00"}]
    assert (doc["funds_in_segregation"], doc["excess"]) == ("1029000.00", "29000.00")
    assert (doc["target_residual_interest"], doc["excess_over_target"]) == ("250000.00", "-221000.00")


def test_house_gets_a_statement_of_what_it_holds() -> None:
    eth = asset("ETH", AssetKind.NATIVE, 18, "2000")
    inputs = make([wallet("house-1", HOUSE)], [eth], {"H1": HOUSE}, holdings={("house-1", "ETH"): 7 * SHARE})
    st = one(inputs, HOUSE)
    # 7 ETH x 2,000 = 14,000.00 at market; nothing is required of the house
    assert st.total_market_value == D("14000.00")
    assert st.amount_required is None and st.excess is None and st.customers == ()
    assert [h.value for h in st.holdings] == [D("11200.00")]  # less the 20% floor


# ----------------------------------------------------------------------------- debits


def test_a_debit_customer_never_reduces_the_requirement() -> None:
    usdc = asset("USDC", dco_haircuts=(D("0"),))
    base: dict[str, Any] = {
        "wallets": [wallet("seg", FUT)],
        "assets": [usdc],
        "book": [("C1", "seg", "USDC", 400 * USDC_UNIT)],
        "holdings": {("seg", "USDC"): 400 * USDC_UNIT},
    }
    without = one(make(accounts={"C1": FUT}, **base), FUT)
    # C9 owes the firm 1,000.00: netting it against C1 would show 400 - 1,000 < 0 required
    with_debit = one(make(accounts={"C1": FUT, "C9": FUT}, equity=[("C9", "-1000.00", "0")], **base), FUT)
    assert without.amount_required == with_debit.amount_required == D("400.00")
    assert with_debit.excess == D("0.00")


# ----------------------------------------------------------------------------- haircuts


@pytest.mark.parametrize(
    ("dco", "firm", "expected", "source"),
    [
        (("0.02", "0.05", "0.03"), "0.50", "0.05", "dco"),  # the highest clearing house's, firm's ignored
        (("0.02",), None, "0.02", "dco"),  # a clearing house's haircut is not floored
        ((), "0.30", "0.30", "firm"),  # the firm's own, above the floor
        ((), "0.10", "0.20", "floor"),  # never below the floor
        ((), "0.20", "0.20", "firm"),  # at the floor is the firm's
        ((), None, "0.20", "floor"),  # nothing configured: the floor
    ],
)
def test_haircut_hierarchy(dco: tuple[str, ...], firm: str | None, expected: str, source: str) -> None:
    a = asset("X", dco_haircuts=tuple(D(h) for h in dco), haircut=None if firm is None else D(firm))
    got = haircut_for(a, D("0.20"))
    assert (got.rate, got.source) == (D(expected), source)


def test_swap_dealer_im_schedule_is_data() -> None:
    assert swap_dealer_im_haircut(ImCategory.CASH) == D("0")
    assert swap_dealer_im_haircut(ImCategory.GOVERNMENT_DEBT, D("0.5")) == D("0.005")
    assert swap_dealer_im_haircut(ImCategory.GOVERNMENT_DEBT, D("1")) == D("0.005")
    assert swap_dealer_im_haircut(ImCategory.GOVERNMENT_DEBT, D("3")) == D("0.02")
    assert swap_dealer_im_haircut(ImCategory.GOVERNMENT_DEBT, D("10")) == D("0.04")
    assert swap_dealer_im_haircut(ImCategory.CORPORATE_DEBT, D("0.25")) == D("0.01")
    assert swap_dealer_im_haircut(ImCategory.CORPORATE_DEBT, D("4")) == D("0.04")
    assert swap_dealer_im_haircut(ImCategory.CORPORATE_DEBT, D("30")) == D("0.08")
    assert swap_dealer_im_haircut(ImCategory.EQUITY_SP500) == D("0.15")
    assert swap_dealer_im_haircut(ImCategory.EQUITY_OTHER) == D("0.25")
    assert swap_dealer_im_haircut(ImCategory.GOLD) == D("0.15")
    # the additive currency-mismatch haircut: 15% + 8% = 23%
    assert swap_dealer_im_haircut(ImCategory.EQUITY_SP500, currency_mismatch=True) == D("0.23")
    with pytest.raises(ValueError, match="residual maturity"):
        swap_dealer_im_haircut(ImCategory.GOVERNMENT_DEBT)
    assert not im_eligible(AssetKind.STABLECOIN) and not im_eligible(AssetKind.NATIVE)
    assert not im_eligible(AssetKind.WRAPPED) and im_eligible(AssetKind.MMF)


# ----------------------------------------------------------------------------- rounding


def test_totals_are_rounded_once_at_the_end_half_even() -> None:
    # Two holdings worth 0.005 each after haircut: each shows 0.00 (half-even), the total is 0.01.
    usdc = asset("USDC", price="0.0125", dco_haircuts=(D("0.60"),))
    usdt = asset("USDT", price="0.0125", dco_haircuts=(D("0.60"),))
    inputs = make([wallet("seg", FUT)], [usdc, usdt], {}, holdings={("seg", "USDC"): 10**6, ("seg", "USDT"): 10**6})
    doc = statement_doc(one(inputs, FUT))
    # 1 unit x 0.0125 = 0.0125 at market (shows 0.01); x 0.40 = 0.005 (shows 0.00)
    assert [(h["market_value"], h["value"]) for h in doc["holdings"]] == [("0.01", "0.00"), ("0.01", "0.00")]
    assert doc["funds_in_segregation"] == "0.01"  # 0.005 + 0.005, rounded once
    assert to_cents(D("0.015")) == D("0.02") and to_cents(D("0.025")) == D("0.02")  # half-even
    assert str(to_cents(D("-0.004"))) == "0.00"  # never "-0.00"


def test_uint256_holdings_are_valued_exactly() -> None:
    big = asset("BIG", AssetKind.WRAPPED, 18, "1234.56789", dco_haircuts=(D("0"),))
    units = 2**256 - 1
    inputs = make([wallet("seg", FUT)], [big], {}, holdings={("seg", "BIG"): units})
    st = one(inputs, FUT)
    # (2^256 - 1) / 10^18 x 1234.56789, by integer arithmetic: units x 123456789 / 10^23
    numerator = units * 123_456_789
    whole, rest = divmod(numerator, 10**23)
    cents, tail = divmod(rest * 100, 10**23)
    cents += 1 if tail * 2 > 10**23 else 0
    assert str(st.funds_in_segregation) == f"{whole}.{cents:02d}"
    assert str(st.excess_over_target) == f"{whole}.{cents:02d}"  # no target: every digit kept


# ----------------------------------------------------------------------------- commingling


def commingling_setup(book: list[tuple[str, str, str, int]]) -> SegregationInputs:
    usdc = asset("USDC", dco_haircuts=(D("0.02"),))
    tmmf = asset("TMMF", AssetKind.MMF, 18, "1.00", dco_haircuts=(D("0.05"),), fund_family="Example Funds")
    return make(
        wallets=[wallet("seg-fut", FUT), wallet("seg-cs", CS), wallet("house-1", HOUSE)],
        assets=[usdc, tmmf],
        accounts={"C1": FUT, "S1": CS, "H1": HOUSE},
        book=book,
    )


def test_house_stablecoins_in_a_customer_wallet_are_residual_interest() -> None:
    found = kinds(commingling_setup([("H1", "seg-fut", "USDC", 250_000 * USDC_UNIT)]))
    assert not [k for k in found if k.kind is BreakKind.COMMINGLING]


def test_house_fund_shares_in_a_customer_wallet_are_commingling() -> None:
    inputs = commingling_setup([("H1", "seg-fut", "TMMF", 1_000 * SHARE)])
    found = kinds(inputs)
    severity, amount, detail = found[BreakKey(BreakKind.COMMINGLING, "eth", "seg-fut", "TMMF")]
    assert severity is Severity.CRITICAL and amount == 1_000 * SHARE
    assert "only payment stablecoins may serve as residual interest" in detail


def test_a_customer_deposit_booked_to_the_house_wallet_is_commingling() -> None:
    found = kinds(commingling_setup([("C1", "house-1", "USDC", 5_000 * USDC_UNIT)]))
    severity, amount, detail = found[BreakKey(BreakKind.COMMINGLING, "eth", "house-1", "USDC")]
    assert severity is Severity.CRITICAL and amount == 5_000 * USDC_UNIT
    assert detail == "futures customer C1 has 5000.000000 USDC booked to house wallet house-1"


def test_a_customer_booked_to_another_customer_class_is_commingling() -> None:
    inputs = commingling_setup([("S1", "seg-fut", "USDC", 7 * USDC_UNIT), ("C1", "seg-fut", "USDC", 9 * USDC_UNIT)])
    found = kinds(inputs)
    _, amount, detail = found[BreakKey(BreakKind.COMMINGLING, "eth", "seg-fut", "USDC")]
    assert amount == 7 * USDC_UNIT and "cleared_swaps customer S1" in detail and "C1" not in detail


def test_a_negative_house_balance_in_a_customer_wallet_is_commingling() -> None:
    found = kinds(commingling_setup([("H1", "seg-cs", "USDC", -USDC_UNIT)]))
    assert "took out more than it put in" in found[BreakKey(BreakKind.COMMINGLING, "eth", "seg-cs", "USDC")][2]


def test_commingling_covers_every_wallet_and_asset_so_a_cleared_one_resolves() -> None:
    coverage = segregation_pass(commingling_setup([])).coverage
    expected = {
        BreakKey(BreakKind.COMMINGLING, "eth", w, a) for w in ("seg-fut", "seg-cs", "house-1") for a in ("USDC", "TMMF")
    }
    assert expected <= coverage


# ----------------------------------------------------------------------------- concentration


def concentration_setup(funds: dict[str, tuple[str, int, bool]], offchain: str) -> SegregationInputs:
    """House investments of ``funds`` (name -> (family, whole shares at 1.00, government)) in
    the futures wallet, valued without haircut, beside ``offchain`` USD of customer funds."""
    assets = [
        asset(n, AssetKind.MMF, 18, "1.00", dco_haircuts=(D("0"),), fund_family=fam, government_fund=gov)
        for n, (fam, _, gov) in funds.items()
    ]
    return make(
        wallets=[wallet("seg-fut", FUT)],
        assets=assets,
        accounts={"H1": HOUSE},
        book=[("H1", "seg-fut", n, shares * SHARE) for n, (_, shares, _) in funds.items()],
        holdings={("seg-fut", n): shares * SHARE for n, (_, shares, _) in funds.items()},
        offchain=[(FUT, "Bank A", offchain)],
    )


def concentration_keys(inputs: SegregationInputs) -> set[str | None]:
    return {k.asset for k in kinds(inputs) if k.kind is BreakKind.CONCENTRATION_LIMIT}


def test_concentration_in_one_non_government_fund_above_10_percent() -> None:
    # funds: 880,000 off chain + 120,000 of FundA = 1,000,000; FundA is 12% > 10%
    inputs = concentration_setup({"FundA": ("F", 120_000, False)}, "880000")
    found = kinds(inputs)
    severity, _, detail = found[BreakKey(BreakKind.CONCENTRATION_LIMIT, "*", "futures", "FundA")]
    assert severity is Severity.ERROR
    assert "120,000.00 USD" in detail and "10.00%" in detail and "allows 100,000.00 USD" in detail
    assert concentration_keys(inputs) == {"FundA"}  # family F 12% < 25%; all funds 12% < 50%
    # the firm's own fund shares in a customer wallet are also commingling
    assert BreakKey(BreakKind.COMMINGLING, "eth", "seg-fut", "FundA") in found


def test_exactly_at_the_limit_is_allowed() -> None:
    # 900,000 + 100,000 = 1,000,000; FundA is exactly 10%
    assert concentration_keys(concentration_setup({"FundA": ("F", 100_000, False)}, "900000")) == set()


def test_concentration_per_fund_family_above_25_percent() -> None:
    # 715,000 + 3 x 95,000 = 1,000,000; each fund 9.5% (< 10%), family F 28.5% (> 25%)
    funds = dict.fromkeys(("FundA", "FundB", "FundC"), ("F", 95_000, False))
    assert concentration_keys(concentration_setup(funds, "715000")) == {"family:F"}


def test_concentration_in_all_non_government_funds_above_50_percent() -> None:
    # 460,000 + 6 x 90,000 = 1,000,000; each fund 9%, each of three families 18%, all 54% (> 50%)
    funds = {f"Fund{i}": (f"F{i % 3}", 90_000, False) for i in range(6)}
    assert concentration_keys(concentration_setup(funds, "460000")) == {"all:non-government-mmf"}


def test_government_funds_have_no_concentration_limit() -> None:
    assert concentration_keys(concentration_setup({"GovFund": ("G", 900_000, True)}, "100000")) == set()


def test_customer_deposits_of_fund_shares_are_not_investments() -> None:
    a = asset("FundA", AssetKind.MMF, 18, "1.00", dco_haircuts=(D("0"),), fund_family="F")
    inputs = make(
        [wallet("seg-fut", FUT)],
        [a],
        {"C1": FUT},
        book=[("C1", "seg-fut", "FundA", 1_000 * SHARE)],
        holdings={("seg-fut", "FundA"): 1_000 * SHARE},
    )
    assert concentration_keys(inputs) == set()


def test_the_limits_are_data() -> None:
    assert [(lim.share, lim.scope.value) for lim in CONCENTRATION_LIMITS] == [
        (D("0.10"), "asset"),
        (D("0.25"), "family"),
        (D("0.50"), "all"),
    ]


# ----------------------------------------------------------------------------- prices


def feed_reading(answer: int, updated_at: int, decimals: int = 8, block_time: int = BLOCK_TIME) -> FeedReading:
    return FeedReading(
        "0x" + "fe" * 20, "eth", 123, block_time, FeedAnswer(decimals, 7, answer, updated_at, updated_at, 7)
    )


def test_a_feed_answer_is_scaled_by_its_decimals_exactly() -> None:
    a = asset("USDC", price=None, price_feed="0x" + "fe" * 20)
    price = feed_price(a, feed_reading(99_950_000, BLOCK_TIME - 60))
    assert price.usd == D("0.99950000") and price.problem is None and "round 7" in price.source


@pytest.mark.parametrize(
    ("answer", "age", "problem"),
    [
        (0, 60, "must be positive"),
        (-5, 60, "must be positive"),
        (100_000_000, 24 * 3600 + 1, "stale"),
        (100_000_000, -1, "after block"),
    ],
)
def test_an_unusable_feed_answer_gives_no_price(answer: int, age: int, problem: str) -> None:
    a = asset("USDC", price=None, price_feed="0x" + "fe" * 20)
    price = feed_price(a, feed_reading(answer, BLOCK_TIME - age))
    assert price.usd is None and problem in (price.problem or "")


def test_a_feed_exactly_max_age_old_is_fresh() -> None:
    a = asset("USDC", price=None, price_feed="0x" + "fe" * 20, price_max_age=timedelta(hours=1))
    assert feed_price(a, feed_reading(100_000_000, BLOCK_TIME - 3600)).usd == D("1.00000000")
    assert feed_price(a, feed_reading(100_000_000, BLOCK_TIME - 3601)).usd is None


def test_a_stale_feed_makes_the_statement_incomplete_never_zero() -> None:
    feed = "0x" + "fe" * 20
    usdc = asset("USDC", price="1.00", price_feed=feed, dco_haircuts=(D("0.02"),))  # price_usd is no fallback
    inputs = make(
        [wallet("seg", FUT), wallet("house-1", HOUSE)],
        [usdc],
        {"C1": FUT},
        book=[("C1", "house-1", "USDC", USDC_UNIT)],  # commingling still judged
        holdings={("seg", "USDC"): 1_000 * USDC_UNIT},
        targets={FUT: "100"},
        feeds={"USDC": feed_reading(100_000_000, BLOCK_TIME - 3 * 24 * 3600)},
    )
    st = one(inputs, FUT)
    assert not st.complete and any("stale" in p for p in st.problems)
    assert st.amount_required is None and st.funds_in_segregation is None and st.excess is None
    assert st.holdings[0].market_value is None
    result = segregation_pass(inputs)
    assert {f.key.kind for f in result.findings} == {BreakKind.COMMINGLING}
    # no futures key is covered: an earlier deficit stays open rather than being resolved
    assert not [k for k in result.coverage if k.chain == "*" and k.wallet == "futures"]


def test_an_unpriced_asset_matters_only_when_held() -> None:
    dust = asset("DUST", price=None)
    usdc = asset("USDC", dco_haircuts=(D("0"),))
    held = make([wallet("seg", FUT)], [dust, usdc], {}, holdings={("seg", "DUST"): 1})
    assert not one(held, FUT).complete
    assert "neither price_usd nor price_feed" in one(held, FUT).problems[0]
    assert one(make([wallet("seg", FUT)], [dust, usdc], {}), FUT).complete


def test_an_unread_chain_makes_its_classes_incomplete() -> None:
    usdc = asset("USDC", dco_haircuts=(D("0"),))
    arb = asset("aUSDC", chain="arb", dco_haircuts=(D("0"),))
    inputs = make([wallet("seg", FUT), wallet("seg-arb", CS, chain="arb")], [usdc, arb], {})
    inputs = SegregationInputs(
        **{
            **{f: getattr(inputs, f) for f in inputs.__dataclass_fields__},
            "chains": {"eth": inputs.chains["eth"]},
            "holdings": {k: v for k, v in inputs.holdings.items() if k[0] != "seg-arb"},
            "unread": {"arb": "connection refused"},
        }
    )
    assert one(inputs, FUT).complete
    cs = one(inputs, CS)
    assert not cs.complete and "chain arb was not read (connection refused)" in cs.problems[0]


# ----------------------------------------------------------------------------- reproduction, time


def test_stored_inputs_recompute_the_same_statement() -> None:
    inputs = futures_example()
    feed = "0x" + "fe" * 20
    inputs = SegregationInputs(
        **{
            **{f: getattr(inputs, f) for f in inputs.__dataclass_fields__},
            "assets": {
                **inputs.assets,
                "USDC": asset("USDC", price=None, price_feed=feed, dco_haircuts=(D("0.02"), D("0.05"))),
            },
            "feeds": {"USDC": feed_reading(99_987_654, BLOCK_TIME - 10)},
        }
    )
    stored = json.loads(json.dumps(inputs_to_json(inputs)))
    again = inputs_from_json(stored)
    assert [statement_doc(s) for s in compute_statements(again)] == [
        statement_doc(s) for s in compute_statements(inputs)
    ]
    assert segregation_pass(again) == segregation_pass(inputs)


def test_the_pilot_week_closes_on_friday_at_five_in_chicago() -> None:
    close = pilot_week_close("2026-W47", ZoneInfo("America/Chicago"))
    assert close.isoformat() == "2026-11-20T17:00:00-06:00"
    assert close.astimezone(UTC) == datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    for bad in ("2026-47", "2026-W54", "26-W01", "2026-W4"):
        with pytest.raises(ValueError):
            pilot_week_close(bad, ZoneInfo("UTC"))


def test_pilot_report_sums_customer_wallets_by_class_and_asset() -> None:
    usdc = asset("USDC", price="0.999")
    inputs = make(
        [wallet("a", FUT), wallet("b", FUT), wallet("c", CS), wallet("h", HOUSE)],
        [usdc],
        {},
        holdings={("a", "USDC"): 600 * USDC_UNIT, ("b", "USDC"): 400 * USDC_UNIT, ("h", "USDC"): 5 * USDC_UNIT},
    )
    report = pilot_report(inputs)
    # futures: 1,000 USDC x 0.999 = 999.00; cleared swaps hold nothing; the house is not reported
    assert [(r.seg_class, r.asset, r.units, r.market_value) for r in report.rows] == [
        (FUT, "USDC", 1_000 * USDC_UNIT, D("999.000"))
    ]
    assert [(t.seg_class, t.market_value) for t in report.totals] == [
        (FUT, D("999.00")),
        (CS, D("0.00")),
        (FF, D("0.00")),
    ]


# ----------------------------------------------------------------------------- properties

money = st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
units = st.integers(min_value=0, max_value=10**15)
rates = st.decimals(min_value=0, max_value=D("0.99"), places=4)


def _property_inputs(customers: list[tuple[int, Decimal, Decimal]], held: int, haircut: Decimal) -> SegregationInputs:
    usdc = asset("USDC", price="1.0001", dco_haircuts=(haircut,))
    names = {f"C{i}": FUT for i in range(len(customers))}
    return make(
        [wallet("seg", FUT)],
        [usdc],
        names,
        book=[(f"C{i}", "seg", "USDC", u) for i, (u, _, _) in enumerate(customers) if u],
        holdings={("seg", "USDC"): held},
        equity=[(f"C{i}", str(c), str(o)) for i, (_, c, o) in enumerate(customers)],
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(units, money, money), max_size=6), units, rates, money)
def test_adding_a_debit_customer_never_lowers_the_requirement(
    customers: list[tuple[int, Decimal, Decimal]], held: int, haircut: Decimal, debit: Decimal
) -> None:
    before = one(_property_inputs(customers, held, haircut), FUT).amount_required
    owing = -abs(debit) - D("0.01")  # strictly a debit balance
    after = one(_property_inputs([*customers, (0, owing, D("0"))], held, haircut), FUT).amount_required
    assert before is not None and after is not None and after >= before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(units, money, money), max_size=6), units, rates, rates)
def test_raising_a_haircut_never_raises_the_excess(
    customers: list[tuple[int, Decimal, Decimal]], held: int, a: Decimal, b: Decimal
) -> None:
    low, high = sorted((a, b))
    excess_low = one(_property_inputs(customers, held, low), FUT).excess
    excess_high = one(_property_inputs(customers, held, high), FUT).excess
    assert excess_low is not None and excess_high is not None and excess_high <= excess_low


# ----------------------------------------------------------------------------- imports, blocks, feeds


@pytest.mark.parametrize(
    ("text", "cents"),
    [("0", 0), ("12.5", 1250), ("12.50", 1250), ("12.500", 1250), ("-0.01", -1), ("1250000.05", 125000005)],
)
def test_usd_amounts_are_parsed_to_exact_cents(text: str, cents: int) -> None:
    assert parse_cents(text) == cents


@pytest.mark.parametrize("text", ["12.505", "1e3", "+5", "1,000", " 5", "", ".5", "5.", "NaN", "1_000"])
def test_usd_amounts_that_are_not_plain_cents_are_refused(text: str) -> None:
    with pytest.raises(UsdError):
        parse_cents(text)


def test_equity_csv_names_line_and_column() -> None:
    text = "date,account,cash_usd,open_trade_equity_usd\n2026-11-24,C1,1.00,0\n2026-11-24,C2,x,0\n"
    with pytest.raises(InputError) as exc:
        parse_equity_csv(text, "equity.csv", {"C1": FUT, "C2": CS})
    assert exc.value.problems == [
        "line 3, column cash_usd: 'x' is not a plain decimal amount in USD (digits, optional '-' and one '.', "
        "like 1250.50)"
    ]


class FakeChain:
    """Blocks with the given timestamps, answering eth_getBlockByNumber like a node."""

    endpoint = "fake"

    def __init__(self, timestamps: list[int]) -> None:
        self.timestamps = timestamps
        self.asked: list[int] = []

    def request(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_getBlockByNumber"
        number = int(params[0], 16)
        self.asked.append(number)
        return {"number": hex(number), "hash": "0x" + f"{number:064x}", "timestamp": hex(self.timestamps[number])}

    def batch(self, calls: Sequence[Any]) -> list[Any]:  # pragma: no cover - not used
        raise AssertionError


@pytest.mark.parametrize(
    ("instant", "expected"),
    [(99, None), (100, 1), (104, 1), (105, 4), (109, 4), (110, 5), (10**10, 5)],
)
def test_the_last_block_at_or_before_an_instant_with_equal_neighbours(instant: int, expected: int | None) -> None:
    chain = FakeChain([100, 100, 105, 105, 105, 110])
    found = last_at_or_before(chain, instant, head=5)
    assert (found.number if found else None) == expected


def test_the_block_search_is_logarithmic() -> None:
    chain = FakeChain(list(range(0, 2_000_000, 2)))
    found = last_at_or_before(chain, 1_234_567, head=999_999)
    assert found is not None and found.number == 617_283 and found.timestamp == 1_234_566
    assert len(chain.asked) <= 2 + 21


def test_round_data_decodes_a_negative_answer() -> None:
    words = [7, 2**256 - 5, 100, 200, 7]
    assert decode_round_data(b"".join(w.to_bytes(32, "big") for w in words)) == (7, -5, 100, 200, 7)
    with pytest.raises(ValueError):
        decode_round_data(b"\x00" * 128)
