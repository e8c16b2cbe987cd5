"""`presign`: a Safe transaction checked before anyone signs it — the three hashes a hardware
wallet shows, the decoded call, the static rules, and the transaction's own effect simulated at
the chain's pinned block and judged by the same analyzer as every observed execution.

Invariants:
- Read-only: nothing is written to the ledger (its schema is checked, no run is reaped) and
  nothing is sent to a chain; the simulation's key is thrown away.
- The hashes are computed by Safe's rules for the wallet's version, and online they are checked
  against the Safe's own ``getTransactionHash`` at the pin: a difference is never shown as ok.
- Verdict: ``danger`` when any finding is an error or critical, ``unchecked`` when the payload
  or the simulation could not be checked (the node does not simulate, the Safe's version cannot
  be read, the simulated execution reverted), else ``ok``. ``--offline`` checks the hashes and
  the static rules only, and says that nothing was simulated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak

from chains.base import ChainAdapter
from reconciler.domain import BlockRef, Severity, eip55, format_amount
from reconciler.engine.executions import (
    GUARD_SLOT,
    NONCE_SLOT,
    OWNER_COUNT_SLOT,
    OWNERS_SLOT,
    SENTINEL,
    THRESHOLD_SLOT,
    Execution,
    ExecutionPolicy,
    Rule,
    RuleFinding,
    StorageChange,
    analyze,
    candidate_keys,
    is_config_write,
    mapping_slot,
    profile_for,
    slot_meanings,
)
from reconciler.engine.safetx import (
    DecodedCall,
    KnownContracts,
    SafeTx,
    SafeVersion,
    decode_safe_tx,
    parse_safe_version,
    safe_hashes,
    uses_base_gas,
)
from reconciler.engine.safetx_rules import StaticContext, calls_with_data, static_findings
from reconciler.engine.surveillance import match_outflows, movements_for
from reconciler.errors import ChainError, InputError
from reconciler.inputs.instructions import partition_valid
from reconciler.inputs.safetx import PresignInput, check_version, parse_presign_file
from reconciler.inputs.settings import ChainSettings, Settings, WalletSettings, shown_names
from reconciler.ledger import surveillance_store
from reconciler.ledger.store import Ledger
from reconciler.transfers import MovementKind, Observation

AdapterFactory = Callable[[ChainSettings], ChainAdapter]

VERSION = bytes.fromhex("ffa1ad74")  # VERSION()
GET_TRANSACTION_HASH = "getTransactionHash(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,uint256)"
EXEC_TYPES = ["address", "uint256", "bytes", "uint8", "uint256", "uint256", "uint256", "address", "address", "bytes"]
HASH_TYPES = ["address", "uint256", "bytes", "uint8", "uint256", "uint256", "uint256", "address", "address", "uint256"]
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SIMULATION_GAS = 25_000_000
DEFAULT_VERSION = "1.3.0"
EXIT_CODES = {"ok": 0, "danger": 1, "unchecked": 2}


def _selector(signature: str) -> bytes:
    return bytes(keccak(signature.encode()))[:4]


@dataclass(frozen=True, slots=True)
class PresignOptions:
    wallet: str | None = None
    offline: bool = False
    chain_id: int | None = None
    safe: str | None = None
    safe_version: str | None = None


@dataclass(frozen=True, slots=True)
class PresignResult:
    document: dict[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.document["verdict"])

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass(frozen=True, slots=True)
class _Target:
    """Whose transaction it is: the configured wallet (None offline when none matches), its
    chain, the chain id and the Safe's address."""

    wallet: WalletSettings | None
    chain: ChainSettings | None
    chain_id: int
    safe: str


