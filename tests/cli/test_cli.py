"""The command line as scripts use it: exit codes, stdout hygiene, the demo's processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import make_custody

RECONCILER = str(Path(sys.executable).parent / "reconciler")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_bad_config_exits_2_names_the_key_and_prints_nothing_on_stdout(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(
        '[chains.eth]\nkind = "evm"\nrpc_urls = ["http://127.0.0.1:8545"]\nchain_id = 31337\nconfirmation = 2\n'
    )
    result = cli("--config", str(config), "run", "--json")
    assert result.code == 2
    assert result.stdout == ""
    assert "chains.eth.confirmation" in result.stderr and "confirmations" in result.stderr


def test_non_checksummed_address_is_refused_with_the_checksummed_form(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "reconciler.toml"
    lower = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    config.write_text(
        '[chains.eth]\nkind = "evm"\nrpc_urls = ["http://127.0.0.1:8545"]\nchain_id = 1\n'
        f'[assets.USDC]\nchain = "eth"\naddress = "{lower}"\ndecimals = 6\nkind = "stablecoin"\n'
    )
    result = cli("--config", str(config), "config", "check")
    assert result.code == 2
    assert "assets.USDC.address" in result.stderr
    assert "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48" in result.stderr


def test_missing_config_exits_2(cli: Any, tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "nope.toml"), "run")
    assert result.code == 2 and "does not exist" in result.stderr


def test_usage_errors_exit_2(cli: Any) -> None:
    assert cli("no-such-command").code == 2
    assert cli("run", "--no-such-flag").code == 2


def test_config_check_online_checks_chain_id_and_decimals(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    ok = cli("--config", str(config), "config", "check", "--online", "--json")
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["chains"]["eth"]["ok"] is True
    scenario.assets["TMMF"]["decimals"] = 6
    scenario.write()
    bad = cli("--config", str(config), "config", "check", "--online", "--json")
    assert bad.code == 2
    assert "decimals() = 18" in json.loads(bad.stdout)["chains"]["eth"]["error"]


def test_console_script_exit_codes_and_env_precedence(devnet: Devnet, scenario: Scenario, tmp_path: Path) -> None:
    """The installed `reconciler` script, driven as a scheduler or CI would drive it."""
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_CONFIG"] = str(config)
    for args in (
        ["init"],
        ["accounts", "import", str(tmp_path / "accounts.csv")],
        ["books", "import", str(tmp_path / "books.csv")],
    ):
        done = subprocess.run([RECONCILER, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([RECONCILER, "run", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "complete"

    # RECONCILER_DATABASE_URL beats [database] url: an empty ledger has no books, so breaks.
    env["RECONCILER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'other.db'}"
    done = subprocess.run([RECONCILER, "run", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert {b["wallet"] for b in json.loads(done.stdout)["breaks"]} == {"seg-1", "house-1"}
    assert (tmp_path / "other.db").exists()


def test_demo_runs_as_designed_and_leaves_no_process_behind() -> None:
    proc = subprocess.Popen([RECONCILER, "demo", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "starting two local Anvil chains…"
    assert "Anvil" in line
    while "deploying" not in line:  # both nodes answer once this is printed
        line = proc.stderr.readline()
        assert line, "demo ended before deploying"
    anvils = _children(proc.pid)
    assert len(anvils) == 2
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "complete" and len(doc["breaks"]) == 3
    assert "ran as designed" in err
    assert not any(_alive(pid) for pid in anvils)


def _gone_within(pids: list[int], seconds: float) -> bool:
    """Poll until the processes are gone (SIGKILL'd parents leave the cleanup to the kernel)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "term", "kill"])
def test_demo_interrupted_stops_its_anvil_nodes(sig: signal.Signals) -> None:
    proc = subprocess.Popen([RECONCILER, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = ""
    while "deploying" not in line:
        line = proc.stderr.readline()
        assert line, "demo ended before deploying"
    anvils = _children(proc.pid)
    assert len(anvils) == 2 and all(_alive(p) for p in anvils)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert _gone_within(anvils, 30), "an Anvil node outlived the demo"


def test_version_prints_and_exits_0(cli: Any) -> None:
    from reconciler import __version__

    result = cli("--version")
    assert result.code == 0 and result.stdout.strip() == __version__
