"""Units of a run: how a chain's wallets are split into shards and chunks, and a unit's result
as a sharded firing keeps it in the ledger."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chains.base import Disagreement, Source, SourceDisagreement
from chains.evm.executions import TracingUnavailable
from chains.evm.rpc import EndpointError, RpcError
from reconciler.app.units import UnitResult, chunks, merged, result_from_json, result_to_json, shard_slice
from reconciler.app.workers import MAX_WORKERS, _portable, unit_workers
from reconciler.domain import AssetKind, BreakKey, BreakKind, Finding, Position, SegClass, Severity
from reconciler.engine.passes import Coverage, Span
from reconciler.errors import ChainError, LedgerError
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


# ----------------------------------------------------------------------------- unit workers


@pytest.mark.parametrize(
    "error",
    [
        RpcError("http://node:8545", "eth_call", -32000, "execution reverted"),
        EndpointError("http://node:8545 gave no answer", retryable=False, hint="is the node running?"),
        TracingUnavailable("debug_traceTransaction", "the node does not trace"),
        SourceDisagreement("eth", ("http://a", "http://b"), 7, [Disagreement("balanceOf", "1", "2", "0x" + "2" * 40)]),
        LedgerError("database failed"),
        ChainError("chain eth block 6: result too short"),
        ValueError("a bug, named by its type"),
    ],
)
def test_a_workers_error_crosses_to_the_run_as_itself(error: Exception) -> None:
    crossed = pickle.loads(pickle.dumps(_portable(error)))
    assert type(crossed) is type(error) and str(crossed) == str(error)
    if isinstance(error, SourceDisagreement):  # what the run's findings are made of
        assert isinstance(crossed, SourceDisagreement)
        assert (crossed.chain, crossed.endpoints, crossed.block, crossed.items) == (
            error.chain, error.endpoints, error.block, error.items
        )  # fmt: skip


class _Unpicklable(ChainError):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b} went wrong")


class _Odd(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def test_an_error_that_cannot_cross_keeps_its_words_and_its_kind() -> None:
    chain = _portable(_Unpicklable(1, 2))
    assert type(chain) is ChainError and str(chain) == "1 and 2 went wrong"
    # As the run says an error that is not a chain's: its type's name, then its words.
    other = _portable(_Odd(3, 4))
    assert type(other) is ChainError and str(other) == "_Odd: 3/4"


def test_unit_workers_follow_the_environment_and_never_exceed_the_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "10")
    monkeypatch.setenv("RECONCILER_UNIT_WORKERS", "3")
    assert [unit_workers(n) for n in (0, 10, 11, 25, 1000)] == [1, 1, 2, 3, 3]
    monkeypatch.setenv("RECONCILER_UNIT_WORKERS", "1")
    assert unit_workers(1000) == 1
    monkeypatch.delenv("RECONCILER_UNIT_WORKERS")
    assert unit_workers(1000) == min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    assert unit_workers(10) == 1  # one chunk: read in this process
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("RECONCILER_UNIT_WORKERS", bad)
        with pytest.raises(ValueError, match="RECONCILER_UNIT_WORKERS"):
            unit_workers(1000)


def test_merged_units_keep_the_workers_sources_once_and_the_last_read_path() -> None:
    a, b = Source("http://a", "anvil"), Source("http://b", None)
    whole = merged(
        [UnitResult(sources=(a,), read_path="multicall"), UnitResult(sources=(a, b), read_path="batch"), UnitResult()]
    )
    assert whole.sources == (a, b) and whole.read_path == "batch"
