"""Transfer surveillance (pure): what moved in and out of custody wallets, whether a signed
instruction authorized it, and whether the observed movements explain the balance change.

Imports only the standard library and reconciler.domain/transfers/inputs.settings: no
eth-account, no web3, no SQL. Signatures are checked before instructions reach this module
(reconciler.inputs.instructions.partition_valid gives ValidInstruction).

Invariants:
- ``movements_for`` gives one Movement per (observation, custody wallet it touches): a transfer
  between two custody wallets is an ``out`` of one and an ``in`` of the other. Tokens that are
  not configured, native value on a chain without a configured native asset, and movements of
  zero value (nothing moved: the zero-value ``transferFrom`` of address-poisoning spam) are
  left out; a zero Approval (a revocation) is kept.
- ``match_outflows`` judges each outflow (``Direction.OUT``; fees are never matched) once, in
  chain order, and ends it in exactly one of ``matches`` or ``unauthorized``; an instruction is
  consumed at most once, across runs (``consumed``) and within the call. Outflows in
  ``already_matched`` are skipped. The choice is deterministic: the eligible instruction with the
  earliest ``valid_until``, then the smallest id — which, taking outflows in time order, also
  authorizes as many outflows as any assignment could.
- ``flow_residuals``: per wallet x asset, residual = (after - before) - (in - out - fees +
  recognized), so it is zero exactly when the movements (plus recognized issuer actions not in
  the logs) explain the change. An MMF issuer's mint into a wallet is a Transfer from the zero
  address: it is counted once, as an inflow, never again as a recognized action. A burn from a
  wallet is an outflow like any other: it explains the balance change; one the issuer made
  (``initiator`` issuer: an ERC-3643 agent's burn, forced transfer or recovery) is never matched
  to an instruction (reconciler.engine.initiators judges it), any other needs an instruction to
  the zero address (a redemption the firm signed) or it is unauthorized.
- Each check is a pass ``(SurveillanceInputs) -> list[Finding]`` listed in
  ``SURVEILLANCE_CHECKS``; it returns breaks as data, one finding per BreakKey, and raises only
  on a caller's bug. ``surveillance_coverage`` names the keys a run may resolve by not finding
  them: state-like ones only (an inflow that books now carry, a standing allowance). Event-like
  ones (an unauthorized transfer, an Approval log, an unexplained change over a window) are
  never resolved by a quiet run: a person resolves them, or a reorg that removed the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reconciler.domain import AssetKind, BlockRef, BreakKey, BreakKind, Finding, Severity, format_amount
from reconciler.inputs.settings import DEFAULT_INFLOW_GRACE, AssetSettings, WalletSettings
from reconciler.transfers import ZERO_ADDRESS, Direction, Initiator, MovementKind, Observation, ValidInstruction

WalletAsset = tuple[str, str]  # (wallet name, asset name)
AllowanceKey = tuple[str, str, str]  # (wallet name, asset name, spender address)
ObservationId = tuple[str, str, str, str]  # Observation.identity


def _trace_path(position: str | None) -> tuple[int, ...]:
    if not position:
        return ()
    # A named position (the scanner's "fee") sorts after every call of its transaction.
    return tuple(int(p) if p.isdigit() else 2**63 for p in position.split("."))


def chain_order(obs: Observation) -> tuple[int, int, int, str, tuple[int, ...], str]:
    """Where an observation sits in its chain: block number, then position in the block.

    Logs order by their block-wide log index. Native movements carry no transaction index, so
    within one block they come after the logs, ordered by transaction hash and call path: a
    fixed order, though not always the order of execution.
    """
    is_log = obs.log_index is not None
    return (
        obs.block_number,
        0 if is_log else 1,
        obs.log_index if obs.log_index is not None else 0,
        obs.tx_hash,
        _trace_path(obs.trace_position),
        obs.trace_position or "",
    )


_DIRECTION_RANK = {Direction.OUT: 0, Direction.APPROVAL: 1, Direction.FEE: 2, Direction.IN: 3}


@dataclass(frozen=True, slots=True)
class Movement:
    """One observation as one custody wallet sees it. ``counterparty`` is the other side: the
    recipient of an out, the sender of an in, the spender of an approval, the fee's recipient."""

    wallet: str
    asset: str
    decimals: int
    direction: Direction
    counterparty: str
    amount: int
    observation: Observation

    @property
    def chain(self) -> str:
        return self.observation.chain

    @property
    def block_number(self) -> int:
        return self.observation.block_number

    @property
    def block_time(self) -> int:
        return self.observation.block_time

    @property
    def tx_hash(self) -> str:
        return self.observation.tx_hash

    @property
    def identity(self) -> ObservationId:
        return self.observation.identity

    @property
    def wallet_address(self) -> str:
        obs = self.observation
        return obs.to_address if self.direction is Direction.IN else obs.from_address

    def sort_key(self) -> tuple[tuple[int, int, int, str, tuple[int, ...], str], int, str]:
        """Chain order; one observation's sides as the sender then the receiver sees them."""
        return (chain_order(self.observation), _DIRECTION_RANK[self.direction], self.wallet)

    def describe(self) -> str:
        """``1.000000 USDC from 0x… to 0x… in tx 0x… at block N (0x…), log:3``"""
        obs = self.observation
        return (
            f"{format_amount(self.amount, self.decimals)} {self.asset} from {obs.from_address} to {obs.to_address} "
            f"in tx {obs.tx_hash} at block {obs.block_number} ({obs.block_hash}), {obs.position}"
        )


