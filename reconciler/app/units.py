"""A run of a chain as a sequence of units: chunks of its wallets, each read and judged at the
chain's one pinned block.

Invariants: the pin is taken once per chain per run, outside the units, and every unit reads
at it; a unit covers a contiguous slice of the chain's wallets in configuration order, so the
positions of the units taken in order are the chain's positions in the order a run in one
piece lists them; a unit's findings and coverage name only its own wallets (a break of a wallet
in another unit is neither found nor resolved by it); what needs every wallet of the chain (the
transfer surveillance, its flow check, the execution checks) is not a unit's: the run judges it
once per chain, from the balances and first-seen configurations the units hand back.

The chunk is ``CHUNK_WALLETS`` wallets, or ``RECONCILER_CHUNK_WALLETS`` from the environment
(tests make fleets larger than a chunk with a few wallets).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from chains.base import BalanceQuery, ChainAdapter, Source
from reconciler.domain import BlockRef, BreakKey, BreakKind, Finding, Position, Severity
from reconciler.engine.passes import (
    ChainObservations,
    Coverage,
    RunObservations,
    Span,
    balance_pass,
    positions,
    wallet_pass,
)
from reconciler.engine.wallets import ERC3643_FREEZE_VIEW
from reconciler.inputs.settings import AssetSettings, ChainSettings, Settings, WalletSettings
from reconciler.ledger import executions_store
from reconciler.ledger.books import BookView
from reconciler.ledger.runs import BaselineView
from reconciler.ledger.store import Ledger
from reconciler.spill import SpilledConfigs, SpilledPositions
from reconciler.walletconfig import FreezeQuery, TokenImplementation, WalletConfig

# Reads and judges a chain's wallets, unit by unit, at its pinned block (in this process:
# reconciler.app.run.local_units, or shared with other daemons: reconciler.app.shards);
# ``checkpoint`` is called between units.
UnitRunner = Callable[["ChainSettings", "ChainAdapter", BlockRef, Callable[[], None]], "UnitResult"]
CHUNK_WALLETS = 5000
CHUNK_ENV = "RECONCILER_CHUNK_WALLETS"
UNIT_PASSES = (balance_pass, wallet_pass)  # the passes that judge a wallet from its own readings


def chunk_wallets() -> int:
    """Wallets per chunk: ``RECONCILER_CHUNK_WALLETS`` when set, else ``CHUNK_WALLETS``."""
    raw = os.environ.get(CHUNK_ENV)
    if raw is None or raw == "":
        return CHUNK_WALLETS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{CHUNK_ENV} = {raw!r}: give a whole number of wallets, 1 or more")
    return int(raw)


def chunks(items: Sequence[WalletSettings], size: int) -> Iterator[Sequence[WalletSettings]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def shard_slice(wallets: Sequence[WalletSettings], shard: int, shards: int) -> Sequence[WalletSettings]:
    """Shard ``shard`` (0-based) of ``shards``: a contiguous slice, the first ones one longer
    when the wallets do not divide evenly; empty when there are more shards than wallets."""
    size, extra = divmod(len(wallets), shards)
    start = shard * size + min(shard, extra)
    return wallets[start : start + size + (1 if shard < extra else 0)]


def wallets_digest(wallets: Sequence[WalletSettings]) -> str:
    """What a unit's wallets are, so a process whose configuration differs refuses the unit."""
    text = "\n".join(f"{w.name}\t{w.chain}\t{w.address}" for w in wallets)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UnitResult:
    """What one unit found: its positions (in order), its findings per unit pass, where it
    looked, and the configurations of its wallets that no baseline covers yet (first seen)."""

    positions: Sequence[Position] = ()
    findings: tuple[tuple[Finding, ...], ...] = ((), ())  # one tuple per UNIT_PASSES entry
    coverage: Coverage = Coverage()
    first_seen: Sequence[WalletConfig] = ()  # on disk for a chain's units together (reconciler.spill)
    # Read by other processes (reconciler.app.workers): the endpoints that answered them, and
    # how the last unit read its balances (the adapter's read_path).
    sources: tuple[Source, ...] = ()
    read_path: str | None = None



def merged(results: Sequence[UnitResult]) -> UnitResult:
    """The units of a chain, in order, as one: positions and first-seen configurations
    concatenated, findings per pass, coverage kept as the units' parts (never copied)."""
    if len(results) == 1:
        return results[0]
    return UnitResult(
        tuple(p for r in results for p in r.positions),
        tuple(tuple(f for r in results for f in r.findings[i]) for i in range(len(UNIT_PASSES))),
        Coverage(parts=tuple(r.coverage for r in results)),
        tuple(c for r in results for c in r.first_seen),
        tuple(dict.fromkeys(s for r in results for s in r.sources)),
        next((r.read_path for r in reversed(results) if r.read_path is not None), None),
    )


