"""Unit worker processes (reconciler.app.workers): a chain of several chunks read and judged by
forked processes, taken back in chunk order.

What must hold, each with a fault from the network side (a proxy in front of the real node):

- an answer a worker cannot read fails the chain with the words a run in one process says;
- a worker killed mid-run leaves the chain unread: never a complete run without its wallets,
  and no process left behind;
- a run stopped by SIGTERM while its workers read stops them;
- a worker that sends nothing for ``[schedule] unit_timeout`` is stopped, its chain unread.

Runs that kill or signal a process are real processes; the others run the console command in
this process (the workers are forked from it). SQLite ledgers: the workers' ledger reads are
those of the streamed golden test, which runs on both databases.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.daemons import RECONCILER, wait_for
from tests.integration.helpers import Custody, load, make_custody, new_address, run_json
from tests.integration.rpcproxy import RpcProxy

HELD = 120  # seconds a held read waits to be released (the tests release it when done)
UNITS = {"RECONCILER_CHUNK_WALLETS": "1", "RECONCILER_UNIT_WORKERS": "2"}  # one wallet per unit, two workers


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    with RpcProxy(devnet.url) as p:
        yield p


@pytest.fixture
def custody(cli: Any, devnet: Devnet, tmp_path: Path, proxy: RpcProxy) -> Custody:
    """Two wallets (two units), booked exactly, read through the proxy."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, proxy.url)
    load(cli, scenario.write())
    return custody


def _config(custody: Custody) -> Path:
    return custody.scenario.folder / "reconciler.toml"


def _names(custody: Custody, wallet: str) -> str:
    """The wallet's address as it appears inside calldata (lowercase, no 0x)."""
    return custody.wallets[wallet][2:].lower()


def _calls_about(request: dict[str, Any], needle: str) -> bool:
    params = request.get("params") or [{}]
    call = params[0] if isinstance(params[0], dict) else {}
    return needle in str(call.get("data", "")).lower()


def test_a_worker_fails_its_chain_with_the_words_of_a_run_in_one_process(
    cli: Any, custody: Custody, proxy: RpcProxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    house = _names(custody, "house-1")  # the second unit's wallet: read by the second worker

    def garbled(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "result": "0x1234"} if _calls_about(request, house) else response

    proxy.on("eth_call", garbled)
    caplog.set_level(logging.INFO, logger="reconciler.app.run")
    errors = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "1")
        monkeypatch.setenv("RECONCILER_UNIT_WORKERS", workers)
        caplog.clear()
        code, doc, stderr = run_json(cli, _config(custody))
        assert code == 2 and doc["status"] == "incomplete", stderr
        assert doc["positions"] == [] and doc["chains"]["eth"]["block_number"] is None
        assert ("event=unit_workers chain=eth wallets=2 workers=2" in caplog.text) == (workers == "2")
        errors[workers] = doc["chains"]["eth"]["error"]
    assert errors["1"] == errors["2"]
    assert "result too short" in errors["2"], errors["2"]


