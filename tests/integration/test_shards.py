"""A scheduled firing shared by daemons (`[schedule] shards`): real daemon processes on one
PostgreSQL ledger and the session's Anvil, each daemon behind its own JSON-RPC proxy so a test
decides which one is slow, hangs or fails.

The daemon started first claims the firing (the catch-up of an hourly schedule) and coordinates
it; the others, started once its run exists, help with its units.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.daemons import DaemonProcess, scheduled_runs, wait_for
from tests.integration.helpers import closed_port_url, load, make_custody, new_address
from tests.integration.rpcproxy import RpcProxy

pytestmark = pytest.mark.postgres
EXTRA_WALLETS = 10  # with seg-1 and house-1: 12 wallets x 3 assets


def _units(url: str) -> list[dict[str, Any]]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                sqlalchemy.text(
                    "SELECT run_id, chain, shard, shards, status, attempts, pid, error, elapsed_ms "
                    "FROM run_unit ORDER BY chain, shard"
                )
            ).mappings()
        ]
    engine.dispose()
    return rows


def _scalar(url: str, sql: str, **params: Any) -> Any:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sqlalchemy.text(sql), params).scalar()
    engine.dispose()
    return value


class Fleet:
    """A 12-wallet custody, its ledger loaded, a planted break in shard 1 (x05 booked 1 USDC
    more than it holds), and one configuration per daemon, each with its own proxy."""

    def __init__(
        self,
        cli: Any,
        devnet: Devnet,
        tmp_path: Path,
        pg_url: str,
        proxies: list[RpcProxy],
        shards: int,
        unit_timeout: str | None = None,
    ):
        self.url = pg_url
        scenario = Scenario(folder=tmp_path, db_url=pg_url)
        custody = make_custody(devnet, scenario, proxies[0].url, rpc_retries=0, rpc_timeout=60)
        for i in range(EXTRA_WALLETS):
            scenario.add_wallet(f"x{i:02d}", "eth", new_address(), "futures")
        unit_line = f'unit_timeout = "{unit_timeout}"\n' if unit_timeout else ""
        scenario.extra = (
            f'\n[schedule]\ntimezone = "UTC"\nrun = "1h"\nshards = {shards}\n{unit_line}'
            # nothing listens there: the alerts stay queued, where the test counts them
            f'\n[[alerts.webhooks]]\nurl = "{closed_port_url()}/hook"\nmin_severity = "error"\n'
        )
        config = scenario.write()
        load(cli, config)
        extra = custody.book([("x05", "USDC", "1", "deposit")], name="planted.csv")
        assert cli("--config", str(config), "books", "import", str(extra)).code == 0
        self.cli = cli
        self.configs = [config]
        text = config.read_text()
        self.direct = tmp_path / "direct" / "reconciler.toml"  # straight to the node: for a run in one process
        self.direct.parent.mkdir()
        self.direct.write_text(text.replace(proxies[0].url, devnet.url))
        for n, proxy in enumerate(proxies[1:], start=1):
            folder = tmp_path / f"daemon{n}"
            folder.mkdir()
            other = folder / "reconciler.toml"
            other.write_text(text.replace(proxies[0].url, proxy.url))
            self.configs.append(other)

    def run(self) -> dict[str, Any]:
        def finished() -> list[dict[str, Any]]:
            return [r for r in scheduled_runs(self.url) if r["status"] != "running"]

        runs = wait_for(finished, "the firing's run", 60)
        assert len(runs) == 1, runs
        return runs[0]


def _start_coordinator(config: Path) -> DaemonProcess:
    daemon = DaemonProcess(config)
    daemon.wait_for_line(r"event=units_published run_id=\S+ chain=eth shards=\d+", 30)
    return daemon


@pytest.mark.parametrize("daemons", [2, 3])
def test_daemons_share_a_firing_each_unit_done_once_one_document_one_set_of_breaks(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str, daemons: int
) -> None:
    shards = 2 * daemons
    with RpcProxy(devnet.url) as slow, RpcProxy(devnet.url) as fast_1, RpcProxy(devnet.url) as fast_2:
        proxies = [slow, fast_1, fast_2][:daemons]
        fleet = Fleet(cli, devnet, tmp_path, pg_url, proxies, shards)
        slow.delay(0.4)  # the coordinator's every request: its first unit outlasts the helpers' start
        running: list[DaemonProcess] = []
        try:
            running.append(_start_coordinator(fleet.configs[0]))
            running += [DaemonProcess(config) for config in fleet.configs[1:]]
            run = fleet.run()
            for helper in running[1:]:
                helper.wait_for_line(r"event=job_fired job=run .*outcome=skipped .*units done here", 30)
        finally:
            for d in running:
                d.ensure_gone()
    units = _units(fleet.url)
    assert [(u["shard"], u["status"], u["attempts"]) for u in units] == [(k, "done", 1) for k in range(shards)], (
        run,
        running[0].log[-3000:],
    )
    assert {u["run_id"] for u in units} == {run["id"]}
    pids = {u["pid"] for u in units}
    assert running[0].pid in pids and len(pids) >= 2, (pids, [d.pid for d in running])
    assert run["status"] == "complete", run
    # One document, as `run --json` prints it: every position once, the planted break once.
    shown = cli("--config", str(fleet.configs[0]), "runs", "show", run["id"], "--json")
    doc = json.loads(shown.stdout)
    wallets = ["seg-1", "house-1", *(f"x{i:02d}" for i in range(EXTRA_WALLETS))]
    assert [(p["wallet"], p["asset"]) for p in doc["positions"]] == [
        (w, a) for w in wallets for a in ("USDC", "TMMF", "ETH")
    ]
    assert [(b["kind"], b["wallet"], b["asset"], b["status"]) for b in doc["breaks"]] == [
        ("balance_mismatch", "x05", "USDC", "open")
    ]
    assert _scalar(fleet.url, 'SELECT count(*) FROM "break"') == 1
    assert _scalar(fleet.url, "SELECT count(*) FROM break_event WHERE event = 'opened'") == 1
    assert cli("--config", str(fleet.configs[0]), "breaks", "verify-audit").code == 0
    # Alerts queued once: one break.opened for the one break, whatever the daemons.
    assert _scalar(fleet.url, "SELECT count(*) FROM alert_outbox WHERE event = 'break.opened'") == 1
    # The same inputs run in one process give the same positions.
    local = cli("--config", str(fleet.direct), "run", "--json")
    assert json.loads(local.stdout)["positions"] == doc["positions"]


def _a_helper_holding_a_unit(fleet: Fleet, **env: str) -> tuple[DaemonProcess, DaemonProcess]:
    """The coordinator started, then a helper (with ``env``), once the helper holds a unit."""
    coordinator = _start_coordinator(fleet.configs[0])
    helper = DaemonProcess(fleet.configs[1], **env)
    try:
        wait_for(
            lambda: [u for u in _units(fleet.url) if u["pid"] == helper.pid and u["status"] == "running"],
            "a unit held by the helper",
            30,
        )
    except BaseException:
        for d in (coordinator, helper):
            d.ensure_gone()
        raise
    return coordinator, helper


def _assert_taken_over(fleet: Fleet, coordinator: DaemonProcess, run: dict[str, Any]) -> None:
    """The helper's unit was done again by the coordinator (a second attempt), the run is
    complete with its one planted break."""
    units = _units(fleet.url)
    assert all(u["status"] == "done" and u["pid"] == coordinator.pid for u in units), units
    assert sorted(u["attempts"] for u in units) == [1, 1, 2]
    assert run["status"] == "complete", run
    assert _scalar(fleet.url, 'SELECT count(*) FROM "break"') == 1


def test_a_unit_whose_daemon_is_killed_mid_unit_is_claimed_again_and_the_run_completes(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    with RpcProxy(devnet.url) as coordinator_rpc, RpcProxy(devnet.url) as hanging:
        fleet = Fleet(cli, devnet, tmp_path, pg_url, [coordinator_rpc, hanging], shards=3)
        coordinator_rpc.delay(0.4)
        hanging.delay(120)  # the helper's unit never gets an answer
        coordinator = helper = None
        try:
            coordinator, helper = _a_helper_holding_a_unit(fleet)
            helper.kill()  # SIGKILL mid-unit
            run = fleet.run()
            coordinator.wait_for_line(r"event=unit_reclaimed .*reason='process \d+ on \S+ is gone'", 10)
        finally:
            for d in (coordinator, helper):
                if d is not None:
                    d.ensure_gone()
    _assert_taken_over(fleet, coordinator, run)


def test_a_unit_held_by_a_hung_daemon_is_claimed_again_after_the_unit_timeout(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    """A helper that lives on but never gets an answer (its heartbeat goes on): after
    `[schedule] unit_timeout` its unit is taken by the claimant, the run completes without it,
    and the helper's late result, if any, is not kept."""
    with RpcProxy(devnet.url) as coordinator_rpc, RpcProxy(devnet.url) as hanging:
        fleet = Fleet(cli, devnet, tmp_path, pg_url, [coordinator_rpc, hanging], shards=3, unit_timeout="4s")
        coordinator_rpc.delay(0.4)
        hanging.delay(120)  # the helper's unit never gets an answer; its process lives
        coordinator = helper = None
        try:
            coordinator, helper = _a_helper_holding_a_unit(fleet)
            helper_pid = helper.pid
            run = fleet.run()
            coordinator.wait_for_line(
                rf"event=unit_reclaimed .*reason='held by \S+:{helper_pid} for \d+s, longer than "
                r"\[schedule\] unit_timeout \(4s\)'",
                10,
            )
            assert helper.proc.poll() is None, "the helper still lives: it was hung, not gone"
        finally:
            for d in (coordinator, helper):
                if d is not None:
                    d.ensure_gone()
    _assert_taken_over(fleet, coordinator, run)


