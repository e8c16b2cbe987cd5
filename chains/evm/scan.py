"""Every movement of custody wallets on an EVM chain, observed over a range of blocks.

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
- The wallets' token logs are the same whether the node selects them (topic filter, small
  wallet sets) or the scan does (large sets: every Transfer/Approval of the tokens, matched
  against the wallets' topic words); either way a log the node should not have answered (of
  another token, another event, a wallet not asked) raises ScanFailed.
- Native cost grows with movements, not blocks: a wallet whose balance and nonce are equal at
  both ends of a range and that emitted no log in it is never traced.

Residual risk of the native side (the flow check in the engine is the backstop): bisection
compares (balance, nonce) at the ends of each stretch. A nonce only grows, so every block where an
EOA wallet sent a transaction is found. A balance can go and come back inside one stretch without
the wallet's own transaction: value received and then moved out by a contract wallet's internal
call (or an EIP-7702-delegated EOA's code). Wallet contracts that log their executions (a
Safe's ExecutionSuccess, our CustodyWallet's) are caught by the wallet-log sweep: each block
where a wallet logged is traced and cuts the bisection, so the inflow before a logged outflow
is found too. A wallet contract that moves value without any log, in an exact round trip inside
one stretch, is not seen — and, its net change being zero, the flow check does not see it
either. Balance changes made without any transaction (beacon-chain withdrawals, priority fees
to a wallet that is a block's fee recipient) have no trace frame: they reach the engine as
unexplained balance changes.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chains.evm.rpc import Call, RpcError, Transport
from reconciler.domain import BlockRef, eip55
from reconciler.errors import ChainError, RpcUnavailable
from reconciler.transfers import ZERO_ADDRESS, MovementKind, Observation

log = logging.getLogger(__name__)

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
FEE_POSITION = "fee"  # trace_position of a FEE observation (see trace_native)
# Wallet sets larger than this are matched locally, not in eth_getLogs' topic filter (see
# scan_token_logs): measured on Anvil, see docs/surveillance.md.
TOPIC_FILTER_MAX = 1000

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
_GROW_AFTER = 4  # answered ranges in a row before a halved range size doubles again
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


# ----------------------------------------------------------------------------------- logs


@dataclass
class _Stats:
    requests: int = 0
    refused: int = 0


def _groups(items: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise ValueError(f"max_addresses must be at least 1, not {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _logs(
    rpc: Transport, chain: str, flt: Mapping[str, Any], lo: int, hi: int, chunk_blocks: int, stats: _Stats
) -> Iterator[dict[str, Any]]:
    """All logs of ``flt`` in blocks lo..hi, in ranges of at most ``chunk_blocks`` blocks,
    halving a range the node refuses as too large. A range cap learnt from a refusal that
    names the range is kept; after a result cap or a timeout (which depend on how busy the
    blocks are) the size doubles back after every few answered ranges, so that a node with a
    fixed cap sees few refused requests and a dense stretch does not slow the rest. Each
    range's answer is checked whole before its logs are yielded, and only one range's answer
    is held at a time (the caller keeps what it needs)."""
    if chunk_blocks < 1:
        raise ValueError(f"chunk_blocks must be at least 1, not {chunk_blocks}")
    size = ceiling = chunk_blocks
    streak = 0  # ranges answered since the last refusal
    start = lo
    while start <= hi:
        end = min(hi, start + size - 1)
        stats.requests += 1
        try:
            answer = rpc.request("eth_getLogs", [{**flt, "fromBlock": hex(start), "toBlock": hex(end)}])
        except ChainError as exc:
            kind = _classify(exc)
            if kind not in ("too_large", "range"):
                raise _fail(exc, "eth_getLogs", chain, start, end) from exc
            if end == start:
                raise RangeRefused(
                    f"{_where(chain, start, end)}: the node refuses even one block's logs ({exc}); "
                    "use an endpoint with a higher result cap or a longer timeout",
                    chain,
                    start,
                    end,
                ) from exc
            stats.refused += 1
            streak = 0
            size = max(1, (end - start + 1) // 2)
            if kind == "range":
                ceiling = size
            log.info(
                "event=logs_range_refused chain=%s from=%d to=%d next_size=%d reason=%r",
                chain,
                start,
                end,
                size,
                str(exc),
            )
            continue
        if not isinstance(answer, list):
            raise ScanFailed(
                f"{_where(chain, start, end)}: eth_getLogs answered {answer!r:.80}, not a list", chain, start, end
            )
        for entry in answer:
            if not isinstance(entry, dict):
                raise ScanFailed(f"{_where(chain, start, end)}: eth_getLogs answered {entry!r:.80}", chain, start, end)
            if entry.get("removed") is True:
                raise ScanReorged(
                    f"{_where(chain, start, end)}: the node answered a removed log (tx "
                    f"{entry.get('transactionHash')}): the chain reorganized during the scan; scan again",
                    chain,
                    start,
                    end,
                )
            try:
                number = _quantity(entry.get("blockNumber"), "blockNumber")
            except DecodeError as exc:
                raise ScanFailed(f"{_where(chain, start, end)}: eth_getLogs: {exc}", chain, start, end) from exc
            if not start <= number <= end:
                raise ScanFailed(
                    f"{_where(chain, start, end)}: eth_getLogs answered a log of block {number}, outside the "
                    "range asked: check the endpoint (or a proxy in front of it)",
                    chain,
                    start,
                    end,
                )
        start = end + 1
        streak += 1
        if streak >= _GROW_AFTER:
            size, streak = min(ceiling, size * 2), 0
        yield from answer


def _wallet_words(wallets: Sequence[str]) -> list[str]:
    return sorted({address_topic(w) for w in wallets})


def scan_token_logs(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    tokens: Sequence[str] | None,
    from_block: int,
    to_block: Block,
    *,
    chunk_blocks: int,
    max_addresses: int = 100,
    batch_size: int = 500,
    topic_filter_max: int = TOPIC_FILTER_MAX,
) -> list[Observation]:
    """ERC-20 Transfer logs out of and into ``wallets`` and Approval logs from them, in blocks
    ``from_block``..``to_block`` (inclusive), sorted by (block, log index).

    ``tokens`` restricts the scan to those token contracts (the ``address`` filter); None scans
    every contract. With a filter, a log of another shape from a listed token raises; without
    one, logs that are not ERC-20 shaped (ERC-721's Transfer has 4 topics) are left out. A
    wallet-to-wallet transfer is one observation. ``to_block`` given as a BlockRef is checked
    to still be the canonical block at the end of the scan (ScanReorged if not).

    Up to ``topic_filter_max`` wallets (and always without a token filter), the node selects
    the wallets' logs: their addresses go in the topic filter, ``max_addresses`` to a query, an
    outflow and an inflow query each (hosted nodes bill per log returned). A larger set is
    matched here instead: one query per token group asks for every Transfer and Approval of
    the tokens, and the logs that name no wallet where the topic filter would have are left
    out — the same observations, in far fewer requests."""
    hi = to_block.number if isinstance(to_block, BlockRef) else to_block
    if not wallets or hi < from_block or (tokens is not None and not tokens):
        return _checked_end([], rpc, chain, from_block, to_block, batch_size)
    words = _wallet_words(wallets)
    wallet_set = {"0x" + w[26:] for w in words}  # lowercase: EIP-55 only for wallets that moved
    token_set = None if tokens is None else {checksum(_address(t, "token")) for t in tokens}
    token_groups: list[list[str] | None] = (
        [None] if token_set is None else list(_groups(sorted(t.lower() for t in token_set), max_addresses))
    )
    stats = _Stats()
    raw: dict[tuple[str, str, str], dict[str, Any]] = {}
    local = token_set is not None and len(words) > topic_filter_max
    if local:
        word_set = set(words)
        for token_group in token_groups:
            asked = set(token_group or ())
            flt = {"address": token_group, "topics": [[TRANSFER_TOPIC, APPROVAL_TOPIC]]}
            for entry in _logs(rpc, chain, flt, from_block, hi, chunk_blocks, stats):
                if _names_a_wallet(entry, word_set, asked, chain, from_block, hi):
                    raw.setdefault(_log_key(entry), entry)
    else:
        for group in _groups(words, max_addresses):
            for token_group in token_groups:
                base: dict[str, Any] = {} if token_group is None else {"address": token_group}
                # Topic positions are ANDed, so "from a wallet" and "to a wallet" are two queries.
                for topics in ([[TRANSFER_TOPIC, APPROVAL_TOPIC], group], [[TRANSFER_TOPIC], None, group]):
                    for entry in _logs(rpc, chain, {**base, "topics": topics}, from_block, hi, chunk_blocks, stats):
                        raw.setdefault(_log_key(entry), entry)  # a wallet-to-wallet transfer is answered twice
    # Block numbers were checked by _logs; the headers give each block's time and its hash now.
    headers = _headers(rpc, chain, {int(e["blockNumber"], 16) for e in raw.values()}, batch_size, from_block, hi)
    out: list[Observation] = []
    skipped = 0
    for entry in raw.values():
        header = headers[int(entry["blockNumber"], 16)]
        try:
            obs = decode_token_log(chain, entry, header.timestamp)
        except DecodeError as exc:
            if token_set is None:
                skipped += 1  # another standard's log with the same signature (ERC-721)
                continue
            raise ScanFailed(
                f"{_where(chain, from_block, hi)}: token {entry.get('address')} emitted a log that is not an "
                f"ERC-20 Transfer/Approval (tx {entry.get('transactionHash')}, log {entry.get('logIndex')}): {exc}",
                chain,
                from_block,
                hi,
            ) from exc
        _check_matches(obs, wallet_set, token_set, chain, from_block, hi)
        if header.hash != obs.block_hash:
            raise ScanReorged(
                f"{_where(chain, from_block, hi)}: a log of block {obs.block_number} names block hash "
                f"{obs.block_hash}, but the node now serves {header.hash} there: the chain reorganized "
                "during the scan; scan again",
                chain,
                from_block,
                hi,
            )
        out.append(obs)
    out.sort(key=_BY_POSITION)  # every token observation has a log index
    log.info(
        "event=token_logs_scanned chain=%s from=%d to=%d observed=%d requests=%d refused=%d skipped=%d matched=%s",
        chain,
        from_block,
        hi,
        len(out),
        stats.requests,
        stats.refused,
        skipped,
        "locally" if local else "by_node",
    )
    return _checked_end(out, rpc, chain, from_block, to_block, batch_size)


_BY_POSITION = operator.attrgetter("block_number", "log_index")


def _log_key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        str(entry.get("blockHash")).lower(),
        str(entry.get("transactionHash")).lower(),
        str(entry.get("logIndex")).lower(),
    )


def _names_a_wallet(entry: Mapping[str, Any], words: set[str], tokens: set[str], chain: str, lo: int, hi: int) -> bool:
    """Whether a log of the token-only query is one the topic-filtered queries select: a
    Transfer or Approval whose topic 1 is a wallet, or a Transfer whose topic 2 is. A log of
    another token or event is not what was asked (ScanFailed, like _check_matches); one not
    shaped as asked is kept, for decoding to refuse."""
    topics = entry.get("topics")
    address = entry.get("address")
    if type(topics) is not list or not topics or type(topics[0]) is not str or type(address) is not str:
        return True
    signature = topics[0].lower()
    if signature not in _KINDS or address.lower() not in tokens:
        raise ScanFailed(
            f"{_where(chain, lo, hi)}: eth_getLogs answered a log that the filter excludes (token {address}, "
            f"topic 0 {topics[0]}, tx {entry.get('transactionHash')}): check the endpoint",
            chain,
            lo,
            hi,
        )
    count = len(topics)
    sender = topics[1] if count > 1 else ""
    receiver = topics[2] if count > 2 and signature == TRANSFER_TOPIC else ""
    if type(sender) is not str or type(receiver) is not str:
        return True
    return sender.lower() in words or receiver.lower() in words


def _check_matches(obs: Observation, wallets: set[str], tokens: set[str] | None, chain: str, lo: int, hi: int) -> None:
    """A log the filter did not ask for means the node (or a proxy) answers another query.
    ``wallets`` are lowercase 0x-hex, ``tokens`` EIP-55."""
    ok = (
        obs.from_address.lower() in wallets or (obs.kind is MovementKind.TOKEN and obs.to_address.lower() in wallets)
    ) and (tokens is None or obs.token in tokens)
    if not ok:
        raise ScanFailed(
            f"{_where(chain, lo, hi)}: eth_getLogs answered a log that the filter excludes (token {obs.token}, "
            f"{obs.from_address} -> {obs.to_address}, tx {obs.tx_hash}): check the endpoint",
            chain,
            lo,
            hi,
        )


def wallet_log_blocks(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    from_block: int,
    to_block: int,
    *,
    chunk_blocks: int,
    max_addresses: int = 100,
) -> dict[str, set[int]]:
    """Per wallet (EIP-55), the blocks in from_block..to_block where the wallet's own address
    emitted a log: a contract wallet's executions (a Safe's ExecutionSuccess) can move native
    value with no other trace, and an EOA emits none (unless EIP-7702-delegated)."""
    found: dict[str, set[int]] = {checksum(_address(w, "wallet")): set() for w in wallets}
    if not wallets or to_block < from_block:
        return found
    stats = _Stats()
    for group in _groups(sorted({_address(w, "wallet") for w in wallets}), max_addresses):
        for entry in _logs(rpc, chain, {"address": group}, from_block, to_block, chunk_blocks, stats):
            try:
                emitter = checksum(_address(entry.get("address"), "address"))
            except DecodeError as exc:
                raise ScanFailed(
                    f"{_where(chain, from_block, to_block)}: eth_getLogs: {exc}", chain, from_block, to_block
                ) from exc
            if emitter not in found:
                raise ScanFailed(
                    f"{_where(chain, from_block, to_block)}: eth_getLogs answered a log of {emitter}, which the "
                    "filter excludes: check the endpoint",
                    chain,
                    from_block,
                    to_block,
                )
            found[emitter].add(int(str(entry["blockNumber"]), 16))
    return found


# ----------------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    hash: str
    timestamp: int
    transactions: tuple[str, ...]


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


# ----------------------------------------------------------------------------------- native: where


State = tuple[int, int]  # (balance in wei, nonce)


def _read_states(
    rpc: Transport, chain: str, reads: Sequence[tuple[str, Block]], batch_size: int
) -> dict[tuple[str, int], State]:
    """(balance, nonce) of each (wallet, block), batched; keyed by (EIP-55 wallet, number)."""
    calls: list[Call] = []
    for wallet, block in reads:
        at = _block_param(block)
        calls.append(("eth_getBalance", [wallet, at]))
        calls.append(("eth_getTransactionCount", [wallet, at]))
    if not calls:
        return {}
    numbers = [_number(b) for _, b in reads]
    lo, hi = min(numbers), max(numbers)
    try:
        answers = _batched(rpc, calls, batch_size)
    except ChainError as exc:
        by_hash = [b for _, b in reads if isinstance(b, BlockRef)]
        if by_hash and _classify(exc) != "pruned":
            _raise_if_reorged(rpc, chain, by_hash, batch_size, exc)
        raise _fail(exc, "balance and nonce reads", chain, lo, hi) from exc
    out: dict[tuple[str, int], State] = {}
    for i, (wallet, block) in enumerate(reads):
        try:
            state = (
                _quantity(answers[2 * i], "eth_getBalance"),
                _quantity(answers[2 * i + 1], "eth_getTransactionCount"),
            )
        except DecodeError as exc:
            raise ScanFailed(
                f"{_where(chain, lo, hi)}: {wallet} at block {_number(block)}: {exc}", chain, lo, hi
            ) from exc
        out[(wallet, _number(block))] = state
    return out


def _raise_if_reorged(rpc: Transport, chain: str, refs: Sequence[BlockRef], batch_size: int, cause: Exception) -> None:
    lo, hi = min(r.number for r in refs), max(r.number for r in refs)
    headers = _headers(rpc, chain, [r.number for r in refs], batch_size, lo, hi)
    for ref in refs:
        if headers[ref.number].hash != ref.hash.lower():
            raise ScanReorged(
                f"{_where(chain, lo, hi)}: block {ref.number} was {ref.hash} and is now {headers[ref.number].hash}: "
                "the chain reorganized; scan again",
                chain,
                lo,
                hi,
            ) from cause


def _wallets(wallets: Sequence[str]) -> list[str]:
    return sorted({checksum(_address(w, "wallet")) for w in wallets})


def native_changed(
    rpc: Transport, wallets: Sequence[str], block_a: Block, block_b: Block, *, chain: str = "", batch_size: int = 500
) -> set[str]:
    """The wallets (EIP-55) whose native balance or nonce differs between ``block_a`` and
    ``block_b`` (read by hash when given as BlockRefs); one batch of 4 reads per wallet."""
    ws = _wallets(wallets)
    states = _read_states(rpc, chain, [(w, b) for w in ws for b in (block_a, block_b)], batch_size)
    a, b = _number(block_a), _number(block_b)
    return {w for w in ws if states[(w, a)] != states[(w, b)]}


def narrow_native_all(
    rpc: Transport,
    wallets: Sequence[str],
    lo: Block,
    hi: Block,
    *,
    chain: str = "",
    batch_size: int = 500,
    known: Mapping[tuple[str, int], State] | None = None,
    breakpoints: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, list[int]]:
    """Per wallet (EIP-55), the blocks in (lo, hi] where its balance or nonce differs from the
    block before, found by bisection: a stretch whose ends read equal (balance AND nonce) is
    not split further. One batched request per bisection level for all wallets together, so
    the cost is about (changes x log2(hi - lo)) reads.

    ``breakpoints`` (per EIP-55 wallet) are blocks known to hold a movement of the wallet (its
    contract emitted a log there): the range is cut before and after each, so that value that
    came in and went out again between two ends that read equal is still found. ``known``
    holds (balance, nonce) states already read, keyed by (EIP-55 wallet, block number). See
    the module docstring for what can still hide in a stretch whose ends are equal."""
    ws = _wallets(wallets)
    a, b = _number(lo), _number(hi)
    if b <= a or not ws:
        return {w: [] for w in ws}
    states: dict[tuple[str, int], State] = dict(known or {})
    ends = [(w, blk) for w in ws for blk in (lo, hi) if (w, _number(blk)) not in states]
    states.update(_read_states(rpc, chain, ends, batch_size))
    points: dict[str, list[int]] = {}
    for w in ws:
        cuts = {a, b}
        for n in (breakpoints or {}).get(w, ()):
            cuts.update(c for c in (n - 1, n) if a <= c <= b)
        points[w] = sorted(cuts)
    inner = sorted({(w, n) for w, ps in points.items() for n in ps if (w, n) not in states})
    states.update(_read_states(rpc, chain, inner, batch_size))
    found: dict[str, set[int]] = {w: set() for w in ws}
    work = [(w, x, y) for w, ps in points.items() for x, y in zip(ps, ps[1:], strict=False)]
    while work:
        splits: list[tuple[str, int, int, int]] = []
        for w, x, y in work:
            if states[(w, x)] == states[(w, y)]:
                continue
            if y - x == 1:
                found[w].add(y)
            else:
                splits.append((w, x, (x + y) // 2, y))
        needed = sorted({(w, m) for w, _, m, _ in splits if (w, m) not in states})
        states.update(_read_states(rpc, chain, needed, batch_size))
        work = [part for w, x, m, y in splits for part in ((w, x, m), (w, m, y))]
    return {w: sorted(blocks) for w, blocks in found.items()}


def narrow_native(
    rpc: Transport, wallet: str, lo: Block, hi: Block, *, chain: str = "", batch_size: int = 500
) -> list[int]:
    """The blocks in (lo, hi] where ``wallet``'s balance or nonce changed (narrow_native_all)."""
    return next(iter(narrow_native_all(rpc, [wallet], lo, hi, chain=chain, batch_size=batch_size).values()))


