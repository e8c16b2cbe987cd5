"""Every execution of a custody wallet judged (pure: standard library, eth-hash and the core).

One analyzer for what a transaction did to a wallet, whether the transaction was observed on
chain (surveillance) or simulated before anyone signed it (``presign``): the same execution
gives the same findings either way.

An ``Execution`` is a decoded transaction: its call tree (``Frame``, callTracer's shape: a
DELEGATECALL frame's ``from_address`` is the account whose storage the code runs in), the logs
each frame emitted, the state diff of every account it changed (``AccountDiff``, from
prestateTracer in diffMode), the EIP-7702 authorizations it carried, and what it paid.

Invariants:
- A rule is a function ``(Execution, WalletProfile, ExecutionPolicy) -> list[RuleFinding]``,
  listed in ``EXECUTION_RULES``; it returns findings as data and never raises on what the
  chain did (only on a caller's bug).
- Nothing is judged clean for want of a meaning: a storage write the analyzer cannot name is
  reported with the raw slot; a delegatecall target it does not know is a finding, not a guess.
- A wallet runs its own code by a DELEGATECALL from its proxy to the singleton, implementation
  or beacon implementation it was baselined with (``WalletProfile.code_targets``); any other
  DELEGATECALL in the wallet's context is a finding unless the chain's allowlist names its
  target — and allowlisting a target never hides a storage write it makes: writes are judged
  on the state diff, whoever made them.
- Expected writes of a Safe-layout wallet are exactly: the nonce (slot 5) up by one per
  ``execTransaction`` into the wallet that did not revert, and ``approvedHashes[owner][hash]``
  set by an ``approveHash(hash)`` the owner called. Everything else is reported with its
  before/after and its meaning where one can be found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from eth_hash.auto import keccak

from reconciler.domain import BlockRef, BreakKey, BreakKind, Finding, Severity, eip55
from reconciler.walletconfig import WalletConfig, WalletKind

ZERO = "0x0000000000000000000000000000000000000000"
SENTINEL = "0x0000000000000000000000000000000000000001"
EIP7702_PREFIX = bytes.fromhex("ef0100")

# Safe 1.1.1 - 1.4.1 storage (CustodyWallet shares it): see docs/wallets.md.
SINGLETON_SLOT = 0
MODULES_SLOT = 1
OWNERS_SLOT = 2
OWNER_COUNT_SLOT = 3
THRESHOLD_SLOT = 4
NONCE_SLOT = 5
DEPRECATED_DOMAIN_SLOT = 6
SIGNED_MESSAGES_SLOT = 7
APPROVED_HASHES_SLOT = 8


def _named_slot(name: str) -> int:
    return int.from_bytes(keccak(name.encode()), "big")


GUARD_SLOT = _named_slot("guard_manager.guard.address")
FALLBACK_HANDLER_SLOT = _named_slot("fallback_manager.handler.address")
MODULE_GUARD_SLOT = _named_slot("module_manager.module_guard.address")
# EIP-1967: keccak256("eip1967.proxy.<name>") - 1.
EIP1967_IMPLEMENTATION_SLOT = _named_slot("eip1967.proxy.implementation") - 1
EIP1967_ADMIN_SLOT = _named_slot("eip1967.proxy.admin") - 1
EIP1967_BEACON_SLOT = _named_slot("eip1967.proxy.beacon") - 1

FIXED_SLOTS: Mapping[int, str] = {
    SINGLETON_SLOT: "singleton (slot 0)",
    MODULES_SLOT: "modules (slot 1)",
    OWNERS_SLOT: "owners (slot 2)",
    OWNER_COUNT_SLOT: "owner count (slot 3)",
    THRESHOLD_SLOT: "threshold (slot 4)",
    NONCE_SLOT: "nonce (slot 5)",
    DEPRECATED_DOMAIN_SLOT: "deprecated domain separator (slot 6)",
    GUARD_SLOT: "guard",
    FALLBACK_HANDLER_SLOT: "fallback handler",
    MODULE_GUARD_SLOT: "module guard",
    EIP1967_IMPLEMENTATION_SLOT: "EIP-1967 implementation",
    EIP1967_ADMIN_SLOT: "EIP-1967 admin",
    EIP1967_BEACON_SLOT: "EIP-1967 beacon",
}
# What configures a wallet: a write here is a takeover or a change of who controls it.
CONFIG_SLOTS = frozenset(
    {
        SINGLETON_SLOT,
        MODULES_SLOT,
        OWNERS_SLOT,
        OWNER_COUNT_SLOT,
        THRESHOLD_SLOT,
        GUARD_SLOT,
        FALLBACK_HANDLER_SLOT,
        MODULE_GUARD_SLOT,
        EIP1967_IMPLEMENTATION_SLOT,
        EIP1967_ADMIN_SLOT,
        EIP1967_BEACON_SLOT,
    }
)
PROXY_SLOTS = frozenset({EIP1967_IMPLEMENTATION_SLOT, EIP1967_ADMIN_SLOT, EIP1967_BEACON_SLOT})

# Selectors of the calls into a Safe-layout wallet whose effects are expected.
EXEC_TRANSACTION_SELECTORS = frozenset(
    {
        # Safe: execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)
        bytes.fromhex("6a761202"),
        bytes.fromhex("65bc10d3"),  # CustodyWallet execTransaction(address,uint256,bytes,uint8,bytes)
    }
)
APPROVE_HASH_SELECTOR = bytes.fromhex("d4d9bdcd")  # approveHash(bytes32)


class Rule(StrEnum):
    """What a finding is about; the names are presign's rules (design: the rule table) plus
    what only an observed execution has (its fee, its authorizations)."""

    DELEGATECALL = "delegatecall"
    WALLET_CONFIG_CALL = "wallet_config_call"
    WALLET_STORAGE_WRITE = "wallet_storage_write"
    CODE_CHANGE = "code_change"  # the wallet's code changed (EIP-7702 designator set or cleared)
    APPROVER_DELEGATION = "approver_delegation"  # an approver signed an EIP-7702 authorization
    APPROVAL = "approval"
    UNAUTHORIZED_OUTFLOW = "unauthorized_outflow"
    GAS_REFUND = "gas_refund"
    NONCE = "nonce"
    NO_CODE_TARGET = "no_code_target"
    FEE_CEILING = "fee_ceiling"


@dataclass(frozen=True, slots=True)
class RuleFinding:
    """One thing a rule found. ``wallet`` is the wallet's configured name; ``tx_hash`` the
    observed transaction (None for a simulation); ``amount`` base units where the finding is
    an amount (a fee); ``target`` the other address involved (a delegatecall target, a fee
    recipient, a delegate)."""

    rule: Rule
    severity: Severity
    wallet: str
    detail: str
    tx_hash: str | None = None
    amount: int | None = None
    target: str | None = None


# ----------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Log:
    """A log a frame emitted: ``address`` EIP-55, topics lowercase 0x hex."""

    address: str
    topics: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """One call frame, callTracer's shape. ``kind`` is upper case (CALL, DELEGATECALL,
    STATICCALL, CALLCODE, CREATE, CREATE2, SELFDESTRUCT); addresses are EIP-55; ``path`` is
    "" for the transaction itself and "0.1" for the second call of its first call; ``error``
    is set when the frame reverted (then nothing it or its children did was kept)."""

    kind: str
    from_address: str
    to: str
    value: int = 0
    input: bytes = b""
    error: str | None = None
    path: str = ""
    calls: tuple[Frame, ...] = ()
    logs: tuple[Log, ...] = ()

    @property
    def selector(self) -> bytes:
        return self.input[:4]

    def walk(self, reverted: bool = False) -> Iterator[tuple[Frame, bool]]:
        """Every frame depth first, with whether it or an ancestor reverted."""
        failed = reverted or self.error is not None
        yield self, failed
        for child in self.calls:
            yield from child.walk(failed)


@dataclass(frozen=True, slots=True)
class StorageChange:
    slot: int
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class AccountDiff:
    """What one transaction changed in one account: only what changed is set."""

    address: str
    balance: tuple[int, int] | None = None
    nonce: tuple[int, int] | None = None
    code: tuple[bytes, bytes] | None = None
    storage: tuple[StorageChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-7702 authorization a type-4 transaction carried. ``authority`` is the signer
    recovered from it (None: unrecoverable, so it cannot have applied); ``delegate`` the
    address delegated to (the zero address clears a delegation)."""

    authority: str | None
    delegate: str
    chain_id: int
    nonce: int