def spilled(results: Iterable[UnitResult], chain: str, settings: Settings, texts: bool = False) -> UnitResult:
    """A chain's units, in order, as one (``merged``), their positions kept on disk as each
    unit's arrive (reconciler.spill), with their document texts when ``texts``: what the
    units found beside their positions is small."""
    spill = SpilledPositions(chain, {a.name: a.decimals for a in settings.assets_on(chain)}, texts)
    configs = SpilledConfigs(chain)
    rest = []
    for r in results:
        spill.extend(r.positions)
        configs.extend(r.first_seen)
        rest.append(replace(r, positions=(), first_seen=()))
    return replace(merged(rest) if rest else UnitResult(), positions=spill, first_seen=configs)


@dataclass(frozen=True, slots=True)
class UnitInputs:
    """What every unit of a run judges against: the books and wallet baselines as the ledger
    held them when the run began, read chunk by chunk (each unit its own wallets', so no
    process holds the whole fleet's; the views leave out what was committed since), the
    tokens' baselines, and the mapping entries to probe per wallet address."""

    ledger: Ledger
    books: BookView
    baselines: BaselineView
    probes: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)  # chain -> address -> entries

    @property
    def token_baselines(self) -> Mapping[tuple[str, str], TokenImplementation]:
        return self.baselines.tokens

    def book_of(self, wallets: Sequence[WalletSettings]) -> dict[tuple[str, str], int]:
        return self.ledger.book_sums_of(self.books, [w.name for w in wallets])

    def wallet_baselines_of(
        self, chain: str, wallets: Sequence[WalletSettings], observed: Mapping[str, WalletConfig]
    ) -> dict[tuple[str, str], WalletConfig]:
        return self.ledger.wallet_baselines_of(self.baselines, chain, [w.name for w in wallets], observed)


def unit_inputs(settings: Settings, ledger: Ledger, views: str | None = None) -> UnitInputs:
    """The views a run's units read through: taken now (the run's start), or those ``views``
    holds (``views_to_json`` of the run's, as its units were published)."""
    probes = {c.name: wallet_probes(c, settings, ledger) for c in settings.chains.values()}
    if views is None:
        return UnitInputs(ledger, ledger.book_view(), ledger.baseline_view(), probes)
    doc = json.loads(views)
    books = BookView(frozenset(doc["book_batches"]), bool(doc["any_books"]))
    return UnitInputs(ledger, books, ledger.baseline_view(doc["baselines_upto"], doc["tokens_upto"]), probes)


def views_to_json(inputs: UnitInputs) -> str:
    """What a helping daemon needs to read the ledger as the run's coordinator does."""
    return json.dumps(
        {
            "book_batches": sorted(inputs.books.batches),
            "any_books": inputs.books.any_entries,
            "baselines_upto": inputs.baselines.upto,
            "tokens_upto": inputs.baselines.tokens_upto,
        },
        separators=(",", ":"),
    )


def issuer_control_queries(
    tokens: Sequence[AssetSettings], wallets: Sequence[WalletSettings]
) -> tuple[list[FreezeQuery], list[str], list[tuple[str, str]]]:
    """What to read of the issuer controls at a pin: each wallet's freeze flag of every token
    with a ``freeze_check`` or ``issuer_standard = "erc3643"`` (``isFrozen``; one read when both
    name it), ``paused()`` of those with ``pause_check`` or ERC-3643, and each wallet's
    ``getFrozenTokens`` of each ERC-3643 token."""
    freezes: list[FreezeQuery] = []
    pauses: list[str] = []
    frozen: list[tuple[str, str]] = []
    for a in tokens:
        if a.address is None:
            continue
        erc3643 = a.erc3643
        views = [a.freeze_check] if a.freeze_check else []
        if erc3643 and ERC3643_FREEZE_VIEW not in views:
            views.append(ERC3643_FREEZE_VIEW)
        freezes += [FreezeQuery(a.address, w.address, view) for view in views for w in wallets]
        if a.pause_check or erc3643:
            pauses.append(a.address)
        if erc3643:
            frozen += [(a.address, w.address) for w in wallets]
    return freezes, pauses, frozen


