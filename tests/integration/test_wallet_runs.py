"""Wallet takeover and issuer controls through `run`, `wallets baseline` and `wallets show`,
against real contracts on a real Anvil (our Safe-layout custody wallet and a real Safe 1.3.0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json

ETH = 10**18


def _kinds(doc: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """The state breaks (no tx hash): what the pinned configuration shows."""
    return {(b["kind"], b["wallet"], b["asset"]): b for b in doc["breaks"] if b["tx_hash"] is None}


def _executions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The execution breaks, by the transaction they name."""
    return {b["tx_hash"]: b for b in doc["breaks"] if b["kind"] == "wallet_config_change" and b["tx_hash"]}


@pytest.fixture
def owners(devnet: Devnet) -> list[LocalAccount]:
    return sorted((devnet.new_account() for _ in range(3)), key=lambda a: int(a.address, 16))


def _custody_with(cli: Any, devnet: Devnet, scenario: Scenario, wallet: Contract) -> Path:
    """The usual custody scenario plus ``wallet`` (a multisig, "vault") holding 5 ETH, booked
    and loaded into an initialized ledger. Returns the config file."""
    custody = make_custody(devnet, scenario, devnet.url)
    devnet.set_native_balance(wallet.address, 5 * ETH)
    devnet.mine()
    scenario.add_wallet("vault", "eth", wallet.address, "futures")
    config = scenario.write()
    load(cli, config)
    books = custody.book([("vault", "ETH", "5", "deposit")], name="vault-books.csv")
    imported = cli("--config", str(config), "books", "import", str(books))
    assert imported.code == 0, imported.stderr
    return config


@pytest.mark.parametrize("kind", ["custody", "safe-1.3.0"])
def test_a_takeover_by_delegatecall_is_critical_and_rebaselining_resolves_it(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount], kind: str
) -> None:
    if kind == "custody":
        wallet = devnet.deploy_custody_wallet([o.address for o in owners], 2)
        execute = devnet.exec_custody
    else:
        wallet = devnet.deploy_safe_130([o.address for o in owners], 2)
        execute = devnet.exec_safe
    config = _custody_with(cli, devnet, scenario, wallet)

    baselined = cli("--config", str(config), "wallets", "baseline", "--json")
    assert baselined.code == 0, baselined.stderr
    recorded = {w["wallet"]: w for w in json.loads(baselined.stdout)["wallets"]}
    assert recorded["vault"]["kind"] == "safe" and recorded["vault"]["threshold"] == 2
    assert recorded["vault"]["owners"] == [o.address for o in owners]
    assert recorded["seg-1"]["kind"] == "eoa"
    code, doc, _ = run_json(cli, config)
    assert code == 0, doc["breaks"]

    attacker = devnet.new_account()
    writer = devnet.deploy("SlotWriter")
    evil = devnet.deploy("MaliciousSingleton", attacker.address)
    takeover = execute(
        wallet, owners[:2], writer.address, data=Devnet.calldata(writer, "takeover", evil.address), operation=1
    )
    before = recorded["vault"]["singleton"]

    code, doc, _ = run_json(cli, config)
    assert code == 1 and doc["status"] == "complete"
    # The execution itself: a DELEGATECALL to foreign code that rewrote slot 0, naming the tx.
    execution = _executions(doc)[takeover]
    assert execution["severity"] == "critical" and execution["wallet"] == "vault"
    assert writer.address in execution["detail"] and "singleton (slot 0)" in execution["detail"]
    brk = _kinds(doc)[("wallet_config_change", "vault", None)]
    assert brk["severity"] == "critical" and brk["status"] == "open"
    assert f"singleton: {before} -> {evil.address}" in brk["detail"]
    assert "getThreshold() reverts" in brk["detail"]
    # the wallet's balances are still read and reconciled
    [eth] = [p for p in doc["positions"] if (p["wallet"], p["asset"]) == ("vault", "ETH")]
    assert eth["onchain"] == str(5 * ETH) and eth["difference"] == "0"

    shown = cli("--config", str(config), "wallets", "show", "--wallet", "vault", "--json")
    assert shown.code == 1, shown.stderr
    [vault] = json.loads(shown.stdout)["wallets"]
    assert vault["singleton"] == evil.address and vault["baseline"]["singleton"] == before
    assert vault["baseline_reviewed"] is True
    assert {c["field"] for c in vault["changes"]} == {"singleton", "problems"}

    # After review the change is accepted as the new baseline; the next run resolves the state
    # break. The execution stays on record until a person resolves it: it happened.
    assert cli("--config", str(config), "wallets", "baseline", "--wallet", "vault").code == 0
    code, doc, _ = run_json(cli, config)
    assert code == 1
    assert _kinds(doc)[("wallet_config_change", "vault", None)]["status"] == "resolved"
    assert _executions(doc)[takeover]["status"] == "open"
    note = "reviewed: approved upgrade"
    resolved = cli("--config", str(config), "breaks", "resolve", execution["id"], "--note", note)
    assert resolved.code == 0, resolved.stderr
    code, doc, _ = run_json(cli, config)
    assert code == 0, doc["breaks"]