# ----------------------------------------------------------------------------------- native: what


@dataclass(frozen=True, slots=True)
class _Move:
    tx_hash: str
    position: str
    source: str  # lowercase hex
    target: str
    value: int


@dataclass
class _BlockTrace:
    senders: dict[str, str]  # tx hash -> sender (lowercase), in block order
    moves: list[_Move]


_TRACE_METHODS = ("debug_traceBlockByHash", "debug_traceBlockByNumber", "trace_block")
_CALL_TRACER = {"tracer": "callTracer"}
# Frame types whose value moves from `from` to `to`. DELEGATECALL and STATICCALL carry no value
# of their own (a DELEGATECALL frame may repeat its parent's); CALLCODE runs foreign code with
# the caller as the recipient, so its value goes from the caller to itself: nothing moves.
_VALUE_FRAMES = frozenset({"CALL", "CREATE", "CREATE2", "SELFDESTRUCT"})


def _frame_value(frame: Mapping[str, Any], what: str) -> int:
    value = frame.get("value")
    return 0 if value is None else _quantity(value, what)


def _walk_call_tracer(tx_hash: str, root: Mapping[str, Any], moves: list[_Move]) -> str:
    """The value moves of one transaction's callTracer tree, depth first, each at its path
    ("" the transaction itself, "0.1" the second call of the first call). A frame with an
    error reverted: it and everything below it moved nothing. Returns the sender."""
    sender = _address(root.get("from"), f"tx {tx_hash} sender")
    stack: list[tuple[Mapping[str, Any], str]] = [(root, "")]
    while stack:
        frame, path = stack.pop()
        if frame.get("error"):
            continue
        kind = str(frame.get("type", "")).upper()
        if kind in _VALUE_FRAMES:
            value = _frame_value(frame, f"tx {tx_hash} frame {path!r} value")
            if value:
                moves.append(
                    _Move(
                        tx_hash,
                        path,
                        _address(frame.get("from"), f"tx {tx_hash} frame {path!r} from"),
                        _address(frame.get("to"), f"tx {tx_hash} frame {path!r} to"),
                        value,
                    )
                )
        children = frame.get("calls") or []
        if not isinstance(children, list):
            raise DecodeError(f"tx {tx_hash} frame {path!r}: calls is {children!r:.80}")
        for i in range(len(children) - 1, -1, -1):  # pushed in reverse: popped in order
            stack.append((children[i], f"{path}.{i}" if path else str(i)))
    return sender


