"""EVM ChainAdapter: pins blocks, checks the node, reads balances on one of two paths.

Invariants: every read is made at the pinned block by its hash (EIP-1898, requireCanonical),
so a reorg makes the read fail instead of silently answering from another fork; the pinned
block is the one asked for (its number checked, its hash 32 bytes of hex), so a node or a
proxy that answers for another block leaves the chain unread instead of read at the wrong
block; a quantity is strict 0x-hex or a ChainError naming the method; a balance
that cannot be read, or reads as anything but one uint256, raises ChainError naming the
holder and token; the multicall and batch paths return identical values. Requests go through
the transport stack of chains.evm.rpc (per-endpoint retries, then failover with cool-downs),
which also keeps the evidence of which endpoints answered and what client they run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chains.base import BalanceQuery, ObservedRange, Source
from chains.evm import abi, executions, initiators, logs, observe
from chains.evm.rpc import Call, FailoverRpc, HttpRpc, RetryingRpc, RpcError, SourceLog, Transport
from chains.evm.walletconfig import read_delegations, read_issuer_controls, read_wallet_configs
from reconciler.domain import BlockRef, pinned_number
from reconciler.engine.executions import Execution
from reconciler.engine.initiators import TxEvidence
from reconciler.errors import ChainError
from reconciler.inputs.settings import ChainSettings
from reconciler.walletconfig import FreezeQuery, IssuerControls, WalletConfig

log = logging.getLogger(__name__)

_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


def _block_param(block: BlockRef) -> dict[str, Any]:
    return {"blockHash": block.hash, "requireCanonical": True}


def _describe(q: BalanceQuery) -> str:
    return f"{q.holder} in {'the native coin' if q.token is None else q.token}"


def endpoint_transport(url: str, settings: ChainSettings) -> SourceLog:
    """One endpoint as a run uses it: retried per request (``rpc_retries``), its answers logged
    as the run's evidence."""
    return SourceLog(RetryingRpc(HttpRpc(url, settings.rpc_timeout), settings.rpc_retries))


