"""The command line as scripts use it: exit codes, stdout hygiene, the demo's processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
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
    refused = subprocess.run([RECONCILER, "run", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "run `reconciler init`" in refused.stderr and refused.stdout == ""
    assert not (tmp_path / "other.db").exists(), "a ledger that was never initialized is not created"
    done = subprocess.run([RECONCILER, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([RECONCILER, "run", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert {b["wallet"] for b in json.loads(done.stdout)["breaks"]} == {"seg-1", "house-1"}
    assert (tmp_path / "other.db").exists()


PIPE_CAPACITY = 4096  # the smallest pipe Linux makes; the demo's JSON report (about 7 KB) overflows it


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries the marker (a demo and every process it started)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours
    return found


class _Demo:
    """`reconciler demo --json` as a subprocess, watched through its stderr lines with deadlines.

    Its stdout is a 4 KB pipe that nobody reads before `finish()`: the report overflows it, so
    the demo cannot get past writing its report, let alone print "ran as designed", before the
    test has sent its signal. A signal sent at any point below therefore lands inside the demo's
    work, every time. Its Anvil nodes inherit a marker in their environment (nothing reads it),
    which finds them even after the demo is gone, including one it never got to register.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.marker = f"reconciler-demo-test-{uuid.uuid4().hex}"
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_CAPACITY)
            self.capacity: int = fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ)
            self.proc = subprocess.Popen(
                [RECONCILER, "demo", "--json"],
                stdout=write_fd,
                stderr=subprocess.PIPE,
                env={**os.environ, **(env or {}), "RECONCILER_TEST_MARKER": self.marker},
            )
        finally:
            os.close(write_fd)
        self._stdout_fd = read_fd
        self._stdout = bytearray()
        self._lines: list[str] = []
        self._stderr_ended = False
        self._changed = threading.Condition()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def __enter__(self) -> _Demo:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.proc.poll() is None:  # a failed assertion: leave nothing running
            self.proc.kill()
            self.proc.wait()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self._lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()
        with self._changed:
            self._stderr_ended = True
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The first stderr line containing `text`, once the demo printed it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if text in line:
                        return line
                if self._stderr_ended:
                    raise AssertionError(f"the demo ended before printing {text!r}:\n{self.stderr}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} from the demo within {timeout}s:\n{self.stderr}")
                self._changed.wait(left)

    def _stdout_pending(self) -> int:
        answer = fcntl.ioctl(self._stdout_fd, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", answer)[0])

    def wait_blocked_on_its_report(self, timeout: float = 120.0) -> None:
        """Until the report fills the stdout pipe: the demo's run is over and it waits in its write."""
        deadline = time.monotonic() + timeout
        while self._stdout_pending() < self.capacity:
            assert self.proc.poll() is None, f"the demo ended before writing its report:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no report within {timeout}s:\n{self.stderr}"
            time.sleep(0.01)

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        """Read the rest of stdout, wait for the exit: (exit code, stdout)."""

        def drain() -> None:
            while chunk := os.read(self._stdout_fd, 65536):
                self._stdout += chunk

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        code = self.proc.wait(timeout=timeout)
        drainer.join(timeout)
        self._stderr_reader.join(timeout)
        assert not drainer.is_alive() and not self._stderr_reader.is_alive(), "a child kept the demo's pipes open"
        os.close(self._stdout_fd)
        return code, self._stdout.decode(errors="replace")

    def folder(self) -> Path | None:
        """The demo's temporary folder, if it got as far as printing it."""
        line = next((x for x in self._lines if x.startswith("config, books and database in ")), None)
        return Path(line.split(" in ", 1)[1].strip()) if line else None

    def nothing_left_within(self, seconds: float) -> bool:
        """No process started by the demo is alive (a SIGKILL'd demo leaves that to the kernel)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not [p for p in _marked(self.marker) if _alive(p)]:
                return True
            time.sleep(0.05)
        return False


def test_demo_runs_as_designed_and_leaves_no_process_behind() -> None:
    with _Demo() as demo:
        assert "Anvil" in demo.wait_for("starting")
        demo.wait_for("deploying")  # both nodes answer once this is printed
        anvils = _children(demo.proc.pid)
        assert len(anvils) == 2
        code, out = demo.finish(timeout=300)
    assert code == 0, demo.stderr
    doc = json.loads(out)
    assert doc["status"] == "complete" and len(doc["breaks"]) == 6  # the takeover: its state and its transaction
    assert "ran as designed" in demo.stderr
    assert not any(_alive(pid) for pid in anvils)
    assert demo.nothing_left_within(10)


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
    with _Demo() as demo:
        demo.wait_for("deploying")
        anvils = _children(demo.proc.pid)
        assert len(anvils) == 2 and all(_alive(p) for p in anvils)
        demo.proc.send_signal(sig)
        code, _out = demo.finish()
    if sig is signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 2, demo.stderr
        assert f"error: interrupted by {sig.name}" in demo.stderr
        assert "ran as designed" not in demo.stderr
    assert _gone_within(anvils, 30), "an Anvil node outlived the demo"
    assert demo.nothing_left_within(30), "a process started by the demo outlived it"


# Round 1: SIGTERM from outside at three points. What the demo is doing there: forking and polling
# a starting Anvil; JSON-RPC calls in flight (socket reads, with the finalizers of web3/urllib3
# objects between them); blocked writing its report, right after the run.
SIGTERM_POINTS = ["starting", "deploying", "after the run"]


@pytest.mark.parametrize("point", SIGTERM_POINTS)
def test_demo_sigterm_anywhere_exits_2_and_leaves_nothing_behind(point: str) -> None:
    with _Demo() as demo:
        if point == "after the run":
            demo.wait_for("config, books and database in")
            demo.wait_blocked_on_its_report()
        else:
            demo.wait_for(point)
        demo.proc.send_signal(signal.SIGTERM)
        code, out = demo.finish()
    assert code == 2, demo.stderr
    assert "error: interrupted by SIGTERM" in demo.stderr
    assert "ran as designed" not in demo.stderr
    if point == "after the run":
        assert len(out) >= demo.capacity  # the report was being written when the signal came
    folder = demo.folder()
    assert folder is None or not folder.exists(), f"the demo left {folder} behind"
    assert demo.nothing_left_within(30), "a process started by the demo outlived it"


# Round 2, the CI failure on purpose: the same phases, but SIGTERM lands inside a weakref finalizer
# of the demo process, where Python drops whatever the handler raises. The demo's own code is
# untouched: Python imports this `sitecustomize` at start-up (the test puts it on PYTHONPATH); it
# frees an object with a finalizer at the first audit event matching RECONCILER_TEST_FINALIZE_AT,
# and that finalizer says so on stderr and waits for the signal.
_FINALIZER_SITECUSTOMIZE = """
import os, sys, time, weakref

_event, _, _needle = os.environ["RECONCILER_TEST_FINALIZE_AT"].partition(":")


class _Probe:
    pass


def _wait_for_a_signal():
    sys.stderr.write("test: in a weakref finalizer, waiting for a signal\\n")
    sys.stderr.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.01)


