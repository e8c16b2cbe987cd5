"""Retries, failover with cool-downs and source evidence, each a Transport wrapping another:
what is retried (the endpoint's failures) and what never is (the chain's own answers), how long
it waits, and when an endpoint is put aside. Time is injected: no real waits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from chains.base import Source
from chains.evm.rpc import (
    Call,
    EndpointError,
    FailoverRpc,
    RetryingRpc,
    RpcError,
    SourceLog,
    rate_limited,
    retry_after_seconds,
)
from reconciler.errors import RpcUnavailable

Outcome = Any | BaseException


class Scripted:
    """A transport that plays a script of outcomes (an exception is raised, anything else is
    the answer), then answers ``done`` forever; it counts what it was asked."""

    def __init__(self, endpoint: str, script: Sequence[Outcome] = (), done: Any = "0x1") -> None:
        self.endpoint = endpoint
        self.script = list(script)
        self.done = done
        self.asked: list[str] = []
        self.closed = False

    def _next(self, what: str) -> Any:
        self.asked.append(what)
        outcome = self.script.pop(0) if self.script else self.done
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def request(self, method: str, params: Sequence[Any]) -> Any:
        return self._next(method)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        return [self._next(f"batch:{calls[0][0]}")] * len(calls)

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def retrying(inner: Scripted, clock: Clock, retries: int = 2, jitter: Callable[[], float] = lambda: 0.0) -> RetryingRpc:
    return RetryingRpc(inner, retries, backoff=0.5, max_backoff=4.0, sleep=clock.sleep, jitter_source=jitter)


TIMEOUT = EndpointError("http://a:1 unreachable: timed out after 10s")
REFUSED = EndpointError("http://a:1 unreachable: connection refused")
HTTP_503 = EndpointError("http://a:1 answered HTTP 503 (Service Unavailable): busy", status=503)
NOT_JSON = EndpointError("http://a:1 answered non-JSON: <html>")
LIMIT = RpcError("http://a:1", "eth_call", -32005, "limit exceeded")
REVERT = RpcError("http://a:1", "eth_call", 3, "execution reverted")


# ------------------------------------------------------------------ what is retried


@pytest.mark.parametrize("failure", [TIMEOUT, REFUSED, HTTP_503, NOT_JSON, LIMIT], ids=lambda e: str(e)[11:40])
def test_an_endpoint_failure_is_retried_and_the_answer_returned(failure: Exception) -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [failure, failure], done="0x2a")
    assert retrying(inner, clock).request("eth_call", []) == "0x2a"
    assert inner.asked == ["eth_call"] * 3
    assert clock.slept == [0.5, 1.0], "exponential: backoff, then twice as long"


@pytest.mark.parametrize(
    "answer",
    [
        REVERT,
        RpcError("http://a:1", "eth_call", -32602, "invalid params"),
        RpcError("http://a:1", "eth_call", -32000, "execution aborted (gas)"),
        RpcError("http://a:1", "eth_getLogs", -32005, "query returned more than 10000 results"),
        RpcError("http://a:1", "eth_getLogs", -32005, "block range limit exceeded"),
    ],
    ids=["revert", "invalid-params", "execution-error", "result-cap", "range-cap"],
)
def test_the_chains_own_answer_is_never_retried(answer: RpcError) -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [answer])
    with pytest.raises(RpcError) as caught:
        retrying(inner, clock).request("eth_call", [])
    assert caught.value is answer
    assert inner.asked == ["eth_call"] and clock.slept == []


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32005, "limit exceeded", True),
        (429, "Too Many Requests", True),
        (-32000, "daily request count exceeded, request rate limited", True),
        (-32000, "Your app has exceeded its compute units per second capacity: rate limit", True),
        (-32005, "query returned more than 10000 results", False),
        (-32602, "invalid params", False),
        (3, "execution reverted", False),
        (-32000, "log response size exceeded", False),
    ],
)
def test_rate_limits_are_told_from_query_size_refusals(code: int, message: str, expected: bool) -> None:
    assert rate_limited(RpcError("http://a:1", "eth_getLogs", code, message)) is expected


def test_a_failure_that_is_not_worth_retrying_is_raised_at_once() -> None:
    clock = Clock()
    forbidden = EndpointError("http://a:1 answered HTTP 401 (Unauthorized): bad key", retryable=False, status=401)
    inner = Scripted("http://a:1", [forbidden])
    with pytest.raises(EndpointError) as caught:
        retrying(inner, clock).request("eth_chainId", [])
    assert caught.value is forbidden and inner.asked == ["eth_chainId"]


def test_batches_are_retried_like_single_calls() -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [NOT_JSON], done="0x5")
    assert retrying(inner, clock).batch([("eth_getBalance", []), ("eth_getBalance", [])]) == ["0x5", "0x5"]
    assert inner.asked == ["batch:eth_getBalance"] * 2


# ------------------------------------------------------------------ how long it waits


def test_backoff_grows_exponentially_up_to_its_cap_and_jitter_only_shortens_it() -> None:
    clock = Clock()
    rpc = RetryingRpc(
        Scripted("http://a:1"), 6, backoff=0.5, max_backoff=4.0, sleep=clock.sleep, jitter_source=lambda: 0.0
    )
    assert [rpc.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    half = RetryingRpc(Scripted("http://a:1"), 2, backoff=0.5, jitter=0.5, sleep=clock.sleep, jitter_source=lambda: 1.0)
    assert [half.delay(n) for n in range(3)] == [0.25, 0.5, 1.0], "at most half of each wait taken off"


def test_jitter_spreads_the_waits_of_clients_that_failed_together() -> None:
    draws = iter([0.1, 0.9])
    clock = Clock()
    inner = Scripted("http://a:1", [TIMEOUT, TIMEOUT])
    retrying(inner, clock, jitter=lambda: next(draws)).request("eth_call", [])
    assert clock.slept == pytest.approx([0.5 * (1 - 0.05), 1.0 * (1 - 0.45)])


def test_retry_after_is_honoured_instead_of_the_backoff() -> None:
    clock = Clock()
    limited = EndpointError("http://a:1 answered HTTP 429 (Too Many Requests)", retry_after=3.0, status=429)
    inner = Scripted("http://a:1", [limited])
    assert retrying(inner, clock).request("eth_call", []) == "0x1"
    assert clock.slept == [3.0]


def test_a_retry_after_beyond_the_cap_gives_up_on_the_endpoint_at_once() -> None:
    clock = Clock()
    limited = EndpointError("http://a:1 answered HTTP 429 (Too Many Requests)", retry_after=3600.0, status=429)
    inner = Scripted("http://a:1", [limited])
    rpc = RetryingRpc(inner, 5, retry_after_cap=10.0, sleep=clock.sleep)
    with pytest.raises(EndpointError, match="retry after 3600s, longer than the 10s waited for") as caught:
        rpc.request("eth_call", [])
    assert clock.slept == [] and inner.asked == ["eth_call"]
    assert caught.value.retry_after == 3600.0, "the pool rests the endpoint at least that long"


def test_giving_up_names_the_first_failure_the_count_and_the_last() -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [TIMEOUT, REFUSED, REFUSED])
    with pytest.raises(RpcUnavailable) as caught:
        retrying(inner, clock).request("eth_blockNumber", [])
    text = str(caught.value)
    assert text.startswith(str(TIMEOUT)) and "3 attempts" in text and f"last: {REFUSED}" in text
    assert isinstance(caught.value, EndpointError) and not caught.value.retryable


def test_a_rate_limit_that_never_lifts_becomes_the_endpoints_failure() -> None:
    """So that the pool moves on to the next endpoint (a JSON-RPC error alone would not)."""
    clock = Clock()
    inner = Scripted("http://a:1", [LIMIT] * 3)
    with pytest.raises(RpcUnavailable, match=r"limit exceeded \(code -32005\) \(3 attempts\)"):
        retrying(inner, clock).request("eth_call", [])


def test_zero_retries_asks_once() -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [TIMEOUT])
    with pytest.raises(RpcUnavailable):
        retrying(inner, clock, retries=0).request("eth_call", [])
    assert inner.asked == ["eth_call"] and clock.slept == []


def test_closing_stops_the_retries() -> None:
    clock = Clock()
    inner = Scripted("http://a:1", [TIMEOUT] * 5)
    rpc = retrying(inner, clock, retries=4)

    def close_while_waiting(seconds: float) -> None:
        clock.sleep(seconds)
        rpc.close()

    rpc._sleep = close_while_waiting
    with pytest.raises(EndpointError, match="stopped"):
        rpc.request("eth_call", [])
    assert inner.asked == ["eth_call"] and inner.closed


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 120 ", 120.0), (None, None), ("soon", None), ("-3", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(header, now=now.timestamp()) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0.0


# ------------------------------------------------------------------ failover and cool-down


def pool(*transports: Scripted, clock: Clock) -> FailoverRpc:
    return FailoverRpc(transports, cooldown=30.0, max_cooldown=120.0, clock=clock)


def test_the_next_endpoint_answers_when_one_fails_and_the_failed_one_rests() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [REFUSED])
    b = Scripted("http://b:2")
    rpc = pool(a, b, clock=clock)
    assert rpc.request("eth_chainId", []) == "0x1"
    assert rpc.resting() == ["http://a:1"]
    for _ in range(5):
        rpc.request("eth_blockNumber", [])
    assert a.asked == ["eth_chainId"], "a resting endpoint is not asked while another answers"
    assert b.asked == ["eth_chainId"] + ["eth_blockNumber"] * 5


def test_a_rested_endpoint_is_tried_again_after_its_cool_down_and_comes_back() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [REFUSED])
    b = Scripted("http://b:2")
    rpc = pool(a, b, clock=clock)
    rpc.request("eth_chainId", [])
    clock.now += 30.0
    assert rpc.resting() == []
    rpc.request("eth_blockNumber", [])
    assert a.asked == ["eth_chainId", "eth_blockNumber"], "first in order again once it answers"


def test_an_endpoint_that_keeps_failing_rests_longer_each_time_up_to_the_cap() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [REFUSED] * 10)
    b = Scripted("http://b:2")
    rpc = pool(a, b, clock=clock)
    rests = []
    for _ in range(4):
        rpc.request("eth_blockNumber", [])
        until = rpc._resting_until[0]
        rests.append(until - clock.now)
        clock.now = until  # its cool-down is over: it is tried (and fails) again
    assert rests == [30.0, 60.0, 120.0, 120.0]


def test_a_retry_after_longer_than_the_cool_down_rests_the_endpoint_that_long() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [EndpointError("http://a:1 answered HTTP 429", retry_after=90.0, status=429)])
    rpc = pool(a, Scripted("http://b:2"), clock=clock)
    rpc.request("eth_blockNumber", [])
    assert rpc._resting_until[0] - clock.now == 90.0


def test_when_every_endpoint_rests_all_are_still_tried_soonest_back_first() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [REFUSED, REFUSED])
    b = Scripted("http://b:2")
    rpc = pool(a, b, clock=clock)
    rpc.request("eth_chainId", [])  # a fails and rests (30 s); b answers ...
    b.script = [REFUSED]
    with pytest.raises(RpcUnavailable, match="no RPC endpoint answered"):
        rpc.request("eth_blockNumber", [])  # ... then fails too; a, resting, is still asked (and rests 60 s)
    assert rpc.resting() == ["http://a:1", "http://b:2"]
    assert rpc.request("eth_gasPrice", []) == "0x1"
    assert b.asked[-1] == "eth_gasPrice" and a.asked[-1] == "eth_blockNumber", "b's rest ends first: asked first"


def test_the_chains_own_answer_does_not_fail_over() -> None:
    clock = Clock()
    a = Scripted("http://a:1", [REVERT])
    b = Scripted("http://b:2")
    with pytest.raises(RpcError):
        pool(a, b, clock=clock).request("eth_call", [])
    assert b.asked == []


def test_one_endpoint_raises_its_own_error_unwrapped() -> None:
    clock = Clock()
    with pytest.raises(EndpointError) as caught:
        pool(Scripted("http://a:1", [REFUSED]), clock=clock).request("eth_chainId", [])
    assert caught.value is REFUSED


def test_all_failing_names_every_endpoint_and_why() -> None:
    clock = Clock()
    with pytest.raises(RpcUnavailable) as caught:
        pool(Scripted("http://a:1", [REFUSED]), Scripted("http://b:2", [HTTP_503]), clock=clock).request("x", [])
    assert str(caught.value) == f"no RPC endpoint answered: {REFUSED}; {HTTP_503}"


def test_closing_the_pool_closes_every_endpoint() -> None:
    a, b = Scripted("http://a:1"), Scripted("http://b:2")
    rpc = pool(a, b, clock=Clock())
    rpc.close()
    assert a.closed and b.closed
    with pytest.raises(EndpointError, match="stopped"):
        rpc.request("eth_chainId", [])


# ------------------------------------------------------------------ evidence of the source


def test_source_log_asks_the_client_version_once_at_the_first_answer() -> None:
    inner = Scripted("http://a:1", ["0x7a69", "anvil/v1.7.1"])
    logged = SourceLog(inner)
    assert not logged.answered
    logged.request("eth_chainId", [])
    logged.request("eth_blockNumber", [])
    assert logged.source() == Source("http://a:1", "anvil/v1.7.1")
    assert inner.asked == ["eth_chainId", "web3_clientVersion", "eth_blockNumber"]


def test_a_client_that_will_not_say_is_recorded_without_a_version() -> None:
    inner = Scripted("http://a:1", ["0x7a69", RpcError("http://a:1", "web3_clientVersion", -32601, "not found")])
    logged = SourceLog(inner)
    logged.request("eth_chainId", [])
    assert logged.source() == Source("http://a:1", None)


def test_an_endpoint_that_never_answered_is_not_a_source() -> None:
    logged = SourceLog(Scripted("http://a:1", [REFUSED]))
    with pytest.raises(EndpointError):
        logged.request("eth_chainId", [])
    assert not logged.answered