def _from_call_tracer(header: _Header, answer: object) -> _BlockTrace:
    if not isinstance(answer, list) or len(answer) != len(header.transactions):
        raise DecodeError(
            f"callTracer answered {len(answer) if isinstance(answer, list) else answer!r:.80} traces for "
            f"{len(header.transactions)} transactions"
        )
    trace = _BlockTrace({}, [])
    for tx_hash, item in zip(header.transactions, answer, strict=True):
        if not isinstance(item, dict):
            raise DecodeError(f"trace of tx {tx_hash}: {item!r:.80}")
        named = item.get("txHash")
        if named is not None and _hash(named, "txHash") != tx_hash:
            raise _TraceOfOtherBlock(f"trace names tx {named} where block {header.number} has {tx_hash}")
        if item.get("error") or not isinstance(item.get("result"), dict):
            raise _TraceFailed(f"tx {tx_hash}: {item.get('error') or item!r:.200}")
        trace.senders[tx_hash] = _walk_call_tracer(tx_hash, item["result"], trace.moves)
    return trace


def _from_parity(header: _Header, answer: object) -> _BlockTrace:
    """trace_block's flat list: traceAddress is the same path as callTracer's; a failed frame
    has "error" and its descendants follow it in the list."""
    if not isinstance(answer, list):
        raise DecodeError(f"trace_block answered {answer!r:.80}")
    trace = _BlockTrace({}, [])
    failed: dict[str, list[tuple[int, ...]]] = {}
    for item in answer:
        if not isinstance(item, dict):
            raise DecodeError(f"trace_block item {item!r:.80}")
        kind = item.get("type")
        tx_value = item.get("transactionHash")
        if kind == "reward" or tx_value is None:
            continue  # block and uncle rewards: no transaction
        tx_hash = _hash(tx_value, "transactionHash")
        if _hash(item.get("blockHash"), "blockHash") != header.hash:
            raise _TraceOfOtherBlock(f"trace of tx {tx_hash} names block {item.get('blockHash')}")
        address = tuple(int(i) for i in item.get("traceAddress") or [])
        action = item.get("action") or {}
        if not address:
            trace.senders.setdefault(tx_hash, _address(action.get("from"), f"tx {tx_hash} sender"))
        if any(address[: len(p)] == p for p in failed.get(tx_hash, [])):
            continue
        if item.get("error"):
            failed.setdefault(tx_hash, []).append(address)
            continue
        path = ".".join(str(i) for i in address)
        what = f"tx {tx_hash} trace {path!r}"
        if kind == "call" and str(action.get("callType", "call")).lower() == "call":
            source, target, value = action.get("from"), action.get("to"), _frame_value(action, what)
        elif kind == "create":
            source, target, value = (
                action.get("from"),
                (item.get("result") or {}).get("address"),
                _frame_value(action, what),
            )
        elif kind == "suicide":
            balance = action.get("balance")
            source, target = action.get("address"), action.get("refundAddress")
            value = 0 if balance is None else _quantity(balance, what)
        else:
            continue
        if value:
            trace.moves.append(_Move(tx_hash, path, _address(source, what), _address(target, what), value))
    missing = set(header.transactions) - set(trace.senders)
    if missing:
        raise _TraceOfOtherBlock(f"trace_block has no trace of tx {sorted(missing)[0]}")
    return trace