def _resolve(parsed: PresignInput, options: PresignOptions, settings: Settings | None, source: str) -> _Target:
    chain_id = options.chain_id if options.chain_id is not None else parsed.chain_id
    safe = options.safe if options.safe is not None else parsed.safe
    if options.chain_id is not None and parsed.chain_id is not None and options.chain_id != parsed.chain_id:
        raise InputError(source, [f"the file says chainId {parsed.chain_id} but --chain-id is {options.chain_id}"])
    if options.safe is not None and parsed.safe is not None and options.safe.lower() != parsed.safe.lower():
        raise InputError(source, [f"the file's Safe is {parsed.safe} but --safe is {options.safe}"])
    wallet: WalletSettings | None = None
    if options.wallet is not None:
        if settings is None or options.wallet not in settings.wallets:
            known = shown_names(settings.wallets) if settings is not None and settings.wallets else "none configured"
            raise InputError(source, [f"--wallet {options.wallet} names no configured wallet ({known})"])
        wallet = settings.wallets[options.wallet]
        configured = settings.chains[wallet.chain].chain_id
        if safe is not None and safe.lower() != wallet.address.lower():
            raise InputError(source, [f"the Safe is {safe} but wallets.{wallet.name}.address is {wallet.address}"])
        if chain_id is not None and chain_id != configured:
            raise InputError(
                source,
                [f"the chain id is {chain_id} but wallets.{wallet.name} is on chain {wallet.chain} ({configured})"],
            )
        safe, chain_id = wallet.address, configured
    if safe is None or chain_id is None:
        missing = " and ".join(n for n, v in (("the Safe's address", safe), ("the chain id", chain_id)) if v is None)
        raise InputError(
            source, [f"{missing} not given: use the typed-data document, or --safe and --chain-id, or --wallet"]
        )
    chain = None
    if wallet is None and settings is not None:
        chains = [c for c in settings.chains.values() if c.chain_id == chain_id]
        wallet = next(
            (w for c in chains for w in settings.wallets_on(c.name) if w.address.lower() == safe.lower()), None
        )
        if wallet is None and not options.offline:
            if not chains:
                ids = ", ".join(f"{c.name} ({c.chain_id})" for c in settings.chains.values())
                raise InputError(source, [f"chain id {chain_id} is not a configured chain ({ids})"])
            raise InputError(
                source,
                [
                    f"the Safe {safe} on chain id {chain_id} is not a configured wallet: add it as [wallets.NAME] "
                    "or check the payload's verifyingContract (use --offline to check hashes and static rules only)"
                ],
            )
    if wallet is not None and settings is not None:
        chain = settings.chains[wallet.chain]
    if not options.offline and chain is None:
        raise InputError(source, ["no configuration: presign needs one to read the chain (or use --offline)"])
    return _Target(wallet, chain, chain_id, eip55(safe))


def _known(settings: Settings | None, target: _Target) -> KnownContracts:
    tokens = {}
    if settings is not None and target.chain is not None:
        tokens = {a.address: a.name for a in settings.assets_on(target.chain.name) if a.address is not None}
    return KnownContracts(safe=target.safe, tokens=tokens)


def _decoded_version(answer: bytes | None) -> str | None:
    if not answer:
        return None
    try:
        (text,) = decode(["string"], answer)
    except Exception:  # noqa: BLE001 - a VERSION() that is not a string is no Safe version
        return None
    return str(text)


def presign(
    text: str,
    source: str,
    settings: Settings | None,
    options: PresignOptions,
    adapter_for: AdapterFactory,
    open_ledger: Callable[[Settings], Ledger],
) -> PresignResult:
    parsed = parse_presign_file(text, source=source)
    target = _resolve(parsed, options, settings, source)
    known = _known(settings, target)
    tx = parsed.tx
    decoded = decode_safe_tx(tx, known)
    if options.offline or target.chain is None or settings is None:
        version = parse_safe_version(options.safe_version or DEFAULT_VERSION, source="--safe-version")
        check_version(parsed, version, source=source)
        return PresignResult(_offline_document(target, settings, tx, decoded, version))
    return PresignResult(_online(parsed, target, settings, options, decoded, adapter_for, open_ledger, source))


def _version_text(version: SafeVersion) -> str:
    return ".".join(map(str, version))


