"""Prometheus metrics of the daemon, under the design's names.

Invariants: every metric lives in the `Metrics` object's own registry (nothing is registered at
import or in prometheus-client's global registry, so two `Metrics` never collide and tests start
clean); an RPC endpoint is a label only as scheme://host[:port] (a hosted provider's key sits in
the path); open-break gauges are recomputed from the ledger, and a (kind, severity) that had
breaks and has none now reads 0 rather than vanishing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from reconciler.domain import BreakStatus
from reconciler.errors import ConfigError
from reconciler.ledger import daemon_store
from reconciler.ledger.daemon_store import AlertBacklog
from reconciler.ledger.runs import StoredRun
from reconciler.ledger.store import Ledger
from reconciler.redaction import redact_rpc_url

# A run takes seconds on a small setup and minutes on thousands of wallets.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class MetricsServer:
    """The /metrics HTTP endpoint, served from a daemon thread until `close`."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int


def parse_listen(listen: str) -> ListenAddress:
    """``host:port`` or ``[v6]:port`` (port 0: any free port, for tests)."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f'[metrics] listen = {listen!r} is not HOST:PORT like "127.0.0.1:9464"')
    return ListenAddress(host, int(port))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.run_last_timestamp = Gauge(
            "reconciler_run_last_timestamp_seconds",
            "When the last run of each status finished (Unix time).",
            ["status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "reconciler_run_duration_seconds", "How long runs took.", buckets=DURATION_BUCKETS, registry=r
        )
        self.chain_pinned_block = Gauge(
            "reconciler_chain_pinned_block", "The block the last run pinned on each chain.", ["chain"], registry=r
        )
        self.chain_blocks_behind_head = Gauge(
            "reconciler_chain_blocks_behind_head",
            "How far the last pinned block is below the chain's head.",
            ["chain"],
            registry=r,
        )
        self.open_breaks = Gauge(
            "reconciler_open_breaks", "Breaks not resolved (open or acknowledged).", ["kind", "severity"], registry=r
        )
        self.rpc_errors = Counter(
            "reconciler_rpc_errors_total", "RPC requests that failed, by endpoint.", ["chain", "endpoint"], registry=r
        )
        self.job_runs = Counter(
            "reconciler_job_runs_total", "Scheduled firings by outcome.", ["job", "outcome"], registry=r
        )
        self.alerts_pending = Gauge(
            "reconciler_alerts_pending", "Webhook alerts in the outbox not delivered yet.", registry=r
        )
        self.webhook_attempts = Counter(
            "reconciler_webhook_attempts_total",
            "Webhook delivery attempts by outcome (ok, http_error, timeout, connection_error, not_sent).",
            ["outcome"],
            registry=r,
        )
        self.alert_backlog = Gauge(
            "reconciler_alert_backlog",
            "Alerts in the outbox not delivered yet (all webhooks, all instances).",
            registry=r,
        )
        self.alert_oldest_pending = Gauge(
            "reconciler_alert_oldest_pending_seconds",
            "How long the oldest undelivered alert has waited (0 when none waits).",
            registry=r,
        )
        self.detection_latency = Histogram(
            "reconciler_detection_latency_seconds",
            "Following the head: from the daemon's first sight of a block at the node to the enqueue of "
            "the alert of a break found in it.",
            ["chain"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.watch_head = Gauge(
            "reconciler_watch_head", "Following the head: the newest block judged on each chain.", ["chain"], registry=r
        )
        self._break_labels: set[tuple[str, str]] = set()

    # -------------------------------------------------------------- recording

    def observe_run(
        self,
        *,
        job: str,
        status: str,
        started_at: datetime,
        finished_at: datetime | None,
        outcome: str | None = None,
        pins: Mapping[str, int | None] | None = None,
        heads: Mapping[str, int] | None = None,
    ) -> None:
        """A finished run: its status's last timestamp, its duration, each chain's pinned block
        (and, given the chain's head, how far behind it the pin is), and the job's outcome
        (``complete``, ``breaks``, ``incomplete``…; the status when not given)."""
        if finished_at is not None:
            self.run_last_timestamp.labels(status=status).set(finished_at.timestamp())
            self.run_duration.observe(max((finished_at - started_at).total_seconds(), 0.0))
        for chain, block in (pins or {}).items():
            if block is None:
                continue
            self.chain_pinned_block.labels(chain=chain).set(block)
            head = (heads or {}).get(chain)
            if head is not None:
                self.set_blocks_behind(chain, head - block)
        self.job_runs.labels(job=job, outcome=outcome or status).inc()

    def observe_stored_run(
        self, stored: StoredRun, *, outcome: str | None = None, heads: Mapping[str, int] | None = None
    ) -> None:
        """`observe_run` for a run as the ledger keeps it (`Ledger.get_run`)."""
        run = stored.summary
        self.observe_run(
            job=run.job,
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            outcome=outcome,
            pins={c.chain: c.block.number for c in stored.chains if c.block is not None},
            heads=heads,
        )

    def observe_job(self, job: str, outcome: str) -> None:
        """A firing that made no run of its own (``skipped``: another instance claimed it)."""
        self.job_runs.labels(job=job, outcome=outcome).inc()

    def webhook_attempt(self, outcome: str) -> None:
        """One webhook delivery attempt and what became of it."""
        self.webhook_attempts.labels(outcome=outcome).inc()

    def set_backlog(self, backlog: AlertBacklog, now: datetime) -> None:
        """The outbox as it stands: undelivered alerts and the age of the oldest."""
        self.alerts_pending.set(backlog.pending)
        self.alert_backlog.set(backlog.pending)
        oldest = backlog.oldest_created_at
        self.alert_oldest_pending.set(max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)

    def set_blocks_behind(self, chain: str, blocks: int) -> None:
        self.chain_blocks_behind_head.labels(chain=chain).set(max(blocks, 0))

    def watched(self, chain: str, block: int) -> None:
        self.watch_head.labels(chain=chain).set(block)

    def detected(self, chain: str, seconds: float) -> None:
        self.detection_latency.labels(chain=chain).observe(max(seconds, 0.0))

    def rpc_error(self, chain: str, endpoint: str) -> None:
        """One failed RPC request; the endpoint is shown as scheme://host[:port] whatever is passed."""
        self.rpc_errors.labels(chain=chain, endpoint=redact_rpc_url(endpoint)).inc()

    def set_open_breaks(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Open breaks by (kind, severity); pairs seen before and absent now read 0."""
        for kind, severity in self._break_labels - set(counts):
            self.open_breaks.labels(kind=kind, severity=severity).set(0)
        for (kind, severity), count in counts.items():
            self.open_breaks.labels(kind=kind, severity=severity).set(count)
        self._break_labels |= set(counts)

    def refresh_from_ledger(self, ledger: Ledger) -> None:
        """Recompute what the ledger knows: open breaks by kind and severity, the alert backlog."""
        counts: dict[tuple[str, str], int] = {}
        for brk in ledger.list_breaks([BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED]):
            key = (brk.key.kind.value, brk.severity.value)
            counts[key] = counts.get(key, 0) + 1
        self.set_open_breaks(counts)
        self.set_backlog(daemon_store.alert_backlog(ledger), datetime.now(UTC))

    # -------------------------------------------------------------- serving

    def serve(self, listen: str) -> MetricsServer:
        """Serve /metrics at ``host:port`` from a daemon thread."""
        address = parse_listen(listen)
        try:
            server, thread = start_http_server(address.port, addr=address.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"[metrics] listen = {listen!r}: cannot listen there ({exc.strerror or exc}); "
                "choose a free port, or stop what holds it"
            ) from exc
        return MetricsServer(server, thread)
