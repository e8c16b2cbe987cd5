"""Who may write a run's results, and whether the process behind a `running` run still lives.

Invariants: at most one run (or scan) observes chains and writes its findings to one ledger
at a time, so a later pin is always written after an earlier one and no run plans against
breaks another run is changing — but for the daemon's watcher (reconciler.daemon.watch): per
chain, whoever observes the chain's blocks and moves its checkpoint holds that chain's lock (a
watcher's run holds only its chain's, never the ledger's, so a slow run or another chain never
holds a watched head up; a run holds a chain's while it observes it, and to the end when it
did observe new blocks); the locks die with their holder's process (PostgreSQL session
advisory locks, or flocks on SQLite), so a killed run never blocks the next one; a run is
judged abandoned only when its process is provably gone.

PostgreSQL: advisory locks are per database, so the keys are derived from current_schema():
several ledgers in one database (one schema each) do not block each other.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

POLL_SECONDS = 0.2
LEDGER_HELD = "another run holds the ledger"


class LockTimeout(Exception):
    """The ledger stayed locked for the whole bounded wait."""


def host_name() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


def _chain_key(chain: str) -> int:
    """A signed 32-bit key for one chain's watch lock."""
    return zlib.crc32(chain.encode()) - 2**31


def _run_key(run_id: str) -> int:
    """A signed 32-bit key for one run's liveness lock."""
    return zlib.crc32(run_id.encode()) - 2**31


class ChainLock:
    """One chain's surveillance lock: whoever observes the chain's blocks and moves its
    checkpoint holds it — the daemon's watcher of that chain for each head it judges, and a run
    while it observes that chain (reconciler.app.run). Its own connection or file, so the
    threads that read chains in parallel each hold their own."""

    def __init__(self, engine: Engine, sqlite_path: Path | None, chain: str) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path
        self.chain = chain
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._held:
            return True
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(
                text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :scope), :k)"),
                {"scope": "/chain", "k": _chain_key(self.chain)},
            ).scalar_one()
            self._conn.commit()
            self._held = bool(got)
        elif self.sqlite_path is None:
            self._held = True
        else:
            if self._file is None:
                name = f"{self.sqlite_path.name}.chain-{_chain_key(self.chain) & 0xFFFFFFFF:08x}.lock"
                self._file = open(self.sqlite_path.with_name(name), "ab")  # noqa: SIM115
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._held = True
            except BlockingIOError:
                self._held = False
        return self._held

    def acquire(self, timeout: float, should_stop: Callable[[], None] = lambda: None) -> None:
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            should_stop()
            if time.monotonic() >= deadline:
                raise LockTimeout(f"chain {self.chain} is being observed by the daemon's watcher (waited {timeout:g}s)")
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        self._held = False
        _close_session(self._conn)
        self._conn = None
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def _close_session(conn: Connection | None) -> None:
    """Ending the session releases every lock it holds; a pooled connection outlives close(),
    so unlock explicitly, or drop the session."""
    if conn is None:
        return
    try:
        conn.execute(text("SELECT pg_advisory_unlock_all()"))
        conn.commit()
        conn.close()
    except Exception:  # noqa: BLE001 - whatever failed, the session must not keep the locks
        conn.invalidate()
        conn.close()


class RunLock:
    """Held for the life of one run: its liveness marker first, the ledger's writer lock next
    (a watcher's run: its chain's lock instead), and the chain locks it takes while it runs."""

    def __init__(self, engine: Engine, sqlite_path: Path | None) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._on_release: list[Callable[[], None]] = []
        self._chains: tuple[ChainLock, ...] | None = None  # a watcher's run: its chain's lock

    def on_release(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the run ends (`release`): what else lives as long as the run (its
        heartbeat)."""
        self._on_release.append(fn)

    # --------------------------------------------------------------- liveness (PostgreSQL)

    def mark_alive(self, run_id: str) -> None:
        """Before the run row exists: a PostgreSQL session lock that says "its process lives"."""
        if self.engine.dialect.name != "postgresql":
            return  # SQLite ledgers are judged by host, pid and process start time
        self._conn = self.engine.connect()
        self._conn.execute(
            text("SELECT pg_advisory_lock(hashtext(current_schema() || :scope), :k)"),
            {"scope": "/run", "k": _run_key(run_id)},
        )
        self._conn.commit()

    # --------------------------------------------------------------- the writer lock

    def acquire(
        self, timeout: float, on_wait: Callable[[], None], chains: tuple[str, ...] | None = None
    ) -> None:
        """The ledger's writer lock; with ``chains`` (a watcher's run) those chains' locks
        instead, so that watchers of different chains, and a run that is not observing their
        chain, never wait on each other."""
        if chains is not None:
            self._chains = tuple(ChainLock(self.engine, self.sqlite_path, c) for c in chains)
            self.on_release(self._release_chains)
        deadline = time.monotonic() + timeout
        waited = False
        while not self._try():
            if not waited:
                on_wait()
                waited = True
            if time.monotonic() >= deadline:
                raise LockTimeout(LEDGER_HELD)
            time.sleep(POLL_SECONDS)

    def hold_chain(self, chain: str, timeout: float, should_stop: Callable[[], None]) -> Callable[[], None]:
        """Wait (at most ``timeout`` seconds) for ``chain``'s lock and hold it until the run
        ends, or until the returned function is called."""
        held = ChainLock(self.engine, self.sqlite_path, chain)
        held.acquire(timeout, should_stop)
        self.on_release(held.release)
        return held.release

    def _release_chains(self) -> None:
        for lock in self._chains or ():
            lock.release()

    def _try(self) -> bool:
        if self._chains is not None:
            if all(lock.try_acquire() for lock in self._chains):
                return True
            self._release_chains()  # none held while waiting: two runs never hold one each
            return False
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(
                text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :scope), 0)"), {"scope": "/ledger"}
            ).scalar_one()
            self._conn.commit()
            return bool(got)
        if self.sqlite_path is None:
            return True
        if self._file is None:
            self._file = open(self.sqlite_path.with_name(self.sqlite_path.name + ".lock"), "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Ending the session or closing the file releases every lock it holds."""
        while self._on_release:
            self._on_release.pop()()
        conn, self._conn = self._conn, None
        _close_session(conn)
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def postgres_run_alive(conn: Connection, run_id: str) -> bool:
    """A run's process lives while its session holds the run's liveness lock."""
    key = {"scope": "/run", "k": _run_key(run_id)}
    got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :scope), :k)"), key).scalar_one()
    if got:
        conn.execute(text("SELECT pg_advisory_unlock(hashtext(current_schema() || :scope), :k)"), key)
        return False
    return True
