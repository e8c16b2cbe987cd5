"""An ERC-3643 (T-REX 4.1.6) suite from the published npm artifacts on the real Anvil node: what
each issuer action does on chain and exactly which logs it emits, in order.

These are the facts the product relies on to recognise issuer actions on a custody wallet, so
each log is checked twice: raw (emitter, topics, data) against topics computed here from the
event signature, independently of any ABI, and decoded through the package's own ABI (event
name and argument values in ABI order). One suite is deployed per module; each test runs
inside evm_snapshot/evm_revert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from chains.evm.devnet import ZERO_ADDRESS, Devnet
from chains.evm.devnet_trex import (
    TrexSuite,
    add_management_key,
    batch_forced_transfer,
    burn,
    create_identity,
    deploy_trex,
    forced_transfer,
    freeze_partial,
    identity_registry_contract,
    mint,
    pause,
    recovery_address,
    register_holder,
    register_identity,
    set_address_frozen,
    token_contract,
    transfer_as,
    trex_artifact,
    unfreeze_partial,
    unpause,
)

UNIT = 10**18
AGENT_ONLY = "AgentRole: caller does not have the Agent role"
FRANCE = 250

# The event signatures the product must recognise, hashed here from text (not from an ABI).
TRANSFER = "Transfer(address,address,uint256)"
TOKENS_FROZEN = "TokensFrozen(address,uint256)"
TOKENS_UNFROZEN = "TokensUnfrozen(address,uint256)"
ADDRESS_FROZEN = "AddressFrozen(address,bool,address)"
RECOVERY_SUCCESS = "RecoverySuccess(address,address,address)"
PAUSED = "Paused(address)"
UNPAUSED = "Unpaused(address)"
IDENTITY_STORED = "IdentityStored(address,address)"
IDENTITY_UNSTORED = "IdentityUnstored(address,address)"
IDENTITY_REGISTERED = "IdentityRegistered(address,address)"
IDENTITY_REMOVED = "IdentityRemoved(address,address)"


def topic0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


@dataclass(frozen=True)
class Ev:
    """An expected log: emitter, event signature, indexed (type, value)s, data (type, value)s."""

    emitter: str
    signature: str
    indexed: tuple[tuple[str, Any], ...] = ()
    data: tuple[tuple[str, Any], ...] = ()

    def raw(self) -> tuple[str, list[str], str]:
        topics = [topic0(self.signature)] + ["0x" + abi_encode([t], [v]).hex() for t, v in self.indexed]
        data = "0x" + abi_encode([t for t, _ in self.data], [v for _, v in self.data]).hex()
        return self.emitter, topics, data


def addr(value: str) -> tuple[str, str]:
    return ("address", to_checksum_address(value))


def u256(value: int) -> tuple[str, int]:
    return ("uint256", value)


def boolean(value: bool) -> tuple[str, bool]:
    return ("bool", value)


# ----------------------------------------------------------------------------- the suite


@dataclass(frozen=True)
class World:
    net: Devnet
    trex: TrexSuite
    token: Contract
    alice: LocalAccount  # registered, 1,000 tokens
    bob: LocalAccount  # registered, no tokens
    carol: LocalAccount  # registered, no tokens
    identities: dict[str, str]  # holder address -> ONCHAINID
    deploy_seconds: float


@pytest.fixture(scope="module")
def world(devnet_session: Devnet) -> Iterator[World]:
    net = devnet_session
    outer = net.snapshot()
    started = time.monotonic()
    trex = deploy_trex(net, name="Tokenized MMF", symbol="TMMF", decimals=18)
    deploy_seconds = time.monotonic() - started
    alice, bob, carol = (net.new_account() for _ in range(3))
    identities = {h.address: register_holder(net, trex, h.address, country=FRANCE) for h in (alice, bob, carol)}
    mint(net, trex, alice.address, 1_000 * UNIT)
    yield World(net, trex, token_contract(net, trex), alice, bob, carol, identities, deploy_seconds)
    net.revert(outer)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    snap = world.net.snapshot()
    yield world
    world.net.revert(snap)


def decoders(w: World) -> dict[str, Contract]:
    """Every suite contract that emits logs, bound to its package ABI, by address."""
    t = w.trex
    return {
        t.token: w.token,
        t.identity_registry: identity_registry_contract(w.net, t),
        t.identity_registry_storage: w.net.w3.eth.contract(
            address=t.identity_registry_storage, abi=trex_artifact("IdentityRegistryStorage")["abi"]
        ),
        t.compliance: w.net.w3.eth.contract(address=t.compliance, abi=trex_artifact("ModularCompliance")["abi"]),
    }


def assert_logs(w: World, tx_hash: str, expected: Sequence[Ev]) -> dict[str, Any]:
    """The receipt's logs are exactly ``expected``, raw and decoded; returns the receipt."""
    receipt = w.net.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert receipt["status"] == 1
    raw = [
        (log["address"], [t.to_0x_hex() for t in log["topics"]], "0x" + bytes(log["data"]).hex())
        for log in receipt["logs"]
    ]
    assert raw == [e.raw() for e in expected]
    by_address = decoders(w)
    for log, ev in zip(receipt["logs"], expected, strict=True):
        name = ev.signature.split("(")[0]
        decoded = getattr(by_address[log["address"]].events, name)().process_log(log)
        assert decoded["event"] == name
        assert list(decoded["args"].values()) == [v for _, v in ev.indexed] + [v for _, v in ev.data]
    return dict(receipt)


