"""Blocks by time: a block's header, and the last block at or before an instant.

Invariants: a header is taken only if it is the block asked for (its number, or its hash) with a
32-byte hash and a hex timestamp, else ChainError; the search assumes only that timestamps never
decrease with height (equal neighbours happen: Anvil and some L2s stamp several blocks with one
second), and returns the highest block whose timestamp is at or before the instant, or None
when even the first block is later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chains.evm.rpc import Transport
from reconciler.domain import BlockRef
from reconciler.errors import ChainError

_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    timestamp: int  # Unix seconds

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.number, self.hash)


def _quantity(value: Any, what: str, endpoint: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ChainError(f"{endpoint}: {what} answered {value!r:.80}, not a hex quantity")
    return int(value, 16)


def _header(block: Any, call: str, endpoint: str) -> BlockHeader:
    if block is None:
        raise ChainError(f"{endpoint}: {call}: no such block")
    if not isinstance(block, dict):
        raise ChainError(f"{endpoint}: {call} answered {block!r:.80}, not a block")
    number = _quantity(block.get("number"), f"{call} (the block's number)", endpoint)
    timestamp = _quantity(block.get("timestamp"), f"{call} (the block's timestamp)", endpoint)
    block_hash = block.get("hash")
    if not isinstance(block_hash, str) or not _HASH.fullmatch(block_hash):
        raise ChainError(f"{endpoint}: {call} answered a block with hash {block_hash!r:.80}, not 32 bytes of hex")
    return BlockHeader(number, block_hash.lower(), timestamp)


def head_number(rpc: Transport) -> int:
    return _quantity(rpc.request("eth_blockNumber", []), "eth_blockNumber", rpc.endpoint)


def header_at(rpc: Transport, number: int) -> BlockHeader:
    """The canonical block at ``number`` now."""
    call = f"eth_getBlockByNumber({hex(number)})"
    header = _header(rpc.request("eth_getBlockByNumber", [hex(number), False]), call, rpc.endpoint)
    if header.number != number:
        raise ChainError(
            f"{rpc.endpoint}: {call} answered block {header.number}: the node, or a proxy in front of it, "
            "serves another block than the one asked for; check the endpoint"
        )
    return header


def header_of(rpc: Transport, block: BlockRef) -> BlockHeader:
    """The header of the pinned block, by its hash (so a reorg cannot answer for another)."""
    call = f"eth_getBlockByHash({block.hash})"
    header = _header(rpc.request("eth_getBlockByHash", [block.hash, False]), call, rpc.endpoint)
    if header.number != block.number or header.hash != block.hash.lower():
        raise ChainError(
            f"{rpc.endpoint}: {call} answered block {header.number} ({header.hash}), not block {block.number}"
        )
    return header


def last_at_or_before(rpc: Transport, instant: int, head: int) -> BlockHeader | None:
    """The highest block in [0, head] whose timestamp is at or before ``instant`` (Unix
    seconds), by binary search on timestamps: about log2(head) header reads."""
    if head < 0:
        raise ValueError(f"head must not be negative, not {head}")
    first = header_at(rpc, 0)
    if first.timestamp > instant:
        return None
    top = header_at(rpc, head)
    if top.timestamp <= instant:
        return top
    low, high = first, top  # low.timestamp <= instant < high.timestamp
    while high.number - low.number > 1:
        middle = header_at(rpc, (low.number + high.number) // 2)
        if middle.timestamp <= instant:
            low = middle
        else:
            high = middle
    return low