class _TraceOfOtherBlock(Exception):
    """A trace that does not belong to the block header read: a reorg in between."""


class _TraceFailed(Exception):
    """The node answered a trace entry with an error (Anvil: state pruned)."""


def _trace_blocks(rpc: Transport, chain: str, headers: Sequence[_Header], batch_size: int) -> dict[int, _BlockTrace]:
    """Traces of each block, by hash where the node allows (debug_traceBlockByHash), else by
    number, else trace_block; a method the node does not serve is not asked again."""
    out: dict[int, _BlockTrace] = {}
    methods = list(_TRACE_METHODS)
    pending = list(headers)
    while pending:
        group, method = pending[:batch_size], methods[0]
        calls: list[Call] = [
            (method, [h.hash, _CALL_TRACER])
            if method == "debug_traceBlockByHash"
            else (method, [hex(h.number), _CALL_TRACER])
            if method == "debug_traceBlockByNumber"
            else (method, [hex(h.number)])
            for h in group
        ]
        lo, hi = group[0].number, group[-1].number
        try:
            answers = rpc.batch(calls)
        except ChainError as exc:
            if _unsupported(exc) and len(methods) > 1:
                log.info("event=trace_method_unsupported chain=%s method=%s next=%s", chain, method, methods[1])
                methods.pop(0)
                continue
            raise _fail(exc, method, chain, lo, hi) from exc
        for header, answer in zip(group, answers, strict=True):
            try:
                out[header.number] = (
                    _from_parity(header, answer) if method == "trace_block" else _from_call_tracer(header, answer)
                )
            except _TraceOfOtherBlock as exc:
                raise ScanReorged(
                    f"{_where(chain, header.number, header.number)}: {method}: {exc}: the chain reorganized "
                    "during the scan; scan again",
                    chain,
                    header.number,
                    header.number,
                ) from exc
            except _TraceFailed as exc:
                raise HistoryUnavailable(
                    f"{_where(chain, header.number, header.number)}: {method} could not trace {exc}; these "
                    "blocks are unread, not empty. Point rpc_urls at a node that keeps the state to trace them "
                    "(an archive node)",
                    chain,
                    header.number,
                    header.number,
                ) from exc
            except DecodeError as exc:
                raise ScanFailed(
                    f"{_where(chain, header.number, header.number)}: {method}: {exc}", chain, lo, hi
                ) from exc
        pending = pending[len(group) :]
    return out