class EvmAdapter:
    def __init__(self, settings: ChainSettings, rpc: Transport, sources: Sequence[SourceLog] = ()) -> None:
        self.settings = settings
        self.rpc = rpc
        self._sources = list(sources)
        self._read_path: str | None = None
        self._pinned_head: int | None = None

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> EvmAdapter:
        """Every configured endpoint, each retried on its own, then failed over in order."""
        endpoints = [endpoint_transport(u, settings) for u in settings.rpc_urls]
        return cls(settings, FailoverRpc(endpoints), endpoints)

    @classmethod
    def for_endpoint(cls, settings: ChainSettings, url: str) -> EvmAdapter:
        """One endpoint only (retried, never failed over): for reads compared across endpoints."""
        endpoint = endpoint_transport(url, settings)
        return cls(settings, endpoint, [endpoint])

    @property
    def read_path(self) -> str | None:
        return self._read_path

    def sources(self) -> list[Source]:
        return [s.source() for s in self._sources if s.answered]

    def close(self) -> None:
        close = getattr(self.rpc, "close", None)
        if callable(close):
            close()

    # ----------------------------------------------------------------- blocks

    def chain_id(self) -> int:
        return _quantity(self.rpc.request("eth_chainId", []), "eth_chainId", self.rpc.endpoint)

    def head(self) -> int:
        """The node's newest block number."""
        return _quantity(self.rpc.request("eth_blockNumber", []), "eth_blockNumber", self.rpc.endpoint)

    def pin(self, confirmations: int) -> BlockRef:
        head = self.head()
        number = pinned_number(head, confirmations)
        pinned = BlockRef(number, self.block_hash(number))
        self._pinned_head = head
        return pinned

    @property
    def pinned_head(self) -> int | None:
        return self._pinned_head

    def block_hash(self, number: int) -> str:
        asked = hex(number)
        call = f"eth_getBlockByNumber({asked})"
        block = self.rpc.request("eth_getBlockByNumber", [asked, False])
        if block is None:
            raise ChainError(f"{self.rpc.endpoint}: block {number} not found")
        if not isinstance(block, dict):
            raise ChainError(f"{self.rpc.endpoint}: {call} answered {block!r:.80}, not a block")
        answered = _quantity(block.get("number"), f"{call} (the block's number)", self.rpc.endpoint)
        if answered != number:
            raise ChainError(
                f"{self.rpc.endpoint}: {call} answered block {hex(answered)}: the node, or a proxy in "
                "front of it, serves another block than the one asked for; reading it would report "
                "another block's balances as this one's. Check the endpoint"
            )
        block_hash = block.get("hash")
        if not isinstance(block_hash, str) or not _HASH.fullmatch(block_hash):
            raise ChainError(
                f"{self.rpc.endpoint}: {call} answered a block with hash {block_hash!r:.80}, not 32 bytes "
                "of 0x-hex: check the endpoint"
            )
        return block_hash.lower()

    def has_code(self, address: str, block: BlockRef) -> bool:
        code = self.rpc.request("eth_getCode", [address, _block_param(block)])
        return isinstance(code, str) and len(code) > 2

    def call(self, to: str, data: bytes, block: BlockRef) -> bytes | None:
        try:
            raw = self.rpc.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, _block_param(block)])
        except RpcError as exc:
            if exc.code == 3 or "revert" in exc.rpc_message.lower():
                return None
            raise
        try:
            return abi.hex_bytes(raw)
        except abi.AbiError as exc:
            raise ChainError(f"chain {self.settings.name}: eth_call to {to} answered {raw!r:.80}: {exc}") from exc

    def code_sizes(self, addresses: Sequence[str], block: BlockRef) -> list[int]:
        calls: list[Call] = [("eth_getCode", [a, _block_param(block)]) for a in addresses]
        out = []
        for address, raw in zip(addresses, self._batched(calls), strict=True):
            try:
                out.append(len(abi.hex_bytes(raw)))
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name}: eth_getCode of {address}: {exc}") from exc
        return out

    def simulate(
        self, call: Mapping[str, Any], block: BlockRef, overrides: Mapping[str, Mapping[str, Any]]
    ) -> Execution:
        return executions.trace_call(self.rpc, self.settings.name, call, block.number, block.hash, overrides)

    # ----------------------------------------------------------------- reads

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]:
        calls: list[Call] = [
            ("eth_call", [{"to": t, "data": "0x" + abi.DECIMALS.hex()}, _block_param(block)]) for t in tokens
        ]
        out = []
        for token, raw in zip(tokens, self._batched(calls), strict=True):
            try:
                data = abi.hex_bytes(raw)
                if not data:
                    raise ChainError(
                        f"no ERC-20 contract at {token} on chain {self.settings.name} "
                        f"at block {block.number}: decimals() returned nothing"
                    )
                value = abi.decode_uint(data, f"decimals() of {token}")
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name} block {block.number}: {exc}") from exc
            out.append(value)
        return out

    def wallet_configs(
        self,
        wallets: Sequence[tuple[str, str]],
        block: BlockRef,
        probes: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WalletConfig]:
        if not wallets:
            return []
        return read_wallet_configs(
            self.rpc, self.settings.name, wallets, block, chunk_size=self.settings.chunk_size, probes=probes
        )

    def delegations(self, addresses: Sequence[str], block: BlockRef) -> dict[str, str | None]:
        if not addresses:
            return {}
        return read_delegations(self.rpc, self.settings.name, addresses, block, chunk_size=self.settings.chunk_size)

    def issuer_controls(
        self,
        freezes: Sequence[FreezeQuery],
        pauses: Sequence[str],
        implementations: Sequence[str],
        block: BlockRef,
        frozen: Sequence[tuple[str, str]] = (),
    ) -> IssuerControls:
        return read_issuer_controls(
            self.rpc,
            self.settings.name,
            block,
            freezes=freezes,
            pauses=pauses,
            implementations=implementations,
            frozen=frozen,
            chunk_size=self.settings.chunk_size,
        )

    def block_time(self, block: BlockRef) -> int:
        header = self.rpc.request("eth_getBlockByHash", [block.hash, False])
        if not isinstance(header, dict) or str(header.get("hash", "")).lower() != block.hash:
            raise ChainError(f"{self.rpc.endpoint}: block {block.number} ({block.hash}) is no longer available")
        return _quantity(header.get("timestamp"), f"eth_getBlockByHash({block.hash}) timestamp", self.rpc.endpoint)

    def observe(
        self,
        wallets: Sequence[str],
        tokens: Sequence[str],
        since: BlockRef,
        block: BlockRef,
        approvers: Sequence[str] = (),
    ) -> ObservedRange:
        if block.number <= since.number or not wallets:
            return ObservedRange([])
        chunk = self.settings.log_chunk_blocks
        name = self.settings.name
        found = logs.scan_token_logs(self.rpc, name, wallets, tokens, since.number + 1, block, chunk_blocks=chunk)
        scanned = observe.scan_range(self.rpc, name, wallets, since, block, chunk_blocks=chunk, approvers=approvers)
        return ObservedRange(found + scanned.observations, scanned.executions, scanned.unchecked)

    def transfer_evidence(self, transactions: Sequence[tuple[str, str]]) -> dict[str, TxEvidence]:
        return initiators.fetch_evidence(self.rpc, self.settings.name, transactions)

    def allowances(self, queries: Sequence[tuple[str, str, str]], block: BlockRef) -> list[int]:
        at = _block_param(block)
        calls: list[Call] = [
            ("eth_call", [{"to": token, "data": "0x" + abi.allowance(owner, spender).hex()}, at])
            for token, owner, spender in queries
        ]
        out = []
        for (token, owner, spender), raw in zip(queries, self._batched(calls), strict=True):
            try:
                out.append(abi.decode_uint(abi.hex_bytes(raw), f"allowance({owner}, {spender}) of {token}"))
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name} block {block.number}: {exc}") from exc
        return out

    def balances(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        path = self.settings.read_path or "multicall"
        if path == "multicall" and not self.has_code(self.settings.multicall3, block):
            log.warning(
                "event=multicall3_absent chain=%s address=%s block=%d fallback=batch",
                self.settings.name,
                self.settings.multicall3,
                block.number,
            )
            path = "batch"
        values = self._via_multicall(queries, block) if path == "multicall" else self._via_batch(queries, block)
        self._read_path = path
        return values

    def _via_batch(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        at = _block_param(block)
        calls: list[Call] = [
            ("eth_getBalance", [q.holder, at])
            if q.token is None
            else ("eth_call", [{"to": q.token, "data": abi.balance_of_hex(q.holder)}, at])
            for q in queries
        ]
        out = []
        # Per value only the checks: the message naming holder and token is built on failure.
        for q, raw in zip(queries, self._batched(calls), strict=True):
            if q.token is None:
                out.append(
                    int(raw, 16)
                    if isinstance(raw, str) and _QUANTITY.fullmatch(raw)
                    else _quantity(raw, f"eth_getBalance of {q.holder}", self.rpc.endpoint)
                )
                continue
            value = abi.uint_result(raw)
            if value is None:
                raise self._bad_balance(raw, q, block)
            out.append(value)
        return out

    def _bad_balance(self, raw: Any, q: BalanceQuery, block: BlockRef) -> ChainError:
        """Why a balanceOf answer is not one 32-byte word of 0x-hex, naming holder and token."""
        what = f"balanceOf of {_describe(q)}"
        try:
            abi.decode_uint(abi.hex_bytes(raw), what)
            reason = f"{what} answered {raw!r:.80}"  # not reached: uint_result refuses only what these refuse
        except abi.AbiError as exc:
            reason = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
        return ChainError(f"chain {self.settings.name} block {block.number}: {reason}")

    def _via_multicall(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        mc = self.settings.multicall3
        at = _block_param(block)
        size = self.settings.chunk_size
        chunks = [queries[i : i + size] for i in range(0, len(queries), size)]
        calls: list[Call] = []
        for chunk in chunks:
            triples = [
                (mc, abi.GET_ETH_BALANCE, q.holder) if q.token is None else (q.token, abi.BALANCE_OF, q.holder)
                for q in chunk
            ]
            calls.append(("eth_call", [{"to": mc, "data": abi.encode_aggregate3_hex(triples)}, at]))
        out: list[int] = []
        # One HTTP request per aggregate3: providers that bill per request see the fewest.
        for chunk, call in zip(chunks, calls, strict=True):
            raw = self.rpc.request(call[0], call[1])
            try:
                data = abi.hex_bytes(raw)
                words = abi.aggregate3_words(data, len(chunk))
                if words is not None:  # every call answered one word: read in place
                    out.extend(words)
                    continue
                results = abi.decode_aggregate3(data, len(chunk))
                for q, (ok, data) in zip(chunk, results, strict=True):
                    if not ok:
                        raise ChainError(
                            f"chain {self.settings.name} block {block.number}: balance of "
                            f"{_describe(q)} reverted (0x{data.hex()[:200]})"
                        )
                    if len(data) != 32:  # the message is built only on failure
                        abi.decode_uint(data, f"balance of {_describe(q)}")
                    out.append(int.from_bytes(data, "big"))
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name} block {block.number}: {exc}") from exc
        return out

    def _batched(self, calls: Sequence[Call]) -> list[Any]:
        size = self.settings.chunk_size
        out: list[Any] = []
        for i in range(0, len(calls), size):
            out.extend(self.rpc.batch(calls[i : i + size]))
        return out


def _quantity(value: Any, what: str, endpoint: str) -> int:
    """A JSON-RPC quantity: "0x" and hex digits, nothing else (int() alone would also take
    "0x1_0", " 0x10" or "-0x1", and raise a bare ValueError on "0xZZ")."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ChainError(
            f"{endpoint}: {what} answered {value!r:.80}, not a hex quantity (0x and hex digits): "
            "is this endpoint an EVM JSON-RPC node?"
        )
    return int(value, 16)
