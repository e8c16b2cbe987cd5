"""The one seam between the reconciler and any chain family.

Invariant: every read names the pinned block it is made at; an adapter never answers for
"latest". Failures are raised as reconciler.errors.ChainError (or a subclass), never as a
library's own exception type, and never answered with a guess such as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.domain import BlockRef
from reconciler.transfers import Observation
from reconciler.walletconfig import FreezeQuery, IssuerControls, WalletConfig


@dataclass(frozen=True, slots=True)
class BalanceQuery:
    """The balance of ``holder`` in ``token`` (an ERC-20 address), or in the native coin when
    ``token`` is None."""

    holder: str
    token: str | None


class ChainAdapter(Protocol):
    def chain_id(self) -> int:
        """The chain id the node reports."""
        ...

    def pin(self, confirmations: int) -> BlockRef:
        """The block at head - confirmations, with its hash."""
        ...

    def block_hash(self, number: int) -> str:
        """The hash of the canonical block at ``number`` now (to detect a reorg)."""
        ...

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]:
        """``decimals()`` of each token at ``block``; a token without code is an error."""
        ...

    def balances(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        """Each query's balance at ``block``, in base units, in the order asked."""
        ...

    def wallet_configs(self, wallets: Sequence[tuple[str, str]], block: BlockRef) -> list[WalletConfig]:
        """The on-chain configuration of each (name, address) wallet at ``block``, read from
        code and storage (never events); a view that reverts is reported in the value."""
        ...

    def delegations(self, addresses: Sequence[str], block: BlockRef) -> dict[str, str | None]:
        """The EIP-7702 delegate of each address at ``block`` (None: none)."""
        ...

    def issuer_controls(
        self, freezes: Sequence[FreezeQuery], pauses: Sequence[str], implementations: Sequence[str], block: BlockRef
    ) -> IssuerControls:
        """Freeze flags, paused() and token implementation slots at ``block``; what could not
        be read is "unknown", never "not frozen"."""
        ...

    def block_time(self, block: BlockRef) -> int:
        """The Unix timestamp of ``block``."""
        ...

    def observe(
        self, wallets: Sequence[str], tokens: Sequence[str], since: BlockRef, block: BlockRef
    ) -> list[Observation]:
        """Every movement of ``wallets`` in the blocks after ``since`` up to and including
        ``block``: ERC-20 Transfer and Approval logs of ``tokens``, native value (including by
        internal calls) and gas fees. A range the node cannot serve raises, never answers "none";
        a reorg of ``block`` while observing raises."""
        ...

    def allowances(self, queries: Sequence[tuple[str, str, str]], block: BlockRef) -> list[int]:
        """``allowance(owner, spender)`` of each (token, owner, spender) at ``block``."""
        ...

    def close(self) -> None:
        """Release connections; the adapter is not used afterwards."""
        ...

    @property
    def read_path(self) -> str | None:
        """How the last balances() call read: "multicall" or "batch"."""
        ...
