"""Units of a run: how a chain's wallets are split into shards and chunks, and a unit's result
as a sharded firing keeps it in the ledger."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.app.units import UnitResult, chunks, merged, result_from_json, result_to_json, shard_slice
from reconciler.domain import AssetKind, BreakKey, BreakKind, Finding, Position, SegClass, Severity
from reconciler.engine.passes import Coverage, Span
from reconciler.inputs.settings import AssetSettings, Settings, WalletSettings


def _wallets(n: int) -> list[WalletSettings]:
    return [
        WalletSettings(name=f"w{i}", chain="eth", address=f"0x{i:040x}", seg_class=SegClass.FUTURES) for i in range(n)
    ]


@given(st.integers(0, 60), st.integers(1, 12))
def test_shards_are_contiguous_cover_every_wallet_once_and_differ_by_at_most_one(n: int, shards: int) -> None:
    wallets = _wallets(n)
    slices = [shard_slice(wallets, k, shards) for k in range(shards)]
    assert [w for s in slices for w in s] == wallets
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_chunks_keep_the_order() -> None:
    wallets = _wallets(7)
    assert [[w.name for w in c] for c in chunks(wallets, 3)] == [["w0", "w1", "w2"], ["w3", "w4", "w5"], ["w6"]]


def test_a_units_result_survives_the_ledger_exactly() -> None:
    usdc = AssetSettings(name="USDC", chain="eth", address="0x" + "1" * 40, decimals=6, kind=AssetKind.STABLECOIN)
    settings = Settings(
        path=Path("x.toml"),
        database_url="sqlite://",
        chains={},
        assets={"USDC": usdc},
        wallets={},
    )
    key = BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w1", "USDC")
    result = UnitResult(
        positions=(Position("eth", "w1", "USDC", 6, 2**200 + 1, 5),),
        findings=((Finding(key, Severity.ERROR, -(2**200) + 4, "detail ✓"),), ()),
        coverage=Coverage(spans=(Span(BreakKind.BALANCE_MISMATCH, "eth", frozenset({"w1"}), frozenset({"USDC"})),))
        | Coverage(spans=(Span(BreakKind.WALLET_CONFIG_CHANGE, "eth", frozenset({"w1"}), frozenset({None}), False),)),
    )
    back = result_from_json(result_to_json(result), "eth", settings)
    assert back.positions == result.positions and back.findings == result.findings
    assert key in back.coverage and BreakKey(BreakKind.WALLET_CONFIG_CHANGE, "eth", "w1", None) in back.coverage
    assert BreakKey(BreakKind.WALLET_CONFIG_CHANGE, "eth", "w1", None, "0xabc") not in back.coverage
    assert BreakKey(BreakKind.BALANCE_MISMATCH, "eth", "w2", "USDC") not in back.coverage
    both = merged([result, back])
    assert both.positions == result.positions * 2 and len(both.findings[0]) == 2
