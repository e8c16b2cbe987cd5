"""Who may write a run's results, and whether the process behind a `running` run still lives.

Invariants: at most one run (or scan) observes chains and writes its findings to one ledger
at a time, so a later pin is always written after an earlier one and no run plans against
breaks another run is changing — except the runs of the daemon's watcher (reconciler.daemon.
watch), each of one chain: they hold the ledger's lock shared, and their chain's lock
exclusively, so watchers of different chains never wait on each other while any other run
excludes them all; a run waiting for the exclusive lock goes first (it holds the "intent" lock
while it waits, which a watcher must pass through), so watchers never starve it; the locks die
with their holder's process (PostgreSQL session advisory locks, or flocks on SQLite), so a
killed run never blocks the next one; a run is judged abandoned only when its process is
provably gone.

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


class RunLock:
    """Held for the life of one run: its liveness marker first, the ledger's writer lock next."""

    def __init__(self, engine: Engine, sqlite_path: Path | None) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path
        self._conn: Connection | None = None
        self._files: dict[str, IO[bytes]] = {}
        self._on_release: list[Callable[[], None]] = []
        self._chains: tuple[str, ...] | None = None  # None: the whole ledger, exclusively
        self._intent_held = False

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
        """The ledger's writer lock: exclusively, or with ``chains`` (a watcher's run) shared,
        with each of those chains' locks exclusively."""
        self._chains = chains
        deadline = time.monotonic() + timeout
        waited = False
        while not self._try():
            if not waited:
                on_wait()
                waited = True
            if time.monotonic() >= deadline:
                raise LockTimeout(LEDGER_HELD)
            time.sleep(POLL_SECONDS)

    def _try(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            return self._try_postgres()
        if self.sqlite_path is None:
            return True
        return self._try_files()

    # PostgreSQL: session advisory locks keyed by (hashtext(schema || scope), n).

    def _pg(self, sql: str, scope: str, k: int = 0) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        got = self._conn.execute(
            text(f"SELECT {sql}(hashtext(current_schema() || :scope), :k)"), {"scope": scope, "k": k}
        ).scalar()
        self._conn.commit()
        return got is None or bool(got)  # the unlock functions answer too; None: void

    def _try_postgres(self) -> bool:
        if self._chains is None:
            if not self._intent_held:
                if not self._pg("pg_try_advisory_lock", "/intent"):
                    return False
                self._intent_held = True
            if not self._pg("pg_try_advisory_lock", "/ledger"):
                return False  # the intent stays held: no watcher starts meanwhile
            self._pg("pg_advisory_unlock", "/intent")
            self._intent_held = False
            return True
        if not self._pg("pg_try_advisory_lock", "/intent"):
            return False
        shared = self._pg("pg_try_advisory_lock_shared", "/ledger")
        self._pg("pg_advisory_unlock", "/intent")
        if not shared:
            return False
        taken: list[str] = []
        for chain in self._chains:
            if not self._pg("pg_try_advisory_lock", "/chain", _chain_key(chain)):
                for got in taken:
                    self._pg("pg_advisory_unlock", "/chain", _chain_key(got))
                self._pg("pg_advisory_unlock_shared", "/ledger")
                return False
            taken.append(chain)
        return True

    # SQLite: flocks on files beside the database.

    def _flock(self, name: str, mode: int) -> bool:
        assert self.sqlite_path is not None
        handle = self._files.get(name)
        if handle is None:
            path = self.sqlite_path.with_name(f"{self.sqlite_path.name}{name}")
            handle = self._files[name] = open(path, "ab")  # noqa: SIM115
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unflock(self, name: str) -> None:
        handle = self._files.get(name)
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _try_files(self) -> bool:
        if self._chains is None:
            if not self._intent_held:
                if not self._flock(".intent", fcntl.LOCK_EX):
                    return False
                self._intent_held = True
            if not self._flock(".lock", fcntl.LOCK_EX):
                return False
            self._unflock(".intent")
            self._intent_held = False
            return True
        if not self._flock(".intent", fcntl.LOCK_EX):
            return False
        shared = self._flock(".lock", fcntl.LOCK_SH)
        self._unflock(".intent")
        if not shared:
            return False
        taken: list[str] = []
        for chain in self._chains:
            name = f".chain-{_chain_key(chain) & 0xFFFFFFFF:08x}.lock"
            if not self._flock(name, fcntl.LOCK_EX):
                for got in taken:
                    self._unflock(got)
                self._unflock(".lock")
                return False
            taken.append(name)
        return True

    def release(self) -> None:
        """Ending the session or closing the file releases every lock it holds."""
        while self._on_release:
            self._on_release.pop()()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                # A pooled connection outlives close(): unlock explicitly, or drop the session.
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
                conn.commit()
                conn.close()
            except Exception:  # noqa: BLE001 - whatever failed, the session must not keep the locks
                conn.invalidate()
                conn.close()
        files, self._files = self._files, {}
        for handle in files.values():
            handle.close()
        self._intent_held = False


def postgres_run_alive(conn: Connection, run_id: str) -> bool:
    """A run's process lives while its session holds the run's liveness lock."""
    key = {"scope": "/run", "k": _run_key(run_id)}
    got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :scope), :k)"), key).scalar_one()
    if got:
        conn.execute(text("SELECT pg_advisory_unlock(hashtext(current_schema() || :scope), :k)"), key)
        return False
    return True