def _base(target: _Target, tx: SafeTx, version: SafeVersion) -> dict[str, Any]:
    hashes = safe_hashes(tx, target.chain_id, target.safe, version)
    return {
        "wallet": target.wallet.name if target.wallet is not None else None,
        "chain": target.chain.name if target.chain is not None else None,
        "chain_id": target.chain_id,
        "safe": target.safe,
        "safe_version": _version_text(version),
        "domain_hash": hashes.domain_hash,
        "message_hash": hashes.message_hash,
        "safe_tx_hash": hashes.safe_tx_hash,
        "nonce": str(tx.nonce),
    }


def _verdict(findings: Sequence[RuleFinding], unchecked: bool) -> str:
    if unchecked:
        return "unchecked"
    return "danger" if any(f.severity.rank >= Severity.ERROR.rank for f in findings) else "ok"


def _finding_docs(findings: Sequence[RuleFinding]) -> list[dict[str, Any]]:
    return [{"rule": f.rule.value, "severity": f.severity.value, "detail": f.detail} for f in findings]


def _static_context(
    target: _Target, settings: Settings | None, wallet_nonce: int | None, codeless: frozenset[str] | None
) -> StaticContext:
    allowlist = frozenset(settings.presign.delegatecall_allowlist) if settings is not None else frozenset()
    spenders = frozenset(target.wallet.allowed_spenders) if target.wallet is not None else frozenset()
    return StaticContext(
        wallet=target.wallet.name if target.wallet is not None else target.safe,
        safe=target.safe,
        delegatecall_allowlist=allowlist,
        allowed_spenders=spenders,
        wallet_nonce=wallet_nonce,
        codeless=codeless,
    )


def _offline_document(
    target: _Target, settings: Settings | None, tx: SafeTx, decoded: DecodedCall, version: SafeVersion
) -> dict[str, Any]:
    findings = static_findings(tx, decoded, _static_context(target, settings, None, None))
    return {
        **_base(target, tx, version),
        "wallet_nonce": None,
        "verdict": _verdict(findings, unchecked=False),
        "call": decoded.to_json(),
        "findings": _finding_docs(findings),
        "simulation": None,
    }


