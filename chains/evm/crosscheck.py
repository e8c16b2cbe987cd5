"""Cross-checked reads: one chain read through two endpoints that must agree.

Invariants: the two endpoints are the first two of ``rpc_urls`` that answer (each retried on
its own, never failed over, so every comparison is between two different endpoints for the
whole run); the pinned block is at most the lower of the two heads, and its hash, every block
hash asked later (reorg checks) and every balance are read from both; the transfer scan's logs
are spot-checked on the second endpoint over a sample of the scanned ranges (always the newest)
and, where the node serves it, against ``eth_getBlockReceipts`` by block hash for a sample of
blocks. Any difference raises SourceDisagreement naming both endpoints (redacted) and both
values: nothing either endpoint said is used. Everything else (decimals, wallet configuration,
issuer controls, allowances, traces) is read from the first endpoint only.

The sample is drawn from the pinned block's hash: the same run reproduces it, and an endpoint
cannot know in advance which ranges will be compared.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chains.base import BalanceQuery, ChainAdapter, Disagreement, ObservedRange, Source, SourceDisagreement
from chains.evm import logs, scan
from chains.evm.adapter import EvmAdapter
from chains.evm.rpc import RpcError
from reconciler.domain import BlockRef, pinned_number
from reconciler.engine.executions import Execution
from reconciler.engine.initiators import TxEvidence
from reconciler.errors import ChainError
from reconciler.inputs.settings import ChainSettings
from reconciler.transfers import MovementKind, Observation
from reconciler.walletconfig import FreezeQuery, IssuerControls, WalletConfig

log = logging.getLogger(__name__)

SPOT_WINDOWS = 3  # ranges of log_chunk_blocks blocks compared across endpoints per scan
SPOT_RECEIPT_BLOCKS = 4  # blocks compared against eth_getBlockReceipts per scan
_SHOWN = 3  # differing logs named in a disagreement

LogKey = tuple[str, str, int | None, str, str | None, str, str, int]


def evm_adapter(settings: ChainSettings) -> ChainAdapter:
    """The adapter a run reads an EVM chain through: cross-checked when configured."""
    if settings.cross_check:
        return CrossCheckedAdapter.from_settings(settings)
    return EvmAdapter.from_settings(settings)


def _log_key(o: Observation) -> LogKey:
    return (o.block_hash, o.tx_hash, o.log_index, o.kind.value, o.token, o.from_address, o.to_address, o.amount)


def _receipts_unserved(exc: RpcError) -> bool:
    """The node does not serve eth_getBlockReceipts, or not by block hash."""
    text = exc.rpc_message.lower()
    return exc.code in (-32601, -32602) or any(
        t in text for t in ("not found", "does not exist", "not supported", "unsupported", "not available")
    )


def _is_log(o: Observation) -> bool:
    return o.kind in (MovementKind.TOKEN, MovementKind.APPROVAL)


def _describe_logs(keys: Iterable[LogKey]) -> str:
    items = sorted(keys)
    if not items:
        return "none"
    shown = ", ".join(f"tx {k[1]} log {k[2]} ({k[3]} {k[7]} of {k[4]} {k[5]} -> {k[6]})" for k in items[:_SHOWN])
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{len(items)} log(s): {shown}{more}"


class CrossCheckedAdapter:
    """A ChainAdapter over two EvmAdapters (one endpoint each) whose answers are compared."""

    def __init__(
        self,
        settings: ChainSettings,
        candidates: Sequence[EvmAdapter],
        *,
        spot_windows: int = SPOT_WINDOWS,
        spot_receipt_blocks: int = SPOT_RECEIPT_BLOCKS,
    ) -> None:
        if len(candidates) < 2:
            raise ValueError("cross-checked reads need at least two endpoints")
        self.settings = settings
        self.candidates = list(candidates)
        self.spot_windows = spot_windows
        self.spot_receipt_blocks = spot_receipt_blocks
        self._pair: tuple[EvmAdapter, EvmAdapter] | None = None
        self._receipts_served = True
        self._pinned_head: int | None = None

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> CrossCheckedAdapter:
        return cls(settings, [EvmAdapter.for_endpoint(settings, url) for url in settings.rpc_urls])

    # ----------------------------------------------------------------- the pair

    def _select(self) -> tuple[EvmAdapter, EvmAdapter]:
        """The first two endpoints that answer (eth_chainId), in configured order."""
        if self._pair is not None:
            return self._pair
        answered: list[tuple[EvmAdapter, int]] = []
        failures: list[str] = []
        for candidate in self.candidates:
            try:
                answered.append((candidate, candidate.chain_id()))
            except ChainError as exc:
                failures.append(str(exc))
                continue
            if len(answered) == 2:
                break
        if len(answered) < 2:
            raise ChainError(
                f"cross_check needs two endpoints that answer, and {len(answered)} of {len(self.candidates)} did"
                + (f": {'; '.join(failures)}" if failures else "")
            )
        (first, first_id), (second, second_id) = answered
        if first_id != second_id:
            raise ChainError(
                f"{first.rpc.endpoint} reports chain id {first_id} and {second.rpc.endpoint} reports {second_id}: "
                f"chains.{self.settings.name}.rpc_urls must all point at the same network"
            )
        self._pair = (first, second)
        return self._pair

    @property
    def endpoints(self) -> tuple[str, str]:
        first, second = self._select()
        return first.rpc.endpoint, second.rpc.endpoint

    def _disagree(self, block: int | None, items: Sequence[Disagreement]) -> SourceDisagreement:
        error = SourceDisagreement(self.settings.name, self.endpoints, block, items)
        log.error(
            "event=source_disagreement chain=%s endpoints=%s block=%s differences=%d detail=%r",
            self.settings.name,
            ",".join(self.endpoints),
            block,
            len(items),
            str(error),
        )
        return error

    # ----------------------------------------------------------------- blocks

    def chain_id(self) -> int:
        first, _second = self._select()
        return first.chain_id()

    def pin(self, confirmations: int) -> BlockRef:
        """At most the lower head of the two (a lagging endpoint is not a disagreement)."""
        first, second = self._select()
        head = min(first.head(), second.head())
        number = pinned_number(head, confirmations)
        pinned = BlockRef(number, self.block_hash(number))
        self._pinned_head = head
        return pinned

    @property
    def pinned_head(self) -> int | None:
        return self._pinned_head

    def block_hash(self, number: int) -> str:
        first, second = self._select()
        mine, theirs = first.block_hash(number), second.block_hash(number)
        if mine != theirs and first.block_hash(number) != theirs:
            # Asked again, the first still differs: not a reorg landing between two reads.
            raise self._disagree(number, [Disagreement(f"hash of block {number}", mine, theirs)])
        return theirs

    def block_time(self, block: BlockRef) -> int:
        return self._select()[0].block_time(block)

    # ----------------------------------------------------------------- reads

    def balances(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]:
        first, second = self._select()
        mine, theirs = first.balances(queries, block), second.balances(queries, block)
        differ = [
            Disagreement(
                f"balance of {q.holder} in {'the native coin' if q.token is None else q.token}",
                str(a),
                str(b),
                holder=q.holder,
                token=q.token,
            )
            for q, a, b in zip(queries, mine, theirs, strict=True)
            if a != b
        ]
        if differ:
            raise self._disagree(block.number, differ)
        return mine

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]:
        return self._select()[0].token_decimals(tokens, block)

    def wallet_configs(
        self,
        wallets: Sequence[tuple[str, str]],
        block: BlockRef,
        probes: Mapping[str, Sequence[str]] | None = None,
    ) -> list[WalletConfig]:
        return self._select()[0].wallet_configs(wallets, block, probes)

    def delegations(self, addresses: Sequence[str], block: BlockRef) -> dict[str, str | None]:
        return self._select()[0].delegations(addresses, block)

    def issuer_controls(
        self,
        freezes: Sequence[FreezeQuery],
        pauses: Sequence[str],
        implementations: Sequence[str],
        block: BlockRef,
        frozen: Sequence[tuple[str, str]] = (),
    ) -> IssuerControls:
        return self._select()[0].issuer_controls(freezes, pauses, implementations, block, frozen)

    def call(self, to: str, data: bytes, block: BlockRef) -> bytes | None:
        return self._select()[0].call(to, data, block)

    def code_sizes(self, addresses: Sequence[str], block: BlockRef) -> list[int]:
        return self._select()[0].code_sizes(addresses, block)

    def simulate(
        self, call: Mapping[str, Any], block: BlockRef, overrides: Mapping[str, Mapping[str, Any]]
    ) -> Execution:
        return self._select()[0].simulate(call, block, overrides)

    def allowances(self, queries: Sequence[tuple[str, str, str]], block: BlockRef) -> list[int]:
        return self._select()[0].allowances(queries, block)

    def transfer_evidence(self, transactions: Sequence[tuple[str, str]]) -> dict[str, TxEvidence]:
        return self._select()[0].transfer_evidence(transactions)

    def observe(
        self,
        wallets: Sequence[str],
        tokens: Sequence[str],
        since: BlockRef,
        block: BlockRef,
        approvers: Sequence[str] = (),
    ) -> ObservedRange:
        first, _second = self._select()
        found = first.observe(wallets, tokens, since, block, approvers)
        if block.number > since.number and wallets:
            self._spot_check(found.observations, wallets, tokens, since.number + 1, block)
        return found

    # ----------------------------------------------------------------- the spot check

    def _windows(self, lo: int, hi: int, block: BlockRef) -> list[tuple[int, int]]:
        size = self.settings.log_chunk_blocks
        windows = [(start, min(hi, start + size - 1)) for start in range(lo, hi + 1, size)]
        newest, older = windows[-1], windows[:-1]
        rng = random.Random(block.hash)
        return sorted([newest, *rng.sample(older, min(len(older), max(0, self.spot_windows - 1)))])

    def _spot_check(
        self, found: Sequence[Observation], wallets: Sequence[str], tokens: Sequence[str], lo: int, block: BlockRef
    ) -> None:
        first, second = self._select()
        name = self.settings.name
        mine_all = [o for o in found if _is_log(o)]
        seen: dict[int, str] = {o.block_number: o.block_hash for o in mine_all}
        differ: list[Disagreement] = []
        windows = self._windows(lo, block.number, block)
        for wlo, whi in windows:
            theirs = logs.scan_token_logs(
                second.rpc, name, wallets, tokens, wlo, whi, chunk_blocks=self.settings.log_chunk_blocks
            )
            seen.update({o.block_number: o.block_hash for o in theirs})
            mine = {_log_key(o) for o in mine_all if wlo <= o.block_number <= whi}
            other = {_log_key(o) for o in theirs}
            if mine != other:
                differ.append(
                    Disagreement(
                        f"custody logs of blocks {wlo}..{whi} (eth_getLogs)",
                        _describe_logs(mine),
                        _describe_logs(other),
                    )
                )
        if not differ:
            differ = self._check_receipts(mine_all, windows, seen, wallets, tokens, block)
        if differ:
            raise self._disagree(block.number, differ)
        log.info(
            "event=logs_spot_checked chain=%s windows=%s endpoints=%s",
            name,
            ",".join(f"{a}..{b}" for a, b in windows),
            ",".join(self.endpoints),
        )

    def _receipt_blocks(
        self, windows: Sequence[tuple[int, int]], with_logs: Sequence[int], block: BlockRef
    ) -> list[int]:
        """Blocks with custody logs first (what was found is confirmed), then any block of the
        compared windows (what was not found is confirmed absent)."""
        rng = random.Random(block.hash + ":receipts")
        budget = self.spot_receipt_blocks
        picked = rng.sample(sorted(with_logs), min(len(with_logs), max(1, budget - 1)))
        every = [n for a, b in windows for n in range(a, b + 1)]
        rest = [n for n in every if n not in picked] if len(every) <= 10_000 else []
        picked += rng.sample(rest, min(len(rest), budget - len(picked)))
        return sorted(picked)

    def _check_receipts(
        self,
        mine_all: Sequence[Observation],
        windows: Sequence[tuple[int, int]],
        seen: dict[int, str],
        wallets: Sequence[str],
        tokens: Sequence[str],
        block: BlockRef,
    ) -> list[Disagreement]:
        if not self._receipts_served or not tokens:
            return []
        first, second = self._select()
        in_windows = sorted(n for n in seen if any(a <= n <= b for a, b in windows))
        wanted_wallets = {scan.address_topic(w) for w in wallets}
        wanted_tokens = {t.lower() for t in tokens}
        differ: list[Disagreement] = []
        for number in self._receipt_blocks(windows, in_windows, block):
            block_hash = seen.get(number) or first.block_hash(number)
            try:
                receipts = second.rpc.request("eth_getBlockReceipts", [block_hash])
            except RpcError as exc:
                if _receipts_unserved(exc):
                    self._receipts_served = False
                    log.info(
                        "event=receipts_not_served chain=%s endpoint=%s reason=%r",
                        self.settings.name,
                        second.rpc.endpoint,
                        str(exc),
                    )
                    return []
                raise
            if not isinstance(receipts, list):
                differ.append(
                    Disagreement(f"block {number}", f"hash {block_hash}", f"no receipts for it ({receipts!r:.80})")
                )
                continue
            theirs = {_log_key(o) for o in self._custody_logs(receipts, number, wanted_wallets, wanted_tokens)}
            mine = {_log_key(o) for o in mine_all if o.block_number == number}
            if mine != theirs:
                differ.append(
                    Disagreement(
                        f"custody logs of block {number} (eth_getLogs against eth_getBlockReceipts)",
                        _describe_logs(mine),
                        _describe_logs(theirs),
                    )
                )
        return differ

    def _custody_logs(self, receipts: list[Any], number: int, wallets: set[str], tokens: set[str]) -> list[Observation]:
        """The Transfer logs into or out of a custody wallet and its Approval logs, among a
        block's receipts: what the scan's two eth_getLogs filters select."""
        out: list[Observation] = []
        for receipt in receipts:
            logs = receipt.get("logs") if isinstance(receipt, dict) else None
            if not isinstance(logs, list):
                raise ChainError(
                    f"{self._select()[1].rpc.endpoint}: eth_getBlockReceipts of block {number} answered a receipt "
                    f"without logs ({receipt!r:.80}): check the endpoint"
                )
            for entry in logs:
                if not isinstance(entry, dict):
                    continue
                topics = entry.get("topics")
                address = entry.get("address")
                if not isinstance(topics, list) or len(topics) != 3 or not isinstance(address, str):
                    continue
                if address.lower() not in tokens:
                    continue
                signature = str(topics[0]).lower()
                sender, receiver = str(topics[1]).lower(), str(topics[2]).lower()
                transfer = signature == scan.TRANSFER_TOPIC and (sender in wallets or receiver in wallets)
                approval = signature == scan.APPROVAL_TOPIC and sender in wallets
                if not (transfer or approval):
                    continue
                try:
                    out.append(scan.decode_token_log(self.settings.name, entry, 0))
                except scan.DecodeError:
                    continue  # not ERC-20 shaped: the scan leaves it out too
        return out

    # ----------------------------------------------------------------- the rest

    @property
    def read_path(self) -> str | None:
        return self._pair[0].read_path if self._pair is not None else None

    def sources(self) -> list[Source]:
        if self._pair is None:
            return [s for c in self.candidates for s in c.sources()]
        return [s for c in self._pair for s in c.sources()]

    def close(self) -> None:
        for candidate in self.candidates:
            candidate.close()