def movements_for(
    observations: Iterable[Observation],
    wallets: Sequence[WalletSettings],
    assets: Sequence[AssetSettings],
) -> list[Movement]:
    """Every movement of a configured wallet in the observations, in chain order.

    Addresses compare case-insensitively. Raises ValueError on two observations with one
    identity (counted twice they would explain a change twice) or a negative amount.
    """
    wallet_at = {(w.chain, w.address.lower()): w for w in wallets}
    token_at = {(a.chain, a.address.lower()): a for a in assets if a.address is not None and not a.native}
    native_of = {a.chain: a for a in assets if a.native}
    # The kind is part of what is unique: a transaction's own value and its fee share the
    # identity (both at trace position "").
    seen: set[tuple[ObservationId, MovementKind]] = set()
    out: list[Movement] = []
    for obs in observations:
        if (obs.identity, obs.kind) in seen:
            raise ValueError(f"observation {obs.identity} ({obs.kind.value}) was given twice")
        seen.add((obs.identity, obs.kind))
        if obs.amount < 0:
            raise ValueError(f"observation {obs.identity} has a negative amount {obs.amount}")
        if obs.kind in (MovementKind.TOKEN, MovementKind.APPROVAL):
            if obs.token is None:
                raise ValueError(f"{obs.kind.value} observation {obs.identity} names no token")
            asset = token_at.get((obs.chain, obs.token.lower()))
        else:
            asset = native_of.get(obs.chain)
        if asset is None:
            continue
        if obs.amount == 0 and obs.kind is not MovementKind.APPROVAL:
            continue
        sender = wallet_at.get((obs.chain, obs.from_address.lower()))
        receiver = wallet_at.get((obs.chain, obs.to_address.lower()))
        touched: list[tuple[WalletSettings, Direction, str]] = []
        if obs.kind in (MovementKind.TOKEN, MovementKind.NATIVE):
            if sender is not None:
                touched.append((sender, Direction.OUT, obs.to_address))
            if receiver is not None:
                touched.append((receiver, Direction.IN, obs.from_address))
        elif sender is not None:
            direction = Direction.APPROVAL if obs.kind is MovementKind.APPROVAL else Direction.FEE
            touched.append((sender, direction, obs.to_address))
        out += [
            Movement(
                wallet=wallet.name,
                asset=asset.name,
                decimals=asset.decimals,
                direction=direction,
                counterparty=counterparty,
                amount=obs.amount,
                observation=obs,
            )
            for wallet, direction, counterparty in touched
        ]
    return sorted(out, key=Movement.sort_key)


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Each judged outflow in exactly one of the two, in chain order."""

    matches: tuple[tuple[Movement, str], ...]  # (outflow, id of the instruction it consumed)
    unauthorized: tuple[Movement, ...]


_MatchKey = tuple[str, str, str, str, int]


def _outflow_key(m: Movement) -> _MatchKey:
    return (m.chain, m.wallet, m.asset, m.counterparty.lower(), m.amount)


def _instruction_key(i: ValidInstruction) -> _MatchKey:
    return (i.chain, i.wallet, i.asset, i.to.lower(), i.amount)


def _judged_outflows(outflows: Iterable[Movement], already_matched: Set[ObservationId]) -> list[Movement]:
    # The issuer's own actions (an ERC-3643 forced transfer, recovery or burn) are not an
    # authorization question: reconciler.engine.initiators judges them, never an instruction.
    judged = [
        m
        for m in outflows
        if m.direction is Direction.OUT
        and m.identity not in already_matched
        and m.observation.initiator is not Initiator.ISSUER
    ]
    identities = [m.identity for m in judged]
    if len(set(identities)) != len(identities):
        raise ValueError("an outflow was given twice; each is judged once")
    return sorted(judged, key=Movement.sort_key)


def match_outflows(
    outflows: Sequence[Movement],
    instructions: Sequence[ValidInstruction],
    consumed: Mapping[str, str],
    already_matched: Set[ObservationId] = frozenset(),
) -> MatchResult:
    """Match each outflow, in chain order, to one unconsumed instruction with the same chain,
    wallet, asset, recipient and exact amount whose ``valid_until`` is not before the outflow's
    block time; otherwise it is unauthorized.

    ``consumed`` maps instruction id -> the tx hash that consumed it in an earlier run; those
    are never used again. Movements that are not outflows (ins, approvals, fees) are ignored,
    and so are outflows whose identity is in ``already_matched`` (judged in an earlier run: put
    flagged ones there too, so that an instruction imported afterwards cannot authorize a
    transfer after the fact). Raises ValueError on two instructions with one id.
    """
    pool: dict[_MatchKey, list[ValidInstruction]] = {}
    ids: set[str] = set()
    for instr in instructions:
        if instr.id in ids:
            raise ValueError(f"instruction {instr.id!r} was given twice")
        ids.add(instr.id)
        if instr.id not in consumed:
            pool.setdefault(_instruction_key(instr), []).append(instr)
    for candidates in pool.values():
        candidates.sort(key=lambda i: (i.valid_until, i.id))
    used: set[str] = set()
    matches: list[tuple[Movement, str]] = []
    unauthorized: list[Movement] = []
    for outflow in _judged_outflows(outflows, already_matched):
        chosen = next(
            (
                i
                for i in pool.get(_outflow_key(outflow), ())
                if i.id not in used and i.valid_until >= outflow.block_time
            ),
            None,
        )
        if chosen is None:
            unauthorized.append(outflow)
        else:
            used.add(chosen.id)
            matches.append((outflow, chosen.id))
    return MatchResult(matches=tuple(matches), unauthorized=tuple(unauthorized))


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True, slots=True)
class Residual:
    """One wallet x asset between two pins: the balance change against what explains it."""

    wallet: str
    asset: str
    before: int
    after: int
    inflows: int
    outflows: int
    fees: int
    recognized: int

    @property
    def change(self) -> int:
        return self.after - self.before

    @property
    def explained(self) -> int:
        return self.inflows - self.outflows - self.fees + self.recognized

    @property
    def residual(self) -> int:
        return self.change - self.explained


def flow_residuals(
    before: Mapping[WalletAsset, int],
    after: Mapping[WalletAsset, int],
    movements: Sequence[Movement],
    recognized: Mapping[WalletAsset, int] | None = None,
) -> list[Residual]:
    """One Residual per wallet x asset of ``before`` (sorted), zero ones included.

    ``movements`` are those of the blocks after ``before``'s pin up to ``after``'s; approvals
    move nothing and are ignored. ``recognized`` holds issuer actions that explain a change
    without appearing among the movements (none today: an MMF mint is a logged inflow). Raises
    ValueError when the two pins read different wallet x asset pairs, and KeyError for a
    movement or recognized action of a pair that was not read.
    """
    if set(before) != set(after):
        missing = sorted(set(before) ^ set(after))
        raise ValueError(f"balances were read at one pin only for {missing}")
    recognized = recognized or {}
    totals = {key: [0, 0, 0] for key in before}
    for m in movements:
        key = (m.wallet, m.asset)
        if key not in totals:
            raise KeyError(f"a movement of {m.wallet} x {m.asset}, whose balances were not read")
        slot = {Direction.IN: 0, Direction.OUT: 1, Direction.FEE: 2}.get(m.direction)
        if slot is not None:
            totals[key][slot] += m.amount
    for key in recognized:
        if key not in totals:
            raise KeyError(f"a recognized issuer action of {key[0]} x {key[1]}, whose balances were not read")
    return [
        Residual(
            wallet=wallet,
            asset=asset,
            before=before[(wallet, asset)],
            after=after[(wallet, asset)],
            inflows=totals[(wallet, asset)][0],
            outflows=totals[(wallet, asset)][1],
            fees=totals[(wallet, asset)][2],
            recognized=recognized.get((wallet, asset), 0),
        )
        for wallet, asset in sorted(totals)
    ]


# --------------------------------------------------------------------------- reorgs


def common_ancestor(stored: Sequence[tuple[int, str]], canonical: Callable[[int], str | None]) -> int | None:
    """The highest stored block whose hash the canonical chain still has at that number.

    ``stored`` is (number, hash) pairs, strictly descending (checked before any lookup);
    ``canonical(n)`` is the canonical chain's hash at ``n``, or None where it has no such
    block (it became shorter). None: no stored block survived, rescan from the start. Hashes
    compare case-insensitively. Only the stored numbers are asked, top down, stopping at the
    first match.
    """
    for (upper, _), (lower, _) in zip(stored, stored[1:], strict=False):
        if lower >= upper:
            raise ValueError(f"stored blocks must be strictly descending: {upper} then {lower}")
    if stored and stored[-1][0] < 0:
        raise ValueError(f"block number {stored[-1][0]} is negative")
    for number, block_hash in stored:
        found = canonical(number)
        if found is not None and found.lower() == block_hash.lower():
            return number
    return None


# --------------------------------------------------------------------------- passes


@dataclass(frozen=True, slots=True)
class FlowWindow:
    """Balances at the previous complete run's pin and at this one, per wallet x asset.
    ``compared``: the positions read at both pins, when ``before`` and ``after`` hold only
    some of them (those that changed or moved; any other has no residual); None: the keys of
    ``before``."""

    before_block: BlockRef
    after_block: BlockRef
    before: Mapping[WalletAsset, int]
    after: Mapping[WalletAsset, int]
    recognized: Mapping[WalletAsset, int] = field(default_factory=dict)
    compared: Container[WalletAsset] | None = None


@dataclass(frozen=True, slots=True)
class SurveillanceInputs:
    """What the surveillance passes need about one chain at one pinned block.

    - ``movements``: from ``movements_for`` over observations still on the canonical chain
      (never ``reorged`` ones), covering at least the blocks the run judges. Each pass takes
      what concerns it: outflows not in ``already_matched``; inflows (pass those whose
      ``unexpected_inflow`` may be open, so that booking them resolves it); for the flow check
      only the blocks of ``flow``'s window.
    - ``instructions``: every valid instruction of the chain, open or consumed; ``consumed``
      maps the consumed ones to their tx hash.
    - ``booked_tx_hashes``: tx hashes that book entries carry.
    - ``now``: Unix seconds; use the pinned block's timestamp so that re-running the same pins
      gives the same result. ``inflow_grace``: how old an unbooked inflow must be to be a break.
    - ``allowances``: (wallet, asset, spender) -> allowance at the pin, for the pairs read;
      None when none were read.
    - ``flow``: None when there is no previous complete run to compare with.
    - ``issuer_outflows``: (wallet, asset, tx hash) of the issuer outflows observed by earlier
      runs, so that one whose transaction the books now carry resolves its break.
    - ``resolves``: False when the chain is followed beyond this pin (see the field).
    """

    chain: str
    block: BlockRef
    now: int
    wallets: tuple[WalletSettings, ...]
    assets: tuple[AssetSettings, ...]
    movements: tuple[Movement, ...] = ()
    instructions: tuple[ValidInstruction, ...] = ()
    consumed: Mapping[str, str] = field(default_factory=dict)
    already_matched: frozenset[ObservationId] = frozenset()
    booked_tx_hashes: frozenset[str] = frozenset()
    inflow_grace: timedelta = DEFAULT_INFLOW_GRACE
    allowances: Mapping[AllowanceKey, int] | None = None
    flow: FlowWindow | None = None
    issuer_outflows: frozenset[tuple[str, str, str]] = frozenset()  # (wallet, asset, tx hash) stored before
    # False behind the daemon's watcher (it judged beyond this pin, at the head): what the
    # watcher judges there (unbooked inflows, allowances, issuer outflows) is left for it to
    # resolve; a lower pin's "not found" would resolve what it just found, and it would open again.
    resolves: bool = True
    # Every wallet name of the chain, when ``wallets`` holds only those the movements,
    # allowances and flows concern (a large fleet): what a run that judged every inflow covers.
    covered_wallets: Collection[str] | None = None

    def __post_init__(self) -> None:
        for m in self.movements:
            if m.chain != self.chain:
                raise ValueError(f"a movement on chain {m.chain} given to the surveillance of {self.chain}")
        for i in self.instructions:
            if i.chain != self.chain:
                raise ValueError(f"instruction {i.id!r} of chain {i.chain} given to the surveillance of {self.chain}")

    def wallet(self, name: str) -> WalletSettings:
        for w in self.wallets:
            if w.name == name:
                return w
        raise KeyError(f"wallet {name} is not among the surveillance's wallets")

    def asset(self, name: str) -> AssetSettings:
        for a in self.assets:
            if a.name == name:
                return a
        raise KeyError(f"asset {name} is not among the surveillance's assets")


def _at(block: BlockRef) -> str:
    return f"block {block.number} ({block.hash})"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _instant(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _grouped(movements: Iterable[Movement], key: Callable[[Movement], BreakKey]) -> dict[BreakKey, list[Movement]]:
    groups: dict[BreakKey, list[Movement]] = {}
    for m in movements:
        groups.setdefault(key(m), []).append(m)
    return groups


def _near_misses(outflow: Movement, inputs: SurveillanceInputs, used: Mapping[str, Movement]) -> list[str]:
    """Why instructions for the same wallet, asset, recipient and amount did not authorize it."""
    key = _outflow_key(outflow)
    notes = []
    for instr in sorted(inputs.instructions, key=lambda i: (i.valid_until, i.id)):
        if _instruction_key(instr) != key:
            continue
        if instr.id in inputs.consumed:
            notes.append(f"instruction {instr.id!r} was already consumed by tx {inputs.consumed[instr.id]}")
        elif instr.id in used:
            notes.append(f"instruction {instr.id!r} was consumed by tx {used[instr.id].tx_hash}")
        elif instr.valid_until < outflow.block_time:
            notes.append(
                f"instruction {instr.id!r} expired at {_instant(instr.valid_until)}, "
                f"before the block's time {_instant(outflow.block_time)}"
            )
    return notes


def check_outflows(inputs: SurveillanceInputs) -> list[Finding]:
    """An ``unauthorized_transfer`` (critical) per wallet x asset x tx with an outflow that no
    valid, unconsumed, unexpired instruction authorizes; amount = minus what left."""
    result = match_outflows(inputs.movements, inputs.instructions, inputs.consumed, inputs.already_matched)
    used = {instr_id: m for m, instr_id in result.matches}
    groups = _grouped(
        result.unauthorized,
        lambda m: BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, inputs.chain, m.wallet, m.asset, m.tx_hash),
    )
    findings = []
    for key, outflows in groups.items():
        parts = []
        for m in outflows:
            notes = _near_misses(m, inputs, used)
            parts.append(f"{m.describe()}" + (f" ({'; '.join(notes)})" if notes else ""))
        findings.append(
            Finding(
                key=key,
                severity=Severity.CRITICAL,
                amount=-sum(m.amount for m in outflows),
                detail=(
                    f"{key.wallet} sent without a signed instruction: "
                    + "; ".join(parts)
                    + ". No unconsumed valid instruction has this chain, wallet, asset, recipient and exact "
                    "amount with valid_until at or after the block's time"
                ),
            )
        )
    return findings


def _is_issuer_mint(m: Movement, inputs: SurveillanceInputs) -> bool:
    """An issuer's inflow: an MMF mint (a dividend paid as shares), or anything the issuer moved
    in (an ERC-3643 mint, forced transfer or recovery into the wallet)."""
    if m.direction is not Direction.IN or m.observation.kind is not MovementKind.TOKEN:
        return False
    if m.observation.initiator is Initiator.ISSUER:
        return True
    return m.observation.from_address.lower() == ZERO_ADDRESS and inputs.asset(m.asset).kind is AssetKind.MMF


def _judged_inflows(inputs: SurveillanceInputs) -> list[Movement]:
    """Inflows old enough to judge (block time + grace <= now) and not the issuer's (an MMF mint,
    an ERC-3643 issuer action into the wallet)."""
    grace = int(inputs.inflow_grace.total_seconds())
    return [
        m
        for m in inputs.movements
        if m.direction is Direction.IN and m.block_time + grace <= inputs.now and not _is_issuer_mint(m, inputs)
    ]


def _inflow_key(inputs: SurveillanceInputs, m: Movement) -> BreakKey:
    return BreakKey(BreakKind.UNEXPECTED_INFLOW, inputs.chain, m.wallet, m.asset, m.tx_hash)


def check_inflows(inputs: SurveillanceInputs) -> list[Finding]:
    """An ``unexpected_inflow`` (warning) per wallet x asset x tx that received value no book
    entry's tx hash names, once the block is ``inflow_grace`` old; the issuer's inflows (MMF
    mints: dividends paid as shares; ERC-3643 mints, forced transfers and recoveries in) never
    are. An inflow from another custody wallet is judged the same way: the books should carry
    both legs of an internal move."""
    booked = {h.lower() for h in inputs.booked_tx_hashes}
    unbooked = [m for m in _judged_inflows(inputs) if m.tx_hash.lower() not in booked]
    findings = []
    for key, inflows in _grouped(unbooked, lambda m: _inflow_key(inputs, m)).items():
        findings.append(
            Finding(
                key=key,
                severity=Severity.WARNING,
                amount=sum(m.amount for m in inflows),
                detail=(
                    f"{key.wallet} received "
                    + "; ".join(m.describe() for m in inflows)
                    + f"; no book entry carries this tx hash {_duration(inputs.inflow_grace)} after the block: "
                    "book it with its tx_hash, or investigate where it came from"
                ),
            )
        )
    return findings


def check_allowances(inputs: SurveillanceInputs) -> list[Finding]:
    """``unapproved_allowance`` (critical) for allowances above zero to a spender not in the
    wallet's ``allowed_spenders``.

    - An Approval log (``approve`` or ``permit``): keyed on its tx hash, one finding per wallet
      x asset x tx (several spenders in one tx are listed together); an event, resolved by a
      person.
    - A standing allowance at the pin: keyed with no tx hash, one finding per wallet x asset
      listing every such spender (BreakKey has no spender); resolved by the run that reads all
      of them back at zero. Amount: the largest allowance.
    """
    allowed = {w.name: {s.lower() for s in w.allowed_spenders} for w in inputs.wallets}

    def unapproved(wallet: str, spender: str) -> bool:
        if wallet not in allowed:
            raise KeyError(f"wallet {wallet} is not among the surveillance's wallets")
        return spender.lower() not in allowed[wallet]

    findings = []
    granted = [
        m
        for m in inputs.movements
        if m.direction is Direction.APPROVAL and m.amount > 0 and unapproved(m.wallet, m.counterparty)
    ]
    groups = _grouped(
        granted, lambda m: BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, inputs.chain, m.wallet, m.asset, m.tx_hash)
    )
    for key, approvals in groups.items():
        listed = "; ".join(
            f"{format_amount(m.amount, m.decimals)} {m.asset} to spender {m.counterparty} in tx {m.tx_hash} "
            f"at block {m.block_number} ({m.observation.block_hash}), {m.observation.position}"
            for m in approvals
        )
        findings.append(
            Finding(
                key=key,
                severity=Severity.CRITICAL,
                amount=max(m.amount for m in approvals),
                detail=(
                    f"{key.wallet} ({approvals[0].wallet_address}) approved {listed}; "
                    f"not in wallets.{key.wallet}.allowed_spenders"
                ),
            )
        )
    standing: dict[WalletAsset, list[tuple[str, int]]] = {}
    for (wallet, asset, spender), amount in sorted((inputs.allowances or {}).items()):
        if amount > 0 and unapproved(wallet, spender):
            standing.setdefault((wallet, asset), []).append((spender, amount))
    for (wallet, asset), spenders in standing.items():
        decimals = inputs.asset(asset).decimals
        listed = ", ".join(f"{spender} may spend {format_amount(amount, decimals)}" for spender, amount in spenders)
        findings.append(
            Finding(
                key=BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, inputs.chain, wallet, asset, None),
                severity=Severity.CRITICAL,
                amount=max(amount for _, amount in spenders),
                detail=(
                    f"{wallet} ({inputs.wallet(wallet).address}) x {asset} at {_at(inputs.block)}: {listed}; "
                    f"not in wallets.{wallet}.allowed_spenders"
                ),
            )
        )
    return findings


def check_flows(inputs: SurveillanceInputs) -> list[Finding]:
    """An ``unexplained_balance_change`` (critical) per wallet x asset whose balance change
    between ``flow.before_block`` and ``flow.after_block`` the movements of the blocks in
    between do not explain; amount = the residual. Keyed without a tx hash (there is none): a
    later window's residual for the same position is that break seen again."""
    flow = inputs.flow
    if flow is None:
        return []
    # Only the positions read at both pins are compared (a wallet or asset added since has no
    # "before"); their movements in the blocks between are what must explain the change.
    compared = flow.before if flow.compared is None else flow.compared
    window = [
        m
        for m in inputs.movements
        if flow.before_block.number < m.block_number <= flow.after_block.number and (m.wallet, m.asset) in compared
    ]
    # Only positions whose balance moved or that had movements can have a residual: at 10,000
    # wallets x 4 assets almost none did, and a Residual for each was most of this check.
    before, after = flow.before, flow.after
    if before.keys() == after.keys():
        moved = {k for k, v in before.items() if after[k] != v}
        moved |= {(m.wallet, m.asset) for m in window} | set(flow.recognized or {})
        before = {k: v for k, v in before.items() if k in moved}
        after = {k: v for k, v in after.items() if k in moved}
    findings = []
    for r in flow_residuals(before, after, window, flow.recognized):
        if r.residual == 0:
            continue
        decimals = inputs.asset(r.asset).decimals

        def show(units: int, decimals: int = decimals) -> str:
            return format_amount(units, decimals)

        recognized = f", recognized issuer actions {show(r.recognized)}" if r.recognized else ""
        findings.append(
            Finding(
                key=BreakKey(BreakKind.UNEXPLAINED_BALANCE_CHANGE, inputs.chain, r.wallet, r.asset, None),
                severity=Severity.CRITICAL,
                amount=r.residual,
                detail=(
                    f"{r.wallet} x {r.asset}: balance {show(r.before)} at {_at(flow.before_block)}, "
                    f"{show(r.after)} at {_at(flow.after_block)}: changed by {show(r.change)}; observed movements "
                    f"explain {show(r.explained)} (in {show(r.inflows)}, out {show(r.outflows)}, "
                    f"gas {show(r.fees)}{recognized}); {show(r.residual)} {r.asset} moved without an observed event"
                ),
            )
        )
    return findings


SurveillanceCheck = Callable[[SurveillanceInputs], list[Finding]]
SURVEILLANCE_CHECKS: tuple[SurveillanceCheck, ...] = (check_flows, check_outflows, check_inflows, check_allowances)


def surveillance_coverage(inputs: SurveillanceInputs) -> frozenset[BreakKey]:
    """The keys a run may resolve by not finding them: the ``unexpected_inflow`` of each
    inflow it judged (its books may now carry it) and the standing ``unapproved_allowance`` of
    each wallet x asset whose allowances it read. Never an event-like key (see the module)."""
    keys = {_inflow_key(inputs, m) for m in _judged_inflows(inputs)}
    keys |= {
        BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, inputs.chain, wallet, asset, None)
        for wallet, asset, _ in (inputs.allowances or {})
    }
    return frozenset(keys)
