"""Native movements of custody wallets: where (bisection over balance and nonce reads, cut at
the blocks where a wallet contract logged) and what (call traces of exactly those blocks, and
the gas each wallet paid).

Invariants (with those of chains.evm.scan):

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

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.evm.logs import wallet_log_blocks
from chains.evm.rpc import Call, Transport
from chains.evm.scan import (
    Block,
    DecodeError,
    HistoryUnavailable,
    ScanFailed,
    ScanReorged,
    _address,
    _batched,
    _block_param,
    _checked_end,
    _classify,
    _fail,
    _hash,
    _Header,
    _headers,
    _number,
    _quantity,
    _unsupported,
    _where,
    checksum,
)
from reconciler.domain import BlockRef
from reconciler.errors import ChainError
from reconciler.transfers import ZERO_ADDRESS, MovementKind, Observation

log = logging.getLogger(__name__)

FEE_POSITION = "fee"  # trace_position of a FEE observation (see trace_native)


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
    # tx hash -> every account a frame of it came from or went to (lowercase): which
    # transactions of the block ran a wallet's code or called it (its executions).
    touched: dict[str, set[str]] = field(default_factory=dict)


_TRACE_METHODS = ("debug_traceBlockByHash", "debug_traceBlockByNumber", "trace_block")
_CALL_TRACER = {"tracer": "callTracer"}
# Frame types whose value moves from `from` to `to`. DELEGATECALL and STATICCALL carry no value
# of their own (a DELEGATECALL frame may repeat its parent's); CALLCODE runs foreign code with
# the caller as the recipient, so its value goes from the caller to itself: nothing moves.
_VALUE_FRAMES = frozenset({"CALL", "CREATE", "CREATE2", "SELFDESTRUCT"})


def _frame_value(frame: Mapping[str, Any], what: str) -> int:
    value = frame.get("value")
    return 0 if value is None else _quantity(value, what)


def _walk_call_tracer(
    tx_hash: str, root: Mapping[str, Any], moves: list[_Move], touched: set[str] | None = None
) -> str:
    """The value moves of one transaction's callTracer tree, depth first, each at its path
    ("" the transaction itself, "0.1" the second call of the first call). A frame with an
    error reverted: it and everything below it moved nothing (its accounts are still
    ``touched``: a reverted call into a wallet is still an execution to judge). Returns the
    sender."""
    sender = _address(root.get("from"), f"tx {tx_hash} sender")
    if touched is not None:
        _touched(root, touched)
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


def _touched(root: Mapping[str, Any], out: set[str]) -> None:
    """Every account a frame of the tree came from or went to, reverted frames included."""
    stack = [root]
    while stack:
        frame = stack.pop()
        out.update(str(frame[k]).lower() for k in ("from", "to") if frame.get(k))
        stack.extend(c for c in frame.get("calls") or [] if isinstance(c, Mapping))


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
        touched = trace.touched.setdefault(tx_hash, set())
        trace.senders[tx_hash] = _walk_call_tracer(tx_hash, item["result"], trace.moves, touched)
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
        seen = trace.touched.setdefault(tx_hash, set())
        for key in ("from", "to", "address", "refundAddress"):
            if isinstance(action, Mapping) and action.get(key):
                seen.add(str(action[key]).lower())
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
    """Native movements of ``wallets`` in exactly these blocks (traced_blocks)."""
    traced = traced_blocks(rpc, chain, wallets, block_numbers, batch_size=batch_size, trace_batch=trace_batch)
    return traced.observations


@dataclass(frozen=True, slots=True)
class TracedBlocks:
    """What tracing some blocks gave: the wallets' native movements, each traced block's
    header and its transactions' senders and touched accounts."""

    observations: list[Observation]
    headers: dict[int, _Header]
    traces: dict[int, _BlockTrace]


def traced_blocks(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    block_numbers: Iterable[int],
    *,
    batch_size: int = 500,
    trace_batch: int = 1,
) -> TracedBlocks:
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
        return TracedBlocks([], {}, {})
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
            native, fee = MovementKind.NATIVE, MovementKind.FEE
            for m in by_tx.get(tx, []):
                out.append(_observation(chain, header, tx, native, m.source, m.target, m.value, m.position))
            if fees.get(tx):
                sender = trace.senders[tx]
                out.append(_observation(chain, header, tx, fee, sender, ZERO_ADDRESS, fees[tx], FEE_POSITION))
    log.info(
        "event=native_traced chain=%s blocks=%d traced=%d observed=%d", chain, len(numbers), len(traceable), len(out)
    )
    return TracedBlocks(out, {h.number: h for h in traceable}, traces)


def _observation(
    chain: str, header: _Header, tx: str, kind: MovementKind, source: str, target: str, amount: int, position: str
) -> Observation:
    """A native movement or a fee of ``tx`` in the traced block ``header``."""
    return Observation(
        chain=chain,
        block_number=header.number,
        block_hash=header.hash,
        block_time=header.timestamp,
        tx_hash=tx,
        kind=kind,
        token=None,
        from_address=checksum(source),
        to_address=checksum(target),
        amount=amount,
        trace_position=position,
    )


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
    blocks, moving = changed_blocks(rpc, chain, ws, since, to_block, emitted, batch_size)
    out = trace_native(rpc, chain, ws, blocks, batch_size=batch_size, trace_batch=trace_batch)
    log.info(
        "event=native_scanned chain=%s from=%d to=%d wallets=%d moving=%d traced_blocks=%d observed=%d",
        chain,
        a + 1,
        b,
        len(ws),
        moving,
        len(blocks),
        len(out),
    )
    return _checked_end(out, rpc, chain, a + 1, to_block, batch_size)


def changed_blocks(
    rpc: Transport,
    chain: str,
    accounts: Sequence[str],
    since: Block,
    to_block: Block,
    emitted: Mapping[str, Iterable[int]],
    batch_size: int,
) -> tuple[set[int], int]:
    """The blocks to trace for ``accounts`` (EIP-55) after ``since`` up to ``to_block``: where an
    account's balance or nonce changed (bisection, cut at the blocks in ``emitted`` where it
    logged) and where it logged; and how many accounts moved at all."""
    a, b = _number(since), _number(to_block)
    logged = {w: set(blocks) for w, blocks in emitted.items()}
    ends = _read_states(rpc, chain, [(w, blk) for w in accounts for blk in (since, to_block)], batch_size)
    moving = [w for w in accounts if ends[(w, a)] != ends[(w, b)] or logged.get(w)]
    narrowed = narrow_native_all(
        rpc, moving, since, to_block, chain=chain, batch_size=batch_size, known=ends, breakpoints=logged
    )
    blocks: set[int] = {n for found in narrowed.values() for n in found}
    blocks.update(n for found in logged.values() for n in found)
    return blocks, len(moving)
