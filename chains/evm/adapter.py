"""EVM ChainAdapter: pins blocks, checks the node, reads balances on one of two paths.

Invariants: every read is made at the pinned block by its hash (EIP-1898, requireCanonical),
so a reorg makes the read fail instead of silently answering from another fork; a balance
that cannot be read, or reads as anything but one uint256, raises ChainError naming the
holder and token; the multicall and batch paths return identical values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from chains.base import BalanceQuery
from chains.evm import abi
from chains.evm.rpc import Call, FailoverRpc, HttpRpc, Transport
from reconciler.config import ChainSettings
from reconciler.domain import BlockRef, pinned_number
from reconciler.errors import ChainError

log = logging.getLogger(__name__)


def _block_param(block: BlockRef) -> dict[str, Any]:
    return {"blockHash": block.hash, "requireCanonical": True}


def _describe(q: BalanceQuery) -> str:
    return f"{q.holder} in {'the native coin' if q.token is None else q.token}"


class EvmAdapter:
    def __init__(self, settings: ChainSettings, rpc: Transport) -> None:
        self.settings = settings
        self.rpc = rpc
        self._read_path: str | None = None

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> EvmAdapter:
        transports: list[Transport] = [HttpRpc(u, settings.rpc_timeout) for u in settings.rpc_urls]
        rpc: Transport = transports[0] if len(transports) == 1 else FailoverRpc(transports)
        return cls(settings, rpc)

    @property
    def read_path(self) -> str | None:
        return self._read_path

    def close(self) -> None:
        for t in getattr(self.rpc, "transports", [self.rpc]):
            if isinstance(t, HttpRpc):
                t.close()

    # ----------------------------------------------------------------- blocks

    def chain_id(self) -> int:
        return _quantity(self.rpc.request("eth_chainId", []), "eth_chainId")

    def pin(self, confirmations: int) -> BlockRef:
        head = _quantity(self.rpc.request("eth_blockNumber", []), "eth_blockNumber")
        number = pinned_number(head, confirmations)
        return BlockRef(number, self.block_hash(number))

    def block_hash(self, number: int) -> str:
        block = self.rpc.request("eth_getBlockByNumber", [hex(number), False])
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            raise ChainError(f"{self.rpc.endpoint}: block {number} not found")
        return str(block["hash"]).lower()

    def has_code(self, address: str, block: BlockRef) -> bool:
        code = self.rpc.request("eth_getCode", [address, _block_param(block)])
        return isinstance(code, str) and len(code) > 2

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
            else ("eth_call", [{"to": q.token, "data": "0x" + abi.balance_of(q.holder).hex()}, at])
            for q in queries
        ]
        out = []
        for q, raw in zip(queries, self._batched(calls), strict=True):
            try:
                out.append(
                    _quantity(raw, "eth_getBalance")
                    if q.token is None
                    else abi.decode_uint(abi.hex_bytes(raw), f"balanceOf of {_describe(q)}")
                )
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name} block {block.number}: {exc}") from exc
        return out

    def _via_multicall(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        mc = self.settings.multicall3
        at = _block_param(block)
        size = self.settings.chunk_size
        chunks = [queries[i : i + size] for i in range(0, len(queries), size)]
        calls: list[Call] = []
        for chunk in chunks:
            pairs = [
                (mc, abi.get_eth_balance(q.holder)) if q.token is None else (q.token, abi.balance_of(q.holder))
                for q in chunk
            ]
            calls.append(("eth_call", [{"to": mc, "data": "0x" + abi.encode_aggregate3(pairs).hex()}, at]))
        out: list[int] = []
        # One HTTP request per aggregate3: providers that bill per request see the fewest.
        for chunk, call in zip(chunks, calls, strict=True):
            raw = self.rpc.request(call[0], call[1])
            try:
                results = abi.decode_aggregate3(abi.hex_bytes(raw), len(chunk))
                for q, (ok, data) in zip(chunk, results, strict=True):
                    if not ok:
                        raise ChainError(
                            f"chain {self.settings.name} block {block.number}: balance of "
                            f"{_describe(q)} reverted (0x{data.hex()[:200]})"
                        )
                    out.append(abi.decode_uint(data, f"balance of {_describe(q)}"))
            except abi.AbiError as exc:
                raise ChainError(f"chain {self.settings.name} block {block.number}: {exc}") from exc
        return out

    def _batched(self, calls: Sequence[Call]) -> list[Any]:
        size = self.settings.chunk_size
        out: list[Any] = []
        for i in range(0, len(calls), size):
            out.extend(self.rpc.batch(calls[i : i + size]))
        return out


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"{what} answered {value!r:.80}, not a hex quantity")
    return int(value, 16)
