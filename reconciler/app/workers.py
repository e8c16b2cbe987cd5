"""A chain's units read and judged by worker processes: a run of a large fleet on every core.

A run's work per position is this process's own (decoding the node's answers, judging each
wallet, reading its books): under one interpreter lock it used one core, while the node
answering it used little of another. So a chain of more than one chunk of wallets is read by
``unit_workers()`` processes, forked when its units begin: worker ``k`` of ``n`` reads and
judges chunks ``k``, ``k + n``, ``k + 2n``... (``read_units``, as in this process), each
through its own adapter (``adapter_for``: its own connections, the same endpoints, timeouts,
retries and cross-checks) and its own read-only connections to the ledger (the same views), and
sends each chunk's result back through a pipe, its positions already in the form the run keeps
them on disk (and, on SQLite, its rows staged for the run to copy: reconciler.ledger.staging).
The run reads every pipe as data comes (``_Inbox``) and takes the results in chunk order, so
what it keeps, and the document, are those of a run in one process. ``Forked`` makes one call
the same way (the sum of the books outside the configuration, while the chains are read).

Invariants: a worker only reads (the node, and the ledger through the run's views) and never
writes the ledger, logs nothing of its own and exits without running this process's cleanups
(``os._exit``); a worker that fails sends its error, which fails the chain as it would have in
this process; a worker that dies, or sends what is not a result, fails the chain (never a
clean chain with wallets left out); the run's interruption and failures kill the workers; a
worker whose run is gone (its pipe closed, its parent changed) stops at its next chunk.
Workers ignore SIGINT, SIGTERM and SIGHUP: the run decides, and stops them.

``RECONCILER_UNIT_WORKERS`` sets how many (1: the units run in this process); by default, one
per usable core (at most ``MAX_WORKERS``) when the chain has more than one chunk of wallets.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import select
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

from chains.base import ChainAdapter, Source
from reconciler.domain import BlockRef
from reconciler.errors import ChainError, LedgerError, ReconcilerError, RpcUnavailable
from reconciler.inputs.settings import ChainSettings, Settings, WalletSettings
from reconciler.ledger.staging import Staged, StageWriter, removed_with, stage_directory, worth_staging
from reconciler.ledger.store import Ledger
from reconciler.spill import RenderedConfigs, RenderedPositions, SpilledConfigs, SpilledPositions, position_texts

from .units import UnitInputs, UnitResult, chunk_wallets, read_units, spilled

AdapterFactory = Callable[[ChainSettings], ChainAdapter]
WORKERS_ENV = "RECONCILER_UNIT_WORKERS"
MAX_WORKERS = 4
WAIT_SLICE = 0.1  # seconds between checkpoints while waiting on a worker
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FORKING = threading.Lock()
T = TypeVar("T")


def unit_workers(wallets: int) -> int:
    """How many worker processes read a chain of ``wallets`` wallets: ``RECONCILER_UNIT_WORKERS``
    when set, else one per usable core (at most MAX_WORKERS); never more than its chunks, and 1
    (this process) for a chain of one chunk or where processes cannot be forked."""
    raw = os.environ.get(WORKERS_ENV)
    if raw is not None and raw != "":
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{WORKERS_ENV} = {raw!r}: give a whole number of processes, 1 or more")
        wanted = int(raw)
    else:
        wanted = min(len(os.sched_getaffinity(0)), MAX_WORKERS) if hasattr(os, "sched_getaffinity") else 1
    chunks = -(-wallets // chunk_wallets())
    if not hasattr(os, "fork"):
        return 1
    return max(1, min(wanted, chunks))


def forked_chain(
    chain: ChainSettings,
    settings: Settings,
    inputs: UnitInputs,
    adapter_for: AdapterFactory,
    block: BlockRef,
    checkpoint: Callable[[], None],
    workers: int,
    texts: bool,
) -> UnitResult:
    """A chain's units read and judged by ``workers`` forked processes (``forked_units``), as
    one (``spilled``), with the endpoints that answered them. On SQLite the workers also stage
    the rows a first run stores (reconciler.ledger.staging): the spill names the stage when
    every worker's is usable; the stage goes when the spill does."""
    sources: list[Source] = []
    stage = stage_directory() if inputs.ledger.engine.dialect.name == "sqlite" else None
    staged: list[tuple[int, int] | None] = []
    expected = settings.count_on(chain.name) * len(settings.assets_on(chain.name))
    with_positions = worth_staging(inputs.ledger.stored_positions(chain.name), expected)
    try:
        found = forked_units(
            chain, settings, inputs, adapter_for, block, checkpoint, workers, sources, texts, stage, staged,
            with_positions,
        )  # fmt: skip
        result = replace(spilled(found, chain.name, settings, texts), sources=tuple(sources))
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    if stage is None:
        return result
    assert isinstance(result.positions, SpilledPositions) and isinstance(result.first_seen, SpilledConfigs)
    removed_with(result.positions, stage)
    if len(staged) == workers and all(s is not None for s in staged):
        counts = [s for s in staged if s is not None]
        files = tuple(stage / f"w{k}.db" for k in range(workers))
        whole = Staged(files, sum(p for p, _ in counts), sum(c for _, c in counts))
        result.positions.staged = result.first_seen.staged = whole
    return result


