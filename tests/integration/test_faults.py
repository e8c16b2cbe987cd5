"""Fault injection: a real Anvil behind a tampering JSON-RPC proxy (tests/integration/rpcproxy.py),
and the real console command in process. Nothing inside the product is replaced: every fault comes
from the network side, and every scenario ends in one of three asserted outcomes —

- recovered and correct: the run is complete and its positions are exactly the books;
- incomplete, with a reason that names the fault (exit 2, no positions for the chain);
- source_disagreement: two endpoints answered differently (critical break, chain unread).

SQLite ledgers only (these are chain tests); backoffs are the product's own (small) defaults.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import AnvilNode, Devnet
from chains.evm.rpc import HttpRpc
from reconciler.errors import RpcUnavailable
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import Custody, closed_port_url, load, make_custody, position, run_json
from tests.integration.rpcproxy import MethodHook, RpcProxy

Answer = dict[str, Any]


@dataclass
class Setup:
    custody: Custody
    scenario: Scenario
    config: Path

    def set_chain(self, **keys: Any) -> None:
        self.scenario.chains["eth"].update(keys)
        self.scenario.write()


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    with RpcProxy(devnet.url) as p:
        yield p


@pytest.fixture
def second(devnet: Devnet) -> Iterator[RpcProxy]:
    """Another endpoint in front of the same node."""
    with RpcProxy(devnet.url) as p:
        yield p


@pytest.fixture
def setup(cli: Any, devnet: Devnet, tmp_path: Path, proxy: RpcProxy) -> Setup:
    """The custody setup, booked exactly, read through the proxy."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, proxy.url)
    config = scenario.write()
    load(cli, config)
    return Setup(custody, scenario, config)


def recovered(cli: Any, devnet: Devnet, config: Path, usdc: int = 1_000_000_500_000) -> dict[str, Any]:
    """Run; assert the run is complete and correct (read at the head, every position as booked,
    ``usdc`` in seg-1)."""
    code, doc, stderr = run_json(cli, config)
    assert code == 0 and doc["status"] == "complete", (doc.get("reason"), stderr)
    assert doc["chains"]["eth"]["block_number"] == devnet.head()
    assert doc["positions"] and all(p["difference"] == "0" for p in doc["positions"])
    assert int(position(doc, "seg-1", "USDC")["onchain"]) == usdc
    return doc


def unread(cli: Any, config: Path, *says: str) -> dict[str, Any]:
    """Run; assert the run is incomplete, the chain unread, and its error naming the fault."""
    code, doc, stderr = run_json(cli, config)
    assert code == 2 and doc["status"] == "incomplete", stderr
    eth = doc["chains"]["eth"]
    assert eth["block_number"] is None and doc["positions"] == []
    for words in says:
        assert words in eth["error"], eth["error"]
    assert eth["error"] in doc["reason"]
    assert "Traceback" not in stderr
    return doc


def first_n(n: int, hook: MethodHook) -> MethodHook:
    """The hook for the first ``n`` answers only."""
    left = [n]

    def maybe(request: Answer, response: Answer) -> Answer:
        if left[0] <= 0:
            return response
        left[0] -= 1
        return hook(request, response)

    return maybe


def error_answer(code: int, message: str) -> MethodHook:
    def answer(request: Answer, response: Answer) -> Answer:
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": message}}

    return answer


# ----------------------------------------------------------------------------- no answer


def test_connection_refused_fails_over_to_the_next_endpoint(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup
) -> None:
    setup.set_chain(rpc_urls=[closed_port_url(), proxy.url])
    doc = recovered(cli, devnet, setup.config)
    [source] = doc["chains"]["eth"]["sources"]
    assert source["endpoint"] == proxy.url, "only the endpoint that answered is a source"
    assert source["client_version"].startswith("anvil/")


def test_an_endpoint_that_keeps_failing_is_put_aside_for_the_rest_of_the_run(
    cli: Any, devnet: Devnet, proxy: RpcProxy, second: RpcProxy, setup: Setup
) -> None:
    proxy.fail(503, "backend down")
    setup.set_chain(rpc_urls=[proxy.url, second.url], rpc_retries=2)
    doc = recovered(cli, devnet, setup.config)
    assert len(proxy.seen()) == 3, "one request and its two retries; then it rests, the others go elsewhere"
    assert len(second.seen()) > 10
    assert [s["endpoint"] for s in doc["chains"]["eth"]["sources"]] == [second.url]


