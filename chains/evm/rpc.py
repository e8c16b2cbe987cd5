"""JSON-RPC over one persistent HTTP session, single calls and batches.

Invariants: a transport failure raises RpcUnavailable and an error answer raises RpcError,
both ChainError subclasses carrying the endpoint; an answer is taken only if it is the answer
to the request made (a single call's id must match; a batch is matched by id, each id asked
for answered exactly once); a batch returns results in the order asked or raises — a partial
batch is never returned as if whole. No message carries the URL beyond scheme://host[:port]:
hosted endpoints keep their API key in the path, query or userinfo, and requests quotes the
full URL in its exceptions, so every text from outside is scrubbed of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import requests

from reconciler.errors import ChainError, RpcUnavailable
from reconciler.redaction import redact_rpc_url, scrub

Call = tuple[str, Sequence[Any]]
_QUOTE = 200  # characters of a node's answer quoted in an error


class RpcError(ChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, endpoint: str, method: str, code: int | None, message: str) -> None:
        self.code = code
        self.rpc_message = message
        super().__init__(f"{endpoint}: {method} failed: {message} (code {code})")


class Transport(Protocol):
    endpoint: str

    def request(self, method: str, params: Sequence[Any]) -> Any: ...

    def batch(self, calls: Sequence[Call]) -> list[Any]: ...


def redact(url: str) -> str:
    """Hosted RPC URLs carry an API key in the path, query or userinfo: scheme://host[:port] only."""
    return redact_rpc_url(url)


def _is_id(value: Any, wanted: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == wanted


class HttpRpc:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.endpoint = redact(url)
        self.timeout = timeout
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._session.close()

    def _clean(self, text: str) -> str:
        """Text from outside (an exception, a body, an answer) without the URL's secrets, cut
        to a quotable length only after scrubbing."""
        clean = scrub(text, [self.url])
        return clean if len(clean) <= _QUOTE else clean[:_QUOTE] + "…"

    def _post(self, payload: Any) -> Any:
        try:
            response = self._session.post(self.url, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RpcUnavailable(f"{self.endpoint} unreachable: {self._what_failed(exc)}") from exc
        if response.status_code != 200:
            raise RpcUnavailable(
                f"{self.endpoint} answered HTTP {response.status_code} "
                f"({response.reason or 'no reason given'}): {self._clean(response.text)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise RpcUnavailable(f"{self.endpoint} answered non-JSON: {self._clean(response.text)}") from exc

    def _what_failed(self, exc: requests.RequestException) -> str:
        """What happened, in plain words; requests' own text names the full URL, so only a
        scrubbed excerpt of it is kept, and only where the plain words say too little."""
        text = str(exc)
        if isinstance(exc, requests.Timeout):
            return f"timed out after {self.timeout:g}s"
        if isinstance(exc, requests.exceptions.SSLError):
            return f"TLS failed ({self._clean(text)})"
        if isinstance(exc, requests.ConnectionError):
            if "Connection refused" in text:
                return "connection refused"
            if "NameResolutionError" in text or "Name or service not known" in text:
                return "host name not found"
            if "RemoteDisconnected" in text or "Connection aborted" in text or "Connection reset" in text:
                return "connection closed before an answer"
            return f"connection failed ({self._clean(text)})"
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return f"answer cut off ({self._clean(text)})"
        return f"{type(exc).__name__} ({self._clean(text)})"

    def request(self, method: str, params: Sequence[Any]) -> Any:
        request_id = next(self._ids)
        answer = self._post({"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)})
        if isinstance(answer, dict) and not _is_id(answer.get("id"), request_id):
            if answer.get("id") is None and answer.get("error") is not None:
                raise self._error(method, answer)  # a refusal the node could not tie to a request
            raise RpcUnavailable(
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
            raise RpcUnavailable(
                f"{self.endpoint} answered a batch of {len(calls)} with "
                f"{len(answer) if isinstance(answer, list) else 'no list'}"
            )
        asked = set(ids)
        by_id: dict[int, dict[str, Any]] = {}
        for item in answer:
            if not isinstance(item, dict):
                raise RpcUnavailable(f"{self.endpoint} answered a batch with {self._clean(repr(item))}, not an object")
            got = item.get("id")
            if got is None and item.get("error") is not None:
                raise self._error("batch", item)
            if not (isinstance(got, int) and not isinstance(got, bool) and got in asked):
                raise RpcUnavailable(
                    f"{self.endpoint} answered a batch with id {self._clean(repr(got))}, which was not asked "
                    f"(ids {ids[0]}..{ids[-1]})"
                )
            if got in by_id:
                raise RpcUnavailable(
                    f"{self.endpoint} answered id {got} twice in one batch (so another request went "
                    "unanswered): check for a proxy or load balancer in front of the node that mixes up answers"
                )
            by_id[got] = item
        results = []
        for i, (method, _params) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                raise RpcUnavailable(f"{self.endpoint} left request {i} ({method}) of a batch unanswered")
            results.append(self._result(method, item))
        return results

    def _result(self, method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise RpcUnavailable(f"{self.endpoint} answered {method} with {self._clean(repr(answer))}")
        if "error" in answer and answer["error"] is not None:
            raise self._error(method, answer)
        if "result" not in answer:
            raise RpcUnavailable(f"{self.endpoint} answered {method} without a result")
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


class FailoverRpc:
    """Tries each endpoint in order; the next one answers when one is unreachable.

    Only RpcUnavailable moves on: an error answer is the chain's answer and is raised as is.
    """

    def __init__(self, transports: Sequence[Transport]) -> None:
        if not transports:
            raise ValueError("at least one RPC endpoint is needed")
        self.transports = list(transports)
        self.endpoint = ", ".join(t.endpoint for t in self.transports)

    def _each(self, fn: Any) -> Any:
        failures: list[str] = []
        for transport in self.transports:
            try:
                return fn(transport)
            except RpcUnavailable as exc:
                failures.append(str(exc))
        raise RpcUnavailable("no RPC endpoint answered: " + "; ".join(failures))

    def request(self, method: str, params: Sequence[Any]) -> Any:
        return self._each(lambda t: t.request(method, params))

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        result: list[Any] = self._each(lambda t: t.batch(calls))
        return result