def test_a_daemon_stopped_by_sigterm_hands_its_unit_back_and_the_claimant_does_it(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    """SIGTERM mid-unit: the helper stops at its next chunk, hands the unit back (pending, not
    failed, not left held) and exits cleanly; the claimant does the unit, and the run is
    complete with its one break."""
    with RpcProxy(devnet.url) as coordinator_rpc, RpcProxy(devnet.url) as slow:
        fleet = Fleet(cli, devnet, tmp_path, pg_url, [coordinator_rpc, slow], shards=3)
        coordinator_rpc.delay(0.4)
        slow.delay(0.5)  # the helper's reads answer, slowly: a unit of 4 one-wallet chunks lasts
        coordinator = helper = None
        try:
            coordinator, helper = _a_helper_holding_a_unit(fleet, RECONCILER_CHUNK_WALLETS="1")
            took = helper.stop()  # SIGTERM
            released = helper.wait_for_line(r"event=unit_released run_id=\S+ chain=eth shard=(\d)", 5)
            run = fleet.run()
        finally:
            for d in (coordinator, helper):
                if d is not None:
                    d.ensure_gone()
    assert helper.proc.returncode == 0, helper.log[-2000:]
    assert took < 10, f"SIGTERM took {took:.1f}s"
    shard = int(released.group(1))
    assert [u["attempts"] for u in _units(fleet.url) if u["shard"] == shard] == [2]
    _assert_taken_over(fleet, coordinator, run)


def test_a_unit_that_fails_makes_the_run_incomplete_naming_it(
    cli: Any, devnet: Devnet, tmp_path: Path, pg_url: str
) -> None:
    with RpcProxy(devnet.url) as coordinator_rpc, RpcProxy(devnet.url) as broken:
        fleet = Fleet(cli, devnet, tmp_path, pg_url, [coordinator_rpc, broken], shards=3)
        coordinator_rpc.delay(0.4)
        broken.fail(503, "upstream unavailable")
        coordinator = helper = None
        try:
            coordinator = _start_coordinator(fleet.configs[0])
            helper = DaemonProcess(fleet.configs[1])
            run = fleet.run()
            helper.wait_for_line(r"event=unit_failed run_id=\S+ chain=eth shard=(\d)/3", 30)
        finally:
            for d in (coordinator, helper):
                if d is not None:
                    d.ensure_gone()
    failed = [u for u in _units(fleet.url) if u["status"] == "failed"]
    assert failed and all(u["pid"] == helper.pid and u["attempts"] == 1 for u in failed), failed
    assert run["status"] == "incomplete"
    assert re.search(rf"unit eth/{failed[0]['shard']} failed on \S+:{helper.pid}: .*503", run["reason"]), run["reason"]
    # Nothing was judged clean: the chain is unread, no break was resolved or opened by the run.
    assert _scalar(fleet.url, 'SELECT count(*) FROM "break"') == 0
