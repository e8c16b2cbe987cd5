"""An ERC-3643 (T-REX) permissioned token suite on a local Anvil node, from the published npm
artifacts: @tokenysolutions/t-rex 4.1.6 (Token, IdentityRegistry, IdentityRegistryStorage,
ClaimTopicsRegistry, TrustedIssuersRegistry, ModularCompliance) and @onchain-id/solidity 2.2.1
(Identity, IdentityProxy, ImplementationAuthority, ClaimIssuer). Nothing is copied into the
repository; ``npm ci`` installs both.

Wiring, as TREXFactory.deployTREXSuite does it in production, minus the proxies: each T-REX
contract is deployed as its implementation and ``init``-ed in place by the owner (the
implementations have no constructor and do not disable their initializers, so this is allowed;
in production each sits behind a TokenProxy/IdentityRegistryProxy/… that delegates to an
implementation named by a TREXImplementationAuthority, and the events are then emitted at the
proxy's address). One claim topic (``KYC_TOPIC``) is required, with one ClaimIssuer trusted
for it: a holder is verified by a real claim that the issuer's key signs (eth-account) and that
is stored on the holder's ONCHAINID (an IdentityProxy over one shared Identity library). The
token has no ONCHAINID of its own (``init`` allows the zero address).

Every transaction here is signed with a test-held key and sent as a type-2 transaction, so
``msg.sender`` is the owner, the agent or the holder, never an unlocked node account. Gas is
estimated first: a call that would revert raises web3's ContractLogicError carrying the
contract's reason string, and no transaction is sent. A mined transaction that reverts anyway
raises ChainError.

This module holds keys and is for tests and the demo only, never for the reconciler's reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import TxParams, TxReceipt, Wei

from chains.evm.devnet import REPO_ROOT, ZERO_ADDRESS, Devnet
from reconciler.errors import ChainError

TREX_VERSION = "4.1.6"
ONCHAINID_VERSION = "2.2.1"
TREX_ARTIFACTS = REPO_ROOT / "node_modules" / "@tokenysolutions" / "t-rex" / "artifacts" / "contracts"
ONCHAINID_ARTIFACTS = REPO_ROOT / "node_modules" / "@onchain-id" / "solidity" / "artifacts" / "contracts"

KYC_TOPIC = 1  # the one claim topic the suite requires (ERC-735 topics are plain uint256s)
ECDSA_SCHEME = 1  # ERC-735 claim scheme: an ECDSA signature
MANAGEMENT_PURPOSE = 1  # ERC-734 key purposes: 1 management (implies every other), 3 claim signer
ECDSA_KEY_TYPE = 1


def _load(root: Path, name: str, package: str) -> dict[str, Any]:
    matches = [p for p in root.glob(f"**/{name}.json") if not p.name.endswith(".dbg.json")]
    if len(matches) != 1:
        raise ChainError(
            f"{package} artifact {name} not found under {root} ({len(matches)} matches): "
            "run `npm ci` at the repository root"
        )
    data: dict[str, Any] = json.loads(matches[0].read_text())
    return data


def trex_artifact(name: str) -> dict[str, Any]:
    """A Hardhat artifact (``abi``, ``bytecode``) from @tokenysolutions/t-rex, e.g. ``Token``."""
    return _load(TREX_ARTIFACTS, name, f"@tokenysolutions/t-rex {TREX_VERSION}")


def onchainid_artifact(name: str) -> dict[str, Any]:
    """A Hardhat artifact from @onchain-id/solidity, e.g. ``Identity`` or ``ClaimIssuer``."""
    return _load(ONCHAINID_ARTIFACTS, name, f"@onchain-id/solidity {ONCHAINID_VERSION}")


@dataclass(frozen=True)
class TrexSuite:
    """A deployed T-REX suite: addresses (checksummed) and the keys that run it.

    ``owner`` owns the token, the registries and the compliance (Ownable); ``agent`` is the
    token's and the identity registry's agent (the issuer's transfer agent); ``claim_signer``
    is the management key of ``claim_issuer``, and it also manages the holders' ONCHAINIDs
    that register_holder creates (a custodial identity model, so that a test can add a
    recovery wallet's key without the holder's own key)."""

    token: str
    identity_registry: str
    identity_registry_storage: str
    compliance: str
    claim_topics_registry: str
    trusted_issuers_registry: str
    claim_issuer: str
    identity_implementation_authority: str
    owner: LocalAccount
    agent: LocalAccount
    claim_signer: LocalAccount
    claim_topic: int
    deploy_gas: int  # gas used by every transaction of deploy_trex, summed
    deploy_transactions: int


# ------------------------------------------------------------------------- contracts


def token_contract(devnet: Devnet, trex: TrexSuite) -> Contract:
    """The token bound to the T-REX ``Token`` ABI."""
    return _at(devnet, trex_artifact("Token"), trex.token)


def identity_registry_contract(devnet: Devnet, trex: TrexSuite) -> Contract:
    return _at(devnet, trex_artifact("IdentityRegistry"), trex.identity_registry)


def identity_contract(devnet: Devnet, identity: str) -> Contract:
    """An ONCHAINID (an IdentityProxy) bound to the ``Identity`` ABI."""
    return _at(devnet, onchainid_artifact("Identity"), identity)


def _at(devnet: Devnet, art: dict[str, Any], address: str) -> Contract:
    return devnet.w3.eth.contract(address=to_checksum_address(address), abi=art["abi"])


# ------------------------------------------------------------------------- sending


def _send(devnet: Devnet, sender: LocalAccount, call: ContractFunction | ContractConstructor) -> TxReceipt:
    """Sign ``call`` with ``sender``'s key, send it as a type-2 transaction and wait for it.
    Gas estimation raises ContractLogicError (with the revert reason) before anything is sent."""
    w3 = devnet.w3
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
    params: TxParams = {
        "from": sender.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender.address),
        "maxFeePerGas": Wei(2 * base_fee + 10**9),
        "maxPriorityFeePerGas": Wei(10**9),
    }
    tx = call.build_transaction(params)
    signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise ChainError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return receipt


def _hash(receipt: TxReceipt) -> str:
    return receipt["transactionHash"].to_0x_hex()


# ------------------------------------------------------------------------- deploying


def deploy_trex(
    devnet: Devnet,
    *,
    name: str,
    symbol: str,
    decimals: int = 18,
    owner: LocalAccount | None = None,
    agent: LocalAccount | None = None,
) -> TrexSuite:
    """Deploy and wire a full T-REX suite, unpaused, with ``agent`` as the token's and the
    identity registry's agent. Owner and agent are fresh funded keys unless given.

    The steps mirror TREXFactory.deployTREXSuite: TIR, CTR, ModularCompliance, IRS and IR
    (``init(tir, ctr, irs)``), then Token ``init(ir, compliance, name, symbol, decimals, 0)``,
    which binds the compliance to the token (ModularCompliance.bindToken called by the token)
    and leaves the token paused; the claim topic and the trusted ClaimIssuer; the storage
    bound to the registry (IRS.bindIdentityRegistry, which makes the IR an IRS agent); the
    token made an IR agent (recoveryAddress registers and deletes identities through it); the
    agent added to the IR and the token. Then the agent unpauses the token."""
    owner = owner or devnet.new_account()
    agent = agent or devnet.new_account()
    claim_signer = devnet.new_account()
    receipts: list[TxReceipt] = []

    def deploy(art: dict[str, Any], *args: Any) -> Contract:
        factory = devnet.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = _send(devnet, owner, factory.constructor(*args))
        receipts.append(receipt)
        return _at(devnet, art, str(receipt["contractAddress"]))

    def send(sender: LocalAccount, call: ContractFunction) -> None:
        receipts.append(_send(devnet, sender, call))

    # ONCHAINID: one Identity library behind an ImplementationAuthority for the holders'
    # IdentityProxy contracts, and the claim issuer (an Identity whose key signs claims).
    identity_library = deploy(onchainid_artifact("Identity"), owner.address, True)
    authority = deploy(onchainid_artifact("ImplementationAuthority"), identity_library.address)
    claim_issuer = deploy(onchainid_artifact("ClaimIssuer"), claim_signer.address)

    tir = deploy(trex_artifact("TrustedIssuersRegistry"))
    send(owner, tir.functions.init())
    ctr = deploy(trex_artifact("ClaimTopicsRegistry"))
    send(owner, ctr.functions.init())
    compliance = deploy(trex_artifact("ModularCompliance"))
    send(owner, compliance.functions.init())
    irs = deploy(trex_artifact("IdentityRegistryStorage"))
    send(owner, irs.functions.init())
    ir = deploy(trex_artifact("IdentityRegistry"))
    send(owner, ir.functions.init(tir.address, ctr.address, irs.address))
    token = deploy(trex_artifact("Token"))
    send(owner, token.functions.init(ir.address, compliance.address, name, symbol, decimals, ZERO_ADDRESS))

    send(owner, ctr.functions.addClaimTopic(KYC_TOPIC))
    send(owner, tir.functions.addTrustedIssuer(claim_issuer.address, [KYC_TOPIC]))
    send(owner, irs.functions.bindIdentityRegistry(ir.address))
    send(owner, ir.functions.addAgent(token.address))
    send(owner, ir.functions.addAgent(agent.address))
    send(owner, token.functions.addAgent(agent.address))
    send(agent, token.functions.unpause())

    return TrexSuite(
        token=token.address,
        identity_registry=ir.address,
        identity_registry_storage=irs.address,
        compliance=compliance.address,
        claim_topics_registry=ctr.address,
        trusted_issuers_registry=tir.address,
        claim_issuer=claim_issuer.address,
        identity_implementation_authority=authority.address,
        owner=owner,
        agent=agent,
        claim_signer=claim_signer,
        claim_topic=KYC_TOPIC,
        deploy_gas=sum(int(r["gasUsed"]) for r in receipts),
        deploy_transactions=len(receipts),
    )


# ------------------------------------------------------------------------- identities


def create_identity(devnet: Devnet, trex: TrexSuite, management_key: str | None = None) -> str:
    """A new ONCHAINID: an IdentityProxy over the suite's Identity library whose initial
    management key is ``management_key`` (default the suite's claim signer). Returns its address."""
    art = onchainid_artifact("IdentityProxy")
    factory = devnet.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    manager = to_checksum_address(management_key or trex.claim_signer.address)
    receipt = _send(devnet, trex.claim_signer, factory.constructor(trex.identity_implementation_authority, manager))
    return to_checksum_address(str(receipt["contractAddress"]))


def sign_claim(trex: TrexSuite, identity: str, topic: int, data: bytes) -> bytes:
    """The claim issuer's ERC-735 signature (r || s || v) of ``topic``/``data`` about
    ``identity``: an eth_sign (EIP-191) signature of keccak256(abi.encode(identity, topic, data)),
    as ClaimIssuer.isClaimValid recovers it."""
    digest = keccak(abi_encode(["address", "uint256", "bytes"], [to_checksum_address(identity), topic, data]))
    signed = Account.sign_message(encode_defunct(primitive=digest), trex.claim_signer.key)
    return bytes(signed.signature)


def add_claim(devnet: Devnet, trex: TrexSuite, identity: str, data: bytes = b"KYC approved") -> str:
    """Store the claim issuer's signed KYC claim on ``identity`` (sent by the claim signer,
    which manages the identities create_identity makes). Returns the tx hash."""
    signature = sign_claim(trex, identity, trex.claim_topic, data)
    call = identity_contract(devnet, identity).functions.addClaim(
        trex.claim_topic, ECDSA_SCHEME, trex.claim_issuer, signature, data, ""
    )
    return _hash(_send(devnet, trex.claim_signer, call))


def add_management_key(devnet: Devnet, trex: TrexSuite, identity: str, wallet: str) -> str:
    """Give ``wallet`` a management key on ``identity`` (what recoveryAddress requires of the
    new wallet). Sent by the claim signer, the identity's manager. Returns the tx hash."""
    key = keccak(abi_encode(["address"], [to_checksum_address(wallet)]))
    call = identity_contract(devnet, identity).functions.addKey(key, MANAGEMENT_PURPOSE, ECDSA_KEY_TYPE)
    return _hash(_send(devnet, trex.claim_signer, call))


def register_holder(devnet: Devnet, trex: TrexSuite, holder_address: str, country: int = 0) -> str:
    """Make ``holder_address`` (an EOA or a contract) able to hold and receive the token: a new
    ONCHAINID with the issuer's signed KYC claim, registered in the identity registry by the
    agent with ``country`` (an ISO 3166-1 numeric code). Returns the ONCHAINID's address."""
    identity = create_identity(devnet, trex)
    add_claim(devnet, trex, identity)
    register_identity(devnet, trex, holder_address, identity, country)
    return identity


def register_identity(devnet: Devnet, trex: TrexSuite, holder_address: str, identity: str, country: int = 0) -> str:
    """IdentityRegistry.registerIdentity(holder, identity, country), sent by the agent (whether
    the holder is then verified depends on the identity's claims). Returns the tx hash."""
    call = identity_registry_contract(devnet, trex).functions.registerIdentity(
        to_checksum_address(holder_address), to_checksum_address(identity), country
    )
    return _hash(_send(devnet, trex.agent, call))


# ------------------------------------------------------------------------- the issuer's actions
# Each is sent by the suite's agent unless ``by`` names another key, and returns the tx hash.


def _agent_call(devnet: Devnet, trex: TrexSuite, by: LocalAccount | None, function: str, *args: Any) -> str:
    call = token_contract(devnet, trex).get_function_by_name(function)(*args)
    return _hash(_send(devnet, by or trex.agent, call))


def mint(devnet: Devnet, trex: TrexSuite, to: str, amount: int, *, by: LocalAccount | None = None) -> str:
    return _agent_call(devnet, trex, by, "mint", to_checksum_address(to), amount)


def burn(devnet: Devnet, trex: TrexSuite, from_: str, amount: int, *, by: LocalAccount | None = None) -> str:
    return _agent_call(devnet, trex, by, "burn", to_checksum_address(from_), amount)


def freeze_partial(devnet: Devnet, trex: TrexSuite, holder: str, amount: int, *, by: LocalAccount | None = None) -> str:
    return _agent_call(devnet, trex, by, "freezePartialTokens", to_checksum_address(holder), amount)


def unfreeze_partial(
    devnet: Devnet, trex: TrexSuite, holder: str, amount: int, *, by: LocalAccount | None = None
) -> str:
    return _agent_call(devnet, trex, by, "unfreezePartialTokens", to_checksum_address(holder), amount)


def set_address_frozen(
    devnet: Devnet, trex: TrexSuite, holder: str, frozen: bool, *, by: LocalAccount | None = None
) -> str:
    return _agent_call(devnet, trex, by, "setAddressFrozen", to_checksum_address(holder), frozen)


def pause(devnet: Devnet, trex: TrexSuite, *, by: LocalAccount | None = None) -> str:
    return _agent_call(devnet, trex, by, "pause")


def unpause(devnet: Devnet, trex: TrexSuite, *, by: LocalAccount | None = None) -> str:
    return _agent_call(devnet, trex, by, "unpause")


def forced_transfer(
    devnet: Devnet, trex: TrexSuite, from_: str, to: str, amount: int, *, by: LocalAccount | None = None
) -> str:
    return _agent_call(devnet, trex, by, "forcedTransfer", to_checksum_address(from_), to_checksum_address(to), amount)


def batch_forced_transfer(
    devnet: Devnet, trex: TrexSuite, moves: Sequence[tuple[str, str, int]], *, by: LocalAccount | None = None
) -> str:
    """``moves``: (from, to, amount) triples, sent as one batchForcedTransfer."""
    froms = [to_checksum_address(m[0]) for m in moves]
    tos = [to_checksum_address(m[1]) for m in moves]
    amounts = [m[2] for m in moves]
    return _agent_call(devnet, trex, by, "batchForcedTransfer", froms, tos, amounts)


def recovery_address(
    devnet: Devnet,
    trex: TrexSuite,
    lost_wallet: str,
    new_wallet: str,
    investor_onchain_id: str,
    *,
    by: LocalAccount | None = None,
) -> str:
    """recoveryAddress: ``new_wallet`` must already be a management key of
    ``investor_onchain_id`` (add_management_key), or the token reverts "Recovery not possible"."""
    return _agent_call(
        devnet,
        trex,
        by,
        "recoveryAddress",
        to_checksum_address(lost_wallet),
        to_checksum_address(new_wallet),
        to_checksum_address(investor_onchain_id),
    )


def add_token_agent(devnet: Devnet, trex: TrexSuite, agent: str) -> str:
    """Make ``agent`` (an EOA or a contract) an agent of the token, sent by the owner. Returns
    the tx hash."""
    call = token_contract(devnet, trex).functions.addAgent(to_checksum_address(agent))
    return _hash(_send(devnet, trex.owner, call))


def approve_as(devnet: Devnet, trex: TrexSuite, holder_key: LocalAccount, spender: str, amount: int) -> str:
    """The holder's own ERC-20 ``approve`` of ``spender``, signed with its key. Returns the tx hash."""
    call = token_contract(devnet, trex).functions.approve(to_checksum_address(spender), amount)
    return _hash(_send(devnet, holder_key, call))


def transfer_as(devnet: Devnet, trex: TrexSuite, holder_key: LocalAccount, to: str, amount: int) -> str:
    """The holder's own ERC-20 ``transfer``, signed with its key. Returns the tx hash."""
    call = token_contract(devnet, trex).functions.transfer(to_checksum_address(to), amount)
    return _hash(_send(devnet, holder_key, call))
