"""One reconciliation run: pin a block per chain -> read chain -> load books -> engine ->
persist in one transaction.

Invariants: a run exists in the ledger from its first step, so a failure anywhere later
still leaves it recorded as incomplete with the reason; a chain that could not be read (node
down, wrong chain id, wrong decimals, reorg that would not settle) contributes no positions
and resolves none of its breaks; the exit code is 2 for an incomplete run, else 1 when a break
of severity error or critical is open or acknowledged, else 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chains.base import BalanceQuery, ChainAdapter
from reconciler.config import AssetSettings, ChainSettings, Settings
from reconciler.domain import BlockRef, BreakKey, BreakKind, BreakRecord, BreakStatus, Position, Severity
from reconciler.engine.balances import check_balances, positions_for_chain
from reconciler.engine.lifecycle import plan_breaks
from reconciler.errors import ChainError, LedgerError
from reconciler.ledger.store import ChainResult, Ledger, RunSummary

log = logging.getLogger(__name__)

AdapterFactory = Callable[[ChainSettings], ChainAdapter]
REORG_RETRIES = 2


@dataclass(frozen=True, slots=True)
class RunReport:
    run: RunSummary
    chains: tuple[ChainResult, ...]
    positions: tuple[Position, ...]
    breaks: tuple[BreakRecord, ...]

    @property
    def exit_code(self) -> int:
        return exit_code(self.run.status, self.breaks)


def exit_code(status: str, breaks: Sequence[BreakRecord]) -> int:
    if status != "complete":
        return 2
    blocking = (BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED)
    if any(b.status in blocking and b.severity.rank >= Severity.ERROR.rank for b in breaks):
        return 1
    return 0


def read_chain(
    chain: ChainSettings, settings: Settings, adapter: ChainAdapter
) -> tuple[ChainResult, dict[tuple[str, str], int]]:
    """Read every configured balance of one chain at one pinned block; raise ChainError if the
    node is not the configured chain or a token is not what the configuration says."""
    node_chain_id = adapter.chain_id()
    if node_chain_id != chain.chain_id:
        raise ChainError(
            f"the node reports chain id {node_chain_id} but chains.{chain.name}.chain_id = "
            f"{chain.chain_id}: is rpc_urls pointing at the right network?"
        )
    tokens = [a for a in settings.assets_on(chain.name) if a.address is not None]
    pairs = [(w, a) for w in settings.wallets_on(chain.name) for a in settings.assets_on(chain.name)]
    queries = [BalanceQuery(w.address, a.address) for w, a in pairs]
    for _attempt in range(REORG_RETRIES + 1):
        block = adapter.pin(chain.confirmations)
        failure: ChainError | None = None
        values: list[int] = []
        try:
            _check_decimals(tokens, adapter.token_decimals([a.address for a in tokens if a.address], block), block)
            values = adapter.balances(queries, block) if queries else []
        except ChainError as exc:
            failure = exc
        # Whether the reads failed or not, they only count if the pinned block is still canonical.
        if not _reorged(adapter, block):
            if failure is not None:
                raise failure
            onchain = {(w.name, a.name): v for (w, a), v in zip(pairs, values, strict=True)}
            return ChainResult(chain.name, node_chain_id, block, adapter.read_path, None), onchain
        log.warning("event=reorg chain=%s block=%d hash=%s action=repin", chain.name, block.number, block.hash)
    raise ChainError(f"block after block was replaced by reorgs ({REORG_RETRIES + 1} pins); raise confirmations")


def _check_decimals(tokens: Sequence[AssetSettings], actual: Sequence[int], block: BlockRef) -> None:
    for asset, reported in zip(tokens, actual, strict=True):
        if reported != asset.decimals:
            raise ChainError(
                f"token {asset.address} reports decimals() = {reported} at block "
                f"{block.number} but assets.{asset.name}.decimals = {asset.decimals}: "
                "fix the configuration (amounts would be misread by a factor of "
                f"10^{abs(reported - asset.decimals)})"
            )


def _reorged(adapter: ChainAdapter, block: BlockRef) -> bool:
    try:
        return adapter.block_hash(block.number) != block.hash
    except ChainError:
        return False


def run_reconciliation(settings: Settings, ledger: Ledger, adapter_for: AdapterFactory) -> RunReport:
    run = ledger.start_run()
    log.info("event=run_started run_id=%s", run.id)
    chain_results: list[ChainResult] = []
    positions: list[Position] = []
    coverage: set[BreakKey] = set()
    read: dict[str, tuple[ChainResult, dict[tuple[str, str], int]]] = {}
    for chain in settings.chains.values():
        try:
            adapter = adapter_for(chain)
            try:
                read[chain.name] = read_chain(chain, settings, adapter)
            finally:
                adapter.close()
        except Exception as exc:  # noqa: BLE001 - any failure makes the chain unread, never clean
            why = str(exc) if isinstance(exc, ChainError) else f"{type(exc).__name__}: {exc}"
            log.error("event=chain_failed run_id=%s chain=%s reason=%r", run.id, chain.name, why)
            chain_results.append(ChainResult(chain.name, None, None, None, why))
            continue
        result, _ = read[chain.name]
        chain_results.append(result)
        log.info(
            "event=chain_read run_id=%s chain=%s block=%d hash=%s read_path=%s",
            run.id,
            chain.name,
            result.block.number if result.block else -1,
            result.block.hash if result.block else "",
            result.read_path,
        )
    failed = [c for c in chain_results if c.error]
    status = "incomplete" if failed else "complete"
    reason: str | None = "; ".join(f"chain {c.chain}: {c.error}" for c in failed) or None
    try:
        book = ledger.book_balances()
        findings = []
        for name, (result, onchain) in read.items():
            assert result.block is not None
            rows = positions_for_chain(name, settings.wallets_on(name), settings.assets_on(name), book, onchain)
            positions.extend(rows)
            coverage.update(BreakKey(BreakKind.BALANCE_MISMATCH, p.chain, p.wallet, p.asset) for p in rows)
            tolerances = {a.name: a.tolerance for a in settings.assets_on(name)}
            findings.extend(check_balances(rows, tolerances, result.block))
        plan = plan_breaks(ledger.active_breaks(), findings, coverage)
        summary, breaks = ledger.finish_run(run.id, chain_results, positions, plan, status, reason, exit_code)
    except Exception as exc:  # noqa: BLE001 - a run that exists always ends recorded, never clean
        what = "database failed during the run" if isinstance(exc, LedgerError) else "the run failed"
        detail = str(exc) if isinstance(exc, LedgerError) else f"{type(exc).__name__}: {exc}"
        reason = f"{what}: {detail}" + (f"; {reason}" if reason else "")
        log.error("event=run_failed run_id=%s reason=%r", run.id, reason)
        try:
            ledger.abandon_run(run.id, reason)
        except LedgerError:
            log.error("event=run_unrecorded run_id=%s", run.id)
        summary = RunSummary(run.id, run.started_at, None, "incomplete", reason, 2)
        return RunReport(summary, tuple(chain_results), tuple(positions), ())
    log.info(
        "event=run_finished run_id=%s status=%s breaks=%d exit_code=%s",
        run.id,
        summary.status,
        len(breaks),
        summary.exit_code,
    )
    return RunReport(summary, tuple(chain_results), tuple(positions), tuple(breaks))
