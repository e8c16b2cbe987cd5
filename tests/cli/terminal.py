"""The installed console script in a real pseudo-terminal, as an operator runs it: stdout and
stderr both on the terminal, the window COLUMNS wide (and COLUMNS set), the bytes kept as the
terminal received them."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from rich.cells import cell_len

RECONCILER = str(Path(sys.executable).parent / "reconciler")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colours and bold: what Rich itself writes on a terminal
C1 = re.compile("[\x80-\x9f]")


@dataclass(frozen=True)
class Screen:
    code: int
    raw: bytes

    @property
    def text(self) -> str:
        """What was written, decoded, newlines as a program wrote them (the terminal's \\r\\n)."""
        return self.raw.decode("utf-8", errors="replace").replace("\r\n", "\n")

    @property
    def plain(self) -> str:
        """The text without the colour sequences Rich writes (and nothing else taken out)."""
        return SGR.sub("", self.text)

    @property
    def lines(self) -> list[str]:
        return self.plain.split("\n")

    def wider_than(self, width: int) -> list[str]:
        """Lines wider than ``width`` that could have been wrapped: a line that is one word (a
        path deeper than the window, wherever the suite's temporary folders are) can only be
        printed whole."""
        return [line for line in self.lines if cell_len(line) > width and " " in line.strip()]


def _environment(columns: int, term: str, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER"))}
    env.pop("NO_COLOR", None)
    env.update({"COLUMNS": str(columns), "LINES": "50", "TERM": term})
    env.update(extra or {})
    return env


class Terminal:
    """A console script running in a pseudo-terminal of ``columns`` x 50 (its stdin, stdout and
    stderr); `finish` waits for it and returns everything it wrote."""

    def __init__(
        self,
        args: list[str],
        *,
        columns: int = 80,
        term: str = "xterm-256color",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.proc = subprocess.Popen(
            [RECONCILER, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=_environment(columns, term, env),
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self.chunks: list[bytes] = []

    def read_until(self, text: str, timeout: float = 60) -> None:
        """Read what it writes until ``text`` has appeared (or fail at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in b"".join(self.chunks):
            if not self._read(deadline):
                raise AssertionError(f"{text!r} never appeared: {b''.join(self.chunks)!r}")

    def _read(self, deadline: float) -> bool:
        """One read; False when the terminal closed. Kills the process past ``deadline``."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise TimeoutError(f"reconciler {' '.join(self.args)} did not end in time")
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                break
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            return False
        self.chunks.append(data)
        return bool(data)

    def finish(self, timeout: float = 300) -> Screen:
        deadline = time.monotonic() + timeout
        try:
            while self._read(deadline):
                pass
            code = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(self.master)
        return Screen(code, b"".join(self.chunks))


def run_in_terminal(
    args: list[str],
    *,
    columns: int = 80,
    term: str = "xterm-256color",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> Screen:
    """Run ``reconciler ARGS`` in a pseudo-terminal, wait for it to end (killing it at
    ``timeout``) and return everything it wrote."""
    return Terminal(args, columns=columns, term=term, cwd=cwd, env=env).finish(timeout)
