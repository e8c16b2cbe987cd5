"""Alerts end to end: real Anvil, real ledgers (SQLite and PostgreSQL), the CLI's `run` queueing
alerts in the outbox, and `deliver_pending` POSTing them over real HTTP to a local receiver that
can refuse the first deliveries. Time is advanced by passing `now`, never by sleeping."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from reconciler.bootstrap import open_ledger
from reconciler.daemon.alerts import BACKOFF_CAP, UNROUTED_RETRY, backoff, deliver_pending, log_alert, retry_after
from reconciler.daemon.logformat import JsonLogFormatter, message_fields
from reconciler.domain import Severity
from reconciler.inputs.config import load_settings
from reconciler.inputs.settings import Settings
from reconciler.ledger import outbox_store
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import AlertRoute, AlertSetup, enqueue
from tests.conftest import Scenario
from tests.integration.helpers import closed_port_url, load, make_custody, run_json

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
SECRET_ENV = "TEST_WEBHOOK_SECRET"
SECRET = "whsec-0123456789-do-not-show"
PATH_KEY = "PATHKEY0123456789abcdef"  # a key in the webhook's path, as hosted receivers do
STEP = BACKOFF_CAP + timedelta(seconds=1)  # past any backoff


# ------------------------------------------------------------------------- the receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every request and answers the next ones
    from `plan` ((status, headers)), then 200. The ``run.finished`` alert that every run sends
    to every webhook is answered 200 and kept apart, in ``finished``: ``requests`` are the
    alerts of breaks and incomplete runs."""

    requests: list[Received] = field(default_factory=list)
    finished: list[Received] = field(default_factory=list)
    plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def fail_next(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.plan += [a if isinstance(a, tuple) else (a, {}) for a in answers]

    def at(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                received = Received(self.path, dict(self.headers.items()), body)
                if self.headers.get("X-Reconciler-Event") == "run.finished":
                    state.finished.append(received)
                    status, headers = 200, {}
                else:
                    state.requests.append(received)
                    status, headers = state.plan.pop(0) if state.plan else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()
    thread.join(timeout=5)


# ------------------------------------------------------------------------- helpers


def webhook_toml(url: str, min_severity: str = "error", secret_env: str | None = SECRET_ENV) -> str:
    text = f'\n[[alerts.webhooks]]\nurl = "{url}"\nmin_severity = "{min_severity}"\n'
    return text + (f'secret_env = "{secret_env}"\n' if secret_env else "")


@dataclass
class Desk:
    cli: Any
    net: Devnet
    scenario: Scenario
    config: Path
    settings: Settings
    ledger: Ledger
    custody: Any

    def run(self) -> tuple[int, dict[str, Any]]:
        code, doc, _ = run_json(self.cli, self.config)
        return code, doc

    def deliver(self, now: datetime, **kw: Any) -> Any:
        """deliver_pending's report on the alerts of breaks and incomplete runs (the run.finished
        alert of every run goes out alongside; the receiver answers it 200)."""
        report = deliver_pending(self.ledger, self.settings, now=now, **kw)
        entries = [e for e in outbox_store.entries(self.ledger) if e.event == "run.finished"]
        finished = {e.event_id for e in entries}
        return dataclasses.replace(
            report,
            pending=report.pending - sum(1 for e in entries if e.delivered_at is None),
            delivered=tuple(i for i in report.delivered if i not in finished),
            failed=tuple(i for i in report.failed if i not in finished),
            given_up=tuple(i for i in report.given_up if i not in finished),
            unrouted=tuple(i for i in report.unrouted if i not in finished),
        )

    def outbox(self, event: str | None = None) -> list[outbox_store.OutboxEntry]:
        """The outbox's alerts of breaks and incomplete runs (``event="run.finished"``: those)."""
        entries = outbox_store.entries(self.ledger)
        if event is not None:
            return [e for e in entries if e.event == event]
        return [e for e in entries if e.event != "run.finished"]


@pytest.fixture
def make_desk(cli: Any, devnet: Devnet, scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    opened: list[Ledger] = []

    def build(extra: str) -> Desk:
        scenario.extra = extra
        custody = make_custody(devnet, scenario, devnet.url)
        config = scenario.write()
        load(cli, config)
        settings = load_settings(str(config))
        ledger = open_ledger(settings)
        opened.append(ledger)
        return Desk(cli, devnet, scenario, config, settings, ledger, custody)

    yield build
    for ledger in opened:
        ledger.close()


def assert_signed(request: Received) -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Reconciler-Signature"], expected)


def assert_nothing_leaked(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    stored = " ".join(e.last_error or "" for e in desk.outbox())
    # the product's own log lines (the CLI quiets urllib3 and redacts every handler's output)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("reconciler"))
    for secret in (SECRET, PATH_KEY, "/hook"):
        assert secret not in stored, f"{secret!r} stored in the outbox: {stored}"
        assert secret not in logged, f"{secret!r} logged: {logged}"


# ------------------------------------------------------------------------- tests


def test_a_new_break_is_delivered_signed_once_accepted_under_one_event_id(
    make_desk: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.alerts")
    desk: Desk = make_desk(webhook_toml(receiver.url(f"/hook/{PATH_KEY}")))
    desk.net.transfer_as(desk.custody.usdc, desk.custody.wallets["seg-1"], OUTSIDER, 123)
    code, doc = desk.run()
    assert code == 1
    [brk] = doc["breaks"]
    assert (brk["kind"], brk["severity"]) == ("balance_mismatch", "error")

    [row] = desk.outbox()
    assert (row.event, row.attempts, row.delivered_at) == ("break.opened", 0, None)
    assert json.loads(row.body) == {"event": "break.opened", "break": brk}, "the break as `run --json` shows it"

    receiver.fail_next(500, 500)
    t = datetime.now(UTC)
    first = desk.deliver(t)
    assert first.failed == (row.event_id,) and first.delivered == () and first.pending == 1
    [failed] = desk.outbox()
    assert failed.attempts == 1 and failed.last_error == "attempt 1: HTTP 500 Internal Server Error"
    assert t + timedelta(milliseconds=500) <= failed.next_attempt_at <= t + timedelta(seconds=1)

    assert desk.deliver(t).failed == () and len(receiver.requests) == 1, "not retried before its time"
    assert desk.deliver(t + STEP).failed == (row.event_id,)
    last = desk.deliver(t + 2 * STEP)
    assert last.delivered == (row.event_id,) and last.pending == 0

    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert request.path == f"/hook/{PATH_KEY}"
        assert request.body == row.body.encode(), "the stored body, byte for byte"
        assert request.headers["X-Reconciler-Event-Id"] == row.event_id, "the same id on every attempt"
        assert request.headers["X-Reconciler-Event"] == "break.opened"
        assert request.headers["Content-Type"] == "application/json"
        assert_signed(request)
    [done] = desk.outbox()
    assert done.attempts == 3 and done.delivered_at == t + 2 * STEP

    assert desk.deliver(t + 3 * STEP).delivered == () and len(receiver.requests) == 3, "delivered once"

    # The back office books the loss: the break resolves, and that is one more alert.
    books = desk.custody.book([("seg-1", "USDC", "-0.000123", "adjustment")])
    assert desk.cli("--config", str(desk.config), "books", "import", str(books)).code == 0
    code, doc = desk.run()
    assert code == 0 and [b["status"] for b in doc["breaks"]] == ["resolved"]
    assert desk.deliver(datetime.now(UTC)).delivered != ()
    resolved = receiver.requests[-1]
    body = json.loads(resolved.body)
    assert resolved.headers["X-Reconciler-Event"] == "break.resolved" == body["event"]
    assert body["break"]["id"] == brk["id"] and body["break"]["status"] == "resolved"
    assert resolved.headers["X-Reconciler-Event-Id"] != row.event_id
    assert_signed(resolved)

    assert "event=alert_delivered alert=break.opened" in caplog.text
    assert_nothing_leaked(desk, caplog)


def test_retry_after_of_a_429_is_honoured(make_desk: Any, receiver: Receiver) -> None:
    desk: Desk = make_desk(webhook_toml(receiver.url("/hook")))
    desk.net.transfer_as(desk.custody.usdc, desk.custody.wallets["seg-1"], OUTSIDER, 5)
    assert desk.run()[0] == 1
    receiver.fail_next((429, {"Retry-After": "7"}))
    t = datetime.now(UTC)
    assert desk.deliver(t).failed != ()
    [row] = desk.outbox()
    assert row.next_attempt_at == t + timedelta(seconds=7)
    assert "HTTP 429" in (row.last_error or "")
    assert desk.deliver(t + timedelta(seconds=6)).delivered == () and len(receiver.requests) == 1
    assert desk.deliver(t + timedelta(seconds=7)).delivered == (row.event_id,)
    assert {r.headers["X-Reconciler-Event-Id"] for r in receiver.requests} == {row.event_id}


def test_a_warning_goes_only_to_a_webhook_that_asked_for_warnings(make_desk: Any, receiver: Receiver) -> None:
    extra = (
        '\n[surveillance]\ninflow_grace = "0s"\n'
        + webhook_toml(receiver.url("/errors"), "error")
        + webhook_toml(receiver.url("/all"), "warning", secret_env=None)
    )
    desk: Desk = make_desk(extra)
    assert desk.run()[0] == 0, "surveillance starts at this run's pin"
    # 77 base units arrive and are booked, but without the tx hash: the balances agree and the
    # inflow itself is unexplained, a warning.
    desk.net.mint(desk.custody.usdc, desk.custody.wallets["seg-1"], 77)
    desk.net.mine()
    books = desk.custody.book([("seg-1", "USDC", "0.000077", "deposit")])
    assert desk.cli("--config", str(desk.config), "books", "import", str(books)).code == 0
    code, doc = desk.run()
    [brk] = doc["breaks"]
    assert (code, brk["kind"], brk["severity"]) == (0, "unexpected_inflow", "warning")

    assert desk.deliver(datetime.now(UTC)).delivered != ()
    assert receiver.at("/errors") == [], "below that webhook's min_severity"
    [request] = receiver.at("/all")
    assert json.loads(request.body)["break"]["id"] == brk["id"]
    assert "X-Reconciler-Signature" not in request.headers, "no secret configured for it"
    assert len(desk.outbox()) == 1


def test_an_incomplete_run_is_alerted(make_desk: Any, receiver: Receiver) -> None:
    desk: Desk = make_desk(webhook_toml(receiver.url("/hook")))
    assert desk.run()[0] == 0
    assert desk.outbox() == [], "a clean run alerts nobody"
    desk.scenario.chains["eth"]["rpc_urls"] = [closed_port_url()]
    desk.scenario.chains["eth"]["rpc_timeout"] = 2
    desk.scenario.write()
    code, doc = desk.run()
    assert code == 2 and doc["status"] == "incomplete"

    report = desk.deliver(datetime.now(UTC))
    assert len(report.delivered) == 1
    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["event"] == "run.incomplete" == request.headers["X-Reconciler-Event"]
    assert body["run_id"] == doc["run_id"] and "cannot connect to" in body["reason"]
    assert_signed(request)


def test_failed_deliveries_never_store_or_log_the_url_or_the_secret(
    make_desk: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"{closed_port_url()}/hook/{PATH_KEY}?token={PATH_KEY}"
    extra = webhook_toml(dead) + webhook_toml(receiver.url(f"/hook/{PATH_KEY}"), secret_env="TEST_UNSET_SECRET")
    monkeypatch.delenv("TEST_UNSET_SECRET", raising=False)
    desk: Desk = make_desk(extra)
    desk.net.transfer_as(desk.custody.usdc, desk.custody.wallets["seg-1"], OUTSIDER, 9)
    assert desk.run()[0] == 1

    t = datetime.now(UTC)
    report = desk.deliver(t)
    assert len(report.failed) == 2 and report.delivered == ()
    assert receiver.requests == [], "never sent unsigned"
    refused, unsigned = desk.outbox()
    assert refused.last_error is not None and refused.last_error.startswith(
        "attempt 1: cannot connect to http://127.0.0.1:"
    )
    assert "Connection refused" in refused.last_error
    assert "TEST_UNSET_SECRET" in (unsigned.last_error or "") and "not sent unsigned" in (unsigned.last_error or "")
    assert_nothing_leaked(desk, caplog)

    # The variable is set (the daemon restarted with it): the next attempt is signed and lands.
    monkeypatch.setenv("TEST_UNSET_SECRET", SECRET)
    report = desk.deliver(t + STEP)
    assert report.delivered == (unsigned.event_id,)
    assert_signed(receiver.requests[0])
    assert_nothing_leaked(desk, caplog)


def test_an_alert_whose_webhook_left_the_configuration_is_kept_until_it_returns(
    make_desk: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    desk: Desk = make_desk(webhook_toml(receiver.url("/hook")))
    desk.net.transfer_as(desk.custody.usdc, desk.custody.wallets["seg-1"], OUTSIDER, 9)
    assert desk.run()[0] == 1
    t = datetime.now(UTC)
    without = dataclasses.replace(desk.settings, webhooks=())
    report = deliver_pending(desk.ledger, without, now=t)
    [row] = desk.outbox()
    [finished] = desk.outbox("run.finished")
    assert set(report.unrouted) == {row.event_id, finished.event_id} and report.pending == 2
    assert row.attempts == 0 and row.next_attempt_at == t + UNROUTED_RETRY
    assert "no webhook" in (row.last_error or "") and "event=alert_unrouted" in caplog.text
    assert receiver.requests == []

    assert desk.deliver(t + UNROUTED_RETRY).delivered == (row.event_id,)


def test_max_attempts_gives_up_but_keeps_the_row(
    make_desk: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    desk: Desk = make_desk(webhook_toml(receiver.url("/hook")))
    desk.net.transfer_as(desk.custody.usdc, desk.custody.wallets["seg-1"], OUTSIDER, 9)
    assert desk.run()[0] == 1
    receiver.fail_next(503, 503, 503)
    t = datetime.now(UTC)
    assert desk.deliver(t, max_attempts=2).failed != ()
    assert desk.deliver(t + STEP, max_attempts=2).given_up != ()
    later = desk.deliver(t + 2 * STEP, max_attempts=2)
    assert later.failed == later.given_up == later.delivered == () and later.pending == 1
    assert len(receiver.requests) == 2
    assert "event=alert_abandoned" in caplog.text
    assert outbox_store.pending_count(desk.ledger) == 1


def test_two_deliverers_never_claim_the_same_row(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    setup = AlertSetup(routes=(AlertRoute("d" * 64, Severity.INFO),))
    with ledger._session() as s:
        for i in range(40):
            enqueue(s, setup, "run.incomplete", None, {"event": "run.incomplete", "run_id": str(i), "reason": "x"})
    now = datetime.now(UTC) + timedelta(seconds=1)
    claims: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claim(slot: int) -> None:
        start.wait()
        for _ in range(10):
            claims[slot] += [a.id for a in outbox_store.due(ledger, now, 3)]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claims[0]) & set(claims[1])
    assert sorted(claims[0] + claims[1]) == sorted(e.id for e in outbox_store.entries(ledger))
    ledger.close()


# ------------------------------------------------------------------------- pure parts and the log sink


def test_backoff_doubles_from_a_second_to_the_cap_with_jitter() -> None:
    import random

    rng = random.Random(7)
    for attempts, full in ((1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (60, 600)):
        wait = backoff(attempts, rng).total_seconds()
        assert full / 2 <= wait <= full


def test_retry_after_reads_seconds_and_dates_within_the_cap() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert retry_after("7", now) == timedelta(seconds=7)
    assert retry_after("0", now) == timedelta(seconds=1)
    assert retry_after("86400", now) == BACKOFF_CAP
    assert retry_after("Tue, 24 Nov 2026 12:00:30 GMT", now) == timedelta(seconds=30)
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_log_alert_writes_one_structured_line_and_the_json_format_carries_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.alerts")
    brk = {
        "id": "b-1",
        "kind": "balance_mismatch",
        "severity": "error",
        "status": "open",
        "chain": "eth",
        "wallet": "seg-1",
        "asset": "USDC",
        "amount": "-123",
        "detail": "see https://rpc.example/v3/KEY123456789",
    }
    log_alert("break.opened", {"event": "break.opened", "break": brk})
    log_alert("run.incomplete", {"event": "run.incomplete", "run_id": "r-1", "reason": "chain eth: unreachable"})
    opened, incomplete = caplog.records
    assert opened.getMessage() == (
        "event=break.opened break_id=b-1 kind=balance_mismatch severity=error status=open chain=eth wallet=seg-1 "
        "asset=USDC amount=-123"
    )
    assert opened.levelno == logging.WARNING
    assert incomplete.getMessage() == "event=run.incomplete run_id=r-1 reason='chain eth: unreachable'"

    line = JsonLogFormatter().format(opened)
    assert "\n" not in line
    doc = json.loads(line)
    assert (doc["level"], doc["logger"], doc["event"], doc["break_id"]) == (
        "WARNING",
        "reconciler.alerts",
        "break.opened",
        "b-1",
    )
    assert doc["alert"]["break"]["detail"] == "see https://rpc.example", "URLs redacted in the object too"
    assert json.loads(JsonLogFormatter().format(incomplete))["reason"] == "chain eth: unreachable"
    assert datetime.fromisoformat(doc["ts"]).tzinfo is not None


def test_json_format_redacts_urls_and_keeps_its_own_keys() -> None:
    record = logging.LogRecord(
        "chains.evm.adapter",
        logging.ERROR,
        __file__,
        1,
        "event=rpc_failed level=x endpoint=%s reason=%r",
        ("https://h.example/v3/SECRETKEY123456", "a b"),
        None,
    )
    doc = json.loads(JsonLogFormatter().format(record))
    assert doc["level"] == "ERROR", "a message's key never overwrites the record's own"
    assert doc["endpoint"] == "https://h.example" and "SECRETKEY" not in json.dumps(doc)
    assert doc["reason"] == "a b"
    assert message_fields("a=1 b='x y' c=\"q\" a=2") == {"a": "1", "b": "x y", "c": "q"}
