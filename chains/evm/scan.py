"""Every movement of custody wallets on an EVM chain, observed over a range of blocks: what the
token-log scan (chains.evm.logs) and the native scan (chains.evm.native) share — their errors,
the hand decoding of ERC-20 logs, how a node's refusals are told apart, and block headers read
and checked in batches.

Token movements come from ERC-20 logs (``Transfer`` out of and into the wallets, ``Approval``
from them), keyed on the logs alone and never on who sent the transaction: a token can leave a
wallet that sent nothing (EIP-3009 ``transferWithAuthorization`` submitted by a relayer,
EIP-2612 ``permit`` then ``transferFrom`` by the spender). Native value comes from call traces,
taken only of the blocks where it can have moved: where a wallet's balance or nonce changed
(found by bisection over balance and nonce reads) or where a wallet contract emitted a log.

Invariants:

- Nothing the node did not answer for is reported as "no movement". A range the node cannot
  serve (pruned history) raises HistoryUnavailable; a range it refuses as too large is halved,
  down to a single block, and a single block still refused raises RangeRefused; any other
  failure raises ScanFailed naming chain and range. An empty answer is taken as empty.
- Every observation names its block by number and hash, and that hash was checked against the
  header the node serves at that number during the scan. A log marked ``removed``, a log whose
  block hash is no longer the block at its height, a trace of another block than the one
  asked, or a ``to_block`` given as a BlockRef whose hash changed, raise ScanReorged: the
  caller scans again and nothing partial is returned.
- Topics and data are decoded by hand (the ABI of Transfer and Approval is fixed): a log of
  another shape raises (when it comes from a configured token) or is left out (an ERC-721
  ``Transfer`` with its 4 topics, when no token filter is given); it is never read as zero.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chains.evm.rpc import Call, RpcError, Transport
from reconciler.domain import BlockRef, eip55
from reconciler.errors import ChainError, RpcUnavailable
from reconciler.transfers import MovementKind, Observation

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"

Block = int | BlockRef

_QUANTITY_RE = re.compile(r"0x[0-9a-fA-F]+")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_ZERO_12 = bytes(12)

# Texts and codes nodes use for "this history is gone" (geth's EIP-4444 code 4444, Anvil's
# --prune-history BlockOutOfRangeError, geth/erigon state pruning). Checked before the
# "too large" texts: Anvil answers -32602 "BlockOutOfRangeError", which also says "range".
_PRUNED_TEXTS = (
    "blockoutofrange",
    "block out of range",
    "header not found",
    "missing trie node",
    "pruned",
    "historical state",
    "history expired",
    "history unavailable",
)
# Refusals that a smaller range cures: result caps, range caps, timeouts.
_TOO_LARGE_TEXTS = (
    "more than",
    "too many",
    "too large",
    "limit exceeded",
    "exceed",
    "range",
    "response size",
    "max results",
    "timeout",
    "timed out",
)
_UNSUPPORTED_TEXTS = ("method not found", "does not exist", "not supported", "unsupported", "not available")


# ----------------------------------------------------------------------------------- errors


class ScanError(ChainError):
    """A scan of ``chain`` over blocks ``from_block``..``to_block`` could not complete."""

    def __init__(self, message: str, chain: str, from_block: int, to_block: int) -> None:
        self.chain = chain
        self.from_block = from_block
        self.to_block = to_block
        super().__init__(message)


class HistoryUnavailable(ScanError):
    """The node no longer serves this range (pruned history): the range is unread, not empty."""


class ScanReorged(ScanError):
    """The chain reorganized under the scan: scan the range again."""


class RangeRefused(ScanError):
    """The node refuses even a single block's logs."""


class ScanFailed(ScanError):
    """Any other failure of the node or its answer while scanning."""


class DecodeError(ValueError):
    """A log or value that is not shaped as the fixed ABI says."""


def _where(chain: str, lo: int, hi: int) -> str:
    return f"chain {chain or '?'} blocks {lo}..{hi}" if lo != hi else f"chain {chain or '?'} block {lo}"


# ----------------------------------------------------------------------------------- decoding


def checksum(address: str) -> str:
    """EIP-55 form of a 0x-hex address (cached in reconciler.domain.eip55: the same wallets and
    tokens recur from log to log)."""
    return eip55(_address(address))


def _word(value: object, what: str) -> bytes:
    # bytes.fromhex refuses non-hex digits; the spaces it would skip make the result shorter
    # than 32 bytes, so the length check refuses those too (this is the hot path: no regex).
    if isinstance(value, str) and len(value) == 66 and value[:2] == "0x":
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = b""
        if len(raw) == 32:
            return raw
    raise DecodeError(f"{what}: expected a 32-byte 0x-hex word, got {value!r:.80}")


