"""Five ways to take a custody wallet over or move value out between two pinned blocks, each
done end to end on a real Anvil with the real Safe 1.3.0 and replayed through the CLI: every one
must give a critical break naming the transaction, and exit 1 (SQLite and PostgreSQL).

1. a transient singleton swap: owners sign a DELEGATECALL that rewrites slot 0; in one later
   block an unbooked deposit arrives and the rogue singleton drains it with no event; slot 0 is
   written back — both pins read the original singleton;
2. an EOA custody wallet's EIP-7702 round trip: a relayed authorization delegates it to a
   drainer, a same-block deposit and drain, a second authorization clears it;
3. hidden mapping entries: a DELEGATECALL writes owners[y] and modules[x] without linking them;
4. a priority-fee drain: a 0-value transaction paying 10 ETH to a colluding block producer;
5. a beacon proxy upgraded through its beacon.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from chains.evm.devnet import ZERO_ADDRESS, Devnet, artifact
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json
from tests.integration.rpcproxy import RpcProxy

ETH = 10**18


def _breaks(doc: dict[str, Any], kind: str, tx_hash: str) -> dict[str, Any]:
    found = [b for b in doc["breaks"] if b["kind"] == kind and b["tx_hash"] == tx_hash]
    assert len(found) == 1, [(b["kind"], b["tx_hash"], b["detail"][:120]) for b in doc["breaks"]]
    return found[0]


def _setup(cli: Any, devnet: Devnet, scenario: Scenario, wallet: str, eth: int, **chain_kw: Any) -> Path:
    """The usual custody scenario plus ``wallet`` ("vault", futures) holding ``eth`` wei,
    booked, loaded, baselined, and one clean run. Returns the config file."""
    return _setup_via(cli, devnet, scenario, wallet, eth, devnet.url, **chain_kw)


def _setup_via(
    cli: Any, devnet: Devnet, scenario: Scenario, wallet: str, eth: int, url: str, **chain_kw: Any
) -> Path:
    custody = make_custody(devnet, scenario, url, **chain_kw)
    devnet.set_native_balance(wallet, eth)
    devnet.mine()
    scenario.add_wallet("vault", "eth", wallet, "futures")
    config = scenario.write()
    load(cli, config)
    books = custody.book([("vault", "ETH", str(eth // ETH), "deposit")], name="vault-books.csv")
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    baselined = cli("--config", str(config), "wallets", "baseline")
    assert baselined.code == 0, baselined.stderr
    code, doc, _ = run_json(cli, config)
    assert code == 0, doc["breaks"]
    return config


def _signed(net: Devnet, account: LocalAccount, to: str, value: int, data: bytes, nonce: int, **extra: Any) -> bytes:
    base_fee = int(net.w3.eth.get_block("latest")["baseFeePerGas"])
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": net.w3.eth.chain_id,
        "nonce": nonce,
        "to": to,
        "value": value,
        "data": data,
        "gas": 300_000,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "maxPriorityFeePerGas": 10**9,
        **extra,
    }
    return bytes(account.sign_transaction(tx).raw_transaction)


def _one_block(net: Devnet, raws: list[bytes]) -> list[str]:
    """Send signed transactions and mine them together in one block."""
    net.rpc("evm_setAutomine", [False])
    try:
        hashes = ["0x" + bytes(net.w3.eth.send_raw_transaction(raw)).hex() for raw in raws]
        net.mine()
    finally:
        net.rpc("evm_setAutomine", [True])
    receipts = [net.w3.eth.get_transaction_receipt(h) for h in hashes]  # type: ignore[arg-type]
    assert all(r["status"] == 1 for r in receipts) and len({r["blockNumber"] for r in receipts}) == 1
    return hashes


@pytest.fixture
def owners(devnet: Devnet) -> list[LocalAccount]:
    return sorted((devnet.new_account() for _ in range(3)), key=lambda a: int(a.address, 16))


def test_a_transient_singleton_swap_with_a_same_block_deposit_and_drain(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount]
) -> None:
    safe = devnet.deploy_safe_130([o.address for o in owners], 2)
    config = _setup(cli, devnet, scenario, safe.address, 5 * ETH)
    singleton = devnet.w3.to_checksum_address(bytes(devnet.w3.eth.get_storage_at(safe.address, 0))[12:])
    attacker, depositor = devnet.new_account(), devnet.new_account()
    writer = devnet.deploy("SlotWriter")
    rogue = devnet.deploy("TransientSingleton", attacker.address)

    swap = devnet.exec_safe(
        safe, owners[:2], writer.address, data=Devnet.calldata(writer, "takeover", rogue.address), operation=1
    )
    as_rogue = devnet.w3.eth.contract(address=safe.address, abi=rogue.abi)
    deposit, drain = _one_block(
        devnet,
        [
            _signed(
                devnet, depositor, safe.address, 3 * ETH, b"", devnet.w3.eth.get_transaction_count(depositor.address)
            ),
            _signed(
                devnet,
                attacker,
                safe.address,
                0,
                Devnet.calldata(as_rogue, "drain", attacker.address, 3 * ETH),
                devnet.w3.eth.get_transaction_count(attacker.address),
            ),
        ],
    )
    restore = devnet.send_eth(attacker, safe.address, 0, Devnet.calldata(as_rogue, "restore", singleton))
    assert safe.functions.getOwners().call() == [o.address for o in owners]  # itself again
    assert devnet.w3.eth.get_balance(safe.address) == 5 * ETH  # and no net change

    code, doc, _ = run_json(cli, config)
    assert code == 1 and doc["status"] == "complete"
    swapped = _breaks(doc, "wallet_config_change", swap)
    assert swapped["severity"] == "critical" and writer.address in swapped["detail"]
    assert "singleton (slot 0)" in swapped["detail"] and rogue.address in swapped["detail"]
    drained = _breaks(doc, "wallet_config_change", drain)
    assert drained["severity"] == "critical" and rogue.address in drained["detail"]
    restored = _breaks(doc, "wallet_config_change", restore)
    assert f"{rogue.address} -> {singleton}" in restored["detail"]
    stolen = _breaks(doc, "unauthorized_transfer", drain)
    assert stolen["severity"] == "critical" and stolen["amount"] == str(-3 * ETH)
    assert any(b["kind"] == "wallet_config_change" and b["tx_hash"] == deposit for b in doc["breaks"])
    assert doc["chains"]["eth"]["scan"]["executions"] >= 4
    assert "unchecked" not in doc["chains"]["eth"]["scan"]  # Anvil serves trace_filter and the tracers


def test_an_eoa_wallets_7702_round_trip_is_found_by_its_authorizations(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    wallet = devnet.new_account(10 * ETH)
    config = _setup(cli, devnet, scenario, wallet.address, 10 * ETH)
    relayer, attacker, depositor = devnet.new_account(), devnet.new_account(), devnet.new_account()
    drainer = devnet.deploy("TransientSingleton", attacker.address)
    chain_id = devnet.w3.eth.chain_id

    def relay(delegate: str) -> str:
        nonce = devnet.w3.eth.get_transaction_count(wallet.address)
        auth = Account.sign_authorization({"chainId": chain_id, "address": delegate, "nonce": nonce}, wallet.key)
        raw = _signed(
            devnet,
            relayer,
            relayer.address,
            0,
            b"",
            devnet.w3.eth.get_transaction_count(relayer.address),
            type=4,
            accessList=[],
            authorizationList=[auth],
        )
        [tx] = _one_block(devnet, [raw])
        return tx

    delegate_tx = relay(drainer.address)
    as_drainer = devnet.w3.eth.contract(address=wallet.address, abi=drainer.abi)
    _one_block(
        devnet,
        [
            _signed(
                devnet, depositor, wallet.address, 2 * ETH, b"", devnet.w3.eth.get_transaction_count(depositor.address)
            ),
            _signed(
                devnet,
                attacker,
                wallet.address,
                0,
                Devnet.calldata(as_drainer, "drain", attacker.address, 2 * ETH),
                devnet.w3.eth.get_transaction_count(attacker.address),
            ),
        ],
    )
    clear_tx = relay(ZERO_ADDRESS)
    assert bytes(devnet.w3.eth.get_code(wallet.address)) == b""  # both pins see a plain EOA

    code, doc, _ = run_json(cli, config)
    assert code == 1
    for tx in (delegate_tx, clear_tx):
        found = _breaks(doc, "wallet_config_change", tx)
        assert found["severity"] == "critical" and "EIP-7702" in found["detail"]
    assert drainer.address in _breaks(doc, "wallet_config_change", delegate_tx)["detail"]


def test_hidden_owner_and_module_written_straight_into_the_mappings(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount]
) -> None:
    safe = devnet.deploy_safe_130([o.address for o in owners], 2)
    config = _setup(cli, devnet, scenario, safe.address, 5 * ETH)
    writer = devnet.deploy("MappingWriter")
    hidden_owner, hidden_module = Account.create().address, Account.create().address
    hide = devnet.exec_safe(
        safe, owners[:2], writer.address, data=Devnet.calldata(writer, "hide", hidden_owner, hidden_module), operation=1
    )
    assert safe.functions.isOwner(hidden_owner).call() and safe.functions.isModuleEnabled(hidden_module).call()

    code, doc, _ = run_json(cli, config)
    assert code == 1
    found = _breaks(doc, "wallet_config_change", hide)
    assert found["severity"] == "critical"
    assert f"owners[{hidden_owner}]" in found["detail"] and f"modules[{hidden_module}]" in found["detail"]

    # From then on every pin reads those entries: the hidden owner and module are part of the
    # wallet's configuration, shown by `wallets show` and compared with the baseline.
    shown = cli("--config", str(config), "wallets", "show", "--wallet", "vault", "--json")
    assert shown.code == 1, shown.stderr
    [vault] = json.loads(shown.stdout)["wallets"]
    assert vault["hidden_owners"] == [hidden_owner] and vault["hidden_modules"] == [hidden_module]
    assert {c["field"] for c in vault["changes"]} == {"hidden_owners", "hidden_modules"}
    code, doc, _ = run_json(cli, config)
    state = [b for b in doc["breaks"] if b["kind"] == "wallet_config_change" and b["tx_hash"] is None]
    assert code == 1 and len(state) == 1 and hidden_owner in state[0]["detail"]


def test_a_priority_fee_paid_to_a_colluding_producer_is_an_unauthorized_transfer(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    wallet = devnet.new_account(20 * ETH)
    config = _setup(cli, devnet, scenario, wallet.address, 20 * ETH)
    producer = Account.create().address
    devnet.rpc("anvil_setCoinbase", [producer])
    base_fee = int(devnet.w3.eth.get_block("latest")["baseFeePerGas"])
    tip = 10 * ETH // 21_000 + 1
    raw = _signed(
        devnet,
        wallet,
        Account.create().address,
        0,
        b"",
        devnet.w3.eth.get_transaction_count(wallet.address),
        gas=21_000,
        maxFeePerGas=2 * base_fee + tip,
        maxPriorityFeePerGas=tip,
    )
    [tx] = _one_block(devnet, [raw])
    receipt = devnet.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert fee > 10 * ETH

    result = cli("--config", str(config), "scan", "--json")
    assert result.code == 1, result.stderr
    doc = json.loads(result.stdout)
    found = _breaks(doc, "unauthorized_transfer", tx)
    assert found["severity"] == "critical" and found["amount"] == str(fee) and found["asset"] == "ETH"
    assert producer in found["detail"]
    # A fee at or below the ceiling stays a fee: the wallet's next ordinary transaction is clean.
    devnet.send_eth(wallet, Account.create().address, 0)
    again = cli("--config", str(config), "scan", "--json")
    assert [
        b for b in json.loads(again.stdout)["breaks"] if b["first_run_id"] == json.loads(again.stdout)["run_id"]
    ] == []


def test_a_beacon_proxy_upgraded_through_its_beacon(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount]
) -> None:
    implementation = devnet.deploy("CustodyWallet")
    beacon_owner = devnet.new_account()
    beacon = devnet.deploy("WalletBeacon", implementation.address, beacon_owner.address)
    setup = devnet.w3.eth.contract(abi=artifact("CustodyWallet")["abi"]).encode_abi(
        "setup", [[o.address for o in owners], 2, ZERO_ADDRESS]
    )
    proxy: Contract = devnet.deploy("BeaconWalletProxy", beacon.address, setup)
    config = _setup(cli, devnet, scenario, proxy.address, 5 * ETH)
    shown = json.loads(cli("--config", str(config), "wallets", "show", "--json").stdout)
    [vault] = [w for w in shown["wallets"] if w["wallet"] == "vault"]
    assert vault["beacon"] == beacon.address and vault["beacon_implementation"] == implementation.address

    rogue = devnet.deploy("TransientSingleton", beacon_owner.address)
    devnet.send_eth(beacon_owner, beacon.address, 0, Devnet.calldata(beacon, "upgradeTo", rogue.address))

    code, doc, _ = run_json(cli, config)
    assert code == 1
    [found] = [b for b in doc["breaks"] if b["kind"] == "wallet_config_change" and b["wallet"] == "vault"]
    assert found["severity"] == "critical"
    assert f"beacon_implementation: {implementation.address} -> {rogue.address}" in found["detail"]


@pytest.mark.parametrize("refused", ["trace_filter", "debug_traceTransaction"])
def test_a_node_without_a_tracing_method_says_what_was_not_checked(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount], refused: str
) -> None:
    """Without trace_filter the takeover's own transaction is still found (its Safe event);
    without debug_traceTransaction nothing is judged — and each run says which."""
    with RpcProxy(devnet.url) as proxy:
        proxy.on(
            refused,
            lambda request, response: {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {"code": -32601, "message": f"the method {refused} does not exist/is not available"},
            },
        )
        safe = devnet.deploy_safe_130([o.address for o in owners], 2)
        scenario_chain_url = proxy.url
        custody_config = _setup_via(cli, devnet, scenario, safe.address, 5 * ETH, scenario_chain_url)
        writer = devnet.deploy("SlotWriter")
        rogue = devnet.deploy("TransientSingleton", Account.create().address)
        swap = devnet.exec_safe(
            safe, owners[:2], writer.address, data=Devnet.calldata(writer, "takeover", rogue.address), operation=1
        )
        code, doc, _ = run_json(cli, custody_config)
        shown = cli("--config", str(custody_config), "runs", "show", doc["run_id"])
    unchecked = doc["chains"]["eth"]["scan"]["unchecked"]
    assert len(unchecked) == 1 and refused in unchecked[0]
    assert f"not checked: {refused}" in shown.stdout
    assert code == 1  # the pin still shows the swapped singleton
    executions = [b for b in doc["breaks"] if b["kind"] == "wallet_config_change" and b["tx_hash"] == swap]
    assert len(executions) == (1 if refused == "trace_filter" else 0)
