"""Price feeds read at a pinned block, and the EVM reader that segregation statements use.

A Chainlink-style AggregatorV3Interface feed is read by two hand-encoded eth_calls at the pinned
block by hash (EIP-1898, requireCanonical): ``decimals()`` and ``latestRoundData()`` (five
words: uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80
answeredInRound). Invariants: a feed that reverts, has no code, or answers anything but exactly
that shape is a FeedReading with an error, never a price (the engine makes the statement
incomplete for that asset); a failure of the node or the transport raises ChainError, and the
chain is unread. Whether an answer is fresh or positive is the engine's judgement, not this
module's. This module imports no adapter, so the adapter may use it.
"""

from __future__ import annotations

from typing import Any

from chains.evm import abi
from chains.evm.rpc import RpcError, Transport
from reconciler.domain import BlockRef
from reconciler.engine.segregation.values import FeedAnswer, FeedReading
from reconciler.errors import ChainError, RpcUnavailable

LATEST_ROUND_DATA = bytes.fromhex("feaf968c")  # latestRoundData()
DECIMALS = abi.DECIMALS  # decimals()
_WORD = 32
_UINT80_MAX = 2**80 - 1


def _block_param(block: BlockRef) -> dict[str, Any]:
    return {"blockHash": block.hash, "requireCanonical": True}


def _is_revert(exc: RpcError) -> bool:
    return exc.code == 3 or "revert" in exc.rpc_message.lower()


def decode_round_data(data: bytes) -> tuple[int, int, int, int, int]:
    """latestRoundData()'s five words; AbiError unless it is exactly that."""
    if len(data) != 5 * _WORD:
        raise abi.AbiError(f"latestRoundData() answered {len(data)} bytes, not 5 words")
    words = [int.from_bytes(data[i : i + _WORD], "big") for i in range(0, 5 * _WORD, _WORD)]
    round_id, raw_answer, started_at, updated_at, answered_in_round = words
    if round_id > _UINT80_MAX or answered_in_round > _UINT80_MAX:
        raise abi.AbiError("latestRoundData(): a round id does not fit uint80")
    answer = raw_answer - 2**256 if raw_answer >= 2**255 else raw_answer  # int256, two's complement
    return round_id, answer, started_at, updated_at, answered_in_round


def read_feed(rpc: Transport, chain: str, feed: str, block: BlockRef, block_time: int) -> FeedReading:
    """One feed's answer at ``block``; what it could not answer is recorded in the reading."""
    at = _block_param(block)
    where = f"chain {chain} block {block.number}"

    def call(data: bytes, what: str) -> bytes | str:
        try:
            raw = rpc.request("eth_call", [{"to": feed, "data": "0x" + data.hex()}, at])
        except RpcError as exc:
            if _is_revert(exc):
                return f"{what} reverted ({exc.rpc_message})"
            raise ChainError(f"{where}: reading price feed {feed}: {exc}") from exc
        except ChainError as exc:
            cls = RpcUnavailable if isinstance(exc, RpcUnavailable) else ChainError
            raise cls(f"{where}: reading price feed {feed}: {exc}") from exc
        try:
            return abi.hex_bytes(raw)
        except abi.AbiError as exc:
            raise ChainError(f"{where}: price feed {feed}: {exc}") from exc

    def failed(error: str) -> FeedReading:
        return FeedReading(feed, chain, block.number, block_time, None, error)

    decimals_raw = call(DECIMALS, "decimals()")
    if isinstance(decimals_raw, str):
        return failed(decimals_raw)
    if not decimals_raw:
        return failed(f"no contract answers at {feed} (decimals() returned nothing)")
    round_raw = call(LATEST_ROUND_DATA, "latestRoundData()")
    if isinstance(round_raw, str):
        return failed(round_raw)
    try:
        decimals = abi.decode_uint(decimals_raw, "decimals()")
        round_id, answer, started_at, updated_at, answered_in_round = decode_round_data(round_raw)
    except abi.AbiError as exc:
        return failed(str(exc))
    if decimals > 255:
        return failed(f"decimals() answered {decimals}, not a uint8")
    return FeedReading(
        feed,
        chain,
        block.number,
        block_time,
        FeedAnswer(decimals, round_id, answer, started_at, updated_at, answered_in_round),
    )
