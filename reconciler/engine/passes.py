"""A run's checks as passes: pure functions from one run's observations to findings.

Invariants: a pass has one signature, ``(RunObservations) -> PassResult``, and the checks of a
run are the tuple ``PASSES``; a new check is one more pass, never another branch in the runner.
A pass sees only what was read at each chain's pinned block (and the books and baselines as
the ledger held them when the run began), returns its findings as data, and names in its
coverage every break key it looked at: a break is resolved only by a run whose coverage holds
its key, so a chain that could not be read (absent from ``chains``) resolves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.domain import BlockRef, BreakKey, BreakKind, Finding, Position
from reconciler.engine.balances import check_balances, positions_for_chain
from reconciler.engine.executions import ExecutionInputs, execution_findings, orphaned_keys
from reconciler.engine.initiators import ISSUER_CHECKS, issuer_coverage
from reconciler.engine.surveillance import SURVEILLANCE_CHECKS, Movement, SurveillanceInputs, surveillance_coverage
from reconciler.engine.wallets import (
    WALLET_CHECKS,
    WalletObservations,
    WatchedAsset,
    WatchedWallet,
    wallet_check_coverage,
)
from reconciler.inputs.settings import Settings
from reconciler.walletconfig import IssuerControls, TokenImplementation, WalletConfig


@dataclass(frozen=True, slots=True)
class ChainObservations:
    """Everything a run read from one chain, all at ``block``."""

    chain: str
    block: BlockRef
    balances: Mapping[tuple[str, str], int]  # (wallet name, asset name) -> base units
    wallet_configs: Mapping[str, WalletConfig] = field(default_factory=dict)  # by wallet name
    delegations: Mapping[str, str | None] = field(default_factory=dict)  # approver -> delegate
    controls: IssuerControls | None = None


@dataclass(frozen=True, slots=True)
class RunObservations:
    settings: Settings
    book: Mapping[tuple[str, str], int]  # (wallet name, asset name) -> book balance
    chains: Mapping[str, ChainObservations]  # only the chains that were read, in config order
    baselines: Mapping[tuple[str, str], WalletConfig] = field(default_factory=dict)  # (chain, wallet)
    token_baselines: Mapping[tuple[str, str], TokenImplementation] = field(default_factory=dict)  # (chain, token)
    surveillance: Mapping[str, SurveillanceInputs] = field(default_factory=dict)  # by chain
    orphaned: Mapping[str, tuple[Movement, ...]] = field(default_factory=dict)  # reorged away, by chain
    executions: Mapping[str, ExecutionInputs] = field(default_factory=dict)  # by chain
    # Each chain's positions, made once however many passes ask (``chain_positions``).
    _positions: dict[str, list[Position]] = field(default_factory=dict, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Span:
    """The family ``kind`` of every configured wallet x asset of ``chain``, whatever the tx hash:
    as many positions as the product, in the memory of its two sets of names."""

    kind: BreakKind
    chain: str
    wallets: Collection[str]  # a frozenset, or a chain's every wallet name (a fleet's, looked up)
    assets: frozenset[str | None]
    # False: only the family's state breaks (no tx hash), not those an event opened (a wallet's
    # configuration read at the pin says nothing of a transaction that changed it and back).
    any_tx: bool = True

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, BreakKey)
            and key.kind == self.kind
            and key.chain == self.chain
            and key.wallet in self.wallets
            and key.asset in self.assets
            and (self.any_tx or key.tx_hash is None)
        )


@dataclass(frozen=True, slots=True)
class Coverage:
    """Where a run looked: exact break keys, and whole families — a kind on one configured
    wallet x asset of a chain, whatever the tx hash — that it judged in full (every unbooked
    inflow of that position, say), so a break of the family it no longer finds is resolved. A
    family names its position: a wallet or asset that left the configuration is not judged, so
    its breaks are never resolved by not being found."""

    keys: frozenset[BreakKey] = frozenset()
    families: frozenset[tuple[BreakKind, str, str, str | None]] = frozenset()
    # Families over every wallet x asset of a chain, without a tuple per position: a kind, a
    # chain, its wallets and its assets (None for a family about the wallet itself).
    spans: tuple[Span, ...] = ()
    # What was joined with ``|``: kept as it is, not copied into one set (at 100,000 wallets each
    # pass covers 400,000 positions; a union would hold them all twice).
    parts: tuple[Coverage, ...] = ()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, BreakKey):
            return False
        if key in self.keys or (key.kind, key.chain, key.wallet, key.asset) in self.families:
            return True
        if any(key in span for span in self.spans):
            return True
        return any(key in part for part in self.parts)

    def __or__(self, other: Coverage) -> Coverage:
        joined = tuple(c for c in (self, other) if c.keys or c.families or c.spans or c.parts)
        if len(joined) == 1:
            return joined[0]
        return Coverage(parts=joined)


@dataclass(frozen=True, slots=True)
class PassResult:
    findings: tuple[Finding, ...] = ()
    coverage: Coverage = Coverage()
    notes: Mapping[BreakKey, str] = field(default_factory=dict)  # why a break it covers, if not found, is resolved


Pass = Callable[[RunObservations], PassResult]


def chain_positions(obs: RunObservations, name: str) -> list[Position]:
    """Books against chain on one chain that was read: every configured wallet x asset of it
    (made once per observations: the balance pass and the run's positions are the same rows)."""
    rows = obs._positions.get(name)
    if rows is None:
        wallets, assets = obs.settings.wallets_on(name), obs.settings.assets_on(name)
        rows = obs._positions[name] = positions_for_chain(name, wallets, assets, obs.book, obs.chains[name].balances)
    return rows


def positions(obs: RunObservations) -> list[Position]:
    """Books against chain: every configured wallet x every asset of each chain that was read."""
    return [p for name in obs.chains for p in chain_positions(obs, name)]


def balance_pass(obs: RunObservations) -> PassResult:
    """A balance_mismatch for each position outside its asset's tolerance."""
    findings: list[Finding] = []
    # A span, not a key per position: a balance_mismatch has no tx hash, and its positions are
    # every configured wallet x asset of the chain (40,000 BreakKeys at 10,000 wallets).
    spans: list[Span] = []
    tolerances = {a.name: a.tolerance for a in obs.settings.assets.values()}
    for name, chain in obs.chains.items():
        wallets, assets = obs.settings.wallets_on(name), obs.settings.assets_on(name)
        rows = chain_positions(obs, name)
        spans.append(_span(BreakKind.BALANCE_MISMATCH, name, [w.name for w in wallets], [a.name for a in assets]))
        findings.extend(check_balances(rows, tolerances, chain.block))
    return PassResult(tuple(findings), Coverage(spans=tuple(spans)))


def _span(
    kind: BreakKind, chain: str, wallets: Iterable[str], assets: Iterable[str | None], any_tx: bool = True
) -> Span:
    return Span(kind, chain, frozenset(wallets), frozenset(assets), any_tx)


def wallet_observations(obs: RunObservations, chain: ChainObservations) -> WalletObservations:
    settings = obs.settings
    tokens = [a for a in settings.assets_on(chain.chain) if a.address is not None]
    return WalletObservations(
        chain=chain.chain,
        block=chain.block,
        wallets=tuple(WatchedWallet(w.name, w.address, w.approvers) for w in settings.wallets_on(chain.chain)),
        configs=chain.wallet_configs,
        baselines={w: c for (ch, w), c in obs.baselines.items() if ch == chain.chain},
        approver_delegations=chain.delegations,
        assets=tuple(
            WatchedAsset(a.name, a.address, a.decimals, a.freeze_check, a.pause_check, a.issuer_standard)
            for a in tokens
            if a.address is not None
        ),
        controls=chain.controls,
        token_baselines={t: i for (ch, t), i in obs.token_baselines.items() if ch == chain.chain},
        balances=chain.balances,
    )


def wallet_pass(obs: RunObservations) -> PassResult:
    """Wallet configuration against its baseline (takeovers, owner and threshold changes,
    modules, guards, EIP-7702 delegations) and the issuer controls on its collateral."""
    findings: list[Finding] = []
    spans: list[Span] = []
    for chain in obs.chains.values():
        wobs = wallet_observations(obs, chain)
        for check in WALLET_CHECKS:
            findings.extend(check(wobs))
        spans += [
            _span(kind, wobs.chain, wallets, assets, any_tx=False)
            for kind, wallets, assets in wallet_check_coverage(wobs)
        ]
    return PassResult(tuple(findings), Coverage(spans=tuple(spans)))


def surveillance_pass(obs: RunObservations) -> PassResult:
    """Every movement judged: outflows against signed instructions, the issuer's own outflows
    (ERC-3643 forced transfers, recoveries, burns), unbooked inflows, approvals and allowances,
    and the balance change between pins against the movements (the flow check).
    Breaks raised from movements whose block was reorged away are resolved with that reason."""
    findings: list[Finding] = []
    coverage = Coverage()
    notes: dict[BreakKey, str] = {}
    for chain, inputs in obs.surveillance.items():
        for check in (*SURVEILLANCE_CHECKS, *ISSUER_CHECKS):
            findings.extend(check(inputs))
        if not inputs.resolves:
            continue  # followed beyond this pin: the watcher resolves what it judges there
        assets = [a.name for a in inputs.assets]
        if inputs.covered_wallets is not None:  # every wallet of the chain, without a set of them
            judged = Span(BreakKind.UNEXPECTED_INFLOW, chain, inputs.covered_wallets, frozenset(assets))
        else:
            judged = _span(BreakKind.UNEXPECTED_INFLOW, chain, [w.name for w in inputs.wallets], assets)
        coverage |= Coverage(surveillance_coverage(inputs) | issuer_coverage(inputs), spans=(judged,))
    for chain, movements in obs.orphaned.items():
        for m in movements:
            kinds = {
                "out": (BreakKind.UNAUTHORIZED_TRANSFER, BreakKind.ISSUER_FORCED_TRANSFER),
                "approval": (BreakKind.UNAPPROVED_ALLOWANCE,),
                "in": (BreakKind.UNEXPECTED_INFLOW,),
            }.get(m.direction.value, ())
            for kind in kinds:
                key = BreakKey(kind, chain, m.wallet, m.asset, m.tx_hash)
                o = m.observation
                notes[key] = (
                    f"its transaction {o.tx_hash} was reorged away: block {o.block_number} ({o.block_hash}) "
                    "is no longer on the canonical chain"
                )
                coverage |= Coverage(frozenset({key}))
    return PassResult(tuple(findings), coverage, notes)


def execution_pass(obs: RunObservations) -> PassResult:
    """Every execution of a custody wallet judged (DELEGATECALLs, storage and code changes,
    EIP-7702 authorizations, the fee ceiling): breaks that name the transaction, never resolved
    by a quiet run — only by a person, or by the reorg that took the transaction away."""
    findings: list[Finding] = []
    notes: dict[BreakKey, str] = {}
    for inputs in obs.executions.values():
        findings.extend(execution_findings(inputs))
        notes.update(orphaned_keys(inputs))
    return PassResult(tuple(findings), Coverage(frozenset(notes)), notes)


PASSES: tuple[Pass, ...] = (balance_pass, wallet_pass, surveillance_pass, execution_pass)
SCAN_PASSES: tuple[Pass, ...] = (surveillance_pass, execution_pass)


def run_passes(obs: RunObservations, passes: Iterable[Pass] = PASSES) -> PassResult:
    findings: list[Finding] = []
    coverage = Coverage()
    notes: dict[BreakKey, str] = {}
    for check in passes:
        result = check(obs)
        findings.extend(result.findings)
        coverage |= result.coverage
        notes.update(result.notes)
    return PassResult(tuple(findings), coverage, notes)
