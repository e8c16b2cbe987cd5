"""chains.evm.scan against a real Anvil node: every movement of a custody wallet observed, with
exact amounts, blocks, hashes and positions; only the blocks where native value moved traced;
refused ranges halved; pruned history and reorgs raised, never read as "nothing moved".

Faults are injected by tests/integration/rpcproxy.py in front of the session's node; the
expected values are read back from the node independently (receipts, trace_transaction).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from chains.evm import logs, native, scan
from chains.evm.devnet import AnvilNode, Devnet
from chains.evm.rpc import HttpRpc
from reconciler.domain import BlockRef
from reconciler.transfers import ZERO_ADDRESS, MovementKind, Observation
from tests.integration.helpers import new_address
from tests.integration.rpcproxy import RpcProxy

CHAIN = "eth"
TRACE_METHODS = {"debug_traceBlockByHash", "debug_traceBlockByNumber", "trace_block"}


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def rpc(devnet: Devnet) -> Iterator[HttpRpc]:
    transport = HttpRpc(devnet.url, timeout=30)
    yield transport
    transport.close()


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    with RpcProxy(devnet.url) as p:
        yield p


@pytest.fixture
def usdc(devnet: Devnet) -> Contract:
    return devnet.deploy_token("Test USD", "USDC", 6)


def ref(net: Devnet, number: int | None = None) -> BlockRef:
    block = net.w3.eth.get_block(net.head() if number is None else number)
    return BlockRef(int(block["number"]), block["hash"].to_0x_hex())


def hexhash(tx: Any) -> str:
    return tx if isinstance(tx, str) else "0x" + bytes(tx).hex()


def as_holder(net: Devnet, holder: str, call: Any) -> str:
    """Send ``call`` (a web3 contract function) from ``holder`` without its key."""
    net.rpc("anvil_impersonateAccount", [holder])
    try:
        if net.w3.eth.get_balance(to_checksum_address(holder)) < 10**17:
            net.set_native_balance(holder, 10**18)
        tx = call.transact({"from": to_checksum_address(holder)})
        receipt = net.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        assert receipt["status"] == 1
        return hexhash(tx)
    finally:
        net.rpc("anvil_stopImpersonatingAccount", [holder])


def token_obs(net: Devnet, tx: str, kind: MovementKind, token: Contract, frm: str, to: str, amount: int) -> Observation:
    """The observation the scan must make of the one matching log in ``tx``'s receipt, with
    every field read back from the node independently."""
    receipt = net.w3.eth.get_transaction_receipt(tx)
    topic = scan.TRANSFER_TOPIC if kind is MovementKind.TOKEN else scan.APPROVAL_TOPIC
    logs = [
        entry
        for entry in receipt["logs"]
        if entry["address"] == token.address
        and entry["topics"][0].to_0x_hex() == topic
        and entry["topics"][1].to_0x_hex() == scan.address_topic(frm)
        and entry["topics"][2].to_0x_hex() == scan.address_topic(to)
    ]
    assert len(logs) == 1, receipt["logs"]
    block = net.w3.eth.get_block(receipt["blockNumber"])
    return Observation(
        chain=CHAIN,
        block_number=receipt["blockNumber"],
        block_hash=receipt["blockHash"].to_0x_hex(),
        block_time=int(block["timestamp"]),
        tx_hash=tx.lower(),
        kind=kind,
        token=token.address,
        from_address=to_checksum_address(frm),
        to_address=to_checksum_address(to),
        amount=amount,
        log_index=logs[0]["logIndex"],
    )


def native_obs(
    net: Devnet, tx: str, frm: str, to: str, amount: int, position: str, kind: MovementKind = MovementKind.NATIVE
) -> Observation:
    receipt = net.w3.eth.get_transaction_receipt(tx)
    block = net.w3.eth.get_block(receipt["blockNumber"])
    return Observation(
        chain=CHAIN,
        block_number=receipt["blockNumber"],
        block_hash=receipt["blockHash"].to_0x_hex(),
        block_time=int(block["timestamp"]),
        tx_hash=tx.lower(),
        kind=kind,
        token=None,
        from_address=to_checksum_address(frm),
        to_address=to_checksum_address(to),
        amount=amount,
        trace_position=position,
    )


def fee_of(net: Devnet, tx: str) -> int:
    receipt = net.w3.eth.get_transaction_receipt(tx)
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def methods(proxy: RpcProxy) -> list[str]:
    return [m for r in proxy.seen() for m in r.methods]


def get_logs_ranges(proxy: RpcProxy) -> list[tuple[int, int]]:
    out = []
    for received in proxy.seen():
        items = received.payload if isinstance(received.payload, list) else [received.payload]
        for item in items:
            if item.get("method") == "eth_getLogs":
                flt = item["params"][0]
                out.append((int(flt["fromBlock"], 16), int(flt["toBlock"], 16)))
    return out


def error_answer(code: int, message: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def hook(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": response.get("id"), "error": {"code": code, "message": message}}

    return hook


# ----------------------------------------------------------------------------- token logs


def test_inflows_outflows_and_approvals_are_observed_exactly(devnet: Devnet, rpc: HttpRpc, usdc: Contract) -> None:
    w1, w2, outsider, spender = new_address(), new_address(), new_address(), new_address()
    other = devnet.deploy_token("Other", "OTH", 18)
    start = devnet.head() + 1
    devnet.mint(usdc, w1, 1_000_000)
    mint_tx = hexhash(devnet.w3.eth.get_block(devnet.head())["transactions"][0])
    out_tx = as_holder(devnet, w1, usdc.functions.transfer(outsider, 300_000))
    between_tx = as_holder(devnet, w1, usdc.functions.transfer(w2, 200_000))
    approve_tx = as_holder(devnet, w1, usdc.functions.approve(spender, 55))
    in_tx = as_holder(devnet, outsider, usdc.functions.transfer(w2, 7))
    as_holder(devnet, outsider, usdc.functions.transfer(spender, 1))  # between outsiders: not ours
    devnet.mint(other, w1, 5)  # a token that is not configured
    devnet.mine(3)
    end = devnet.head()

    observed = logs.scan_token_logs(rpc, CHAIN, [w1, w2], [usdc.address], start, end, chunk_blocks=1000)

    expected = [
        token_obs(devnet, mint_tx, MovementKind.TOKEN, usdc, ZERO_ADDRESS, w1, 1_000_000),
        token_obs(devnet, out_tx, MovementKind.TOKEN, usdc, w1, outsider, 300_000),
        token_obs(devnet, between_tx, MovementKind.TOKEN, usdc, w1, w2, 200_000),  # once, though in both queries
        token_obs(devnet, approve_tx, MovementKind.APPROVAL, usdc, w1, spender, 55),
        token_obs(devnet, in_tx, MovementKind.TOKEN, usdc, outsider, w2, 7),
    ]
    assert observed == expected
    assert all(o.block_hash == o.block_hash.lower() and o.tx_hash == o.tx_hash.lower() for o in observed)

    # Without the token filter the unconfigured token's mint is seen too; nothing else changes.
    unfiltered = logs.scan_token_logs(rpc, CHAIN, [w1, w2], None, start, end, chunk_blocks=1000)
    extra = [o for o in unfiltered if o not in expected]
    assert [(o.token, o.to_address, o.amount) for o in extra] == [(other.address, to_checksum_address(w1), 5)]


def test_wallet_lists_are_split_into_bounded_or_lists(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    wallets = [new_address() for _ in range(5)]
    start = devnet.head() + 1
    for i, wallet in enumerate(wallets):
        devnet.mint(usdc, wallet, 10 + i)
    end = devnet.head()
    rpc = HttpRpc(proxy.url)

    whole = logs.scan_token_logs(rpc, CHAIN, wallets, [usdc.address], start, end, chunk_blocks=1000)
    before = len(proxy.seen())
    split = logs.scan_token_logs(rpc, CHAIN, wallets, [usdc.address], start, end, chunk_blocks=1000, max_addresses=2)

    assert split == whole and len(whole) == 5
    queries = [
        item["params"][0]
        for r in proxy.seen()[before:]
        for item in (r.payload if isinstance(r.payload, list) else [r.payload])
        if item.get("method") == "eth_getLogs"
    ]
    assert len(queries) == 3 * 2  # ceil(5 / 2) OR-lists, each an outflow and an inflow query
    for q in queries:
        wallet_list = q["topics"][1] if q["topics"][1] is not None else q["topics"][2]
        assert 1 <= len(wallet_list) <= 2
        assert q["address"] == [usdc.address.lower()]


def test_tokens_leave_a_wallet_that_sent_no_transaction(devnet: Devnet, rpc: HttpRpc, usdc: Contract) -> None:
    """EIP-3009 by a relayer, EIP-2612 permit then transferFrom by the spender: only the logs
    show these outflows; the wallet's nonce never moves."""
    owner: LocalAccount = Account.create()  # the custody wallet: the test holds its key, it sends nothing
    relayer, spender = devnet.w3.eth.accounts[1], devnet.w3.eth.accounts[2]
    outsider = new_address()
    devnet.mint(usdc, owner.address, 1_000)
    start = devnet.head() + 1

    auth_tx = devnet.transfer_with_authorization(usdc, owner, outsider, 100, relayer=relayer, nonce=b"\x01" * 32)
    permit_tx = devnet.permit(usdc, owner, spender, 250, relayer=relayer)
    pull_tx = hexhash(usdc.functions.transferFrom(owner.address, outsider, 250).transact({"from": spender}))
    devnet.w3.eth.wait_for_transaction_receipt(pull_tx)

    # The contract's own rules: one use per authorization nonce, permit nonces count up.
    assert usdc.functions.authorizationState(owner.address, b"\x01" * 32).call() is True
    assert usdc.functions.nonces(owner.address).call() == 1
    assert usdc.functions.allowance(owner.address, spender).call() == 0
    used = "0x" + keccak(text="AuthorizationAlreadyUsed(address,bytes32)")[:4].hex()
    with pytest.raises(ContractCustomError, match=used):
        devnet.transfer_with_authorization(usdc, owner, outsider, 100, relayer=relayer, nonce=b"\x01" * 32)
    assert devnet.w3.eth.get_transaction_count(owner.address) == 0
    for tx in (auth_tx, permit_tx, pull_tx):
        assert devnet.w3.eth.get_transaction(tx)["from"] != owner.address

    observed = logs.scan_token_logs(rpc, CHAIN, [owner.address], [usdc.address], start, devnet.head(), chunk_blocks=50)

    assert observed == [
        token_obs(devnet, auth_tx, MovementKind.TOKEN, usdc, owner.address, outsider, 100),
        token_obs(devnet, permit_tx, MovementKind.APPROVAL, usdc, owner.address, spender, 250),
        token_obs(devnet, pull_tx, MovementKind.TOKEN, usdc, owner.address, outsider, 250),
    ]