@dataclass(frozen=True, slots=True)
class Execution:
    """One transaction as the analyzer sees it. ``tx_hash`` None: a simulation. ``fee`` and
    ``fee_recipient`` are what the sender paid and the block's producer (None: not known, a
    simulation). ``diffs`` by EIP-55 address; ``root`` None when no call trace was taken."""

    chain: str
    block_number: int
    block_hash: str
    tx_hash: str | None
    sender: str
    root: Frame | None
    diffs: Mapping[str, AccountDiff] = field(default_factory=dict)
    authorizations: tuple[Authorization, ...] = ()
    fee: int | None = None
    fee_recipient: str | None = None

    @property
    def where(self) -> str:
        if self.tx_hash is None:
            return f"the simulated transaction at block {self.block_number}"
        return f"tx {self.tx_hash} at block {self.block_number} ({self.block_hash})"

    def frames(self) -> Iterator[tuple[Frame, bool]]:
        return self.root.walk() if self.root is not None else iter(())


class ProfileKind(StrEnum):
    SAFE = "safe"  # the Safe storage layout (a Safe, our CustodyWallet)
    EOA = "eoa"
    CONTRACT = "contract"  # code whose layout we do not know


@dataclass(frozen=True, slots=True)
class WalletProfile:
    """A custody wallet as the analyzer judges it, from its reviewed (or first-seen)
    configuration. ``code_targets``: the singleton, implementation and beacon implementation
    the wallet runs (its proxy's own DELEGATECALL to them is the wallet running its code);
    ``owners``/``modules``/``approvers`` EIP-55."""

    name: str
    address: str
    kind: ProfileKind
    code_targets: frozenset[str] = frozenset()
    owners: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """The chain's rules: DELEGATECALL targets allowed from any wallet (EIP-55), and the fee
    ceiling in the native coin's base units (None: no ceiling)."""

    chain_id: int
    delegatecall_allowlist: frozenset[str] = frozenset()
    max_fee: int | None = None


