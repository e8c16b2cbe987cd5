"""One reconciliation run: record it -> hold the ledger -> load books and baselines -> pin a
block per chain and read the chains (all at once, one thread each), each chain's wallets in units
(reconciler.app.units: a chunk of wallets read and judged at the pin; in this process, or shared
by daemons: reconciler.app.shards) -> the chain-wide passes -> persist in one transaction.

Invariants: a run exists in the ledger from its first step, so a failure anywhere later (an
exception, SIGINT/SIGTERM, a database gone) still leaves it recorded as incomplete with the
reason; at most one run observes chains and writes to a ledger at a time (the ledger's writer
lock, held from before the pin to after the write), so a later pin is always written after an
earlier one — beside the daemon's watcher, whose runs (one chain each, pinned at its head) hold
only their chain's lock, which a run holds too while it observes that chain (see
reconciler.ledger.locks); a chain that could not be read (node down, wrong chain id, wrong decimals, reorg
that would not settle) contributes no positions and resolves none of its breaks; book
balances that no configured wallet x asset covers are reported, never silently dropped; the
exit code is 2 for an incomplete run, else 1 when a break of severity error or critical is
open or acknowledged, else 0. Endpoints that answer a cross-checked read differently leave
their chain unread and raise a critical source_disagreement, which a later cross-checked read
that finds them agreeing resolves. A slow or dead chain delays no other chain's read, and a
signal stops the run while chains are being read (every read in flight is cut).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from chains.base import ChainAdapter, SourceDisagreement
from reconciler.app.shards import shared_units
from reconciler.app.surveil import ChainSurveillance, surveil_chain
from reconciler.app.tentative import confirmable, tentative_findings
from reconciler.app.units import (
    UNIT_PASSES,
    UnitInputs,
    UnitResult,
    UnitRunner,
    chunk_wallets,
    read_units,
    read_wallets,
    spilled,
    unit_inputs,
)
from reconciler.app.workers import Forked, forked_chain, unit_workers
from reconciler.domain import BlockRef, BreakKey, BreakKind, BreakRecord, BreakStatus, Finding, Position, Severity
from reconciler.engine.passes import SCAN_PASSES, ChainObservations, Coverage, PassResult, RunObservations, run_passes
from reconciler.engine.surveillance import Movement
from reconciler.errors import ChainError, LedgerError, RpcUnavailable, chain_message
from reconciler.inputs.settings import AssetSettings, ChainSettings, Settings
from reconciler.interrupt import Interrupted
from reconciler.ledger.books import BookView
from reconciler.ledger.runs import ChainResult, Confirmation, NewBaselines, RunSummary
from reconciler.ledger.store import Ledger
from reconciler.spill import Concatenated, ConfigsByName, SpilledConfigs
from reconciler.walletconfig import IssuerControls

log = logging.getLogger(__name__)

AdapterFactory = Callable[[ChainSettings], ChainAdapter]
HoldChain = Callable[[str], Callable[[], None]]  # a chain's surveillance lock, held; returns its release
Render = Callable[["RunReport"], dict[str, Any]]
REORG_RETRIES = 2
DEFAULT_LOCK_TIMEOUT = 300.0
MAX_PARALLEL_CHAINS = 32
WAIT_SLICE = 0.1  # seconds between checkpoints while the chains are read


@dataclass(frozen=True, slots=True)
class UnreconciledBook:
    """A non-zero book balance that no configured wallet x asset covers (the wallet or the
    asset left the configuration): nothing on chain is compared with it."""

    wallet: str
    asset: str
    amount: int
    decimals: int | None


@dataclass(frozen=True, slots=True)
class RunOptions:
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    on_wait: Callable[[], None] = lambda: None
    trigger: str = "cli"
    job: str = "run"
    scheduled_for: datetime | None = None
    rerun_of: str | None = None  # a lost firing run again: the run of it whose process died
    render: Render | None = None  # builds the document kept with the run (`runs show`)
    # Called at safe points (while chains are read — also from their threads — and before
    # writing): raises to stop the run, e.g. on a signal whose first raise was swallowed (see
    # reconciler.interrupt).
    checkpoint: Callable[[], None] = lambda: None
    # A scheduled run on PostgreSQL with shards above 1 is split into (chain, shard) units that
    # other daemons help with (reconciler.app.shards); else its units run here, one by one.
    shards: int = 1
    # The daemon's watcher (reconciler.daemon.watch): only these chains, each pinned at the
    # node's head rather than ``confirmations`` below it (findings short of them are tentative).
    chains: tuple[str, ...] | None = None
    at_head: bool = False
    # The run's `--json` document will print its positions (`run --json`): their texts are
    # made as they are read, by the processes that read them (reconciler.spill).
    document_positions: bool = False


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What a run's scan of one chain observed: blocks from_block..to_block."""

    chain: str
    from_block: int
    to_block: int
    block_hash: str
    observed: int
    reorged: int
    executions: int = 0  # executions of custody wallets judged
    unchecked: tuple[str, ...] = ()  # checks the node could not serve, each saying what was not looked for
    # The movements first observed by this scan, each with the instruction it consumed.
    movements: tuple[tuple[Movement, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class RunReport:
    run: RunSummary
    chains: tuple[ChainResult, ...]
    positions: Sequence[Position]  # on disk for a run (reconciler.spill): read back as needed
    breaks: tuple[BreakRecord, ...]
    unreconciled: tuple[UnreconciledBook, ...] = ()
    document: dict[str, Any] | None = None
    scans: tuple[ScanSummary, ...] = ()
    # The ledger held not one book entry: every on-chain balance was compared with zero.
    no_books: bool = False

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
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    full: bool = True,
    probes: Mapping[str, Sequence[str]] | None = None,
    at_head: bool = False,
) -> tuple[ChainResult, ChainObservations]:
    """Read everything a run needs of one chain at one pinned block — balances, each wallet's
    configuration, its approvers' delegations, the issuer controls on its collateral; raise
    ChainError if the node is not the configured chain or a token is not what the
    configuration says. Reads that raced a reorg of the pin are thrown away and made again.
    Not ``full`` (a scan): only the pin and the tokens' decimals. ``at_head`` (the watcher):
    the pin is the node's head."""
    node_chain_id = adapter.chain_id()
    if node_chain_id != chain.chain_id:
        raise ChainError(
            f"the node reports chain id {node_chain_id} but chains.{chain.name}.chain_id = "
            f"{chain.chain_id}: is rpc_urls pointing at the right network?"
        )
    tokens = [a for a in settings.assets_on(chain.name) if a.address is not None]
    wallets = settings.wallets_on(chain.name)
    token_addresses = [a.address for a in tokens if a.address is not None]
    for _attempt in range(REORG_RETRIES + 1):
        block = adapter.pin(0 if at_head else chain.confirmations)
        failure: ChainError | None = None
        observed: ChainObservations | None = None
        try:
            _check_decimals(tokens, adapter.token_decimals(token_addresses, block), block)
            if full:
                observed = read_wallets(chain, settings, adapter, block, wallets, probes)
            else:
                observed = ChainObservations(chain=chain.name, block=block, balances={})
        except ChainError as exc:
            failure = exc
        # Whether the reads failed or not, they only count if the pinned block is still canonical.
        if not _reorged(adapter, block):
            if failure is not None:
                raise failure
            assert observed is not None
            sources = tuple(adapter.sources())
            result = ChainResult(
                chain.name, node_chain_id, block, adapter.read_path, None, sources, head=adapter.pinned_head
            )
            return result, observed
        log.warning("event=reorg chain=%s block=%d hash=%s action=repin", chain.name, block.number, block.hash)
    raise ChainError(f"block after block was replaced by reorgs ({REORG_RETRIES + 1} pins); raise confirmations")


def local_units(
    settings: Settings, inputs: UnitInputs, adapter_for: AdapterFactory | None = None, texts: bool = False
) -> UnitRunner:
    """The units of a chain, a chunk of wallets each, run on this machine: in this process one
    after another, or (a chain of more than one chunk, given ``adapter_for``) by worker
    processes (reconciler.app.workers), taken in order; with ``texts``, the positions' `--json`
    document texts made as they are judged."""

    def run(chain: ChainSettings, adapter: ChainAdapter, block: BlockRef, checkpoint: Callable[[], None]) -> UnitResult:
        wallets = settings.count_on(chain.name)
        count = unit_workers(wallets) if adapter_for is not None else 1
        if count > 1:
            assert adapter_for is not None
            log.info("event=unit_workers chain=%s wallets=%d workers=%d", chain.name, wallets, count)
            return forked_chain(chain, settings, inputs, adapter_for, block, checkpoint, count, texts)
        parts = settings.wallet_chunks(chain.name, chunk_wallets())
        found = read_units(chain, settings, adapter, block, parts, inputs, checkpoint)
        return spilled(found, chain.name, settings, texts)

    return run


def read_chain_in_units(
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    units: UnitRunner,
    checkpoint: Callable[[], None] = lambda: None,
) -> tuple[ChainResult, ChainObservations, UnitResult]:
    """A run's read of one chain: the pin, taken once, then the units, each reading and judging
    its wallets at that pin; the observations handed to the chain-wide passes carry the
    configurations first seen by a unit, and the UnitResult the chain's positions (on disk,
    read back by the flow check). Raise
    ChainError as ``read_chain`` does; units that raced a reorg of the pin are made again."""
    node_chain_id = adapter.chain_id()
    if node_chain_id != chain.chain_id:
        raise ChainError(
            f"the node reports chain id {node_chain_id} but chains.{chain.name}.chain_id = "
            f"{chain.chain_id}: is rpc_urls pointing at the right network?"
        )
    tokens = [a for a in settings.assets_on(chain.name) if a.address is not None]
    token_addresses = [a.address for a in tokens if a.address is not None]
    for _attempt in range(REORG_RETRIES + 1):
        block = adapter.pin(chain.confirmations)
        failure: ChainError | None = None
        found: UnitResult | None = None
        observed: ChainObservations | None = None
        try:
            _check_decimals(tokens, adapter.token_decimals(token_addresses, block), block)
            found = units(chain, adapter, block, checkpoint)
            # The tokens' own implementations, once per chain: a token no baseline covers is
            # recorded first seen by this run.
            implementations = adapter.issuer_controls([], [], token_addresses, block, []).implementations
            observed = ChainObservations(
                chain=chain.name,
                block=block,
                balances={},  # the units' positions carry them (the flow check reads those)
                wallet_configs=(
                    found.first_seen.by_name()
                    if isinstance(found.first_seen, SpilledConfigs)
                    else {c.wallet: c for c in found.first_seen}
                ),
                controls=IssuerControls(block.number, implementations=implementations),
            )
        except ChainError as exc:
            failure = exc
        if not _reorged(adapter, block):
            if failure is not None:
                raise failure
            assert observed is not None and found is not None
            sources = tuple(adapter.sources())
            read_path = adapter.read_path if found.read_path is None else found.read_path  # read by workers
            result = ChainResult(chain.name, node_chain_id, block, read_path, None, sources, head=adapter.pinned_head)
            return result, observed, found
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
    """Whether the pinned block was replaced while it was read. A node that cannot say (or
    answers for another block) leaves the chain unread: ChainError propagates."""
    return adapter.block_hash(block.number) != block.hash


def _sum_elsewhere(settings: Settings, ledger: Ledger, view: BookView) -> Forked[list[UnreconciledBook]]:
    """``unreconciled_books`` in a forked process, through its own reading connections."""
    url = ledger.url
    return Forked(
        lambda: unreconciled_books(settings, Ledger(url, reader=True), view),
        "the process summing the books outside the configuration",
        "the run was not recorded",
    )


def unreconciled_books(settings: Settings, ledger: Ledger, view: BookView) -> list[UnreconciledBook]:
    """Book balances no configured wallet x asset compares with (the wallet or the asset left
    the configuration, or the asset is on another chain); only those pairs are summed."""
    chains = {a.name: a.chain for a in settings.assets.values()}
    chain_of = settings.chain_finder()  # the pairs come sorted by wallet: a walk, not a search each

    def covered(wallet: str, asset: str) -> bool:
        return asset in chains and chain_of(wallet) == chains[asset]

    outside = ledger.books_outside(view, covered)
    return [
        UnreconciledBook(wallet, asset, amount, settings.assets[asset].decimals if asset in settings.assets else None)
        for (wallet, asset), amount in sorted(outside.items())
        if amount != 0
    ]


def run_reconciliation(
    settings: Settings, ledger: Ledger, adapter_for: AdapterFactory, options: RunOptions | None = None
) -> RunReport:
    opts = options or RunOptions()
    if opts.chains is not None:
        settings = replace(settings, chains={n: c for n, c in settings.chains.items() if n in opts.chains})
    run, lock = ledger.begin_run(opts.trigger, opts.job, opts.scheduled_for, opts.rerun_of)
    log.info("event=run_started run_id=%s trigger=%s job=%s", run.id, opts.trigger, opts.job)
    try:
        try:
            # A watcher's run (one chain, at its head) holds its chain's lock, not the ledger's.
            scope = opts.chains if opts.at_head else None
            ledger.hold_ledger(run.id, lock, opts.lock_timeout, opts.on_wait, scope)
            shared = (
                shared_units(ledger, run.id, opts.shards)
                if opts.shards > 1 and opts.job == "run" and ledger.engine.dialect.name == "postgresql"
                else None
            )
            hold: HoldChain | None = None
            if settings.watch.enabled and not opts.at_head:
                # The watcher observes too: a chain is observed by one of them at a time.
                def hold(chain: str) -> Callable[[], None]:
                    return lock.hold_chain(chain, opts.lock_timeout, opts.checkpoint)

            report = _reconcile(
                settings, ledger, adapter_for, run, opts.checkpoint, shared, opts.at_head, hold, opts.document_positions
            )
        except Interrupted as exc:
            reason = f"interrupted by {exc.signame} before the run finished; nothing it saw was saved"
            log.error("event=run_interrupted run_id=%s reason=%r", run.id, reason)
            ledger.abandon_run(run.id, reason)
            report = _incomplete(settings, run, reason)
        except LedgerError as exc:  # hold_ledger recorded it
            report = _incomplete(settings, run, str(exc))
    finally:
        lock.release()
    if opts.render is not None:
        document = opts.render(report)
        try:
            ledger.save_document(run.id, document)
        except LedgerError as exc:
            log.error("event=run_document_unsaved run_id=%s reason=%r", run.id, str(exc))
        report = replace(report, document=document)
    return report


def _incomplete(settings: Settings, run: RunSummary, reason: str) -> RunReport:
    """A run stopped before it read anything: every chain is listed, unread, with the reason."""
    unread = tuple(ChainResult(name, None, None, None, f"not read: {reason}") for name in settings.chains)
    return RunReport(replace(run, status="incomplete", reason=reason, exit_code=2), unread, (), ())


@dataclass(frozen=True, slots=True)
class ChainRead:
    """One chain's read phase: what was read and observed, or why the chain is unread; and the
    source_disagreement findings its endpoints raised, with the break keys the read covered."""

    result: ChainResult
    observed: ChainObservations | None = None
    surveilled: ChainSurveillance | None = None
    findings: tuple[Finding, ...] = ()
    coverage: Coverage = Coverage()
    units: UnitResult | None = None  # what the chain's units found (a run; None: a scan)
    confirm: tuple[Confirmation, ...] = ()  # tentative breaks whose block is now confirmed


def _failure_text(exc: BaseException, chain: str | None = None) -> str:
    """Why a chain was not read, once, in plain words; an endpoint that gave no answer points
    at the configuration key that names it."""
    if not isinstance(exc, ChainError):
        return f"{type(exc).__name__}: {exc}"
    return chain_failure(chain, exc) if chain else str(exc)


def chain_failure(chain: str, exc: ChainError) -> str:
    """``cannot connect to http://127.0.0.1:8545 (connection refused): is the node running? see
    [chains.eth] rpc_urls``: where no endpoint answered, the key to check is named."""
    text = str(exc)
    if not isinstance(exc, RpcUnavailable):
        return text
    return f"{text}{' ' if text.endswith('?') else '; '}see [chains.{chain}] rpc_urls"


def read_one_chain(
    chain: ChainSettings,
    settings: Settings,
    ledger: Ledger,
    adapter: ChainAdapter,
    full: bool,
    checkpoint: Callable[[], None] = lambda: None,
    units: UnitRunner | None = None,
    at_head: bool = False,
    hold: HoldChain | None = None,
) -> ChainRead:
    """Read one chain and observe its movements since its checkpoint; closes the adapter. Any
    failure leaves the chain unread with the reason, never clean; endpoints that disagree
    (cross-checked reads) also yield source_disagreement findings. A run (``full``) reads and
    judges the chain's wallets in ``units``."""
    sources: tuple[tuple[str, str | None], ...] = ()
    found: UnitResult | None = None
    try:
        try:
            checkpoint()
            if full:
                assert units is not None
                result, observed, found = read_chain_in_units(chain, settings, adapter, units, checkpoint)
            else:
                result, observed = read_chain(chain, settings, adapter, full, at_head=at_head)
            checkpoint()
            release = hold(chain.name) if hold is not None else None
            watched = surveil_chain(chain, settings, ledger, adapter, observed, found.positions if found else None)
            if release is not None and watched.behind_watch:
                release()  # observed nothing: the watcher may go on while this run reads and writes
            head = result.head if result.head is not None else observed.block.number
            confirm = confirmable(chain, ledger, adapter, head)
        finally:
            sources = tuple(adapter.sources())
            if found is not None:  # the endpoints that answered its unit workers too
                sources += tuple(s for s in found.sources if s not in sources)
            adapter.close()
    except SourceDisagreement as exc:
        findings = disagreement_findings(chain, settings, exc)
        return ChainRead(
            ChainResult(chain.name, None, None, None, str(exc), sources),
            findings=findings,
            coverage=Coverage(frozenset(f.key for f in findings)),
        )
    except Exception as exc:  # noqa: BLE001 - any failure makes the chain unread, never clean
        return ChainRead(ChainResult(chain.name, None, None, None, _failure_text(exc, chain.name), sources))
    agreed = _agreement_coverage(chain, settings, full)
    return ChainRead(
        replace(result, sources=sources), observed, watched, coverage=agreed, units=found, confirm=confirm
    )


def _agreement_coverage(chain: ChainSettings, settings: Settings, full: bool) -> Coverage:
    """Where a cross-checked read that found its endpoints agreeing looked: the chain-wide key
    (the pin and a sample of the logs) and, read in full, every configured wallet x asset's
    balance; an open source_disagreement there is resolved."""
    if not chain.cross_check:
        return Coverage()
    keys = {BreakKey(BreakKind.SOURCE_DISAGREEMENT, chain.name, "*", None)}
    if full:
        keys |= {
            BreakKey(BreakKind.SOURCE_DISAGREEMENT, chain.name, w.name, a.name)
            for w in settings.wallets_on(chain.name)
            for a in settings.assets_on(chain.name)
        }
    return Coverage(frozenset(keys))


def disagreement_findings(chain: ChainSettings, settings: Settings, exc: SourceDisagreement) -> tuple[Finding, ...]:
    """One critical source_disagreement per wallet x asset whose balance the endpoints answered
    differently, and one for the chain (wallet "*") for anything else (the pinned block's hash,
    the logs)."""
    wallets = {w.address.lower(): w.name for w in settings.wallets_on(chain.name)}
    assets = {(a.address.lower() if a.address else None): a.name for a in settings.assets_on(chain.name)}
    first, second = exc.endpoints
    at = f" at block {exc.block}" if exc.block is not None else ""
    lines: dict[BreakKey, list[str]] = {}
    for d in exc.items:
        wallet = wallets.get(d.holder.lower()) if d.holder else None
        asset = assets.get(d.token.lower() if d.token else None) if wallet else None
        key = BreakKey(BreakKind.SOURCE_DISAGREEMENT, chain.name, wallet or "*", asset if wallet else None)
        lines.setdefault(key, []).append(f"{d.what}: {first} says {d.first}, {second} says {d.second}")
    return tuple(
        Finding(
            key,
            Severity.CRITICAL,
            None,
            f"endpoints {first} and {second} disagree{at}: " + "; ".join(said)
            + "; the chain was left unread: find out which endpoint is wrong",
        )
        for key, said in lines.items()
    )


def _read_chains(
    settings: Settings,
    ledger: Ledger,
    adapter_for: AdapterFactory,
    full: bool,
    checkpoint: Callable[[], None],
    units: UnitRunner | None = None,
    at_head: bool = False,
    hold: HoldChain | None = None,
) -> dict[str, ChainRead]:
    """Every chain read at the same time, one thread each: a slow or dead chain holds up no
    other, and the read phase lasts as long as the slowest chain. The calling thread waits in
    short slices, calling ``checkpoint`` (signals reach only the main thread); when it raises,
    every adapter is closed — requests in flight fail at once — and the reads are not waited for."""
    chains = list(settings.chains.values())
    outcomes: dict[str, ChainRead] = {}
    adapters: list[ChainAdapter] = []
    futures: dict[str, Future[ChainRead]] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(chains), MAX_PARALLEL_CHAINS)), thread_name_prefix="read")
    try:
        for chain in chains:
            checkpoint()
            try:
                adapter = adapter_for(chain)
            except Exception as exc:  # noqa: BLE001 - a chain that cannot even be set up is unread
                outcomes[chain.name] = ChainRead(ChainResult(chain.name, None, None, None, _failure_text(exc)))
                continue
            adapters.append(adapter)
            futures[chain.name] = pool.submit(
                read_one_chain, chain, settings, ledger, adapter, full, checkpoint, units, at_head, hold
            )
        pending = set(futures.values())
        while pending:
            checkpoint()
            _done, pending = wait(pending, timeout=WAIT_SLICE)
        checkpoint()
        for name, future in futures.items():
            outcomes[name] = future.result()
    except BaseException:
        for adapter in adapters:
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - stopping: the others must still be closed
                log.exception("event=adapter_close_failed")
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {chain.name: outcomes[chain.name] for chain in chains}


