"""Chains are read at the same time, one thread each: a slow or dead chain holds up no other, the
ledger (read by each chain's surveillance) is safe across those threads on SQLite and PostgreSQL,
and a signal still stops the run at once. Two real Anvil chains (31337, the session's; 31338,
this module's), each behind a proxy that lets a test see when requests arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import AnvilNode, Devnet
from tests.conftest import Scenario
from tests.integration.helpers import Custody, load, make_custody, new_address, position, run_json
from tests.integration.rpcproxy import RpcProxy

RECONCILER = str(Path(sys.executable).parent / "reconciler")
ETH = 10**18


@pytest.fixture(scope="module")
def l2() -> Iterator[Devnet]:
    node = AnvilNode.start(chain_id=31338)
    try:
        net = Devnet(node.url)
        net.install_multicall3()
        yield net
    finally:
        node.stop()


def two_chains(
    cli: Any, devnet: Devnet, l2: Devnet, scenario: Scenario, eth_url: str, l2_url: str, **l2_keys: Any
) -> tuple[Custody, Path]:
    """The custody setup on eth, and a house wallet holding 5 of l2's native coin; the l2 chain
    comes first in the configuration. Everything booked exactly."""
    custody = make_custody(devnet, scenario, eth_url)
    scenario.chains = {"l2": {"kind": "evm", "rpc_urls": [l2_url], "chain_id": 31338, **l2_keys}, **scenario.chains}
    scenario.add_native("L2ETH", "l2")
    wallet = new_address()
    l2.set_native_balance(wallet, 5 * ETH)
    l2.mine()
    scenario.add_wallet("l2-house", "l2", wallet, "house")
    config = scenario.write()
    load(cli, config)
    books = custody.book([("l2-house", "L2ETH", "5", "deposit")])
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    return custody, config


def test_chains_are_read_at_the_same_time_and_share_the_ledger_safely(
    cli: Any, devnet: Devnet, l2: Devnet, scenario: Scenario
) -> None:
    """Each chain's first request waits, in the proxy, for the other chain's: read one after
    the other, the first would wait alone and the barrier would break."""
    barrier = threading.Barrier(2, timeout=10)
    broken: list[str] = []

    def meet(name: str) -> Any:
        met = [False]

        def hook(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
            if not met[0]:
                met[0] = True
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    broken.append(name)
            return response

        return hook

    with RpcProxy(devnet.url) as eth, RpcProxy(l2.url) as other:
        _, config = two_chains(cli, devnet, l2, scenario, eth.url, other.url)
        eth.on("eth_chainId", meet("eth"))
        other.on("eth_chainId", meet("l2"))
        for _ in range(2):  # the second run also reads the first run's checkpoints and balances
            code, doc, stderr = run_json(cli, config)
            assert code == 0 and doc["status"] == "complete", stderr
    assert broken == [], "both chains' first requests were in flight together"
    assert {name: c["block_number"] for name, c in doc["chains"].items()} == {"l2": l2.head(), "eth": devnet.head()}
    assert position(doc, "l2-house", "L2ETH")["difference"] == "0"
    assert list(doc["chains"]) == ["l2", "eth"], "reported in configuration order"


def test_a_dead_chain_holds_up_no_other(cli: Any, devnet: Devnet, l2: Devnet, scenario: Scenario) -> None:
    with RpcProxy(devnet.url) as eth, RpcProxy(l2.url) as dead:
        _, config = two_chains(cli, devnet, l2, scenario, eth.url, dead.url, rpc_timeout=1, rpc_retries=1)
        dead.delay(30)
        started = time.monotonic()
        code, doc, _ = run_json(cli, config)
        took = time.monotonic() - started
        asked_eth, asked_dead = eth.seen(), dead.seen()

    assert code == 2 and doc["status"] == "incomplete"
    assert "within 1s (timed out" in doc["chains"]["l2"]["error"]
    assert doc["chains"]["eth"]["block_number"] == devnet.head() and doc["chains"]["eth"].get("error") is None
    assert {p["chain"] for p in doc["positions"]} == {"eth"}
    # The dead chain comes first in the configuration, yet eth was asked at once, not after it.
    assert asked_eth[0].at - asked_dead[0].at < 0.5
    assert asked_eth[-1].at < asked_dead[-1].at + 1.0, "eth was done while the dead chain still timed out"
    assert took < 10, "bounded by the dead chain's own budget (2 attempts of 1 s), not by both"


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_CONFIG"] = str(config)
    return env


def test_a_signal_stops_a_run_whose_chains_are_being_read(
    cli: Any, devnet: Devnet, l2: Devnet, tmp_path: Path
) -> None:
    """One chain answers slowly (its timeout is a minute): SIGTERM ends the run at once, recorded
    incomplete with the signal as its reason, and the process does not wait for the slow read."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with RpcProxy(devnet.url) as eth, RpcProxy(l2.url) as slow:
        _, config = two_chains(cli, devnet, l2, scenario, eth.url, slow.url, rpc_timeout=60)
        slow.delay(120)
        proc = subprocess.Popen(
            [RECONCILER, "run", "--json"], env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while not slow.seen() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.seen(), "the run asked the slow chain"
        signalled = time.monotonic()
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - signalled
    assert proc.returncode == 2, err
    assert stopped_in < 10, f"stopped {stopped_in:.1f}s after the signal"
    doc = json.loads(out)
    assert doc["status"] == "incomplete" and "interrupted by SIGTERM" in doc["reason"]
    assert doc["positions"] == [] and doc["breaks"] == []