def test_a_node_that_does_not_answer_in_time_is_asked_again(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup
) -> None:
    setup.set_chain(rpc_timeout=1)
    proxy.delay(2.5, times=1)
    recovered(cli, devnet, setup.config)


def test_a_node_that_never_answers_in_time_leaves_the_chain_unread(proxy: RpcProxy, setup: Setup, cli: Any) -> None:
    setup.set_chain(rpc_timeout=1, rpc_retries=1)
    proxy.delay(10)
    unread(cli, setup.config, f"no answer from {proxy.url} within 1s", "timed out", "2 attempts")


# ----------------------------------------------------------------------------- HTTP refusals


@pytest.mark.parametrize(
    ("status", "headers", "times"),
    [(429, {"Retry-After": "1"}, 2), (429, {}, 2), (503, {"Retry-After": "1"}, 1), (503, {}, 2)],
    ids=["429-retry-after", "429", "503-retry-after", "503"],
)
def test_rate_limits_and_unavailability_are_waited_out(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup, status: int, headers: dict[str, str], times: int
) -> None:
    proxy.fail(status, "slow down", times=times, headers=headers)
    recovered(cli, devnet, setup.config)
    seen = proxy.seen()
    gaps = [b.at - a.at for a, b in zip(seen[:times], seen[1 : times + 1], strict=True)]
    if headers:
        assert all(g >= 0.95 for g in gaps), f"Retry-After: 1 was honoured ({gaps})"
    else:
        assert all(0.1 <= g < 0.95 for g in gaps), f"exponential backoff with jitter, no Retry-After ({gaps})"


