"""Who moved a token transfer — the holder itself, a spender, or the token's issuer — and the
findings about issuer actions on custody wallets (pure: standard library, eth-hash and the core).

A permissioned fund token (ERC-3643, "T-REX") lets the issuer's agents move any holder's tokens
(``forcedTransfer``, ``batchForcedTransfer``, ``recoveryAddress``), mint and burn, each with a
plain ``Transfer`` log. Which of them moved a custody wallet's tokens shows only in the
transaction's calls: the call into the token that emitted the log (its function selector and its
caller), and the events the token emitted with it (``RecoverySuccess``; without a trace, also
``TokensUnfrozen`` just before the ``Transfer``).

Invariants:
- Classification comes from the token's call frame and the token's own events, never from who
  sent the transaction alone: an agent may be a contract, and a relayer may send anyone's call.
- Nothing uncertain becomes an issuer action. A Transfer that cannot be found in the trace, that
  is found in frames that tell different stories, or that neither the trace nor (where the node
  cannot trace) the transaction and its receipt explain, gets no initiator (None) and is judged
  as any movement is: an outflow is an ``unauthorized_transfer`` unless an instruction
  authorizes it. The classification can turn one critical finding into another, never into
  silence: a holder's own transfer (the wallet's key, or a spender it approved) stays what it
  was.
- An issuer outflow of a custody wallet is an ``issuer_forced_transfer`` (critical), keyed like
  an ``unauthorized_transfer`` (chain, wallet, asset, tx hash), judged once (where it is first
  observed) and never matched against instructions: it is not an authorization question. A
  book entry carrying its tx hash answers it: booked before it is judged it raises nothing, and
  the run that finds it booked later resolves its break.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from eth_hash.auto import keccak

from reconciler.domain import BreakKey, BreakKind, Finding, Severity, eip55
from reconciler.engine.executions import Frame, Log
from reconciler.engine.surveillance import Movement, SurveillanceInputs
from reconciler.transfers import ZERO_ADDRESS, Direction, Initiator, MovementKind, Observation


def _selector(signature: str) -> bytes:
    return bytes(keccak(signature.encode("ascii")))[:4]


def _topic(signature: str) -> str:
    return "0x" + bytes(keccak(signature.encode("ascii"))).hex()


# The issuer's (agent's) functions of an ERC-3643 token that move a holder's tokens.
ISSUER_FUNCTIONS: Mapping[bytes, str] = {
    _selector(signature): signature.partition("(")[0]
    for signature in (
        "forcedTransfer(address,address,uint256)",  # 0x9fc1d0e7
        "batchForcedTransfer(address[],address[],uint256[])",  # 0x42a47abc
        "recoveryAddress(address,address,address)",  # 0x9285948a
        "mint(address,uint256)",  # 0x40c10f19
        "burn(address,uint256)",  # 0x9dc29fac
        "batchMint(address[],uint256[])",  # 0x68573107
        "batchBurn(address[],uint256[])",  # 0x4a6cc677
    )
}
TRANSFER_FROM = _selector("transferFrom(address,address,uint256)")  # 0x23b872dd
TRANSFER_TOPIC = _topic("Transfer(address,address,uint256)")
TOKENS_UNFROZEN_TOPIC = _topic("TokensUnfrozen(address,uint256)")
RECOVERY_SUCCESS_TOPIC = _topic("RecoverySuccess(address,address,address)")
_IN_CALLERS_CONTEXT = frozenset({"DELEGATECALL", "CALLCODE"})  # code run in the calling account


@dataclass(frozen=True, slots=True)
class ReceiptLog:
    """One log of a transaction's receipt: ``index`` is its log index in the block."""

    index: int
    log: Log


@dataclass(frozen=True, slots=True)
class TxEvidence:
    """What the chain says about one transaction: its sender, target and input, and its call
    tree with each frame's logs (``root``, callTracer with ``withLog``). Where the node cannot
    trace, ``root`` is None and ``receipt`` holds the receipt's logs instead."""

    tx_hash: str
    sender: str
    to: str | None
    input: bytes
    root: Frame | None = None
    receipt: tuple[ReceiptLog, ...] = ()


@dataclass(frozen=True, slots=True)
class Classification:
    """Who moved one Transfer's tokens. ``agent`` is the account that called the token (None
    where only the receipt was seen: then the transaction's sender is all that is known)."""

    initiator: Initiator
    function: str | None
    agent: str | None


def _address_of(topic: str) -> str | None:
    """The address in an indexed-address topic (EIP-55); None when it is not one."""
    if len(topic) != 66 or topic[2:26] != "0" * 24:
        return None
    return eip55("0x" + topic[26:])


def _is_transfer_of(log: Log, obs: Observation) -> bool:
    """Whether ``log`` is the Transfer that ``obs`` was decoded from (same emitter, parties and
    amount)."""
    return (
        obs.token is not None
        and log.address.lower() == obs.token.lower()
        and len(log.topics) == 3
        and log.topics[0] == TRANSFER_TOPIC
        and (_address_of(log.topics[1]) or "").lower() == obs.from_address.lower()
        and (_address_of(log.topics[2]) or "").lower() == obs.to_address.lower()
        and len(log.data) == 32
        and int.from_bytes(log.data, "big") == obs.amount
    )


