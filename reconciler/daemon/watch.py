"""Following the head (`[watch]`): one watcher per chain judges every new block as soon as the
node has it, between the scheduled jobs.

Invariants:
- Never a skipped block. A watcher only ever asks for a run of its chain pinned at the node's
  head (reconciler.app.run with ``at_head``): the run observes every block after the chain's
  checkpoint, judges them with the passes of `scan` and moves the checkpoint in the transaction
  that writes what it found, so a head that could not be judged (node down, database down, the
  ledger held) is simply judged by the next one, with everything in between.
- Nothing judged twice: the scheduled `scan` and `run` start from the same checkpoint (they find
  the watched range observed), and the ledger's writer lock serializes them with the watcher.
- Independent: each chain's watcher has its own daemon thread, never a scheduled job's thread;
  alerts are queued in the outbox by the run and sent by the delivery worker (woken at once).
- A head that goes backwards is logged and waited out (never judged below the watched head); a
  node that stops answering is retried every poll; a dropped ``newHeads`` subscription is
  reconnected with backoff while polling goes on.
- Latency is measured from the first sight of a block (its number answered by the node, or
  announced by the subscription) to the enqueue of a break's alert.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from reconciler.app.run import AdapterFactory, RunOptions, RunReport, run_reconciliation
from reconciler.bootstrap import open_ledger
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.workers import LoopWorker
from reconciler.domain import BreakStatus
from reconciler.errors import ReconcilerError
from reconciler.inputs.settings import ChainSettings, Settings
from reconciler.interrupt import Interrupted
from reconciler.ledger import watch_store
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import WATCH_JOB
from reconciler.redaction import redact_rpc_url, redact_urls

log = logging.getLogger(__name__)

_T = TypeVar("_T")
FIRST_SEEN_KEPT = 4096  # block numbers remembered for latency (a window, not the chain)
WS_BACKOFF_MAX = 30.0
WS_OPEN_TIMEOUT = 5.0


class HeadReader(Protocol):
    """What a watcher polls: the node's newest block number (``eth_blockNumber``)."""

    def head(self) -> int: ...

    def block_hash(self, number: int) -> str: ...

    def close(self) -> None: ...


HeadReaderFactory = Callable[[ChainSettings], HeadReader]