def _fees(rpc: Transport, chain: str, wanted: Sequence[tuple[_Header, str, str]], batch_size: int) -> dict[str, int]:
    """Gas paid per transaction (tx hash -> wei): gasUsed x effectiveGasPrice, plus the blob
    fee (EIP-4844) and an L2's L1 data fee (``l1Fee`` on OP-stack chains) where the receipt
    has them. Each receipt must name the block and the sender expected."""
    if not wanted:
        return {}
    lo, hi = min(h.number for h, _, _ in wanted), max(h.number for h, _, _ in wanted)
    calls: list[Call] = [("eth_getTransactionReceipt", [tx]) for _, tx, _ in wanted]
    try:
        receipts = _batched(rpc, calls, batch_size)
    except ChainError as exc:
        raise _fail(exc, "eth_getTransactionReceipt", chain, lo, hi) from exc
    out: dict[str, int] = {}
    for (header, tx, sender), receipt in zip(wanted, receipts, strict=True):
        where = _where(chain, header.number, header.number)
        if not isinstance(receipt, dict):
            raise ScanFailed(f"{where}: no receipt for tx {tx} ({receipt!r:.80})", chain, lo, hi)
        try:
            if _hash(receipt.get("blockHash"), "blockHash") != header.hash:
                raise ScanReorged(
                    f"{where}: the receipt of tx {tx} names block {receipt.get('blockHash')}, not {header.hash}: "
                    "the chain reorganized during the scan; scan again",
                    chain,
                    header.number,
                    header.number,
                )
            if _address(receipt.get("from"), "from") != sender:
                raise ScanFailed(f"{where}: the receipt of tx {tx} names sender {receipt.get('from')}", chain, lo, hi)
            fee = _quantity(receipt.get("gasUsed"), "gasUsed") * _quantity(
                receipt.get("effectiveGasPrice"), "effectiveGasPrice"
            )
            if receipt.get("blobGasUsed") is not None and receipt.get("blobGasPrice") is not None:
                fee += _quantity(receipt["blobGasUsed"], "blobGasUsed") * _quantity(
                    receipt["blobGasPrice"], "blobGasPrice"
                )
            if receipt.get("l1Fee") is not None:
                fee += _quantity(receipt["l1Fee"], "l1Fee")
        except DecodeError as exc:
            raise ScanFailed(f"{where}: receipt of tx {tx}: {exc}", chain, lo, hi) from exc
        out[tx] = fee
    return out


