"""The pure wallet checks: configuration values, their comparison, and the two passes."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import BlockRef, BreakKey, BreakKind, Severity
from reconciler.engine.lifecycle import plan_breaks
from reconciler.engine.passes import Coverage, Span
from reconciler.engine.wallets import (
    WALLET_CHECKS,
    FieldChange,
    WalletObservations,
    WatchedAsset,
    WatchedWallet,
    check_issuer_controls,
    check_wallet_configs,
    compare_config,
    wallet_check_coverage,
)
from reconciler.walletconfig import (
    COMPARED_FIELDS,
    ControlState,
    FreezeQuery,
    FreezeReading,
    IssuerControls,
    PauseReading,
    TokenImplementation,
    WalletConfig,
    WalletKind,
    delegation_of,
    wallet_kind,
)

BLOCK = BlockRef(number=500, hash="0x" + "ab" * 32)


def addr(n: int) -> str:
    return to_checksum_address(n.to_bytes(20, "big"))


WALLET = addr(0xC0FFEE)
TOKEN = addr(0x70CE)
A1, A2, A3 = addr(0xA1), addr(0xA2), addr(0xA3)
HASH_A = "0x" + "aa" * 32


def safe(**kw: Any) -> WalletConfig:
    values: dict[str, Any] = {
        "wallet": "cust-1",
        "chain": "eth",
        "address": WALLET,
        "block_number": 400,
        "kind": WalletKind.SAFE,
        "code_hash": HASH_A,
        "singleton": addr(0x5AFE),
        "owners": (A1, A2, A3),
        "threshold": 2,
        "nonce": 7,
        "fallback_handler": addr(0xFA11),
    }
    values.update(kw)
    return WalletConfig(**values)


# ----------------------------------------------------------------------------- strategies

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
hashes = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
optional_addresses = st.none() | addresses
counts = st.none() | st.integers(min_value=0, max_value=2**256 - 1)


@st.composite
def configs(draw: st.DrawFn) -> WalletConfig:
    return WalletConfig(
        wallet=draw(st.sampled_from(["cust-1", "cust-2"])),
        chain=draw(st.sampled_from(["eth", "base"])),
        address=draw(addresses),
        block_number=draw(st.integers(min_value=0, max_value=10**12)),
        kind=draw(st.sampled_from(list(WalletKind))),
        code_hash=draw(hashes),
        implementation=draw(optional_addresses),
        admin=draw(optional_addresses),
        singleton=draw(optional_addresses),
        owners=tuple(draw(st.lists(addresses, max_size=4))),
        threshold=draw(counts),
        nonce=draw(counts),
        modules=tuple(draw(st.lists(addresses, max_size=3))),
        guard=draw(optional_addresses),
        fallback_handler=draw(optional_addresses),
        delegation=draw(optional_addresses),
        problems=tuple(draw(st.lists(st.text(max_size=20), max_size=2))),
    )


# ----------------------------------------------------------------------------- compare_config


@given(configs())
def test_compare_with_itself_is_empty(config: WalletConfig) -> None:
    assert compare_config(config, config) == []


@settings(max_examples=300)
@given(configs(), configs(), st.sets(st.sampled_from(COMPARED_FIELDS)))
def test_compare_finds_exactly_the_fields_that_differ(a: WalletConfig, b: WalletConfig, taken: set[str]) -> None:
    # current = a with some compared fields (and always the uncompared ones) taken from b.
    current = replace(a, block_number=b.block_number, nonce=b.nonce, **{f: getattr(b, f) for f in taken})
    changes = compare_config(a, current)
    expected = [f for f in COMPARED_FIELDS if f in taken and getattr(a, f) != getattr(b, f)]
    assert [c.field for c in changes] == expected
    for change in changes:
        before, after = getattr(a, change.field), getattr(current, change.field)
        assert change.before == (list(before) if isinstance(before, tuple) else before)
        assert change.after == (list(after) if isinstance(after, tuple) else after)


def test_name_chain_block_and_nonce_are_not_configuration() -> None:
    base = safe()
    moved = replace(base, wallet="renamed", chain="other", block_number=999, nonce=8)
    assert compare_config(base, moved) == []
    assert "nonce" not in COMPARED_FIELDS and "block_number" not in COMPARED_FIELDS


def test_owner_order_is_part_of_the_configuration() -> None:
    assert compare_config(safe(), safe(owners=(A2, A1, A3))) == [FieldChange("owners", [A1, A2, A3], [A2, A1, A3])]


# ----------------------------------------------------------------------------- values


@given(configs())
def test_json_round_trip(config: WalletConfig) -> None:
    assert WalletConfig.from_json(config.to_json()) == config


@st.composite
def plain_configs(draw: st.DrawFn) -> WalletConfig:
    """A configuration with every field after code_hash at its default (an account without
    code), under any name: the template to_text writes such a one from."""
    return WalletConfig(
        wallet=draw(st.text(min_size=1, max_size=12)),
        chain=draw(st.text(min_size=1, max_size=8)),
        address=draw(addresses),
        block_number=draw(st.integers(min_value=0, max_value=10**12)),
        kind=draw(st.sampled_from(list(WalletKind))),
        code_hash=draw(hashes),
    )


@settings(max_examples=300)
@given(configs() | plain_configs(), st.integers(min_value=0, max_value=10**12))
def test_text_is_the_json_of_to_json(config: WalletConfig, block: int) -> None:
    # The baseline's stored text: a template for plain configurations, json.dumps otherwise;
    # and as the same configuration read at another block stores it.
    assert config.to_text() == json.dumps(config.to_json())
    assert config.to_text(block) == json.dumps(replace(config, block_number=block).to_json())


@given(configs() | plain_configs())
def test_pickle_round_trip(config: WalletConfig) -> None:
    again = pickle.loads(pickle.dumps(config))
    assert again == config and type(again.kind) is WalletKind


@given(plain_configs())
def test_without_code_is_the_checked_configuration(config: WalletConfig) -> None:
    made = WalletConfig.without_code(config.wallet, config.chain, config.address, config.block_number, config.code_hash)
    assert made == replace(config, kind=WalletKind.EOA)
    assert made.to_text() == json.dumps(made.to_json())


def test_json_has_the_design_fields() -> None:
    data = safe().to_json()
    assert data["kind"] == "safe" and data["owners"] == [A1, A2, A3] and data["modules"] == []
    for name in ("wallet", "chain", "block_number", "code_hash", "implementation", "admin", "singleton"):
        assert name in data
    for name in ("threshold", "guard", "fallback_handler", "delegation"):
        assert name in data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("address", WALLET.lower(), "EIP-55"),
        ("singleton", "0x" + "5a" * 20, "EIP-55"),
        ("owners", (A1, A2.lower()), "EIP-55"),
        ("owners", [A1], "tuple"),
        ("code_hash", HASH_A.upper().replace("0X", "0x"), "lowercase"),
        ("threshold", -1, "non-negative"),
        ("threshold", True, "non-negative"),
    ],
)
def test_malformed_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        safe(**{field: value})


def test_from_json_refuses_unknown_and_missing_fields() -> None:
    data = safe().to_json()
    with pytest.raises(ValueError, match="unknown wallet configuration field"):
        WalletConfig.from_json({**data, "colour": "red"})
    del data["code_hash"]
    with pytest.raises(ValueError, match="incomplete"):
        WalletConfig.from_json(data)
    with pytest.raises(ValueError, match="kind"):
        WalletConfig.from_json({**safe().to_json(), "kind": "vault"})


def test_kind_detection() -> None:
    designator = bytes.fromhex("ef0100") + bytes(range(20))
    assert wallet_kind(b"", 0, 0) is WalletKind.EOA
    assert wallet_kind(designator, 0, 0) is WalletKind.EOA
    assert wallet_kind(b"\x60\x80", 0x1234, 2) is WalletKind.SAFE
    assert wallet_kind(b"\x60\x80", 0x1234, 0) is WalletKind.CONTRACT  # no threshold: not set up
    assert wallet_kind(b"\x60\x80", 0, 1) is WalletKind.CONTRACT  # a Safe singleton itself
    assert delegation_of(designator) == "0x" + bytes(range(20)).hex()
    assert delegation_of(designator + b"\x00") is None
    assert delegation_of(bytes.fromhex("ef0101") + bytes(20)) is None


def test_freeze_query_needs_a_function_name() -> None:
    with pytest.raises(ValueError, match="function name"):
        FreezeQuery(TOKEN, WALLET, "isFrozen(address)")


# ----------------------------------------------------------------------------- check_wallet_configs


def observe(**kw: Any) -> WalletObservations:
    values: dict[str, Any] = {
        "chain": "eth",
        "block": BLOCK,
        "wallets": (WatchedWallet("cust-1", WALLET, approvers=(A1, A2)),),
        "configs": {"cust-1": safe(block_number=500, nonce=9)},
        "baselines": {"cust-1": safe()},
        "approver_delegations": {A1: None, A2: None},
    }
    values.update(kw)
    return WalletObservations(**values)


def test_unchanged_wallet_has_no_finding() -> None:
    assert check_wallet_configs(observe()) == []


def test_wallet_without_baseline_is_not_compared() -> None:
    assert check_wallet_configs(observe(baselines={}, configs={"cust-1": safe(singleton=addr(0xBAD))})) == []


def test_changed_wallet_is_one_critical_finding_naming_each_field() -> None:
    evil = addr(0xBAD)
    current = safe(singleton=evil, problems=("getThreshold() reverts",), block_number=500)
    [finding] = check_wallet_configs(observe(configs={"cust-1": current}))
    assert finding.key == BreakKey(BreakKind.WALLET_CONFIG_CHANGE, "eth", "cust-1", None)
    assert finding.severity is Severity.CRITICAL and finding.amount is None
    assert f"singleton: {addr(0x5AFE)} -> {evil}" in finding.detail
    assert "problems: [] -> [getThreshold() reverts]" in finding.detail
    assert "baseline reviewed at block 400" in finding.detail and BLOCK.hash in finding.detail


def test_delegated_approver_is_an_error_and_joins_a_config_change() -> None:
    delegate = addr(0xDE1E)
    [finding] = check_wallet_configs(observe(approver_delegations={A1: None, A2: delegate}))
    assert finding.severity is Severity.ERROR
    assert f"approver {A2} has an EIP-7702 delegation to {delegate}" in finding.detail

    # With a configuration change too: still one finding per wallet (one key), now critical.
    both = observe(approver_delegations={A1: None, A2: delegate}, configs={"cust-1": safe(threshold=1)})
    [finding] = check_wallet_configs(both)
    assert finding.severity is Severity.CRITICAL
    assert "threshold: 2 -> 1" in finding.detail and f"approver {A2}" in finding.detail


def test_unread_wallet_or_approver_is_a_caller_bug_not_a_clean() -> None:
    with pytest.raises(KeyError, match="cust-1"):
        check_wallet_configs(observe(configs={}))
    with pytest.raises(KeyError, match=A2):
        check_wallet_configs(observe(approver_delegations={A1: None}))


# ----------------------------------------------------------------------------- check_issuer_controls

USDC = WatchedAsset("USDC", TOKEN, 6, freeze_check="isBlacklisted", pause_check=True)
W2 = addr(0xC0FFEF)


def controls(frozen: ControlState = ControlState.NO, paused: ControlState = ControlState.NO) -> IssuerControls:
    return IssuerControls(
        block_number=BLOCK.number,
        freezes=(
            FreezeReading(TOKEN, WALLET, "isBlacklisted", BLOCK.number, frozen, "" if frozen != "unknown" else "x"),
            FreezeReading(TOKEN, W2, "isBlacklisted", BLOCK.number, ControlState.NO),
        ),
        pauses=(PauseReading(TOKEN, BLOCK.number, paused, "" if paused != "unknown" else "paused() reverted"),),
        implementations=(TokenImplementation(TOKEN, BLOCK.number, eip1967=None, zeppelinos=addr(0x1)),),
    )


def issuer(**kw: Any) -> WalletObservations:
    values: dict[str, Any] = {
        "chain": "eth",
        "block": BLOCK,
        "wallets": (WatchedWallet("cust-1", WALLET), WatchedWallet("cust-2", W2)),
        "configs": {},
        "assets": (USDC,),
        "controls": controls(),
        "balances": {("cust-1", "USDC"): 1_500_000, ("cust-2", "USDC"): 0},
    }
    values.update(kw)
    return WalletObservations(**values)


def test_nothing_frozen_nothing_found() -> None:
    assert check_issuer_controls(issuer()) == []


def test_frozen_wallet_is_an_error_naming_the_balance() -> None:
    [finding] = check_issuer_controls(issuer(controls=controls(frozen=ControlState.YES)))
    assert finding.key == BreakKey(BreakKind.ASSET_FROZEN, "eth", "cust-1", "USDC")
    assert finding.severity is Severity.ERROR and finding.amount == 1_500_000
    assert f"isBlacklisted({WALLET}) is true" in finding.detail and "holds 1.500000 USDC" in finding.detail


def test_frozen_wallet_with_no_balance_is_still_a_finding() -> None:
    obs = issuer(controls=controls(frozen=ControlState.YES), balances={("cust-1", "USDC"): 0})
    [finding] = check_issuer_controls(obs)
    assert finding.amount == 0


def test_paused_token_is_one_finding_per_wallet_holding_it() -> None:
    [finding] = check_issuer_controls(issuer(controls=controls(paused=ControlState.YES)))
    assert finding.key.wallet == "cust-1" and finding.severity is Severity.ERROR
    assert "paused" in finding.detail
    # A balance that was not read counts as holding.
    unknown = check_issuer_controls(issuer(controls=controls(paused=ControlState.YES), balances={}))
    assert [f.key.wallet for f in unknown] == ["cust-1", "cust-2"]
    assert all(f.amount is None and "balance not read" in f.detail for f in unknown)


def test_frozen_and_paused_share_one_finding() -> None:
    [finding] = check_issuer_controls(issuer(controls=controls(frozen=ControlState.YES, paused=ControlState.YES)))
    assert "is true" in finding.detail and "is paused" in finding.detail


def test_unknown_controls_are_warnings_never_clean() -> None:
    findings = check_issuer_controls(issuer(controls=controls(frozen=ControlState.UNKNOWN)))
    assert [(f.key.wallet, f.severity) for f in findings] == [("cust-1", Severity.WARNING)]
    findings = check_issuer_controls(issuer(controls=controls(paused=ControlState.UNKNOWN)))
    assert [(f.severity, "paused() reverted" in f.detail) for f in findings] == [(Severity.WARNING, True)]


def test_token_implementation_change_is_a_warning_and_the_worst_severity_wins() -> None:
    baseline = {TOKEN: TokenImplementation(TOKEN, 100, eip1967=None, zeppelinos=addr(0x2))}
    [finding] = check_issuer_controls(issuer(token_baselines=baseline))
    assert finding.severity is Severity.WARNING
    assert f"ZeppelinOS implementation changed from {addr(0x2)} to {addr(0x1)} since block 100" in finding.detail
    [finding] = check_issuer_controls(issuer(token_baselines=baseline, controls=controls(frozen=ControlState.YES)))
    assert finding.severity is Severity.ERROR and "implementation changed" in finding.detail


def test_missing_control_reading_is_a_caller_bug() -> None:
    with pytest.raises(KeyError, match="isBlacklisted"):
        check_issuer_controls(issuer(controls=IssuerControls(block_number=BLOCK.number)))


def test_asset_without_controls_needs_no_readings() -> None:
    plain = WatchedAsset("TMMF", addr(0x3333), 18)
    assert check_issuer_controls(issuer(assets=(plain,), controls=None)) == []


# ----------------------------------------------------------------------------- passes and coverage


def test_passes_share_one_signature_and_their_keys_never_collide() -> None:
    delegate = addr(0xDE1E)
    obs = WalletObservations(
        chain="eth",
        block=BLOCK,
        wallets=(WatchedWallet("cust-1", WALLET, approvers=(A1,)), WatchedWallet("cust-2", W2)),
        configs={"cust-1": safe(threshold=1), "cust-2": safe(wallet="cust-2", address=W2)},
        baselines={"cust-1": safe(), "cust-2": safe(wallet="cust-2", address=W2)},
        approver_delegations={A1: delegate},
        assets=(USDC,),
        controls=controls(frozen=ControlState.YES, paused=ControlState.YES),
        balances={("cust-1", "USDC"): 5, ("cust-2", "USDC"): 6},
    )
    findings = [f for check in WALLET_CHECKS for f in check(obs)]
    keys = [f.key for f in findings]
    assert len(keys) == len(set(keys)) == 3
    spans = wallet_check_coverage(obs)
    coverage = Coverage(spans=tuple(Span(kind, obs.chain, frozenset(w), frozenset(a)) for kind, w, a in spans))
    assert all(k in coverage for k in keys) and sum(len(w) * len(a) for _, w, a in spans) == 4
    plan = plan_breaks([], findings, coverage)  # the ledger's planner accepts them as they are
    assert len(plan.opened) == 3