def _names(log: Log, token: str, topic: str, *parties: str) -> bool:
    """Whether ``log`` is the token's event ``topic`` whose first indexed addresses are ``parties``."""
    if log.address.lower() != token.lower() or not log.topics or log.topics[0] != topic:
        return False
    if len(log.topics) < 1 + len(parties):
        return False
    return all((_address_of(t) or "").lower() == p.lower() for t, p in zip(log.topics[1:], parties, strict=False))


def _from_call(selector: bytes, caller: str | None, obs: Observation, with_it: Sequence[Log]) -> Classification | None:
    """The classification of a Transfer emitted by a call into the token with ``selector`` made
    by ``caller`` (None: not known), given the token's other logs of that call (``with_it``)."""
    token = obs.token or ""
    name = ISSUER_FUNCTIONS.get(selector)
    if name is not None:
        return Classification(Initiator.ISSUER, name, caller)
    if any(_names(log, token, RECOVERY_SUCCESS_TOPIC, obs.from_address, obs.to_address) for log in with_it):
        return Classification(Initiator.ISSUER, "recoveryAddress", caller)
    if obs.from_address.lower() == ZERO_ADDRESS:  # only the token mints: its issuer
        return Classification(Initiator.ISSUER, "mint", caller)
    if caller is not None and caller.lower() == obs.from_address.lower():
        return Classification(Initiator.WALLET, None, caller)
    if caller is not None and selector == TRANSFER_FROM:
        return Classification(Initiator.SPENDER, None, caller)
    return None


def _token_frames(root: Frame) -> list[tuple[Frame, Frame]]:
    """(emitting frame, token call frame) for every frame that emitted a log and did not revert
    (nor any ancestor). The token call frame is the emitting frame, or — where the token's code
    ran by DELEGATECALL (a proxy's implementation) — the nearest call above it into an account:
    its input is the token's function and its ``from`` the token's caller."""
    out: list[tuple[Frame, Frame]] = []
    stack: list[tuple[Frame, tuple[Frame, ...], bool]] = [(root, (), False)]
    while stack:  # iterative: a call tree can be 1,024 frames deep
        frame, ancestors, failed = stack.pop()
        failed = failed or frame.error is not None
        if failed:
            continue
        if frame.logs:
            chain = (*ancestors, frame)
            i = len(chain) - 1
            while i > 0 and chain[i].kind in _IN_CALLERS_CONTEXT:
                i -= 1
            out.append((frame, chain[i]))
        stack.extend((child, (*ancestors, frame), failed) for child in reversed(frame.calls))
    return out


def classify(obs: Observation, evidence: TxEvidence) -> Classification | None:
    """Who moved the tokens of ``obs`` (a TOKEN observation of an ERC-3643 asset), from the
    transaction's call tree, or without one from its top-level call and its receipt. None when
    that cannot be told with certainty."""
    if obs.kind is not MovementKind.TOKEN or obs.token is None:
        return None
    if evidence.root is not None:
        found: set[Classification | None] = set()
        for emitting, call in _token_frames(evidence.root):
            for log in emitting.logs:
                if not _is_transfer_of(log, obs):
                    continue
                if call.to.lower() != obs.token.lower():
                    found.add(None)  # the log's emitter is not the account called: not understood
                    continue
                found.add(_from_call(call.selector, call.from_address, obs, emitting.logs))
        # Several identical Transfers in one transaction that tell different stories: no answer.
        return found.pop() if len(found) == 1 else None
    # No trace: the transaction's own call when it is into the token, else the token's events.
    token_logs = [r for r in evidence.receipt if r.log.address.lower() == obs.token.lower()]
    if evidence.to is not None and evidence.to.lower() == obs.token.lower():
        return _from_call(evidence.input[:4], evidence.sender, obs, [r.log for r in token_logs])
    if obs.from_address.lower() == ZERO_ADDRESS:
        return Classification(Initiator.ISSUER, "mint", None)
    if any(_names(r.log, obs.token, RECOVERY_SUCCESS_TOPIC, obs.from_address, obs.to_address) for r in token_logs):
        return Classification(Initiator.ISSUER, "recoveryAddress", None)
    # A holder's own transfer never unfreezes tokens; an agent's forced transfer or burn beyond
    # the free balance emits TokensUnfrozen(holder) just before its Transfer.
    if obs.log_index is not None and any(
        r.index == obs.log_index - 1 and _names(r.log, obs.token, TOKENS_UNFROZEN_TOPIC, obs.from_address)
        for r in token_logs
    ):
        return Classification(
            Initiator.ISSUER, "burn" if obs.to_address.lower() == ZERO_ADDRESS else "forcedTransfer", None
        )
    if evidence.sender.lower() == obs.from_address.lower():
        return Classification(Initiator.WALLET, None, evidence.sender)
    return None


