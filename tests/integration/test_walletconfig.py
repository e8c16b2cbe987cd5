"""Wallet configuration and issuer controls read from a real Anvil node, at a pinned block.

Covers our CustodyWallet behind its proxy and a real Safe 1.3.0 deployed from its published
npm artifacts (@gnosis.pm/safe-contracts): a fresh wallet; the Bybit-style takeover (a
DELEGATECALL overwrites slot 0, then the attacker drains by internal calls); owner, threshold,
module, guard and fallback-handler changes; an EIP-7702 delegation made by a real type-4
transaction; and CollateralToken's freeze and pause. Every read goes through the reconciler's
own batched reader over a plain JSON-RPC transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.exceptions import ContractLogicError, Web3RPCError

from chains.evm.devnet import ZERO_ADDRESS, Devnet
from chains.evm.rpc import Call, HttpRpc
from chains.evm.walletconfig import (
    EIP1967_IMPLEMENTATION_SLOT,
    FALLBACK_HANDLER_SLOT,
    GUARD_SLOT,
    SENTINEL,
    SLOT_OWNER_COUNT,
    SLOT_OWNERS,
    ZEPPELINOS_IMPLEMENTATION_SLOT,
    mapping_slot,
    read_delegations,
    read_issuer_controls,
    read_wallet_configs,
)
from reconciler.domain import BlockRef, BreakKind, Severity
from reconciler.engine.wallets import (
    WalletObservations,
    WatchedAsset,
    WatchedWallet,
    check_issuer_controls,
    check_wallet_configs,
    compare_config,
)
from reconciler.errors import ChainError, RpcUnavailable
from reconciler.walletconfig import ControlState, FreezeQuery, WalletConfig, WalletKind
from tests.integration.helpers import closed_port_url
from tests.integration.rpcproxy import RpcProxy

ETH = 10**18
EXECUTION_SUCCESS = "0x" + keccak(text="ExecutionSuccess(bytes32,uint256)").hex()


class CountingRpc:
    """The real HTTP transport, counting what goes over the wire."""

    def __init__(self, url: str) -> None:
        self.inner = HttpRpc(url)
        self.endpoint = self.inner.endpoint
        self.batches: list[int] = []
        self.requests = 0

    def request(self, method: str, params: Sequence[Any]) -> Any:
        self.requests += 1
        return self.inner.request(method, params)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        self.batches.append(len(calls))
        return self.inner.batch(calls)


def pin(net: Devnet) -> BlockRef:
    net.mine()
    number = net.head()
    return BlockRef(number, net.w3.eth.get_block(number)["hash"].to_0x_hex())


def read_one(net: Devnet, name: str, address: str, **kw: Any) -> WalletConfig:
    [config] = read_wallet_configs(HttpRpc(net.url), "eth", [(name, address)], pin(net), **kw)
    return config


def changed_fields(before: WalletConfig, after: WalletConfig) -> set[str]:
    return {c.field for c in compare_config(before, after)}


def sorted_owners(accounts: Sequence[LocalAccount]) -> list[LocalAccount]:
    return sorted(accounts, key=lambda a: int(a.address, 16))


@pytest.fixture
def owners(devnet: Devnet) -> list[LocalAccount]:
    return [devnet.new_account() for _ in range(3)]


@pytest.fixture
def wallet(devnet: Devnet, owners: list[LocalAccount]) -> Contract:
    w = devnet.deploy_custody_wallet([o.address for o in owners], 2)
    devnet.set_native_balance(w.address, 5 * ETH)
    devnet.mine()
    return w


def self_call(net: Devnet, w: Contract, signers: Sequence[LocalAccount], function: str, *args: Any) -> str:
    return net.exec_custody(w, signers, w.address, data=Devnet.calldata(w, function, *args))


def singleton_of(net: Devnet, address: str) -> str:
    word = net.w3.eth.get_storage_at(to_checksum_address(address), 0)
    return to_checksum_address(bytes(word)[12:])


# ------------------------------------------------------------------ a fresh CustodyWallet


def test_fresh_custody_wallet_reads_as_a_safe(devnet: Devnet, owners: list[LocalAccount], wallet: Contract) -> None:
    token = devnet.deploy_token("Test USD", "USDC", 6)
    block = pin(devnet)
    rpc = CountingRpc(devnet.url)
    configs = read_wallet_configs(
        rpc, "eth", [("cust-1", wallet.address), ("ops-eoa", devnet.deployer), ("token", token.address)], block
    )
    cust, eoa, contract = configs

    assert cust.kind is WalletKind.SAFE
    assert (cust.wallet, cust.chain, cust.address, cust.block_number) == ("cust-1", "eth", wallet.address, block.number)
    assert list(cust.owners) == [o.address for o in owners] == wallet.functions.getOwners().call()
    assert cust.threshold == 2 == wallet.functions.getThreshold().call()
    assert cust.nonce == 0
    assert cust.singleton == singleton_of(devnet, wallet.address)
    assert cust.modules == () and cust.guard is None and cust.fallback_handler is None
    assert cust.implementation is None and cust.admin is None and cust.delegation is None
    assert cust.problems == ()
    assert cust.code_hash == "0x" + keccak(bytes(devnet.w3.eth.get_code(wallet.address))).hex()

    assert eoa.kind is WalletKind.EOA and eoa.code_hash == "0x" + keccak(b"").hex()
    assert eoa.owners == () and eoa.threshold is None and eoa.singleton is None
    assert contract.kind is WalletKind.CONTRACT and contract.owners == ()

    # One batch of code sizes (one eth_call for all three), one of code for the two accounts
    # that have some, one of the slots of those two, one per owner (the modules list is
    # empty), one probe batch.
    assert len(rpc.batches) == 1 + 1 + 1 + 3 + 1 and rpc.requests == 0
    assert rpc.batches[:3] == [1, 2, 2 * 11]


def test_python_and_contract_agree_on_the_transaction_digest(
    devnet: Devnet, owners: list[LocalAccount], wallet: Contract
) -> None:
    # A transaction signed over the Python-side EIP-712 hash executes: both hash the same.
    before = devnet.w3.eth.get_balance(devnet.deployer)
    devnet.exec_custody(wallet, owners[:2], devnet.deployer, value=ETH, sender=devnet.w3.eth.accounts[1])
    assert devnet.w3.eth.get_balance(devnet.deployer) == before + ETH
    assert wallet.functions.nonce().call() == 1
    # One signature short, or signers out of order, is refused.
    with pytest.raises((ContractLogicError, Web3RPCError)):
        devnet.exec_custody(wallet, owners[:1], devnet.deployer, value=1)
    sigs = devnet.custody_signatures(wallet.address, sorted_owners(owners[:2]), devnet.deployer, 1, b"", 0, 1)
    swapped = sigs[65:] + sigs[:65]
    with pytest.raises((ContractLogicError, Web3RPCError)):
        wallet.functions.execTransaction(devnet.deployer, 1, b"", 0, swapped).call()


@pytest.mark.parametrize("node", ["ignores overrides", "refuses overrides", "misshapen answer"])
def test_a_node_without_state_overrides_has_every_account_code_read(
    devnet: Devnet, owners: list[LocalAccount], node: str
) -> None:
    """Code sizes come from one eth_call with a state override; a node that ignores or refuses
    the override, or answers anything but the array asked for, costs one eth_getCode per
    account — and never a wallet read as having no code."""
    addresses = [o.address for o in owners]
    safe = devnet.deploy_custody_wallet(addresses, 2)
    wallets = [("safe", safe.address), ("eoa", owners[0].address), ("token", devnet.deploy_token("T", "T", 6).address)]
    block = pin(devnet)
    direct = read_wallet_configs(HttpRpc(devnet.url), "eth", wallets, block)
    with RpcProxy(devnet.url) as proxy:
        plain = read_wallet_configs(HttpRpc(proxy.url), "eth", wallets, block)
        assert plain == direct
        asked = [m for r in proxy.seen() for m in r.methods]
        assert asked.count("eth_getCode") == 2, "only the accounts with code"
        proxy.reset()
        before = len(proxy.seen())

        def strip(payload: Any) -> Any:
            items = payload if isinstance(payload, list) else [payload]
            for item in items:
                if item.get("method") == "eth_call" and len(item["params"]) == 3:
                    item["params"] = item["params"][:2]  # as a node that drops the third parameter
            return payload

        def refuse(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
            if len(request["params"]) == 3:
                return {"jsonrpc": "2.0", "id": response["id"], "error": {"code": -32602, "message": "invalid params"}}
            return response

        def misshapen(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
            if len(request["params"]) == 3:
                return {**response, "result": response["result"][:-64]}  # one size short
            return response

        if node == "ignores overrides":
            proxy.rewrite_request = strip
        else:
            proxy.on("eth_call", refuse if node == "refuses overrides" else misshapen)
        fallback = read_wallet_configs(HttpRpc(proxy.url), "eth", wallets, block)
        assert fallback == direct
        asked = [m for r in proxy.seen()[before:] for m in r.methods]
        assert asked.count("eth_getCode") == 3, "every account's code, read one by one"
    assert [c.kind for c in direct] == [WalletKind.SAFE, WalletKind.EOA, WalletKind.CONTRACT]


def test_many_wallets_take_the_same_number_of_batches(devnet: Devnet, owners: list[LocalAccount]) -> None:
    addresses = [o.address for o in owners]
    singleton = devnet.deploy("CustodyWallet").address
    wallets = [devnet.deploy_custody_wallet(addresses, 2, singleton=singleton) for _ in range(12)]
    rpc = CountingRpc(devnet.url)
    configs = read_wallet_configs(rpc, "eth", [(f"w{i}", w.address) for i, w in enumerate(wallets)], pin(devnet))
    assert [c.owners for c in configs] == [tuple(addresses)] * 12
    assert len(rpc.batches) == 1 + 1 + 1 + 3 + 1 and rpc.requests == 0


# ------------------------------------------------------------------ the takeover


def test_takeover_by_delegatecall_is_read_from_storage_and_nothing_crashes(
    devnet: Devnet, owners: list[LocalAccount], wallet: Contract
) -> None:
    token = devnet.deploy_token("Test USD", "USDC", 6)
    devnet.mint(token, wallet.address, 7_000_000)
    attacker = devnet.new_account()
    writer = devnet.deploy("SlotWriter")
    evil = devnet.deploy("MaliciousSingleton", attacker.address)
    baseline = read_one(devnet, "cust-1", wallet.address)

    # The owners sign one transaction: a DELEGATECALL into SlotWriter.takeover(evil).
    tx = devnet.exec_custody(
        wallet, owners[1:], writer.address, data=Devnet.calldata(writer, "takeover", evil.address), operation=1
    )
    receipt = devnet.w3.eth.get_transaction_receipt(tx)
    assert [(log["address"], log["topics"][0].to_0x_hex()) for log in receipt["logs"]] == [
        (wallet.address, EXECUTION_SUCCESS)
    ]
    after = read_one(devnet, "cust-1", wallet.address)

    assert after.singleton == evil.address != baseline.singleton
    assert after.code_hash == baseline.code_hash  # the proxy's code did not change
    assert after.owners == baseline.owners and after.threshold == 2  # storage still reads
    assert after.kind is WalletKind.SAFE
    assert after.problems == ("getThreshold() reverts: the singleton in slot 0 no longer answers as a Safe",)
    assert changed_fields(baseline, after) == {"singleton", "problems"}
    # The proxy answers masterCopy() itself; the Safe views and a plain ETH send revert.
    assert devnet.w3.eth.call({"to": wallet.address, "data": "0xa619486e"})[12:] == bytes.fromhex(evil.address[2:])
    for view in (wallet.functions.getOwners(), wallet.functions.getThreshold(), wallet.functions.nonce()):
        with pytest.raises((ContractLogicError, Web3RPCError)):
            view.call()
    with pytest.raises((ContractLogicError, Web3RPCError)):
        devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet.address, "value": 1})

    # The drain: ETH leaves by an internal call that emits no log; tokens by the token's Transfer.
    drain = devnet.w3.eth.contract(address=wallet.address, abi=evil.abi)
    sweep = drain.functions.sweepETH(attacker.address).build_transaction(
        {"from": attacker.address, "nonce": devnet.w3.eth.get_transaction_count(attacker.address)}
    )
    eth_tx = devnet.w3.eth.send_raw_transaction(attacker.sign_transaction(sweep).raw_transaction)
    assert devnet.w3.eth.wait_for_transaction_receipt(eth_tx)["logs"] == []
    assert devnet.w3.eth.get_balance(wallet.address) == 0
    sweep = drain.functions.sweepERC20(token.address, attacker.address).build_transaction(
        {"from": attacker.address, "nonce": devnet.w3.eth.get_transaction_count(attacker.address)}
    )
    devnet.w3.eth.wait_for_transaction_receipt(
        devnet.w3.eth.send_raw_transaction(attacker.sign_transaction(sweep).raw_transaction)
    )
    assert token.functions.balanceOf(attacker.address).call() == 7_000_000

    drained = read_one(devnet, "cust-1", wallet.address)
    assert drained.owners == baseline.owners and drained.singleton == evil.address

    block = pin(devnet)
    obs = WalletObservations(
        chain="eth",
        block=block,
        wallets=(WatchedWallet("cust-1", wallet.address),),
        configs={"cust-1": drained},
        baselines={"cust-1": baseline},
    )
    [finding] = check_wallet_configs(obs)
    assert finding.key.kind is BreakKind.WALLET_CONFIG_CHANGE and finding.key.wallet == "cust-1"
    assert finding.severity is Severity.CRITICAL
    assert f"singleton: {baseline.singleton} -> {evil.address}" in finding.detail
    assert "getThreshold() reverts" in finding.detail


# ------------------------------------------------------------------ configuration changes


def test_owner_swap_changes_only_the_owners(devnet: Devnet, owners: list[LocalAccount], wallet: Contract) -> None:
    baseline = read_one(devnet, "cust-1", wallet.address)
    newcomer = devnet.new_account()
    # The list is SENTINEL -> o0 -> o1 -> o2: swap o1 (its predecessor is o0).
    self_call(devnet, wallet, owners[:2], "swapOwner", owners[0].address, owners[1].address, newcomer.address)
    after = read_one(devnet, "cust-1", wallet.address)
    assert after.owners == (owners[0].address, newcomer.address, owners[2].address)
    assert compare_config(baseline, after) == [("owners", list(baseline.owners), list(after.owners))]
    assert after.nonce == baseline.nonce + 1  # moved, and not a change


def test_added_owner_and_threshold_change(devnet: Devnet, owners: list[LocalAccount], wallet: Contract) -> None:
    baseline = read_one(devnet, "cust-1", wallet.address)
    self_call(devnet, wallet, owners[:2], "changeThreshold", 3)
    raised = read_one(devnet, "cust-1", wallet.address)
    assert raised.threshold == 3 and changed_fields(baseline, raised) == {"threshold"}

    newcomer = devnet.new_account()
    self_call(devnet, wallet, owners, "addOwnerWithThreshold", newcomer.address, 1)
    added = read_one(devnet, "cust-1", wallet.address)
    assert added.owners == (newcomer.address, *baseline.owners)
    assert added.threshold == 1 and changed_fields(baseline, added) == {"owners", "threshold"}


def test_enabled_module_moves_funds_without_signatures(
    devnet: Devnet, owners: list[LocalAccount], wallet: Contract
) -> None:
    baseline = read_one(devnet, "cust-1", wallet.address)
    module = devnet.new_account()
    self_call(devnet, wallet, owners[:2], "enableModule", module.address)
    after = read_one(devnet, "cust-1", wallet.address)
    assert after.modules == (module.address,) == tuple(wallet.functions.getModules().call())
    assert changed_fields(baseline, after) == {"modules"}

    sink = devnet.new_account(0).address
    call = wallet.functions.execTransactionFromModule(sink, ETH, b"", 0).build_transaction(
        {"from": module.address, "nonce": devnet.w3.eth.get_transaction_count(module.address)}
    )
    receipt = devnet.w3.eth.wait_for_transaction_receipt(
        devnet.w3.eth.send_raw_transaction(module.sign_transaction(call).raw_transaction)
    )
    assert devnet.w3.eth.get_balance(sink) == ETH
    [event] = wallet.events.ExecutionFromModuleSuccess().process_receipt(receipt)
    assert event["args"]["module"] == module.address


def test_guard_and_fallback_handler_are_read_from_their_slots(
    devnet: Devnet, owners: list[LocalAccount], wallet: Contract
) -> None:
    baseline = read_one(devnet, "cust-1", wallet.address)
    handler = devnet.deploy("Multicall3").address
    self_call(devnet, wallet, owners[:2], "setFallbackHandler", handler)
    with_handler = read_one(devnet, "cust-1", wallet.address)
    assert with_handler.fallback_handler == handler
    assert changed_fields(baseline, with_handler) == {"fallback_handler"}

    guard = devnet.new_account().address  # no code: the wallet's guard call always passes
    self_call(devnet, wallet, owners[:2], "setGuard", guard)
    guarded = read_one(devnet, "cust-1", wallet.address)
    assert guarded.guard == guard
    assert changed_fields(with_handler, guarded) == {"guard"}
    slot = devnet.w3.eth.get_storage_at(wallet.address, GUARD_SLOT)
    assert to_checksum_address(bytes(slot)[12:]) == guard


# ------------------------------------------------------------------ bounded list walks


def test_looping_and_endless_owner_lists_are_reported_not_walked_forever(
    devnet: Devnet, owners: list[LocalAccount], wallet: Contract
) -> None:
    # Bounded: a 3-owner list read with room for 2 entries.
    short = read_one(devnet, "cust-1", wallet.address, max_entries=2)
    assert short.owners == tuple(o.address for o in owners[:2])
    assert "owners list does not end within 2 entries" in short.problems

    # A loop: the last owner points back at the first.
    last = mapping_slot(int(owners[2].address, 16), SLOT_OWNERS)
    devnet.rpc("anvil_setStorageAt", [wallet.address, hex(last), "0x" + owners[0].address[2:].lower().rjust(64, "0")])
    looped = read_one(devnet, "cust-1", wallet.address)
    assert looped.owners == tuple(o.address for o in owners)
    assert f"owners list loops back to {owners[0].address}" in looped.problems

    # A list cut short: the last owner's next entry is zero instead of the sentinel.
    devnet.rpc("anvil_setStorageAt", [wallet.address, hex(last), "0x" + "0" * 64])
    broken = read_one(devnet, "cust-1", wallet.address)
    assert f"owners list breaks after {owners[2].address}: its next entry is zero" in broken.problems

    # An owner count that disagrees with an intact list.
    devnet.rpc("anvil_setStorageAt", [wallet.address, hex(last), "0x" + "0" * 63 + "1"])
    devnet.rpc("anvil_setStorageAt", [wallet.address, hex(SLOT_OWNER_COUNT), "0x" + "0" * 63 + "5"])
    counted = read_one(devnet, "cust-1", wallet.address)
    assert counted.problems == ("owner count slot holds 5 but the owners list has 3 entries",)


# ------------------------------------------------------------------ EIP-7702


def test_eip7702_delegation_by_a_real_type4_transaction(devnet: Devnet, wallet: Contract) -> None:
    approver = devnet.new_account()
    plain = read_one(devnet, "approver", approver.address)
    assert plain.kind is WalletKind.EOA and plain.delegation is None

    target = devnet.deploy("MaliciousSingleton", approver.address).address
    devnet.delegate_eoa(approver, target)
    code = bytes(devnet.w3.eth.get_code(approver.address))
    assert code == bytes.fromhex("ef0100") + bytes.fromhex(target[2:])

    delegated = read_one(devnet, "approver", approver.address)
    assert delegated.kind is WalletKind.EOA and delegated.delegation == target
    assert changed_fields(plain, delegated) == {"code_hash", "delegation"}

    block = pin(devnet)
    other = devnet.new_account().address
    delegations = read_delegations(HttpRpc(devnet.url), "eth", [approver.address, other, wallet.address], block)
    assert delegations == {approver.address: target, other: None, wallet.address: None}

    obs = WalletObservations(
        chain="eth",
        block=block,
        wallets=(WatchedWallet("cust-1", wallet.address, approvers=(other, approver.address)),),
        configs={"cust-1": read_one(devnet, "cust-1", wallet.address)},
        approver_delegations=delegations,
    )
    [finding] = check_wallet_configs(obs)
    assert finding.severity is Severity.ERROR and finding.key.kind is BreakKind.WALLET_CONFIG_CHANGE
    assert f"approver {approver.address} has an EIP-7702 delegation to {target}" in finding.detail

    devnet.delegate_eoa(approver, ZERO_ADDRESS)  # clearing it
    assert read_one(devnet, "approver", approver.address).delegation is None


# ------------------------------------------------------------------ issuer controls


def test_freeze_and_pause_of_collateral_token_and_their_lifting(devnet: Devnet, wallet: Contract) -> None:
    token = devnet.deploy_token("Test USD", "USDC", 6)
    other_wallet = devnet.new_account()
    devnet.mint(token, wallet.address, 2_500_000)
    asset = WatchedAsset("USDC", token.address, 6, freeze_check="isFrozen", pause_check=True)
    wallets = (WatchedWallet("cust-1", wallet.address), WatchedWallet("cust-2", other_wallet.address))

    def observe() -> tuple[Any, list[Any]]:
        block = pin(devnet)
        controls = read_issuer_controls(
            HttpRpc(devnet.url),
            "eth",
            block,
            freezes=[FreezeQuery(token.address, w.address, "isFrozen") for w in wallets],
            pauses=[token.address],
            implementations=[token.address],
        )
        balances = {(w.name, "USDC"): token.functions.balanceOf(w.address).call() for w in wallets}
        obs = WalletObservations(
            chain="eth",
            block=block,
            wallets=wallets,
            configs={},
            assets=(asset,),
            controls=controls,
            balances=balances,
        )
        return controls, check_issuer_controls(obs)

    controls, findings = observe()
    assert [r.state for r in controls.freezes] == [ControlState.NO, ControlState.NO]
    assert [r.state for r in controls.pauses] == [ControlState.NO]
    assert controls.implementations[0].eip1967 is None and findings == []

    token.functions.freeze(wallet.address).transact({"from": devnet.deployer})
    controls, findings = observe()
    assert [r.state for r in controls.freezes] == [ControlState.YES, ControlState.NO]
    [frozen] = findings
    assert frozen.key.kind is BreakKind.ASSET_FROZEN and (frozen.key.wallet, frozen.key.asset) == ("cust-1", "USDC")
    assert frozen.severity is Severity.ERROR and frozen.amount == 2_500_000
    assert "isFrozen" in frozen.detail and "2.500000 USDC" in frozen.detail

    token.functions.unfreeze(wallet.address).transact({"from": devnet.deployer})
    token.functions.pause().transact({"from": devnet.deployer})
    with pytest.raises((ContractLogicError, Web3RPCError)):
        token.functions.transfer(devnet.deployer, 1).call({"from": wallet.address})
    controls, findings = observe()
    assert [r.state for r in controls.pauses] == [ControlState.YES]
    # Paused: a finding for the wallet that holds the token, none for the empty one.
    assert [(f.key.wallet, f.severity, "paused" in f.detail) for f in findings] == [("cust-1", Severity.ERROR, True)]

    token.functions.unpause().transact({"from": devnet.deployer})
    controls, findings = observe()
    assert [r.state for r in controls.pauses] == [ControlState.NO] and findings == []


def test_unreadable_controls_are_unknown_never_not_frozen(devnet: Devnet, wallet: Contract) -> None:
    token = devnet.deploy_token("Test USD", "USDC", 6)
    no_code = devnet.new_account().address
    holder = wallet.address
    rpc = CountingRpc(devnet.url)
    controls = read_issuer_controls(
        rpc,
        "eth",
        pin(devnet),
        freezes=[
            FreezeQuery(token.address, holder, "isFrozen"),  # answers
            FreezeQuery(token.address, holder, "isBlacklisted"),  # not a function here: reverts
            FreezeQuery(no_code, holder, "isFrozen"),  # no code: empty answer
        ],
        pauses=[token.address, wallet.address],  # the wallet has no paused(): its fallback returns nothing
    )
    assert [(r.state, r.note) for r in controls.freezes] == [
        (ControlState.NO, ""),
        (ControlState.UNKNOWN, f"isBlacklisted({holder}) reverted"),
        (ControlState.UNKNOWN, f"isFrozen({holder}) returned no data (not a view of this token, or no code there)"),
    ]
    assert [r.state for r in controls.pauses] == [ControlState.NO, ControlState.UNKNOWN]
    # The batch held a revert, so its chunk was asked again call by call.
    assert rpc.batches[0] == 5 and rpc.requests == 5


def test_token_implementation_slots_and_their_change(devnet: Devnet, wallet: Contract) -> None:
    token = devnet.deploy_token("Test USD", "USDC", 6)
    devnet.mint(token, wallet.address, 1)
    impl_a, impl_b = devnet.new_account().address, devnet.new_account().address
    devnet.rpc(
        "anvil_setStorageAt",
        [token.address, hex(ZEPPELINOS_IMPLEMENTATION_SLOT), "0x" + impl_a[2:].lower().rjust(64, "0")],
    )
    before = read_issuer_controls(HttpRpc(devnet.url), "eth", pin(devnet), implementations=[token.address])
    [impl] = before.implementations
    assert (impl.eip1967, impl.zeppelinos) == (None, impl_a)

    devnet.rpc(
        "anvil_setStorageAt",
        [token.address, hex(EIP1967_IMPLEMENTATION_SLOT), "0x" + impl_b[2:].lower().rjust(64, "0")],
    )
    block = pin(devnet)
    after = read_issuer_controls(HttpRpc(devnet.url), "eth", block, implementations=[token.address])
    assert (after.implementations[0].eip1967, after.implementations[0].zeppelinos) == (impl_b, impl_a)
    obs = WalletObservations(
        chain="eth",
        block=block,
        wallets=(WatchedWallet("cust-1", wallet.address),),
        configs={},
        assets=(WatchedAsset("USDC", token.address, 6),),
        controls=after,
        token_baselines={token.address: impl},
    )
    [finding] = check_issuer_controls(obs)
    assert finding.severity is Severity.WARNING
    assert f"EIP-1967 implementation changed from none to {impl_b}" in finding.detail


# ------------------------------------------------------------------ failures are ChainErrors


def test_read_at_an_unknown_block_names_wallet_and_block(devnet: Devnet, wallet: Contract) -> None:
    bogus = BlockRef(devnet.head(), "0x" + "11" * 32)
    with pytest.raises(ChainError) as excinfo:
        read_wallet_configs(HttpRpc(devnet.url), "eth", [("cust-1", wallet.address)], bogus)
    message = str(excinfo.value)
    assert "cust-1" in message and bogus.hash in message and "chain eth" in message


def test_unreachable_node_is_rpc_unavailable_naming_the_token() -> None:
    token = to_checksum_address("0x" + "22" * 20)
    with pytest.raises(RpcUnavailable) as excinfo:
        read_issuer_controls(
            HttpRpc(closed_port_url(), timeout=2),
            "eth",
            BlockRef(1, "0x" + "33" * 32),
            pauses=[token],
        )
    assert token in str(excinfo.value)


# ------------------------------------------------------------------ a real Safe 1.3.0


def test_real_safe_130_reads_and_takeover_replay(devnet: Devnet, owners: list[LocalAccount]) -> None:
    safe = devnet.deploy_safe_130([o.address for o in owners], 2)
    devnet.set_native_balance(safe.address, 3 * ETH)
    fresh = read_one(devnet, "safe-1", safe.address)
    assert fresh.kind is WalletKind.SAFE and fresh.problems == ()
    assert list(fresh.owners) == safe.functions.getOwners().call() == [o.address for o in owners]
    assert fresh.threshold == safe.functions.getThreshold().call() == 2
    assert fresh.nonce == safe.functions.nonce().call() == 0
    assert fresh.singleton == singleton_of(devnet, safe.address)
    assert fresh.fallback_handler is not None
    handler_word = devnet.w3.eth.get_storage_at(safe.address, FALLBACK_HANDLER_SLOT)
    assert fresh.fallback_handler == to_checksum_address(bytes(handler_word)[12:])
    assert fresh.modules == () and fresh.guard is None

    # Configuration changes through the Safe's own transactions.
    module = devnet.new_account()
    devnet.exec_safe(safe, owners[:2], safe.address, data=Devnet.calldata(safe, "enableModule", module.address))
    devnet.exec_safe(safe, owners[1:], safe.address, data=Devnet.calldata(safe, "changeThreshold", 3))
    changed = read_one(devnet, "safe-1", safe.address)
    assert changed.modules == (module.address,)
    sentinel = to_checksum_address(f"0x{SENTINEL:040x}")
    assert list(changed.modules) == safe.functions.getModulesPaginated(sentinel, 10).call()[0]
    assert changed.threshold == 3 and changed_fields(fresh, changed) == {"modules", "threshold"}

    # The takeover: owners sign a DELEGATECALL into SlotWriter; slot 0 now names the attacker's code.
    attacker = devnet.new_account()
    writer = devnet.deploy("SlotWriter")
    evil = devnet.deploy("MaliciousSingleton", attacker.address)
    tx = devnet.exec_safe(
        safe, owners, writer.address, data=Devnet.calldata(writer, "takeover", evil.address), operation=1
    )
    receipt = devnet.w3.eth.get_transaction_receipt(tx)
    assert [log["address"] for log in receipt["logs"]] == [safe.address]  # ExecutionSuccess only
    taken = read_one(devnet, "safe-1", safe.address)
    assert taken.singleton == evil.address and taken.code_hash == fresh.code_hash
    assert taken.owners == fresh.owners and taken.threshold == 3 and taken.modules == (module.address,)
    assert taken.problems == ("getThreshold() reverts: the singleton in slot 0 no longer answers as a Safe",)
    assert changed_fields(changed, taken) == {"singleton", "problems"}
    with pytest.raises((ContractLogicError, Web3RPCError)):
        safe.functions.getOwners().call()
    assert devnet.w3.eth.call({"to": safe.address, "data": "0xa619486e"})[12:] == bytes.fromhex(evil.address[2:])

    # The drain moves ETH by an internal call: no log; a call trace shows it.
    drain = devnet.w3.eth.contract(address=safe.address, abi=evil.abi)
    sweep = drain.functions.sweepETH(attacker.address).build_transaction(
        {"from": attacker.address, "nonce": devnet.w3.eth.get_transaction_count(attacker.address)}
    )
    eth_tx = devnet.w3.eth.send_raw_transaction(attacker.sign_transaction(sweep).raw_transaction)
    assert devnet.w3.eth.wait_for_transaction_receipt(eth_tx)["logs"] == []
    assert devnet.w3.eth.get_balance(safe.address) == 0
    trace = devnet.rpc("debug_traceTransaction", [eth_tx.to_0x_hex(), {"tracer": "callTracer"}])
    [delegate] = trace["calls"]
    [inner] = delegate["calls"]
    assert delegate["type"] == "DELEGATECALL" and inner["type"] == "CALL"
    assert to_checksum_address(inner["from"]) == safe.address and int(inner["value"], 16) == 3 * ETH

    # The read after the drain still works and still reports the takeover.
    assert replace(read_one(devnet, "safe-1", safe.address), block_number=taken.block_number) == taken