# ----------------------------------------------------------------------------------- meanings


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def mapping_slot(key: bytes, slot: int) -> int:
    """Where ``mapping[key]`` of a mapping declared at ``slot`` lives (Solidity's layout)."""
    return int.from_bytes(keccak(key.rjust(32, b"\0") + _word(slot)), "big")


def nested_mapping_slot(outer: bytes, inner: bytes, slot: int) -> int:
    """Where ``mapping[outer][inner]`` lives."""
    return int.from_bytes(keccak(inner.rjust(32, b"\0") + _word(mapping_slot(outer, slot))), "big")


def _address_of(value: int) -> str | None:
    if 0 < value < 2**160:
        return "0x" + value.to_bytes(20, "big").hex()
    return None


def candidate_keys(execution: Execution, profile: WalletProfile) -> tuple[set[str], set[bytes]]:
    """The addresses (lowercase hex) and 32-byte words the execution names, from which mapping
    slots are recognised: every frame's from and to, every 32-byte word of every call's input
    and every log's topics, the values written to the wallet's storage, the wallet's owners,
    modules, approvers, the sentinel and the sender."""
    addresses = {a.lower() for a in (*profile.owners, *profile.modules, *profile.approvers, execution.sender)}
    addresses.add(SENTINEL)
    words: set[bytes] = set()
    for frame, _ in execution.frames():
        addresses.update((frame.from_address.lower(), frame.to.lower()))
        data = frame.input[4:]
        for i in range(0, len(data) - 31, 32):
            words.add(data[i : i + 32])
        for entry in frame.logs:
            words.update(bytes.fromhex(t[2:]) for t in entry.topics[1:])
            words.update(entry.data[i : i + 32] for i in range(0, len(entry.data) - 31, 32))
    diff = execution.diffs.get(profile.address)
    if diff is not None:
        for change in diff.storage:
            for value in (change.before, change.after):
                found = _address_of(value)
                if found is not None:
                    addresses.add(found)
    for w in list(words):
        if w[:12] == bytes(12):
            addresses.add("0x" + w[12:].hex())
    return addresses, words


