"""JSON-RPC over one persistent HTTP session, single calls and batches, and the wrappers that
make a set of endpoints dependable: per-endpoint retries, then failover across endpoints.

Invariants: a transport failure raises RpcUnavailable and an error answer raises RpcError,
both ChainError subclasses carrying the endpoint; an answer is taken only if it is the answer
to the request made (a single call's id must match; a batch is matched by id, each id asked
for answered exactly once); a batch returns results in the order asked or raises — a partial
batch is never returned as if whole. No message carries the URL beyond scheme://host[:port]:
hosted endpoints keep their API key in the path, query or userinfo, and requests quotes the
full URL in its exceptions, so every text from outside is scrubbed of it.

Every layer is a Transport (one seam, like web3.py's providers and middleware):
``FailoverRpc([SourceLog(RetryingRpc(HttpRpc(url))) for url in urls])``. Only the endpoint's
failures are retried or failed over — no answer, an HTTP error, a body that is not the JSON-RPC
answer to the request, a rate-limit refusal; an answer that is the chain's own (a revert, an
execution error, invalid params) is raised at once, from whichever endpoint gave it. An endpoint
that keeps failing rests for a cool-down (growing while it keeps failing) and is tried again
after it. ``close()`` may come from another thread: it cuts a request in flight and stops
retries, so a stopped run does not wait on a silent node.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from chains.base import Source
from reconciler.errors import ChainError, RpcUnavailable
from reconciler.redaction import redact_rpc_url, scrub

log = logging.getLogger(__name__)

Call = tuple[str, Sequence[Any]]
T = TypeVar("T")
_QUOTE = 200  # characters of a node's answer quoted in an error

DEFAULT_BACKOFF = 0.25  # seconds before the first retry; doubles each time
MAX_BACKOFF = 8.0
RETRY_AFTER_CAP = 10.0  # a Retry-After longer than this is not waited for: the next endpoint is asked
DEFAULT_COOLDOWN = 30.0  # an endpoint that failed rests this long (doubling while it keeps failing)
MAX_COOLDOWN = 600.0

# HTTP statuses that say "not now" rather than "never": worth asking again.
_RETRY_STATUSES = frozenset({408, 425, 429})
# JSON-RPC refusals that are rate limits (geth and EIP-1474 use -32005 "limit exceeded";
# hosted providers answer 429 in the body, or say it in words) ...
_RATE_LIMIT_CODES = frozenset({-32005, 429})
_RATE_LIMIT_TEXTS = ("rate limit", "too many requests", "limit exceeded", "request limit", "rate exceeded", "throttl")
# ... unless the words say the query itself is too big: a smaller query cures that (the scan
# halves its range), asking the same again does not.
_QUERY_SIZE_TEXTS = ("result", "range", "more than", "response size", "too large", "block")


class RpcError(ChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, endpoint: str, method: str, code: int | None, message: str) -> None:
        self.code = code
        self.rpc_message = message
        self._parts = (endpoint, method, code, message)
        super().__init__(f"{endpoint}: {method} failed: {message} (code {code})")

    def __reduce__(self) -> tuple[Any, ...]:  # made again from its parts (a unit worker's, sent to its run)
        return (type(self), self._parts)


class EndpointError(RpcUnavailable):
    """The endpoint gave no usable answer: no answer at all, an HTTP error, or a body that is not
    the JSON-RPC answer to the request. The endpoint's failure, not the chain's answer:
    ``retryable`` when asking again may help, with the wait the endpoint asked for (Retry-After)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{message}: {hint}" if hint else message)
        self.detail = message  # what happened, without the hint (the retries' count goes here)
        self.hint = hint  # what to check, in plain words ("is the node running?")
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Transport(Protocol):
    endpoint: str

    def request(self, method: str, params: Sequence[Any]) -> Any: ...

    def batch(self, calls: Sequence[Call]) -> list[Any]: ...


def redact(url: str) -> str:
    """Hosted RPC URLs carry an API key in the path, query or userinfo: scheme://host[:port] only."""
    return redact_rpc_url(url)


