"""`health` with [watch]: a chain's watcher judged by how long it has not been caught up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.daemon.health import assess_watch
from reconciler.domain import BlockRef
from reconciler.ledger.watch_store import WatchedHead

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LAG = timedelta(minutes=2)


def _head(block: int, node: int, caught_up_ago: float) -> WatchedHead:
    at = NOW - timedelta(seconds=caught_up_ago)
    return WatchedHead("eth", BlockRef(block, "0x" + "ab" * 32), node, at, at)


def test_caught_up_recently_is_healthy_even_behind() -> None:
    assert assess_watch(["eth"], {"eth": _head(100, 100, 5)}, {"eth": 103}, LAG, NOW) == []


def test_behind_for_longer_than_max_lag_names_the_chain_and_the_blocks() -> None:
    [problem] = assess_watch(["eth"], {"eth": _head(100, 100, 130)}, {"eth": 135}, LAG, NOW)
    assert problem.startswith("watch: chain eth: the watched head 100 is 35 block(s) behind the node's head 135")
    assert "last caught up 2m10s ago, more than [watch] max_lag 2m" in problem


def test_a_node_that_does_not_answer_is_judged_by_the_head_the_watcher_last_read() -> None:
    [problem] = assess_watch(["eth"], {"eth": _head(100, 120, 300)}, {"eth": None}, LAG, NOW)
    assert "20 block(s) behind the node's head 120" in problem


def test_nobody_looking_for_longer_than_max_lag_fails_though_nothing_is_known_missed() -> None:
    [problem] = assess_watch(["eth"], {"eth": _head(100, 100, 600)}, {"eth": 100}, LAG, NOW)
    assert "the watcher last saw it was caught up (head 100) 10m ago" in problem


def test_a_chain_never_watched_fails() -> None:
    [problem] = assess_watch(["eth", "base"], {"eth": _head(100, 100, 1)}, {}, LAG, NOW)
    assert problem.startswith("watch: chain base: no head watched yet")
