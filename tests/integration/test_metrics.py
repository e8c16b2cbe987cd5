"""The Prometheus endpoint: real runs on Anvil and the ledger (SQLite and PostgreSQL), /metrics
scraped over real HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chains.evm.devnet import Devnet
from reconciler.bootstrap import open_ledger
from reconciler.daemon.metrics import Metrics, MetricsServer
from reconciler.errors import ConfigError
from reconciler.inputs.config import load_settings
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name and sorted labels -> value."""
    answer = requests.get(server.url, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_follow_runs_and_the_ledger(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 42)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    pinned = doc["chains"]["eth"]["block_number"]
    devnet.mine(2)

    settings = load_settings(str(config))
    ledger = open_ledger(settings)
    metrics = Metrics()
    server = metrics.serve("127.0.0.1:0")
    try:
        stored = ledger.get_run(doc["run_id"])
        metrics.observe_stored_run(stored, outcome="breaks", heads={"eth": devnet.head()})
        metrics.observe_job("run", "skipped")
        metrics.refresh_from_ledger(ledger)
        metrics.rpc_error("eth", "https://rpc.example/v3/APIKEY0123456789")
        metrics.rpc_error("eth", "https://rpc.example/v3/APIKEY0123456789")

        got = scrape(server)
        assert got[("reconciler_run_last_timestamp_seconds", (("status", "complete"),))] == pytest.approx(
            stored.summary.finished_at.timestamp() if stored.summary.finished_at else 0
        )
        assert got[("reconciler_run_duration_seconds_count", ())] == 1
        assert got[("reconciler_chain_pinned_block", (("chain", "eth"),))] == pinned
        assert got[("reconciler_chain_blocks_behind_head", (("chain", "eth"),))] == 2
        assert got[("reconciler_open_breaks", (("kind", "balance_mismatch"), ("severity", "error")))] == 1
        assert got[("reconciler_rpc_errors_total", (("chain", "eth"), ("endpoint", "https://rpc.example")))] == 2
        assert got[("reconciler_job_runs_total", (("job", "run"), ("outcome", "breaks")))] == 1
        assert got[("reconciler_job_runs_total", (("job", "run"), ("outcome", "skipped")))] == 1
        assert got[("reconciler_alerts_pending", ())] == 0
        assert got[("reconciler_alert_backlog", ())] == 0 and got[("reconciler_alert_oldest_pending_seconds", ())] == 0
        assert not any("APIKEY" in value for _, labels in got for _, value in labels), "no key in a label"

        # The loss is booked: the break resolves, and its gauge reads 0 rather than vanishing.
        books = custody.book([("seg-1", "USDC", "-0.000042", "adjustment")])
        assert cli("--config", str(config), "books", "import", str(books)).code == 0
        code, doc, _ = run_json(cli, config)
        assert code == 0
        metrics.observe_stored_run(ledger.get_run(doc["run_id"]), outcome="complete")
        metrics.refresh_from_ledger(ledger)
        got = scrape(server)
        assert got[("reconciler_open_breaks", (("kind", "balance_mismatch"), ("severity", "error")))] == 0
        assert got[("reconciler_run_duration_seconds_count", ())] == 2
        assert got[("reconciler_job_runs_total", (("job", "run"), ("outcome", "complete")))] == 1
    finally:
        server.close()
        ledger.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=2)


def test_the_alert_backlog_and_webhook_attempts_are_exported() -> None:
    from datetime import UTC, datetime, timedelta

    from reconciler.ledger.daemon_store import AlertBacklog

    metrics = Metrics()
    now = datetime.now(UTC)
    metrics.set_backlog(AlertBacklog(4, now - timedelta(seconds=90), "break.opened", "ab" * 6, 3, "x"), now)
    for outcome in ("timeout", "timeout", "ok", "http_error"):
        metrics.webhook_attempt(outcome)
    server = metrics.serve("127.0.0.1:0")
    try:
        got = scrape(server)
    finally:
        server.close()
    assert got[("reconciler_alert_backlog", ())] == 4 == got[("reconciler_alerts_pending", ())]
    assert got[("reconciler_alert_oldest_pending_seconds", ())] == 90
    attempts = {labels: v for (name, labels), v in got.items() if name == "reconciler_webhook_attempts_total"}
    assert attempts == {(("outcome", "timeout"),): 2, (("outcome", "ok"),): 1, (("outcome", "http_error"),): 1}


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the same names twice: no "Duplicated timeseries"
    first.observe_job("scan", "complete")
    one, two = first.serve("127.0.0.1:0"), second.serve("127.0.0.1:0")
    try:
        assert scrape(one)[("reconciler_job_runs_total", (("job", "scan"), ("outcome", "complete")))] == 1
        assert ("reconciler_job_runs_total", (("job", "scan"), ("outcome", "complete"))) not in scrape(two)
    finally:
        one.close()
        two.close()


def test_a_port_in_use_is_a_clear_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"\[metrics\] listen = '127.0.0.1:{port}': cannot listen there"):
            Metrics().serve(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        Metrics().serve("localhost")