class ChainWatcher(LoopWorker):
    """Follows one chain's head: every ``poll_interval`` (or at once when its subscription
    announces a head), a run of the new blocks."""

    def __init__(
        self,
        settings: Settings,
        chain: ChainSettings,
        adapter_for: AdapterFactory,
        head_reader_for: HeadReaderFactory,
        metrics: Metrics | None = None,
        after_run: Callable[[RunReport], None] = lambda r: None,
    ) -> None:
        self.name = f"watch-{chain.name}"
        super().__init__(settings.watch.poll_interval.total_seconds())
        self.settings = settings
        self.chain = chain
        self.adapter_for = adapter_for
        self.head_reader_for = head_reader_for
        self.metrics = metrics
        self.after_run = after_run
        self._adapter: HeadReader | None = None
        self._ledger: Ledger | None = None
        self._judged: int | None = None  # the newest block judged (None: not known yet)
        self._judged_hash: str | None = None
        self._first_seen: dict[int, float] = {}  # block number -> wall time of first sight
        self._seen_head = -1
        self._seen_lock = threading.Lock()
        self._unreachable = False
        self._backwards = False  # a head below the judged one was logged (once per episode)
        self._failing = False  # a step's failure was logged (once per episode)
        self.subscription: HeadSubscription | None = None
        if chain.ws_url:
            self.subscription = HeadSubscription(chain, self.saw, self.stopping_event)
        self.runs = 0

    @property
    def stopping_event(self) -> threading.Event:
        return self._stopping

    def start(self) -> None:
        super().start()
        if self.subscription is not None:
            self.subscription.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        done = super().join(timeout)
        if self.subscription is not None:
            done = self.subscription.join(max(deadline - time.monotonic(), 0.0)) and done
        return done

    # -------------------------------------------------------------- heads

    def saw(self, head: int) -> None:
        """A head the node announced or answered: every block up to it is first seen now (if
        not before); a head above the judged one wakes the watcher."""
        now = time.time()
        with self._seen_lock:
            if head > self._seen_head:
                start = max(self._seen_head + 1, head - FIRST_SEEN_KEPT + 1)
                for n in range(start, head + 1):
                    self._first_seen.setdefault(n, now)
                self._seen_head = head
                if len(self._first_seen) > FIRST_SEEN_KEPT:
                    for n in sorted(self._first_seen)[: len(self._first_seen) - FIRST_SEEN_KEPT]:
                        del self._first_seen[n]
        if self._judged is None or head > self._judged:
            self.wake()

    def first_seen(self, block: int) -> float | None:
        with self._seen_lock:
            return self._first_seen.get(block)

    def _checkpoint(self) -> None:
        if self.stopping:
            raise Interrupted(15)

    def _node_head(self) -> int | None:
        return self._ask(lambda reader: reader.head())

    def _replaced(self, number: int, block_hash: str) -> bool | None:
        """Whether the node now has another block at ``number`` (None: it did not answer)."""
        answer = self._ask(lambda reader: reader.block_hash(number))
        return None if answer is None else answer != block_hash

    def _ask(self, call: Callable[[HeadReader], _T]) -> _T | None:
        try:
            if self._adapter is None:
                self._adapter = self.head_reader_for(self.chain)
            head = call(self._adapter)
        except Exception as exc:  # noqa: BLE001 - a node that does not answer is retried next poll
            if not self._unreachable:
                log.warning(
                    "event=watch_node_unreachable chain=%s reason=%r", self.chain.name, redact_urls(str(exc))
                )
            self._unreachable = True
            self._drop_adapter()
            return None
        if self._unreachable:
            log.info("event=watch_node_back chain=%s", self.chain.name)
            self._unreachable = False
        return head

    def _drop_adapter(self) -> None:
        adapter, self._adapter = self._adapter, None
        if adapter is not None:
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - closing a broken adapter may fail too
                log.debug("event=watch_adapter_close_failed chain=%s", self.chain.name)

    # -------------------------------------------------------------- one step

    def step(self) -> None:
        try:
            self._step()
        except ReconcilerError as exc:  # the ledger unreachable, say: the next poll tries again
            if not self._failing:
                log.warning("event=watch_step_failed chain=%s reason=%r", self.chain.name, redact_urls(str(exc)))
            self._failing = True
            return
        if self._failing:
            log.info("event=watch_step_recovered chain=%s", self.chain.name)
            self._failing = False

    def _step(self) -> None:
        if self._ledger is None:
            self._ledger = open_ledger(self.settings)
        ledger = self._ledger
        # What the ledger says was judged: at start, and whenever another daemon instance on the
        # same ledger judged further (its watcher holds the chain's lock meanwhile).
        known = watch_store.watched_head(ledger, self.chain.name)
        if self._judged is None or (known is not None and known.block.number > self._judged):
            self._judged = known.block.number if known is not None else -1
            self._judged_hash = known.block.hash if known is not None else None
        head = self._node_head()
        if head is None:
            return
        self.saw(head)
        if head < self._judged:
            if not self._backwards:
                log.warning(
                    "event=watch_head_backwards chain=%s head=%d watched=%d action=wait",
                    self.chain.name,
                    head,
                    self._judged,
                )
            self._backwards = True
            return
        self._backwards = False
        if head == self._judged:
            # No new block; but the watched one may have been replaced at the same height (a
            # reorg that kept the height): judge the head again, the run walks the reorg back.
            replaced = self._replaced(head, self._judged_hash) if self._judged_hash is not None else False
            if replaced is None:
                return
            if not replaced:
                watch_store.record_node_head(ledger, self.chain.name, head, datetime.now(UTC))
                return
            log.warning("event=watch_head_replaced chain=%s head=%d action=judge", self.chain.name, head)
        self._judge(ledger, head)

    def _judge(self, ledger: Ledger, head: int) -> None:
        options = RunOptions(
            lock_timeout=self.settings.lock_timeout,
            trigger=WATCH_JOB,
            job=WATCH_JOB,
            checkpoint=self._checkpoint,
            chains=(self.chain.name,),
            at_head=True,
        )
        report = run_reconciliation(self.settings, ledger, self.adapter_for, options)
        self.runs += 1
        result = next((c for c in report.chains if c.chain == self.chain.name), None)
        if report.run.status != "complete" or result is None or result.block is None:
            log.warning(
                "event=watch_run_incomplete chain=%s run_id=%s head=%d reason=%r",
                self.chain.name,
                report.run.id,
                head,
                report.run.reason,
            )
            self.after_run(report)
            return
        enqueued = time.time()
        block = result.block
        if block.number >= (self._judged or -1):
            self._judged, self._judged_hash = block.number, block.hash
        watch_store.record_head(ledger, self.chain.name, block, max(head, block.number), datetime.now(UTC))
        scan = next((s for s in report.scans if s.chain == self.chain.name), None)
        blocks = {m.tx_hash.lower(): m.block_number for m, _ in scan.movements} if scan else {}
        opened = [b for b in report.breaks if b.first_run_id == report.run.id and b.status is BreakStatus.OPEN]
        for brk in opened:
            number = blocks.get((brk.key.tx_hash or "").lower(), block.number)
            seen = self.first_seen(number) or self.first_seen(block.number)
            latency = enqueued - seen if seen is not None else None
            if latency is not None and self.metrics is not None:
                self.metrics.detected(self.chain.name, latency)
            log.info(
                "event=watch_break chain=%s break_id=%s kind=%s block=%d tentative=%s latency=%s",
                self.chain.name,
                brk.id,
                brk.key.kind.value,
                number,
                str(brk.tentative).lower(),
                f"{latency:.3f}" if latency is not None else "unknown",
            )
        if self.metrics is not None:
            self.metrics.watched(self.chain.name, block.number)
        log.info(
            "event=watch_judged chain=%s run_id=%s from=%s to=%d breaks_opened=%d",
            self.chain.name,
            report.run.id,
            scan.from_block if scan else "?",
            block.number,
            len(opened),
        )
        self.after_run(report)

    def finish(self) -> None:
        self._drop_adapter()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


