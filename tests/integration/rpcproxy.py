"""A tampering JSON-RPC proxy for fault-injection tests: forwards to a real node and lets a test
change what goes in or comes out.

Invariant: with no hook installed the proxy is transparent (the node's bytes go back as they
came), so a test that fails through it fails because of the hook it installed. The proxy
forwards every request, whatever its path, to the upstream URL as given: a path or query in
the proxy's URL (an API key, say) reaches the proxy and goes no further.

Hooks, each optional, installed at any time and all removed by ``reset()``:

- ``rewrite_request(payload) -> payload``: the JSON sent upstream (one call or a batch).
- ``on(method, fn)`` with ``fn(request, response) -> response``: every answer to ``method``,
  whether it came alone or inside a batch (a block from two blocks back, an empty
  ``eth_getLogs``, a wrong id, a malformed quantity).
- ``rewrite_batch(requests, responses) -> responses``: a whole batch answer, after the
  per-method hooks (shuffled, duplicated or missing ids).
- ``fail(status, body, times=None, headers=None)``: answer with this HTTP status and body
  instead of forwarding (429, 503, 500 with a body), with extra headers (``Retry-After``);
  ``body`` may be a function of the request's path and body; ``times`` limits it to the next N
  requests.
- ``delay(seconds, times=None)``: wait before answering (timeouts); ``times`` limits it to the
  next N requests. The wait ends early when the proxy stops, so shutting down never hangs on it.
- ``rewrite_body(raw) -> raw``: the raw HTTP body sent back (non-JSON answers).
- ``truncate_at(n, times=None)``: announce the full Content-Length but send only the first
  ``n`` bytes of the body, then close the connection (an answer cut off mid-way).

``seen()`` lists every request received (path, decoded payload and arrival time), in order;
``upstream()`` calls the real node directly, for hooks that answer with another real value;
``upstream_url`` may be changed at any time (a node restarted on another port).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = Any
MethodHook = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
BatchHook = Callable[[list[Any], list[Any]], list[Any]]
Body = str | bytes | Callable[[str, bytes], str | bytes]


@dataclass(frozen=True)
class Received:
    """One HTTP request as the proxy got it."""

    path: str
    payload: Json
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def methods(self) -> list[str]:
        items = self.payload if isinstance(self.payload, list) else [self.payload]
        return [str(i.get("method")) for i in items if isinstance(i, dict)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that keeps a connection open never blocks shutdown
    proxy: RpcProxy


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.proxy._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows what the test asserts, not an access log."""


class RpcProxy:
    """A JSON-RPC HTTP proxy on 127.0.0.1 (a free port) in front of ``upstream``."""

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        self.upstream_url = upstream
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seen: list[Received] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RpcProxy:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="rpcproxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> RpcProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ hooks

    def reset(self) -> None:
        """Remove every hook: the proxy is transparent again."""
        with self._lock:
            self.rewrite_request: Callable[[Json], Json] | None = None
            self.rewrite_batch: BatchHook | None = None
            self.rewrite_body: Callable[[bytes], bytes] | None = None
            self._method_hooks: dict[str, MethodHook] = {}
            self._failure: tuple[int, Body, dict[str, str]] | None = None
            self._failures_left: int | None = None
            self._delay = 0.0
            self._delays_left: int | None = None
            self._truncate_at: int | None = None
            self._truncations_left: int | None = None

    def on(self, method: str, fn: MethodHook) -> None:
        with self._lock:
            self._method_hooks[method] = fn

    def fail(
        self, status: int, body: Body = "", times: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        with self._lock:
            self._failure = (status, body, dict(headers or {}))
            self._failures_left = times

    def delay(self, seconds: float, times: int | None = None) -> None:
        with self._lock:
            self._delay = seconds
            self._delays_left = times

    def truncate_at(self, size: int | None, times: int | None = None) -> None:
        with self._lock:
            self._truncate_at = size
            self._truncations_left = times

    def seen(self) -> list[Received]:
        with self._lock:
            return list(self._seen)

    def upstream(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call the real node directly (not through the hooks) and return the result."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        _status, raw = self._forward(body)
        answer = json.loads(raw)
        if answer.get("error"):
            raise RuntimeError(f"upstream {method} failed: {answer['error']}")
        return answer["result"]

    # ------------------------------------------------------------------ serving

    def _handle(self, handler: _Handler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            payload: Json = json.loads(raw)
        except ValueError:
            payload = None
        with self._lock:
            self._seen.append(Received(handler.path, payload, time.monotonic()))
            delay, failure = self._delay, self._failure
            if failure is not None and self._failures_left is not None:
                self._failures_left -= 1
                if self._failures_left <= 0:
                    self._failure = self._failures_left = None
            if delay and self._delays_left is not None:
                self._delays_left -= 1
                if self._delays_left <= 0:
                    self._delay, self._delays_left = 0.0, None
            rewrite_request, truncate = self.rewrite_request, self._truncate_at
            if truncate is not None and self._truncations_left is not None:
                self._truncations_left -= 1
                if self._truncations_left <= 0:
                    self._truncate_at = self._truncations_left = None
        if delay and self._stopping.wait(delay):
            return  # stopping: leave the client without an answer
        if failure is not None:
            status, body, headers = failure
            made = body(handler.path, raw) if callable(body) else body
            self._reply(handler, status, made.encode() if isinstance(made, str) else made, None, headers)
            return
        if rewrite_request is not None and payload is not None:
            payload = rewrite_request(payload)
            raw = json.dumps(payload).encode()
        status, answer = self._forward(raw)
        self._reply(handler, status, self._tamper(payload, answer), truncate)

    def _forward(self, raw: bytes) -> tuple[int, bytes]:
        with self._lock:
            upstream = self.upstream_url
        request = urllib.request.Request(
            upstream, data=raw, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except urllib.error.URLError as exc:
            return 502, f"upstream unreachable: {exc.reason}".encode()

    def _tamper(self, payload: Json, answer: bytes) -> bytes:
        with self._lock:
            hooks, rewrite_batch, rewrite_body = dict(self._method_hooks), self.rewrite_batch, self.rewrite_body
        if hooks or rewrite_batch is not None:
            try:
                decoded: Json = json.loads(answer)
            except ValueError:
                decoded = None
            if isinstance(payload, dict) and isinstance(decoded, dict):
                answer = json.dumps(_apply(hooks, payload, decoded)).encode()
            elif isinstance(payload, list) and isinstance(decoded, list):
                by_id = {json.dumps(r.get("id")): r for r in payload if isinstance(r, dict)}
                items = [_apply(hooks, by_id.get(json.dumps(a.get("id"))), a) for a in decoded if isinstance(a, dict)]
                if rewrite_batch is not None:
                    items = rewrite_batch(payload, items)
                answer = json.dumps(items).encode()
        return rewrite_body(answer) if rewrite_body is not None else answer

    @staticmethod
    def _reply(
        handler: _Handler, status: int, body: bytes, truncate: int | None, headers: dict[str, str] | None = None
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body if truncate is None else body[:truncate])
        handler.wfile.flush()
        handler.close_connection = True


def _apply(hooks: dict[str, MethodHook], request: dict[str, Any] | None, response: dict[str, Any]) -> dict[str, Any]:
    if request is None:
        return response
    hook = hooks.get(str(request.get("method")))
    return hook(request, response) if hook is not None else response
