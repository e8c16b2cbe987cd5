"""Presign's hashes against a real Safe 1.3.0 on Anvil: ``safe_hashes`` equals the Safe's own
``getTransactionHash`` and ``domainSeparator()``; Safe's MultiSend libraries deploy at their
canonical addresses and a MultiSendCallOnly batch executes from the Safe."""

from __future__ import annotations

import random

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3.contract import Contract

from chains.evm.devnet import Devnet
from chains.evm.devnet_safe import (
    DETERMINISTIC_DEPLOYER,
    DETERMINISTIC_DEPLOYER_RUNTIME,
    MULTISEND_130,
    MULTISEND_CALL_ONLY_130,
    deploy_multisend_130,
)
from reconciler.domain import eip55
from reconciler.engine.safetx import (
    MULTISEND_ADDRESSES,
    MULTISEND_CALL_ONLY_ADDRESSES,
    ZERO_ADDRESS,
    InnerTx,
    KnownContracts,
    SafeTx,
    decode_safe_tx,
    multisend_calldata,
    safe_hashes,
)
from reconciler.engine.safetx_rules import StaticContext, calls_with_data, static_findings
from tests.integration.helpers import new_address

CHAIN_ID = 31337


@pytest.fixture
def owners(devnet: Devnet) -> list[LocalAccount]:
    return [devnet.new_account() for _ in range(2)]


@pytest.fixture
def safe(devnet: Devnet, owners: list[LocalAccount]) -> Contract:
    return devnet.deploy_safe_130([o.address for o in owners], 2)


def onchain_hash(safe: Contract, tx: SafeTx) -> str:
    digest = safe.functions.getTransactionHash(
        tx.to,
        tx.value,
        tx.data,
        tx.operation,
        tx.safe_tx_gas,
        tx.base_gas,
        tx.gas_price,
        tx.gas_token,
        tx.refund_receiver,
        tx.nonce,
    ).call()
    return "0x" + bytes(digest).hex()


def payloads(safe: str) -> dict[str, SafeTx]:
    token, receiver, target = eip55(new_address()), eip55(new_address()), eip55(new_address())
    transfer = bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(receiver[2:]) + (10**6).to_bytes(32, "big")
    batch = multisend_calldata(
        [InnerTx(0, token, 0, transfer), InnerTx(0, target, 5, b""), InnerTx(1, target, 0, b"\x01\x02\x03")]
    )
    return {
        "call": SafeTx(token, 0, transfer, 0, nonce=0),
        "delegatecall": SafeTx(target, 0, b"\xde\xad\xbe\xef", 1, nonce=1),
        "empty data with value": SafeTx(receiver, 10**18, b"", 0, nonce=2),
        "long data": SafeTx(target, 0, bytes(range(256)) * 40, 0, nonce=3),
        "gas fields": SafeTx(target, 1, b"\x01", 0, safe_tx_gas=100_000, base_gas=21_000, gas_price=10**9, nonce=4),
        "gas token and refund receiver": SafeTx(
            target, 0, b"", 0, 50_000, 30_000, 7, gas_token=token, refund_receiver=receiver, nonce=5
        ),
        "MultiSend batch": SafeTx(MULTISEND_130, 0, batch, 1, nonce=6),
        "the Safe itself": SafeTx(safe, 0, bytes.fromhex("694e80c3") + (1).to_bytes(32, "big"), 0, nonce=2**256 - 1),
        "largest values": SafeTx(
            target, 2**256 - 1, b"\xff", 1, 2**256 - 1, 2**256 - 1, 2**256 - 1, token, receiver, 2**256 - 1
        ),
    }


def test_domain_separator_and_transaction_hashes_equal_the_safes(devnet: Devnet, safe: Contract) -> None:
    version = safe.functions.VERSION().call()
    assert version == "1.3.0"
    separator = "0x" + bytes(safe.functions.domainSeparator().call()).hex()
    for name, tx in payloads(safe.address).items():
        hashes = safe_hashes(tx, CHAIN_ID, safe.address, version)
        assert hashes.domain_hash == separator, name
        assert hashes.safe_tx_hash == onchain_hash(safe, tx), name