def _online(
    parsed: PresignInput,
    target: _Target,
    settings: Settings,
    options: PresignOptions,
    decoded: DecodedCall,
    adapter_for: AdapterFactory,
    open_ledger: Callable[[Settings], Ledger],
    source: str,
) -> dict[str, Any]:
    assert target.chain is not None and target.wallet is not None
    chain, wallet, tx = target.chain, target.wallet, parsed.tx
    adapter = adapter_for(chain)
    try:
        node_chain_id = adapter.chain_id()
        if node_chain_id != chain.chain_id:
            raise ChainError(
                f"the node reports chain id {node_chain_id} but chains.{chain.name}.chain_id = {chain.chain_id}"
            )
        block = adapter.pin(chain.confirmations)
        reasons: list[str] = []
        if options.safe_version is not None:
            version = parse_safe_version(options.safe_version, source="--safe-version")
        else:
            read = _decoded_version(adapter.call(target.safe, VERSION, block))
            if read is None:
                reasons.append(
                    "the Safe's VERSION() does not answer at the pin (not a Safe, or its singleton was replaced): "
                    f"hashed as Safe {DEFAULT_VERSION}; give --safe-version to be sure"
                )
            version = parse_safe_version(read or DEFAULT_VERSION, source="the Safe's VERSION()")
        check_version(parsed, version, source=source)
        base = _base(target, tx, version)
        reasons += _on_chain_hash_differs(adapter, target, tx, version, block, base["safe_tx_hash"])
        [config] = adapter.wallet_configs([(wallet.name, wallet.address)], block)
        targets = calls_with_data(decoded)
        sizes = adapter.code_sizes(targets, block) if targets else []
        codeless = frozenset(t for t, size in zip(targets, sizes, strict=True) if size == 0)
        findings = static_findings(tx, decoded, _static_context(target, settings, config.nonce, codeless))
        ledger = open_ledger(settings)
        try:
            baseline = ledger.wallet_baselines_of(ledger.baseline_view(), chain.name, [wallet.name]).get(
                (chain.name, wallet.name)
            )
            instructions, consumed = _instructions(ledger, settings, chain.name)
        finally:
            ledger.close()
        profile = profile_for(wallet.name, wallet.address, wallet.approvers, baseline or config)
        simulation: dict[str, Any] | None = None
        if not uses_base_gas(version):
            reasons.append(f"Safe {_version_text(version)} is older than 1.0.0: its execution is not simulated")
        else:
            call, at, overrides, added = _simulation(
                target, tx, base["safe_tx_hash"], block, config.owners, config.threshold or 0
            )
            try:
                executed = _without_keys(adapter.simulate(call, at, overrides), target.safe, added)
            except ChainError as exc:
                reasons.append(f"the simulation could not run: {exc}")
            else:
                policy = ExecutionPolicy(chain.chain_id, frozenset(settings.presign.delegatecall_allowlist))
                findings += _simulated_findings(executed, profile, policy, findings)
                outflows = _outflows(executed, target.safe, settings, chain.name)
                findings += _unauthorized(outflows, executed, wallet, settings, chain, instructions, consumed, adapter)
                success = executed.root is not None and executed.root.error is None
                if not success:
                    reasons.append(
                        "the simulated execTransaction reverted"
                        + (f" ({executed.root.error})" if executed.root is not None else "")
                        + ": as signed, it would fail; nothing of its effect is known"
                    )
                simulation = {
                    "block": {"number": block.number, "hash": block.hash},
                    "success": success,
                    "storage_changes": _storage_changes(executed, profile.address, profile),
                    "outflows": [o.doc() for o in outflows],
                }
    finally:
        adapter.close()
    unchecked = any(r for r in reasons if "hashed as Safe" not in r) or simulation is None
    doc = {
        **base,
        "wallet_nonce": None if config.nonce is None else str(config.nonce),
        "verdict": _verdict(findings, unchecked),
        "call": decoded.to_json(),
        "findings": _finding_docs(findings),
        "simulation": simulation,
    }
    if reasons:
        doc["reasons"] = reasons
    return doc


def _on_chain_hash_differs(
    adapter: ChainAdapter, target: _Target, tx: SafeTx, version: SafeVersion, block: BlockRef, computed: str
) -> list[str]:
    """The Safe's own getTransactionHash at the pin must agree with ours."""
    args = [tx.to, tx.value, tx.data, tx.operation, tx.safe_tx_gas, tx.base_gas, tx.gas_price, tx.gas_token,
            tx.refund_receiver, tx.nonce]  # fmt: skip
    answer = adapter.call(target.safe, _selector(GET_TRANSACTION_HASH) + encode(HASH_TYPES, args), block)
    if answer is None or len(answer) != 32:
        return ["the Safe's getTransactionHash does not answer at the pin: the hashes could not be checked against it"]
    on_chain = "0x" + answer.hex()
    if on_chain != computed:
        return [f"the Safe's getTransactionHash answers {on_chain} where Safe's rules give {computed}: do not sign"]
    return []