class HeadSubscription:
    """``eth_subscribe`` to ``newHeads`` over the chain's ws_url, in a daemon thread of its own:
    each announced head is passed to ``on_head``; a dropped or refused connection is reconnected
    with backoff (1 s doubling to 30 s) until ``stopping`` is set. Polling goes on meanwhile."""

    def __init__(self, chain: ChainSettings, on_head: Callable[[int], None], stopping: threading.Event) -> None:
        assert chain.ws_url is not None
        self.chain = chain
        self.url = chain.ws_url
        self.on_head = on_head
        self.stopping = stopping
        self.connected = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._loop, name=f"watch-ws-{chain.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    def _loop(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                self._follow()
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect; polling covers the gap
                self.connected.clear()
                log.warning(
                    "event=watch_subscription_dropped chain=%s endpoint=%s reason=%r retry_in=%.0f",
                    self.chain.name,
                    redact_rpc_url(self.url),
                    redact_urls(str(exc)),
                    backoff,
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, WS_BACKOFF_MAX)

    def _follow(self) -> None:
        from websockets.sync.client import connect  # only a chain with ws_url pays for the import

        with connect(self.url, open_timeout=WS_OPEN_TIMEOUT, close_timeout=1) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            answer = json.loads(ws.recv(timeout=WS_OPEN_TIMEOUT))
            if not isinstance(answer, dict) or "result" not in answer:
                raise ReconcilerError(f"eth_subscribe(newHeads) was refused: {str(answer)[:200]}")
            self.connections += 1
            self.connected.set()
            log.info(
                "event=watch_subscribed chain=%s endpoint=%s connections=%d",
                self.chain.name,
                redact_rpc_url(self.url),
                self.connections,
            )
            while not self.stopping.is_set():
                try:
                    message = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                head = _announced_head(message)
                if head is not None:
                    self.on_head(head)
        if not self.stopping.is_set():
            raise ReconcilerError("the node closed the subscription")


def _announced_head(message: str | bytes) -> int | None:
    try:
        doc = json.loads(message)
        number = doc["params"]["result"]["number"]
        return int(number, 16)
    except (ValueError, KeyError, TypeError):
        return None


def watchers(
    settings: Settings,
    adapter_for: AdapterFactory,
    head_reader_for: HeadReaderFactory,
    metrics: Metrics | None = None,
    after_run: Callable[[RunReport], None] = lambda r: None,
) -> list[ChainWatcher]:
    """One watcher per configured chain when ``[watch] enabled``; none otherwise."""
    if not settings.watch.enabled:
        return []
    return [
        ChainWatcher(settings, chain, adapter_for, head_reader_for, metrics, after_run)
        for chain in settings.chains.values()
    ]
