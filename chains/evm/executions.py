"""Executions of custody wallets on an EVM chain: found, traced, diffed and decoded.

An execution is a transaction in which a custody wallet's code ran or its account changed. The
scan finds them (logs the wallets emitted, transactions in blocks already traced for value,
type-4 authorizations, and — where the node serves ``trace_filter`` — every call into a
wallet); this module takes each one's call tree (``callTracer`` with logs), its state diff
(``prestateTracer`` in ``diffMode``), its EIP-7702 authorization list and its fee, and decodes
them into ``reconciler.engine.executions.Execution`` for the pure analyzer.

Invariants:
- Nothing the node did not answer is judged clean: a method the node does not serve raises
  ``TracingUnavailable`` (the caller records the check as not run), any other failure raises a
  ChainError naming the transaction; a receipt or trace of another block than the one the scan
  saw raises ``ExecutionReorged``.
- Decoding is strict: a frame, diff or authorization not shaped as the tracer documents raises
  ``DecodeError`` with what was wrong; an absent field is never read as zero, except where the
  tracer's own convention says so (prestateTracer omits zero storage values and unchanged
  fields).
- prestateTracer's diff, as geth and Anvil give it: ``pre`` holds the changed accounts before
  (storage: only the changed slots, and only those that were not zero), ``post`` only what
  changed (storage: only slots whose new value is not zero). So a slot in ``pre`` and not in
  ``post`` became zero, and a slot only in ``post`` was zero before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak
from eth_keys.datatypes import Signature

from chains.evm.rpc import Call, RpcError, Transport
from reconciler.domain import eip55
from reconciler.engine.executions import AccountDiff, Authorization, Execution, Frame, Log, StorageChange
from reconciler.errors import ChainError

log = logging.getLogger(__name__)

CALL_TRACER: dict[str, Any] = {"tracer": "callTracer", "tracerConfig": {"withLog": True}}
PRESTATE_DIFF: dict[str, Any] = {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}
_UNSUPPORTED = ("method not found", "does not exist", "not supported", "unsupported", "not available", "unknown method")


class DecodeError(ValueError):
    """A trace, diff or transaction not shaped as documented."""


class TracingUnavailable(ChainError):
    """The node does not serve a method the execution checks need (``method``)."""

    def __init__(self, method: str, message: str) -> None:
        self.method = method
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # made again from its parts (a unit worker's, sent to its run)
        return (type(self), (self.method, str(self)))


class ExecutionReorged(ChainError):
    """A transaction's receipt or trace names another block than the scan saw."""


def _too_large(exc: ChainError) -> bool:
    """A refusal that a smaller block range cures."""
    if not isinstance(exc, RpcError):
        return False
    text = exc.rpc_message.lower()
    return exc.code == -32005 or any(t in text for t in ("too large", "too many", "limit", "exceed", "range"))


def unsupported(exc: ChainError) -> bool:
    """Whether a node's error says it does not serve the method (not that it failed)."""
    if not isinstance(exc, RpcError):
        return False
    text = exc.rpc_message.lower()
    return exc.code == -32601 or any(t in text for t in _UNSUPPORTED)


# ----------------------------------------------------------------------------------- decoding