def _topic_address(topic: object, what: str) -> str:
    raw = _word(topic, what)
    if raw[:12] != _ZERO_12:
        raise DecodeError(f"{what}: {topic!r} is not an address (its 12 high bytes are not zero)")
    return checksum("0x" + raw[12:].hex())


# The decoders below are memoized on the text the node sent: in a busy range the same wallets,
# tokens, block and transaction hashes and log indexes recur from log to log. Only a valid
# text's value is remembered (a cached None sends the call to the checking function, which
# raises with the reason), so a cache hit is exactly the answer the check would give.


@functools.lru_cache(maxsize=1 << 16)
def _topic_address_of(topic: str) -> str | None:
    try:
        return _topic_address(topic, "topic")
    except DecodeError:
        return None


@functools.lru_cache(maxsize=1 << 12)
def _token_of(value: str) -> str | None:
    try:
        return checksum(_address(value))
    except DecodeError:
        return None


@functools.lru_cache(maxsize=1 << 12)
def _hash_of(value: str) -> str | None:
    try:
        _word(value, "hash")
    except DecodeError:
        return None
    return value.lower()


@functools.lru_cache(maxsize=1 << 14)
def _quantity_of(value: str) -> int | None:
    return int(value, 16) if _QUANTITY_RE.fullmatch(value) else None


def topic_address(topic: object, what: str = "topic") -> str:
    """The address in an indexed-address topic (EIP-55); the 12 high bytes must be zero."""
    if type(topic) is str:
        found = _topic_address_of(topic)
        if found is not None:
            return found
    return _topic_address(topic, what)


def data_uint(data: object, what: str = "data") -> int:
    """The one uint256 of a log's data: exactly 32 bytes."""
    return int.from_bytes(_word(data, what), "big")


def address_topic(address: str) -> str:
    """The topic that matches ``address`` in an indexed position."""
    return "0x" + "0" * 24 + _address(address)[2:]


def _address(value: object, what: str = "address") -> str:
    """Lowercase 0x-hex of a 20-byte address."""
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        raise DecodeError(f"{what}: expected a 20-byte 0x-hex address, got {value!r:.80}")
    return value.lower()


def _token(value: object, what: str) -> str:
    """EIP-55 form of a 20-byte 0x-hex address."""
    if type(value) is str:
        found = _token_of(value)
        if found is not None:
            return found
    return checksum(_address(value, what))


def _hash(value: object, what: str) -> str:
    if type(value) is str:
        found = _hash_of(value)
        if found is not None:
            return found
    _word(value, what)
    return str(value).lower()


def _quantity(value: object, what: str) -> int:
    if type(value) is str:
        found = _quantity_of(value)
        if found is not None:
            return found
    raise DecodeError(f"{what}: expected a 0x-hex quantity, got {value!r:.80}")


_KINDS = {TRANSFER_TOPIC: MovementKind.TOKEN, APPROVAL_TOPIC: MovementKind.APPROVAL}


def decode_token_log(chain: str, entry: Mapping[str, Any], block_time: int) -> Observation:
    """A Transfer or Approval log as an observation: TOKEN (from, to, value) or APPROVAL
    (owner, spender, value). Raises DecodeError for any other shape."""
    topics = entry.get("topics")
    if type(topics) is not list or len(topics) != 3:
        raise DecodeError(f"expected 3 topics (signature, 2 indexed addresses), got {topics!r:.200}")
    signature = topics[0]
    kind = _KINDS.get(signature) if type(signature) is str else None
    if kind is None:
        kind = _KINDS.get(signature.lower()) if isinstance(signature, str) else None
        if kind is None:
            raise DecodeError(f"topic 0 {signature!r:.80} is neither Transfer nor Approval")
    return Observation(
        chain=chain,
        block_number=_quantity(entry.get("blockNumber"), "blockNumber"),
        block_hash=_hash(entry.get("blockHash"), "blockHash"),
        block_time=block_time,
        tx_hash=_hash(entry.get("transactionHash"), "transactionHash"),
        kind=kind,
        token=_token(entry.get("address"), "address"),
        from_address=topic_address(topics[1], "topic 1"),
        to_address=topic_address(topics[2], "topic 2"),
        amount=int.from_bytes(_word(entry.get("data"), "data"), "big"),
        log_index=_quantity(entry.get("logIndex"), "logIndex"),
    )


# ----------------------------------------------------------------------------------- node errors


def _classify(exc: ChainError) -> str | None:
    """ "pruned", "too_large" (with "range" when the node caps the range itself), or None."""
    if isinstance(exc, RpcError):
        text = exc.rpc_message.lower()
        if exc.code == 4444 or any(t in text for t in _PRUNED_TEXTS):
            return "pruned"
        if exc.code == -32005 or any(t in text for t in _TOO_LARGE_TEXTS):
            return "range" if "range" in text else "too_large"
        return None
    if isinstance(exc, RpcUnavailable):
        text = str(exc).lower()
        if "timed out" in text or "http 413" in text:
            return "too_large"
    return None