def balances(w: World, *holders: str) -> list[int]:
    return [w.token.functions.balanceOf(h).call() for h in holders]


def frozen_tokens(w: World, holder: str) -> int:
    return int(w.token.functions.getFrozenTokens(holder).call())


def is_frozen(w: World, holder: str) -> bool:
    return bool(w.token.functions.isFrozen(holder).call())


def sender_of(w: World, tx_hash: str) -> str:
    return str(w.net.w3.eth.get_transaction(tx_hash)["from"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- deployment


def test_suite_is_wired_as_in_production(w: World) -> None:
    t, net, token = w.trex, w.net, w.token
    ir = identity_registry_contract(net, t)
    irs = decoders(w)[t.identity_registry_storage]
    compliance = decoders(w)[t.compliance]
    ctr = net.w3.eth.contract(address=t.claim_topics_registry, abi=trex_artifact("ClaimTopicsRegistry")["abi"])
    tir = net.w3.eth.contract(address=t.trusted_issuers_registry, abi=trex_artifact("TrustedIssuersRegistry")["abi"])

    assert (token.functions.name().call(), token.functions.symbol().call(), token.functions.decimals().call()) == (
        "Tokenized MMF",
        "TMMF",
        18,
    )
    assert token.functions.version().call() == "4.1.3"  # the 4.1.6 package's Token reports 4.1.3
    assert token.functions.onchainID().call() == ZERO_ADDRESS
    assert token.functions.paused().call() is False
    assert token.functions.identityRegistry().call() == t.identity_registry
    assert token.functions.compliance().call() == t.compliance
    assert compliance.functions.getTokenBound().call() == t.token
    assert compliance.functions.getModules().call() == []
    assert ir.functions.identityStorage().call() == t.identity_registry_storage
    assert ir.functions.topicsRegistry().call() == t.claim_topics_registry
    assert ir.functions.issuersRegistry().call() == t.trusted_issuers_registry
    assert irs.functions.linkedIdentityRegistries().call() == [t.identity_registry]
    assert irs.functions.isAgent(t.identity_registry).call() is True
    assert ctr.functions.getClaimTopics().call() == [t.claim_topic]
    assert tir.functions.getTrustedIssuersForClaimTopic(t.claim_topic).call() == [t.claim_issuer]
    for contract in (token, ir, irs, compliance, ctr, tir):
        assert contract.functions.owner().call() == t.owner.address
    assert token.functions.isAgent(t.agent.address).call() is True
    assert token.functions.isAgent(t.owner.address).call() is False
    assert ir.functions.isAgent(t.agent.address).call() is True
    assert ir.functions.isAgent(t.token).call() is True  # recoveryAddress registers through the IR
    assert t.deploy_transactions == 22
    assert 15_000_000 < t.deploy_gas < 22_000_000, t.deploy_gas
    assert w.deploy_seconds < 30


def test_only_a_holder_with_a_signed_claim_is_verified(w: World) -> None:
    net, t = w.net, w.trex
    ir = identity_registry_contract(net, t)
    for holder in (w.alice, w.bob, w.carol):
        assert ir.functions.isVerified(holder.address).call() is True
        assert ir.functions.identity(holder.address).call() == w.identities[holder.address]
        assert ir.functions.investorCountry(holder.address).call() == FRANCE

    stranger = net.new_account()
    assert ir.functions.isVerified(stranger.address).call() is False
    with pytest.raises(ContractLogicError, match="Identity is not verified."):
        mint(net, t, stranger.address, UNIT)
    with pytest.raises(ContractLogicError, match="Transfer not possible"):
        transfer_as(net, t, w.alice, stranger.address, UNIT)

    # Registered, but its ONCHAINID has no claim from the trusted issuer: still not verified.
    unclaimed = create_identity(net, t)
    register_identity(net, t, stranger.address, unclaimed)
    assert ir.functions.contains(stranger.address).call() is True
    assert ir.functions.isVerified(stranger.address).call() is False


# ----------------------------------------------------------------------------- mint, burn


def test_mint_emits_one_transfer_from_zero(w: World) -> None:
    supply = w.token.functions.totalSupply().call()
    tx = mint(w.net, w.trex, w.bob.address, 5 * UNIT)
    receipt = assert_logs(
        w, tx, [Ev(w.trex.token, TRANSFER, (addr(ZERO_ADDRESS), addr(w.bob.address)), (u256(5 * UNIT),))]
    )
    assert receipt["from"] == w.trex.agent.address and receipt["to"] == w.trex.token
    assert balances(w, w.bob.address) == [5 * UNIT]
    assert w.token.functions.totalSupply().call() == supply + 5 * UNIT
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        mint(w.net, w.trex, w.bob.address, UNIT, by=w.trex.owner)


def test_burn_within_the_free_balance_emits_one_transfer_to_zero(w: World) -> None:
    freeze_partial(w.net, w.trex, w.alice.address, 100 * UNIT)
    tx = burn(w.net, w.trex, w.alice.address, 900 * UNIT)  # exactly the free balance
    assert_logs(w, tx, [Ev(w.trex.token, TRANSFER, (addr(w.alice.address), addr(ZERO_ADDRESS)), (u256(900 * UNIT),))])
    assert balances(w, w.alice.address) == [100 * UNIT]
    assert frozen_tokens(w, w.alice.address) == 100 * UNIT


def test_burn_beyond_the_free_balance_unfreezes_the_difference_first(w: World) -> None:
    freeze_partial(w.net, w.trex, w.alice.address, 300 * UNIT)
    tx = burn(w.net, w.trex, w.alice.address, 800 * UNIT)  # free 700: 100 unfrozen
    assert_logs(
        w,
        tx,
        [
            Ev(w.trex.token, TOKENS_UNFROZEN, (addr(w.alice.address),), (u256(100 * UNIT),)),
            Ev(w.trex.token, TRANSFER, (addr(w.alice.address), addr(ZERO_ADDRESS)), (u256(800 * UNIT),)),
        ],
    )
    assert balances(w, w.alice.address) == [200 * UNIT]
    assert frozen_tokens(w, w.alice.address) == 200 * UNIT
    with pytest.raises(ContractLogicError, match="cannot burn more than balance"):
        burn(w.net, w.trex, w.alice.address, 200 * UNIT + 1)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        burn(w.net, w.trex, w.alice.address, 1, by=w.trex.owner)


# ----------------------------------------------------------------------------- partial freezes


def test_freeze_and_unfreeze_partial_tokens(w: World) -> None:
    alice = w.alice.address
    tx = freeze_partial(w.net, w.trex, alice, 400 * UNIT)
    assert_logs(w, tx, [Ev(w.trex.token, TOKENS_FROZEN, (addr(alice),), (u256(400 * UNIT),))])
    assert (frozen_tokens(w, alice), balances(w, alice)) == (400 * UNIT, [1_000 * UNIT])  # balance unchanged
    with pytest.raises(ContractLogicError, match="Amount exceeds available balance"):
        freeze_partial(w.net, w.trex, alice, 600 * UNIT + 1)

    tx = unfreeze_partial(w.net, w.trex, alice, 150 * UNIT)
    assert_logs(w, tx, [Ev(w.trex.token, TOKENS_UNFROZEN, (addr(alice),), (u256(150 * UNIT),))])
    assert frozen_tokens(w, alice) == 250 * UNIT
    with pytest.raises(ContractLogicError, match="Amount should be less than or equal to frozen tokens"):
        unfreeze_partial(w.net, w.trex, alice, 250 * UNIT + 1)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        freeze_partial(w.net, w.trex, alice, 1, by=w.trex.owner)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        unfreeze_partial(w.net, w.trex, alice, 1, by=w.trex.owner)


def test_holder_cannot_transfer_more_than_its_free_balance(w: World) -> None:
    freeze_partial(w.net, w.trex, w.alice.address, 400 * UNIT)
    with pytest.raises(ContractLogicError, match="Insufficient Balance"):
        transfer_as(w.net, w.trex, w.alice, w.bob.address, 600 * UNIT + 1)
    tx = transfer_as(w.net, w.trex, w.alice, w.bob.address, 600 * UNIT)
    assert_logs(w, tx, [Ev(w.trex.token, TRANSFER, (addr(w.alice.address), addr(w.bob.address)), (u256(600 * UNIT),))])
    assert sender_of(w, tx) == w.alice.address
    assert balances(w, w.alice.address, w.bob.address) == [400 * UNIT, 600 * UNIT]
    with pytest.raises(ContractLogicError, match="Insufficient Balance"):
        transfer_as(w.net, w.trex, w.alice, w.bob.address, 1)


def test_an_over_balance_transfer_mined_anyway_reverts_with_no_logs(w: World) -> None:
    freeze_partial(w.net, w.trex, w.alice.address, 400 * UNIT)
    call = w.token.functions.transfer(w.bob.address, 600 * UNIT + 1)
    receipt = send_unestimated(w.net, w.alice, call)
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert balances(w, w.alice.address, w.bob.address) == [1_000 * UNIT, 0]


def send_unestimated(net: Devnet, sender: LocalAccount, call: Any) -> Any:
    """Send with a fixed gas limit, so a reverting call is mined instead of refused."""
    base_fee = int(net.w3.eth.get_block("latest")["baseFeePerGas"])
    tx = call.build_transaction(
        {
            "from": sender.address,
            "gas": 300_000,
            "chainId": net.w3.eth.chain_id,
            "nonce": net.w3.eth.get_transaction_count(sender.address),
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    tx_hash = net.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    return net.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)


# ----------------------------------------------------------------------------- frozen wallets


def test_set_address_frozen_names_the_agent_and_blocks_both_directions(w: World) -> None:
    alice, bob, agent = w.alice.address, w.bob.address, w.trex.agent.address
    tx = set_address_frozen(w.net, w.trex, alice, True)
    assert_logs(w, tx, [Ev(w.trex.token, ADDRESS_FROZEN, (addr(alice), boolean(True), addr(agent)))])
    assert is_frozen(w, alice) is True
    assert frozen_tokens(w, alice) == 0  # the flag and the partial freeze are separate
    with pytest.raises(ContractLogicError, match="wallet is frozen"):
        transfer_as(w.net, w.trex, w.alice, bob, UNIT)

    mint(w.net, w.trex, bob, 10 * UNIT)
    with pytest.raises(ContractLogicError, match="wallet is frozen"):  # nor can it receive
        transfer_as(w.net, w.trex, w.bob, alice, UNIT)

    # No state check: freezing a frozen wallet emits again.
    tx = set_address_frozen(w.net, w.trex, alice, True)
    assert_logs(w, tx, [Ev(w.trex.token, ADDRESS_FROZEN, (addr(alice), boolean(True), addr(agent)))])

    tx = set_address_frozen(w.net, w.trex, alice, False)
    assert_logs(w, tx, [Ev(w.trex.token, ADDRESS_FROZEN, (addr(alice), boolean(False), addr(agent)))])
    assert is_frozen(w, alice) is False
    transfer_as(w.net, w.trex, w.alice, bob, UNIT)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        set_address_frozen(w.net, w.trex, alice, True, by=w.trex.owner)


# ----------------------------------------------------------------------------- pause


def test_pause_blocks_holder_transfers_but_not_the_agent(w: World) -> None:
    alice, bob, agent = w.alice.address, w.bob.address, w.trex.agent.address
    tx = pause(w.net, w.trex)
    # Paused(address) has no indexed field: the agent is the data word.
    assert_logs(w, tx, [Ev(w.trex.token, PAUSED, (), (addr(agent),))])
    assert w.token.functions.paused().call() is True
    with pytest.raises(ContractLogicError, match="Pausable: paused"):
        transfer_as(w.net, w.trex, w.alice, bob, UNIT)
    with pytest.raises(ContractLogicError, match="Pausable: paused"):
        pause(w.net, w.trex)

    # The agent's actions ignore the pause.
    mint(w.net, w.trex, bob, 10 * UNIT)
    burn(w.net, w.trex, bob, UNIT)
    forced_transfer(w.net, w.trex, alice, bob, 100 * UNIT)
    assert balances(w, alice, bob) == [900 * UNIT, 109 * UNIT]

    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        unpause(w.net, w.trex, by=w.trex.owner)
    tx = unpause(w.net, w.trex)
    assert_logs(w, tx, [Ev(w.trex.token, UNPAUSED, (), (addr(agent),))])
    assert w.token.functions.paused().call() is False
    with pytest.raises(ContractLogicError, match="Pausable: not paused"):
        unpause(w.net, w.trex)
    transfer_as(w.net, w.trex, w.alice, bob, UNIT)


# ----------------------------------------------------------------------------- forced transfers


def test_forced_transfer_within_the_free_balance_is_a_plain_transfer(w: World) -> None:
    alice, bob = w.alice.address, w.bob.address
    freeze_partial(w.net, w.trex, alice, 300 * UNIT)
    tx = forced_transfer(w.net, w.trex, alice, bob, 700 * UNIT)
    receipt = assert_logs(w, tx, [Ev(w.trex.token, TRANSFER, (addr(alice), addr(bob)), (u256(700 * UNIT),))])
    # Nothing in the logs names the agent: only the transaction's sender does.
    assert receipt["from"] == w.trex.agent.address and receipt["to"] == w.trex.token
    assert balances(w, alice, bob) == [300 * UNIT, 700 * UNIT]
    assert frozen_tokens(w, alice) == 300 * UNIT


def test_forced_transfer_beyond_the_free_balance_unfreezes_then_transfers(w: World) -> None:
    alice, bob = w.alice.address, w.bob.address
    freeze_partial(w.net, w.trex, alice, 300 * UNIT)
    tx = forced_transfer(w.net, w.trex, alice, bob, 900 * UNIT)  # free 700: 200 unfrozen
    assert_logs(
        w,
        tx,
        [
            Ev(w.trex.token, TOKENS_UNFROZEN, (addr(alice),), (u256(200 * UNIT),)),
            Ev(w.trex.token, TRANSFER, (addr(alice), addr(bob)), (u256(900 * UNIT),)),
        ],
    )
    assert balances(w, alice, bob) == [100 * UNIT, 900 * UNIT]
    assert frozen_tokens(w, alice) == 100 * UNIT


def test_forced_transfer_ignores_the_frozen_flag_but_not_verification(w: World) -> None:
    alice, bob = w.alice.address, w.bob.address
    set_address_frozen(w.net, w.trex, alice, True)
    set_address_frozen(w.net, w.trex, bob, True)
    tx = forced_transfer(w.net, w.trex, alice, bob, 10 * UNIT)
    assert_logs(w, tx, [Ev(w.trex.token, TRANSFER, (addr(alice), addr(bob)), (u256(10 * UNIT),))])
    assert (is_frozen(w, alice), is_frozen(w, bob)) == (True, True)

    with pytest.raises(ContractLogicError, match="sender balance too low"):
        forced_transfer(w.net, w.trex, alice, bob, 990 * UNIT + 1)
    with pytest.raises(ContractLogicError, match="Transfer not possible"):
        forced_transfer(w.net, w.trex, alice, w.net.new_account().address, UNIT)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        forced_transfer(w.net, w.trex, alice, bob, UNIT, by=w.trex.owner)


def test_batch_forced_transfer_emits_each_move_in_order(w: World) -> None:
    alice, bob, carol = w.alice.address, w.bob.address, w.carol.address
    freeze_partial(w.net, w.trex, alice, 500 * UNIT)
    tx = batch_forced_transfer(
        w.net,
        w.trex,
        [(alice, bob, 400 * UNIT), (alice, carol, 300 * UNIT), (bob, carol, 50 * UNIT)],
    )
    assert_logs(
        w,
        tx,
        [
            Ev(w.trex.token, TRANSFER, (addr(alice), addr(bob)), (u256(400 * UNIT),)),
            Ev(w.trex.token, TOKENS_UNFROZEN, (addr(alice),), (u256(200 * UNIT),)),
            Ev(w.trex.token, TRANSFER, (addr(alice), addr(carol)), (u256(300 * UNIT),)),
            Ev(w.trex.token, TRANSFER, (addr(bob), addr(carol)), (u256(50 * UNIT),)),
        ],
    )
    assert balances(w, alice, bob, carol) == [300 * UNIT, 350 * UNIT, 350 * UNIT]
    assert frozen_tokens(w, alice) == 300 * UNIT
    # batchForcedTransfer itself has no agent check; each inner forcedTransfer does.
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        batch_forced_transfer(w.net, w.trex, [(alice, bob, UNIT)], by=w.trex.owner)


# ----------------------------------------------------------------------------- recovery


def test_recovery_moves_balance_frozen_tokens_and_flag_to_the_new_wallet(w: World) -> None:
    net, t = w.net, w.trex
    lost, identity = w.alice.address, w.identities[w.alice.address]
    new = net.new_account().address
    freeze_partial(net, t, lost, 300 * UNIT)
    set_address_frozen(net, t, lost, True)
    add_management_key(net, t, identity, new)

    tx = recovery_address(net, t, lost, new, identity)
    irs, ir, tok, agent = t.identity_registry_storage, t.identity_registry, t.token, t.agent.address
    assert_logs(
        w,
        tx,
        [
            Ev(irs, IDENTITY_STORED, (addr(new), addr(identity))),
            Ev(ir, IDENTITY_REGISTERED, (addr(new), addr(identity))),
            Ev(tok, TOKENS_UNFROZEN, (addr(lost),), (u256(300 * UNIT),)),
            Ev(tok, TRANSFER, (addr(lost), addr(new)), (u256(1_000 * UNIT),)),
            Ev(tok, TOKENS_FROZEN, (addr(new),), (u256(300 * UNIT),)),
            Ev(tok, ADDRESS_FROZEN, (addr(new), boolean(True), addr(agent))),
            Ev(irs, IDENTITY_UNSTORED, (addr(lost), addr(identity))),
            Ev(ir, IDENTITY_REMOVED, (addr(lost), addr(identity))),
            Ev(tok, RECOVERY_SUCCESS, (addr(lost), addr(new), addr(identity))),
        ],
    )
    assert sender_of(w, tx) == agent
    assert balances(w, lost, new) == [0, 1_000 * UNIT]
    assert (frozen_tokens(w, lost), frozen_tokens(w, new)) == (0, 300 * UNIT)
    assert (is_frozen(w, lost), is_frozen(w, new)) == (True, True)  # the lost wallet's flag stays set
    registry = identity_registry_contract(net, t)
    assert registry.functions.contains(lost).call() is False
    assert registry.functions.identity(new).call() == identity
    assert registry.functions.investorCountry(new).call() == FRANCE


def test_recovery_of_an_unfrozen_wallet_and_its_refusals(w: World) -> None:
    net, t = w.net, w.trex
    lost, identity = w.alice.address, w.identities[w.alice.address]
    new = net.new_account().address
    with pytest.raises(ContractLogicError, match="Recovery not possible"):  # new wallet not on the ONCHAINID
        recovery_address(net, t, lost, new, identity)
    with pytest.raises(ContractLogicError, match="no tokens to recover"):
        recovery_address(net, t, w.bob.address, new, w.identities[w.bob.address])
    add_management_key(net, t, identity, new)
    with pytest.raises(ContractLogicError, match=AGENT_ONLY):
        recovery_address(net, t, lost, new, identity, by=t.owner)

    pause(net, t)  # recovery goes through while paused too
    tx = recovery_address(net, t, lost, new, identity)
    irs, ir, tok = t.identity_registry_storage, t.identity_registry, t.token
    assert_logs(
        w,
        tx,
        [
            Ev(irs, IDENTITY_STORED, (addr(new), addr(identity))),
            Ev(ir, IDENTITY_REGISTERED, (addr(new), addr(identity))),
            Ev(tok, TRANSFER, (addr(lost), addr(new)), (u256(1_000 * UNIT),)),
            Ev(irs, IDENTITY_UNSTORED, (addr(lost), addr(identity))),
            Ev(ir, IDENTITY_REMOVED, (addr(lost), addr(identity))),
            Ev(tok, RECOVERY_SUCCESS, (addr(lost), addr(new), addr(identity))),
        ],
    )
    assert balances(w, lost, new) == [0, 1_000 * UNIT]
    assert (is_frozen(w, lost), is_frozen(w, new)) == (False, False)


# ----------------------------------------------------------------------------- a contract holder


def test_a_custody_wallet_contract_can_hold_move_and_be_forced(w: World) -> None:
    net, t = w.net, w.trex
    owners = [net.new_account() for _ in range(2)]
    wallet = net.deploy_custody_wallet([o.address for o in owners], 2)
    register_holder(net, t, wallet.address)
    mint(net, t, wallet.address, 50 * UNIT)

    # The wallet's own transfer, executed by its owners: the token sees the wallet as sender.
    data = Devnet.calldata(w.token, "transfer", w.bob.address, 20 * UNIT)
    tx = net.exec_custody(wallet, owners, t.token, data=data)
    receipt = net.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
    token_logs = [log for log in receipt["logs"] if log["address"] == t.token]
    assert [(log["topics"][0].to_0x_hex(), log["topics"][1][12:].hex()) for log in token_logs] == [
        (topic0(TRANSFER), wallet.address[2:].lower())
    ]

    tx = forced_transfer(net, t, wallet.address, w.bob.address, 30 * UNIT)
    assert_logs(w, tx, [Ev(t.token, TRANSFER, (addr(wallet.address), addr(w.bob.address)), (u256(30 * UNIT),))])
    assert balances(w, wallet.address, w.bob.address) == [0, 50 * UNIT]


# ----------------------------------------------------------------------------- the ABI the product reads


SELECTORS = {
    "forcedTransfer(address,address,uint256)": "0x9fc1d0e7",
    "batchForcedTransfer(address[],address[],uint256[])": "0x42a47abc",
    "recoveryAddress(address,address,address)": "0x9285948a",
    "mint(address,uint256)": "0x40c10f19",
    "burn(address,uint256)": "0x9dc29fac",
    "freezePartialTokens(address,uint256)": "0x125c4a33",
    "unfreezePartialTokens(address,uint256)": "0x1fe56f7d",
    "setAddressFrozen(address,bool)": "0xc69c09cf",
    "pause()": "0x8456cb59",
    "unpause()": "0x3f4ba83a",
    "getFrozenTokens(address)": "0x158b1a57",
    "isFrozen(address)": "0xe5839836",
    "paused()": "0x5c975abb",
}


def abi_signature(item: dict[str, Any]) -> str:
    def typ(p: dict[str, Any]) -> str:
        if p["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in p["components"]) + ")" + p["type"][5:]
        return str(p["type"])

    return f"{item['name']}({','.join(typ(p) for p in item['inputs'])})"


def test_the_token_abi_has_the_functions_and_events_the_product_reads() -> None:
    abi = trex_artifact("Token")["abi"]
    functions = {abi_signature(i): i for i in abi if i["type"] == "function"}
    for signature, selector in SELECTORS.items():
        assert signature in functions, signature
        assert "0x" + keccak(text=signature)[:4].hex() == selector, signature
    outputs = {
        s: [o["type"] for o in functions[s]["outputs"]]
        for s in ("getFrozenTokens(address)", "isFrozen(address)", "paused()")
    }
    assert outputs == {"getFrozenTokens(address)": ["uint256"], "isFrozen(address)": ["bool"], "paused()": ["bool"]}

    events = {abi_signature(i): [p["indexed"] for p in i["inputs"]] for i in abi if i["type"] == "event"}
    assert {
        s: events[s]
        for s in (TRANSFER, TOKENS_FROZEN, TOKENS_UNFROZEN, ADDRESS_FROZEN, RECOVERY_SUCCESS, PAUSED, UNPAUSED)
    } == {
        TRANSFER: [True, True, False],
        TOKENS_FROZEN: [True, False],
        TOKENS_UNFROZEN: [True, False],
        ADDRESS_FROZEN: [True, True, True],
        RECOVERY_SUCCESS: [True, True, True],
        PAUSED: [False],
        UNPAUSED: [False],
    }
    registry_events = {
        abi_signature(i): [p["indexed"] for p in i["inputs"]]
        for name in ("IdentityRegistry", "IdentityRegistryStorage")
        for i in trex_artifact(name)["abi"]
        if i["type"] == "event"
    }
    for signature in (IDENTITY_STORED, IDENTITY_UNSTORED, IDENTITY_REGISTERED, IDENTITY_REMOVED):
        assert registry_events[signature] == [True, True], signature
    assert {s: topic0(s) for s in TOPICS} == TOPICS


TOPICS = {
    TRANSFER: "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    TOKENS_FROZEN: "0xa065e63c631c86f1b9f66a4a2f63f2093bf1c2168d23290259dbd969e0222a45",
    TOKENS_UNFROZEN: "0x9bed35cb62ad0dba04f9d5bfee4b5bc91443e77da8a65c4c84834c51bb08b0d6",
    ADDRESS_FROZEN: "0x7fa523c84ab8d7fc5b72f08b9e46dbbf10c39e119a075b3e317002d14bc9f436",
    RECOVERY_SUCCESS: "0xf0c9129a94f30f1caaceb63e44b9811d0a3edf1d6c23757f346093af5553fed0",
    PAUSED: "0x62e78cea01bee320cd4e420270b5ea74000d11b0c9f74754ebdbfc544b05a258",
    UNPAUSED: "0x5db9ee0a495bf2e6ff9c91a7834c1ba4fdd244a5e8aa4e537bd38aeae4b073aa",
    IDENTITY_STORED: "0x0030dea7e9c9afaa2e3c9810f2fc9b5181f1bad74ca5a8db85f746a33585e747",
    IDENTITY_UNSTORED: "0xca6a4c3370b859312246e7f086284076e557997e10d856b716c23ab67067790b",
    IDENTITY_REGISTERED: "0x6ae73635c50d24a45af6fbd5e016ac4bed179addbc8bf24e04ff0fcc6d33af19",
    IDENTITY_REMOVED: "0x59d6590e225b81befe259af056324092801080acbb7feab310eb34678871f327",
}