def wallet_probes(chain: ChainSettings, settings: Settings, ledger: Ledger) -> dict[str, list[str]]:
    """Per wallet address, the addresses whose owners/modules mapping entries are read at the
    pin: its approvers, and every address an observed execution wrote an entry for."""
    written = executions_store.written_entries(ledger, chain.name)
    probed = {w.name: w for w in settings.wallets_with_approvers(chain.name)}
    for name in sorted(written):
        wallet = settings.wallets.get(name)
        if wallet is not None and wallet.chain == chain.name:
            probed.setdefault(name, wallet)
    return {w.address: sorted({*w.approvers, *written.get(w.name, ())}) for w in probed.values()}


@dataclass(frozen=True, slots=True)
class UnitReading:
    """One chunk's readings at the pin."""

    wallets: Sequence[WalletSettings]
    observed: ChainObservations


def observe_unit(
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    block: BlockRef,
    wallets: Sequence[WalletSettings],
    inputs: UnitInputs,
) -> UnitReading:
    """Read ``wallets`` (one chunk) at ``block``: balances, configurations, their approvers'
    delegations, the issuer controls on their collateral."""
    chain_probes = inputs.probes.get(chain.name, {})
    probes = {w.address: chain_probes[w.address] for w in wallets if w.address in chain_probes}
    return UnitReading(wallets, read_wallets(chain, settings, adapter, block, wallets, probes))


def read_wallets(
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    block: BlockRef,
    wallets: Sequence[WalletSettings],
    probes: Mapping[str, Sequence[str]] | None = None,
) -> ChainObservations:
    """``wallets``' balances, configurations (with the mapping entries ``probes`` names per
    address), approvers' delegations and the issuer controls on their collateral, at ``block``."""
    assets = settings.assets_on(chain.name)
    tokens = [a for a in assets if a.address is not None]
    token_addresses = [a.address for a in tokens if a.address is not None]
    pairs = [(w, a) for w in wallets for a in assets]
    queries = [BalanceQuery(w.address, a.address) for w, a in pairs]
    values = adapter.balances(queries, block) if queries else []
    configs = adapter.wallet_configs([(w.name, w.address) for w in wallets], block, probes)
    approvers = sorted({a for w in wallets for a in w.approvers})
    freezes, pauses, frozen = issuer_control_queries(tokens, wallets)
    return ChainObservations(
        chain=chain.name,
        block=block,
        balances={(w.name, a.name): v for (w, a), v in zip(pairs, values, strict=True)},
        wallet_configs={c.wallet: c for c in configs},
        delegations=adapter.delegations(approvers, block),
        controls=adapter.issuer_controls(freezes, pauses, token_addresses, block, frozen),
    )


def judge_reading(chain: ChainSettings, settings: Settings, reading: UnitReading, inputs: UnitInputs) -> UnitResult:
    """One chunk's readings judged against its books and baselines (read now, for it alone)."""
    wallets, observed = reading.wallets, reading.observed
    book = inputs.book_of(wallets)
    stored = inputs.wallet_baselines_of(chain.name, wallets, observed.wallet_configs)
    return judge_unit(chain, settings, wallets, observed, book, stored, inputs.token_baselines)


