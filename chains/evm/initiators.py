"""The evidence of who moved a permissioned token's transfers: each transaction's call tree with
its logs (``debug_traceTransaction``, ``callTracer`` with ``withLog``), or — where the node does
not trace — the transaction and its receipt. The pure classification is
reconciler.engine.initiators.

Invariants:
- Only the transactions asked for are read (those with a Transfer of an ERC-3643 asset), in
  batches: two requests per transaction.
- A node that does not serve ``debug_traceTransaction`` gets the fallback (transaction and
  receipt), and the classification says less (no agent); any other failure raises ChainError
  naming the chain and how many transactions, so the chain is left unread rather than judged
  on a guess.
- A transaction the node places in another block than the scan saw raises ExecutionReorged:
  the chain reorganized under the scan, and it is scanned again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from chains.evm.executions import (
    CALL_TRACER,
    DecodeError,
    ExecutionReorged,
    _address,
    _hash,
    _hex_bytes,
    _quantity,
    decode_frame,
    unsupported,
)
from chains.evm.rpc import Call, Transport
from reconciler.engine.executions import Log
from reconciler.engine.initiators import ReceiptLog, TxEvidence
from reconciler.errors import ChainError

log = logging.getLogger(__name__)

DEFAULT_BATCH = 50  # transactions per JSON-RPC batch (a trace can be large)


def _batched(rpc: Transport, calls: Sequence[Call], per_batch: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(calls), max(1, per_batch)):
        out.extend(rpc.batch(calls[i : i + per_batch]))
    return out


def _transaction(tx: object, tx_hash: str, block_hash: str, where: str) -> tuple[str, str | None, bytes]:
    """(sender, target or None for a creation, input) of a transaction the scan saw in ``block_hash``."""
    if not isinstance(tx, Mapping):
        raise DecodeError(f"no transaction ({tx!r:.60})")
    _check_block(tx.get("blockHash"), "transaction", block_hash, where)
    to = tx.get("to")
    return (
        _address(tx.get("from"), "from"),
        _address(to, "to") if to is not None else None,
        _hex_bytes(tx.get("input") or tx.get("data") or "0x", "input"),
    )


def _check_block(named: object, what: str, block_hash: str, where: str) -> None:
    if named is None or _hash(named, f"{what} blockHash") != block_hash.lower():
        raise ExecutionReorged(
            f"{where}: its {what} names block {named}, not {block_hash}: the chain reorganized during the scan; "
            "scan again"
        )


def _receipt_logs(receipt: object, block_hash: str, where: str) -> tuple[ReceiptLog, ...]:
    if not isinstance(receipt, Mapping):
        raise DecodeError(f"no receipt ({receipt!r:.60})")
    _check_block(receipt.get("blockHash"), "receipt", block_hash, where)
    entries = receipt.get("logs")
    if not isinstance(entries, list):
        raise DecodeError(f"receipt logs {entries!r:.60}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("topics"), list):
            raise DecodeError(f"receipt log {i}: {entry!r:.80}")
        out.append(
            ReceiptLog(
                _quantity(entry.get("logIndex"), f"receipt log {i} logIndex"),
                Log(
                    address=_address(entry.get("address"), f"receipt log {i} address"),
                    topics=tuple(_hash(t, f"receipt log {i} topic") for t in entry["topics"]),
                    data=_hex_bytes(entry.get("data") or "0x", f"receipt log {i} data"),
                ),
            )
        )
    return tuple(out)


def fetch_evidence(
    rpc: Transport, chain: str, transactions: Sequence[tuple[str, str]], *, per_batch: int = DEFAULT_BATCH
) -> dict[str, TxEvidence]:
    """Evidence for each (tx hash, block hash), by tx hash: its call tree with logs, or where
    the node does not trace, its receipt's logs."""
    todo = list(dict.fromkeys(transactions))
    if not todo:
        return {}
    calls: list[Call] = []
    for tx_hash, _ in todo:
        calls += [("debug_traceTransaction", [tx_hash, CALL_TRACER]), ("eth_getTransactionByHash", [tx_hash])]
    traced = True
    try:
        answers = _batched(rpc, calls, 2 * per_batch)
    except ChainError as exc:
        if not unsupported(exc):
            raise ChainError(
                f"chain {chain}: tracing {len(todo)} transaction(s) with transfers of ERC-3643 assets failed: {exc}"
            ) from exc
        log.warning(
            "event=trace_unavailable chain=%s transactions=%d fallback=receipts reason=%r", chain, len(todo), str(exc)
        )
        traced = False
        calls = []
        for tx_hash, _ in todo:
            calls += [("eth_getTransactionByHash", [tx_hash]), ("eth_getTransactionReceipt", [tx_hash])]
        try:
            answers = _batched(rpc, calls, 2 * per_batch)
        except ChainError as inner:
            raise ChainError(
                f"chain {chain}: reading {len(todo)} transaction(s) with transfers of ERC-3643 assets failed: {inner}"
            ) from inner
    out: dict[str, TxEvidence] = {}
    for k, (tx_hash, block_hash) in enumerate(todo):
        first, second = answers[2 * k], answers[2 * k + 1]
        where = f"chain {chain} tx {tx_hash}"
        try:
            if traced:
                sender, to, data = _transaction(second, tx_hash, block_hash, where)
                out[tx_hash] = TxEvidence(tx_hash, sender, to, data, root=decode_frame(first))
            else:
                sender, to, data = _transaction(first, tx_hash, block_hash, where)
                out[tx_hash] = TxEvidence(tx_hash, sender, to, data, receipt=_receipt_logs(second, block_hash, where))
        except DecodeError as exc:
            raise ChainError(f"{where}: the node's answer could not be read: {exc}") from exc
    log.info("event=transfers_classified chain=%s transactions=%d traced=%s", chain, len(todo), traced)
    return out