def test_speed_of_a_dense_token_scan(devnet: Devnet, rpc: HttpRpc, usdc: Contract) -> None:
    """4,000 Transfer events into 100 wallets: all observed (the rate is printed, not asserted:
    the machine is shared)."""
    wallets = [new_address() for _ in range(100)]
    start = devnet.head() + 1
    for _ in range(8):
        tx = usdc.functions.mintBatch([wallets[i % 100] for i in range(500)], list(range(1, 501))).transact(
            {"from": devnet.deployer}
        )
        devnet.w3.eth.wait_for_transaction_receipt(tx)
    began = time.perf_counter()
    observed = logs.scan_token_logs(rpc, CHAIN, wallets, [usdc.address], start, devnet.head(), chunk_blocks=2000)
    elapsed = time.perf_counter() - began
    assert len(observed) == 4_000
    assert sum(o.amount for o in observed) == 8 * sum(range(1, 501))
    print(f"\nscan_token_logs: {len(observed)} events in {elapsed:.3f}s = {len(observed) / elapsed:,.0f} events/s")


# ----------------------------------------------------------------------------- large wallet sets


def get_logs_filters(proxy: RpcProxy, since: int = 0) -> list[dict[str, Any]]:
    """The eth_getLogs filters of the requests after the first ``since`` the proxy received."""
    return [
        item["params"][0]
        for r in proxy.seen()[since:]
        for item in (r.payload if isinstance(r.payload, list) else [r.payload])
        if item.get("method") == "eth_getLogs"
    ]