def trace_native(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    block_numbers: Iterable[int],
    *,
    batch_size: int = 500,
    trace_batch: int = 1,
) -> list[Observation]:
    """Native movements of ``wallets`` in exactly these blocks, from call traces.

    Every call frame that moves value from or to a wallet is a NATIVE observation at its path
    in the transaction's call tree (``trace_position`` "" for the transaction's own value,
    "0", "0.1", …): CALL with value, CREATE/CREATE2 with value (to the new contract),
    SELFDESTRUCT (its balance to the beneficiary). A DELEGATECALL, STATICCALL or CALLCODE moves
    nothing; a reverted frame (one with an error) moves nothing and neither do its children.
    Gas paid by a wallet that sent the transaction is a FEE observation (to the zero address,
    ``trace_position`` "fee", amount from the receipt). Block hash and time come from the block
    header, and traces are taken by that hash, so all of a block's observations are of one
    branch. Sorted by block, transaction order, then depth-first position, fee last.
    ``trace_batch`` blocks go in one HTTP request: a busy block's trace can be megabytes and
    take seconds, so the default is one."""
    wanted = {_address(w, "wallet") for w in wallets}
    numbers = sorted(set(block_numbers))
    if not numbers or not wanted:
        return []
    lo, hi = numbers[0], numbers[-1]
    headers = _headers(rpc, chain, numbers, batch_size, lo, hi)
    traceable = [headers[n] for n in numbers if headers[n].transactions]
    traces = _trace_blocks(rpc, chain, traceable, max(1, trace_batch))
    fee_wanted = [
        (header, tx, sender)
        for header in traceable
        for tx, sender in traces[header.number].senders.items()
        if sender in wanted
    ]
    fees = _fees(rpc, chain, fee_wanted, batch_size)
    out: list[Observation] = []
    for header in traceable:
        trace = traces[header.number]
        by_tx: dict[str, list[_Move]] = {}
        for move in trace.moves:
            if move.source in wanted or move.target in wanted:
                by_tx.setdefault(move.tx_hash, []).append(move)
        for tx in header.transactions:
            for move in by_tx.get(tx, []):
                out.append(
                    Observation(
                        chain=chain,
                        block_number=header.number,
                        block_hash=header.hash,
                        block_time=header.timestamp,
                        tx_hash=tx,
                        kind=MovementKind.NATIVE,
                        token=None,
                        from_address=checksum(move.source),
                        to_address=checksum(move.target),
                        amount=move.value,
                        trace_position=move.position,
                    )
                )
            if fees.get(tx):
                out.append(
                    Observation(
                        chain=chain,
                        block_number=header.number,
                        block_hash=header.hash,
                        block_time=header.timestamp,
                        tx_hash=tx,
                        kind=MovementKind.FEE,
                        token=None,
                        from_address=checksum(trace.senders[tx]),
                        to_address=ZERO_ADDRESS,
                        amount=fees[tx],
                        trace_position=FEE_POSITION,
                    )
                )
    log.info(
        "event=native_traced chain=%s blocks=%d traced=%d observed=%d", chain, len(numbers), len(traceable), len(out)
    )
    return out


