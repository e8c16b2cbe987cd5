"""A range of blocks observed in full for custody wallets: their native movements and every
execution of them, found and traced.

An execution is a transaction in which a custody wallet's code runs or its account changes:
one in which the wallet emitted a log (a Safe's ExecutionSuccess and the like), one it sent,
one of a block traced for value whose call tree touches the wallet, a type-4 transaction whose
authorization list names a wallet or an approver, and — where the node serves ``trace_filter``
— any transaction with a call into a wallet (which finds a call into a rogue singleton that
emits nothing and moves nothing net).

Invariants (with those of chains.evm.scan and chains.evm.native):
- Cost grows with executions, not with blocks: a block is traced only where a wallet's or an
  approver's balance or nonce changed, where a wallet logged, or where trace_filter found a
  call into a wallet; only those blocks' transactions are candidates.
- A check the node cannot serve is named in ``unchecked``, never passed over in silence: no
  ``trace_filter`` (calls into a wallet that emit nothing and leave balance and nonce as they
  were are not looked for), no ``debug_traceTransaction`` (executions found but not judged).
- Every execution names its block by number and hash, the hash checked against the header the
  scan read; a disagreement raises ScanReorged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.evm.executions import (
    DecodeError as ExecutionDecodeError,
)
from chains.evm.executions import (
    ExecutionReorged,
    TracingUnavailable,
    TxRef,
    calls_into,
    decode_authorizations,
    fetch_executions,
)
from chains.evm.logs import wallet_log_txs
from chains.evm.native import _wallets, changed_blocks, traced_blocks
from chains.evm.rpc import Call, Transport
from chains.evm.scan import Block, ScanFailed, ScanReorged, _batched, _checked_end, _fail, _Header, _number, _where
from reconciler.engine.executions import Execution
from reconciler.errors import ChainError
from reconciler.transfers import Observation

log = logging.getLogger(__name__)

NO_TRACE_FILTER = (
    "trace_filter is not served by the node: calls into a custody wallet that emit no log and leave its "
    "balance and nonce as they were (a rogue singleton's work undone within the range) were not looked for"
)
NO_DEBUG_TRACE = (
    "debug_traceTransaction is not served by the node: executions of custody wallets were found but not "
    "traced and diffed, so DELEGATECALLs, storage and code changes and fee ceilings were not judged"
)


@dataclass(frozen=True, slots=True)
class RangeScan:
    observations: list[Observation]
    executions: list[Execution] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def _type4_refs(
    rpc: Transport, chain: str, headers: Sequence[_Header], named: set[str], batch_size: int
) -> dict[str, TxRef]:
    """Type-4 transactions of these blocks whose authorization list names an account of
    ``named`` (lowercase) as its authority."""
    if not headers or not named:
        return {}
    calls: list[Call] = [("eth_getBlockByHash", [h.hash, True]) for h in headers]
    lo, hi = headers[0].number, headers[-1].number
    try:
        blocks = _batched(rpc, calls, batch_size)
    except ChainError as exc:
        raise _fail(exc, "eth_getBlockByHash", chain, lo, hi) from exc
    out: dict[str, TxRef] = {}
    for header, block in zip(headers, blocks, strict=True):
        if not isinstance(block, Mapping) or str(block.get("hash", "")).lower() != header.hash:
            raise ScanReorged(
                f"{_where(chain, header.number, header.number)}: block {header.hash} is no longer served: the "
                "chain reorganized during the scan; scan again",
                chain,
                header.number,
                header.number,
            )
        for tx in block.get("transactions") or []:
            if not isinstance(tx, Mapping) or str(tx.get("type", "")).lower() not in ("0x4", "0x04"):
                continue
            try:
                authorities = {
                    a.authority.lower() for a in decode_authorizations(tx) if a.authority is not None
                }
            except ExecutionDecodeError as exc:
                raise ScanFailed(
                    f"{_where(chain, header.number, header.number)}: tx {tx.get('hash')}: {exc}", chain, lo, hi
                ) from exc
            if authorities & named:
                tx_hash = str(tx.get("hash", "")).lower()
                out[tx_hash] = TxRef(header.number, header.hash, tx_hash, header.miner)
    return out


def scan_range(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    since: Block,
    to_block: Block,
    *,
    chunk_blocks: int,
    approvers: Sequence[str] = (),
    max_addresses: int = 100,
    batch_size: int = 500,
    trace_batch: int = 1,
    with_executions: bool = True,
) -> RangeScan:
    """The wallets' native movements and executions in the blocks after ``since`` up to and
    including ``to_block`` (see the module docstring). ``approvers``' accounts are watched for
    EIP-7702 authorizations too. Without ``with_executions`` this is chains.evm.native's
    scan: movements only."""
    ws = _wallets(wallets)
    others = [a for a in _wallets(approvers) if a not in set(ws)] if with_executions else []
    a, b = _number(since), _number(to_block)
    if b <= a or not ws:
        return RangeScan(_checked_end([], rpc, chain, a + 1, to_block, batch_size))
    unchecked: list[str] = []
    logged = wallet_log_txs(rpc, chain, ws, a + 1, b, chunk_blocks=chunk_blocks, max_addresses=max_addresses)
    emitted = {w: {number for number, _tx in pairs} for w, pairs in logged.items()}
    called: set[TxRef] = set()
    if with_executions:
        try:
            called = calls_into(rpc, chain, ws, a + 1, b, chunk_blocks=chunk_blocks)
        except TracingUnavailable:
            unchecked.append(NO_TRACE_FILTER)
    accounts = [*ws, *others]
    blocks, _moving = changed_blocks(rpc, chain, accounts, since, to_block, emitted, batch_size)
    blocks.update(r.block_number for r in called)
    traced = traced_blocks(rpc, chain, ws, blocks, batch_size=batch_size, trace_batch=trace_batch)
    executions: list[Execution] = []
    if with_executions:
        refs = _candidates(chain, ws, traced.headers, traced.traces, logged, called)
        named = {x.lower() for x in accounts}
        headers = [traced.headers[n] for n in sorted(traced.headers)]
        for tx, ref in _type4_refs(rpc, chain, headers, named, batch_size).items():
            refs.setdefault(tx, ref)
        order = {tx: i for h in traced.headers.values() for i, tx in enumerate(h.transactions)}
        ordered = sorted(refs.values(), key=lambda r: (r.block_number, order.get(r.tx_hash, 0), r.tx_hash))
        try:
            executions = fetch_executions(rpc, chain, ordered, batch_size=min(batch_size, 50))
        except TracingUnavailable:
            unchecked.append(NO_DEBUG_TRACE)
        except ExecutionReorged as exc:
            raise ScanReorged(str(exc), chain, a + 1, b) from exc
    log.info(
        "event=range_scanned chain=%s from=%d to=%d wallets=%d approvers=%d traced_blocks=%d observed=%d "
        "executions=%d unchecked=%d",
        chain,
        a + 1,
        b,
        len(ws),
        len(others),
        len(blocks),
        len(traced.observations),
        len(executions),
        len(unchecked),
    )
    return RangeScan(_checked_end(traced.observations, rpc, chain, a + 1, to_block, batch_size), executions, unchecked)


def _candidates(
    chain: str,
    wallets: Sequence[str],
    headers: Mapping[int, _Header],
    traces: Mapping[int, Any],
    logged: Mapping[str, set[tuple[int, str]]],
    called: set[TxRef],
) -> dict[str, TxRef]:
    """The executions among the traced blocks' transactions: those a wallet sent, whose call
    tree touches a wallet, in which a wallet logged, or which trace_filter found calling one."""
    wanted = {w.lower() for w in wallets}
    refs: dict[str, TxRef] = {}
    for number, header in headers.items():
        trace = traces[number]
        for tx in header.transactions:
            if trace.senders.get(tx) in wanted or trace.touched.get(tx, set()) & wanted:
                refs[tx] = TxRef(number, header.hash, tx, header.miner)
    found: list[tuple[int, str, str | None]] = [(n, tx, None) for pairs in logged.values() for n, tx in pairs]
    found += [(r.block_number, r.tx_hash, r.block_hash) for r in called]
    for number, tx, block_hash in found:
        seen = headers.get(number)
        if seen is None or (block_hash is not None and block_hash.lower() != seen.hash):
            raise ScanReorged(
                f"{_where(chain, number, number)}: tx {tx} was found in a block the trace of the range does not "
                "hold (the chain reorganized during the scan); scan again",
                chain,
                number,
                number,
            )
        refs.setdefault(tx, TxRef(number, seen.hash, tx, seen.miner))
    return refs