def read_units(
    chain: ChainSettings,
    settings: Settings,
    adapter: ChainAdapter,
    block: BlockRef,
    parts: Iterable[Sequence[WalletSettings]],
    inputs: UnitInputs,
    checkpoint: Callable[[], None],
) -> Iterator[UnitResult]:
    """Each chunk of ``parts`` read (``observe_unit``) and judged (``judge_reading``), in
    order, the next chunk read from the node while this one's books and baselines are read
    from the ledger and judged: a run's time is closer to the larger of the two than to their
    sum. At most two chunks are held at once; a
    failure of either stops the units (the read in flight is waited for, or cut when the run
    closes its adapter)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"units-{chain.name}") as reader:
        ahead: Future[UnitReading] | None = None
        for part in parts:
            checkpoint()
            nxt = reader.submit(observe_unit, chain, settings, adapter, block, part, inputs)
            if ahead is not None:
                yield judge_reading(chain, settings, ahead.result(), inputs)
            ahead = nxt
        if ahead is not None:
            yield judge_reading(chain, settings, ahead.result(), inputs)


def judge_unit(
    chain: ChainSettings,
    settings: Settings,
    wallets: Sequence[WalletSettings],
    observed: ChainObservations,
    book: Mapping[tuple[str, str], int],
    stored: Mapping[tuple[str, str], WalletConfig],
    token_baselines: Mapping[tuple[str, str], TokenImplementation],
) -> UnitResult:
    """The unit passes over one chunk's readings, against the chunk's books and baselines:
    the run's settings narrowed to the chunk's wallets, so a pass sees (and covers) those
    wallets only."""
    part = replace(settings, wallets={w.name: w for w in wallets})
    first_seen = tuple(c for c in observed.wallet_configs.values() if (chain.name, c.wallet) not in stored)
    tokens = dict(token_baselines)
    if observed.controls is not None:
        # A token no baseline covers is judged against itself: first seen by this run.
        for impl in observed.controls.implementations:
            tokens.setdefault((chain.name, impl.token), impl)
    obs = RunObservations(
        settings=part,
        book=book,
        chains={chain.name: observed},
        baselines={**stored, **{(c.chain, c.wallet): c for c in first_seen}},
        token_baselines=tokens,
    )
    results = [check(obs) for check in UNIT_PASSES]
    coverage = Coverage()
    names: dict[frozenset[Any], frozenset[Any]] = {}
    for r in results:
        coverage |= _sharing_names(r.coverage, names)
    return UnitResult(tuple(positions(obs)), tuple(r.findings for r in results), coverage, first_seen)


def _sharing_names(coverage: Coverage, names: dict[frozenset[Any], frozenset[Any]]) -> Coverage:
    """The same coverage, with its spans' sets of names one object per distinct set: a unit's
    passes name its chunk's wallets in a dozen spans, each built as its own frozenset (42 MB
    held at 100,000 wallets). Equal frozensets are interchangeable: what is covered is unchanged."""
    if not coverage.spans:
        return coverage
    spans = tuple(
        replace(
            s,
            wallets=names.setdefault(s.wallets, s.wallets) if isinstance(s.wallets, frozenset) else s.wallets,
            assets=names.setdefault(s.assets, s.assets),
        )
        for s in coverage.spans
    )
    return replace(coverage, spans=spans)


# ---------------------------------------------------------------- a unit's result as stored


def result_to_json(result: UnitResult) -> str:
    """A unit's result as a sharded firing keeps it in the ledger until the run is assembled."""

    def spans(c: Coverage) -> Iterator[Span]:
        yield from c.spans
        for part in c.parts:
            yield from spans(part)

    def keys(c: Coverage) -> Iterator[BreakKey]:
        yield from c.keys
        for part in c.parts:
            yield from keys(part)

    doc: dict[str, Any] = {
        "positions": [[p.wallet, p.asset, str(p.book), str(p.onchain)] for p in result.positions],
        "findings": [[_finding(f) for f in per_pass] for per_pass in result.findings],
        "spans": [
            [s.kind.value, s.chain, sorted(s.wallets), sorted(s.assets, key=lambda a: (a is None, a or "")), s.any_tx]
            for s in spans(result.coverage)
        ],
        "keys": [_key(k) for k in keys(result.coverage)],
        "first_seen": [c.to_json() for c in result.first_seen],
    }
    return json.dumps(doc, separators=(",", ":"))


def result_from_json(text: str, chain: str, settings: Settings) -> UnitResult:
    doc = json.loads(text)
    decimals = {a.name: a.decimals for a in settings.assets.values()}
    return UnitResult(
        positions=tuple(
            Position(chain, wallet, asset, decimals[asset], int(book), int(onchain))
            for wallet, asset, book, onchain in doc["positions"]
        ),
        findings=tuple(tuple(_finding_from(f) for f in per_pass) for per_pass in doc["findings"]),
        coverage=Coverage(
            keys=frozenset(_key_from(k) for k in doc["keys"]),
            spans=tuple(
                Span(BreakKind(kind), span_chain, frozenset(wallets), frozenset(assets), bool(any_tx))
                for kind, span_chain, wallets, assets, any_tx in doc["spans"]
            ),
        ),
        first_seen=tuple(WalletConfig.from_json(c) for c in doc["first_seen"]),
    )


def _key(k: BreakKey) -> list[Any]:
    return [k.kind.value, k.chain, k.wallet, k.asset, k.tx_hash]


def _key_from(raw: Sequence[Any]) -> BreakKey:
    kind, chain, wallet, asset, tx_hash = raw
    return BreakKey(BreakKind(kind), chain, wallet, asset, tx_hash)


def _finding(f: Finding) -> list[Any]:
    return [_key(f.key), f.severity.value, None if f.amount is None else str(f.amount), f.detail]


def _finding_from(raw: Sequence[Any]) -> Finding:
    key, severity, amount, detail = raw
    return Finding(_key_from(key), Severity(severity), None if amount is None else int(amount), detail)