@pytest.fixture
def custody_traffic(devnet: Devnet, usdc: Contract) -> dict[str, Any]:
    """Two configured tokens moving into, out of and between three custody wallets, among
    logs of the same tokens that name no custody wallet where the scan looks (outsiders'
    transfers, an approval whose spender, not owner, is a custody wallet) and a token that is
    not configured."""
    eur = devnet.deploy_token("Test EUR", "EURT", 18)
    other = devnet.deploy_token("Other", "OTH", 18)
    w1, w2, w3 = new_address(), new_address(), new_address()
    outsider, stranger, spender = new_address(), new_address(), new_address()
    start = devnet.head() + 1
    devnet.mint(usdc, w1, 1_000_000)
    mint_tx = hexhash(devnet.w3.eth.get_block(devnet.head())["transactions"][0])
    devnet.mint(usdc, outsider, 500)  # another holder's mint: not custody
    devnet.mint(eur, w3, 10**18)
    eur_mint_tx = hexhash(devnet.w3.eth.get_block(devnet.head())["transactions"][0])
    out_tx = as_holder(devnet, w1, usdc.functions.transfer(outsider, 300_000))
    between_tx = as_holder(devnet, w1, usdc.functions.transfer(w2, 200_000))
    approve_tx = as_holder(devnet, w1, usdc.functions.approve(spender, 55))
    as_holder(devnet, outsider, usdc.functions.approve(w2, 9))  # a custody wallet as spender: not ours
    in_tx = as_holder(devnet, outsider, usdc.functions.transfer(w2, 7))
    as_holder(devnet, outsider, usdc.functions.transfer(stranger, 1))  # between outsiders
    eur_out_tx = as_holder(devnet, w3, eur.functions.transfer(stranger, 4))
    devnet.mint(other, w1, 5)  # a token that is not configured
    devnet.mine(2)
    expected = [
        token_obs(devnet, mint_tx, MovementKind.TOKEN, usdc, ZERO_ADDRESS, w1, 1_000_000),
        token_obs(devnet, eur_mint_tx, MovementKind.TOKEN, eur, ZERO_ADDRESS, w3, 10**18),
        token_obs(devnet, out_tx, MovementKind.TOKEN, usdc, w1, outsider, 300_000),
        token_obs(devnet, between_tx, MovementKind.TOKEN, usdc, w1, w2, 200_000),
        token_obs(devnet, approve_tx, MovementKind.APPROVAL, usdc, w1, spender, 55),
        token_obs(devnet, in_tx, MovementKind.TOKEN, usdc, outsider, w2, 7),
        token_obs(devnet, eur_out_tx, MovementKind.TOKEN, eur, w3, stranger, 4),
    ]
    return {
        "wallets": [w1, w2, w3],
        "tokens": [usdc.address, eur.address],
        "other": other,
        "start": start,
        "end": devnet.head(),
        "expected": expected,
    }


