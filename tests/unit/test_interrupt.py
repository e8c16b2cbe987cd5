"""Signals end an `interruptible()` block with `Interrupted`, even when the handler's raise lands
in a finalizer and Python drops it; cleanups run to completion; handlers come back afterwards.

The race is reproduced on purpose: the finalizer itself sends SIGTERM to this process. `os.kill`
on its own process runs the Python handler before it returns (and Linux delivers a signal sent
to a process to its main thread first), so the handler raises inside the finalizer every time;
each test also asserts that Python really dropped that raise.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from reconciler.interrupt import Interrupted, interruptible


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class _Resource:
    """Stands for a connection pool or a session: something a finalizer cleans up."""


class _ResourceWithDel:
    def __del__(self) -> None:
        _sigterm_self()


@contextlib.contextmanager
def _dropped_exceptions() -> Iterator[list[BaseException | None]]:
    """What Python printed as "Exception ignored" (and otherwise dropped) meanwhile."""
    seen: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def _finalize_while_signalled(kind: str) -> None:
    """An object whose finalizer sends SIGTERM is collected: the handler raises inside it."""
    if kind == "weakref.finalize":
        resource: object = _Resource()
        weakref.finalize(resource, _sigterm_self)
    else:
        resource = _ResourceWithDel()
    del resource
    gc.collect()


FINALIZERS = ["weakref.finalize", "__del__"]


@pytest.mark.parametrize("kind", FINALIZERS)
def test_a_raise_dropped_in_a_finalizer_is_raised_by_the_next_check(kind: str) -> None:
    after_check: list[str] = []
    with _dropped_exceptions() as dropped, pytest.raises(Interrupted) as raised:
        with interruptible() as guard:
            _finalize_while_signalled(kind)
            assert [type(e) for e in dropped] == [Interrupted], "the race did not happen: the raise was not dropped"
            assert guard.received == (signal.SIGTERM,)
            guard.check()
            after_check.append("went on")
    assert after_check == []
    assert raised.value.signum == signal.SIGTERM and str(raised.value) == "interrupted by SIGTERM"


@pytest.mark.parametrize("kind", FINALIZERS)
def test_a_block_left_normally_after_a_dropped_raise_raises_interrupted(kind: str) -> None:
    with _dropped_exceptions() as dropped, pytest.raises(Interrupted) as raised:
        with interruptible():
            _finalize_while_signalled(kind)
            assert [type(e) for e in dropped] == [Interrupted]
            # no check(): the block ends normally, and must not end silently
    assert raised.value.signame == "SIGTERM"


def test_without_a_signal_the_block_ends_normally() -> None:
    with interruptible() as guard:
        guard.check()
    assert guard.received == () and not guard.interrupted


def test_the_handler_raises_at_once_and_except_exception_does_not_swallow_it() -> None:
    reached: list[str] = []
    with pytest.raises(Interrupted) as raised, interruptible():
        try:
            _sigterm_self()
            reached.append("after the signal")
        except Exception:  # noqa: BLE001 - what a runner recording failures does
            reached.append("swallowed")
    assert reached == []
    assert raised.value.signum == signal.SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_each_default_signal_interrupts(sig: signal.Signals) -> None:
    with pytest.raises(Interrupted) as raised, interruptible():
        os.kill(os.getpid(), sig)
    assert raised.value.signum == sig and str(raised.value) == f"interrupted by {sig.name}"


def test_a_blocking_sleep_is_interrupted_promptly() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0.05)  # SIGALRM in 50 ms, from the kernel
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted) as raised, interruptible(signals=(signal.SIGALRM,)):
            time.sleep(30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert time.monotonic() - started < 10
    assert raised.value.signum == signal.SIGALRM


def test_a_second_signal_during_cleanup_does_not_abort_it() -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted) as raised:
        with interruptible() as guard:
            try:
                _sigterm_self()
                steps.append("not reached")
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while stopping things
                steps.append("cleanup finished")
    assert steps == ["cleanup finished"]
    assert raised.value.signum == signal.SIGTERM  # the first signal is the reason
    assert guard.received == (signal.SIGTERM, signal.SIGINT)


def test_a_signal_during_a_registered_cleanup_of_a_normal_exit_lets_every_cleanup_finish() -> None:
    steps: list[str] = []

    def first_cleanup_interrupted_midway() -> None:
        steps.append("stopping the second node")
        _sigterm_self()
        steps.append("second node stopped")

    with pytest.raises(Interrupted) as raised:
        with interruptible() as guard:
            guard.callback(steps.append, "first node stopped")
            guard.callback(first_cleanup_interrupted_midway)
            steps.append("work done")
    assert steps == ["work done", "stopping the second node", "second node stopped", "first node stopped"]
    assert raised.value.signum == signal.SIGTERM


def test_cleanups_run_when_the_block_is_interrupted_and_a_failing_one_skips_none() -> None:
    steps: list[str] = []

    def broken() -> None:
        raise OSError("cannot stop")

    with pytest.raises(Interrupted) as raised:
        with interruptible() as guard:
            guard.callback(steps.append, "ran")
            guard.callback(broken)
            _sigterm_self()
    assert steps == ["ran"]
    assert isinstance(raised.value.__cause__, OSError)  # the cleanup's failure stays visible


def test_another_exception_after_a_recorded_signal_still_ends_as_interrupted() -> None:
    with pytest.raises(Interrupted) as raised, interruptible():
        with contextlib.suppress(Interrupted):  # some code swallowed the handler's raise
            _sigterm_self()
        raise ValueError("a failure after the signal")
    assert isinstance(raised.value.__cause__, ValueError)


def test_handlers_are_restored_after_the_block_however_it_ends() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with interruptible():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    with pytest.raises(Interrupted), interruptible():
        _sigterm_self()
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_outside_the_block_behaves_as_before() -> None:
    seen: list[int] = []

    def recording(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, recording)
    try:
        with interruptible():
            pass
        _sigterm_self()  # the handler that was there before: no Interrupted
        assert seen == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):  # Python's default for SIGINT
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_block_must_be_entered_in_the_main_thread_and_once() -> None:
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with interruptible():
                pass
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])
    guard = interruptible()
    with guard:
        pass
    with pytest.raises(RuntimeError, match="single use"), guard:
        pass


def test_nested_blocks_pass_the_inner_interruption_through() -> None:
    with pytest.raises(Interrupted) as raised:
        with interruptible() as outer, interruptible():
            _sigterm_self()
    assert raised.value.signum == signal.SIGTERM
    assert outer.received == ()


def test_interrupted_pickles_and_prints_the_signal_name() -> None:
    exc: Any = pickle.loads(pickle.dumps(Interrupted(signal.SIGINT)))
    assert isinstance(exc, Interrupted) and exc.signum == signal.SIGINT and str(exc) == "interrupted by SIGINT"
    assert not isinstance(exc, Exception)