def slot_meanings(slots: Iterable[int], addresses: Iterable[str], words: Iterable[bytes]) -> dict[int, str]:
    """What each slot is in the Safe layout: a fixed slot by name, an ``owners[x]``,
    ``modules[x]``, ``signedMessages[h]`` or ``approvedHashes[o][h]`` entry whose key is among
    the candidates; slots with no meaning found are left out."""
    wanted = set(slots)
    found = {s: FIXED_SLOTS[s] for s in wanted if s in FIXED_SLOTS}
    remaining = wanted - set(found)
    if not remaining:
        return found
    address_list = sorted(set(addresses))
    word_list = sorted(set(words))
    for a in address_list:
        key = _address_word(a)
        for slot, name in ((OWNERS_SLOT, "owners"), (MODULES_SLOT, "modules")):
            s = mapping_slot(key, slot)
            if s in remaining:
                found[s] = f"{name}[{_eip55(a)}] (an entry of the {name} mapping)"
    for w in word_list:
        s = mapping_slot(w, SIGNED_MESSAGES_SLOT)
        if s in remaining:
            found[s] = f"signedMessages[0x{w.hex()}]"
    if set(found) >= wanted:
        return found
    for a in address_list:
        outer = _address_word(a)
        base = mapping_slot(outer, APPROVED_HASHES_SLOT)
        for w in word_list:
            s = int.from_bytes(keccak(w + _word(base)), "big")
            if s in remaining:
                found[s] = f"approvedHashes[{_eip55(a)}][0x{w.hex()}]"
    return found


def _eip55(address: str) -> str:
    return eip55(address)


def _hex(value: int) -> str:
    return hex(value)


def _value_text(value: int) -> str:
    """A storage word as a person reads it: an address where it has the shape of one."""
    if 2**32 <= value < 2**160:
        return eip55("0x" + value.to_bytes(20, "big").hex())
    return _hex(value)


def _slot_text(change: StorageChange, meaning: str | None) -> str:
    what = meaning or "a slot of no known meaning"
    return f"slot {_hex(change.slot)} [{what}]: {_value_text(change.before)} -> {_value_text(change.after)}"


# ----------------------------------------------------------------------------------- rules


def _in_wallet(frame: Frame, profile: WalletProfile) -> bool:
    return frame.from_address.lower() == profile.address.lower()


def _to_wallet(frame: Frame, profile: WalletProfile) -> bool:
    return frame.to.lower() == profile.address.lower() and frame.kind in ("CALL", "CALLCODE")


def delegatecall_rule(execution: Execution, profile: WalletProfile, policy: ExecutionPolicy) -> list[RuleFinding]:
    """A DELEGATECALL in the wallet's context to code it was not baselined to run, nor the
    chain's allowlist names: foreign code with the wallet's storage and balance (the Bybit
    takeover). Reported even when it reverted: the wallet's signers authorized it."""
    allowed = {a.lower() for a in (*profile.code_targets, *policy.delegatecall_allowlist)}
    findings = []
    for frame, reverted in execution.frames():
        if frame.kind != "DELEGATECALL" or not _in_wallet(frame, profile) or frame.to.lower() in allowed:
            continue
        selector = "0x" + frame.selector.hex() if frame.input else "no calldata"
        kept = " (the call reverted: nothing it did was kept)" if reverted else ""
        findings.append(
            RuleFinding(
                Rule.DELEGATECALL,
                Severity.CRITICAL,
                profile.name,
                f"{execution.where}: {profile.name} ({profile.address}) ran foreign code by DELEGATECALL to "
                f"{frame.to} (call {frame.path or 'top'}, selector {selector}, {len(frame.input)} bytes of "
                f"calldata){kept}; the target is neither the code the wallet was baselined with nor in "
                "[presign] delegatecall_allowlist",
                execution.tx_hash,
                target=frame.to,
            )
        )
    return findings


def _expected_nonce_steps(execution: Execution, profile: WalletProfile) -> int:
    return sum(
        1
        for frame, reverted in execution.frames()
        if not reverted and _to_wallet(frame, profile) and frame.selector in EXEC_TRANSACTION_SELECTORS
    )


def _approved_hash_slots(execution: Execution, profile: WalletProfile) -> set[int]:
    slots = set()
    for frame, reverted in execution.frames():
        if reverted or not _to_wallet(frame, profile) or frame.selector != APPROVE_HASH_SELECTOR:
            continue
        if len(frame.input) >= 36:
            owner = _address_word(frame.from_address.lower())
            slots.add(nested_mapping_slot(owner, frame.input[4:36], APPROVED_HASHES_SLOT))
    return slots


