"""Following the head (`[watch]`) end to end: the real daemon process, the session's Anvil with
manual control of its blocks (each theft is mined at once, further blocks by `evm_mine`), a real
HTTP webhook receiver, a TCP proxy cutting the node, and Anvil's own `anvil_reorg`. Everything
is read through the webhooks, the CLI and /metrics; every wait is on an observable effect with a
deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.daemons import DaemonProcess, free_port, scrape, wait_for
from tests.integration.helpers import Custody, load, make_custody
from tests.integration.tcpproxy import TcpProxy
from tests.integration.test_alerts import receiver  # noqa: F401 - the webhook receiver fixture

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _watch_toml(hook: str, poll: str = "200ms", max_lag: str = "2m", metrics: int | None = None) -> str:
    text = f'\n[watch]\nenabled = true\npoll_interval = "{poll}"\nmax_lag = "{max_lag}"\n'
    text += f'\n[[alerts.webhooks]]\nurl = "{hook}"\nmin_severity = "warning"\n'
    if metrics is not None:
        text += f'\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
    return text


def _events(receiver: Any, event: str) -> list[dict[str, Any]]:  # noqa: F811 - the fixture's value
    bodies = [json.loads(r.body) for r in receiver.at("/hook")]
    return [b for b in bodies if b["event"] == event]


def _thefts(receiver: Any) -> list[dict[str, Any]]:  # noqa: F811
    return [b["break"] for b in _events(receiver, "break.opened") if b["break"]["kind"] == "unauthorized_transfer"]


def _start(cli: Any, config: Path) -> DaemonProcess:
    daemon = DaemonProcess(config)
    daemon.wait_for_line(r"event=watch_judged chain=eth", seconds=30)  # surveillance begun at the head
    return daemon


def _setup(cli: Any, devnet: Devnet, scenario: Scenario, url: str, extra: str, **chain: Any) -> tuple[Custody, Path]:
    custody = make_custody(devnet, scenario, url, **chain)
    scenario.extra = extra
    config = scenario.write()
    load(cli, config)
    return custody, config


def _show(cli: Any, config: Path, break_id: str) -> dict[str, Any]:
    shown = cli("--config", str(config), "breaks", "show", break_id, "--json")
    assert shown.code in (0, 1), shown.stderr
    doc: dict[str, Any] = json.loads(shown.stdout)
    return doc


def _show_text(cli: Any, config: Path, break_id: str) -> str:
    shown = cli("--config", str(config), "breaks", "show", break_id)
    return str(shown.stdout)


def test_a_theft_is_alerted_tentative_within_seconds_once_then_confirmed_and_never_judged_again(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    port = free_port()
    custody, config = _setup(
        cli, devnet, scenario, devnet.url, _watch_toml(receiver.url("/hook"), metrics=port), confirmations=2
    )
    daemon = _start(cli, config)
    try:
        tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 5)
        mined = time.monotonic()
        [opened] = wait_for(lambda: _thefts(receiver), "the theft's break.opened", seconds=15)
        took = time.monotonic() - mined
        assert took < 5, f"alerted {took:.1f}s after its block (poll 200ms)"
        assert (opened["tx_hash"], opened["tentative"], opened["severity"]) == (tx, True, "critical")

        devnet.mine()  # the theft's block now has 2 blocks on top of it
        [confirmed] = wait_for(lambda: _events(receiver, "break.confirmed"), "break.confirmed", seconds=15)
        assert confirmed["break"]["id"] == opened["id"] and confirmed["break"]["tentative"] is False

        metrics = wait_for(
            lambda: (m := scrape(port)).get(("reconciler_detection_latency_seconds_count", (("chain", "eth"),))) and m,
            "the latency histogram",
            seconds=10,
        )
        assert metrics[("reconciler_watch_head", (("chain", "eth"),))] >= devnet.head() - 1
        assert 0 < metrics[("reconciler_detection_latency_seconds_sum", (("chain", "eth"),))] < 5
        healthy = cli("--config", str(config), "health")
        assert healthy.code == 0, healthy.stderr
    finally:
        daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log

    # The scheduled scan starts where the watcher stopped: it judges nothing twice.
    scan = cli("--config", str(config), "scan", "--json")
    assert scan.code == 1, scan.stderr  # the open critical break, not a failure
    doc = json.loads(scan.stdout)
    assert [b["id"] for b in doc["breaks"] if b["kind"] == "unauthorized_transfer"] == [opened["id"]]
    eth = doc["chains"]["eth"]
    assert (eth["observed"], eth["from_block"]) == (0, eth["to_block"] + 1), "the range was the watcher's"
    assert len(_thefts(receiver)) == 1, "exactly one break.opened for the theft"
    shown = _show(cli, config, opened["id"])
    assert shown["break"]["tentative"] is False
    assert [e["event"] for e in shown["events"]] == ["opened", "confirmed"]
    listed = cli("--config", str(config), "breaks", "list")
    assert listed.code == 0 and "unauthorized_transfer" in listed.stdout and "tentative" not in listed.stdout
    audit = cli("--config", str(config), "breaks", "verify-audit")
    assert audit.code == 0, audit.stdout + audit.stderr


def test_a_tentative_theft_reorged_away_is_retracted_never_confirmed_and_the_trail_verifies(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    custody, config = _setup(cli, devnet, scenario, devnet.url, _watch_toml(receiver.url("/hook")), confirmations=3)
    daemon = _start(cli, config)
    try:
        devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 7)
        [opened] = wait_for(lambda: _thefts(receiver), "the theft's break.opened", seconds=15)
        assert opened["tentative"] is True
        head = devnet.head()
        tentative = json.loads(cli("--config", str(config), "breaks", "list", "--json").stdout)
        assert [b["tentative"] for b in tentative["breaks"] if b["id"] == opened["id"]] == [True]
        assert "tentative" in cli("--config", str(config), "breaks", "list").stdout
        assert "tentative" in _show_text(cli, config, opened["id"])

        # The theft's block and the one after it replaced by empty ones, at the same height: no
        # new head, yet the watcher sees its head replaced.
        devnet.rpc("anvil_reorg", [2, []])
        [retracted] = wait_for(lambda: _events(receiver, "break.retracted"), "break.retracted", seconds=15)
        assert (retracted["break"]["id"], retracted["reason"]) == (opened["id"], "reorged")
        assert retracted["break"]["status"] == "resolved"

        devnet.mine(4)  # deep enough for a confirmation, had the block stayed
        daemon.wait_for_line(rf"event=watch_judged chain=eth run_id=\S+ from=\S+ to={head + 4}\b", seconds=15)
    finally:
        daemon.stop()
    assert _events(receiver, "break.confirmed") == [], "a retracted break is never confirmed"
    shown = _show(cli, config, opened["id"])
    assert shown["break"]["status"] == "resolved"
    assert [e["event"] for e in shown["events"]] == ["opened", "retracted"]
    assert shown["events"][1]["note"].startswith("reorged: ")
    audit = cli("--config", str(config), "breaks", "verify-audit")
    assert audit.code == 0, audit.stdout + audit.stderr


@SQLITE_ONLY
def test_thefts_while_the_node_is_cut_off_are_alerted_after_recovery_and_health_sees_the_lag(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    node = urlparse(devnet.url)
    assert node.hostname is not None and node.port is not None
    with TcpProxy(node.hostname, node.port) as proxy:
        custody, config = _setup(
            cli,
            devnet,
            scenario,
            f"http://127.0.0.1:{proxy.port}",
            _watch_toml(receiver.url("/hook"), max_lag="1s"),
            rpc_timeout=2,
            rpc_retries=0,
        )
        daemon = _start(cli, config)
        try:
            proxy.cut()
            daemon.wait_for_line(r"event=watch_node_unreachable chain=eth", seconds=15)
            first = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 11)
            second = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 13)
            lagging = wait_for(
                lambda: (h := cli("--config", str(config), "health")).code == 1 and h, "health failing", seconds=10
            )
            assert "watch: chain eth" in lagging.stderr, lagging.stderr
            proxy.restore()
            daemon.wait_for_line(r"event=watch_node_back chain=eth", seconds=15)
            thefts = wait_for(lambda: len(_thefts(receiver)) == 2 and _thefts(receiver), "both thefts", seconds=15)
            assert sorted(t["tx_hash"] for t in thefts) == sorted([first, second])
            assert all(t["tentative"] is False for t in thefts), "confirmations = 0: confirmed at once"
            wait_for(lambda: cli("--config", str(config), "health").code == 0, "health back", seconds=10)
            doc = json.loads(cli("--config", str(config), "health", "--json").stdout)
            watched = doc["watch"]["eth"]
            assert watched["watched_head"] == watched["node_head"] == devnet.head()
            assert 0 <= watched["caught_up_seconds_ago"] < 10
        finally:
            daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log


@SQLITE_ONLY
def test_new_heads_subscription_triggers_and_a_dropped_one_reconnects_while_polling_goes_on(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    node = urlparse(devnet.url)
    assert node.hostname is not None and node.port is not None
    with TcpProxy(node.hostname, node.port) as proxy:
        custody, config = _setup(
            cli,
            devnet,
            scenario,
            devnet.url,
            _watch_toml(receiver.url("/hook"), poll="3s"),
            ws_url=f"ws://127.0.0.1:{proxy.port}",
        )
        daemon = _start(cli, config)
        try:
            daemon.wait_for_line(r"event=watch_subscribed chain=eth endpoint=ws://127\.0\.0\.1:\d+ connections=1")
            tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 17)
            wait_for(lambda: [t for t in _thefts(receiver) if t["tx_hash"] == tx], "the theft (subscription)", 10)
            proxy.cut()
            daemon.wait_for_line(r"event=watch_subscription_dropped chain=eth", seconds=15)
            dropped = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 19)
            wait_for(lambda: [t for t in _thefts(receiver) if t["tx_hash"] == dropped], "the theft (polling)", 15)
            proxy.restore()
            daemon.wait_for_line(r"event=watch_subscribed chain=eth endpoint=\S+ connections=2", seconds=15)
        finally:
            daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log
    assert len(_thefts(receiver)) == 2


@SQLITE_ONLY
def test_a_slow_chain_delays_no_other_chains_alert(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    from chains.evm.devnet import AnvilNode
    from tests.integration.helpers import new_address
    from tests.integration.rpcproxy import RpcProxy

    with AnvilNode.start(chain_id=31338) as other, RpcProxy(other.url) as proxy:
        slow_net = Devnet(other.url)
        custody = make_custody(devnet, scenario, devnet.url)
        scenario.add_chain("slow", proxy.url, 31338, rpc_timeout=20)
        scenario.add_native("SETH", "slow")
        scenario.add_wallet("slow-1", "slow", new_address())
        scenario.extra = _watch_toml(receiver.url("/hook"))
        config = scenario.write()
        load(cli, config)
        daemon = DaemonProcess(config)
        try:
            daemon.wait_for_line(r"event=watch_judged chain=eth", seconds=30)
            daemon.wait_for_line(r"event=watch_judged chain=slow", seconds=30)

            def slowly(request: Any, response: Any) -> Any:
                time.sleep(9)  # far longer than a watched alert takes, even on a loaded machine
                return response

            proxy.on("eth_getBlockByNumber", slowly)  # the head answers at once; judging it crawls
            slow_net.mine()
            wait_for(
                lambda: any("eth_getBlockByNumber" in r.methods for r in proxy.seen()[-5:]),
                "the slow chain's watched head being judged",
                seconds=10,
            )
            slow_judged = sum("event=watch_judged chain=slow" in line for line in daemon.lines())
            tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 23)
            mined = time.monotonic()
            wait_for(lambda: [t for t in _thefts(receiver) if t["tx_hash"] == tx], "the eth theft", seconds=15)
            took = time.monotonic() - mined
            assert took < 6, f"the eth theft waited {took:.1f}s on the slow chain"
            still = sum("event=watch_judged chain=slow" in line for line in daemon.lines())
            assert still == slow_judged, "the slow chain's head was still being judged meanwhile"
        finally:
            proxy.reset()
            daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log


@SQLITE_ONLY
def test_a_head_that_goes_backwards_is_waited_out_and_nothing_is_skipped(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    from tests.integration.rpcproxy import RpcProxy

    with RpcProxy(devnet.url) as proxy:
        custody, config = _setup(cli, devnet, scenario, proxy.url, _watch_toml(receiver.url("/hook")))
        daemon = _start(cli, config)
        try:
            behind = hex(devnet.head() - 3)

            def backwards(request: Any, response: Any) -> Any:
                return {**response, "result": behind}

            proxy.on("eth_blockNumber", backwards)  # a node (or a load balancer's other node) behind
            daemon.wait_for_line(r"event=watch_head_backwards chain=eth head=\d+ watched=\d+ action=wait", seconds=10)
            tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 29)
            proxy.reset()
            [theft] = wait_for(lambda: _thefts(receiver), "the theft once the head is back", seconds=15)
            assert theft["tx_hash"] == tx
        finally:
            daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log
    assert len(_thefts(receiver)) == 1


@SQLITE_ONLY
def test_a_slow_scheduled_run_delays_no_watched_alert(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811
) -> None:
    from chains.evm.devnet import AnvilNode
    from tests.integration.helpers import new_address
    from tests.integration.rpcproxy import RpcProxy

    with AnvilNode.start(chain_id=31338) as other, RpcProxy(other.url) as proxy:
        custody = make_custody(devnet, scenario, devnet.url)
        scenario.add_chain("slow", proxy.url, 31338, rpc_timeout=20, read_path="batch")
        scenario.add_native("SETH", "slow")
        scenario.add_wallet("slow-1", "slow", new_address())
        scenario.extra = _watch_toml(receiver.url("/hook")) + '\n[schedule]\nrun = "2s"\n'
        config = scenario.write()
        load(cli, config)
        daemon = DaemonProcess(config)
        try:
            daemon.wait_for_line(r"event=watch_judged chain=eth", seconds=30)
            daemon.wait_for_line(r"event=job_fired job=run", seconds=30)  # the catch-up run, done

            def slowly(request: Any, response: Any) -> Any:
                time.sleep(8)  # far longer than a watched alert takes, even on a loaded machine
                return response

            proxy.on("eth_getBalance", slowly)  # the run's balance reads of the slow chain crawl
            def finished_runs() -> int:  # a firing skipped while the run crawls is logged too: not counted
                return sum("event=job_fired job=run" in ln and "outcome=skipped" not in ln for ln in daemon.lines())

            started = sum("trigger=schedule job=run" in line for line in daemon.lines())
            wait_for(
                lambda: sum("trigger=schedule job=run" in line for line in daemon.lines()) > started,
                "the next scheduled run",
                seconds=10,
            )
            # Counted once that run (begun after the slow reads were set up) is under way: runs
            # are one at a time, so a run begun earlier has finished by now and is not mistaken
            # for it (the catch-up line waited for above may have been a skipped firing's).
            fired = finished_runs()
            wait_for(lambda: any("eth_getBalance" in r.methods for r in proxy.seen()[-3:]), "its slow reads", 10)
            tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 31)
            mined = time.monotonic()
            wait_for(lambda: [t for t in _thefts(receiver) if t["tx_hash"] == tx], "the eth theft", seconds=15)
            took = time.monotonic() - mined
            assert took < 5, f"the eth theft waited {took:.1f}s on the scheduled run"
            assert finished_runs() == fired, "still running"
        finally:
            proxy.reset()
            daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log
    assert len(_thefts(receiver)) == 1
