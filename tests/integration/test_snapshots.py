"""Writes proportional to change: a run stores only the positions that changed since the chain's
previous run (the first, and any run whose set of positions changed, stores them all), and every
run's full list of positions is still rebuilt exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.evm.devnet import Devnet
from reconciler.domain import BlockRef, Position
from reconciler.errors import LedgerError
from reconciler.ledger import snapshots
from reconciler.ledger.runs import ChainResult
from reconciler.ledger.store import Ledger
from reconciler.spill import SpilledPositions
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, new_address, run_json

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def _rows_of(url: str, run_id: str) -> int:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM balance_snapshot WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    engine.dispose()
    return int(count)


def _record(ledger: Ledger, positions: Sequence[Position], block: int) -> str:
    run, lock = ledger.begin_run()
    try:
        chains = sorted({p.chain for p in positions})
        ledger.finish_run(
            run.id,
            [ChainResult(c, 1, BlockRef(block, "0x" + f"{block:064x}"), "batch", None) for c in chains],
            positions,
            [],
            set(),
            {},
            "complete",
            None,
            lambda status, breaks: 0,
        )
    finally:
        lock.release()
    return run.id


def _as_stored(positions: Sequence[Position]) -> list[tuple[Any, ...]]:
    return [(p.chain, p.wallet, p.asset, p.decimals, p.book, p.onchain) for p in positions]


def _shown(ledger: Ledger, run_id: str) -> list[tuple[Any, ...]]:
    return [(p.chain, p.wallet, p.asset, p.decimals, p.book, p.onchain) for p in ledger.get_run(run_id).positions]


def _balances(ledger: Ledger, run_id: str, chain: str) -> dict[tuple[str, str], int]:
    """What the flow check reads of a run: its on-chain balances, without a Snapshot each."""
    with ledger._session() as s:
        return snapshots.balances_of(s, run_id, chain)


def _onchain(positions: Sequence[Position], chain: str) -> dict[tuple[str, str], int]:
    return {(p.wallet, p.asset): p.onchain for p in positions if p.chain == chain}


def _assert_flow(ledger: Ledger, run_id: str, earlier: Sequence[Position], current: Sequence[Position]) -> None:
    """The flow check's comparison of ``current`` with run ``run_id`` (which recorded
    ``earlier``), per chain: streamed in order when the positions line up, read whole when
    not, the same answer as comparing the two mappings."""
    for chain in ("eth", "base"):
        now = [p for p in current if p.chain == chain]
        spilled = SpilledPositions(chain, {p.asset: p.decimals for p in now})
        spilled.extend(now)  # as a run holds them: on disk, with their digests
        before, after = _onchain(earlier, chain), _onchain(now, chain)
        both = before.keys() & after.keys()
        for current_positions in (now, spilled):
            with ledger._session() as s:
                found = snapshots.flow_change(
                    s, run_id, chain, current_positions, {p.wallet for p in now}, {p.asset for p in now}
                )
            assert found.changed == {k: (before[k], after[k]) for k in both if before[k] != after[k]}
            for key in before.keys() | after.keys() | {("nobody", "USDC")}:
                assert (key in found.compared) == (key in both), key


def test_a_run_stores_what_changed_and_every_run_is_rebuilt(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    big = 2**256 - 1
    base = [Position("eth", f"w{i}", a, 6, 10 * i, 10 * i) for i in range(4) for a in ("USDC", "ETH")]
    history: list[tuple[str, list[Position], int]] = []

    def record(positions: list[Position], expect_rows: int) -> None:
        run_id = _record(ledger, positions, 100 + len(history))
        history.append((run_id, positions, expect_rows))

    record(base, 8)  # the first run stores every position
    record(list(base), 0)  # nothing changed: no row at all
    changed = [*base[:3], Position("eth", "w1", "ETH", 6, 10, -big), *base[4:]]
    record(changed, 1)  # one on-chain value changed
    back = list(base)
    record(back, 1)  # and back again: a change too
    record([*base[:6], Position("eth", "w3", "USDC", 6, big, 30), base[7]], 1)
    record(list(base), 1)
    # 1 + 1 + 1 + 1 changes since the full set; 5 more would exceed the 8 positions: a full set
    record([Position(p.chain, p.wallet, p.asset, 6, p.book + 1, p.onchain) for p in base], 8)
    two_chains = [*base, Position("base", "w9", "USDC", 6, 5, 7)]
    # a new chain stores its full set; eth, compared with eth's previous run, changed back in all
    # 8 positions (8 changes since its full set: not more than its positions, so still changes)
    record(two_chains, 9)
    record([*base[1:], base[0]], 8)  # the same positions in another order: a full set
    record([*base[1:], base[0], Position("base", "w9", "USDC", 6, 5, 7)], 0)  # both as before
    decimals = [Position(p.chain, p.wallet, p.asset, 18 if p.wallet == "w2" else 6, p.book, p.onchain)
                for p in [*base[1:], base[0]]]
    record(decimals, 2)  # a change of decimals is a change
    for run_id, positions, _ in history:
        assert _shown(ledger, run_id) == _as_stored(positions)
        for chain in ("eth", "base"):
            assert _balances(ledger, run_id, chain) == _onchain(positions, chain)
        for _, later, _ in history:  # each run's positions against each run's balances
            _assert_flow(ledger, run_id, positions, later)
    assert [_rows_of(db_url, r) for r, _, _ in history] == [e for _, _, e in history]
    ledger.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 3), min_size=6, max_size=6), min_size=2, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_any_sequence_of_runs_is_rebuilt_exactly(tmp_path_factory: Any, values: list[list[int]],
                                                  drops: list[bool]) -> None:
    """SQLite only (PostgreSQL is covered above): whatever changes between runs, each run's
    positions come back as it recorded them."""
    folder = tmp_path_factory.mktemp("snap")
    ledger = Ledger(f"sqlite:///{folder}/l.db")
    ledger.init()
    runs = []
    for i, row in enumerate(values):
        positions = [Position("eth", f"w{j}", "USDC", 6, v, v * (j + 1)) for j, v in enumerate(row)]
        if drops[i]:
            positions = positions[1:]  # a wallet left the configuration this run
        runs.append((_record(ledger, positions, i + 1), positions))
    for run_id, positions in runs:
        assert _shown(ledger, run_id) == _as_stored(positions)
        assert _balances(ledger, run_id, "eth") == _onchain(positions, "eth")
        for _, later in runs:
            _assert_flow(ledger, run_id, positions, later)
    ledger.close()


def test_unchanged_cli_runs_store_no_positions_and_show_reproduces_them(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    printed = []
    for _ in range(2):
        code, doc, err = run_json(cli, config)
        assert code == 0, err
        printed.append(doc)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 3_000_000)
    code, theft, err = run_json(cli, config)
    assert code == 1, err
    # the flow check compares with the previous run, which stored nothing: it is rebuilt
    assert sorted(b["kind"] for b in theft["breaks"]) == ["balance_mismatch", "unauthorized_transfer"]
    printed.append(theft)
    scenario.add_wallet("seg-2", "eth", new_address(), "futures")
    scenario.write()
    code, grown, err = run_json(cli, config)
    assert code == 1, err
    printed.append(grown)

    positions = len(printed[0]["positions"])
    assert positions == 6
    rows = [_rows_of(scenario.db_url, d["run_id"]) for d in printed]
    assert rows == [positions, 0, 1, positions + 3]
    for doc in printed:
        shown = cli("--config", str(config), "runs", "show", doc["run_id"], "--json")
        assert shown.code == 0, shown.stderr
        replayed = json.loads(shown.stdout)
        assert replayed.pop("audit_head")["seq"] > 0  # beside the document as printed
        assert replayed == doc


@pytest.mark.parametrize("seed", [1, 2])
def test_a_rebuild_with_a_missing_row_is_refused_not_shown_short(db_url: str, seed: int) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    rng = random.Random(seed)
    positions = [Position("eth", f"w{i}", "USDC", 6, i, i) for i in range(5)]
    first = _record(ledger, positions, 1)
    second = _record(ledger, positions, 2)
    victim = rng.randrange(5)
    with ledger.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("DELETE FROM balance_snapshot WHERE run_id = :r AND wallet = :w"),
            {"r": first, "w": f"w{victim}"},
        )
    with pytest.raises(Exception, match="positions rebuilt from the ledger"):
        ledger.get_run(second)
    with pytest.raises(LedgerError, match="positions rebuilt from the ledger"):
        _balances(ledger, second, "eth")  # the flow check's read is refused too, never short
    with pytest.raises(LedgerError, match="positions rebuilt from the ledger"), ledger._session() as s:
        snapshots.flow_change(s, second, "eth", positions, {p.wallet for p in positions}, {"USDC"})
    ledger.close()
