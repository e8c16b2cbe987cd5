"""A `reconciler daemon` as a real process for tests: its stderr read line by line as it comes
(so a test waits on a log line with a deadline instead of sleeping), stopped or killed, and its
metrics scraped over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families

RECONCILER = str(Path(sys.executable).parent / "reconciler")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return found


class DaemonProcess:
    def __init__(self, config: Path, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        environ.update(RECONCILER_CONFIG=str(config), **env)
        self.proc = subprocess.Popen(
            [RECONCILER, "daemon"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    @property
    def log(self) -> str:
        return "\n".join(self.lines())

    def wait_for_line(self, pattern: str, seconds: float = 60) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                hit = next((m for line in self.lines() if (m := regex.search(line))), None)
                if hit is None:
                    raise AssertionError(f"the daemon exited ({self.proc.returncode}) without {pattern!r}:\n{self.log}")
                return hit
            return next((m for line in self.lines() if (m := regex.search(line))), None)

        match: re.Match[str] = wait_for(found, f"a log line {pattern!r}", seconds)
        return match

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> float:
        """Send ``sig`` and wait for the exit; the seconds it took."""
        signalled = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        took = time.monotonic() - signalled
        self._reader.join(timeout=5)
        return took

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)

    def ensure_gone(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The daemon's metrics (sample name and sorted labels -> value); empty while unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scheduled_runs(url: str) -> list[dict[str, Any]]:
    """Every scheduled run, oldest first, as plain rows (times in UTC)."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT id, job, scheduled_for, status, reason, started_at, finished_at, host, pid, rerun_of "
                "FROM run WHERE trigger = 'schedule' ORDER BY started_at"
            )
        ).mappings()
        found = [dict(r) for r in rows]
    engine.dispose()
    for row in found:
        for key in ("scheduled_for", "started_at", "finished_at"):
            row[key] = _utc(row[key])
    return found


def _utc(value: Any) -> datetime | None:
    """Stored times are UTC; SQLite hands raw rows back as text, both hand them back naive."""
    if value is None:
        return None
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(at, datetime)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