def _reconcile(
    settings: Settings,
    ledger: Ledger,
    adapter_for: AdapterFactory,
    run: RunSummary,
    checkpoint: Callable[[], None],
    unit_runner: Callable[[Settings, UnitInputs], UnitRunner] | None = None,
    at_head: bool = False,
    hold: HoldChain | None = None,
    document_positions: bool = False,
) -> RunReport:
    full = run.job == "run"  # a scan observes movements only: no balances, no wallet reads
    chain_results: list[ChainResult] = []
    positions: Sequence[Position] = ()
    unreconciled: list[UnreconciledBook] = []
    read: dict[str, ChainObservations] = {}
    surveilled: dict[str, ChainSurveillance] = {}
    read_findings: list[Finding] = []
    read_coverage = Coverage()
    found: list[UnitResult] = []  # what the units of each chain read found, in chain order
    # Books and baselines as the ledger holds them when the run begins: every unit judges
    # against the same ones.
    summing: Forked[list[UnreconciledBook]] | None = None
    try:
        inputs = unit_inputs(settings, ledger) if full else None
        if inputs is not None and unit_workers(sum(settings.count_on(c) for c in settings.chains)) > 1:
            # A large fleet's books are summed by a forked process while the chains are read.
            summing = _sum_elsewhere(settings, ledger, inputs.books)
        else:
            unreconciled = unreconciled_books(settings, ledger, inputs.books) if inputs is not None else []
    except LedgerError as exc:
        return _failed(ledger, run, exc, None, [], [], [])
    no_books = inputs is not None and not inputs.books.any_entries  # not one entry, even ones summing to 0
    token_baselines = inputs.token_baselines if inputs is not None else {}
    units = (
        None
        if inputs is None
        else unit_runner(settings, inputs)
        if unit_runner is not None
        else local_units(settings, inputs, adapter_for, document_positions)
    )
    try:
        outcomes = _read_chains(settings, ledger, adapter_for, full, checkpoint, units, at_head, hold)
        if summing is not None:
            try:
                unreconciled = summing.result(checkpoint)
            except LedgerError as exc:  # as it would have failed before the reads
                return _failed(ledger, run, exc, None, [], [], [])
    finally:
        if summing is not None:
            summing.cancel()
    confirm = tuple(c for outcome in outcomes.values() for c in outcome.confirm)
    for chain in settings.chains.values():
        outcome = outcomes[chain.name]
        result = outcome.result
        chain_results.append(result)
        read_findings.extend(outcome.findings)
        read_coverage |= outcome.coverage
        if result.error or outcome.observed is None or outcome.surveilled is None:
            log.error("event=chain_failed run_id=%s chain=%s reason=%r", run.id, chain.name, result.error)
            continue
        read[chain.name] = outcome.observed
        if outcome.units is not None:
            found.append(outcome.units)
        surveilled[chain.name] = outcome.surveilled
        log.info(
            "event=chain_read run_id=%s chain=%s block=%d hash=%s read_path=%s observed=%d reorged=%d sources=%s",
            run.id,
            chain.name,
            result.block.number if result.block else -1,
            result.block.hash if result.block else "",
            result.read_path,
            outcome.surveilled.write.observed,
            outcome.surveilled.write.reorged,
            ",".join(endpoint for endpoint, _version in result.sources),
        )
    failed = [c for c in chain_results if c.error]
    status = "incomplete" if failed else "complete"
    reason: str | None = "; ".join(chain_message(c.chain, c.error or "") for c in failed) or None
    writes = {name: cs.with_matches() for name, cs in surveilled.items()}
    scans = tuple(
        ScanSummary(
            name,
            cs.from_block,
            cs.to_block,
            cs.write.checkpoint.hash,
            cs.write.observed,
            cs.write.reorged,
            len(cs.executions.executions) if cs.executions else 0,
            cs.executions.unchecked if cs.executions else (),
            writes[name].movements,
        )
        for name, cs in surveilled.items()
    )
    try:
        for u in unreconciled:
            log.warning(
                "event=unreconciled_books run_id=%s wallet=%s asset=%s amount=%d", run.id, u.wallet, u.asset, u.amount
            )
        first_seen = _first_seen_baselines(read, token_baselines) if full else NewBaselines()
        # The chain-wide passes judge movements and executions: no books, no wallet baselines.
        observations = RunObservations(
            settings=settings,
            book={},
            chains=read,
            surveillance={name: cs.inputs for name, cs in surveilled.items()},
            orphaned={name: cs.orphaned for name, cs in surveilled.items() if cs.orphaned},
            executions={name: cs.executions for name, cs in surveilled.items() if cs.executions is not None},
        )
        positions = Concatenated([f.positions for f in found])
        # The units judged each wallet (balances, configurations, issuer controls); the
        # chain-wide passes (surveillance, flows, executions) judge every chain once. Findings
        # keep the order of a run in one piece: pass by pass, chain by chain.
        wide = run_passes(observations, SCAN_PASSES)
        unit_findings = [x for i in range(len(UNIT_PASSES)) for f in found for x in f.findings[i]]
        checked = PassResult(
            (*unit_findings, *wide.findings),
            Coverage(parts=(*(f.coverage for f in found), wide.coverage)),
            wide.notes,
        )
        decimals = {a.name: a.decimals for a in settings.assets.values()}
        checkpoint()
        summary, breaks = ledger.finish_run(
            run.id,
            chain_results,
            positions,
            [*checked.findings, *read_findings],  # the read phase's: endpoints that disagreed
            checked.coverage | read_coverage,
            decimals,
            status,
            reason,
            exit_code,
            first_seen,
            writes=list(writes.values()),
            notes=checked.notes,
            tentative=tentative_findings(settings, checked.findings, chain_results, surveilled),
            confirm=confirm,
        )
    except Exception as exc:  # noqa: BLE001 - a run that exists always ends recorded, never clean
        return _failed(ledger, run, exc, reason, chain_results, positions, unreconciled)
    log.info(
        "event=run_finished run_id=%s status=%s breaks=%d exit_code=%s",
        run.id,
        summary.status,
        len(breaks),
        summary.exit_code,
    )
    return RunReport(
        summary,
        tuple(chain_results),
        positions,
        tuple(breaks),
        tuple(unreconciled),
        scans=scans,
        no_books=no_books,
    )


