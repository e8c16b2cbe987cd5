"""The presign rules that need no simulation, judged on a Safe transaction and its decoded
call (pure: standard library and the core).

Invariants:
- A rule is a function ``(SafeTx, DecodedCall, StaticContext) -> list[RuleFinding]`` listed in
  ``STATIC_RULES``; it judges every call of the transaction at any depth of MultiSend nesting
  and names in each finding's detail where the call is ("the transaction's own call", "inner
  call 2 of the MultiSend", "inner call 2.1 of the MultiSend" for the first call of a batch
  inside the second) and the exact function and arguments.
- What needs a chain read is given, never read: the Safe's nonce at the pin and the set of
  targets found to have no code. ``None`` means "not read", and then its rule is skipped,
  never judged clean or dirty for want of it. ``calls_with_data`` names the targets whose code
  the caller should read.
- Nothing is judged clean for want of a meaning: a call to the Safe itself is a finding
  whatever its selector (a Safe calling itself is how its configuration changes), and a
  DELEGATECALL is a finding unless ``[presign] delegatecall_allowlist`` names its target, the
  target is not a MultiSend (which runs whatever its batch carries with the wallet's storage)
  and, when it is sent a batch (MultiSendCallOnly), the batch could be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.domain import Severity, eip55
from reconciler.engine.executions import Rule, RuleFinding
from reconciler.engine.safetx import (
    CONFIG_SIGNATURES,
    DELEGATECALL,
    MULTISEND,
    MULTISEND_ADDRESSES,
    MULTISEND_CALL_ONLY_LABEL,
    MULTISEND_LABEL,
    ZERO_ADDRESS,
    DecodedCall,
    SafeTx,
)

UNLIMITED = 2**256 - 1


@dataclass(frozen=True, slots=True)
class StaticContext:
    """What the rules judge against. ``wallet`` is the wallet's configured name and ``safe``
    its address; ``delegatecall_allowlist`` the chain's ``[presign] delegatecall_allowlist``;
    ``allowed_spenders`` the wallet's ``allowed_spenders``; ``multisend`` the addresses that
    are MultiSend (not CallOnly): a DELEGATECALL to one is critical whatever the allowlist
    says. ``wallet_nonce``: the Safe's nonce at the pin; ``codeless``: the targets found to
    have no code; None: not read, the rule is skipped. Addresses EIP-55."""

    wallet: str
    safe: str
    delegatecall_allowlist: frozenset[str] = frozenset()
    allowed_spenders: frozenset[str] = frozenset()
    multisend: frozenset[str] = MULTISEND_ADDRESSES
    wallet_nonce: int | None = None
    codeless: frozenset[str] | None = None


def where(path: tuple[int, ...]) -> str:
    """A call's place in the transaction, from ``DecodedCall.walk``'s path."""
    if not path:
        return "the transaction's own call"
    return f"inner call {'.'.join(map(str, path))} of the MultiSend"


def _lower(addresses: frozenset[str]) -> set[str]:
    return {a.lower() for a in addresses}


def _operation(call: DecodedCall) -> str:
    return "DELEGATECALL" if call.operation == DELEGATECALL else "CALL" if call.operation == 0 else "operation"


def _target(call: DecodedCall) -> str:
    return f"{call.to} ({call.contract})" if call.contract else call.to


def _describe(path: tuple[int, ...], call: DecodedCall) -> str:
    value = f" sending {call.value} wei" if call.value else ""
    return f"{where(path)}: {_operation(call)} to {_target(call)}{value}, {call.call_text()}"


def is_multisend(call: DecodedCall, multisend: frozenset[str]) -> bool:
    """Whether the call's target runs a batch with DELEGATECALL allowed: a configured or
    canonical MultiSend, or any address sent ``multiSend(bytes)`` that is not a known
    MultiSendCallOnly."""
    if call.to.lower() in _lower(multisend) or call.contract == MULTISEND_LABEL:
        return True
    return call.selector == "0x" + MULTISEND.selector.hex() and call.contract != MULTISEND_CALL_ONLY_LABEL


# ----------------------------------------------------------------------------- rules


def delegatecall_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """A DELEGATECALL at any depth runs its target's code with the wallet's storage and
    balance: critical unless the allowlist names the target, and always critical when the
    target is a MultiSend (it would run any batch, DELEGATECALLs included)."""
    allowed = _lower(context.delegatecall_allowlist)
    findings = []
    for path, call in decoded.walk():
        if call.operation != DELEGATECALL:
            continue
        if is_multisend(call, context.multisend):
            why = (
                "the target is a MultiSend (not MultiSendCallOnly): it runs whatever its batch carries, "
                "DELEGATECALLs included, with the wallet's storage"
            )
            if call.to.lower() in allowed:
                why += "; being in [presign] delegatecall_allowlist does not make it safe"
        elif call.to.lower() not in allowed:
            why = "the target is not in [presign] delegatecall_allowlist: its code would run with the wallet's storage"
        elif call.unread_batch:
            why = (
                f"the batch it carries could not be read ({call.note}): the calls it would make with the wallet's "
                "storage cannot be checked"
            )
        else:
            continue
        inside = ""
        if path and _parent(decoded, path).contract == MULTISEND_CALL_ONLY_LABEL:
            inside = " (MultiSendCallOnly refuses a DELEGATECALL: the batch would revert as it stands)"
        findings.append(
            RuleFinding(
                Rule.DELEGATECALL,
                Severity.CRITICAL,
                context.wallet,
                f"{context.wallet} ({context.safe}) would DELEGATECALL: {_describe(path, call)}; {why}{inside}",
                target=call.to,
            )
        )
    return findings


def _parent(decoded: DecodedCall, path: tuple[int, ...]) -> DecodedCall:
    call = decoded
    for i in path[:-1]:
        call = call.inner[i - 1]
    return call


def wallet_config_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """A call at any depth to the Safe itself with calldata: the listed configuration
    functions change its owners, threshold, modules, guards, fallback handler or singleton,
    and any other selector is the same channel (``execTransaction`` nested, an unknown
    function, a fallback-handler call) and is reported as such."""
    safe = context.safe.lower()
    findings = []
    for path, call in decoded.walk():
        if call.to.lower() != safe or not call.data:
            continue
        if call.function in CONFIG_SIGNATURES:
            what = f"it changes the wallet's configuration ({call.function})"
        else:
            what = (
                "it is not one of the configuration functions, but a Safe calling itself is how its "
                "configuration changes: review it as one"
            )
        findings.append(
            RuleFinding(
                Rule.WALLET_CONFIG_CALL,
                Severity.CRITICAL,
                context.wallet,
                f"{context.wallet} ({context.safe}) would call itself: {_describe(path, call)}; {what}",
                target=call.to,
            )
        )
    return findings


def _grant(call: DecodedCall) -> tuple[str, str, int | None] | None:
    """(spender, what is granted, amount) of an approval call that grants something; None for
    anything else, a revocation included."""
    if call.function is None:
        return None
    name = call.function.split("(", 1)[0]
    if name in ("approve", "increaseAllowance", "permit"):
        spender = call.arg("spender")
        amount = call.arg("addedValue" if name == "increaseAllowance" else "value")
        assert isinstance(spender, str) and isinstance(amount, int)
        if amount == 0:
            return None  # approve(x, 0) revokes; increaseAllowance(x, 0) and a 0 permit grant nothing
        shown = "an unlimited allowance" if amount == UNLIMITED else f"an allowance of {amount} base units"
        if name == "increaseAllowance":
            shown = f"{amount} more base units of allowance"
        if name == "permit":
            owner = call.arg("owner")
            assert isinstance(owner, str)
            shown += f" (submitting a permit signed by {owner})"
        return spender, shown, amount
    if name == "setApprovalForAll":
        operator, approved = call.arg("operator"), call.arg("approved")
        assert isinstance(operator, str)
        return (operator, "every token of the collection", None) if approved is True else None
    return None


def approval_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """``approve``, ``increaseAllowance``, ``permit`` or ``setApprovalForAll`` at any depth
    granting a spender that is not in the wallet's ``allowed_spenders`` (revocations are not
    findings)."""
    allowed = _lower(context.allowed_spenders)
    findings = []
    for path, call in decoded.walk():
        grant = _grant(call)
        if grant is None or grant[0].lower() in allowed:
            continue
        spender, shown, amount = grant
        findings.append(
            RuleFinding(
                Rule.APPROVAL,
                Severity.CRITICAL,
                context.wallet,
                f"{context.wallet} ({context.safe}) would grant {spender} {shown} on {_target(call)}: "
                f"{_describe(path, call)}; {spender} is not in the wallet's allowed_spenders",
                amount=amount,
                target=spender,
            )
        )
    return findings


def gas_refund_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """A gas refund in a token, or to a named receiver: the Safe pays (gas used + baseGas) x
    gasPrice of ``gasToken`` to ``refundReceiver``, uncapped by the real gas price when the
    token is not the native coin, so a signed refund can move value no one reviewed."""
    if tx.gas_price == 0 or (tx.gas_token == ZERO_ADDRESS and tx.refund_receiver == ZERO_ADDRESS):
        return []
    token = "the native coin" if tx.gas_token == ZERO_ADDRESS else tx.gas_token
    receiver = "the executor (tx.origin)" if tx.refund_receiver == ZERO_ADDRESS else tx.refund_receiver
    return [
        RuleFinding(
            Rule.GAS_REFUND,
            Severity.ERROR,
            context.wallet,
            f"{context.wallet} ({context.safe}) would refund gas: gasPrice {tx.gas_price} in {token} to {receiver} "
            f"(safeTxGas {tx.safe_tx_gas}, baseGas {tx.base_gas}); the Safe pays (gas used + baseGas) x gasPrice "
            "of it on execution, a payment no transfer instruction covers",
            target=None if tx.refund_receiver == ZERO_ADDRESS else tx.refund_receiver,
        )
    ]


def nonce_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """The transaction's nonce differs from the Safe's at the pin: a used nonce can never
    execute; a later one waits for every nonce before it (and a signature for it stays
    usable until then)."""
    if context.wallet_nonce is None or tx.nonce == context.wallet_nonce:
        return []
    if tx.nonce < context.wallet_nonce:
        why = "that nonce is already used: this transaction can never execute"
    else:
        waiting = tx.nonce - context.wallet_nonce
        why = f"it can execute only after {waiting} other transaction(s) with the nonces before it"
    return [
        RuleFinding(
            Rule.NONCE,
            Severity.WARNING,
            context.wallet,
            f"{context.wallet} ({context.safe}) is at nonce {context.wallet_nonce} but the transaction has nonce "
            f"{tx.nonce}: {why}",
        )
    ]


def no_code_target_rule(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """A call with calldata to an address without code succeeds and does nothing: the
    intended contract is not there (wrong chain, wrong address, not yet deployed)."""
    if context.codeless is None:
        return []
    codeless = _lower(context.codeless)
    findings = []
    for path, call in decoded.walk():
        if not call.data or call.to.lower() not in codeless:
            continue
        findings.append(
            RuleFinding(
                Rule.NO_CODE_TARGET,
                Severity.WARNING,
                context.wallet,
                f"{context.wallet} ({context.safe}) would send calldata to an address without code: "
                f"{_describe(path, call)}; the call would succeed and do nothing",
                target=call.to,
            )
        )
    return findings


StaticRule = Callable[[SafeTx, DecodedCall, StaticContext], list[RuleFinding]]
STATIC_RULES: tuple[StaticRule, ...] = (
    delegatecall_rule,
    wallet_config_rule,
    approval_rule,
    gas_refund_rule,
    nonce_rule,
    no_code_target_rule,
)


def static_findings(tx: SafeTx, decoded: DecodedCall, context: StaticContext) -> list[RuleFinding]:
    """Every static rule, in ``STATIC_RULES`` order."""
    findings: list[RuleFinding] = []
    for rule in STATIC_RULES:
        findings.extend(rule(tx, decoded, context))
    return findings


def calls_with_data(decoded: DecodedCall) -> list[str]:
    """The targets (EIP-55, first appearance first, each once) of every call with calldata:
    the addresses whose code the caller reads for ``no_code_target``."""
    seen: dict[str, str] = {}
    for _, call in decoded.walk():
        if call.data:
            seen.setdefault(call.to.lower(), eip55(call.to))
    return list(seen.values())
