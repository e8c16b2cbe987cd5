"""What a segregation statement reads of one EVM chain: the pin (now, or the last block at or
before an instant), balances and the ERC-3643 issuers' freezes through the chain's adapter,
block timestamps and price feeds.

Invariant: every read names its block (balances and feeds by hash, requireCanonical); failures
are ChainError, as everywhere in chains/.
"""

from __future__ import annotations

from collections.abc import Sequence

from chains.base import BalanceQuery
from chains.evm.adapter import EvmAdapter
from chains.evm.blocks import BlockHeader, head_number, header_at, header_of, last_at_or_before
from chains.evm.prices import read_feed
from chains.evm.rpc import Transport
from reconciler.domain import BlockRef
from reconciler.engine.segregation.values import ChainPin, FeedReading
from reconciler.inputs.settings import ChainSettings
from reconciler.walletconfig import FreezeQuery, IssuerControls


class EvmValuationReader:
    """What a segregation statement reads of one EVM chain: the pin (now, or the last block at
    or before an instant), balances through the chain's adapter, and price feeds."""

    def __init__(self, adapter: EvmAdapter) -> None:
        self.adapter = adapter
        self.rpc: Transport = adapter.rpc
        self.name = adapter.settings.name

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> EvmValuationReader:
        return cls(EvmAdapter.from_settings(settings))

    @property
    def read_path(self) -> str | None:
        return self.adapter.read_path

    def chain_id(self) -> int:
        return self.adapter.chain_id()

    def head(self) -> int:
        return head_number(self.rpc)

    def _pin(self, header: BlockHeader) -> ChainPin:
        return ChainPin(self.name, header.ref, header.timestamp)

    def header(self, block: BlockRef) -> ChainPin:
        return self._pin(header_of(self.rpc, block))

    def header_at(self, number: int) -> ChainPin:
        return self._pin(header_at(self.rpc, number))

    def last_at_or_before(self, instant: int, head: int) -> ChainPin | None:
        found = last_at_or_before(self.rpc, instant, head)
        return None if found is None else self._pin(found)

    def pin(self, confirmations: int) -> BlockRef:
        return self.adapter.pin(confirmations)

    def block_hash(self, number: int) -> str:
        return self.adapter.block_hash(number)

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]:
        return self.adapter.token_decimals(tokens, block)

    def balances(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        return self.adapter.balances(queries, block)

    def feeds(self, feeds: Sequence[str], block: BlockRef, block_time: int) -> list[FeedReading]:
        return [read_feed(self.rpc, self.name, f, block, block_time) for f in feeds]

    def issuer_controls(
        self,
        freezes: Sequence[FreezeQuery],
        pauses: Sequence[str],
        implementations: Sequence[str],
        block: BlockRef,
        frozen: Sequence[tuple[str, str]] = (),
    ) -> IssuerControls:
        return self.adapter.issuer_controls(freezes, pauses, implementations, block, frozen)

    def close(self) -> None:
        self.adapter.close()