def rate_limited(exc: RpcError) -> bool:
    """Whether a JSON-RPC error answer is the endpoint refusing for now (a rate limit), not the
    chain's answer to the request."""
    text = exc.rpc_message.lower()
    if any(t in text for t in _QUERY_SIZE_TEXTS):
        return False
    return exc.code in _RATE_LIMIT_CODES or any(t in text for t in _RATE_LIMIT_TEXTS)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header: delay-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _close_transport(transport: object) -> None:
    close = getattr(transport, "close", None)
    if callable(close):
        close()


def _is_id(value: Any, wanted: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == wanted


def _tracking_pools(sockets: list[socket.socket], lock: threading.Lock) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections register their socket on connecting, so that close()
    from another thread can shut a socket a request is waiting on (requests offers no other way
    to cut a request short of its timeout)."""

    def keep(sock: socket.socket | None) -> None:
        if sock is not None:
            with lock:
                sockets[:] = [s for s in sockets if s.fileno() != -1]  # drop the ones closed since
                sockets.append(sock)

    class Http(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            keep(self.sock)

    class Https(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            keep(self.sock)

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    return {"http": HttpPool, "https": HttpsPool}


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, sockets: list[socket.socket], lock: threading.Lock) -> None:
        self._sockets, self._sockets_lock = sockets, lock  # before super(): it builds the pool manager
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _tracking_pools(self._sockets, self._sockets_lock)


class HttpRpc:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.endpoint = redact(url)
        self.timeout = timeout
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._sockets_lock = threading.Lock()
        self._session = requests.Session()
        adapter = _TrackingAdapter(self._sockets, self._sockets_lock)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._ids = itertools.count(1)

    def close(self) -> None:
        """Stop: a request in flight fails now (its socket is shut), later ones at once."""
        self._closed.set()
        with self._sockets_lock:
            sockets, self._sockets[:] = list(self._sockets), []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        self._session.close()

    def _stopped(self) -> EndpointError:
        return EndpointError(f"{self.endpoint}: the read was stopped (connection closed)", retryable=False)

    def _clean(self, text: str) -> str:
        """Text from outside (an exception, a body, an answer) without the URL's secrets, cut
        to a quotable length only after scrubbing."""
        clean = scrub(text, [self.url])
        return clean if len(clean) <= _QUOTE else clean[:_QUOTE] + "…"

    def _post(self, payload: Any) -> Any:
        if self._closed.is_set():
            raise self._stopped()
        try:
            response = self._session.post(self.url, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            if self._closed.is_set():
                raise self._stopped() from exc
            what, hint = self._what_failed(exc)
            raise EndpointError(what, hint=hint) from exc
        if response.status_code != 200:
            status = response.status_code
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            raise EndpointError(
                f"{self.endpoint} answered HTTP {status} "
                f"({response.reason or 'no reason given'}): {self._clean(response.text)}"
                + (f" (Retry-After: {wait:g}s)" if wait is not None else ""),
                retryable=status in _RETRY_STATUSES or status >= 500,
                retry_after=wait,
                status=status,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise EndpointError(f"{self.endpoint} answered non-JSON: {self._clean(response.text)}") from exc

    def _what_failed(self, exc: requests.RequestException) -> tuple[str, str | None]:
        """What happened, in plain words, and what to check; requests' own text names the full
        URL and the urllib3 classes in its chain, so only a scrubbed excerpt of it is kept, and
        only where the plain words say too little. "timed out" stays in the words of a timeout:
        the transfer scan halves its range on it."""
        text = str(exc)
        if isinstance(exc, requests.Timeout):
            return f"no answer from {self.endpoint} within {self.timeout:g}s (timed out)", None
        if isinstance(exc, requests.exceptions.SSLError):
            return f"TLS with {self.endpoint} failed ({self._clean(text)})", None
        if isinstance(exc, requests.ConnectionError):
            if "Connection refused" in text:
                return f"cannot connect to {self.endpoint} (connection refused)", "is the node running?"
            if "NameResolutionError" in text or "Name or service not known" in text or "nodename nor" in text:
                host = urlsplit(self.url).hostname or self.endpoint
                return f"cannot resolve host {host} ({self.endpoint})", "is the host name right?"
            if "RemoteDisconnected" in text or "Connection aborted" in text or "Connection reset" in text:
                return f"{self.endpoint} closed the connection before an answer", None
            if "No route to host" in text or "Network is unreachable" in text:
                return f"cannot connect to {self.endpoint} (no route to host)", "is the network up?"
            return f"cannot connect to {self.endpoint} ({self._clean(text)})", None
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return f"{self.endpoint}: answer cut off ({self._clean(text)})", None
        return f"{self.endpoint}: {type(exc).__name__} ({self._clean(text)})", None

    def request(self, method: str, params: Sequence[Any]) -> Any:
        request_id = next(self._ids)
        answer = self._post({"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)})
        if isinstance(answer, dict) and not _is_id(answer.get("id"), request_id):
            if answer.get("id") is None and answer.get("error") is not None:
                raise self._error(method, answer)  # a refusal the node could not tie to a request
            raise EndpointError(
                f"{self.endpoint} answered {method} (request id {request_id}) with id "
                f"{self._clean(repr(answer.get('id')))}: the answer belongs to another request; "
                "check for a proxy or load balancer in front of the node that mixes up answers"
            )
        return self._result(method, answer)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in zip(ids, calls, strict=True)
        ]
        answer = self._post(payload)
        if isinstance(answer, dict):
            # A node that refuses a whole batch answers with one error object.
            raise self._error("batch", answer)
        if not isinstance(answer, list) or len(answer) != len(calls):
            raise EndpointError(
                f"{self.endpoint} answered a batch of {len(calls)} with "
                f"{len(answer) if isinstance(answer, list) else 'no list'}"
            )
        asked = set(ids)
        by_id: dict[int, dict[str, Any]] = {}
        for item in answer:
            if not isinstance(item, dict):
                raise EndpointError(f"{self.endpoint} answered a batch with {self._clean(repr(item))}, not an object")
            got = item.get("id")
            if got is None and item.get("error") is not None:
                raise self._error("batch", item)
            if not (isinstance(got, int) and not isinstance(got, bool) and got in asked):
                raise EndpointError(
                    f"{self.endpoint} answered a batch with id {self._clean(repr(got))}, which was not asked "
                    f"(ids {ids[0]}..{ids[-1]})"
                )
            if got in by_id:
                raise EndpointError(
                    f"{self.endpoint} answered id {got} twice in one batch (so another request went "
                    "unanswered): check for a proxy or load balancer in front of the node that mixes up answers"
                )
            by_id[got] = item
        results = []
        for i, (method, _params) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                raise EndpointError(f"{self.endpoint} left request {i} ({method}) of a batch unanswered")
            results.append(self._result(method, item))
        return results

    def _result(self, method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise EndpointError(f"{self.endpoint} answered {method} with {self._clean(repr(answer))}")
        if "error" in answer and answer["error"] is not None:
            raise self._error(method, answer)
        if "result" not in answer:
            raise EndpointError(f"{self.endpoint} answered {method} without a result")
        return answer["result"]

    def _error(self, method: str, answer: dict[str, Any]) -> RpcError:
        err = answer.get("error") or {}
        if not isinstance(err, dict):
            return RpcError(self.endpoint, method, None, self._clean(str(err)))
        code = err.get("code")
        return RpcError(
            self.endpoint,
            method,
            code if isinstance(code, int) else None,
            self._clean(str(err.get("message", err))),
        )




class RetryingRpc:
    """Asks one endpoint again, up to ``retries`` more times, when it failed in a way that asking
    again can cure: no answer (refused, reset, timed out), HTTP 408/425/429/5xx, a body cut off
    or not JSON or not the answer to the request, a rate-limit refusal. Waits grow exponentially
    (``backoff`` x 2^n, at most ``max_backoff``) with jitter, so that many clients do not come
    back in step; a Retry-After the endpoint sends is honoured up to ``retry_after_cap`` and a
    longer one gives up on this endpoint at once (the next one is asked). The chain's own
    answers (reverts, execution errors, invalid params) are raised at once.

    ``sleep`` and ``jitter_source`` are injectable (tests run without real waits); by default
    the wait ends early when the transport is closed."""

    def __init__(
        self,
        inner: Transport,
        retries: int,
        *,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        jitter: float = 0.5,
        retry_after_cap: float = RETRY_AFTER_CAP,
        sleep: Callable[[float], object] | None = None,
        jitter_source: Callable[[], float] = random.random,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be at least 0, not {retries}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter is a fraction of the wait, 0..1, not {jitter}")
        self.inner = inner
        self.endpoint = inner.endpoint
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.retry_after_cap = retry_after_cap
        self._closed = threading.Event()
        self._sleep = sleep if sleep is not None else self._closed.wait
        self._jitter_source = jitter_source

    def close(self) -> None:
        self._closed.set()
        _close_transport(self.inner)

    def request(self, method: str, params: Sequence[Any]) -> Any:
        return self._call(method, lambda: self.inner.request(method, params))

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        return self._call(f"a batch of {len(calls)}", lambda: self.inner.batch(calls))

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt + 1``: exponential, minus up to ``jitter`` of it."""
        full = min(self.max_backoff, self.backoff * 2.0**attempt)
        return full * (1 - self.jitter * self._jitter_source())

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        failures: list[ChainError] = []
        for attempt in range(self.retries + 1):
            if self._closed.is_set():
                raise EndpointError(f"{self.endpoint}: the read was stopped", retryable=False)
            try:
                return fn()
            except RpcError as exc:
                if not rate_limited(exc):
                    raise  # the chain's own answer
                failure: ChainError = exc
                wait_asked: float | None = None
            except EndpointError as exc:
                if not exc.retryable or self._closed.is_set():
                    raise
                failure, wait_asked = exc, exc.retry_after
            failures.append(failure)
            if attempt == self.retries:
                break
            if wait_asked is not None and wait_asked > self.retry_after_cap:
                raise self._gave_up(
                    failures,
                    f"it asks to retry after {wait_asked:g}s, longer than the {self.retry_after_cap:g}s waited for",
                    wait_asked,
                ) from failure
            wait = wait_asked if wait_asked is not None else self.delay(attempt)
            log.info(
                "event=rpc_retry endpoint=%s call=%r attempt=%d wait=%.3f reason=%r",
                self.endpoint,
                what,
                attempt + 1,
                wait,
                str(failure),
            )
            self._sleep(wait)
        raise self._gave_up(failures, None, None) from failures[-1]

    def _gave_up(self, failures: Sequence[ChainError], why: str | None, wait: float | None) -> EndpointError:
        """The first failure says what went wrong; the count and the last one say it kept on."""
        first, last = failures[0], failures[-1]
        notes = [f"{len(failures)} attempts"] if len(failures) > 1 else []
        if str(last) != str(first):
            notes.append(f"last: {last}")
        if why:
            notes.append(why)
        if isinstance(first, EndpointError) and first.hint:
            # "cannot connect to X (connection refused, 3 attempts): is the node running?"
            detail = first.detail
            if notes and detail.endswith(")"):
                detail = f"{detail[:-1]}, {'; '.join(notes)})"
            elif notes:
                detail += f" ({'; '.join(notes)})"
            return EndpointError(detail, retryable=False, retry_after=wait, status=first.status, hint=first.hint)
        message = str(first) + (f" ({'; '.join(notes)})" if notes else "")
        status = first.status if isinstance(first, EndpointError) else None
        return EndpointError(message, retryable=False, retry_after=wait, status=status)


class FailoverRpc:
    """Asks each endpoint in turn until one answers; an endpoint that failed (after its own
    retries) rests for a cool-down — ``cooldown`` seconds, doubling while it keeps failing, at
    most ``max_cooldown``, at least what it asked for in Retry-After — and is asked after the
    others until then; when every endpoint rests, all are still tried, soonest back first.

    Only RpcUnavailable moves on: an error answer is the chain's answer and is raised as is.
    ``clock`` is injectable for tests."""

    def __init__(
        self,
        transports: Sequence[Transport],
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        max_cooldown: float = MAX_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not transports:
            raise ValueError("at least one RPC endpoint is needed")
        self.transports = list(transports)
        self.endpoint = ", ".join(t.endpoint for t in self.transports)
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._strikes = [0] * len(self.transports)
        self._resting_until = [0.0] * len(self.transports)
        self._closed = False

    def close(self) -> None:
        self._closed = True
        for t in self.transports:
            _close_transport(t)

    def resting(self) -> list[str]:
        """The endpoints resting now."""
        now = self._clock()
        with self._lock:
            return [t.endpoint for t, until in zip(self.transports, self._resting_until, strict=True) if until > now]

    def _order(self) -> list[int]:
        now = self._clock()
        with self._lock:
            ready = [i for i, until in enumerate(self._resting_until) if until <= now]
            resting = [i for i, until in enumerate(self._resting_until) if until > now]
            resting.sort(key=self._resting_until.__getitem__)
        return ready + resting

    def _failed(self, i: int, exc: RpcUnavailable) -> None:
        with self._lock:
            self._strikes[i] += 1
            rest = min(self.max_cooldown, self.cooldown * 2.0 ** (self._strikes[i] - 1))
            asked = exc.retry_after if isinstance(exc, EndpointError) else None
            if asked is not None:
                rest = max(rest, min(asked, self.max_cooldown))
            self._resting_until[i] = self._clock() + rest
            strikes = self._strikes[i]
        log.warning(
            "event=rpc_endpoint_resting endpoint=%s seconds=%g failures_in_a_row=%d reason=%r",
            self.transports[i].endpoint,
            rest,
            strikes,
            str(exc),
        )

    def _answered(self, i: int) -> None:
        with self._lock:
            was_failing = self._strikes[i] > 0
            self._strikes[i] = 0
            self._resting_until[i] = 0.0
        if was_failing:
            log.info("event=rpc_endpoint_back endpoint=%s", self.transports[i].endpoint)

    def _each(self, fn: Callable[[Transport], T]) -> T:
        failures: list[RpcUnavailable] = []
        for i in self._order():
            if self._closed:
                break
            try:
                result = fn(self.transports[i])
            except RpcUnavailable as exc:
                self._failed(i, exc)
                failures.append(exc)
                continue
            self._answered(i)
            return result
        if len(self.transports) == 1 and len(failures) == 1:
            raise failures[0]  # one endpoint: its own error says it all
        if not failures:
            raise EndpointError(f"{self.endpoint}: the read was stopped", retryable=False)
        raise RpcUnavailable("no RPC endpoint answered: " + "; ".join(str(f) for f in failures)) from failures[-1]

    def request(self, method: str, params: Sequence[Any]) -> Any:
        return self._each(lambda t: t.request(method, params))

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        result: list[Any] = self._each(lambda t: t.batch(calls))
        return result


class SourceLog:
    """Evidence of where answers came from: whether its endpoint answered, and — asked once, at
    its first answer — which client it runs (``web3_clientVersion``)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.endpoint = inner.endpoint
        self.answered = False
        self.client_version: str | None = None

    def close(self) -> None:
        _close_transport(self.inner)

    def source(self) -> Source:
        return Source(self.endpoint, self.client_version)

    def _first_answer(self) -> None:
        if self.answered:
            return
        self.answered = True
        try:
            version = self.inner.request("web3_clientVersion", [])
        except ChainError as exc:
            log.info("event=rpc_client_version_unknown endpoint=%s reason=%r", self.endpoint, str(exc))
            return
        if isinstance(version, str) and version.isprintable():
            self.client_version = version[:_QUOTE]

    def request(self, method: str, params: Sequence[Any]) -> Any:
        result = self.inner.request(method, params)
        self._first_answer()
        return result

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        result = self.inner.batch(calls)
        self._first_answer()
        return result