def _instructions(ledger: Ledger, settings: Settings, chain: str) -> tuple[tuple[Any, ...], dict[str, str]]:
    valid, _invalid = partition_valid(surveillance_store.instructions(ledger, chain), settings)
    return tuple(i for i in valid if i.chain == chain), surveillance_store.consumed(ledger, chain)


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _simulation(
    target: _Target, tx: SafeTx, safe_tx_hash: str, block: BlockRef, owners: Sequence[str], threshold: int
) -> tuple[dict[str, Any], BlockRef, dict[str, dict[str, Any]], int]:
    """execTransaction as the Safe would run it once signed, by state overrides: as many
    throwaway keys as the threshold are appended to the owners list (after its last owner, so
    every real owner keeps its place and its predecessor), the owner count grows by as many,
    the guard is cleared and the nonce set to the payload's; the keys sign the Safe's hash of
    the payload. The threshold itself is not touched, so a payload that writes it shows. Returns
    the call, the block, the overrides and how many keys were added."""
    count = max(threshold, 1)
    keys = sorted((Account.create() for _ in range(count)), key=lambda k: int(k.address, 16))
    sentinel = int(SENTINEL, 16)
    chain = [int(o, 16) for o in owners] or [sentinel]
    links = [chain[-1], *(int(k.address, 16) for k in keys)]
    diff = {
        _word(mapping_slot(a.to_bytes(32, "big"), OWNERS_SLOT)): _word(b)
        for a, b in zip(links, [*links[1:], sentinel], strict=True)
    }
    diff[_word(OWNER_COUNT_SLOT)] = _word(len(owners) + count)
    if threshold < 1:
        diff[_word(THRESHOLD_SLOT)] = _word(1)  # a Safe whose threshold reads 0 is no Safe: let it run
    diff[_word(GUARD_SLOT)] = _word(0)
    diff[_word(NONCE_SLOT)] = _word(tx.nonce)
    digest = bytes.fromhex(safe_tx_hash[2:])
    signatures = b"".join(bytes(Account.unsafe_sign_hash(digest, k.key).signature) for k in keys)
    args = [tx.to, tx.value, tx.data, tx.operation, tx.safe_tx_gas, tx.base_gas, tx.gas_price, tx.gas_token,
            tx.refund_receiver, signatures]  # fmt: skip
    data = _selector("execTransaction(" + ",".join(EXEC_TYPES) + ")") + encode(EXEC_TYPES, args)
    call = {"from": keys[0].address, "to": target.safe, "data": "0x" + data.hex(), "gas": hex(SIMULATION_GAS)}
    return call, block, {target.safe: {"stateDiff": diff}}, count


def _without_keys(executed: Execution, safe: str, added: int) -> Execution:
    """The simulation's diff as the real Safe would see it: the owner count less the keys the
    overrides added."""
    diff = executed.diffs.get(safe)
    if diff is None:
        return executed
    storage = tuple(
        StorageChange(c.slot, c.before - added, c.after - added)
        if c.slot == OWNER_COUNT_SLOT and c.before >= added and c.after >= added
        else c
        for c in diff.storage
    )
    return replace(executed, diffs={**executed.diffs, safe: replace(diff, storage=storage)})


def _simulated_findings(
    executed: Execution, profile: Any, policy: ExecutionPolicy, static: Sequence[RuleFinding]
) -> list[RuleFinding]:
    """The analyzer's findings on the simulated execution, as presign's rules: a DELEGATECALL
    the static rules already named is not named twice; a storage write is critical when it
    touches the configuration, an error otherwise; a code change is a storage-level change."""
    named = {f.target.lower() for f in static if f.rule is Rule.DELEGATECALL and f.target}
    out = []
    for f in analyze(executed, [profile], policy):
        if f.rule is Rule.DELEGATECALL:
            if f.target is not None and f.target.lower() in named:
                continue
            out.append(f)
        elif f.rule is Rule.WALLET_STORAGE_WRITE:
            out.append(f if is_config_write(f) else replace(f, severity=Severity.ERROR))
        elif f.rule is Rule.CODE_CHANGE:
            out.append(replace(f, rule=Rule.WALLET_STORAGE_WRITE))
    return out


@dataclass(frozen=True, slots=True)
class _Outflow:
    asset: str | None  # the configured asset's name; None: a token no configuration names
    token: str | None  # None: the native coin
    to: str
    amount: int
    decimals: int | None
    position: str

    def doc(self) -> dict[str, Any]:
        shown = format_amount(self.amount, self.decimals) if self.decimals is not None else str(self.amount)
        return {
            "asset": self.asset if self.asset is not None else self.token,
            "token": self.token,
            "to": self.to,
            "amount": str(self.amount),
            "amount_display": shown,
        }


