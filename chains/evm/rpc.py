"""JSON-RPC over one persistent HTTP session, single calls and batches.

Invariant: a transport failure raises RpcUnavailable and an error answer raises RpcError,
both ChainError subclasses carrying the endpoint; a batch returns results in the order asked
or raises — a partial batch is never returned as if whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import requests

from reconciler.errors import ChainError, RpcUnavailable

Call = tuple[str, Sequence[Any]]


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
    """Hosted RPC URLs often carry an API key in the path: show scheme and host only."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("@")[-1]
    return f"{scheme}{sep}{host}" if sep else url


class HttpRpc:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.endpoint = redact(url)
        self.timeout = timeout
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._session.close()

    def _post(self, payload: Any) -> Any:
        try:
            response = self._session.post(self.url, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RpcUnavailable(f"{self.endpoint} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise RpcUnavailable(f"{self.endpoint} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise RpcUnavailable(f"{self.endpoint} answered non-JSON: {response.text[:200]}") from exc

    def request(self, method: str, params: Sequence[Any]) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
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
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        results = []
        for i, (method, _params) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                raise RpcUnavailable(f"{self.endpoint} left request {i} ({method}) of a batch unanswered")
            results.append(self._result(method, item))
        return results

    def _result(self, method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise RpcUnavailable(f"{self.endpoint} answered {method} with {answer!r:.200}")
        if "error" in answer and answer["error"] is not None:
            raise self._error(method, answer)
        if "result" not in answer:
            raise RpcUnavailable(f"{self.endpoint} answered {method} without a result")
        return answer["result"]

    def _error(self, method: str, answer: dict[str, Any]) -> RpcError:
        err = answer.get("error") or {}
        if not isinstance(err, dict):
            return RpcError(self.endpoint, method, None, str(err))
        return RpcError(self.endpoint, method, err.get("code"), str(err.get("message", err)))


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
