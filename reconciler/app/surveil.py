"""One chain's transfer surveillance inside a run or a scan: from the checkpoint to the pin.

Invariants: observation starts where the last scan stopped (its checkpoint, number and hash)
or, the first time, at ``start_block`` (default: this pin: nothing before it is claimed to be
observed); a checkpoint that is no longer canonical is walked back to the highest stored
checkpoint still canonical, movements stored on orphaned blocks are marked reorged (kept as
evidence) and the new branch is observed; with [watch] a checkpoint above the pin (the watcher
observed up to the head) is the range already observed, and nothing is observed again; a range
the node cannot serve raises, so the chain is
unread and the checkpoint stays where it was; the flow check runs only over a window the scans
covered in full (the previous complete run's pin at or after the first checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace

from chains.base import ChainAdapter, ObservedRange
from reconciler.domain import BlockRef, Position, eip55
from reconciler.engine import initiators
from reconciler.engine.executions import (
    Execution,
    ExecutionInputs,
    ExecutionPolicy,
    WalletProfile,
    analyze,
    profile_for,
    touches,
    written_mapping_entries,
)
from reconciler.engine.passes import ChainObservations
from reconciler.engine.surveillance import (
    FlowWindow,
    Movement,
    SurveillanceInputs,
    common_ancestor,
    match_outflows,
    movements_for,
)
from reconciler.errors import ChainError
from reconciler.inputs.instructions import partition_valid
from reconciler.inputs.settings import AssetSettings, ChainSettings, Settings, WalletSettings
from reconciler.ledger import executions_store
from reconciler.ledger import surveillance_store as store
from reconciler.ledger.store import Ledger
from reconciler.spill import picked
from reconciler.transfers import Direction, Observation
from reconciler.walletconfig import WalletConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChainSurveillance:
    inputs: SurveillanceInputs
    new: tuple[Movement, ...]  # movements first observed by this scan
    orphaned: tuple[Movement, ...]
    write: store.SurveillanceWrite
    from_block: int
    to_block: int
    executions: ExecutionInputs | None = None
    behind_watch: bool = False  # the daemon's watcher had observed beyond the pin: nothing observed

    def with_matches(self) -> store.SurveillanceWrite:
        """The write, with each new outflow carrying the instruction it consumed (if any)."""
        result = match_outflows(
            self.inputs.movements, self.inputs.instructions, self.inputs.consumed, self.inputs.already_matched
        )
        consumed_by = {(m.identity, m.wallet): instruction for m, instruction in result.matches}
        movements = tuple((m, consumed_by.get((m.identity, m.wallet))) for m in self.new)
        return replace(self.write, movements=movements)


def _ref(adapter: ChainAdapter, number: int) -> BlockRef:
    return BlockRef(number, adapter.block_hash(number))


def surveil_chain(
    chain: ChainSettings,
    settings: Settings,
    ledger: Ledger,
    adapter: ChainAdapter,
    pinned: ChainObservations,
    positions: Sequence[Position] | None = None,
) -> ChainSurveillance:
    """``positions``: the chain's positions at the pin, in order (a run's); the balance change
    since the previous complete run's pin is then checked against the movements (the flow
    check). None (a scan): no flow check."""
    pin = pinned.block
    # A chain's wallets are named, not made, unless the scan reads new blocks: only those the
    # movements, allowances and executions concern are made (a fleet may be a million).
    names_on = settings.names_on(chain.name)
    assets = settings.assets_on(chain.name)
    decimals = {a.name: a.decimals for a in assets}
    stored = store.checkpoints(ledger, chain.name)
    start: BlockRef | None = None
    orphaned_hashes: set[str] = set()
    if stored:
        latest_number, latest_hash = stored[0]
        if latest_number > pin.number and not settings.watch.enabled:
            raise ChainError(
                f"chain {chain.name}: the pinned block {pin.number} is below the checkpoint {latest_number} "
                "a scan already reached: the node lags behind the one scanned before (or confirmations grew)"
            )
        if adapter.block_hash(latest_number) == latest_hash:
            since = BlockRef(latest_number, latest_hash)
        else:
            ancestor = common_ancestor(stored, adapter.block_hash)
            if ancestor is None:
                # Even where surveillance began was replaced: nothing below it was ever claimed
                # observed, so observe again from just below it, on the new branch.
                ancestor = max(stored[-1][0] - 1, 0)
                start = _ref(adapter, ancestor)
            since = _ref(adapter, ancestor)
            evidence = store.movement_blocks_above(ledger, chain.name, ancestor)
            evidence |= executions_store.blocks_above(ledger, chain.name, ancestor)
            for number, block_hash in sorted(evidence):
                if adapter.block_hash(number) != block_hash:
                    orphaned_hashes.add(block_hash)
            log.warning(
                "event=reorg_walked_back chain=%s checkpoint=%d ancestor=%d orphaned_blocks=%d",
                chain.name,
                latest_number,
                ancestor,
                len(orphaned_hashes),
            )
    else:
        first = chain.start_block if chain.start_block is not None and chain.start_block <= pin.number else None
        since = pin if first is None else _ref(adapter, max(first - 1, 0))
        start = since
    tokens = [a.address for a in assets if a.address is not None]
    approvers = sorted({a for w in settings.wallets_with_approvers(chain.name) for a in w.approvers})
    # With [watch] the watcher observes up to the node's head: a scheduled scan or run pinned
    # ``confirmations`` below it finds its range already observed (and judged) and observes
    # nothing; the checkpoint stays where the watcher put it.
    # (a checkpoint at the pin counts too: the watcher judged up to it, at that very block, and
    # judges what comes after it; this run, observing nothing, holds nothing up.)
    ahead = settings.watch.enabled and bool(stored) and since.number >= pin.number
    observed = (
        ObservedRange([])
        if ahead
        else adapter.observe(settings.addresses_on(chain.name), tokens, since, pin, approvers)
    )
    observations = _classified(adapter, observed.observations, settings, chain)
    new = tuple(movements_for(observations, _at_addresses(settings, chain.name, observations), assets))

    booked = store.booked_tx_hashes(ledger)
    flow_from = store.flow_start(ledger, chain.name) if positions is not None else None
    first_checkpoint = stored[-1][0] if stored else since.number
    if flow_from is not None and (
        flow_from.block.number < first_checkpoint
        or flow_from.block.number > pin.number
        or adapter.block_hash(flow_from.block.number) != flow_from.block.hash
    ):
        flow_from = None  # the window was not observed in full (or began on a lost branch): no claim
    previous = [
        m
        for m in store.stored_movements(
            ledger,
            chain.name,
            decimals,
            names_on,
            flow_from.block.number if flow_from is not None else None,
            booked,
        )
        if m.observation.block_hash not in orphaned_hashes
    ]
    orphaned = (
        tuple(
            m
            for m in store.stored_movements(ledger, chain.name, decimals, names_on, since.number, frozenset())
            if m.observation.block_hash in orphaned_hashes
        )
        if orphaned_hashes
        else ()
    )
    seen = {(m.identity, m.wallet, m.direction) for m in new}
    movements = tuple(
        sorted([*new, *(m for m in previous if (m.identity, m.wallet, m.direction) not in seen)], key=Movement.sort_key)
    )
    outflow_blocks = [m.block_number for m in movements if m.direction is Direction.OUT]
    judged = store.judged_outflows(ledger, chain.name, min(outflow_blocks)) if outflow_blocks else frozenset()
    orphaned_ids = {m.identity for m in orphaned}
    valid, invalid = partition_valid(store.instructions(ledger, chain.name), settings)
    for instruction, problems in invalid:
        log.warning(
            "event=instruction_invalid chain=%s id=%s problems=%r", chain.name, instruction.id, "; ".join(problems)
        )
    consumed = {i: tx for i, tx in store.consumed(ledger, chain.name).items() if not _consumed_by_orphan(tx, orphaned)}
    # Behind the watcher, standing allowances are the watcher's to read (at the head): read at a
    # lower pin they could resolve a break the watcher just opened, and it would open again.
    pairs = [] if ahead else _allowance_pairs(settings, chain.name, store.approval_pairs(ledger, chain.name), new)
    allowances = (
        dict(zip(pairs, adapter.allowances(_allowance_queries(settings, pairs), pin), strict=True)) if pairs else {}
    )
    flow = None
    if flow_from is not None and positions is not None:
        flow = flow_window(ledger, chain.name, flow_from, pin, positions, movements, names_on, assets)
    concerned_names = {m.wallet for m in (*movements, *orphaned)} | {w for w, _, _ in allowances}
    inputs = SurveillanceInputs(
        chain=chain.name,
        block=pin,
        now=adapter.block_time(pin),
        wallets=tuple(settings.ordered(settings.wallets[n] for n in concerned_names if n in names_on)),
        assets=tuple(assets),
        movements=movements,
        instructions=tuple(i for i in valid if i.chain == chain.name),
        consumed=consumed,
        already_matched=frozenset(judged - orphaned_ids),
        booked_tx_hashes=booked,
        inflow_grace=settings.surveillance.inflow_grace,
        allowances=allowances,
        flow=flow,
        issuer_outflows=store.issuer_outflows(ledger, chain.name),
        resolves=not ahead,
        covered_wallets=names_on,
    )
    judged_executions = execution_inputs(
        chain, settings, ledger, adapter, pinned, observed.executions, tuple(observed.unchecked), orphaned_hashes
    )
    write = store.SurveillanceWrite(
        chain=chain.name,
        checkpoint=since if ahead else pin,
        start=start,
        orphaned=frozenset(orphaned_hashes),
        observed=len(new),
        reorged=len(orphaned),
        executions=execution_records(judged_executions),
    )
    to_block = since.number if ahead else pin.number
    return ChainSurveillance(inputs, new, orphaned, write, since.number + 1, to_block, judged_executions, ahead)


def flow_window(
    ledger: Ledger,
    chain: str,
    start: store.FlowStart,
    pin: BlockRef,
    positions: Sequence[Position],
    movements: Sequence[Movement],
    wallets: Container[str],
    assets: Sequence[AssetSettings],
) -> FlowWindow:
    """The flow check's window: only the positions whose balance changed since ``start`` or
    that moved in between (any other has no residual), each with its balance at both pins;
    which positions were read at both pins, without a mapping of every one of them."""
    change = store.flow_change(ledger, start, chain, positions, wallets, {a.name for a in assets})
    moved = {
        (m.wallet, m.asset)
        for m in movements
        if start.block.number < m.block_number <= pin.number and (m.wallet, m.asset) in change.compared
    }
    values = dict(change.changed)
    still = moved - values.keys()  # moved, yet the same balance at both pins
    if still:
        values.update({(p.wallet, p.asset): (p.onchain, p.onchain) for p in positions if (p.wallet, p.asset) in still})
    return FlowWindow(
        before_block=start.block,
        after_block=pin,
        before={k: v[0] for k, v in values.items()},
        after={k: v[1] for k, v in values.items()},
        compared=change.compared,
    )


def concerned(settings: Settings, chain: str, executions: Sequence[Execution]) -> list[WalletSettings]:
    """The wallets of ``chain`` some execution may concern (reconciler.engine.executions.touches),
    in ``wallets_on`` order: its address is the sender's, a diff's, a frame's caller or callee,
    or it or one of its approvers is an authorization's authority. Found by address, never by
    going through the fleet."""
    seen: set[str] = set()
    authorities: set[str] = set()
    for e in executions:
        seen.add(e.sender)
        seen.update(e.diffs)
        for frame, _ in e.frames():
            seen.update((frame.from_address, frame.to))
        authorities.update(a.authority for a in e.authorizations if a.authority is not None)
    found: dict[str, WalletSettings] = {}
    for address in seen | authorities:
        wallet = _wallet_at(settings, chain, address)
        if wallet is not None:
            found[wallet.name] = wallet
    lowered = {a.lower() for a in authorities}
    for wallet in settings.wallets_with_approvers(chain):
        if any(a.lower() in lowered for a in wallet.approvers):
            found[wallet.name] = wallet
    return settings.ordered(found.values())


def _wallet_at(settings: Settings, chain: str, address: str) -> WalletSettings | None:
    """The wallet of ``chain`` at ``address`` (in any case), or None."""
    try:
        return settings.wallet_by_address(chain, eip55(address))
    except ValueError:
        return None  # not an address (a precompile's short form, a malformed trace)


def _at_addresses(settings: Settings, chain: str, observations: Sequence[Observation]) -> list[WalletSettings]:
    """The wallets of ``chain`` that send or receive any of ``observations``."""
    addresses = {a for o in observations for a in (o.from_address, o.to_address)}
    found = {w.name: w for w in (_wallet_at(settings, chain, a) for a in addresses) if w is not None}
    return settings.ordered(found.values())


def execution_inputs(
    chain: ChainSettings,
    settings: Settings,
    ledger: Ledger,
    adapter: ChainAdapter,
    pinned: ChainObservations,
    executions: Sequence[Execution],
    unchecked: tuple[str, ...],
    orphaned_hashes: set[str],
) -> ExecutionInputs:
    """What the execution pass judges on this chain. Each wallet is judged against its newest
    baseline (reviewed or first seen); a wallet with none yet, against its configuration at
    this pin (read now when the run did not read it: a scan)."""
    native = next((a.name for a in settings.assets_on(chain.name) if a.native), None)
    policy = ExecutionPolicy(
        chain.chain_id, frozenset(settings.presign.delegatecall_allowlist), settings.max_fee(chain.name)
    )
    profiles: tuple[WalletProfile, ...] = ()
    if executions:
        # Only the wallets an execution concerns get a profile (the analyzer passes over any
        # other): a fleet's every baseline is never read for one transaction.
        wallets = concerned(settings, chain.name, executions)
        stored = ledger.wallet_baselines_of(ledger.baseline_view(), chain.name, [w.name for w in wallets])
        configs: dict[str, WalletConfig] = picked(pinned.wallet_configs, [w.name for w in wallets])
        missing = [w for w in wallets if (chain.name, w.name) not in stored and w.name not in configs]
        if missing:
            read = adapter.wallet_configs([(w.name, w.address) for w in missing], pinned.block)
            configs.update({c.wallet: c for c in read})
        profiles = tuple(
            profile_for(w.name, w.address, w.approvers, stored.get((chain.name, w.name)) or configs.get(w.name))
            for w in wallets
        )
    orphaned = tuple(executions_store.on_blocks(ledger, chain.name, orphaned_hashes)) if orphaned_hashes else ()
    return ExecutionInputs(
        chain=chain.name,
        block=pinned.block,
        executions=tuple(executions),
        profiles=profiles,
        policy=policy,
        native_asset=native,
        unchecked=unchecked,
        orphaned=orphaned,
    )


def execution_records(inputs: ExecutionInputs) -> tuple[executions_store.ExecutionRecord, ...]:
    """Each execution of each wallet it concerns, with what the rules found and the mapping
    entries it wrote: the evidence kept, and what later pins probe."""
    records = []
    for execution in inputs.executions:
        assert execution.tx_hash is not None  # observed on chain, not simulated
        found = analyze(execution, inputs.profiles, inputs.policy)
        for profile in inputs.profiles:
            if not touches(execution, profile):
                continue
            rules = tuple(f.rule.value for f in found if f.wallet == profile.name)
            written = written_mapping_entries(execution, profile)
            records.append(
                executions_store.ExecutionRecord(
                    wallet=profile.name,
                    block_number=execution.block_number,
                    block_hash=execution.block_hash,
                    tx_hash=execution.tx_hash,
                    rules=rules,
                    owners_written=tuple(sorted(written["owners"])),
                    modules_written=tuple(sorted(written["modules"])),
                )
            )
    return tuple(records)


def _classified(
    adapter: ChainAdapter, observations: Sequence[Observation], settings: Settings, chain: ChainSettings
) -> list[Observation]:
    """The observations with who moved each token transfer (reconciler.engine.initiators): the
    transactions holding transfers of ERC-3643 assets are traced, nothing else is read."""
    issuer_tokens = [
        a.address for a in settings.assets_on(chain.name) if a.address is not None and a.erc3643
    ]
    if not observations:
        return []  # nothing moved: no wallet's settings are made for it
    wanted = initiators.transactions_to_trace(observations, issuer_tokens)
    evidence = adapter.transfer_evidence(wanted) if wanted else {}
    wallets = [w.address for w in settings.wallets_on(chain.name)]
    return initiators.annotate(observations, evidence, issuer_tokens, wallets)


def _consumed_by_orphan(tx_hash: str, orphaned: Sequence[Movement]) -> bool:
    return any(m.tx_hash == tx_hash and m.direction is Direction.OUT for m in orphaned)


def _allowance_pairs(
    settings: Settings, chain: str, stored: set[tuple[str, str, str]], new: Sequence[Movement]
) -> list[tuple[str, str, str]]:
    """(wallet, asset, spender) whose allowance to read at the pin: every spender ever approved
    by a custody wallet that its allowed_spenders do not list."""
    pairs = set(stored) | {(m.wallet, m.asset, m.counterparty) for m in new if m.direction is Direction.APPROVAL}
    out = []
    for wallet, asset, spender in sorted(pairs):
        w = settings.wallets.get(wallet)
        a = settings.assets.get(asset)
        if w is None or a is None or a.address is None or w.chain != chain or a.chain != chain:
            continue
        if spender.lower() in {s.lower() for s in w.allowed_spenders}:
            continue
        out.append((wallet, asset, spender))
    return out


def _allowance_queries(settings: Settings, pairs: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    queries = []
    for wallet, asset, spender in pairs:
        token = settings.assets[asset].address
        assert token is not None
        queries.append((token, settings.wallets[wallet].address, spender))
    return queries