def test_without_a_reviewed_baseline_the_first_run_records_one_and_later_changes_are_found(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount]
) -> None:
    wallet = devnet.deploy_custody_wallet([o.address for o in owners], 2)
    config = _custody_with(cli, devnet, scenario, wallet)
    code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["breaks"] == []
    shown = json.loads(cli("--config", str(config), "wallets", "show", "--json").stdout)
    vault = next(w for w in shown["wallets"] if w["wallet"] == "vault")
    assert vault["baseline_reviewed"] is False and vault["changes"] == []

    newcomer = devnet.new_account()
    devnet.exec_custody(
        wallet, owners[:2], wallet.address,
        data=Devnet.calldata(wallet, "swapOwner", owners[1].address, owners[2].address, newcomer.address),
    )
    devnet.exec_custody(wallet, owners[:2], wallet.address, data=Devnet.calldata(wallet, "changeThreshold", 1))
    code, doc, _ = run_json(cli, config)
    assert code == 1
    detail = _kinds(doc)[("wallet_config_change", "vault", None)]["detail"]
    assert "owners:" in detail and newcomer.address in detail and "threshold: 2 -> 1" in detail


def test_an_approver_with_an_eip7702_delegation_is_an_error(
    cli: Any, devnet: Devnet, scenario: Scenario, owners: list[LocalAccount]
) -> None:
    make_custody(devnet, scenario, devnet.url)
    approver = devnet.new_account()
    scenario.wallets["seg-1"]["approvers"] = [approver.address]
    scenario.wallets["seg-1"]["threshold"] = 1
    config = scenario.write()
    load(cli, config)
    code, _, _ = run_json(cli, config)
    assert code == 0
    target = devnet.deploy("SlotWriter")
    devnet.delegate_eoa(approver, target.address)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    brk = _kinds(doc)[("wallet_config_change", "seg-1", None)]
    assert brk["severity"] == "error" and approver.address in brk["detail"] and "EIP-7702" in brk["detail"]


def test_a_frozen_wallet_and_a_paused_token_are_asset_frozen_until_lifted(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.assets["USDC"]["freeze_check"] = "isFrozen"
    scenario.assets["TMMF"]["pause_check"] = True
    config = scenario.write()
    load(cli, config)
    code, _, _ = run_json(cli, config)
    assert code == 0
    seg = custody.wallets["seg-1"]
    issuer = {"from": devnet.deployer}

    devnet._wait(custody.usdc.functions.freeze(seg).transact(issuer))
    devnet._wait(custody.tmmf.functions.pause().transact(issuer))
    code, doc, _ = run_json(cli, config)
    assert code == 1
    found = _kinds(doc)
    frozen = found[("asset_frozen", "seg-1", "USDC")]
    assert frozen["severity"] == "error" and "isFrozen" in frozen["detail"] and frozen["amount"] == "1000000500000"
    paused = found[("asset_frozen", "seg-1", "TMMF")]
    assert paused["severity"] == "error" and "paused" in paused["detail"]
    assert ("asset_frozen", "house-1", "TMMF") not in found, "a wallet holding none of a paused token is not stuck"

    devnet._wait(custody.usdc.functions.unfreeze(seg).transact(issuer))
    devnet._wait(custody.tmmf.functions.unpause().transact(issuer))
    code, doc, _ = run_json(cli, config)
    assert code == 0
    assert {b["status"] for b in doc["breaks"]} == {"resolved"} and len(doc["breaks"]) == 2