def scan_native(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    since: Block,
    to_block: Block,
    *,
    chunk_blocks: int,
    max_addresses: int = 100,
    batch_size: int = 500,
    trace_batch: int = 1,
) -> list[Observation]:
    """Native movements (NATIVE and FEE) of ``wallets`` in the blocks after ``since`` up to and
    including ``to_block`` — ``since`` is the checkpoint, whose state is the starting point.

    Traces only the blocks where a movement can be: where a wallet contract emitted a log
    (wallet_log_blocks), and where a wallet's balance or nonce changed (narrow_native_all, cut
    at those logged blocks; a wallet that logged nothing and whose balance and nonce are equal
    at both ends is neither bisected nor traced). A BlockRef ``since``/``to_block`` is read by
    hash, and ``to_block`` is checked to be still canonical at the end (ScanReorged)."""
    ws = _wallets(wallets)
    a, b = _number(since), _number(to_block)
    if b <= a or not ws:
        return _checked_end([], rpc, chain, a + 1, to_block, batch_size)
    emitted = wallet_log_blocks(rpc, chain, ws, a + 1, b, chunk_blocks=chunk_blocks, max_addresses=max_addresses)
    ends = _read_states(rpc, chain, [(w, blk) for w in ws for blk in (since, to_block)], batch_size)
    moving = [w for w in ws if ends[(w, a)] != ends[(w, b)] or emitted[w]]
    narrowed = narrow_native_all(
        rpc, moving, since, to_block, chain=chain, batch_size=batch_size, known=ends, breakpoints=emitted
    )
    blocks: set[int] = {n for found in narrowed.values() for n in found}
    blocks.update(n for found in emitted.values() for n in found)
    out = trace_native(rpc, chain, ws, blocks, batch_size=batch_size, trace_batch=trace_batch)
    log.info(
        "event=native_scanned chain=%s from=%d to=%d wallets=%d moving=%d traced_blocks=%d observed=%d",
        chain,
        a + 1,
        b,
        len(ws),
        len(moving),
        len(blocks),
        len(out),
    )
    return _checked_end(out, rpc, chain, a + 1, to_block, batch_size)