def transactions_to_trace(observations: Iterable[Observation], issuer_tokens: Collection[str]) -> list[tuple[str, str]]:
    """(tx hash, block hash) of each transaction holding a Transfer of an ERC-3643 token, once."""
    tokens = {t.lower() for t in issuer_tokens}
    wanted: dict[str, str] = {}
    for obs in observations:
        if obs.kind is MovementKind.TOKEN and obs.token is not None and obs.token.lower() in tokens:
            wanted.setdefault(obs.tx_hash, obs.block_hash)
    return list(wanted.items())


def annotate(
    observations: Sequence[Observation],
    evidence: Mapping[str, TxEvidence],
    issuer_tokens: Collection[str],
    wallets: Collection[str],
) -> list[Observation]:
    """The observations with ``initiator`` and ``function`` set where they can be told:

    - a Transfer of an ERC-3643 token (``issuer_tokens``): from its transaction's evidence
      (``classify``; a transaction without evidence stays unclassified);
    - a Transfer of any other token out of a custody wallet in a transaction that wallet sent
      (its gas fee was observed): ``wallet``. Nothing else is claimed for other tokens.
    """
    tokens = {t.lower() for t in issuer_tokens}
    custody = {w.lower() for w in wallets}
    sent = {(o.tx_hash, o.from_address.lower()) for o in observations if o.kind is MovementKind.FEE}
    out = []
    for obs in observations:
        if obs.kind is not MovementKind.TOKEN or obs.token is None:
            out.append(obs)
            continue
        if obs.token.lower() in tokens:
            ev = evidence.get(obs.tx_hash)
            found = classify(obs, ev) if ev is not None else None
            if found is not None:
                obs = replace(
                    obs,
                    initiator=found.initiator,
                    function=found.function,
                    agent=found.agent,
                    sender=ev.sender if ev is not None else None,
                )
        elif obs.from_address.lower() in custody and (obs.tx_hash, obs.from_address.lower()) in sent:
            obs = replace(obs, initiator=Initiator.WALLET, agent=obs.from_address, sender=obs.from_address)
        out.append(obs)
    return out


# --------------------------------------------------------------------------- findings


def is_issuer_action(m: Movement) -> bool:
    return m.observation.initiator is Initiator.ISSUER


def _issuer_outflows(inputs: SurveillanceInputs) -> list[Movement]:
    """Issuer outflows first observed by this run (not judged before) and not booked."""
    booked = {h.lower() for h in inputs.booked_tx_hashes}
    return [
        m
        for m in inputs.movements
        if m.direction is Direction.OUT
        and is_issuer_action(m)
        and m.identity not in inputs.already_matched
        and m.tx_hash.lower() not in booked
    ]


def _key(inputs: SurveillanceInputs, wallet: str, asset: str, tx_hash: str) -> BreakKey:
    return BreakKey(BreakKind.ISSUER_FORCED_TRANSFER, inputs.chain, wallet, asset, tx_hash)


def _who(m: Movement) -> str:
    o = m.observation
    if o.agent is None:
        sent = f"; the transaction was sent by {o.sender}" if o.sender else ""
        return f"the agent is not known (the node could not trace the transaction{sent})"
    via = f", in a transaction sent by {o.sender}" if o.sender and o.sender.lower() != o.agent.lower() else ""
    return f"called by the issuer's agent {o.agent}{via}"


def check_issuer_outflows(inputs: SurveillanceInputs) -> list[Finding]:
    """An ``issuer_forced_transfer`` (critical) per wallet x asset x tx whose tokens the issuer
    moved out (forced transfer, recovery, burn); amount = the tokens moved out (positive: what
    the issuer took, whereas an unauthorized transfer's amount is minus what left)."""
    groups: dict[BreakKey, list[Movement]] = {}
    for m in _issuer_outflows(inputs):
        groups.setdefault(_key(inputs, m.wallet, m.asset, m.tx_hash), []).append(m)
    findings = []
    for key, moves in groups.items():
        address = moves[0].wallet_address
        parts = [f"{m.observation.function or 'an issuer function'}: {m.describe()}, {_who(m)}" for m in moves]
        findings.append(
            Finding(
                key=key,
                severity=Severity.CRITICAL,
                amount=sum(m.amount for m in moves),
                detail=(
                    f"the issuer of {key.asset} moved tokens out of {key.wallet} ({address}) by "
                    + "; ".join(parts)
                    + ". The issuer's action needs no instruction and none is matched; find out why (a court "
                    "order, a recovery, a redemption) and book it with its tx_hash"
                ),
            )
        )
    return findings


def issuer_coverage(inputs: SurveillanceInputs) -> frozenset[BreakKey]:
    """The ``issuer_forced_transfer`` keys a run resolves by not finding them: those of issuer
    outflows (observed now or before) whose transaction a book entry now carries."""
    booked = {h.lower() for h in inputs.booked_tx_hashes}
    known = {(w, a, t) for w, a, t in inputs.issuer_outflows}
    known |= {
        (m.wallet, m.asset, m.tx_hash) for m in inputs.movements if m.direction is Direction.OUT and is_issuer_action(m)
    }
    return frozenset(_key(inputs, w, a, t) for w, a, t in known if t.lower() in booked)


ISSUER_CHECKS = (check_issuer_outflows,)
