"""Safe 1.3.0's MultiSend and MultiSendCallOnly on a local Anvil, at their canonical addresses
(test and demo support; never used by the reconciler's own reads).

Invariant: the libraries are deployed only as Safe deployed them, from the pinned npm
package's build artifacts (@gnosis.pm/safe-contracts 1.3.0, never a copy in this repository)
by CREATE2 through the deterministic deployment proxy with salt 0, so the address is the
canonical one because the code is; an address or code hash that differs from Safe's published
deployment (safe-global/safe-deployments, src/assets/v1.3.0) is a ChainError, never patched
over with anvil_setCode.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from chains.evm.devnet import Devnet, safe_130_artifact
from reconciler.errors import ChainError

# Arachnid's deterministic-deployment-proxy: the same address on every chain that has it.
# Anvil predeploys it (1.7.1 does); this runtime code is the published one, installed only
# where a node lacks it.
DETERMINISTIC_DEPLOYER = "0x4e59b44847b379578588920cA78FbF26c0B4956C"
DETERMINISTIC_DEPLOYER_RUNTIME = bytes.fromhex(
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f5801515603957"
    "8182fd5b8082525050506014600cf3"
)
SAFE_SALT = bytes(32)  # hardhat-deploy's deterministicDeployment: true

# safe-global/safe-deployments src/assets/v1.3.0/multi_send.json and multi_send_call_only.json,
# the "canonical" deployments.
MULTISEND_130 = "0xA238CBeb142c10Ef7Ad8442C6D1f9E89e07e7761"
MULTISEND_130_CODE_HASH = "0x0208282bd262360d0320862c5ac70f375f5ed3b9d89a83a615b4d398415bdc83"
MULTISEND_CALL_ONLY_130 = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"
MULTISEND_CALL_ONLY_130_CODE_HASH = "0xa9865ac2d9c7a1591619b188c4d88167b50df6cc0c5327fcbd1c8c75f7c066ad"


@dataclass(frozen=True, slots=True)
class MultiSendDeployment:
    multisend: str
    multisend_call_only: str
    installed_deployer: bool  # whether the deterministic deployment proxy had to be installed


def create2_address(init_code: bytes, salt: bytes = SAFE_SALT, deployer: str = DETERMINISTIC_DEPLOYER) -> str:
    """Where CREATE2 by ``deployer`` puts ``init_code`` with ``salt`` (EIP-1014)."""
    digest = keccak(b"\xff" + bytes.fromhex(deployer[2:]) + salt + keccak(init_code))
    return to_checksum_address(digest[12:])


def _code(net: Devnet, address: str) -> bytes:
    return bytes(net.w3.eth.get_code(to_checksum_address(address)))


def ensure_deterministic_deployer(net: Devnet) -> bool:
    """True when the proxy was missing and was installed (anvil_setCode of its published
    runtime code); ChainError when something else is at its address."""
    code = _code(net, DETERMINISTIC_DEPLOYER)
    if code == DETERMINISTIC_DEPLOYER_RUNTIME:
        return False
    if code:
        raise ChainError(
            f"{DETERMINISTIC_DEPLOYER} holds {len(code)} bytes of code that are not the deterministic deployment "
            "proxy's: this node is not a chain the canonical Safe addresses can be reproduced on"
        )
    net.rpc("anvil_setCode", [DETERMINISTIC_DEPLOYER, "0x" + DETERMINISTIC_DEPLOYER_RUNTIME.hex()])
    net.mine()
    return True


def deploy_create2(net: Devnet, init_code: bytes, salt: bytes = SAFE_SALT) -> str:
    """Deploy ``init_code`` through the deterministic deployment proxy (idempotent: an address
    that already has code is returned as it is). Returns the EIP-55 address."""
    address = create2_address(init_code, salt)
    if _code(net, address):
        return address
    tx = net.w3.eth.send_transaction(
        {"from": net.deployer, "to": DETERMINISTIC_DEPLOYER, "data": salt + init_code, "gas": 3_000_000}
    )
    receipt = net.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    if receipt["status"] != 1 or not _code(net, address):
        raise ChainError(f"CREATE2 through {DETERMINISTIC_DEPLOYER} did not put code at {address}")
    return address


def _deploy_canonical(net: Devnet, name: str, canonical: str, code_hash: str) -> str:
    init_code = bytes.fromhex(safe_130_artifact(name)["bytecode"][2:])
    predicted = create2_address(init_code)
    if predicted != canonical:
        raise ChainError(
            f"the npm artifact of {name} (@gnosis.pm/safe-contracts 1.3.0) lands at {predicted} by CREATE2, not at "
            f"the canonical {canonical}: its bytecode is not the one Safe deployed"
        )
    address = deploy_create2(net, init_code)
    found = "0x" + keccak(_code(net, address)).hex()
    if found != code_hash:
        raise ChainError(f"{name} at {address} has code hash {found}, not the published {code_hash}")
    return address


def deploy_multisend_130(net: Devnet) -> MultiSendDeployment:
    """Safe 1.3.0's MultiSend and MultiSendCallOnly at their canonical addresses, checked
    against the published addresses and code hashes."""
    installed = ensure_deterministic_deployer(net)
    multisend = _deploy_canonical(net, "MultiSend", MULTISEND_130, MULTISEND_130_CODE_HASH)
    call_only = _deploy_canonical(net, "MultiSendCallOnly", MULTISEND_CALL_ONLY_130, MULTISEND_CALL_ONLY_130_CODE_HASH)
    return MultiSendDeployment(multisend, call_only, installed)
