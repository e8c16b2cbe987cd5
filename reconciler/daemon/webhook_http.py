"""One webhook POST, bounded by wall-clock time whatever the receiver does.

Invariants: an attempt — connect, TLS handshake, sending the body, reading the status line, the
headers and the whole answer body — ends within its deadline (``ATTEMPT_DEADLINE``, 10 s) plus
the time to close a socket: a receiver that accepts and never answers, trickles its headers,
announces a huge Content-Length and sends a byte every few seconds, or never closes, gets its
connection shut down at the deadline and the attempt fails as timed out. ``requests``' own
timeouts bound each read, not the whole; here a watchdog timer shuts every socket of the attempt
down (``shutdown(SHUT_RDWR)`` on a duplicate of the descriptor, which wakes a read blocked in
another thread, TLS or not) when the deadline passes. Each attempt opens its own connections
(no pooled socket escapes the watch) and drops the answer's body chunk by chunk, so a fast,
endless answer costs no memory. Redirects are not followed. Proxies and CA bundles
from the environment are honoured as ``requests`` does (SOCKS proxies: per-read timeouts only).
What is not the receiver's doing is not bounded here: a name lookup takes as long as the host's
resolver allows.

Errors never carry the URL (a hosted receiver's key sits in its path): the webhook is named as
scheme://host[:port].
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from reconciler.redaction import redact_rpc_url, redact_urls, scrub

ATTEMPT_DEADLINE = 10.0  # seconds, for the whole attempt
_CHUNK = 8192  # an answer's body is read in chunks of this size and dropped


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    reason: str
    headers: Mapping[str, str]


class DeliveryFailed(Exception):
    """The request got no complete HTTP answer; the message is already scrubbed of the URL.
    ``outcome``: ``timeout`` (the deadline passed) or ``connection_error`` (refused, reset,
    TLS…)."""

    outcome = "connection_error"


class AttemptTimedOut(DeliveryFailed):
    """No complete answer within the attempt's deadline; the connection was shut down."""

    outcome = "timeout"

    def __init__(self, message: str, elapsed: float) -> None:
        super().__init__(message)
        self.elapsed = elapsed


# ------------------------------------------------------------------------- the watchdog


class _Watch:
    """The sockets one attempt opened, shut down together when its deadline passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._finished = False

    def adopt(self, sock: socket.socket) -> None:
        """Watch ``sock`` (a duplicate of it: the original may be wrapped in TLS, which detaches
        it, or closed by its owner while the timer fires)."""
        with self._lock:
            if self._finished:
                return
            dup = sock.dup()
            self._sockets.append(dup)
            if self.expired:
                _shut(dup)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer: nothing left to wake


_current = threading.local()


def _adopt(sock: socket.socket) -> socket.socket:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.adopt(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _adopt(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _adopt(super()._new_conn())


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: Any = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct, or through an HTTP proxy) are watched."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # SOCKS managers use their own connection classes
            manager.pool_classes_by_scheme = _POOLS
        return manager


# ------------------------------------------------------------------------- the attempt


def bounded_post(
    url: str, body: bytes, headers: Mapping[str, str], deadline: float = ATTEMPT_DEADLINE
) -> HttpAnswer:
    """POST ``body`` and read the whole answer within ``deadline`` seconds of wall-clock time.
    Raises AttemptTimedOut when the deadline passes first, DeliveryFailed when the request gets
    no complete answer for another reason."""
    shown = redact_rpc_url(url)
    started = time.monotonic()
    watch = _Watch()
    timer = threading.Timer(deadline, watch.expire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    try:
        with requests.Session() as session:
            adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            with session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=(deadline, deadline),
                allow_redirects=False,
                stream=True,
            ) as answer:
                _read_body(answer, started, deadline)
                return HttpAnswer(answer.status_code, answer.reason or "", dict(answer.headers))
    except Exception as exc:  # noqa: BLE001 - whatever a shut-down socket made the libraries raise
        elapsed = time.monotonic() - started
        if watch.expired or elapsed >= deadline or isinstance(exc, requests.Timeout):
            raise AttemptTimedOut(
                f"no complete answer from {shown} within {deadline:g}s (timed out after {elapsed:.1f}s)", elapsed
            ) from exc
        if isinstance(exc, requests.ConnectionError):
            raise DeliveryFailed(f"cannot connect to {shown}: {_cause(exc, url)}") from exc
        if isinstance(exc, requests.RequestException | OSError):
            raise DeliveryFailed(f"{type(exc).__name__} from {shown}: {scrubbed(exc, url)}") from exc
        raise
    finally:
        timer.cancel()
        _current.watch = None
        watch.finish()


def _read_body(answer: requests.Response, started: float, deadline: float) -> None:
    """Read the answer's body to its end and drop it; past the deadline the read fails (the
    watchdog has shut the connection down, or is about to)."""
    for _chunk in answer.iter_content(_CHUNK):
        if time.monotonic() - started >= deadline:
            raise requests.Timeout("the answer's body did not end before the deadline")


_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _cause(exc: BaseException, url: str) -> str:
    """The operating system's reason ("[Errno 111] Connection refused") when requests' text
    carries one, else that text, scrubbed."""
    text = scrubbed(exc, url)
    found = _OS_ERROR.search(text)
    return found.group(0).strip() if found else text


def scrubbed(exc: BaseException, url: str) -> str:
    """An exception's text without the URL (requests quotes it whole) or any URL's path."""
    return redact_urls(scrub(str(exc), [url]))