def _unsupported(exc: ChainError) -> bool:
    if not isinstance(exc, RpcError) or _classify(exc) == "pruned":
        return False
    return exc.code == -32601 or any(t in exc.rpc_message.lower() for t in _UNSUPPORTED_TEXTS)


def _fail(exc: ChainError, what: str, chain: str, lo: int, hi: int) -> ScanError:
    """The scan error for a failed read, with the fix where one is known."""
    where = _where(chain, lo, hi)
    if _classify(exc) == "pruned":
        return HistoryUnavailable(
            f"{where}: the node no longer serves this history ({what}: {exc}); these blocks are "
            "unread, not empty. Point rpc_urls at an archive node (or one that keeps state and logs "
            "back to this block), or start surveillance later with [chains.X] start_block",
            chain,
            lo,
            hi,
        )
    return ScanFailed(f"{where}: {what} failed: {exc}", chain, lo, hi)


# ----------------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    hash: str
    timestamp: int
    transactions: tuple[str, ...]
    miner: str | None = None  # the block's fee recipient (EIP-55)


def _block_param(block: Block) -> Any:
    """Reads at a pinned block go by hash (EIP-1898): a reorg makes them fail, not lie."""
    if isinstance(block, BlockRef):
        return {"blockHash": block.hash, "requireCanonical": True}
    return hex(block)


def _number(block: Block) -> int:
    return block.number if isinstance(block, BlockRef) else block


def _batched(rpc: Transport, calls: Sequence[Call], batch_size: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(calls), max(1, batch_size)):
        out.extend(rpc.batch(calls[i : i + batch_size]))
    return out


def _headers(
    rpc: Transport, chain: str, numbers: Iterable[int], batch_size: int, lo: int, hi: int
) -> dict[int, _Header]:
    """Each block's header (eth_getBlockByNumber(n, false)), batched; the node must answer the
    block asked for."""
    wanted = sorted(set(numbers))
    calls: list[Call] = [("eth_getBlockByNumber", [hex(n), False]) for n in wanted]
    try:
        answers = _batched(rpc, calls, batch_size)
    except ChainError as exc:
        raise _fail(exc, "eth_getBlockByNumber", chain, lo, hi) from exc
    out: dict[int, _Header] = {}
    for number, block in zip(wanted, answers, strict=True):
        if not isinstance(block, dict):
            raise ScanFailed(
                f"{_where(chain, lo, hi)}: block {number} not found ({block!r:.80}): the node is behind or the "
                "chain reorganized; scan again",
                chain,
                lo,
                hi,
            )
        try:
            answered = _quantity(block.get("number"), "number")
            header = _Header(
                number,
                _hash(block.get("hash"), "hash"),
                _quantity(block.get("timestamp"), "timestamp"),
                tuple(_tx_hash(t) for t in block.get("transactions") or []),
                _token(block["miner"], "miner") if block.get("miner") is not None else None,
            )
        except DecodeError as exc:
            raise ScanFailed(f"{_where(chain, lo, hi)}: block {number}: {exc}", chain, lo, hi) from exc
        if answered != number:
            raise ScanFailed(
                f"{_where(chain, lo, hi)}: asked for block {number}, the node answered block {answered}: check "
                "the endpoint (or a proxy in front of it)",
                chain,
                lo,
                hi,
            )
        out[number] = header
    return out


def _tx_hash(item: object) -> str:
    if isinstance(item, dict):  # a node that sends full transactions anyway
        item = item.get("hash")
    return _hash(item, "transaction hash")


def block_ref(rpc: Transport, number: int, *, chain: str = "") -> tuple[str, int]:
    """The canonical block at ``number`` now: (hash, Unix timestamp)."""
    header = _headers(rpc, chain, [number], 1, number, number)[number]
    return header.hash, header.timestamp


def _checked_end(
    out: list[Observation], rpc: Transport, chain: str, lo: int, to_block: Block, batch_size: int
) -> list[Observation]:
    """With ``to_block`` a BlockRef, the scan holds only if that block is still canonical: then
    every observed block below it is its ancestor, on the same branch."""
    if isinstance(to_block, BlockRef):
        now = _headers(rpc, chain, [to_block.number], batch_size, lo, to_block.number)[to_block.number].hash
        if now != to_block.hash.lower():
            raise ScanReorged(
                f"{_where(chain, lo, to_block.number)}: block {to_block.number} was {to_block.hash} and is now "
                f"{now}: the chain reorganized during the scan; scan again",
                chain,
                lo,
                to_block.number,
            )
    return out
