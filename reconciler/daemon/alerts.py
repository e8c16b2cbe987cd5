"""Alert sinks: webhooks fed from the ledger's outbox, and the log.

Invariants:
- One POST per alert row (one event, one webhook), its body sent byte for byte as the ledger
  stored it, with an ``X-Reconciler-Event-Id`` that is the row's event id on every attempt, so a
  receiver drops duplicates; success is a 2xx answer and nothing else (a redirect is a failure:
  following it would send the alert somewhere nobody configured).
- A webhook with ``secret_env`` is never sent an unsigned alert: while the variable is missing or
  empty every attempt fails with an error naming the variable (never its value).
- Failures are retried with exponential backoff and jitter (1 s doubling, at most 10 min), a
  ``Retry-After`` of a 429 or 503 answer is honoured within that cap, and each HTTP attempt is
  bounded by wall-clock time (10 s, whatever the receiver does: reconciler.daemon.webhook_http);
  an attempt that timed out is a failed attempt, logged ``event=webhook_timeout``; nothing is
  dropped: with ``max_attempts`` unset a row is retried until
  delivered, with it a row that used them all stays undelivered (logged, counted as pending).
- A row whose webhook is no longer configured (its URL's SHA-256 matches no
  ``[[alerts.webhooks]]``) is logged and kept, looked at again every 10 min, and delivered if that
  webhook comes back; it never counts as an attempt.
- A webhook URL is shown as scheme://host[:port] only and its secret never at all, in logs and
  in the errors stored in the outbox (requests quotes the full URL in its errors: scrubbed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from reconciler import __version__
from reconciler.daemon.webhook_http import ATTEMPT_DEADLINE, DeliveryFailed, HttpAnswer, bounded_post, scrubbed
from reconciler.inputs.settings import Settings, WebhookSettings
from reconciler.ledger import outbox_store
from reconciler.ledger.outbox_store import PendingAlert
from reconciler.ledger.store import Ledger
from reconciler.ledger.trail import destination_of
from reconciler.redaction import redact_rpc_url, scrub

log = logging.getLogger("reconciler.alerts")  # the name alert lines have always been logged under

BACKOFF_BASE = timedelta(seconds=1)
BACKOFF_CAP = timedelta(minutes=10)
UNROUTED_RETRY = BACKOFF_CAP  # how often a row whose webhook left the configuration is looked at
TIMEOUT = ATTEMPT_DEADLINE  # seconds of wall-clock time for a whole attempt (webhook_http)
BATCH = 50

_RETRY_AFTER_STATUSES = (429, 503)

Post = Callable[[str, bytes, Mapping[str, str], float], HttpAnswer]
http_post: Post = bounded_post  # the real transport: one POST bounded by wall-clock time

# What became of one attempt (reconciler_webhook_attempts_total{outcome}): a 2xx answer, any
# other answer, no complete answer within the deadline, no answer at all (refused, reset, TLS),
# or nothing sent (the webhook's secret_env is not set).
OUTCOMES = ("ok", "http_error", "timeout", "connection_error", "not_sent")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the metrics see it: its outcome, the webhook's destination (SHA-256 of
    its URL) and how long it took."""

    outcome: str
    destination: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one `deliver_pending` call did, by event id."""

    delivered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # attempted, refused or unanswered; retried later
    given_up: tuple[str, ...] = ()  # failed and out of attempts (max_attempts)
    timed_out: tuple[str, ...] = ()  # of failed and given_up: no complete answer within the deadline
    unrouted: tuple[str, ...] = ()  # no webhook with the row's destination: kept, not attempted
    released: int = 0  # claimed but not attempted (stopping, or their webhook just failed)
    pending: int = 0  # undelivered rows left in the outbox after this call


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 s doubling up to 10 min, with
    jitter (between half and all of it) so that many daemons or alerts do not retry in step."""
    exponent = min(max(attempts - 1, 0), 30)
    full = min(BACKOFF_BASE * (1 << exponent), BACKOFF_CAP)
    share = rng.uniform(0.5, 1.0) if rng is not None else random.uniform(0.5, 1.0)
    return full * share


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds or an HTTP date) as a wait within [1 s, 10 min], or None
    when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    wait: timedelta | None = None
    if text.isdigit():
        wait = timedelta(seconds=int(text))
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when - now
    return min(max(wait, BACKOFF_BASE), BACKOFF_CAP)


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def show_webhook(url: str) -> str:
    """How a webhook is named in logs and errors: scheme://host[:port]."""
    return redact_rpc_url(url)