def unexpected_writes(execution: Execution, profile: WalletProfile) -> list[StorageChange]:
    """The wallet's storage changes that its own kind of execution does not explain."""
    diff = execution.diffs.get(profile.address)
    if diff is None:
        return []
    if profile.kind is ProfileKind.CONTRACT:
        # Layout unknown: only the slots that configure any proxy are judged.
        return [c for c in diff.storage if c.slot in PROXY_SLOTS]
    if profile.kind is ProfileKind.EOA:
        return list(diff.storage)
    steps = _expected_nonce_steps(execution, profile)
    approvals = _approved_hash_slots(execution, profile)
    out = []
    for change in diff.storage:
        if change.slot == NONCE_SLOT and steps and change.after == change.before + steps:
            continue
        if change.slot in approvals and change.before == 0 and change.after == 1:
            continue
        out.append(change)
    return out


def storage_rule(execution: Execution, profile: WalletProfile, policy: ExecutionPolicy) -> list[RuleFinding]:
    """Every write to the wallet's storage other than the expected ones, named slot by slot."""
    changes = unexpected_writes(execution, profile)
    if not changes:
        return []
    addresses, words = candidate_keys(execution, profile)
    meanings = slot_meanings((c.slot for c in changes), addresses, words)
    listed = "; ".join(_slot_text(c, meanings.get(c.slot)) for c in sorted(changes, key=lambda c: c.slot))
    config = [c for c in changes if c.slot in CONFIG_SLOTS or "owners[" in meanings.get(c.slot, "")]
    config += [c for c in changes if "modules[" in meanings.get(c.slot, "")]
    what = "its configuration" if config else "its storage"
    return [
        RuleFinding(
            Rule.WALLET_STORAGE_WRITE,
            Severity.CRITICAL,
            profile.name,
            f"{execution.where} wrote {what} of {profile.name} ({profile.address}) outside its own "
            f"execution's expected effects (the nonce +1 per execTransaction, approvedHashes): {listed}",
            execution.tx_hash,
        )
    ]


def is_config_write(finding: RuleFinding) -> bool:
    """Whether a storage finding touches the configuration (presign: critical; any other
    slot: error)."""
    return finding.rule is Rule.WALLET_STORAGE_WRITE and "wrote its configuration" in finding.detail


def delegation_in(code: bytes) -> str | None:
    if len(code) == 23 and code.startswith(EIP7702_PREFIX):
        return _eip55("0x" + code[3:].hex())
    return None


def _code_text(code: bytes) -> str:
    delegate = delegation_in(code)
    if delegate is not None:
        return f"an EIP-7702 delegation to {delegate}"
    if not code:
        return "no code"
    return f"{len(code)} bytes of code (keccak 0x{keccak(code).hex()})"


def code_rule(execution: Execution, profile: WalletProfile, policy: ExecutionPolicy) -> list[RuleFinding]:
    """The wallet's code changed (an EIP-7702 designator set, changed or cleared), or the
    transaction carried an EIP-7702 authorization signed by the wallet's own key: that key
    alone then decides what code the wallet runs — reported even when the delegation is undone
    later in the same range."""
    findings = []
    diff = execution.diffs.get(profile.address)
    if diff is not None and diff.code is not None and diff.code[0] != diff.code[1]:
        before, after = diff.code
        findings.append(
            RuleFinding(
                Rule.CODE_CHANGE,
                Severity.CRITICAL,
                profile.name,
                f"{execution.where} changed the code of {profile.name} ({profile.address}) from "
                f"{_code_text(before)} to {_code_text(after)}",
                execution.tx_hash,
                target=delegation_in(after) or delegation_in(before),
            )
        )
    if findings:
        return findings
    for auth in execution.authorizations:
        if auth.authority is None or auth.authority.lower() != profile.address.lower():
            continue
        if auth.chain_id not in (0, policy.chain_id):
            continue
        action = "clearing its delegation" if auth.delegate.lower() == ZERO else f"delegating it to {auth.delegate}"
        findings.append(
            RuleFinding(
                Rule.CODE_CHANGE,
                Severity.CRITICAL,
                profile.name,
                f"{execution.where} carried an EIP-7702 authorization signed by {profile.name}'s own key "
                f"({profile.address}, authorization nonce {auth.nonce}) {action}",
                execution.tx_hash,
                target=auth.delegate,
            )
        )
    return findings


