"""Safe transactions before signing: hashes against published vectors, the decoded call, and the
static presign rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import Severity, eip55
from reconciler.engine.executions import Rule, RuleFinding
from reconciler.engine.safetx import (
    DOMAIN_TYPEHASH,
    ERC20_FUNCTIONS,
    KNOWN_FUNCTIONS,
    LEGACY_DOMAIN_TYPEHASH,
    LEGACY_SAFE_TX_TYPEHASH,
    MAX_DEPTH,
    MULTISEND_ADDRESSES,
    MULTISEND_CALL_ONLY_ADDRESSES,
    SAFE_CONFIG_FUNCTIONS,
    SAFE_OTHER_FUNCTIONS,
    SAFE_TX_TYPEHASH,
    ZERO_ADDRESS,
    Function,
    InnerTx,
    KnownContracts,
    SafeTx,
    decode_call,
    decode_multisend,
    decode_safe_tx,
    encode_multisend,
    multisend_calldata,
    parse_safe_version,
    safe_hashes,
    typed_data,
)
from reconciler.engine.safetx_rules import (
    STATIC_RULES,
    StaticContext,
    approval_rule,
    calls_with_data,
    delegatecall_rule,
    gas_refund_rule,
    no_code_target_rule,
    nonce_rule,
    static_findings,
    wallet_config_rule,
    where,
)
from reconciler.errors import InputError

SAFE = "0x1c694Fc3006D81ff4a56F97E1b99529066a23725"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
TMMF = eip55("0x" + "33" * 20)
ALICE = eip55("0x" + "a1" * 20)
BOB = eip55("0x" + "b0" * 20)
ROUTER = eip55("0x" + "5e" * 20)  # an allowed spender
LIB = eip55("0x" + "11" * 20)  # an allowlisted delegatecall target
EVIL = eip55("0x" + "ee" * 20)
MULTISEND_130 = "0xA238CBeb142c10Ef7Ad8442C6D1f9E89e07e7761"
CALL_ONLY_130 = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
KNOWN = KnownContracts(safe=SAFE, tokens={USDC: "USDC", TMMF: "TMMF"})
CONTEXT = StaticContext(
    wallet="seg-1",
    safe=SAFE,
    delegatecall_allowlist=frozenset({CALL_ONLY_130, LIB, MULTISEND_130}),
    allowed_spenders=frozenset({ROUTER}),
)


def _fn(signature: str) -> Function:
    return next(f for f in KNOWN_FUNCTIONS.values() if f.signature == signature)


def calldata(signature: str, *args: Any) -> bytes:
    function = _fn(signature)
    return function.selector + abi_encode(list(function.types), list(args))


def safe_tx(to: str, data: bytes = b"", operation: int = 0, **kw: Any) -> SafeTx:
    return SafeTx(to=to, data=data, operation=operation, **kw)


# ----------------------------------------------------------------------------- hashes: published vectors


def test_typehashes_are_the_safe_contracts_constants() -> None:
    # GnosisSafe.sol of v0.1.0 (SAFE_TX_TYPEHASH with dataGas), v1.1.1 (DOMAIN_SEPARATOR_TYPEHASH
    # without chainId) and v1.3.0: the constants the contracts hard-code.
    assert "0x" + SAFE_TX_TYPEHASH.hex() == "0xbb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8"
    assert "0x" + LEGACY_SAFE_TX_TYPEHASH.hex() == "0x14d461bc7412367e924637b363c7bf29b8f47e2f84869f4426e5633d8af47b20"
    assert "0x" + DOMAIN_TYPEHASH.hex() == "0x47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218"
    assert "0x" + LEGACY_DOMAIN_TYPEHASH.hex() == "0x035aff83d86937d35b32e04f0ddc6ff469290eef2f1b692d8a815c89404d4749"


Z = ZERO_ADDRESS
MULTISEND_VECTOR_DATA = (
    "0x8d80ff0a00000000000000000000000000000000000000000000000000000000000000200000000000000000000000000000000000"
    "00000000000000000000000000013200cfbfac74c26f8647cbdb8c5caf80bb5b32e43134000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000044dd43a79f00000000"
    "0000000000000000f46c6d6e62f59d9222f3812874211df07cf7b3180000000000000000000000000000000000000000000000000000"
    "00000000000100a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000044a9059cbb0000000000000000000000001f"
    "e27a73cd9f0b3c53b6e936d0b4f9b2f8ca3367000000000000000000000000000000000000000000000000000000002faf0800000000"
    "0000000000000000000000"
)

# (source, version, chain id, safe, (to, value, data, operation, safeTxGas, baseGas, gasPrice, gasToken,
#  refundReceiver, nonce), domain hash or None, message hash or None, safeTxHash)
VECTORS = [
    (
        # Cyfrin/safe-hash-rs README.md, "Real-world example (USDC transfer)": mainnet Safe 1.3.0, nonce 63.
        "safe-hash-rs README USDC transfer",
        "1.3.0",
        1,
        "0x1c694Fc3006D81ff4a56F97E1b99529066a23725",
        (
            USDC,
            0,
            "0xa9059cbb00000000000000000000000092d0ebaf7eb707f0650f9471e61348f4656c29bc000000000000000000000000000000000"
            "00000000000000000000005d21dba00",
            0,
            0,
            0,
            0,
            Z,
            Z,
            63,
        ),
        "0x1655e94a9bcc5a957daa1acae692b4c22e7aaf146b4deb9194f8221d2f09d8c3",
        "0xf22754eba5a2b230714534b4657195268f00dc0031296de4b835d82e7aa1e574",
        "0xad06b099fca34e51e4886643d95d9a19ace2cd024065efb66662a876e8c40343",
    ),
    (
        # pcaversaccio/safe-tx-hashes-util README.md, "Safe Transaction Hashes": Arbitrum (42161),
        # Safe 1.3.0+L2, addOwnerWithThreshold to the Safe itself, nonce 234.
        "safe-tx-hashes-util README addOwnerWithThreshold",
        "1.3.0+L2",
        42161,
        "0x111CEEee040739fD91D29C34C33E6B3E112F2177",
        (
            "0x111CEEee040739fD91D29C34C33E6B3E112F2177",
            0,
            "0x0d582f130000000000000000000000000c75fa5a5f1c0997e3eea425cfa13184ed0ec9e50000000000000000000000000000000"
            "000000000000000000000000000000003",
            0,
            0,
            0,
            0,
            Z,
            Z,
            234,
        ),
        "0x1cf7f9b1efe3bc47fe02fd27c649fea19e79d66040683a1c86c7490c80bf7291",
        "0xd9109ea63c50ecd3b80b6b27ed5c5a9fd3d546c2169dfb69bfa7ba24cd14c7a5",
        "0x0cb7250b8becd7069223c54e2839feaed4cee156363fbfe5dd0a48e75c4e25b3",
    ),
    (
        # pcaversaccio/safe-tx-hashes-util README.md, "Interactive Mode": the same with value 1000, a
        # DELEGATECALL, gasPrice 50, WETH as gasToken and a refundReceiver.
        "safe-tx-hashes-util README interactive mode (gas token, refund receiver)",
        "1.3.0",
        42161,
        "0x111CEEee040739fD91D29C34C33E6B3E112F2177",
        (
            "0x111CEEee040739fD91D29C34C33E6B3E112F2177",
            1000,
            "0x0d582f130000000000000000000000000c75fa5a5f1c0997e3eea425cfa13184ed0ec9e50000000000000000000000000000000"
            "000000000000000000000000000000003",
            1,
            0,
            0,
            50,
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
            234,
        ),
        "0x1cf7f9b1efe3bc47fe02fd27c649fea19e79d66040683a1c86c7490c80bf7291",
        "0xc7e826933da60e6ac3e2246ed0563a26a920a65beaa9089d784ac96234141bb3",
        "0xc818fceb1cace51c1a4039c4c66fc73d95eccc298104c9c52debac604b9f4e04",
    ),
    (
        # pcaversaccio/safe-tx-hashes-util README.md, "Transaction Simulation": mainnet, a DELEGATECALL to
        # MultiSendCallOnly 1.4.1 carrying two calls (removeDelegate, a USDC transfer), nonce 6.
        "safe-tx-hashes-util README MultiSendCallOnly batch",
        "1.4.1",
        1,
        "0x5EA1d9A6dDC3A0329378a327746D71A2019eC332",
        ("0x9641d764fc13c8B624c04430C7356C1C7C8102e2", 0, MULTISEND_VECTOR_DATA, 1, 0, 0, 0, Z, Z, 6),
        "0x58122ea8f001782facc66ee5495a6b8b29730fadf352d8608ca86bd31569fcf5",
        "0xe992e061576268328fac9175d6aea3defd4c3bef83a0c6fe08f6aa5a222cbc45",
        "0x27a0c4abf624b15b776f544a4b31ed4d50dee2b677c6497fbadf4f7a73be705e",
    ),
    (
        # pcaversaccio/safe-tx-hashes-util README.md, "Nested Safes": Sepolia, a 0.1 ETH transfer, nonce 4 ...
        "safe-tx-hashes-util README nested Safes (primary)",
        "1.3.0",
        11155111,
        "0x657ff0D4eC65D82b2bC1247b0a558bcd2f80A0f1",
        ("0x255C3912f91eF11bFDadd405F13144a823Da8cc5", 10**17, "0x", 0, 0, 0, 0, Z, Z, 4),
        "0x611379c19940caee095cdb12bebe6a9fa9abb74cdb1fbd7377c49a1f198dc24f",
        "0x565bba8b51924ffa64953596d0a2dd5c2cad39649f7de0bf2c8dbc903bd03258",
        "0xcb8bbe7bf8f8a1f3f57658e450d07d4422356ac042d96a87ba425b19e67a78a1",
    ),
    (
        # ... and the nested Safe's approveHash of that safeTxHash.
        "safe-tx-hashes-util README nested Safes (approveHash)",
        "1.3.0",
        11155111,
        "0x6bc56d6CE87C86CB0756c616bECFD3Cd32b09251",
        (
            "0x657ff0D4eC65D82b2bC1247b0a558bcd2f80A0f1",
            0,
            "0xd4d9bdcdcb8bbe7bf8f8a1f3f57658e450d07d4422356ac042d96a87ba425b19e67a78a1",
            0,
            0,
            0,
            0,
            Z,
            Z,
            4,
        ),
        "0x55f6c329a7834e2a4e789f5526f328fa75d14fe75b97b0001be40caf46ca92a1",
        "0xcd411ee5d49344391ef8d37b76e19dfacf505bbb20e856ac907acb5958ecbdf0",
        "0x86eb3f93f2670d119a4ecb8eeaa4dafe31a28abcafe06688d47e195a3dd7abb0",
    ),
    (
        # Cyfrin/safe-hash-rs crates/safe-utils/tests/hasher_tests.rs, test_signing_hasher: Sepolia, Safe
        # 1.3.0, an approve, nonce 6 (only the safeTxHash is published).
        "safe-hash-rs hasher_tests approve",
        "1.3.0",
        11155111,
        "0x86D46EcD553d25da0E3b96A9a1B442ac72fa9e9F",
        (
            "0x7b79995e5f793A07Bc00c21412e50Ecae098E7f9",
            0,
            "0x095ea7b3000000000000000000000000fe2f653f6579de62aaf8b186e618887d03fa31260000000000000000000000000000000"
            "000000000000000000000000000000001",
            0,
            0,
            0,
            0,
            Z,
            Z,
            6,
        ),
        None,
        None,
        "0x213be037275c94449a28b4edead76b0d63c7e12b52257f9d5686d98b9a1a5ff4",
    ),
    (
        # safe-global/safe-eth-py safe_eth/safe/tests/test_safe_tx.py, test_hash_safe_multisig_tx_1_3:
        # Rinkeby (4), Safe 1.3.0, a gasToken and a refundReceiver, nonce 17.
        "safe-eth-py test_hash_safe_multisig_tx_1_3",
        "1.3.0",
        4,
        "0x2B0b9cBDA3D7b0F760187c52A8FFB18C48E5d96A",
        (
            "0x79613FD49472C3C7a32188e45ff00e7bdC8a897d",
            2,
            "0x1212",
            0,
            0,
            0,
            0,
            "0xFA995c7a0d32A4e7497508a5C380369BE8dB49Db",
            "0x6b92f5E5360bfCa8F5d3FcE65D87382967847983",
            17,
        ),
        None,
        None,
        "0x01d42a801ac44d3ebd43592be980dea0756d7f7b27d718d3016a42ea7ce85587",
    ),
    (
        # 5afe/safe-client-gateway src/utils/tests/transactions.rs, safe_tx_hash_for_safe_address_cancellation_tx:
        # Rinkeby (4), Safe 1.3.0, the cancellation (empty call to the Safe itself) at nonce 39.
        "safe-client-gateway cancellation (1.3.0)",
        "1.3.0",
        4,
        "0x4cb09344de5bCCD45F045c5Defa0E0452869FF0f",
        ("0x4cb09344de5bCCD45F045c5Defa0E0452869FF0f", 0, "0x", 0, 0, 0, 0, Z, Z, 39),
        None,
        None,
        "0xdce3bf453ed8cf84d13c76911e5d11c31501b24004b9e856d6091808067bd398",
    ),
    (
        # 5afe/safe-client-gateway src/utils/tests/transactions.rs, domain_hash_for_safe_address_legacy,
        # parts_hash_for_cancellation and safe_tx_hash_for_safe_address_cancellation_tx_legacy: a Safe
        # before 1.3.0 (no chainId in the domain), the cancellation at nonce 39.
        "safe-client-gateway cancellation (legacy domain)",
        "1.1.1",
        4,  # ignored: not signed before 1.3.0
        "0xd6f5Bef6bb4acD235CF85c0ce196316d10785d67",
        ("0xd6f5Bef6bb4acD235CF85c0ce196316d10785d67", 0, "0x", 0, 0, 0, 0, Z, Z, 39),
        "0x6dda5da6f3b6225311946ab4732b5658018db6dc890378fbdb529d8e9832762a",
        "0xf0c66ea90dae4d21f8fed03cb6e7f03eb0720479fb2562915921721eed809626",
        "0x89067bfebe450e45c02dd97e3cc9bd1656d49ebb8a17819829eab9c5dc575c27",
    ),
    (
        # safe-global/safe-eth-py safe_eth/safe/tests/test_safe_tx.py, test_hash_safe_multisig_tx, "New
        # version of the contract": Safe 1.0.0 (baseGas, no chainId), gas fields set, nonce 67.
        "safe-eth-py test_hash_safe_multisig_tx 1.0.0",
        "1.0.0",
        None,
        "0x692a70D2e424a56D2C6C27aA97D1a86395877b3A",
        ("0x5AC255889882aaB35A2aa939679E3F3d4Cea221E", 5000000, "0x00", 0, 50000, 100, 10000, Z, Z, 67),
        None,
        None,
        "0x7c60341f3e1b4483575f38e84e97d6b332a2dd55b9290f39e6e26eef29a04fe7",
    ),
    (
        # The same test, "Old version of the contract": Safe 0.1.0 (dataGas in the SafeTx type).
        "safe-eth-py test_hash_safe_multisig_tx 0.1.0",
        "0.1.0",
        None,
        "0x692a70D2e424a56D2C6C27aA97D1a86395877b3A",
        ("0x5AC255889882aaB35A2aa939679E3F3d4Cea221E", 5000000, "0x00", 0, 50000, 100, 10000, Z, Z, 67),
        None,
        None,
        "0xc9d69a2350aede7978fdee58e702647e4bbdc82168577aa4a43b66ad815c6d1a",
    ),
    (
        # The same test, second 0.1.0 payload: operation 2 (CREATE, which Safe 0.1.0 had) and nonce 257000.
        "safe-eth-py test_hash_safe_multisig_tx 0.1.0 (CREATE)",
        "0.1.0",
        None,
        "0x692a70D2e424a56D2C6C27aA97D1a86395877b3A",
        (Z, 80000000, "0x562944", 2, 54522, 773, 22000000, Z, Z, 257000),
        None,
        None,
        "0x8ca8db91d72b379193f6e229eb2dff0d0621b6ef452d90638ee3206e9b7349b3",
    ),
    (
        # ... and the same payload hashed as Safe 1.0.0.
        "safe-eth-py test_hash_safe_multisig_tx 1.0.0 (CREATE)",
        "1.0.0",
        None,
        "0x692a70D2e424a56D2C6C27aA97D1a86395877b3A",
        (Z, 80000000, "0x562944", 2, 54522, 773, 22000000, Z, Z, 257000),
        None,
        None,
        "0xf585279fd867c94738096f4eab964e9e202014d2f0d5155d751099ad85cbe504",
    ),
]


def _vector_tx(fields: tuple[Any, ...]) -> SafeTx:
    to, value, data, operation, safe_tx_gas, base_gas, gas_price, gas_token, receiver, nonce = fields
    return SafeTx(
        eip55(to),
        value,
        bytes.fromhex(data[2:]),
        operation,
        safe_tx_gas,
        base_gas,
        gas_price,
        gas_token,
        receiver,
        nonce,
    )


@pytest.mark.parametrize(
    ("version", "chain_id", "safe", "fields", "domain", "message", "digest"),
    [v[1:] for v in VECTORS],
    ids=[v[0] for v in VECTORS],
)
def test_published_vectors(
    version: str,
    chain_id: int | None,
    safe: str,
    fields: tuple[Any, ...],
    domain: str | None,
    message: str | None,
    digest: str,
) -> None:
    hashes = safe_hashes(_vector_tx(fields), chain_id, eip55(safe), version)
    assert hashes.safe_tx_hash == digest
    if domain is not None:
        assert hashes.domain_hash == domain
    if message is not None:
        assert hashes.message_hash == message


def test_every_version_family_has_a_vector() -> None:
    families = {parse_safe_version(v[1]) >= (1, 3, 0) for v in VECTORS}
    assert families == {True, False}
    assert any(parse_safe_version(v[1]) < (1, 0, 0) for v in VECTORS)  # the dataGas typehash


@pytest.mark.parametrize("version", ["1.4.1", "1.3.0", "1.2.0", "1.1.1", "1.0.0", "0.1.0"])
def test_typed_data_hashes_the_same_by_eth_account(version: str) -> None:
    """An independent EIP-712 implementation hashing the document a wallet receives agrees."""
    tx = SafeTx(USDC, 5, b"\xa9\x05\x9c\xbb" + bytes(64), 1, 7, 8, 9, USDC, ALICE, 63)
    doc = typed_data(tx, 10, SAFE, version)
    signable = encode_typed_data(full_message=doc)
    hashes = safe_hashes(tx, 10, SAFE, version)
    assert "0x" + signable.header.hex() == hashes.domain_hash
    assert "0x" + signable.body.hex() == hashes.message_hash
    assert "0x" + keccak(b"\x19\x01" + signable.header + signable.body).hex() == hashes.safe_tx_hash
    assert json.loads(json.dumps(doc)) == doc  # JSON as a wallet receives it


def test_chain_id_is_signed_from_1_3_0_only() -> None:
    tx = safe_tx(USDC, nonce=1)
    assert safe_hashes(tx, 1, SAFE, "1.3.0") != safe_hashes(tx, 5, SAFE, "1.3.0")
    assert (
        safe_hashes(tx, 1, SAFE, "1.2.0") == safe_hashes(tx, 5, SAFE, "1.2.0") == safe_hashes(tx, None, SAFE, "1.2.0")
    )
    with pytest.raises(InputError, match="signs the chain id"):
        safe_hashes(tx, None, SAFE, "1.3.0")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.3.0", (1, 3, 0)),
        ("1.4.1", (1, 4, 1)),
        ("1.1.1", (1, 1, 1)),
        ("1.0.0", (1, 0, 0)),
        ("0.1.0", (0, 1, 0)),
        ("v1.3.0", (1, 3, 0)),
        ("1.3.0+L2", (1, 3, 0)),
        ("1.10.2", (1, 10, 2)),
    ],
)
def test_versions_parse(text: str, parsed: tuple[int, int, int]) -> None:
    assert parse_safe_version(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "1.3", "1.3.0.1", "one", "1.3.x", "01.3.0", "-1.3.0", " 1.3.0", "1.3.0-rc1", "1,3,0"]
)
def test_unparseable_versions_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="is not a Safe version: .* such as 1.3.0") as exc:
        parse_safe_version(text, source="--safe-version")
    assert exc.value.source == "--safe-version"
    with pytest.raises(InputError):
        safe_hashes(safe_tx(USDC), 1, SAFE, text)


def test_safe_tx_refuses_a_callers_bad_values() -> None:
    for bad in ({"value": -1}, {"nonce": 2**256}, {"operation": 256}, {"value": True}, {"gas_token": USDC.lower()}):
        with pytest.raises(ValueError):
            SafeTx(to=USDC, **bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- MultiSend packing

addresses = st.binary(min_size=20, max_size=20).map(lambda b: eip55("0x" + b.hex()))
inner_txs = st.builds(
    InnerTx,
    operation=st.integers(0, 255),
    to=addresses,
    value=st.integers(0, 2**256 - 1),
    data=st.binary(max_size=200),
)


@given(st.lists(inner_txs, max_size=8))
@settings(max_examples=200, deadline=None)
def test_multisend_packing_round_trips(batch: list[InnerTx]) -> None:
    packed = encode_multisend(batch)
    assert decode_multisend(packed) == batch
    decoded = decode_call(MULTISEND_130, 0, multisend_calldata(batch), 1, KNOWN)
    assert [(c.operation, c.to, c.value, c.data) for c in decoded.inner] == [
        (t.operation, t.to, t.value, t.data) for t in batch
    ]


def test_multisend_packing_layout() -> None:
    packed = encode_multisend([InnerTx(1, USDC, 7, b"\xab\xcd")])
    assert packed == b"\x01" + bytes.fromhex(USDC[2:]) + (7).to_bytes(32, "big") + (2).to_bytes(32, "big") + b"\xab\xcd"
    assert multisend_calldata([])[:4].hex() == "8d80ff0a"


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        (b"\x00" * 84, "only 84 bytes remain, fewer than the 85-byte header"),
        (b"\x00" * 53 + (5).to_bytes(32, "big") + b"\x01\x02", "declares 5 bytes of data but only 2 remain"),
    ],
)
def test_truncated_multisend_batches_are_refused(packed: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_multisend(packed)
    call = decode_call(MULTISEND_130, 0, _fn("multiSend(bytes)").selector + abi_encode(["bytes"], [packed]), 1, KNOWN)
    assert call.function == "multiSend(bytes)" and call.inner == ()
    assert call.note is not None and "the MultiSend batch does not decode" in call.note


# ----------------------------------------------------------------------------- decoding

SAMPLE: dict[str, Any] = {
    "address": ALICE,
    "uint256": 1000,
    "uint8": 27,
    "bytes32": b"\x42" * 32,
    "bytes": b"\x01\x02\x03",
    "bool": True,
    "address[]": [ALICE, BOB],
}
JSON_SAMPLE: dict[str, Any] = {
    "address": ALICE,
    "uint256": "1000",
    "uint8": "27",
    "bytes32": "0x" + "42" * 32,
    "bytes": "0x010203",
    "bool": True,
    "address[]": [ALICE, BOB],
}
ALL_FUNCTIONS = [*ERC20_FUNCTIONS, *SAFE_CONFIG_FUNCTIONS, *SAFE_OTHER_FUNCTIONS]


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=[f.signature for f in ALL_FUNCTIONS])
def test_each_known_function_decodes(function: Function) -> None:
    data = function.selector + abi_encode(list(function.types), [SAMPLE[t] for t in function.types])
    call = decode_call(TMMF, 0, data, 0, KNOWN)
    assert call.function == function.signature and call.selector == "0x" + function.selector.hex()
    assert call.note is None and call.contract == "TMMF"
    doc = call.to_json()
    assert doc["args"] == [
        {"name": n, "type": t, "value": JSON_SAMPLE[t]} for n, t in zip(function.names, function.types, strict=True)
    ]


def test_known_selectors() -> None:
    expected = {
        "transfer(address,uint256)": "a9059cbb",
        "transferFrom(address,address,uint256)": "23b872dd",
        "approve(address,uint256)": "095ea7b3",
        "increaseAllowance(address,uint256)": "39509351",
        "decreaseAllowance(address,uint256)": "a457c2d7",
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)": "d505accf",
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)": "e3ee160e",
        "setApprovalForAll(address,bool)": "a22cb465",
        "addOwnerWithThreshold(address,uint256)": "0d582f13",
        "removeOwner(address,address,uint256)": "f8dc5dd9",
        "swapOwner(address,address,address)": "e318b52b",
        "changeThreshold(uint256)": "694e80c3",
        "enableModule(address)": "610b5925",
        "disableModule(address,address)": "e009cfde",
        "setGuard(address)": "e19a9dd9",
        "setFallbackHandler(address)": "f08a0323",
        "changeMasterCopy(address)": "7de7edef",
        "approveHash(bytes32)": "d4d9bdcd",
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)": "6a761202",
        "execTransactionFromModule(address,uint256,bytes,uint8)": "468721a7",
        "setup(address[],uint256,address,bytes,address,address,uint256,address)": "b63e800d",
        "multiSend(bytes)": "8d80ff0a",
    }
    for signature, selector in expected.items():
        assert _fn(signature).selector.hex() == selector


def test_decoded_call_json_has_exactly_the_documented_shape() -> None:
    batch = [InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", BOB, 1000)), InnerTx(0, BOB, 5, b"")]
    doc = decode_call(CALL_ONLY_130.lower(), 0, multisend_calldata(batch), 1, KNOWN).to_json()
    keys = ["to", "value", "operation", "contract", "function", "selector", "args", "data", "inner"]
    assert list(doc) == keys
    assert doc["to"] == CALL_ONLY_130 and doc["contract"] == "MultiSendCallOnly" and doc["operation"] == 1
    assert doc["inner"][0] == {
        "to": USDC,
        "value": "0",
        "operation": 0,
        "contract": "USDC",
        "function": "transfer(address,uint256)",
        "selector": "0xa9059cbb",
        "args": [
            {"name": "to", "type": "address", "value": BOB},
            {"name": "value", "type": "uint256", "value": "1000"},
        ],
        "data": "0x" + calldata("transfer(address,uint256)", BOB, 1000).hex(),
        "inner": [],
    }
    assert doc["inner"][1] == {
        "to": BOB,
        "value": "5",
        "operation": 0,
        "contract": None,
        "function": None,
        "selector": None,
        "args": [],
        "data": "0x",
        "inner": [],
    }
    json.dumps(doc)


@pytest.mark.parametrize(
    ("address", "label"),
    [(SAFE, "safe"), (USDC, "USDC"), (MULTISEND_130, "MultiSend"), (CALL_ONLY_130, "MultiSendCallOnly"), (BOB, None)],
)
def test_contract_labels(address: str, label: str | None) -> None:
    assert decode_call(address.lower(), 0, b"", 0, KNOWN).contract == label
    for known in (*MULTISEND_ADDRESSES, *MULTISEND_CALL_ONLY_ADDRESSES):
        assert KNOWN.label(known) in ("MultiSend", "MultiSendCallOnly")


def test_unknown_selector_is_shown_raw() -> None:
    data = bytes.fromhex("deadbeef") + bytes(32)
    call = decode_call(USDC, 0, data, 0, KNOWN)
    assert (call.function, call.selector, call.args, call.note) == (None, "0xdeadbeef", (), "unknown selector")
    assert call.to_json()["data"] == "0x" + data.hex()
    assert call.call_text() == "selector 0xdeadbeef with 36 bytes of calldata (not decoded)"


def test_short_and_empty_calldata() -> None:
    empty = decode_call(BOB, 1, b"", 0, KNOWN)
    assert (empty.selector, empty.function, empty.note, empty.to_json()["data"]) == (None, None, None, "0x")
    short = decode_call(BOB, 0, b"\x01\x02", 0, KNOWN)
    assert short.selector is None and short.note == "2 bytes of calldata, shorter than a 4-byte selector"


@pytest.mark.parametrize(
    "data",
    [
        calldata("transfer(address,uint256)", BOB, 1)[:-1],  # truncated
        bytes.fromhex("d4d9bdcd"),  # no argument at all
        _fn("multiSend(bytes)").selector + (2**255).to_bytes(32, "big"),  # offset far beyond the calldata
        _fn("setup(address[],uint256,address,bytes,address,address,uint256,address)").selector + bytes(64),
    ],
)
def test_undecodable_calldata_is_shown_raw_with_a_note(data: bytes) -> None:
    call = decode_call(USDC, 0, data, 0, KNOWN)
    assert call.function is None and call.args == () and call.selector == "0x" + data[:4].hex()
    assert call.note is not None and "the calldata does not decode as" in call.note


def test_dirty_high_bits_are_read_as_an_abi_coder_v1_contract_reads_them() -> None:
    data = bytes.fromhex("095ea7b3") + b"\x01" + bytes(11) + bytes.fromhex(EVIL[2:]) + (5).to_bytes(32, "big")
    call = decode_call(USDC, 0, data, 0, KNOWN)
    assert call.function == "approve(address,uint256)" and call.arg("spender") == EVIL and call.arg("value") == 5
    assert call.note is not None and call.note.startswith("read leniently, as an ABI coder v1 contract would")
    [finding] = approval_rule(*_args(safe_tx(USDC, data)))
    assert finding.target == EVIL
    flag = calldata("setApprovalForAll(address,bool)", EVIL, True)
    dirty_bool = flag[:-1] + b"\x02"
    assert decode_call(BOB, 0, dirty_bool, 0, KNOWN).arg("approved") is True


def test_dirty_padding_of_a_multisend_batch_is_still_read() -> None:
    batch = [InnerTx(0, SAFE, 0, calldata("enableModule(address)", EVIL))]
    data = bytearray(multisend_calldata(batch))
    data[-1] = 0x07  # the padding after the packed batch
    call = decode_call(CALL_ONLY_130, 0, bytes(data), 1, KNOWN)
    assert call.inner[0].function == "enableModule(address)" and not call.unread_batch
    assert call.note is not None and "read leniently" in call.note
    assert _rules(_findings(safe_tx(CALL_ONLY_130, bytes(data), 1))) == [Rule.WALLET_CONFIG_CALL]


def test_multisend_ignores_up_to_32_trailing_bytes_as_the_contract_does() -> None:
    batch = [InnerTx(0, SAFE, 0, calldata("enableModule(address)", EVIL))]
    for tail in (1, 32):
        packed = encode_multisend(batch) + b"\xff" * tail
        assert decode_multisend(packed) == batch
        call = decode_call(
            CALL_ONLY_130, 0, _fn("multiSend(bytes)").selector + abi_encode(["bytes"], [packed]), 1, KNOWN
        )
        assert call.inner[0].function == "enableModule(address)" and not call.unread_batch
        assert call.note == f"the batch ends with {tail} bytes that MultiSend ignores"
    with pytest.raises(ValueError, match="only 33 bytes remain"):
        decode_multisend(encode_multisend(batch) + b"\xff" * 33)
    assert decode_multisend(b"\x01" * 32) == []


def test_trailing_bytes_decode_with_a_note() -> None:
    call = decode_call(USDC, 0, calldata("transfer(address,uint256)", BOB, 1) + b"\x00\x01", 0, KNOWN)
    assert call.function == "transfer(address,uint256)"
    assert call.note is not None and "not the canonical encoding" in call.note


@given(st.sampled_from(sorted(KNOWN_FUNCTIONS)), st.binary(max_size=400))
@settings(max_examples=500, deadline=None)
def test_decoding_never_raises(selector: bytes, rest: bytes) -> None:
    call = decode_call(USDC, 0, selector + rest, 0, KNOWN)
    json.dumps(call.to_json())
    call.call_text()


def test_multisend_to_an_unknown_address_is_decoded() -> None:
    batch = [InnerTx(0, SAFE, 0, calldata("enableModule(address)", EVIL))]
    call = decode_call(EVIL, 0, multisend_calldata(batch), 1, KNOWN)
    assert call.contract is None and call.function == "multiSend(bytes)"
    assert call.inner[0].contract == "safe" and call.inner[0].function == "enableModule(address)"


def test_nested_multisend_is_decoded_recursively_to_a_limit() -> None:
    inner = [InnerTx(0, USDC, 0, calldata("approve(address,uint256)", EVIL, 1))]
    data = multisend_calldata(inner)
    for _ in range(2):
        data = multisend_calldata([InnerTx(0, BOB, 0, b""), InnerTx(1, MULTISEND_130, 0, data)])
    call = decode_call(MULTISEND_130, 0, data, 1, KNOWN)
    paths = dict(call.walk())
    assert paths[(2, 2, 1)].function == "approve(address,uint256)"
    assert list(paths) == [(), (1,), (2,), (2, 1), (2, 2), (2, 2, 1)]
    deep = multisend_calldata(inner)
    for _ in range(MAX_DEPTH + 1):
        deep = multisend_calldata([InnerTx(1, MULTISEND_130, 0, deep)])
    bottom = list(decode_call(MULTISEND_130, 0, deep, 1, KNOWN).walk())[-1][1]
    assert bottom.inner == () and bottom.note is not None and "nested deeper than" in bottom.note


def test_call_text_names_function_and_arguments() -> None:
    call = decode_call(USDC, 0, calldata("approve(address,uint256)", EVIL, 2**256 - 1), 0, KNOWN)
    assert call.call_text() == f"approve(spender={EVIL}, value={2**256 - 1})"
    signatures = b"\x01" * 130
    exec_data = calldata(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        USDC,
        0,
        b"",
        0,
        0,
        0,
        0,
        ZERO_ADDRESS,
        ZERO_ADDRESS,
        signatures,
    )
    assert "signatures=0x" + "01" * 96 + "… (130 bytes)" in decode_call(SAFE, 0, exec_data, 0, KNOWN).call_text()


# ----------------------------------------------------------------------------- rules


def _findings(tx: SafeTx, context: StaticContext = CONTEXT) -> list[RuleFinding]:
    return static_findings(tx, decode_safe_tx(tx, KNOWN), context)


def _rules(findings: list[RuleFinding]) -> list[Rule]:
    return [f.rule for f in findings]


def test_where_names_the_path() -> None:
    assert where(()) == "the transaction's own call"
    assert where((2,)) == "inner call 2 of the MultiSend"
    assert where((2, 1)) == "inner call 2.1 of the MultiSend"


def test_a_plain_transfer_has_no_findings() -> None:
    tx = safe_tx(USDC, calldata("transfer(address,uint256)", BOB, 10**6), nonce=4)
    assert _findings(tx, StaticContext("seg-1", SAFE, wallet_nonce=4, codeless=frozenset())) == []


def test_allowlisted_multisend_call_only_with_two_transfers_has_no_delegatecall_finding() -> None:
    batch = [
        InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", ALICE, 1)),
        InnerTx(0, TMMF, 0, calldata("transfer(address,uint256)", BOB, 2)),
    ]
    tx = safe_tx(CALL_ONLY_130, multisend_calldata(batch), 1)
    assert _findings(tx) == []


def test_delegatecall_to_call_only_not_allowlisted_is_critical() -> None:
    tx = safe_tx(CALL_ONLY_130, multisend_calldata([]), 1)
    [finding] = _findings(tx, StaticContext("seg-1", SAFE))
    assert (finding.rule, finding.severity, finding.target) == (Rule.DELEGATECALL, Severity.CRITICAL, CALL_ONLY_130)
    assert "not in [presign] delegatecall_allowlist" in finding.detail


def test_delegatecall_to_an_allowlisted_library_has_no_finding() -> None:
    assert delegatecall_rule(*_args(safe_tx(LIB, b"\x12\x34\x56\x78", 1))) == []


def _args(tx: SafeTx, context: StaticContext = CONTEXT) -> tuple[SafeTx, Any, StaticContext]:
    return tx, decode_safe_tx(tx, KNOWN), context


def test_delegatecall_to_an_unknown_target_is_critical() -> None:
    [finding] = delegatecall_rule(*_args(safe_tx(EVIL, b"\x12\x34\x56\x78", 1)))
    assert finding.severity is Severity.CRITICAL and finding.wallet == "seg-1" and finding.target == EVIL
    assert finding.detail.startswith(f"seg-1 ({SAFE}) would DELEGATECALL: the transaction's own call: DELEGATECALL")
    assert "selector 0x12345678" in finding.detail


def test_delegatecall_to_multisend_is_critical_even_when_allowlisted() -> None:
    batch = [InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", BOB, 1))]
    [finding] = delegatecall_rule(*_args(safe_tx(MULTISEND_130, multisend_calldata(batch), 1)))
    assert finding.severity is Severity.CRITICAL and finding.target == MULTISEND_130
    assert "MultiSend (not MultiSendCallOnly)" in finding.detail
    assert "being in [presign] delegatecall_allowlist does not make it safe" in finding.detail


def test_delegatecall_with_multisend_calldata_to_an_unknown_address_counts_as_multisend() -> None:
    context = StaticContext("seg-1", SAFE, delegatecall_allowlist=frozenset({EVIL}))
    [finding] = delegatecall_rule(*_args(safe_tx(EVIL, multisend_calldata([]), 1), context))
    assert "MultiSend (not MultiSendCallOnly)" in finding.detail


def test_configured_multisend_addresses_count_as_multisend() -> None:
    context = StaticContext("seg-1", SAFE, delegatecall_allowlist=frozenset({LIB}), multisend=frozenset({LIB}))
    [finding] = delegatecall_rule(*_args(safe_tx(LIB, b"", 1), context))
    assert "MultiSend" in finding.detail


def test_inner_delegatecall_is_found_at_its_depth() -> None:
    batch = [
        InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", BOB, 1)),
        InnerTx(1, EVIL, 0, b"\xaa\xbb\xcc\xdd"),
    ]
    [finding] = delegatecall_rule(*_args(safe_tx(CALL_ONLY_130, multisend_calldata(batch), 1)))
    assert "inner call 2 of the MultiSend: DELEGATECALL to " + EVIL in finding.detail
    assert "MultiSendCallOnly refuses a DELEGATECALL" in finding.detail


def test_delegatecall_to_allowlisted_call_only_with_an_unreadable_batch_is_critical() -> None:
    packed = encode_multisend([InnerTx(0, SAFE, 0, calldata("enableModule(address)", EVIL))]) + b"\xff" * 40
    data = _fn("multiSend(bytes)").selector + abi_encode(["bytes"], [packed])
    [finding] = delegatecall_rule(*_args(safe_tx(CALL_ONLY_130, data, 1)))
    assert finding.severity is Severity.CRITICAL
    assert "the batch it carries could not be read (the MultiSend batch does not decode: inner call 2" in finding.detail
    deep = multisend_calldata([])
    for _ in range(MAX_DEPTH + 1):
        deep = multisend_calldata([InnerTx(1, CALL_ONLY_130, 0, deep)])
    findings = delegatecall_rule(*_args(safe_tx(CALL_ONLY_130, deep, 1)))
    assert len(findings) == 1 and "nested deeper than" in findings[0].detail
    raw = _fn("multiSend(bytes)").selector + b"\x01"
    [finding] = delegatecall_rule(*_args(safe_tx(CALL_ONLY_130, raw, 1)))
    assert "could not be read" in finding.detail


def test_multisend_hiding_enable_module_is_a_wallet_config_call() -> None:
    batch = [
        InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", BOB, 1)),
        InnerTx(0, SAFE, 0, calldata("enableModule(address)", EVIL)),
    ]
    findings = _findings(safe_tx(CALL_ONLY_130, multisend_calldata(batch), 1))
    [finding] = findings
    assert (finding.rule, finding.severity, finding.target) == (Rule.WALLET_CONFIG_CALL, Severity.CRITICAL, SAFE)
    assert f"inner call 2 of the MultiSend: CALL to {SAFE} (safe), enableModule(module={EVIL})" in finding.detail
    assert "changes the wallet's configuration (enableModule(address))" in finding.detail


@pytest.mark.parametrize("function", SAFE_CONFIG_FUNCTIONS, ids=[f.signature for f in SAFE_CONFIG_FUNCTIONS])
def test_every_config_function_to_the_safe_is_critical(function: Function) -> None:
    data = function.selector + abi_encode(list(function.types), [SAMPLE[t] for t in function.types])
    [finding] = wallet_config_rule(*_args(safe_tx(SAFE, data)))
    assert finding.severity is Severity.CRITICAL and function.name + "(" in finding.detail


def test_any_other_call_to_the_safe_is_a_wallet_config_call() -> None:
    nested = calldata(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        SAFE,
        0,
        calldata("changeThreshold(uint256)", 1),
        0,
        0,
        0,
        0,
        ZERO_ADDRESS,
        ZERO_ADDRESS,
        b"",
    )
    for data in (bytes.fromhex("deadbeef"), nested):
        [finding] = wallet_config_rule(*_args(safe_tx(SAFE, data)))
        assert "a Safe calling itself is how its configuration changes" in finding.detail


def test_value_to_the_safe_itself_and_config_calls_to_others_are_not_config_calls() -> None:
    assert wallet_config_rule(*_args(safe_tx(SAFE, value=5))) == []
    assert wallet_config_rule(*_args(safe_tx(BOB, calldata("enableModule(address)", EVIL)))) == []


def test_approve_to_an_unknown_spender_is_critical() -> None:
    [finding] = _findings(safe_tx(USDC, calldata("approve(address,uint256)", EVIL, 2**256 - 1)))
    assert (finding.rule, finding.severity, finding.target) == (Rule.APPROVAL, Severity.CRITICAL, EVIL)
    assert finding.amount == 2**256 - 1
    assert f"would grant {EVIL} an unlimited allowance on {USDC} (USDC)" in finding.detail
    assert f"approve(spender={EVIL}, value={2**256 - 1})" in finding.detail
    assert "not in the wallet's allowed_spenders" in finding.detail


def test_approve_to_an_allowed_spender_and_revocations_are_not_findings() -> None:
    assert approval_rule(*_args(safe_tx(USDC, calldata("approve(address,uint256)", ROUTER, 10)))) == []
    assert approval_rule(*_args(safe_tx(USDC, calldata("approve(address,uint256)", EVIL, 0)))) == []
    assert approval_rule(*_args(safe_tx(BOB, calldata("setApprovalForAll(address,bool)", EVIL, False)))) == []
    assert approval_rule(*_args(safe_tx(USDC, calldata("decreaseAllowance(address,uint256)", EVIL, 5)))) == []


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (calldata("increaseAllowance(address,uint256)", EVIL, 5), "5 more base units of allowance"),
        (calldata("setApprovalForAll(address,bool)", EVIL, True), "every token of the collection"),
        (
            calldata(
                "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
                ALICE,
                EVIL,
                7,
                1,
                27,
                b"\x01" * 32,
                b"\x02" * 32,
            ),
            f"an allowance of 7 base units (submitting a permit signed by {ALICE})",
        ),
    ],
)
def test_other_grants_are_approvals(data: bytes, text: str) -> None:
    batch = [InnerTx(0, TMMF, 0, data)]
    [finding] = approval_rule(*_args(safe_tx(CALL_ONLY_130, multisend_calldata(batch), 1)))
    assert text in finding.detail and "inner call 1 of the MultiSend" in finding.detail


def test_gas_refund_is_an_error() -> None:
    for kw in ({"gas_token": USDC}, {"refund_receiver": EVIL}, {"gas_token": USDC, "refund_receiver": EVIL}):
        [finding] = _findings(safe_tx(BOB, value=1, gas_price=50, base_gas=21000, **kw))
        assert (finding.rule, finding.severity) == (Rule.GAS_REFUND, Severity.ERROR)
        assert "gasPrice 50" in finding.detail
    assert gas_refund_rule(*_args(safe_tx(BOB, gas_token=USDC, refund_receiver=EVIL))) == []  # gasPrice 0
    assert gas_refund_rule(*_args(safe_tx(BOB, gas_price=50))) == []  # native coin to tx.origin, capped


def test_nonce_mismatch_is_a_warning() -> None:
    tx = safe_tx(BOB, value=1, nonce=7)
    [used] = nonce_rule(*_args(tx, StaticContext("seg-1", SAFE, wallet_nonce=9)))
    assert (used.rule, used.severity) == (Rule.NONCE, Severity.WARNING)
    assert "is at nonce 9 but the transaction has nonce 7" in used.detail and "can never execute" in used.detail
    [queued] = nonce_rule(*_args(tx, StaticContext("seg-1", SAFE, wallet_nonce=5)))
    assert "after 2 other transaction(s)" in queued.detail
    assert nonce_rule(*_args(tx, StaticContext("seg-1", SAFE, wallet_nonce=7))) == []
    assert nonce_rule(*_args(tx, StaticContext("seg-1", SAFE, wallet_nonce=None))) == []


def test_no_code_target_is_a_warning_for_calls_with_data() -> None:
    batch = [InnerTx(0, BOB, 0, b""), InnerTx(0, USDC, 0, calldata("transfer(address,uint256)", BOB, 1))]
    tx = safe_tx(CALL_ONLY_130, multisend_calldata(batch), 1)
    decoded = decode_safe_tx(tx, KNOWN)
    assert calls_with_data(decoded) == [CALL_ONLY_130, USDC]
    context = StaticContext("seg-1", SAFE, codeless=frozenset({BOB, USDC.lower()}))
    [finding] = no_code_target_rule(tx, decoded, context)
    assert (finding.rule, finding.severity, finding.target) == (Rule.NO_CODE_TARGET, Severity.WARNING, USDC)
    assert "inner call 2 of the MultiSend" in finding.detail
    assert no_code_target_rule(tx, decoded, StaticContext("seg-1", SAFE, codeless=None)) == []
    assert no_code_target_rule(tx, decoded, StaticContext("seg-1", SAFE, codeless=frozenset())) == []


def test_static_findings_runs_every_rule_in_order() -> None:
    assert [r.__name__ for r in STATIC_RULES] == [
        "delegatecall_rule",
        "wallet_config_rule",
        "approval_rule",
        "gas_refund_rule",
        "nonce_rule",
        "no_code_target_rule",
    ]
    batch = [
        InnerTx(0, USDC, 0, calldata("approve(address,uint256)", EVIL, 1)),
        InnerTx(0, SAFE, 0, calldata("addOwnerWithThreshold(address,uint256)", EVIL, 1)),
    ]
    tx = safe_tx(MULTISEND_130, multisend_calldata(batch), 1, gas_price=1, gas_token=USDC, nonce=3)
    context = StaticContext("seg-1", SAFE, wallet_nonce=2, codeless=frozenset({USDC}))
    assert _rules(_findings(tx, context)) == [
        Rule.DELEGATECALL,
        Rule.WALLET_CONFIG_CALL,
        Rule.APPROVAL,
        Rule.GAS_REFUND,
        Rule.NONCE,
        Rule.NO_CODE_TARGET,
    ]
    assert all(f.tx_hash is None for f in _findings(tx, context))