def _hex_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise DecodeError(f"{what}: expected 0x-hex bytes, got {value!r:.80}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise DecodeError(f"{what}: expected 0x-hex bytes, got {value!r:.80}") from exc


def _quantity(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value  # prestateTracer gives nonces as JSON numbers
    if isinstance(value, str) and value.startswith("0x") and len(value) > 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise DecodeError(f"{what}: expected a 0x-hex quantity, got {value!r:.80}")


def _address(value: object, what: str) -> str:
    raw = _hex_bytes(value, what)
    if len(raw) != 20:
        raise DecodeError(f"{what}: expected a 20-byte address, got {value!r:.80}")
    return eip55("0x" + raw.hex())


def _word(value: object, what: str) -> int:
    raw = _hex_bytes(value, what)
    if len(raw) > 32:
        raise DecodeError(f"{what}: expected at most 32 bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def _hash(value: object, what: str) -> str:
    raw = _hex_bytes(value, what)
    if len(raw) != 32:
        raise DecodeError(f"{what}: expected a 32-byte hash, got {value!r:.80}")
    return "0x" + raw.hex()


def decode_frame(raw: object, path: str = "") -> Frame:
    """A callTracer frame (with ``withLog``) and its children."""
    where = f"frame {path or 'top'}"
    if not isinstance(raw, Mapping):
        raise DecodeError(f"{where}: expected an object, got {raw!r:.80}")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise DecodeError(f"{where}: no type")
    kind = kind.upper()
    children = raw.get("calls") or []
    logs = raw.get("logs") or []
    if not isinstance(children, list) or not isinstance(logs, list):
        raise DecodeError(f"{where}: calls and logs must be lists")
    to = raw.get("to")
    error = raw.get("error")
    return Frame(
        kind=kind,
        from_address=_address(raw.get("from"), f"{where} from"),
        # A CREATE that failed has no address: the frame reverted, so it moved nothing.
        to=_address(to, f"{where} to") if to is not None else "0x0000000000000000000000000000000000000000",
        value=_quantity(raw["value"], f"{where} value") if raw.get("value") is not None else 0,
        input=_hex_bytes(raw.get("input") or "0x", f"{where} input"),
        error=str(error) if error else None,
        path=path,
        calls=tuple(decode_frame(c, f"{path}.{i}" if path else str(i)) for i, c in enumerate(children)),
        logs=tuple(_decode_log(entry, where) for entry in logs),
    )


def _decode_log(raw: object, where: str) -> Log:
    if not isinstance(raw, Mapping):
        raise DecodeError(f"{where}: log {raw!r:.80}")
    topics = raw.get("topics") or []
    if not isinstance(topics, list):
        raise DecodeError(f"{where}: log topics {topics!r:.80}")
    return Log(
        address=_address(raw.get("address"), f"{where} log address"),
        topics=tuple(_hash(t, f"{where} log topic") for t in topics),
        data=_hex_bytes(raw.get("data") or "0x", f"{where} log data"),
    )


def decode_diff(raw: object) -> dict[str, AccountDiff]:
    """prestateTracer's ``{"pre", "post"}`` as one AccountDiff per changed account."""
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), Mapping) for k in ("pre", "post")):
        raise DecodeError(f"prestateTracer diff: expected {{pre, post}}, got {raw!r:.120}")
    pre: Mapping[str, Any] = raw["pre"]
    post: Mapping[str, Any] = raw["post"]
    out: dict[str, AccountDiff] = {}
    for key in sorted(set(pre) | set(post)):
        address = _address(key, "diff account")
        before = pre.get(key) or {}
        after = post.get(key) or {}
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            raise DecodeError(f"diff of {address}: expected objects")
        balance = nonce = None
        if "balance" in after:
            balance = (
                _quantity(before.get("balance", "0x0"), f"{address} balance before"),
                _quantity(after["balance"], f"{address} balance after"),
            )
        if "nonce" in after:
            nonce = (_quantity(before.get("nonce", 0), f"{address} nonce before"), _quantity(after["nonce"], "nonce"))
        code = None
        if "code" in after:
            code = (
                _hex_bytes(before.get("code") or "0x", f"{address} code before"),
                _hex_bytes(after["code"] or "0x", f"{address} code after"),
            )
        storage_before = before.get("storage") or {}
        storage_after = after.get("storage") or {}
        if not isinstance(storage_before, Mapping) or not isinstance(storage_after, Mapping):
            raise DecodeError(f"diff of {address}: storage must be objects")
        changes = []
        for slot_text in sorted(set(storage_before) | set(storage_after)):
            slot = _word(slot_text, f"{address} storage slot")
            old = _word(storage_before[slot_text], f"{address} slot {slot_text}") if slot_text in storage_before else 0
            new = _word(storage_after[slot_text], f"{address} slot {slot_text}") if slot_text in storage_after else 0
            if old != new:
                changes.append(StorageChange(slot, old, new))
        if balance is None and nonce is None and code is None and not changes:
            continue
        out[address] = AccountDiff(address, balance, nonce, code, tuple(sorted(changes, key=lambda c: c.slot)))
    return out


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _rlp_item(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    if len(value) > 55:
        raise ValueError("long RLP strings are not needed here")
    return bytes([0x80 + len(value)]) + value


def _rlp_uint(value: int) -> bytes:
    return _rlp_item(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def authorization_digest(chain_id: int, delegate: bytes, nonce: int) -> bytes:
    """EIP-7702: ``keccak(0x05 || rlp([chain_id, address, nonce]))``."""
    body = _rlp_uint(chain_id) + _rlp_item(delegate) + _rlp_uint(nonce)
    prefix = bytes([0xC0 + len(body)]) if len(body) <= 55 else bytes([0xF8, len(body)])
    return bytes(keccak(b"\x05" + prefix + body))


def authority_of(chain_id: int, delegate: bytes, nonce: int, y_parity: int, r: int, s: int) -> str | None:
    """The signer of an EIP-7702 authorization, recovered with (y_parity, r, s). None when it
    does not recover or has a high s (an invalid authorization, which the chain skips)."""
    if y_parity not in (0, 1) or not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return None
    if chain_id >= 2**256 or nonce >= 2**64:
        return None
    digest = authorization_digest(chain_id, delegate, nonce)
    try:
        public = Signature(vrs=(y_parity, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception:  # noqa: BLE001 - an unrecoverable signature is an authorization that did not apply
        return None
    return eip55(public.to_checksum_address())


def decode_authorizations(tx: Mapping[str, Any]) -> tuple[Authorization, ...]:
    """The authorization list of a type-4 transaction (empty for any other type)."""
    items = tx.get("authorizationList")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise DecodeError(f"authorizationList: {items!r:.80}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DecodeError(f"authorization {i}: {item!r:.80}")
        what = f"authorization {i}"
        chain_id = _quantity(item.get("chainId"), f"{what} chainId")
        delegate = _address(item.get("address"), f"{what} address")
        nonce = _quantity(item.get("nonce"), f"{what} nonce")
        parity = item.get("yParity", item.get("v"))
        y = _quantity(parity, f"{what} yParity")
        r, s = _quantity(item.get("r"), f"{what} r"), _quantity(item.get("s"), f"{what} s")
        authority = authority_of(chain_id, bytes.fromhex(delegate[2:]), nonce, y, r, s)
        out.append(Authorization(authority, delegate, chain_id, nonce))
    return tuple(out)


# ----------------------------------------------------------------------------------- fetching


@dataclass(frozen=True, slots=True)
class TxRef:
    """A transaction the scan saw: its block (number, hash, producer) and hash."""

    block_number: int
    block_hash: str
    tx_hash: str
    fee_recipient: str | None = None


def _batched(rpc: Transport, calls: Sequence[Call], batch_size: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(calls), max(1, batch_size)):
        out.extend(rpc.batch(calls[i : i + batch_size]))
    return out


def fetch_executions(
    rpc: Transport,
    chain: str,
    refs: Iterable[TxRef],
    *,
    batch_size: int = 50,
    frames: Mapping[str, Frame] | None = None,
) -> list[Execution]:
    """Each transaction's call tree, state diff, authorizations and fee, as Executions in the
    order given. ``frames`` holds call trees already taken (a block trace with logs), by tx
    hash; the others are traced here."""
    todo = list(dict.fromkeys(refs))
    if not todo:
        return []
    known = frames or {}
    calls: list[Call] = []
    for ref in todo:
        calls.append(("debug_traceTransaction", [ref.tx_hash, PRESTATE_DIFF]))
        calls.append(("eth_getTransactionByHash", [ref.tx_hash]))
        calls.append(("eth_getTransactionReceipt", [ref.tx_hash]))
        if ref.tx_hash not in known:
            calls.append(("debug_traceTransaction", [ref.tx_hash, CALL_TRACER]))
    try:
        answers = iter(_batched(rpc, calls, batch_size))
    except ChainError as exc:
        if unsupported(exc):
            raise TracingUnavailable(
                "debug_traceTransaction",
                f"chain {chain}: the node does not serve debug_traceTransaction ({exc}): executions of custody "
                "wallets could not be traced and diffed; use a node that serves the debug namespace",
            ) from exc
        raise ChainError(f"chain {chain}: tracing {len(todo)} execution(s) failed: {exc}") from exc
    out = []
    for ref in todo:
        diff_raw, tx, receipt = next(answers), next(answers), next(answers)
        frame_raw = None if ref.tx_hash in known else next(answers)
        where = f"chain {chain} tx {ref.tx_hash} (block {ref.block_number})"
        try:
            if not isinstance(tx, Mapping) or not isinstance(receipt, Mapping):
                raise DecodeError(f"no transaction or receipt ({tx!r:.60}, {receipt!r:.60})")
            for what, named in (("transaction", tx.get("blockHash")), ("receipt", receipt.get("blockHash"))):
                if named is None or _hash(named, f"{what} blockHash") != ref.block_hash.lower():
                    raise ExecutionReorged(
                        f"{where}: its {what} names block {named}, not {ref.block_hash}: the chain reorganized "
                        "during the scan; scan again"
                    )
            root = known[ref.tx_hash] if frame_raw is None else decode_frame(frame_raw)
            fee = _quantity(receipt.get("gasUsed"), "gasUsed") * _quantity(
                receipt.get("effectiveGasPrice"), "effectiveGasPrice"
            )
            if receipt.get("blobGasUsed") is not None and receipt.get("blobGasPrice") is not None:
                fee += _quantity(receipt["blobGasUsed"], "blobGasUsed") * _quantity(receipt["blobGasPrice"], "x")
            if receipt.get("l1Fee") is not None:
                fee += _quantity(receipt["l1Fee"], "l1Fee")
            out.append(
                Execution(
                    chain=chain,
                    block_number=ref.block_number,
                    block_hash=ref.block_hash.lower(),
                    tx_hash=ref.tx_hash.lower(),
                    sender=_address(tx.get("from"), "from"),
                    root=root,
                    diffs=decode_diff(diff_raw),
                    authorizations=decode_authorizations(tx),
                    fee=fee,
                    fee_recipient=ref.fee_recipient,
                )
            )
        except DecodeError as exc:
            raise ChainError(f"{where}: the node's trace could not be read: {exc}") from exc
    return out


TRACE_FILTER_ADDRESSES = 1000  # toAddress entries per trace_filter request


def calls_into(
    rpc: Transport,
    chain: str,
    wallets: Sequence[str],
    lo: int,
    hi: int,
    *,
    chunk_blocks: int = 2000,
    max_addresses: int = TRACE_FILTER_ADDRESSES,
) -> set[TxRef]:
    """Every transaction in blocks lo..hi with a call into one of ``wallets`` (``trace_filter``
    with ``toAddress``, at most ``max_addresses`` of them per request: a fleet's every address
    in one request is refused as too large): it finds a call into a wallet whose code emits
    nothing and moves nothing. Raises TracingUnavailable where the node does not serve
    trace_filter."""
    found: set[TxRef] = set()
    if hi < lo or not wallets:
        return found
    everyone = sorted({w.lower() for w in wallets})
    for at in range(0, len(everyone), max_addresses):
        found |= _calls_into(rpc, chain, everyone[at : at + max_addresses], lo, hi, chunk_blocks)
    return found


def _calls_into(rpc: Transport, chain: str, targets: list[str], lo: int, hi: int, chunk_blocks: int) -> set[TxRef]:
    found: set[TxRef] = set()
    wanted = set(targets)
    start = lo
    size = chunk_blocks
    while start <= hi:
        end = min(hi, start + size - 1)
        try:
            answer = rpc.request(
                "trace_filter", [{"fromBlock": hex(start), "toBlock": hex(end), "toAddress": targets}]
            )
        except ChainError as exc:
            if unsupported(exc):
                raise TracingUnavailable(
                    "trace_filter",
                    f"chain {chain}: the node does not serve trace_filter ({exc})",
                ) from exc
            if _too_large(exc) and end > start:
                size = max(1, (end - start + 1) // 2)  # Anvil caps a range at 300 blocks
                continue
            raise ChainError(f"chain {chain} blocks {start}..{end}: trace_filter failed: {exc}") from exc
        if not isinstance(answer, list):
            raise ChainError(f"chain {chain} blocks {start}..{end}: trace_filter answered {answer!r:.80}")
        for item in answer:
            try:
                if not isinstance(item, Mapping) or item.get("transactionHash") is None:
                    continue  # block rewards carry no transaction
                number = item.get("blockNumber")
                block = number if isinstance(number, int) else _quantity(number, "blockNumber")
                if not start <= block <= end:
                    raise DecodeError(f"a trace of block {block}, outside the range asked")
                action = item.get("action") or {}
                result = item.get("result") or {}
                # The address a trace goes to: a call's `to`, a create's new contract, a
                # selfdestruct's beneficiary.
                named = {
                    str(v).lower()
                    for v in (
                        action.get("to") if isinstance(action, Mapping) else None,
                        action.get("refundAddress") if isinstance(action, Mapping) else None,
                        result.get("address") if isinstance(result, Mapping) else None,
                    )
                    if v is not None
                }
                if not named & wanted:
                    raise DecodeError(f"a trace to {sorted(named) or 'nothing'}, which the filter excludes")
                found.add(
                    TxRef(block, _hash(item.get("blockHash"), "blockHash"), _hash(item["transactionHash"], "tx"))
                )
            except DecodeError as exc:
                raise ChainError(f"chain {chain} blocks {start}..{end}: trace_filter: {exc}") from exc
        start = end + 1
    log.info("event=calls_into_wallets chain=%s from=%d to=%d transactions=%d", chain, lo, hi, len(found))
    return found


def trace_call(
    rpc: Transport,
    chain: str,
    call: Mapping[str, Any],
    block_number: int,
    block_hash: str,
    overrides: Mapping[str, Mapping[str, Any]],
) -> Execution:
    """A call simulated at a block (``debug_traceCall``) with state overrides, as an Execution
    with no tx hash: its call tree with logs and its state diff, both against the overridden
    state (the overrides themselves are the starting point, not part of the diff). Raises
    TracingUnavailable where the node does not serve debug_traceCall or its overrides."""
    at = {"blockHash": block_hash}
    calls: list[Call] = [
        ("debug_traceCall", [dict(call), at, {**CALL_TRACER, "stateOverrides": dict(overrides)}]),
        ("debug_traceCall", [dict(call), at, {**PRESTATE_DIFF, "stateOverrides": dict(overrides)}]),
    ]
    try:
        frame_raw, diff_raw = rpc.batch(calls)
    except ChainError as exc:
        if unsupported(exc):
            raise TracingUnavailable(
                "debug_traceCall",
                f"chain {chain}: the node does not serve debug_traceCall with state overrides ({exc}): "
                "nothing was simulated",
            ) from exc
        raise ChainError(f"chain {chain} block {block_number}: debug_traceCall failed: {exc}") from exc
    try:
        return Execution(
            chain=chain,
            block_number=block_number,
            block_hash=block_hash.lower(),
            tx_hash=None,
            sender=_address(call.get("from"), "from"),
            root=decode_frame(frame_raw),
            diffs=decode_diff(diff_raw),
        )
    except DecodeError as exc:
        raise ChainError(f"chain {chain} block {block_number}: the node's simulation could not be read: {exc}") from exc