def deliver_pending(
    ledger: Ledger,
    settings: Settings | Sequence[WebhookSettings],
    *,
    now: datetime | None = None,
    post: Post = http_post,
    max_attempts: int | None = None,
    environ: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
    timeout: float = TIMEOUT,
    batch: int = BATCH,
    should_stop: Callable[[], bool] = lambda: False,
    on_attempt: Callable[[Attempt], None] = lambda attempt: None,
    holding: set[int] | None = None,
) -> DeliveryReport:
    """Attempt every alert of the outbox that is due, once each, and record the outcomes.

    ``now`` fixes the clock (tests advance it instead of sleeping); by default the real UTC time
    is read at each step. ``should_stop`` is asked before each attempt: the claimed rows not yet
    attempted are handed back at once, so a stopping daemon waits for one attempt at most (and
    not even that: ``holding`` is kept equal to the ids this call has claimed and not finished
    with, so a caller that gives up on this call can hand them back itself). Rows claimed when
    the call ends by an exception (a signal included) are handed back too. ``on_attempt`` hears
    of every attempt (the metrics).
    """
    webhooks: Sequence[WebhookSettings] = settings.webhooks if isinstance(settings, Settings) else settings
    routes = {destination_of(w.url): w for w in webhooks}
    env = os.environ if environ is None else environ
    held: set[int] = holding if holding is not None else set()

    def clock() -> datetime:
        return now if now is not None else datetime.now(UTC)

    def hand_back(ids: Sequence[int], at: datetime) -> None:
        outbox_store.release(ledger, ids, at)
        held.difference_update(ids)

    delivered: list[str] = []
    failed: list[str] = []
    given_up: list[str] = []
    timed_out: list[str] = []
    unrouted: list[str] = []
    released = 0
    seen: set[int] = set()
    # Long enough that no other deliverer takes a row while this call may still attempt it.
    lease = timedelta(seconds=timeout * batch + 60)
    stopping = False
    try:
        while not stopping:
            claimed = outbox_store.due(ledger, clock(), batch, lease=lease, max_attempts=max_attempts)
            held.update(a.id for a in claimed)
            fresh = [a for a in claimed if a.id not in seen]
            hand_back([a.id for a in claimed if a.id in seen], clock())
            if not fresh:
                break
            seen.update(a.id for a in fresh)
            # A webhook that just failed is not tried again in this call: its other rows wait for
            # that row's retry time (a dead receiver costs one timeout per call, not one per row).
            held_until: dict[str, datetime] = {}
            for position, alert in enumerate(fresh):
                if should_stop():
                    rest = [a.id for a in fresh[position:]]
                    hand_back(rest, clock())
                    released += len(rest)
                    stopping = True
                    break
                if alert.destination in held_until:
                    hand_back([alert.id], held_until[alert.destination])
                    released += 1
                    continue
                webhook = routes.get(alert.destination)
                if webhook is None:
                    _unrouted(ledger, alert, clock())
                    held.discard(alert.id)
                    unrouted.append(alert.event_id)
                    continue
                outcome = _attempt(ledger, alert, webhook, post, env, timeout, clock, rng, max_attempts, on_attempt)
                held.discard(alert.id)
                if outcome is None:
                    delivered.append(alert.event_id)
                    continue
                retry_at, gave_up, timed = outcome
                (given_up if gave_up else failed).append(alert.event_id)
                if timed:
                    timed_out.append(alert.event_id)
                held_until[alert.destination] = retry_at
            if len(claimed) < batch:
                break
    except BaseException:
        if held:
            try:
                hand_back(list(held), clock())
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                log.exception("event=alert_release_failed rows=%d", len(held))
        raise
    return DeliveryReport(
        delivered=tuple(delivered),
        failed=tuple(failed),
        given_up=tuple(given_up),
        timed_out=tuple(timed_out),
        unrouted=tuple(unrouted),
        released=released,
        pending=outbox_store.pending_count(ledger),
    )