def test_random_payloads_hash_as_the_safe_does(devnet: Devnet, safe: Contract) -> None:
    rng = random.Random(20261124)

    def address() -> str:
        return ZERO_ADDRESS if rng.random() < 0.3 else to_checksum_address(rng.randbytes(20))

    def number() -> int:
        return rng.choice([0, 1, rng.getrandbits(32), rng.getrandbits(256)])

    for _ in range(40):
        tx = SafeTx(
            address(),
            number(),
            rng.randbytes(rng.choice([0, 1, 4, 31, 32, 33, rng.randrange(2000)])),
            rng.randrange(2),
            number(),
            number(),
            number(),
            address(),
            address(),
            number(),
        )
        assert safe_hashes(tx, CHAIN_ID, safe.address, "1.3.0").safe_tx_hash == onchain_hash(safe, tx), tx


def test_multisend_libraries_deploy_at_their_canonical_addresses(devnet: Devnet) -> None:
    # Anvil 1.7.1 predeploys the deterministic deployment proxy with its published runtime code.
    assert bytes(devnet.w3.eth.get_code(DETERMINISTIC_DEPLOYER)) == DETERMINISTIC_DEPLOYER_RUNTIME
    deployed = deploy_multisend_130(devnet)
    assert (deployed.multisend, deployed.multisend_call_only) == (MULTISEND_130, MULTISEND_CALL_ONLY_130)
    assert not deployed.installed_deployer
    assert MULTISEND_130 in MULTISEND_ADDRESSES and MULTISEND_CALL_ONLY_130 in MULTISEND_CALL_ONLY_ADDRESSES
    assert deploy_multisend_130(devnet) == deployed  # idempotent


def test_a_multisend_call_only_batch_of_two_transfers_moves_both(
    devnet: Devnet, safe: Contract, owners: list[LocalAccount]
) -> None:
    deploy_multisend_130(devnet)
    usdc = devnet.deploy_token("Test USD", "USDC", 6)
    devnet.mint(usdc, safe.address, 5_000_000)
    alice, bob = eip55(new_address()), eip55(new_address())
    batch = [
        InnerTx(0, usdc.address, 0, Devnet.calldata(usdc, "transfer", alice, 1_250_000)),
        InnerTx(0, usdc.address, 0, Devnet.calldata(usdc, "transfer", bob, 750_000)),
    ]
    data = multisend_calldata(batch)
    tx = SafeTx(MULTISEND_CALL_ONLY_130, 0, data, 1, nonce=devnet.wallet_nonce(safe.address))

    # Presign first: the batch decodes to two USDC transfers and, allowlisted, raises nothing.
    known = KnownContracts(safe=safe.address, tokens={usdc.address: "USDC"})
    decoded = decode_safe_tx(tx, known)
    assert [(c.contract, c.call_text()) for c in decoded.inner] == [
        ("USDC", f"transfer(to={alice}, value=1250000)"),
        ("USDC", f"transfer(to={bob}, value=750000)"),
    ]
    codeless = frozenset(a for a in calls_with_data(decoded) if not devnet.w3.eth.get_code(a))
    context = StaticContext(
        "safe-1",
        safe.address,
        delegatecall_allowlist=frozenset({MULTISEND_CALL_ONLY_130}),
        wallet_nonce=devnet.wallet_nonce(safe.address),
        codeless=codeless,
    )
    assert codeless == frozenset() and static_findings(tx, decoded, context) == []
    signed = safe_hashes(tx, CHAIN_ID, safe.address, "1.3.0").safe_tx_hash
    assert signed == onchain_hash(safe, tx)

    devnet.exec_safe(safe, owners, MULTISEND_CALL_ONLY_130, data=data, operation=1)
    assert usdc.functions.balanceOf(alice).call() == 1_250_000
    assert usdc.functions.balanceOf(bob).call() == 750_000
    assert usdc.functions.balanceOf(safe.address).call() == 3_000_000
    assert devnet.wallet_nonce(safe.address) == tx.nonce + 1
