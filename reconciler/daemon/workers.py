"""The daemon's background workers: what runs beside the scheduled jobs, started with the
scheduler and stopped with it — today the webhook delivery; a head-following watcher fits the
same shape.

Invariants: a worker runs in one daemon thread of its own (a worker stuck in a call never holds
the process up at exit) and never in a scheduled job's thread, so nothing it waits on delays a
firing; one failing step is logged and the next one runs; stopping is two-phase and never waits
unboundedly: `request_stop` returns at once, `join` waits at most the time it is given, and a
worker that did not end in time is `abandon`-ed: it hands back what it holds (the delivery
worker, the alerts it claimed: they stay pending, due at once, for the next start or another
instance) and is left to die with the process.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Protocol

from reconciler.bootstrap import open_ledger
from reconciler.daemon.alerts import Attempt, deliver_pending
from reconciler.daemon.metrics import Metrics
from reconciler.errors import ReconcilerError
from reconciler.inputs.settings import Settings
from reconciler.ledger import daemon_store, outbox_store
from reconciler.ledger.store import Ledger

log = logging.getLogger(__name__)

DELIVER_EVERY = 5.0  # seconds between delivery rounds when nothing wakes the worker


class Worker(Protocol):
    """What the daemon needs of a background worker."""

    name: str

    def start(self) -> None: ...

    def request_stop(self) -> None:
        """Ask the worker to stop at its next safe point; returns at once."""

    def join(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the worker to end; whether it did."""

    def abandon(self) -> None:
        """The worker did not end in time: hand back whatever it holds (bounded work)."""


class LoopWorker:
    """A worker that runs `step` in its own daemon thread, every ``every`` seconds or as soon as
    `wake` is called, until asked to stop."""

    name = "worker"

    def __init__(self, every: float) -> None:
        self.every = every
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the next step now (or as soon as the one in progress ends)."""
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    def abandon(self) -> None:
        pass

    def step(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called in the worker's thread once its loop has ended."""

    def _loop(self) -> None:
        try:
            while not self.stopping:
                self._wake.clear()
                try:
                    self.step()
                except Exception:  # noqa: BLE001 - one failed step never ends the worker
                    log.exception("event=worker_step_failed worker=%s", self.name)
                self._wake.wait(self.every)
        finally:
            self.finish()


class DeliveryWorker(LoopWorker):
    """Delivers the outbox's due alerts to the webhooks (every few seconds, and as soon as a job
    has queued some), and keeps the backlog metrics current."""

    name = "alert-delivery"

    def __init__(self, settings: Settings, metrics: Metrics | None = None, every: float = DELIVER_EVERY) -> None:
        super().__init__(every)
        self.settings = settings
        self.metrics = metrics
        self._ledger: Ledger | None = None
        self._holding: set[int] = set()  # alerts claimed by the round in progress, not finished
        self.rounds = 0

    def step(self) -> None:
        if self._ledger is None:
            self._ledger = open_ledger(self.settings)
        ledger = self._ledger
        if self.settings.webhooks:
            try:
                deliver_pending(
                    ledger,
                    self.settings,
                    should_stop=lambda: self.stopping,
                    on_attempt=self._attempted,
                    holding=self._holding,
                )
            except ReconcilerError as exc:
                log.error("event=alert_delivery_failed reason=%r", str(exc))
        if self.metrics is not None and not self.stopping:
            self.metrics.set_backlog(daemon_store.alert_backlog(ledger), datetime.now(UTC))
        self.rounds += 1

    def _attempted(self, attempt: Attempt) -> None:
        if self.metrics is not None:
            self.metrics.webhook_attempt(attempt.outcome)

    def abandon(self) -> None:
        """Hand back the alerts of the attempt in flight (and those after it): due again at once,
        for the next start or another instance. The receiver may get one of them twice; it drops
        duplicates by their event id."""
        held, ledger = list(self._holding.copy()), self._ledger
        if not held or ledger is None:
            return
        try:
            outbox_store.release(ledger, held, datetime.now(UTC))
        except ReconcilerError as exc:
            log.error("event=alert_release_failed rows=%d reason=%r", len(held), str(exc))
            return
        log.warning("event=alert_delivery_abandoned rows=%d reason=stopping", len(held))

    def finish(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
