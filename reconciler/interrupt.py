"""Stopping on a signal, deterministically: inside `interruptible()`, SIGINT, SIGTERM and SIGHUP
end the block with `Interrupted`, and its registered cleanups always run to completion.

Invariant: once a handled signal has arrived inside the block, the block never ends normally —
leaving it raises `Interrupted` (whatever else was in flight stays attached as `__cause__`), so a
command can never exit 0 after it was told to stop.

Why not just raise from the handler: Python runs a handler between two bytecodes of whatever the
main thread is executing, and that can be a weakref finalizer or a `__del__`; an exception raised
there is printed as "Exception ignored" and dropped, and the program carries on. So:

- the handler FIRST records the signal, THEN raises `Interrupted` (so a blocking socket read,
  `sleep` or pipe write stops promptly). If that raise is swallowed, the record remains:
  `check()`, called at safe points between steps, raises it there; leaving the block raises it.
- The handler raises at most once per block (nor after `check()` raised): later signals — a
  second Ctrl-C while `finally` blocks stop child processes — are only recorded, so cleanup is
  never cut short. The price: if the one raise was swallowed, the work goes on until the next
  `check()`; call it often enough.
- Cleanups registered with `callback()` run when the block ends, however it ends. While they run
  (and while the block restores the previous handlers) signals are only recorded: the handler
  sees the block's own exit on the stack and does not raise.
- Threads: Python runs signal handlers only in the main thread, so the block must be entered
  there (RuntimeError otherwise). `check()` may be called from any thread; it raises there.
- Outside any block Python's defaults stay (SIGINT raises KeyboardInterrupt, SIGTERM kills).
  Blocks nest: an inner block's `Interrupted` passes through the outer one unchanged.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import ParamSpec

P = ParamSpec("P")

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(BaseException):
    """A handled signal stopped the work. A BaseException, so `except Exception` blocks that
    record failures do not swallow it; code that must record an interruption (a run marked
    `incomplete`) catches it by name."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)  # args stay (signum,): the exception pickles and compares cleanly
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal_name(self.signum)

    def __str__(self) -> str:
        return f"interrupted by {self.signame}"


class Interruptible:
    """One interruptible block; use through `interruptible()`. Single use."""

    def __init__(self, signals: Iterable[int]) -> None:
        self.signals = tuple(dict.fromkeys(signals))
        self._received: list[int] = []
        self._raised = False
        self._armed = False
        self._entered = False
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int] = {}
        self._cleanups = contextlib.ExitStack()

    @property
    def received(self) -> tuple[int, ...]:
        """Every handled signal recorded so far, in arrival order."""
        return tuple(self._received)

    @property
    def interrupted(self) -> bool:
        return bool(self._received)

    def check(self) -> None:
        """A safe point: raise `Interrupted` (for the first signal) if any signal was recorded."""
        if self._received:
            self._raised = True
            raise Interrupted(self._received[0])

    def callback(self, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Run `fn(*args, **kwargs)` when the block ends, however it ends (last registered runs
        first; one failing does not skip the others). Signals meanwhile are only recorded."""
        self._cleanups.callback(fn, *args, **kwargs)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._received.append(signum)  # first the record: it survives a raise that gets swallowed
        if not self._armed or self._raised or _inside_exit(frame):
            return
        self._raised = True
        raise Interrupted(signum)

    def __enter__(self) -> Interruptible:
        if self._entered:
            raise RuntimeError("an interruptible block is single use: call interruptible() again")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("interruptible() must be entered in the main thread: only it runs signal handlers")
        self._entered = True
        for signum in self.signals:
            previous = signal.signal(signum, self._handle)
            # None: a handler installed outside Python; SIG_DFL is the closest we can restore.
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
        self._armed = True  # a signal during the installation above is recorded; check() raises it
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # From here on the handler finds this frame on the stack and only records.
        failure: BaseException | None = None
        try:
            self._cleanups.__exit__(exc_type, exc, tb)
        except BaseException as raised:  # noqa: BLE001 - re-raised below, after the handlers are restored
            failure = raised
        finally:
            self._armed = False
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
        ending = failure if failure is not None else exc
        if self._received and not isinstance(ending, Interrupted):
            raise Interrupted(self._received[0]) from ending
        if failure is not None:
            raise failure


_EXIT_CODE = Interruptible.__exit__.__code__


def _inside_exit(frame: FrameType | None) -> bool:
    """Whether the interrupted code runs under a block's exit (its cleanups, or restoring)."""
    while frame is not None:
        if frame.f_code is _EXIT_CODE:
            return True
        frame = frame.f_back
    return False


def interruptible(signals: Iterable[int] = DEFAULT_SIGNALS) -> Interruptible:
    """`with interruptible() as guard:` — see the module docstring for the rules."""
    return Interruptible(signals)