def test_a_large_wallet_set_is_matched_locally_with_the_same_observations(
    devnet: Devnet, proxy: RpcProxy, custody_traffic: dict[str, Any]
) -> None:
    t = custody_traffic
    rpc = HttpRpc(proxy.url)
    scan_ = functools.partial(logs.scan_token_logs, rpc, CHAIN, t["wallets"], t["tokens"], t["start"], t["end"])

    by_node = scan_(chunk_blocks=4)
    by_node_filters = get_logs_filters(proxy)
    before = len(proxy.seen())
    local = scan_(chunk_blocks=4, topic_filter_max=2)  # 3 wallets: above the threshold

    assert by_node == t["expected"]  # exact, every field read back from the node
    assert local == by_node
    assert sum(o.kind is MovementKind.APPROVAL for o in local) == 1
    # The node was asked once per range for all Transfer and Approval logs of the tokens, and
    # answered more than the wallets' (the outsiders' logs): those were left out here.
    filters = get_logs_filters(proxy, before)
    assert {tuple(f["address"]) for f in filters} == {tuple(sorted(a.lower() for a in t["tokens"]))}
    assert all(f["topics"] == [[scan.TRANSFER_TOPIC, scan.APPROVAL_TOPIC]] for f in filters)
    assert len(filters) == -(-(t["end"] - t["start"] + 1) // 4)
    assert all(f["topics"][1] is not None or f["topics"][2] for f in by_node_filters)
    answered = proxy.upstream(
        "eth_getLogs",
        [{"address": t["tokens"], "fromBlock": hex(t["start"]), "toBlock": hex(t["end"])}],
    )
    assert len(answered) == len(local) + 3  # and the outsiders' mint, approval and transfer

    # The same with the tokens split over several queries, and with the default threshold.
    assert scan_(chunk_blocks=1000, topic_filter_max=0, max_addresses=1) == by_node
    assert scan_(chunk_blocks=1000) == by_node
    # At the threshold itself the node still filters.
    before = len(proxy.seen())
    assert scan_(chunk_blocks=1000, topic_filter_max=3) == by_node
    assert all(len(f["topics"]) > 1 for f in get_logs_filters(proxy, before))


def test_a_large_wallet_set_halves_refused_ranges_and_raises_on_pruned_history(
    devnet: Devnet, proxy: RpcProxy, custody_traffic: dict[str, Any]
) -> None:
    t = custody_traffic
    limit = 3

    def refuse_large(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        flt = request["params"][0]
        if int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > limit:
            return error_answer(-32602, "block range is too large")(request, response)
        return response

    proxy.on("eth_getLogs", refuse_large)
    rpc = HttpRpc(proxy.url)
    found = logs.scan_token_logs(
        rpc, CHAIN, t["wallets"], t["tokens"], t["start"], t["end"], chunk_blocks=64, topic_filter_max=0
    )
    assert found == t["expected"]
    ranges = get_logs_ranges(proxy)
    assert any(b - a + 1 > limit for a, b in ranges)  # refused, halved
    assert sum(b - a + 1 for a, b in ranges if b - a + 1 <= limit) == t["end"] - t["start"] + 1

    proxy.reset()
    proxy.on("eth_getLogs", error_answer(4444, "pruned history unavailable"))
    with pytest.raises(scan.HistoryUnavailable, match="unread, not empty"):
        logs.scan_token_logs(
            rpc, CHAIN, t["wallets"], t["tokens"], t["start"], t["end"], chunk_blocks=64, topic_filter_max=0
        )


def test_a_node_answering_outside_the_token_filter_is_refused_on_the_local_path(
    devnet: Devnet, proxy: RpcProxy, custody_traffic: dict[str, Any]
) -> None:
    """A log of a token not asked for, or of another event, is a lying node or proxy, even when
    it names a custody wallet: ScanFailed, never an observation."""
    t = custody_traffic
    rpc = HttpRpc(proxy.url)
    scan_ = functools.partial(
        logs.scan_token_logs, rpc, CHAIN, t["wallets"], t["tokens"], t["start"], t["end"], chunk_blocks=1000
    )
    flt = {"fromBlock": hex(t["start"]), "toBlock": hex(t["end"])}
    unasked = proxy.upstream("eth_getLogs", [{**flt, "address": t["other"].address}])
    assert len(unasked) == 1  # the unconfigured token's mint to a custody wallet

    def add_unasked(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        # Naming no custody wallet: it is not kept, yet still proves the node answers another query.
        entry = {**unasked[0], "topics": [*unasked[0]["topics"][:2], scan.address_topic(new_address())]}
        return {**response, "result": [*response["result"], entry]}

    proxy.on("eth_getLogs", add_unasked)
    with pytest.raises(scan.ScanFailed, match="filter excludes"):
        scan_(topic_filter_max=0)

    def another_event(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        entries = json.loads(json.dumps(response["result"]))
        entries[0]["topics"][0] = "0x" + keccak(text="Other(address,address,uint256)").hex()
        return {**response, "result": entries}

    proxy.reset()
    proxy.on("eth_getLogs", another_event)
    with pytest.raises(scan.ScanFailed, match="filter excludes"):
        scan_(topic_filter_max=0)

    def erc721_shaped(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        entries = json.loads(json.dumps(response["result"]))
        entries[0]["topics"].append("0x" + "00" * 31 + "01")
        return {**response, "result": entries}

    proxy.reset()
    proxy.on("eth_getLogs", erc721_shaped)
    with pytest.raises(scan.ScanFailed, match="not an ERC-20 Transfer/Approval"):
        scan_(topic_filter_max=0)

    proxy.reset()
    assert scan_(topic_filter_max=0) == t["expected"]


# ----------------------------------------------------------------------------- native value


def test_eoa_wallet_sending_eth_with_its_key_is_a_native_outflow_and_a_fee(devnet: Devnet, rpc: HttpRpc) -> None:
    wallet = devnet.new_account(10 * 10**18)
    outsider = new_address()
    since = ref(devnet)
    tx = devnet.send_eth(wallet, outsider, 15 * 10**17)
    devnet.mine(3)
    to = ref(devnet)

    observed = native.scan_native(rpc, CHAIN, [wallet.address], since, to, chunk_blocks=100)

    fee = fee_of(devnet, tx)
    assert fee > 0
    assert observed == [
        native_obs(devnet, tx, wallet.address, outsider, 15 * 10**17, ""),
        native_obs(devnet, tx, wallet.address, ZERO_ADDRESS, fee, native.FEE_POSITION, MovementKind.FEE),
    ]
    # The flow the engine checks: the balance change is explained exactly.
    change = devnet.w3.eth.get_balance(wallet.address, to.number) - devnet.w3.eth.get_balance(
        wallet.address, since.number
    )
    assert change == -sum(o.amount for o in observed)


def test_eth_received_by_a_wallet(devnet: Devnet, rpc: HttpRpc) -> None:
    wallet = new_address()
    since = ref(devnet)
    tx = hexhash(devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet, "value": 2 * 10**18}))
    devnet.w3.eth.wait_for_transaction_receipt(tx)
    devnet.mine(2)

    observed = native.scan_native(rpc, CHAIN, [wallet], since, ref(devnet), chunk_blocks=100)

    assert observed == [native_obs(devnet, tx, devnet.deployer, wallet, 2 * 10**18, "")]


def _value_call_path(devnet: Devnet, tx: str, to: str) -> str:
    """Where trace_transaction (the other trace format) puts the call with value to ``to``."""
    traces = devnet.rpc("trace_transaction", [tx])
    paths = [
        ".".join(str(i) for i in t["traceAddress"])
        for t in traces
        if t["type"] == "call" and t["action"].get("to") == to.lower() and int(t["action"]["value"], 16)
    ]
    assert len(paths) == 1, traces
    return paths[0]


@pytest.fixture
def custody_wallet(devnet: Devnet) -> tuple[Contract, list[LocalAccount]]:
    owners = [devnet.new_account(), devnet.new_account()]
    return devnet.deploy_custody_wallet([o.address for o in owners], 2), owners


def test_eth_moved_out_by_a_contract_wallet_internal_call_is_traced_with_its_position(
    devnet: Devnet, rpc: HttpRpc, custody_wallet: tuple[Contract, list[LocalAccount]]
) -> None:
    wallet, owners = custody_wallet
    outsider = new_address()
    since = ref(devnet)
    fund_tx = hexhash(
        devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet.address, "value": 3 * 10**18})
    )
    devnet.w3.eth.wait_for_transaction_receipt(fund_tx)
    exec_tx = devnet.exec_custody(wallet, owners, outsider, value=10**18)
    devnet.mine(2)
    # The execTransaction sent ETH with no log: only a trace shows it, deep in the call tree.
    receipt = devnet.w3.eth.get_transaction_receipt(exec_tx)
    assert all(entry["address"] == wallet.address for entry in receipt["logs"])
    position = _value_call_path(devnet, exec_tx, outsider)
    assert position.count(".") >= 1  # the proxy's DELEGATECALL, then the CALL with value

    observed = native.scan_native(rpc, CHAIN, [wallet.address], since, ref(devnet), chunk_blocks=100)

    assert observed == [
        native_obs(devnet, fund_tx, devnet.deployer, wallet.address, 3 * 10**18, ""),
        native_obs(devnet, exec_tx, wallet.address, outsider, 10**18, position),
    ]  # no FEE: the relayer, not the wallet, paid the gas


def test_a_round_trip_through_a_contract_wallet_is_not_hidden_by_equal_ends(
    devnet: Devnet, rpc: HttpRpc, custody_wallet: tuple[Contract, list[LocalAccount]]
) -> None:
    """ETH comes in (no log: the wallet's receive() emits nothing) and the same amount leaves by
    an execTransaction: balance and nonce read equal at both ends, yet both moves are found,
    because the wallet's own execution log cuts the bisection."""
    wallet, owners = custody_wallet
    outsider = new_address()
    since = ref(devnet)
    devnet.mine(5)
    fund_tx = hexhash(devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet.address, "value": 10**18}))
    devnet.w3.eth.wait_for_transaction_receipt(fund_tx)
    devnet.mine(6)
    exec_tx = devnet.exec_custody(wallet, owners, outsider, value=10**18)
    devnet.mine(4)
    to = ref(devnet)
    assert native.native_changed(rpc, [wallet.address], since, to) == set()  # the ends alone hide it

    observed = native.scan_native(rpc, CHAIN, [wallet.address], since, to, chunk_blocks=100)

    assert observed == [
        native_obs(devnet, fund_tx, devnet.deployer, wallet.address, 10**18, ""),
        native_obs(devnet, exec_tx, wallet.address, outsider, 10**18, _value_call_path(devnet, exec_tx, outsider)),
    ]


