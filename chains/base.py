"""The one seam between the reconciler and any chain family.

Invariant: every read names the pinned block it is made at; an adapter never answers for
"latest". Failures are raised as reconciler.errors.ChainError (or a subclass), never as a
library's own exception type, and never answered with a guess such as zero. Where an adapter
asks two endpoints the same question (cross-checked reads), differing answers raise
SourceDisagreement carrying both endpoints (redacted) and both values; neither is taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from reconciler.domain import BlockRef
from reconciler.engine.executions import Execution
from reconciler.engine.initiators import TxEvidence
from reconciler.errors import ChainError
from reconciler.transfers import Observation
from reconciler.walletconfig import FreezeQuery, IssuerControls, WalletConfig


@dataclass(frozen=True, slots=True)
class BalanceQuery:
    """The balance of ``holder`` in ``token`` (an ERC-20 address), or in the native coin when
    ``token`` is None."""

    holder: str
    token: str | None


@dataclass(frozen=True, slots=True)
class ObservedRange:
    """What observing a range of blocks gave: the wallets' movements, every execution of a
    wallet (decoded for the analyzer), and the checks the node could not serve (each a
    sentence saying what was not looked for)."""

    observations: list[Observation]
    executions: list[Execution] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


class Source(NamedTuple):
    """An endpoint a chain was read from (redacted: scheme://host[:port]) and the client it said
    it runs (``web3_clientVersion``; None when it would not say)."""

    endpoint: str
    client_version: str | None


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One value two endpoints answered differently: ``what`` was read (a block hash, a
    balance, the logs of some blocks); ``holder``/``token`` name the balance (``token`` None:
    the native coin), both None for anything that is not one wallet's balance."""

    what: str
    first: str
    second: str
    holder: str | None = None
    token: str | None = None


class SourceDisagreement(ChainError):
    """Two endpoints of one chain answered the same question, at the same block, differently:
    at least one of them is wrong, and nothing read from either is trusted for this run."""

    def __init__(self, chain: str, endpoints: tuple[str, str], block: int | None, items: Sequence[Disagreement]):
        if not items:
            raise ValueError("a disagreement needs at least one differing value")
        self.chain = chain
        self.endpoints = endpoints
        self.block = block
        self.items = tuple(items)
        first, second = endpoints
        at = f" at block {block}" if block is not None else ""
        shown = "; ".join(f"{d.what}: {first} says {d.first}, {second} says {d.second}" for d in self.items[:3])
        more = f"; and {len(self.items) - 3} more" if len(self.items) > 3 else ""
        super().__init__(
            f"chain {chain}: endpoints {first} and {second} disagree{at} ({shown}{more}); at least one of them "
            "is wrong, so the chain is left unread: find out which before trusting either"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # made again from its parts (a unit worker's, sent to its run)
        return (type(self), (self.chain, self.endpoints, self.block, self.items))


class ChainAdapter(Protocol):
    def chain_id(self) -> int:
        """The chain id the node reports."""
        ...

    def pin(self, confirmations: int) -> BlockRef:
        """The block at head - confirmations, with its hash."""
        ...

    @property
    def pinned_head(self) -> int | None:
        """The head block number the last pin() counted confirmations from (None before one)."""
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

    def wallet_configs(
        self,
        wallets: Sequence[tuple[str, str]],
        block: BlockRef,
        probes: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WalletConfig]:
        """The on-chain configuration of each (name, address) wallet at ``block``, read from
        code and storage (never events); a view that reverts is reported in the value.
        ``probes`` names, per wallet address, addresses whose owners/modules mapping entries
        are read too: one set outside the lists is a hidden owner or module."""
        ...

    def delegations(self, addresses: Sequence[str], block: BlockRef) -> dict[str, str | None]:
        """The EIP-7702 delegate of each address at ``block`` (None: none)."""
        ...

    def issuer_controls(
        self,
        freezes: Sequence[FreezeQuery],
        pauses: Sequence[str],
        implementations: Sequence[str],
        block: BlockRef,
        frozen: Sequence[tuple[str, str]] = (),
    ) -> IssuerControls:
        """Freeze flags, paused(), token implementation slots and, for each (token, holder) of
        ``frozen``, ERC-3643's getFrozenTokens(holder) at ``block``; what could not be read is
        "unknown", never "not frozen"."""
        ...

    def block_time(self, block: BlockRef) -> int:
        """The Unix timestamp of ``block``."""
        ...

    def observe(
        self,
        wallets: Sequence[str],
        tokens: Sequence[str],
        since: BlockRef,
        block: BlockRef,
        approvers: Sequence[str] = (),
    ) -> ObservedRange:
        """Every movement of ``wallets`` in the blocks after ``since`` up to and including
        ``block`` — ERC-20 Transfer and Approval logs of ``tokens``, native value (including by
        internal calls) and gas fees — and every execution of a wallet in them (a transaction in
        which its code ran or its account changed, or an EIP-7702 authorization of it or of one
        of ``approvers``). A range the node cannot serve raises, never answers "none"; a check
        the node cannot serve is named in ``unchecked``; a reorg of ``block`` while observing
        raises."""
        ...

    def transfer_evidence(self, transactions: Sequence[tuple[str, str]]) -> dict[str, TxEvidence]:
        """For each (tx hash, block hash) the scan saw, by tx hash: the transaction's call tree
        with its logs, or where the node cannot trace, its receipt's logs (who moved a
        permissioned token's transfers, reconciler.engine.initiators). A transaction the node
        places in another block raises ChainError."""
        ...

    def allowances(self, queries: Sequence[tuple[str, str, str]], block: BlockRef) -> list[int]:
        """``allowance(owner, spender)`` of each (token, owner, spender) at ``block``."""
        ...

    def call(self, to: str, data: bytes, block: BlockRef) -> bytes | None:
        """``eth_call`` of ``data`` to ``to`` at ``block``: the returned bytes, None when the
        call reverted (any other failure raises)."""
        ...

    def code_sizes(self, addresses: Sequence[str], block: BlockRef) -> list[int]:
        """The size of each account's code at ``block`` (0: none)."""
        ...

    def simulate(
        self, call: Mapping[str, Any], block: BlockRef, overrides: Mapping[str, Mapping[str, Any]]
    ) -> Execution:
        """``call`` executed at ``block`` on top of the state ``overrides`` (nothing is sent):
        its call tree with logs and its state diff. Raises ChainError naming what the node does
        not serve when it cannot simulate."""
        ...

    def sources(self) -> list[Source]:
        """The endpoints that answered so far, in the order they first did, with their clients:
        the evidence of where the run's data came from."""
        ...

    def close(self) -> None:
        """Release connections; the adapter is not used afterwards. May be called from another
        thread while a read is in flight: the read then fails promptly (ChainError)."""
        ...

    @property
    def read_path(self) -> str | None:
        """How the last balances() call read: "multicall" or "batch"."""
        ...