def _failed(
    ledger: Ledger,
    run: RunSummary,
    exc: Exception,
    reason: str | None,
    chain_results: Sequence[ChainResult],
    positions: Sequence[Position],
    unreconciled: Sequence[UnreconciledBook],
) -> RunReport:
    """The run recorded incomplete after a failure of its own (the database, a bug)."""
    what = "database failed during the run" if isinstance(exc, LedgerError) else "the run failed"
    detail = str(exc) if isinstance(exc, LedgerError) else f"{type(exc).__name__}: {exc}"
    reason = f"{what}: {detail}" + (f"; {reason}" if reason else "")
    log.error("event=run_failed run_id=%s reason=%r", run.id, reason)
    try:
        ledger.abandon_run(run.id, reason)
    except LedgerError:
        log.error("event=run_unrecorded run_id=%s", run.id)
    summary = replace(run, status="incomplete", reason=reason, exit_code=2)
    return RunReport(summary, tuple(chain_results), positions, (), tuple(unreconciled), scans=())


def _first_seen_baselines(
    read: Mapping[str, ChainObservations], tokens_stored: Mapping[tuple[str, str], object]
) -> NewBaselines:
    """Wallets and tokens no baseline covers yet are recorded as first seen by this run (not
    reviewed): from here on any change is a finding. `wallets baseline` records a reviewed one.
    A chain's observations carry only the wallet configurations its units found first seen;
    those its unit workers staged whole are copied from the stage (reconciler.ledger.staging)."""
    staged = tuple(
        (chain.chain, chain.block.hash, chain.wallet_configs.staged)
        for chain in read.values()
        if isinstance(chain.wallet_configs, ConfigsByName) and chain.wallet_configs.staged_whole()
    )
    copied = {name for name, _, _ in staged}
    wallets = (
        (config, chain.block.hash)
        for chain in read.values()
        if chain.chain not in copied
        for config in (
            chain.wallet_configs.texts()
            if isinstance(chain.wallet_configs, ConfigsByName)
            else chain.wallet_configs.values()
        )
    )
    tokens = tuple(
        (chain.chain, impl)
        for chain in read.values()
        if chain.controls is not None
        for impl in chain.controls.implementations
        if (chain.chain, impl.token) not in tokens_stored
    )
    return NewBaselines(wallets, tokens, reviewed=False, note="first seen by a run (not reviewed)", staged=staged)