_probes = [_Probe()]
weakref.finalize(_probes[0], _wait_for_a_signal)


def _free_the_probe(event, args):
    if _probes and event == _event and _needle in repr(args[:2]):  # not Popen's env: it holds the needle
        _probes.clear()  # the finalizer runs here, inside the demo's own call


sys.addaudithook(_free_the_probe)
"""
FINALIZER_POINTS = {
    "starting": "subprocess.Popen:anvil",  # the first Anvil is being spawned
    "deploying": "open:accounts.csv",  # chains set up, writing the demo's inputs
    "before the run": "sqlite3.connect:reconciler.db",  # the ledger opens; the run follows
}


@pytest.mark.parametrize("point", FINALIZER_POINTS)
def test_demo_sigterm_dropped_in_a_finalizer_still_exits_2(point: str, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_FINALIZER_SITECUSTOMIZE)
    python_path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": python_path, "RECONCILER_TEST_FINALIZE_AT": FINALIZER_POINTS[point]}
    with _Demo(env) as demo:
        demo.wait_for("in a weakref finalizer, waiting for a signal")
        demo.proc.send_signal(signal.SIGTERM)
        code, _out = demo.finish()
    # The race happened: Python reported the handler's exception as ignored...
    assert "Exception ignored" in demo.stderr and "Interrupted: interrupted by SIGTERM" in demo.stderr
    # ...and the demo still stopped at its next safe point instead of running to exit 0.
    assert code == 2, demo.stderr
    assert "error: interrupted by SIGTERM" in demo.stderr
    assert "ran as designed" not in demo.stderr
    folder = demo.folder()
    assert folder is None or not folder.exists(), f"the demo left {folder} behind"
    assert demo.nothing_left_within(30), "a process started by the demo outlived it"


def test_version_prints_and_exits_0(cli: Any) -> None:
    from reconciler import __version__

    result = cli("--version")
    assert result.code == 0 and result.stdout.strip() == __version__


def test_dash_h_prints_help_for_the_program_and_its_commands(cli: Any) -> None:
    for args in (["-h"], ["runs", "-h"], ["breaks", "list", "-h"]):
        result = cli(*args)
        assert result.code == 0 and "Usage: reconciler" in result.stdout, args