class _Held:
    """Holds every eth_call about one address until released: a worker reading it waits."""

    def __init__(self, proxy: RpcProxy, needle: str) -> None:
        self.release = threading.Event()
        self.held = threading.Event()

        def hold(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
            if _calls_about(request, needle):
                self.held.set()
                self.release.wait(HELD)
            return response

        proxy.on("eth_call", hold)


def _run_process(custody: Custody, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    environ.update(env)
    return subprocess.Popen(
        [RECONCILER, "--config", str(_config(custody)), "run", "--json"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children(pid: int, live: bool = True) -> list[int]:
    """The run's child processes (its workers, and the one summing the books outside the
    configuration): those still running, or all it has not reaped yet."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return [p for p in found if _state(p) not in (("Z", None) if live else (None,))]


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _reading(run: subprocess.Popen[str], held: _Held) -> tuple[int, list[int]]:
    """The worker waiting on a held read (the only one left running: the other's wallet was
    read), once it waits; and every child of the run not reaped yet."""
    [waiting] = wait_for(lambda: held.held.is_set() and len(found := _children(run.pid)) == 1 and found, "a worker")
    return waiting, _children(run.pid, live=False)


def _gone(pid: int) -> bool:
    return _state(pid) is None


def _document(run: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    """The run's exit, well before the held reads would be answered: it did not wait for them."""
    out, err = run.communicate(timeout=HELD / 4)
    return run.returncode, json.loads(out), err


def _stopped(
    custody: Custody, proxy: RpcProxy, stop: Callable[[subprocess.Popen[str], int], None]
) -> tuple[int, dict[str, Any], str, int, list[int]]:
    """A run as a process, ``stop``ped (given it and its waiting worker) while that worker
    waits on a held read: its exit, document and stderr; the worker; every child it had."""
    held = _Held(proxy, _names(custody, "house-1"))
    run = _run_process(custody, **UNITS)
    try:
        waiting, children = _reading(run, held)
        stop(run, waiting)
        code, doc, stderr = _document(run)
    finally:
        held.release.set()
        run.kill()
        run.wait()
    return code, doc, stderr, waiting, children


def test_a_killed_worker_leaves_its_chain_unread(custody: Custody, proxy: RpcProxy) -> None:
    code, doc, stderr, _, children = _stopped(custody, proxy, lambda _, worker: os.kill(worker, signal.SIGKILL))
    assert code == 2 and doc["status"] == "incomplete", stderr
    assert doc["positions"] == [] and doc["chains"]["eth"]["block_number"] is None
    assert "a unit worker process ended before it sent all its results" in doc["chains"]["eth"]["error"]
    assert "Traceback" not in stderr
    assert len(children) >= 2 and all(_gone(pid) for pid in children)  # every worker reaped


def test_a_run_stopped_by_sigterm_stops_its_workers(custody: Custody, proxy: RpcProxy) -> None:
    code, doc, stderr, waiting, children = _stopped(custody, proxy, lambda run, _: run.send_signal(signal.SIGTERM))
    assert code == 2 and doc["status"] == "incomplete", stderr
    assert "interrupted by SIGTERM" in doc["reason"]
    assert waiting in children and all(_gone(pid) for pid in children)  # stopped, not waited for


def test_a_silent_worker_is_stopped_after_unit_timeout(
    cli: Any, custody: Custody, proxy: RpcProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    custody.scenario.extra += '\n[schedule]\nunit_timeout = "1s"\n'
    custody.scenario.write()
    held = _Held(proxy, _names(custody, "house-1"))  # answered only when released: after the timeout
    for name, value in UNITS.items():
        monkeypatch.setenv(name, value)
    try:
        code, doc, stderr = run_json(cli, _config(custody))
    finally:
        held.release.set()
    assert held.held.is_set()
    assert code == 2 and doc["status"] == "incomplete", stderr
    assert doc["positions"] == []
    assert "a unit worker process sent nothing for 1s ([schedule] unit_timeout)" in doc["chains"]["eth"]["error"]


def test_books_outside_the_configuration_are_summed_elsewhere_to_the_same_rows(
    cli: Any, devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.add_wallet("seg-2", "eth", new_address())
    load(cli, scenario.write())
    del scenario.wallets["seg-1"]  # its books stay: not reconciled by any wallet now
    config = scenario.write()
    caplog.set_level(logging.INFO, logger="reconciler.app.run")
    docs = {}
    for workers in ("1", "2"):  # in this process, or (a fleet of several chunks) in a forked one
        monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "1")
        monkeypatch.setenv("RECONCILER_UNIT_WORKERS", workers)
        caplog.clear()
        code, doc, stderr = run_json(cli, config)
        assert code == 0 and doc["status"] == "complete", stderr
        assert ("event=unit_workers chain=eth wallets=2 workers=2" in caplog.text) == (workers == "2")
        docs[workers] = doc["unreconciled_books"]
    assert docs["1"] == docs["2"] == [
        {"wallet": "seg-1", "asset": "TMMF", "book": str(2500 * 10**18), "book_display": "2500." + "0" * 18},
        {"wallet": "seg-1", "asset": "USDC", "book": "1000000500000", "book_display": "1000000.500000"},
    ]
    assert custody.wallets["seg-1"]


def _stored(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A ledger's balance snapshots and wallet baselines, without what differs between two
    ledgers fed the same (run ids, row ids, times)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        snaps = conn.exec_driver_sql(
            "SELECT chain, wallet, asset, block_number, book, onchain, decimals, seq FROM balance_snapshot ORDER BY seq"
        ).all()
        bases = conn.exec_driver_sql(
            "SELECT chain, wallet, address, block_number, block_hash, config, reviewed, note FROM wallet_baseline "
            "ORDER BY id"
        ).all()
    engine.dispose()
    return [tuple(r) for r in snaps], [tuple(r) for r in bases]


def test_rows_staged_by_workers_are_the_rows_a_run_in_one_process_stores(
    cli: Any, devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two ledgers fed the same, at the same pin: a first run with two workers (on SQLite they
    # stage the snapshot rows and the first-seen baselines, copied in one statement each) and
    # one in this process (rows bound one by one). A third wallet makes the chunks uneven.
    for side in ("one", "two"):
        (tmp_path / side).mkdir()
    first = Scenario(folder=tmp_path / "one", db_url=f"sqlite:///{tmp_path / 'one.db'}")
    custody = make_custody(devnet, first, devnet.url)
    first.add_wallet("seg-2", "eth", new_address())
    second = Scenario(folder=tmp_path / "two", db_url=f"sqlite:///{tmp_path / 'two.db'}")
    second.chains, second.assets, second.wallets = first.chains, first.assets, first.wallets
    monkeypatch.setenv("RECONCILER_CHUNK_WALLETS", "2")
    docs = {}
    for name in ("accounts.csv", "books.csv"):
        (second.folder / name).write_text((first.folder / name).read_text())
    assert custody.wallets["seg-1"]
    for scenario, workers in ((first, "1"), (second, "2")):
        config = scenario.write()
        load(cli, config)
        monkeypatch.setenv("RECONCILER_UNIT_WORKERS", workers)
        code, docs[workers], stderr = run_json(cli, config)
        assert code == 0, stderr
        shown = json.loads(cli("--config", str(config), "runs", "show", docs[workers]["run_id"], "--json").stdout)
        shown.pop("audit_head")
        assert shown == docs[workers]  # the positions as stored are the positions printed
    one, two = _stored(first.db_url), _stored(second.db_url)
    assert one == two and len(one[0]) == 3 * 3 and len(one[1]) == 3
    # A run after a theft stores only what changed (nothing is staged for it): the same rows.
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], new_address(), 1_000_000)
    for scenario, workers in ((first, "1"), (second, "2")):
        monkeypatch.setenv("RECONCILER_UNIT_WORKERS", workers)
        code, _, stderr = run_json(cli, scenario.folder / "reconciler.toml")
        assert code == 1, stderr
    again = _stored(first.db_url)
    assert again == _stored(second.db_url) and len(again[0]) == len(one[0]) + 1