def _outflows(executed: Execution, safe: str, settings: Settings, chain: str) -> list[_Outflow]:
    """What the simulated execution moves out of the Safe: token Transfer logs from it and
    native value its frames send, in frames that did not revert."""
    assets = settings.assets_on(chain)
    by_token = {a.address.lower(): a for a in assets if a.address is not None}
    native = next((a for a in assets if a.native), None)
    out = []
    for frame, reverted in executed.frames():
        if reverted:
            continue
        for i, entry in enumerate(frame.logs):
            if len(entry.topics) != 3 or entry.topics[0] != TRANSFER_TOPIC or len(entry.data) != 32:
                continue
            if entry.topics[1][-40:] != safe[2:].lower():
                continue
            asset = by_token.get(entry.address.lower())
            out.append(
                _Outflow(
                    asset.name if asset else None,
                    entry.address,
                    eip55("0x" + entry.topics[2][-40:]),
                    int.from_bytes(entry.data, "big"),
                    asset.decimals if asset else None,
                    f"{frame.path}:{i}",
                )
            )
        if frame.value and frame.kind in ("CALL", "CREATE", "CREATE2", "SELFDESTRUCT") and frame.path:
            if frame.from_address.lower() == safe.lower():
                out.append(
                    _Outflow(native.name if native else None, None, frame.to, frame.value, 18, f"{frame.path}:value")
                )
    return out


def _unauthorized(
    outflows: Sequence[_Outflow],
    executed: Execution,
    wallet: WalletSettings,
    settings: Settings,
    chain: ChainSettings,
    instructions: tuple[Any, ...],
    consumed: Mapping[str, str],
    adapter: ChainAdapter,
) -> list[RuleFinding]:
    """Outflows that valid, unconsumed signed instructions in the ledger do not all cover, by the
    surveillance matching rules (nothing is consumed)."""
    if not outflows:
        return []
    now = adapter.block_time(BlockRef(executed.block_number, executed.block_hash))
    observations = []
    for i, o in enumerate(outflows):
        observations.append(
            Observation(
                chain=chain.name,
                block_number=executed.block_number,
                block_hash=executed.block_hash,
                block_time=now,
                tx_hash="0x" + "00" * 32,
                kind=MovementKind.TOKEN if o.token is not None else MovementKind.NATIVE,
                token=o.token,
                from_address=wallet.address,
                to_address=o.to,
                amount=o.amount,
                log_index=i if o.token is not None else None,
                trace_position=None if o.token is not None else f"sim.{i}",
            )
        )
    assets = settings.assets_on(chain.name)
    movements = [m for m in movements_for(observations, [wallet], assets) if m.wallet == wallet.name]
    result = match_outflows(movements, instructions, consumed, frozenset())
    findings = [
        RuleFinding(
            Rule.UNAUTHORIZED_OUTFLOW,
            Severity.CRITICAL,
            wallet.name,
            f"the simulation moves {m.describe().split(' in tx ')[0]} out of {wallet.name}, and no valid, "
            "unconsumed signed instruction in the ledger covers it (same asset, recipient and exact amount)",
        )
        for m in result.unauthorized
    ]
    for o in outflows:
        if o.asset is None:
            findings.append(
                RuleFinding(
                    Rule.UNAUTHORIZED_OUTFLOW,
                    Severity.CRITICAL,
                    wallet.name,
                    f"the simulation moves {o.amount} base units of {o.token or 'the native coin'} to {o.to}: no "
                    "configured asset is that token, so no instruction can authorize it",
                )
            )
    return findings


def _storage_changes(executed: Execution, address: str, profile: Any) -> list[dict[str, Any]]:
    diff = executed.diffs.get(address)
    if diff is None:
        return []
    addresses, words = candidate_keys(executed, profile)
    meanings = slot_meanings((c.slot for c in diff.storage), addresses, words)
    return [
        {
            "address": address,
            "slot": hex(c.slot),
            "before": _word(c.before),
            "after": _word(c.after),
            "meaning": meanings.get(c.slot),
        }
        for c in diff.storage
    ]