def forked_units(
    chain: ChainSettings,
    settings: Settings,
    inputs: UnitInputs,
    adapter_for: AdapterFactory,
    block: BlockRef,
    checkpoint: Callable[[], None],
    workers: int,
    sources: list[Source],
    texts: bool = False,
    stage: Path | None = None,
    staged: list[tuple[int, int] | None] | None = None,
    stage_positions: bool = True,
) -> Iterator[UnitResult]:
    """The chain's units, in order, read and judged by ``workers`` forked processes (see the
    module), each with the adapter's read_path after it (and its positions' document texts
    with ``texts``); the endpoints that answered the workers are added to ``sources``. With
    ``stage`` (a directory), worker ``k`` also stages its rows in ``stage/w{k}.db``
    (reconciler.ledger.staging; its positions only with ``stage_positions``), and ``staged``
    gets what each worker staged (positions, configurations; None: nothing usable)."""
    running: list[tuple[int, int]] = []  # (pid, read end)
    silence = settings.schedule.unit_timeout.total_seconds()
    try:
        stages = (stage, stage_positions) if stage is not None else None
        for k in range(workers):

            def work(fd: int, k: int = k) -> None:
                _work(k, workers, fd, chain, settings, inputs, adapter_for, block, texts, stages)

            running.append(_fork(work, [other for _, other in running]))
        done = [False] * workers
        index = delivered = 0
        expected = -(-settings.count_on(chain.name) // chunk_wallets())  # the chain's chunks
        inbox = _Inbox(running, checkpoint, _unit_worker(chain.name), silence)
        while not all(done):
            k = index % workers
            if done[k]:  # the workers end in turn: the one after the last unit ended first
                index += 1
                continue
            message = inbox.next_from(k)
            if message[0] == "unit" and message[1] == index:
                yield message[2]
                index += 1
                delivered += 1
            elif message[0] == "done":
                if index < expected:  # a worker that ended before its last chunk: never a chain short of wallets
                    who = _unit_worker(chain.name)
                    raise ChainError(f"{who.name} ended at chunk {index} of {expected}; {who.lost}")
                done[k] = True
                sources.extend(s for s in message[1] if s not in sources)
                if staged is not None:
                    staged.append(message[2])
                index += 1
            elif message[0] == "error":
                raise message[1]
            else:
                who = _unit_worker(chain.name)
                raise ChainError(f"{who.name} answered out of turn ({message[0]!r}); {who.lost}")
        if delivered != expected:
            who = _unit_worker(chain.name)
            raise ChainError(f"{who.name}s sent {delivered} of the chain's {expected} chunks; {who.lost}")
    finally:
        for pid, fd in running:
            os.close(fd)
            _stop(pid)


class Forked(Generic[T]):
    """``call()`` made in a forked process while this one goes on; its value (or its error,
    as ``_portable`` carries it) taken with ``result``. The process only reads: its ledger
    reads go through connections of its own (``call`` opens them)."""

    def __init__(self, call: Callable[[], T], who: str, lost: str) -> None:
        self._who = _Who(who, lost, LedgerError)
        self._worker: tuple[int, int] | None = _fork(lambda fd: _send(fd, ("value", call())))

    def result(self, checkpoint: Callable[[], None]) -> T:
        """The call's value; its error raised here; the process's death a LedgerError."""
        assert self._worker is not None, "a Forked call's result is taken once"
        worker, self._worker = self._worker, None
        try:
            message = _receive(worker, checkpoint, self._who, float("inf"))
        finally:
            os.close(worker[1])
            _stop(worker[0])
        if message[0] == "error":
            raise message[1]
        value: T = message[1]
        return value

    def cancel(self) -> None:
        """The call no longer wanted: its process stopped (when it is not already)."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            os.close(worker[1])
            _stop(worker[0])


def _fork(body: Callable[[int], None], inherited: Sequence[int] = ()) -> tuple[int, int]:
    """A forked worker running ``body`` with its pipe's write end (see ``_child``): its pid and
    the pipe's read end. One fork at a time in this process (chains are read by threads): a
    worker never holds the write end of another's pipe, so a worker's death is seen as its
    pipe's end; ``inherited`` are read ends of earlier workers, closed in this one."""
    with _FORKING:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(read_end)
            for fd in inherited:
                os.close(fd)
            _child(write_end, body)
        os.close(write_end)
    return pid, read_end


def _child(fd: int, body: Callable[[int], None]) -> NoReturn:
    """A worker's life: ``body`` sends what it has to say; any failure is sent as its error
    (``_portable``); it exits without this process's cleanups."""
    code = 0
    try:
        _become_worker()
        body(fd)
    except (BrokenPipeError, _RunGone):
        code = 1  # the run stopped reading, or is gone: nothing to tell it
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the run, which judges it
        try:
            _send(fd, ("error", _portable(exc)))
        except BaseException:  # noqa: BLE001 - the run is gone: nothing to tell it
            code = 1
    os._exit(code)


def _become_worker() -> None:
    """A forked process made a worker: the run's signals left to the run, nothing written to
    this process's streams (a thread of the run may have held their locks when it forked),
    nothing of the run's collected (its connections stay the run's)."""
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    logging.disable(logging.CRITICAL)
    gc.freeze()


def _stop(pid: int) -> None:
    """The worker gone: it has exited (its results were all taken), or is killed now."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already
        pass


@dataclass(frozen=True, slots=True)
class _Who:
    """A forked process, as its failures are told: what it is, what is lost when it fails,
    and the error that says so."""

    name: str  # "chain eth: a unit worker process"
    lost: str  # "the chain was left unread"
    error: type[ReconcilerError]


def _unit_worker(chain: str) -> _Who:
    return _Who(f"chain {chain}: a unit worker process", "the chain was left unread", ChainError)


AHEAD = 2  # whole messages read from a worker before its turn; beyond them it waits on its pipe


class _Inbox:
    """The workers' pipes, read as data comes from any of them, each worker's whole messages
    kept in order until its turn (at most ``AHEAD`` of them): a worker that finished its chunk
    before its turn goes on with the next instead of waiting for the run to read it. A
    worker's failure (its error, its death, its silence) is told at its turn, so the chain's
    first failing chunk is the one that says why, as in one process."""

    def __init__(
        self, running: list[tuple[int, int]], checkpoint: Callable[[], None], who: _Who, silence: float
    ) -> None:
        self._running = running
        self._checkpoint = checkpoint
        self._who = who
        self._silence = silence
        self._buffers = [bytearray() for _ in running]
        self._messages: list[deque[tuple[Any, ...]]] = [deque() for _ in running]
        self._ended = [False] * len(running)
        self._heard = [time.monotonic()] * len(running)
        self._by_fd = {fd: k for k, (_, fd) in enumerate(running)}

    def next_from(self, k: int) -> tuple[Any, ...]:
        """Worker ``k``'s next message, every worker's pipe read meanwhile."""
        while not self._messages[k]:
            self._pump(k)
        return self._messages[k].popleft()

    def _pump(self, wanted: int) -> None:
        poll = select.poll()
        for k, (_, fd) in enumerate(self._running):
            if not self._ended[k] and (k == wanted or len(self._messages[k]) < AHEAD):
                poll.register(fd, select.POLLIN)
        ready = poll.poll(int(WAIT_SLICE * 1000))
        self._checkpoint()
        now = time.monotonic()
        for fd, _ in ready:
            k = self._by_fd[fd]
            part = os.read(fd, 1 << 20)
            if not part:
                self._ended[k] = True  # its pipe ended: it has exited (or was killed)
                continue
            self._heard[k] = now
            buffer = self._buffers[k]
            buffer += part
            while len(buffer) >= 8 and len(buffer) >= 8 + (size := int.from_bytes(buffer[:8], "big")):
                message = pickle.loads(buffer[8 : 8 + size])
                del buffer[: 8 + size]
                if not isinstance(message, tuple) or not message:
                    raise self._who.error(f"{self._who.name} sent something that is not a result; {self._who.lost}")
                self._messages[k].append(message)
        if self._messages[wanted]:
            return
        pid, fd = self._running[wanted]
        # Its pipe ended; or (a backstop) it has exited and its pipe holds nothing, looked at
        # again after (what it wrote just before it exited is read at the next turn).
        if self._ended[wanted] or (all(f != fd for f, _ in ready) and _exited(pid) and not _readable(fd)):
            raise self._who.error(_died(self._who))
        if now - self._heard[wanted] > self._silence:
            raise self._who.error(
                f"{self._who.name} sent nothing for {int(self._silence)}s ([schedule] unit_timeout); it was stopped "
                f"and {self._who.lost}"
            )


def _receive(
    worker: tuple[int, int], checkpoint: Callable[[], None], who: _Who, silence: float
) -> tuple[Any, ...]:
    """The next message of a worker: calling ``checkpoint`` while it is awaited."""
    size = int.from_bytes(_read(worker, 8, checkpoint, who, silence), "big")
    message = pickle.loads(_read(worker, size, checkpoint, who, silence))
    if not isinstance(message, tuple) or not message:
        raise who.error(f"{who.name} sent something that is not a result; {who.lost}")
    return message


def _read(worker: tuple[int, int], size: int, checkpoint: Callable[[], None], who: _Who, silence: float) -> bytes:
    """``size`` bytes from the worker's pipe. It has died when its pipe ends, or when it has
    exited with nothing left in the pipe; it is stuck when it sent nothing for ``silence``
    seconds ([schedule] unit_timeout): either is ``who``'s failure."""
    pid, fd = worker
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    got = bytearray()
    quiet_since = time.monotonic()
    while len(got) < size:
        ready = poll.poll(int(WAIT_SLICE * 1000))
        checkpoint()
        if not ready:
            if _exited(pid):
                ready = poll.poll(0)  # what it wrote before it exited is read first
                if not ready:
                    raise who.error(_died(who))
            elif time.monotonic() - quiet_since > silence:
                raise who.error(
                    f"{who.name} sent nothing for {int(silence)}s ([schedule] unit_timeout); it was stopped and "
                    f"{who.lost}"
                )
            if not ready:
                continue
        part = os.read(fd, min(size - len(got), 1 << 20))
        if not part:
            raise who.error(_died(who))
        got += part
        quiet_since = time.monotonic()
    return bytes(got)


def _readable(fd: int) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _died(who: _Who) -> str:
    return f"{who.name} ended before it sent all its results (killed, or out of memory?); {who.lost}"


def _exited(pid: int) -> bool:
    """Whether the worker has ended (without reaping it: ``_stop`` does)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _send(fd: int, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _work(
    k: int,
    workers: int,
    fd: int,
    chain: ChainSettings,
    settings: Settings,
    inputs: UnitInputs,
    adapter_for: AdapterFactory,
    block: BlockRef,
    texts: bool,
    stage: tuple[Path, bool] | None,
) -> None:
    """Worker ``k``'s work (in ``_child``): its chunks read, judged, staged and sent in order,
    then its endpoints and what it staged."""
    parent = os.getppid()
    # The ledger is read through connections of its own, the node through an adapter of its own.
    inputs = replace(inputs, ledger=Ledger(inputs.ledger.url, reader=True))
    adapter = adapter_for(chain)
    writer = StageWriter(stage[0] / f"w{k}.db", stage[1]) if stage is not None else None
    try:

        def gone() -> None:
            if os.getppid() != parent:
                raise _RunGone

        # As in the run's own process: the next chunk read while this one is judged.
        size, assets = chunk_wallets(), len(settings.assets_on(chain.name))
        taken: deque[list[WalletSettings]] = deque()

        def parts() -> Iterator[list[WalletSettings]]:
            for part in settings.wallet_chunks(chain.name, size, lambda n: n % workers == k):
                taken.append(part)
                yield part

        for n, result in enumerate(read_units(chain, settings, adapter, block, parts(), inputs, gone)):
            part, number = taken.popleft(), k + n * workers
            rows = position_texts(result.positions)  # each amount made text once, for every form
            positions = RenderedPositions.of(result.positions, texts, rows)
            configs = RenderedConfigs(chain.name, result.first_seen)
            if writer is not None:  # numbered as the run numbers them: every chunk before is whole
                names = [w.name for w in part]
                writer.add(number * size * assets, rows, number * size, names, result.first_seen, configs.texts)
            result = replace(result, positions=positions, first_seen=configs, read_path=adapter.read_path)
            _send(fd, ("unit", number, result))
        counts = (writer.positions, writer.configs) if writer is not None and writer.usable else None
        _send(fd, ("done", tuple(adapter.sources()), counts))
    finally:
        adapter.close()
        if writer is not None:
            writer.close()


class _RunGone(Exception):
    """The run that forked this worker is gone (its process changed): stop."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can cross to the run: itself when it survives pickling as itself, else its
    words in the nearest error the run tells apart (an endpoint that did not answer, a chain's
    or the ledger's failure; anything else named by its type, as the run would have said it)."""
    try:
        again = pickle.loads(pickle.dumps(exc))
        if type(again) is type(exc) and str(again) == str(exc):
            return exc
    except Exception:  # noqa: BLE001, S110 - any failure to cross: said in words below
        pass
    for kind in (RpcUnavailable, ChainError, LedgerError, ReconcilerError):
        if isinstance(exc, kind):
            return kind(str(exc))
    return ChainError(f"{type(exc).__name__}: {exc}")