def test_an_endpoint_that_stays_unavailable_leaves_the_chain_unread(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.fail(503, "maintenance")
    unread(cli, setup.config, proxy.url, "HTTP 503", "maintenance", "3 attempts")
    assert len(proxy.seen()) == 3


def test_a_retry_after_too_long_to_wait_for_gives_up_at_once(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.fail(429, "quota", headers={"Retry-After": "3600"})
    unread(cli, setup.config, "HTTP 429", "retry after 3600s")
    assert len(proxy.seen()) == 1


# ----------------------------------------------------------------------------- JSON-RPC refusals


def test_a_limit_exceeded_answer_is_retried(cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup) -> None:
    proxy.on("eth_blockNumber", first_n(2, error_answer(-32005, "limit exceeded")))
    recovered(cli, devnet, setup.config)


def test_a_limit_that_never_lifts_leaves_the_chain_unread(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.on("eth_blockNumber", error_answer(-32005, "limit exceeded"))
    unread(cli, setup.config, "eth_blockNumber failed: limit exceeded (code -32005)", "3 attempts")


def test_a_revert_is_the_chains_answer_and_never_retried(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.on("eth_chainId", error_answer(3, "execution reverted"))
    unread(cli, setup.config, "eth_chainId failed: execution reverted")
    assert [m for r in proxy.seen() for m in r.methods] == ["eth_chainId"]


# ----------------------------------------------------------------------------- broken bodies


def test_an_answer_cut_off_is_asked_again(cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup) -> None:
    proxy.truncate_at(10, times=2)
    recovered(cli, devnet, setup.config)


def test_answers_always_cut_off_leave_the_chain_unread(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.truncate_at(10)
    unread(cli, setup.config, proxy.url, "answer cut off")


def test_a_body_that_is_not_json_is_asked_again(cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup) -> None:
    left = [2]

    def html(raw: bytes) -> bytes:
        left[0] -= 1
        return b"<html>502 Bad Gateway</html>" if left[0] >= 0 else raw

    proxy.rewrite_body = html
    recovered(cli, devnet, setup.config)


def test_bodies_that_are_never_json_leave_the_chain_unread(cli: Any, proxy: RpcProxy, setup: Setup) -> None:
    proxy.rewrite_body = lambda raw: b"<html>502 Bad Gateway</html>"
    unread(cli, setup.config, "answered non-JSON: <html>502 Bad Gateway</html>")


# ----------------------------------------------------------------------------- batches


def test_a_batch_answered_in_another_order_is_matched_by_id(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup
) -> None:
    shuffled: list[int] = []

    def shuffle(requests: list[Any], responses: list[Any]) -> list[Any]:
        out = list(reversed(responses)) if len(responses) > 1 else responses
        random.Random(7).shuffle(out)
        shuffled.append(len(out))
        return out

    proxy.rewrite_batch = shuffle
    recovered(cli, devnet, setup.config)
    assert any(n > 1 for n in shuffled), "batches of several calls went through the shuffle"


def test_a_batch_answered_short_once_is_asked_again(cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup) -> None:
    left = [1]

    def drop_last(requests: list[Any], responses: list[Any]) -> list[Any]:
        left[0] -= 1
        return responses[:-1] if left[0] >= 0 else responses

    proxy.rewrite_batch = drop_last
    recovered(cli, devnet, setup.config)


@pytest.mark.parametrize("fault", ["fewer", "duplicated"])
def test_a_batch_always_answered_wrong_leaves_the_chain_unread(
    cli: Any, proxy: RpcProxy, setup: Setup, fault: str
) -> None:
    def tamper(requests: list[Any], responses: list[Any]) -> list[Any]:
        if fault == "fewer":
            return responses[:-1]
        return [responses[0], {**responses[1], "id": responses[0]["id"]}, *responses[2:]]

    proxy.rewrite_batch = tamper
    says = "answered a batch of 2 with 1" if fault == "fewer" else "twice in one batch"
    unread(cli, setup.config, proxy.url, says)


def test_a_block_answered_from_two_blocks_back_is_never_read(
    cli: Any, devnet: Devnet, proxy: RpcProxy, setup: Setup
) -> None:
    devnet.mine(2)
    head = devnet.head()

    def two_blocks_back(request: Answer, response: Answer) -> Answer:
        asked = int(request["params"][0], 16)
        return {**response, "result": proxy.upstream("eth_getBlockByNumber", [hex(asked - 2), False])}

    proxy.on("eth_getBlockByNumber", two_blocks_back)
    unread(cli, setup.config, f"eth_getBlockByNumber({hex(head)}) answered block {hex(head - 2)}")


# ----------------------------------------------------------------------------- two sources


@pytest.fixture
def crossed(cli: Any, devnet: Devnet, proxy: RpcProxy, second: RpcProxy, setup: Setup) -> Setup:
    """Two endpoints, cross-checked; the first run is clean and sets the scan's checkpoint."""
    setup.set_chain(rpc_urls=[proxy.url, second.url], cross_check=True)
    doc = recovered(cli, devnet, setup.config)
    assert [s["endpoint"] for s in doc["chains"]["eth"]["sources"]] == [proxy.url, second.url]
    return setup


def _deposit(setup: Setup, cli: Any, units: int) -> None:
    """A booked deposit of ``units`` USDC base units into seg-1 (a Transfer log in a new block)."""
    custody = setup.custody
    custody.net.mint(custody.usdc, custody.wallets["seg-1"], units)
    books = custody.book([("seg-1", "USDC", f"{units // 10**6}.{units % 10**6:06d}", "deposit")])
    assert cli("--config", str(setup.config), "books", "import", str(books)).code == 0


def _disagreements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in doc["breaks"] if b["kind"] == "source_disagreement"]


def test_stale_balances_on_one_endpoint_are_a_source_disagreement(
    cli: Any, devnet: Devnet, proxy: RpcProxy, second: RpcProxy, crossed: Setup
) -> None:
    _deposit(crossed, cli, 2_000_000)

    def previous_block(request: Answer, response: Answer) -> Answer:
        call, at = request["params"]
        number = int(proxy.upstream("eth_getBlockByHash", [at["blockHash"], False])["number"], 16)
        return {**response, "result": second.upstream("eth_call", [call, hex(number - 1)])}

    second.on("eth_call", previous_block)
    doc = unread(cli, crossed.config, proxy.url, second.url, "disagree")

    [found] = _disagreements(doc)
    assert (found["severity"], found["status"], found["wallet"], found["asset"]) == (
        "critical",
        "open",
        "seg-1",
        "USDC",
    )
    assert f"{proxy.url} says 1000002500000, {second.url} says 1000000500000" in found["detail"]
    assert doc["exit_code"] == 2

    second.reset()
    doc = recovered(cli, devnet, crossed.config, usdc=1_000_002_500_000)
    [resolved] = _disagreements(doc)
    assert resolved["id"] == found["id"] and resolved["status"] == "resolved", "the endpoints agree again"


def test_empty_logs_on_one_endpoint_are_caught_by_the_spot_check(
    cli: Any, devnet: Devnet, proxy: RpcProxy, second: RpcProxy, crossed: Setup
) -> None:
    _deposit(crossed, cli, 3_000_000)
    second.on("eth_getLogs", lambda request, response: {**response, "result": []})

    doc = unread(cli, crossed.config, "disagree", "custody logs of blocks")
    [found] = _disagreements(doc)
    assert (found["severity"], found["wallet"], found["asset"]) == ("critical", "*", None)
    assert f"{second.url} says none" in found["detail"] and f"{proxy.url} says 1 log(s)" in found["detail"]

    second.reset()
    doc = recovered(cli, devnet, crossed.config, usdc=1_000_003_500_000)
    assert [b["status"] for b in _disagreements(doc)] == ["resolved"]


def test_logs_hidden_by_both_endpoints_are_caught_against_block_receipts(
    cli: Any, proxy: RpcProxy, second: RpcProxy, crossed: Setup
) -> None:
    _deposit(crossed, cli, 4_000_000)
    for p in (proxy, second):
        p.on("eth_getLogs", lambda request, response: {**response, "result": []})

    doc = unread(cli, crossed.config, "eth_getLogs against eth_getBlockReceipts")
    [found] = _disagreements(doc)
    assert f"{proxy.url} says none" in found["detail"] and f"{second.url} says 1 log(s)" in found["detail"]
    assert any("eth_getBlockReceipts" in r.methods for r in second.seen())


def test_a_run_records_its_sources_and_runs_show_prints_them(
    cli: Any, proxy: RpcProxy, second: RpcProxy, crossed: Setup
) -> None:
    code, doc, _ = run_json(cli, crossed.config)
    assert code == 0
    shown = json.loads(cli("--config", str(crossed.config), "runs", "show", doc["run_id"], "--json").stdout)
    sources = shown["chains"]["eth"]["sources"]
    assert [s["endpoint"] for s in sources] == [proxy.url, second.url]
    assert all(s["client_version"].startswith("anvil/") for s in sources)
    ledger = Ledger(crossed.scenario.db_url)
    try:
        [chain] = ledger.get_run(doc["run_id"]).chains
    finally:
        ledger.close()
    assert [endpoint for endpoint, _version in chain.sources] == [proxy.url, second.url]


# ----------------------------------------------------------------------------- the node dies


def test_a_node_killed_mid_run_leaves_it_incomplete_and_the_next_run_recovers(cli: Any, tmp_path: Path) -> None:
    """Anvil is stopped (SIGTERM) while the run scans, as a supervisor restarting it would; the
    run is incomplete. Restarted from the state it saved (its blocks, hashes and past states, as
    a node whose database survives), the next run is complete and correct."""
    state = tmp_path / "anvil-state.json"
    history = ["--preserve-historical-states"]
    node = AnvilNode.start(chain_id=31337, extra_args=[*history, "--dump-state", str(state)])
    restarted: AnvilNode | None = None
    try:
        net = Devnet(node.url)
        net.install_multicall3()
        with RpcProxy(node.url) as proxy:
            scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
            make_custody(net, scenario, proxy.url, rpc_retries=1)
            config = scenario.write()
            load(cli, config)
            code, doc, _ = run_json(cli, config)
            assert code == 0

            def kill_node(request: Answer, response: Answer) -> Answer:
                if node.process.poll() is None:
                    node.process.send_signal(signal.SIGTERM)
                    node.process.wait(timeout=10)
                return response

            net.mine()
            head = net.head()
            proxy.on("eth_getLogs", kill_node)
            unread(cli, config, proxy.url, "HTTP 502")
            assert node.process.poll() is not None and state.exists(), "the node really stopped mid-run"

            restarted = AnvilNode.start(chain_id=31337, extra_args=[*history, "--load-state", str(state)])
            proxy.reset()
            proxy.upstream_url = restarted.url
            code, doc, stderr = run_json(cli, config)
            assert code == 0 and doc["status"] == "complete", stderr
            assert doc["chains"]["eth"]["block_number"] == head
            assert all(p["difference"] == "0" for p in doc["positions"])
    finally:
        node.stop()
        if restarted is not None:
            restarted.stop()


# ----------------------------------------------------------------------------- stopping


def test_closing_the_transport_cuts_a_request_in_flight(devnet: Devnet, proxy: RpcProxy) -> None:
    """What a stopped run relies on: a read waiting on a silent node ends at once, not after
    its timeout."""
    proxy.delay(30)
    rpc = HttpRpc(proxy.url, timeout=30)
    failure: list[BaseException] = []

    def ask() -> None:
        try:
            rpc.request("eth_blockNumber", [])
        except RpcUnavailable as exc:
            failure.append(exc)

    thread = threading.Thread(target=ask)
    started = time.monotonic()
    thread.start()
    while not proxy.seen():
        time.sleep(0.01)
    rpc.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert failure and "stopped" in str(failure[0])
