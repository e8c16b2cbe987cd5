"""The pure engine: positions, balance checks, and how findings meet the ledger's open breaks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import (
    AssetKind,
    BlockRef,
    BreakKey,
    BreakKind,
    BreakStatus,
    Finding,
    Position,
    SegClass,
    Severity,
)
from reconciler.engine.balances import check_balances, positions_for_chain
from reconciler.engine.lifecycle import ActiveBreak, plan_breaks
from reconciler.inputs.settings import AssetSettings, WalletSettings

BLOCK = BlockRef(number=123456, hash="0x" + "cd" * 32)

W1 = WalletSettings(name="w1", chain="eth", address="0x" + "11" * 20, seg_class=SegClass.FUTURES)
W2 = WalletSettings(name="w2", chain="eth", address="0x" + "22" * 20, seg_class=SegClass.HOUSE)
USDC = AssetSettings(name="USDC", chain="eth", decimals=6, kind=AssetKind.STABLECOIN, address="0x" + "33" * 20)
ETH = AssetSettings(name="ETH", chain="eth", decimals=18, kind=AssetKind.NATIVE, native=True)


def _pos(book: int, onchain: int, asset: str = "USDC", decimals: int = 6, wallet: str = "w1") -> Position:
    return Position(chain="eth", wallet=wallet, asset=asset, decimals=decimals, book=book, onchain=onchain)


# ----------------------------------------------------------------------------- positions


def test_positions_one_row_per_wallet_and_asset_including_zero_rows() -> None:
    onchain = {("w1", "USDC"): 5, ("w1", "ETH"): 0, ("w2", "USDC"): 0, ("w2", "ETH"): 7}
    book = {("w1", "USDC"): 5, ("w2", "ETH"): 9}
    rows = positions_for_chain("eth", [W1, W2], [USDC, ETH], book, onchain)
    assert rows == [
        Position("eth", "w1", "USDC", 6, 5, 5),
        Position("eth", "w1", "ETH", 18, 0, 0),
        Position("eth", "w2", "USDC", 6, 0, 0),
        Position("eth", "w2", "ETH", 18, 9, 7),
    ]
    assert [r.difference for r in rows] == [0, 0, 0, -2]


def test_positions_book_defaults_to_zero() -> None:
    rows = positions_for_chain("eth", [W1], [USDC], {}, {("w1", "USDC"): 10**27})
    assert [(r.book, r.onchain) for r in rows] == [(0, 10**27)]


def test_positions_without_wallets_or_assets_are_empty() -> None:
    assert positions_for_chain("eth", [], [USDC], {}, {}) == []
    assert positions_for_chain("eth", [W1], [], {}, {}) == []


def test_positions_missing_onchain_value_is_a_caller_bug_not_a_zero() -> None:
    with pytest.raises(KeyError, match="w2 x ETH"):
        positions_for_chain("eth", [W1, W2], [USDC, ETH], {}, {("w1", "USDC"): 0, ("w1", "ETH"): 0, ("w2", "USDC"): 0})


# ----------------------------------------------------------------------------- check_balances


def test_matching_positions_give_no_finding() -> None:
    assert check_balances([_pos(5, 5), _pos(0, 0)], {}, BLOCK) == []


def test_chain_holding_less_gives_a_negative_balance_mismatch() -> None:
    findings = check_balances([_pos(book=1_000_000, onchain=500_000)], {}, BLOCK)
    assert len(findings) == 1
    f = findings[0]
    assert f.key == BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w1", "USDC", None)
    assert f.severity is Severity.ERROR
    assert f.amount == -500_000
    assert "123456" in f.detail
    assert BLOCK.hash in f.detail
    assert "0.500000" in f.detail and "less" in f.detail


def test_chain_holding_more_gives_a_positive_balance_mismatch() -> None:
    findings = check_balances([_pos(book=0, onchain=10**27 + 1, asset="ETH", decimals=18)], {}, BLOCK)
    assert [(f.amount, f.severity) for f in findings] == [(10**27 + 1, Severity.ERROR)]
    assert "1000000000.000000000000000001" in findings[0].detail
    assert "more" in findings[0].detail


def test_tolerance_is_inclusive_and_per_asset() -> None:
    tolerances = {"USDC": 10}
    assert check_balances([_pos(100, 110), _pos(100, 90)], tolerances, BLOCK) == []
    over = check_balances([_pos(100, 111), _pos(100, 89)], tolerances, BLOCK)
    assert [f.amount for f in over] == [11, -11]
    # The tolerance of USDC does not apply to ETH.
    eth = check_balances([_pos(100, 101, asset="ETH", decimals=18)], tolerances, BLOCK)
    assert [f.amount for f in eth] == [1]


def test_one_finding_per_position_outside_tolerance() -> None:
    positions = [_pos(1, 2, wallet="w1"), _pos(1, 1, wallet="w2"), _pos(3, 1, wallet="w3")]
    findings = check_balances(positions, {}, BLOCK)
    assert [(f.key.wallet, f.amount) for f in findings] == [("w1", 1), ("w3", -2)]


@settings(max_examples=200, deadline=None)
@given(
    book=st.integers(min_value=-(2**256), max_value=2**256),
    onchain=st.integers(min_value=0, max_value=2**256 - 1),
    tolerance=st.integers(min_value=0, max_value=2**64),
)
def test_finding_exactly_when_outside_tolerance(book: int, onchain: int, tolerance: int) -> None:
    findings = check_balances([_pos(book, onchain)], {"USDC": tolerance}, BLOCK)
    diff = onchain - book
    if abs(diff) > tolerance:
        assert [f.amount for f in findings] == [diff]
    else:
        assert findings == []


# ----------------------------------------------------------------------------- plan_breaks


def _key(wallet: str, kind: BreakKind = BreakKind.BALANCE_MISMATCH, tx: str | None = None) -> BreakKey:
    return BreakKey(kind, "eth", wallet, "USDC", tx)


def _finding(key: BreakKey, amount: int = -1) -> Finding:
    return Finding(key=key, severity=Severity.ERROR, amount=amount, detail="d")


def _active(key: BreakKey, ident: str = "b1", status: BreakStatus = BreakStatus.OPEN) -> ActiveBreak:
    return ActiveBreak(id=ident, key=key, status=status, amount=-1)


def test_new_finding_is_opened() -> None:
    finding = _finding(_key("w1"))
    plan = plan_breaks([], [finding], coverage={finding.key})
    assert plan.opened == (finding,)
    assert plan.seen_again == ()
    assert plan.resolved == ()


def test_finding_with_an_active_key_is_seen_again_not_opened() -> None:
    key = _key("w1")
    brk = _active(key, status=BreakStatus.ACKNOWLEDGED)
    finding = _finding(key, amount=-7)
    plan = plan_breaks([brk], [finding], coverage={key})
    assert plan.opened == ()
    assert plan.seen_again == ((brk, finding),)
    assert plan.resolved == ()


def test_tx_hash_is_part_of_the_identity() -> None:
    old = _active(_key("w1", BreakKind.UNAUTHORIZED_TRANSFER, "0x" + "01" * 32))
    new = _finding(_key("w1", BreakKind.UNAUTHORIZED_TRANSFER, "0x" + "02" * 32))
    plan = plan_breaks([old], [new], coverage={old.key, new.key})
    assert plan.opened == (new,)
    assert plan.resolved == (old,)


def test_active_break_not_found_where_the_run_looked_is_resolved() -> None:
    brk = _active(_key("w1"))
    plan = plan_breaks([brk], [], coverage={brk.key})
    assert plan.resolved == (brk,)
    assert plan.opened == () and plan.seen_again == ()


def test_active_break_outside_coverage_stays_active() -> None:
    # Its chain could not be read this run: no false "all clear".
    seen = _active(_key("w1"), ident="b1")
    unread = _active(BreakKey(BreakKind.BALANCE_MISMATCH, "arb", "w9", "USDC"), ident="b2")
    plan = plan_breaks([seen, unread], [], coverage={seen.key})
    assert plan.resolved == (seen,)


def test_two_active_breaks_with_one_key_is_an_error() -> None:
    key = _key("w1")
    with pytest.raises(ValueError, match="two active breaks"):
        plan_breaks([_active(key, "b1"), _active(key, "b2")], [], coverage={key})


def test_one_run_finding_a_key_twice_is_an_error() -> None:
    key = _key("w1")
    with pytest.raises(ValueError, match="twice"):
        plan_breaks([], [_finding(key), _finding(key)], coverage={key})


_KEYS = st.builds(
    BreakKey,
    kind=st.sampled_from([BreakKind.BALANCE_MISMATCH, BreakKind.UNAUTHORIZED_TRANSFER]),
    chain=st.sampled_from(["eth", "arb"]),
    wallet=st.sampled_from(["w1", "w2", "w3"]),
    asset=st.sampled_from(["USDC", "ETH", None]),
    tx_hash=st.sampled_from([None, "0x" + "01" * 32]),
)


@settings(max_examples=200, deadline=None)
@given(
    active_keys=st.sets(_KEYS, max_size=12),
    finding_keys=st.sets(_KEYS, max_size=12),
    coverage=st.sets(_KEYS, max_size=24),
    data=st.data(),
)
def test_plan_breaks_partitions_findings_and_resolves_only_inside_coverage(
    active_keys: set[BreakKey],
    finding_keys: set[BreakKey],
    coverage: set[BreakKey],
    data: st.DataObject,
) -> None:
    active = [_active(k, ident=f"b{i}") for i, k in enumerate(sorted(active_keys, key=repr))]
    findings = [_finding(k) for k in data.draw(st.permutations(sorted(finding_keys, key=repr)))]

    plan = plan_breaks(active, findings, coverage)

    opened = [f.key for f in plan.opened]
    seen = [f.key for _, f in plan.seen_again]
    assert sorted(opened + seen, key=repr) == sorted(finding_keys, key=repr)
    assert set(opened).isdisjoint(active_keys)
    assert set(seen) <= active_keys
    assert all(brk.key == f.key for brk, f in plan.seen_again)
    resolved = {b.key for b in plan.resolved}
    assert resolved <= coverage
    assert resolved.isdisjoint(finding_keys)
    assert resolved == (active_keys - finding_keys) & coverage


def test_a_span_covers_exactly_the_configured_wallets_and_assets_of_its_kind_and_chain() -> None:
    from reconciler.domain import BreakKey, BreakKind
    from reconciler.engine.passes import Coverage, Span

    span = Span(BreakKind.BALANCE_MISMATCH, "eth", frozenset({"w1", "w2"}), frozenset({"USDC", "ETH"}))
    other = Coverage(keys=frozenset({BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, "eth", "w9", "USDC", "0x" + "ab" * 32)}))
    coverage = Coverage(spans=(span,)) | other | Coverage()
    assert BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w2", "ETH") in coverage
    assert BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w2", "ETH", "0x" + "cd" * 32) in coverage  # any tx hash
    for outside in (
        BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w3", "ETH"),  # a wallet that left the configuration
        BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w1", "WBTC"),  # an asset that did
        BreakKey(BreakKind.BALANCE_MISMATCH, "l2", "w1", "ETH"),  # another chain
        BreakKey(BreakKind.UNEXPECTED_INFLOW, "eth", "w1", "ETH"),  # another kind
        BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, "eth", "w9", "USDC"),  # the exact key needs its tx hash
    ):
        assert outside not in coverage, outside
    assert BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, "eth", "w9", "USDC", "0x" + "ab" * 32) in coverage
    assert "not a key" not in coverage