def _attempt(
    ledger: Ledger,
    alert: PendingAlert,
    webhook: WebhookSettings,
    post: Post,
    env: Mapping[str, str],
    timeout: float,
    clock: Callable[[], datetime],
    rng: random.Random | None,
    max_attempts: int | None,
    on_attempt: Callable[[Attempt], None],
) -> tuple[datetime, bool, bool] | None:
    """One attempt: None when delivered, else (when to retry, whether it was the last, whether
    it timed out)."""
    attempt = alert.attempts + 1
    shown = show_webhook(webhook.url)
    secret: str | None = None
    wait: timedelta | None = None
    error: str
    outcome = "not_sent"
    body = alert.body.encode("utf-8")
    started = time.monotonic()
    if webhook.secret_env is not None:
        secret = env.get(webhook.secret_env) or None
    if webhook.secret_env is not None and secret is None:
        error = (
            f"the environment variable {webhook.secret_env} (secret_env of the webhook at {shown}) is not set or "
            "empty: set it in the daemon's environment; the alert is not sent unsigned and is retried"
        )
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"reconciler/{__version__}",
            "X-Reconciler-Event": alert.event,
            "X-Reconciler-Event-Id": alert.event_id,
        }
        if secret is not None:
            headers["X-Reconciler-Signature"] = signature(secret, body)
        try:
            answer = post(webhook.url, body, headers, timeout)
        except DeliveryFailed as exc:
            error = str(exc)
            outcome = exc.outcome
        except Exception as exc:  # noqa: BLE001 - an injected or unexpected transport error is one failed attempt
            error = f"{type(exc).__name__}: {scrubbed(exc, webhook.url)}"
            outcome = "connection_error"
        else:
            if 200 <= answer.status < 300:
                outbox_store.mark_delivered(ledger, alert.id, clock())
                on_attempt(Attempt("ok", alert.destination, time.monotonic() - started))
                log.info(
                    "event=alert_delivered alert=%s event_id=%s webhook=%s attempt=%d status=%d",
                    alert.event,
                    alert.event_id,
                    shown,
                    attempt,
                    answer.status,
                )
                return None
            outcome = "http_error"
            error = f"HTTP {answer.status} {answer.reason}".strip()
            if 300 <= answer.status < 400:
                error += ": the webhook redirects; configure the URL it redirects to (redirects are not followed)"
            if answer.status in _RETRY_AFTER_STATUSES:
                wait = retry_after(_header(answer.headers, "Retry-After"), clock())
    elapsed = time.monotonic() - started
    if outcome == "timeout":
        log.warning(
            "event=webhook_timeout destination=%s elapsed=%.2f deadline=%g alert=%s event_id=%s attempt=%d",
            alert.destination[:12],
            elapsed,
            timeout,
            alert.event,
            alert.event_id,
            attempt,
        )
    if secret is not None:
        error = error.replace(secret, "***")  # no receiver or library should echo it; never store it
    error = scrub(error, [webhook.url])
    at = clock()
    retry_at = at + (wait if wait is not None else backoff(attempt, rng))
    attempts = outbox_store.mark_failed(ledger, alert.id, f"attempt {attempt}: {error}", retry_at)
    on_attempt(Attempt(outcome, alert.destination, elapsed))
    gave_up = max_attempts is not None and attempts >= max_attempts
    if gave_up:
        log.error(
            "event=alert_abandoned alert=%s event_id=%s webhook=%s attempts=%d error=%r",
            alert.event,
            alert.event_id,
            shown,
            attempts,
            error,
        )
    else:
        log.warning(
            "event=alert_failed alert=%s event_id=%s webhook=%s attempt=%d retry_at=%s error=%r",
            alert.event,
            alert.event_id,
            shown,
            attempt,
            retry_at.isoformat(),
            error,
        )
    return retry_at, gave_up, outcome == "timeout"


def _unrouted(ledger: Ledger, alert: PendingAlert, at: datetime) -> None:
    why = (
        "no webhook in [[alerts.webhooks]] has this destination any more (its URL changed or it was removed); "
        "kept, and delivered if that webhook is configured again"
    )
    outbox_store.mark_failed(ledger, alert.id, why, at + UNROUTED_RETRY, attempted=False)
    log.warning(
        "event=alert_unrouted alert=%s event_id=%s destination=%s outbox_id=%d",
        alert.event,
        alert.event_id,
        alert.destination[:12],
        alert.id,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


# ------------------------------------------------------------------------------- log sink

_ALERT_LEVELS = {"break.resolved": logging.INFO, "run.finished": logging.INFO}
_BREAK_FIELDS = ("id", "kind", "severity", "status", "chain", "wallet", "asset", "amount", "tx_hash")


def log_alert(event: str, body: Mapping[str, Any], logger: logging.Logger | None = None) -> None:
    """One log line for one alert, ``event=break.opened break_id=… kind=… severity=…`` (or
    ``event=run.incomplete run_id=… reason=…``), carrying the whole webhook body as the
    record's ``alert`` attribute, which the JSON log format prints as an object."""
    pairs: list[tuple[str, Any]] = [("event", event)]
    brk = body.get("break")
    if isinstance(brk, Mapping):
        pairs += [("break_id" if k == "id" else k, brk.get(k)) for k in _BREAK_FIELDS if brk.get(k) is not None]
    else:
        pairs += [(k, v) for k, v in body.items() if k != "event" and not isinstance(v, Mapping | list)]
        head = body.get("head")
        if isinstance(head, Mapping):  # run.finished: the audit head as `--head` takes it
            pairs.append(("head", f"{head.get('seq')}:{head.get('hash')}"))
    level = _ALERT_LEVELS.get(event, logging.WARNING)
    (logger or log).log(level, " ".join(f"{k}={_value(v)}" for k, v in pairs), extra={"alert": dict(body)})


def _value(value: Any) -> str:
    """A bare token when it is one, else Python's quoted form (as the other log lines' %r)."""
    text = str(value)
    if text and not any(c.isspace() or c in "'\"=\\" for c in text):
        return text
    return repr(text)