def approver_rule(execution: Execution, profile: WalletProfile, policy: ExecutionPolicy) -> list[RuleFinding]:
    """An approver of the wallet's instructions signed an EIP-7702 authorization: its key alone
    no longer controls the account, so its signatures no longer prove the approver acted (the
    approver rule of wallet configuration, now naming the transaction)."""
    approvers = {a.lower(): a for a in profile.approvers}
    findings = []
    for auth in execution.authorizations:
        if auth.authority is None or auth.authority.lower() not in approvers:
            continue
        if auth.chain_id not in (0, policy.chain_id):
            continue
        action = "cleared its delegation" if auth.delegate.lower() == ZERO else f"delegated it to {auth.delegate}"
        findings.append(
            RuleFinding(
                Rule.APPROVER_DELEGATION,
                Severity.ERROR,
                profile.name,
                f"{execution.where}: approver {approvers[auth.authority.lower()]} of {profile.name} signed an "
                f"EIP-7702 authorization that {action}: its key alone no longer controls the account",
                execution.tx_hash,
                target=auth.delegate,
            )
        )
    return findings


def fee_rule(execution: Execution, profile: WalletProfile, policy: ExecutionPolicy) -> list[RuleFinding]:
    """The wallet paid more for a transaction than the chain's ``max_fee``: the whole fee is an
    outflow nobody authorized (paid to the block's producer, who may be in on it)."""
    if policy.max_fee is None or execution.fee is None or execution.sender.lower() != profile.address.lower():
        return []
    if execution.fee <= policy.max_fee:
        return []
    return [
        RuleFinding(
            Rule.FEE_CEILING,
            Severity.CRITICAL,
            profile.name,
            f"{execution.where}: {profile.name} ({profile.address}) paid a fee of {execution.fee} wei, above "
            f"[surveillance] max_fee ({policy.max_fee} wei), to the block's fee recipient "
            f"{execution.fee_recipient or 'unknown'}",
            execution.tx_hash,
            amount=execution.fee,
            target=execution.fee_recipient,
        )
    ]


ExecutionRule = Callable[[Execution, WalletProfile, ExecutionPolicy], list[RuleFinding]]
EXECUTION_RULES: tuple[ExecutionRule, ...] = (delegatecall_rule, storage_rule, code_rule, approver_rule, fee_rule)


def touches(execution: Execution, profile: WalletProfile) -> bool:
    """Whether the execution concerns the wallet: its code ran or was called, its account
    changed, it sent the transaction, or an authorization names it or one of its approvers."""
    address = profile.address.lower()
    if execution.sender.lower() == address or profile.address in execution.diffs:
        return True
    if any(f.from_address.lower() == address or f.to.lower() == address for f, _ in execution.frames()):
        return True
    named = {address, *(a.lower() for a in profile.approvers)}
    return any(a.authority is not None and a.authority.lower() in named for a in execution.authorizations)


def creates(execution: Execution, profile: WalletProfile) -> bool:
    """Whether the execution deployed the wallet (its code went from none to contract code):
    the writes of its own setup are what it became, which the first baseline records, not a
    change of an existing wallet. (An EIP-7702 designator is not a deployment: it is judged.)"""
    diff = execution.diffs.get(profile.address)
    if diff is None or diff.code is None:
        return False
    before, after = diff.code
    return not before and bool(after) and delegation_in(after) is None


def analyze(execution: Execution, profiles: Iterable[WalletProfile], policy: ExecutionPolicy) -> list[RuleFinding]:
    """Every rule over every wallet the execution concerns, in profile then rule order."""
    findings: list[RuleFinding] = []
    for profile in profiles:
        if not touches(execution, profile) or creates(execution, profile):
            continue
        for rule in EXECUTION_RULES:
            findings.extend(rule(execution, profile, policy))
    return findings


def written_mapping_entries(execution: Execution, profile: WalletProfile) -> dict[str, set[str]]:
    """Addresses (EIP-55) whose ``owners``/``modules`` entry the execution wrote in the wallet's
    storage (keys "owners", "modules"): each run then reads those entries at its pin, so an
    owner or module written outside the linked lists is never hidden."""
    diff = execution.diffs.get(profile.address)
    out: dict[str, set[str]] = {"owners": set(), "modules": set()}
    if diff is None or profile.kind is not ProfileKind.SAFE:
        return out
    addresses, _ = candidate_keys(execution, profile)
    slots = {c.slot for c in diff.storage}
    for a in addresses:
        key = _address_word(a)
        if mapping_slot(key, OWNERS_SLOT) in slots:
            out["owners"].add(_eip55(a))
        if mapping_slot(key, MODULES_SLOT) in slots:
            out["modules"].add(_eip55(a))
    for entries in out.values():
        entries.discard(_eip55(SENTINEL))
    return out