def test_trace_block_is_used_where_debug_tracing_is_not_served(
    devnet: Devnet, proxy: RpcProxy, custody_wallet: tuple[Contract, list[LocalAccount]]
) -> None:
    wallet, owners = custody_wallet
    since = ref(devnet)
    devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet.address, "value": 3 * 10**18})
    devnet.exec_custody(wallet, owners, new_address(), value=10**18)
    devnet.exec_custody(wallet, owners, new_address(), value=0)  # moves nothing
    to = ref(devnet)
    direct = native.scan_native(HttpRpc(devnet.url), CHAIN, [wallet.address], since, to, chunk_blocks=100)

    for method in ("debug_traceBlockByHash", "debug_traceBlockByNumber"):
        proxy.on(method, error_answer(-32601, "Method not found"))
    via_parity = native.scan_native(HttpRpc(proxy.url), CHAIN, [wallet.address], since, to, chunk_blocks=100)

    assert via_parity == direct and len(direct) == 2
    assert "trace_block" in methods(proxy)


def test_reverted_frames_move_nothing(devnet: Devnet, rpc: HttpRpc) -> None:
    """A transaction that reverts moves none of its value; its sender still pays gas."""
    wallet = devnet.new_account(10 * 10**18)
    token = devnet.deploy_token("T", "T", 6)  # no payable function: a call with value reverts
    since = ref(devnet)
    signed = wallet.sign_transaction(
        {
            "type": 2,
            "chainId": devnet.w3.eth.chain_id,
            "nonce": 0,
            "to": token.address,
            "value": 10**18,
            "data": b"",
            "gas": 100_000,
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    tx = hexhash(devnet.w3.eth.send_raw_transaction(signed.raw_transaction))
    assert devnet.w3.eth.wait_for_transaction_receipt(tx)["status"] == 0

    observed = native.scan_native(rpc, CHAIN, [wallet.address], since, ref(devnet), chunk_blocks=100)

    assert observed == [
        native_obs(devnet, tx, wallet.address, ZERO_ADDRESS, fee_of(devnet, tx), native.FEE_POSITION, MovementKind.FEE)
    ]


def test_only_blocks_where_a_wallet_moved_are_traced(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    mover = devnet.new_account(10 * 10**18)
    quiet = new_address()  # gets tokens, never native value
    outsider_key = devnet.new_account(10 * 10**18)
    since = ref(devnet)
    devnet.mine(10)
    devnet.mint(usdc, quiet, 500)
    devnet.send_eth(outsider_key, new_address(), 10**15)  # native activity, but not ours
    devnet.mine(7)
    moved_tx = devnet.send_eth(mover, new_address(), 10**16)
    devnet.mine(12)
    devnet.mint(usdc, quiet, 5)
    devnet.mine(9)
    to = ref(devnet)
    rpc = HttpRpc(proxy.url)

    observed = native.scan_native(rpc, CHAIN, [mover.address, quiet], since, to, chunk_blocks=1000)

    moved_block = devnet.w3.eth.get_transaction_receipt(moved_tx)["blockNumber"]
    assert {o.block_number for o in observed} == {moved_block}
    assert {o.kind for o in observed} == {MovementKind.NATIVE, MovementKind.FEE}
    traced = [
        item["params"][0]
        for r in proxy.seen()
        for item in (r.payload if isinstance(r.payload, list) else [r.payload])
        if item.get("method") in TRACE_METHODS
    ]
    assert traced == [devnet.w3.eth.get_block(moved_block)["hash"].to_0x_hex()]  # one block, of ~40
    reads = methods(proxy).count("eth_getBalance")
    assert reads <= 2 * 2 + 2 * (to.number - since.number).bit_length()  # two ends, then one per level

    # A wallet whose balance and nonce did not change (and that emitted no log) is never traced.
    before = len(proxy.seen())
    assert native.scan_native(rpc, CHAIN, [quiet], since, to, chunk_blocks=1000) == []
    later = [m for r in proxy.seen()[before:] for m in r.methods]
    assert not TRACE_METHODS & set(later)
    assert later.count("eth_getBalance") == 2 and later.count("eth_getTransactionCount") == 2


def test_narrow_native_finds_every_block_where_balance_or_nonce_changed(devnet: Devnet, rpc: HttpRpc) -> None:
    wallet = devnet.new_account(10 * 10**18)
    lo = devnet.head()
    blocks = []
    for gap in (3, 1, 0, 9):
        devnet.mine(gap)
        tx = devnet.send_eth(wallet, new_address(), 1)
        blocks.append(devnet.w3.eth.get_transaction_receipt(tx)["blockNumber"])
    devnet.w3.eth.send_transaction({"from": devnet.deployer, "to": wallet.address, "value": 5})
    blocks.append(devnet.head())
    devnet.mine(4)

    assert native.narrow_native(rpc, wallet.address, lo, devnet.head(), chain=CHAIN) == blocks
    assert native.native_changed(rpc, [wallet.address, new_address()], lo, devnet.head()) == {wallet.address}


# ----------------------------------------------------------------------------- refused ranges


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (-32005, "query returned more than 10000 results"),
        (-32602, "block range is too large"),
        (-32000, "limit exceeded"),
        (-32600, "Log response size exceeded. You can make eth_getLogs requests with up to a 7 block range"),
    ],
)
def test_a_node_refusing_large_ranges_still_gives_the_whole_scan(
    devnet: Devnet, proxy: RpcProxy, usdc: Contract, code: int, message: str
) -> None:
    limit = 7
    wallets = [new_address(), new_address()]
    start = devnet.head() + 1
    for i in range(30):
        devnet.mint(usdc, wallets[i % 2], i + 1)
        if i % 4 == 0:
            as_holder(devnet, wallets[i % 2], usdc.functions.transfer(wallets[(i + 1) % 2], 1))
    end = devnet.head()
    direct = logs.scan_token_logs(HttpRpc(devnet.url), CHAIN, wallets, [usdc.address], start, end, chunk_blocks=64)

    def refuse_large(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        flt = request["params"][0]
        if int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > limit:
            return error_answer(code, message)(request, response)
        return response

    proxy.on("eth_getLogs", refuse_large)
    refused = logs.scan_token_logs(HttpRpc(proxy.url), CHAIN, wallets, [usdc.address], start, end, chunk_blocks=64)

    assert refused == direct and len(direct) == 30 + 8
    ranges = get_logs_ranges(proxy)
    answered = [(a, b) for a, b in ranges if b - a + 1 <= limit]
    assert len(ranges) > len(answered)  # some were refused and halved
    # The answered ranges of each query tile the whole range, without gap or overlap.
    per_query = len(answered) // 2
    assert per_query * 2 == len(answered)
    assert sum(b - a + 1 for a, b in answered) == 2 * (end - start + 1)
    # Halving learns the cap: a handful of refusals per query, not one per answered range.
    assert len(ranges) - len(answered) <= 2 * 4


def test_timeouts_halve_the_range(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    wallet = new_address()
    start = devnet.head() + 1
    for i in range(12):
        devnet.mint(usdc, wallet, i + 1)
    end = devnet.head()

    def slow_when_large(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        flt = request["params"][0]
        if int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > 4:
            time.sleep(2.5)
        return response

    proxy.on("eth_getLogs", slow_when_large)
    observed = logs.scan_token_logs(HttpRpc(proxy.url, timeout=1.0), CHAIN, [wallet], None, start, end, chunk_blocks=16)
    assert [o.amount for o in observed] == list(range(1, 13))
    assert any(b - a + 1 > 4 for a, b in get_logs_ranges(proxy))  # asked, timed out, halved


def test_a_single_block_still_refused_raises(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    devnet.mint(usdc, new_address(), 1)
    proxy.on("eth_getLogs", error_answer(-32005, "query returned more than 10000 results"))
    with pytest.raises(scan.RangeRefused, match=f"chain {CHAIN} block") as caught:
        logs.scan_token_logs(HttpRpc(proxy.url), CHAIN, [new_address()], None, 1, devnet.head(), chunk_blocks=8)
    assert caught.value.from_block == caught.value.to_block


# ----------------------------------------------------------------------------- pruned history


@pytest.mark.parametrize(
    ("code", "message"),
    [(4444, "pruned history unavailable"), (-32000, "header not found"), (-32000, "missing trie node 1a2b")],
)
def test_pruned_history_is_an_error_never_an_empty_range(
    devnet: Devnet, proxy: RpcProxy, usdc: Contract, code: int, message: str
) -> None:
    wallet = new_address()
    devnet.mint(usdc, wallet, 1)
    end = devnet.head()
    proxy.on("eth_getLogs", error_answer(code, message))
    with pytest.raises(scan.HistoryUnavailable, match="archive node") as caught:
        logs.scan_token_logs(HttpRpc(proxy.url), CHAIN, [wallet], [usdc.address], 1, end, chunk_blocks=1000)
    assert caught.value.chain == CHAIN and caught.value.from_block == 1

    proxy.reset()
    proxy.on("eth_getBalance", error_answer(code, message))
    with pytest.raises(scan.HistoryUnavailable):
        native.scan_native(HttpRpc(proxy.url), CHAIN, [wallet], 1, end, chunk_blocks=1000)


def test_a_node_with_pruned_state_raises_history_unavailable() -> None:
    """A real pruned node: Anvil --prune-history keeps the last few states only."""
    with AnvilNode.start(extra_args=["--prune-history", "4"]) as node:
        net = Devnet(node.url)
        wallet = net.new_account(10**18)
        net.send_eth(wallet, new_address(), 1)
        moved = net.head()
        net.mine(20)
        rpc = HttpRpc(node.url)
        with pytest.raises(scan.HistoryUnavailable, match="unread, not empty"):
            native.scan_native(rpc, CHAIN, [wallet.address], 1, net.head(), chunk_blocks=100)
        with pytest.raises(scan.HistoryUnavailable):
            native.trace_native(rpc, CHAIN, [wallet.address], [moved])
        # Recent blocks are still served.
        since = net.head()
        tx = net.send_eth(wallet, new_address(), 2)
        observed = native.scan_native(rpc, CHAIN, [wallet.address], since, net.head(), chunk_blocks=100)
        assert [(o.kind, o.tx_hash) for o in observed] == [(MovementKind.NATIVE, tx), (MovementKind.FEE, tx)]
        rpc.close()


# ----------------------------------------------------------------------------- reorgs


def test_a_reorg_during_the_scan_is_detected(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    wallet = new_address()
    start = devnet.head() + 1
    devnet.mint(usdc, wallet, 1)
    devnet.mint(usdc, wallet, 2)
    end = devnet.head()
    done: list[bool] = []

    def reorg_after_answering(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        if not done and response.get("result"):
            done.append(True)
            proxy.upstream("anvil_reorg", [2, []])  # both blocks get new hashes
        return response

    proxy.on("eth_getLogs", reorg_after_answering)
    with pytest.raises(scan.ScanReorged, match="reorganized"):
        logs.scan_token_logs(HttpRpc(proxy.url), CHAIN, [wallet], [usdc.address], start, end, chunk_blocks=100)
    assert done


def test_a_removed_log_is_a_reorg(devnet: Devnet, proxy: RpcProxy, usdc: Contract) -> None:
    wallet = new_address()
    devnet.mint(usdc, wallet, 1)

    def removed(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "result": [{**entry, "removed": True} for entry in response.get("result") or []]}

    proxy.on("eth_getLogs", removed)
    with pytest.raises(scan.ScanReorged):
        logs.scan_token_logs(HttpRpc(proxy.url), CHAIN, [wallet], None, 1, devnet.head(), chunk_blocks=100)


def test_a_pinned_block_replaced_during_the_scan_is_detected(devnet: Devnet, rpc: HttpRpc, usdc: Contract) -> None:
    wallet = devnet.new_account()
    since = ref(devnet)
    devnet.mint(usdc, wallet.address, 1)
    devnet.send_eth(wallet, new_address(), 1)
    pinned = ref(devnet)
    devnet.rpc("anvil_reorg", [1, []])
    assert ref(devnet, pinned.number).hash != pinned.hash

    with pytest.raises(scan.ScanReorged):
        logs.scan_token_logs(rpc, CHAIN, [wallet.address], None, since.number + 1, pinned, chunk_blocks=100)
    with pytest.raises(scan.ScanReorged):
        native.scan_native(rpc, CHAIN, [wallet.address], since, pinned, chunk_blocks=100)


def test_a_trace_of_another_branch_is_detected(devnet: Devnet, proxy: RpcProxy) -> None:
    wallet = devnet.new_account()
    since = ref(devnet)
    devnet.send_eth(wallet, new_address(), 1)

    def other_branch(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        result = json.loads(json.dumps(response["result"]))
        for item in result:
            item["txHash"] = "0x" + "ab" * 32
        return {**response, "result": result}

    proxy.on("debug_traceBlockByHash", other_branch)
    with pytest.raises(scan.ScanReorged):
        native.scan_native(HttpRpc(proxy.url), CHAIN, [wallet.address], since, devnet.head(), chunk_blocks=100)
