"""Token movements of custody wallets from ERC-20 logs over a range of blocks (eth_getLogs in
ranges, a range the node refuses as too large halved), and the blocks where a wallet contract
emitted a log.

Invariants (with those of chains.evm.scan):

- The wallets' token logs are the same whether the node selects them (topic filter, small
  wallet sets) or the scan does (large sets: every Transfer/Approval of the tokens, matched
  against the wallets' topic words); either way a log the node should not have answered (of
  another token, another event, a wallet not asked) raises ScanFailed.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chains.evm.rpc import Transport
from chains.evm.scan import (
    _KINDS,
    APPROVAL_TOPIC,
    TRANSFER_TOPIC,
    Block,
    DecodeError,
    RangeRefused,
    ScanFailed,
    ScanReorged,
    _address,
    _checked_end,
    _classify,
    _fail,
    _hash,
    _headers,
    _quantity,
    _where,
    address_topic,
    checksum,
    decode_token_log,
)
from reconciler.domain import BlockRef
from reconciler.errors import ChainError
from reconciler.transfers import MovementKind, Observation

log = logging.getLogger(__name__)

# Wallet sets larger than this are matched locally, not in eth_getLogs' topic filter (see
# scan_token_logs): measured on Anvil, see docs/surveillance.md.
TOPIC_FILTER_MAX = 1000
_GROW_AFTER = 4  # answered ranges in a row before a halved range size doubles again


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
    found = wallet_log_txs(
        rpc, chain, wallets, from_block, to_block, chunk_blocks=chunk_blocks, max_addresses=max_addresses
    )
    return {wallet: {number for number, _tx in pairs} for wallet, pairs in found.items()}


def wallet_log_txs(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    from_block: int,
    to_block: int,
    *,
    chunk_blocks: int,
    max_addresses: int = 100,
) -> dict[str, set[tuple[int, str]]]:
    """Per wallet (EIP-55), the (block number, tx hash) of every log the wallet's own address
    emitted in from_block..to_block: each is an execution of the wallet's code."""
    found: dict[str, set[tuple[int, str]]] = {checksum(_address(w, "wallet")): set() for w in wallets}
    if not wallets or to_block < from_block:
        return found
    stats = _Stats()
    for group in _groups(sorted({_address(w, "wallet") for w in wallets}), max_addresses):
        for entry in _logs(rpc, chain, {"address": group}, from_block, to_block, chunk_blocks, stats):
            try:
                emitter = checksum(_address(entry.get("address"), "address"))
                tx_hash = _hash(entry.get("transactionHash"), "transactionHash")
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
            found[emitter].add((int(str(entry["blockNumber"]), 16), tx_hash))
    return found