# ----------------------------------------------------------------------------------- a chain's executions


def profile_for(name: str, address: str, approvers: Iterable[str], config: WalletConfig | None) -> WalletProfile:
    """How a wallet's executions are judged, from its reviewed (or first-seen) configuration.
    Without one the wallet is judged as code of unknown layout whose own DELEGATECALLs are all
    findings: nothing is assumed harmless for want of a baseline."""
    if config is None:
        return WalletProfile(name, address, ProfileKind.CONTRACT, approvers=tuple(approvers))
    kind = {WalletKind.SAFE: ProfileKind.SAFE, WalletKind.EOA: ProfileKind.EOA}.get(config.kind, ProfileKind.CONTRACT)
    targets = {
        t
        for t in (config.singleton, config.implementation, config.beacon_implementation, config.delegation)
        if t is not None
    }
    return WalletProfile(
        name,
        address,
        kind,
        frozenset(targets),
        owners=config.owners,
        modules=config.modules,
        approvers=tuple(approvers),
    )


@dataclass(frozen=True, slots=True)
class OrphanedExecution:
    """An execution judged earlier whose block is no longer on the canonical chain."""

    wallet: str
    tx_hash: str
    block_number: int
    block_hash: str


@dataclass(frozen=True, slots=True)
class ExecutionInputs:
    """What the execution pass needs about one chain: the executions first observed by this
    run, the wallets' profiles, the chain's rules, the native asset's name (a fee above the
    ceiling is an outflow of it), what the node could not serve, and executions reorged away."""

    chain: str
    block: BlockRef
    executions: tuple[Execution, ...] = ()
    profiles: tuple[WalletProfile, ...] = ()
    policy: ExecutionPolicy = field(default_factory=lambda: ExecutionPolicy(0))
    native_asset: str | None = None
    unchecked: tuple[str, ...] = ()
    orphaned: tuple[OrphanedExecution, ...] = ()


def finding_key(chain: str, finding: RuleFinding, native_asset: str | None) -> BreakKey:
    """A fee above the ceiling is an unauthorized transfer of the native coin; everything else an
    execution finds is a change of who or what controls the wallet."""
    if finding.rule is Rule.FEE_CEILING:
        return BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, chain, finding.wallet, native_asset, finding.tx_hash)
    return BreakKey(BreakKind.WALLET_CONFIG_CHANGE, chain, finding.wallet, None, finding.tx_hash)


def execution_findings(inputs: ExecutionInputs) -> list[Finding]:
    """One finding per break key (wallet, kind, transaction): the worst severity of what the
    rules found in it, every finding's detail in rule order."""
    grouped: dict[BreakKey, list[RuleFinding]] = {}
    for execution in inputs.executions:
        for found in analyze(execution, inputs.profiles, inputs.policy):
            grouped.setdefault(finding_key(inputs.chain, found, inputs.native_asset), []).append(found)
    out = []
    for key, group in grouped.items():
        severity = max((f.severity for f in group), key=lambda s: s.rank)
        amounts = [f.amount for f in group if f.amount is not None]
        out.append(Finding(key, severity, sum(amounts) if amounts else None, "; ".join(f.detail for f in group)))
    return out


def orphaned_keys(inputs: ExecutionInputs) -> dict[BreakKey, str]:
    """Every break an execution reorged away may have opened, with why it is resolved."""
    notes: dict[BreakKey, str] = {}
    for o in inputs.orphaned:
        why = (
            f"its transaction {o.tx_hash} was reorged away: block {o.block_number} ({o.block_hash}) is no longer "
            "on the canonical chain"
        )
        notes[BreakKey(BreakKind.WALLET_CONFIG_CHANGE, inputs.chain, o.wallet, None, o.tx_hash)] = why
        notes[BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, inputs.chain, o.wallet, inputs.native_asset, o.tx_hash)] = why
    return notes
