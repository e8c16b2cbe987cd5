"""Temporary folders of Anvil nodes and demos do not pile up after a SIGKILL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from chains.evm.devnet import owned_tempdir


def test_folders_of_dead_owners_are_swept_and_live_ones_kept() -> None:
    prefix = f"reconciler-sweep-{uuid.uuid4().hex[:8]}-"
    root = Path(tempfile.gettempdir())
    probe = subprocess.Popen(["true"])
    probe.wait()  # reaped: its pid now names no process
    stale = root / f"{prefix}stale"
    stale.mkdir()
    (stale / "owner.pid").write_text(str(probe.pid))
    live = root / f"{prefix}live"
    live.mkdir()
    (live / "owner.pid").write_text(str(os.getpid()))
    unstamped = root / f"{prefix}unstamped"
    unstamped.mkdir()
    try:
        fresh = owned_tempdir(prefix)
        assert not stale.exists()
        assert live.exists() and unstamped.exists()
        assert (fresh / "owner.pid").read_text() == str(os.getpid())
    finally:
        for folder in root.glob(f"{prefix}*"):
            shutil.rmtree(folder, ignore_errors=True)
