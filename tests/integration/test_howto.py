"""The documentation runs as written: the test-token how-to's shell blocks, in one bash, against
the Anvil it starts (only its port changed, to a free one), in a folder that looks like the
checkout; and the README's command list and examples name only commands that exist, and every
command the app has."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from reconciler.cli.completion_tree import TREE

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## A test token on a local Anvil"


def _blocks(markdown: str, heading: str) -> list[str]:
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_test_token_howto_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks((ROOT / "docs" / "howto.md").read_text(), SECTION)
    assert len(blocks) >= 5 and "anvil" in blocks[0] and "kill $ANVIL_PID" in blocks[-1]
    script = "\n".join(blocks).replace("8545", str(_free_port()))
    for name in (".venv", "node_modules", "examples", "contracts"):  # the checkout, as the how-to has it
        (tmp_path / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER", "COLUMNS"))}
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**env, "COLUMNS": "80"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # an Anvil left by a failing step
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    assert "USDC at 0x5FbDB2315678afecb367f032d93F642f64180aa3" in out, out
    assert "isFrozen(address) ✓" in out and "paused() ✓" in out, "config check --online verified the views"
    assert "testtoken-accounts.csv: 1 account(s): 1 added" in out and "testtoken-books.csv: 2 book entries" in out
    first, second = re.findall(r"^exit (\d)$", out, re.M)
    assert (first, second) == ("0", "1"), out
    after = out.split("moved 250000 USDC", 1)[1]
    assert "unauthorized_transfer" in after and "balance_mismatch" in after and "-250,000.000000 USDC" in after
    assert not (tmp_path / "reconciler.toml").exists(), "nothing but the how-to's own files"


def _commands(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for name, (_help, sub) in (node["commands"] or {}).items():
        found.add((*prefix, name))
        found |= _commands(sub, (*prefix, name))
    return found


def test_the_readme_lists_every_command_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _commands(TREE)
    leaves = {c for c in commands if not any(other[: len(c)] == c and other != c for other in commands)}
    said: set[tuple[str, ...]] = set()
    for block in re.findall(r"^```sh\n(.*?)^```", readme, re.S | re.M):
        for line in block.splitlines():
            words = [w for w in re.sub(r"\s+#.*$", "", line).split() if w]
            if not words or words[0] not in ("reconciler", ".venv/bin/reconciler"):
                continue
            rest = words[1:]
            while rest and rest[0].startswith(("-", "[")):  # global options, given or [optional]
                if rest[0].startswith("["):
                    end = next(i for i, w in enumerate(rest) if w.endswith("]"))
                    rest = rest[end + 1 :]
                else:
                    rest = rest[2:] if rest[0] in ("--config", "--log-format") else rest[1:]
            path: tuple[str, ...] = ()
            while rest and (*path, rest[0]) in commands:
                path = (*path, rest[0])
                rest = rest[1:]
            if path:
                said.add(path)
            else:
                assert not rest or rest[0].startswith(("-", "[")), f"README names an unknown command: {line!r}"
    missing = sorted(" ".join(c) for c in leaves - said)
    assert not missing, f"README's command list misses: {missing}"
