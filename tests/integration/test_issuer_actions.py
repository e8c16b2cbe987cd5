"""Issuer actions on a permissioned fund token, end to end: the real T-REX 4.1.6 suite from the
npm registry (identity registry, compliance, claims) on the real Anvil node, the command line,
and real ledgers (SQLite and PostgreSQL).

Each test asks how value could leave, or collateral be counted that cannot move, without the
right finding: a partial freeze, a wallet freeze and a pause; a forced transfer, one beyond the
free balance, a recovery, made by the issuer's agent (an EOA, or a contract: named either way);
a dividend mint and a forced transfer in; and thefts that must stay thefts — by the wallet's
own key, by a contract wallet's owners, and by a spender contract through transferFrom.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from chains.evm.devnet import AnvilNode, Devnet
from chains.evm.devnet_trex import (
    TrexSuite,
    add_management_key,
    add_token_agent,
    approve_as,
    deploy_trex,
    forced_transfer,
    freeze_partial,
    mint,
    pause,
    recovery_address,
    register_holder,
    set_address_frozen,
    token_contract,
    transfer_as,
    unfreeze_partial,
    unpause,
)
from reconciler.app.segregation_documents import statement_doc
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.stored import inputs_from_json
from reconciler.inputs.config import load_settings
from reconciler.ledger import segregation_store
from reconciler.ledger.store import Ledger
from tests.conftest import CliResult, Scenario
from tests.integration.helpers import ACCOUNTS_HEADER
from tests.integration.rpcproxy import RpcProxy

UNIT = 10**18
BOOKS_TX_HEADER = "entry_id,date,account,wallet,asset,amount,kind,memo,tx_hash"


@dataclass(frozen=True)
class World:
    """One T-REX suite for the module: ``seg`` is a custody EOA (the test holds its key), ``bob``
    a registered outside holder, ``thief`` a registered account that receives stolen tokens,
    ``vault`` a CustodyWallet contract (2 owners) registered as a holder; ``seg`` and ``vault``
    hold 1,000 tokens each."""

    net: Devnet
    trex: TrexSuite
    token: Contract
    seg: LocalAccount
    seg_identity: str
    bob: LocalAccount
    thief: LocalAccount
    vault: Contract
    vault_owners: tuple[LocalAccount, ...]


@pytest.fixture(scope="module")
def world(devnet_session: Devnet) -> Iterator[World]:
    net = devnet_session
    outer = net.snapshot()
    trex = deploy_trex(net, name="Tokenized Government MMF", symbol="TGMMF", decimals=18)
    seg, bob, thief = net.new_account(), net.new_account(), net.new_account()
    identity = register_holder(net, trex, seg.address)
    for holder in (bob, thief):
        register_holder(net, trex, holder.address)
    owners = (net.new_account(), net.new_account())
    vault = net.deploy_custody_wallet([o.address for o in owners], 2)
    register_holder(net, trex, vault.address)
    mint(net, trex, seg.address, 1_000 * UNIT)
    mint(net, trex, vault.address, 1_000 * UNIT)
    mint(net, trex, bob.address, 500 * UNIT)
    net.mine()
    yield World(net, trex, token_contract(net, trex), seg, identity, bob, thief, vault, owners)
    net.revert(outer)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    snap = world.net.snapshot()
    yield world
    world.net.revert(snap)


def kinds(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in doc["breaks"] if b["kind"] == kind]


class Desk:
    """The firm's configuration (the T-REX token as asset MMF, ``issuer_standard = "erc3643"``,
    custody wallets seg-1 and, optionally, the vault), books of 1,000 MMF each for customer C1,
    and a first run, clean, from which surveillance starts."""

    def __init__(self, cli: Any, w: World, scenario: Scenario, url: str | None = None, vault: bool = False) -> None:
        self.cli, self.w, self.scenario = cli, w, scenario
        scenario.add_chain("eth", url or w.net.url, 31337)
        scenario.add_token(
            "MMF",
            "eth",
            w.trex.token,
            18,
            kind="mmf",
            issuer_standard="erc3643",
            price_usd="1.00",
            dco_haircuts=["0.02"],
            government_fund=True,
        )
        scenario.add_wallet("seg-1", "eth", w.seg.address, "futures")
        if vault:
            scenario.add_wallet("vault-1", "eth", w.vault.address, "futures")
        scenario.extra = '\n[surveillance]\ninflow_grace = "0s"\n'
        self.config = scenario.write()
        scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,Customer One"])
        rows = ["E1,2026-11-24,C1,seg-1,MMF,1000,deposit,,"]
        if vault:
            rows.append("E2,2026-11-24,C1,vault-1,MMF,1000,deposit,,")
        books = scenario.write_csv("books.csv", BOOKS_TX_HEADER, rows)
        for args in (
            ("init",),
            ("accounts", "import", str(self.config.parent / "accounts.csv")),
            ("books", "import", str(books)),
        ):
            result = self.call(*args)
            assert result.code == 0, result.stderr
        self.entries = len(rows)
        code, doc = self.run()
        assert code == 0, doc["breaks"]

    def call(self, *args: str) -> CliResult:
        result: CliResult = self.cli("--config", str(self.config), *args)
        return result

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.call(*args, "--json")
        assert result.code in (0, 1), result.stderr
        doc: dict[str, Any] = json.loads(result.stdout)
        return result.code, doc

    def run(self) -> tuple[int, dict[str, Any]]:
        return self.json("run")

    def scan(self) -> tuple[int, dict[str, Any]]:
        return self.json("scan")

    def transfers(self) -> list[dict[str, Any]]:
        return self.json("transfers", "list")[1]["transfers"]

    def book(self, wallet: str, amount: str, kind: str, tx_hash: str) -> None:
        self.entries += 1
        path = self.scenario.write_csv(
            f"books-{self.entries}.csv",
            BOOKS_TX_HEADER,
            [f"E{self.entries},2026-11-25,C1,{wallet},MMF,{amount},{kind},,{tx_hash}"],
        )
        result = self.call("books", "import", str(path))
        assert result.code == 0, result.stderr


def moved(transfers: list[dict[str, Any]], tx_hash: str) -> list[tuple[str, str, str | None, str | None]]:
    """(wallet, direction, initiator, function) of each movement of ``tx_hash``."""
    return [(t["wallet"], t["direction"], t["initiator"], t["function"]) for t in transfers if t["tx_hash"] == tx_hash]


# ----------------------------------------------------------------------------- freezes and pauses


def test_a_partial_freeze_is_encumbered_collateral_with_the_exact_amount_until_lifted(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    frozen = 300 * UNIT + 1  # to the base unit
    freeze_partial(w.net, w.trex, w.seg.address, frozen)
    code, doc = desk.run()
    [enc] = kinds(doc, "collateral_encumbered")
    assert (enc["severity"], enc["wallet"], enc["asset"], enc["tx_hash"]) == ("warning", "seg-1", "MMF", None)
    assert (enc["amount"], enc["amount_display"]) == (str(frozen), "300.000000000000000001")
    assert "699.999999999999999999" in enc["detail"]  # what is still free to move
    assert kinds(doc, "asset_frozen") == [] and code == 0  # a warning: the balance still matches the books

    freeze_partial(w.net, w.trex, w.seg.address, UNIT)  # more frozen: the same break, its amount updated
    _, doc = desk.run()
    [again] = kinds(doc, "collateral_encumbered")
    assert (again["id"], again["amount"], again["times_seen"]) == (enc["id"], str(frozen + UNIT), 2)

    unfreeze_partial(w.net, w.trex, w.seg.address, frozen + UNIT)
    code, doc = desk.run()
    assert [(b["id"], b["status"]) for b in kinds(doc, "collateral_encumbered")] == [(enc["id"], "resolved")]
    assert code == 0


def test_a_paused_token_or_a_frozen_wallet_is_asset_frozen_critical_until_lifted(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    pause(w.net, w.trex)
    code, doc = desk.run()
    [paused] = kinds(doc, "asset_frozen")
    assert (paused["severity"], paused["wallet"], paused["asset"], code) == ("critical", "seg-1", "MMF", 1)
    assert "paused" in paused["detail"] and paused["amount"] == str(1_000 * UNIT)
    unpause(w.net, w.trex)
    _, doc = desk.run()
    assert [b["status"] for b in kinds(doc, "asset_frozen")] == ["resolved"]

    set_address_frozen(w.net, w.trex, w.seg.address, True)
    code, doc = desk.run()
    [frozen] = [b for b in kinds(doc, "asset_frozen") if b["status"] == "open"]
    assert (frozen["severity"], code) == ("critical", 1)
    assert f"isFrozen({w.seg.address}) is true" in frozen["detail"]
    set_address_frozen(w.net, w.trex, w.seg.address, False)
    code, doc = desk.run()
    assert [b["status"] for b in kinds(doc, "asset_frozen")] == ["resolved"] and code == 0


# ----------------------------------------------------------------------------- the issuer moves tokens out


def test_a_forced_transfer_out_is_an_issuer_forced_transfer_naming_the_agent_until_booked(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    tx = forced_transfer(w.net, w.trex, w.seg.address, w.bob.address, 250 * UNIT)

    code, scanned = desk.scan()
    assert code == 1
    [brk] = kinds(scanned, "issuer_forced_transfer")
    assert (brk["severity"], brk["wallet"], brk["asset"], brk["tx_hash"]) == ("critical", "seg-1", "MMF", tx)
    assert (brk["amount"], brk["amount_display"]) == (str(250 * UNIT), "250.000000000000000000")
    assert (
        w.trex.agent.address in brk["detail"] and "forcedTransfer" in brk["detail"] and w.bob.address in brk["detail"]
    )
    assert kinds(scanned, "unauthorized_transfer") == []
    assert [
        (t["wallet"], t["direction"], t["initiator"], t["function"], t["amount"]) for t in scanned["transfers"]
    ] == [("seg-1", "out", "issuer", "forcedTransfer", str(250 * UNIT))]
    assert moved(desk.transfers(), tx) == [("seg-1", "out", "issuer", "forcedTransfer")]
    table = desk.call("transfers", "list").stdout
    assert "issuer: forcedTransfer" in table, table

    code, doc = desk.run()  # judged once: the run sees the same break, and the balance short by 250
    assert code == 1
    [same] = kinds(doc, "issuer_forced_transfer")
    assert (same["id"], same["status"]) == (brk["id"], "open")
    assert kinds(doc, "unauthorized_transfer") == []

    desk.book("seg-1", "-250", "withdrawal", tx)  # the back office records the seizure
    code, doc = desk.run()
    assert [(b["id"], b["status"]) for b in kinds(doc, "issuer_forced_transfer")] == [(brk["id"], "resolved")]
    assert code == 0, [b for b in doc["breaks"] if b["status"] != "resolved"]


def test_a_forced_transfer_beyond_the_free_balance_unfreezes_first_and_is_still_the_issuers(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    freeze_partial(w.net, w.trex, w.seg.address, 300 * UNIT)
    tx = forced_transfer(w.net, w.trex, w.seg.address, w.bob.address, 900 * UNIT)  # TokensUnfrozen(200) first
    code, doc = desk.run()
    [brk] = kinds(doc, "issuer_forced_transfer")
    assert (brk["tx_hash"], brk["amount"], brk["severity"]) == (tx, str(900 * UNIT), "critical")
    assert kinds(doc, "unauthorized_transfer") == []
    [enc] = kinds(doc, "collateral_encumbered")  # 100 of the 300 stay frozen on the 100 left
    assert (enc["amount"], enc["severity"]) == (str(100 * UNIT), "warning")
    assert moved(desk.transfers(), tx) == [("seg-1", "out", "issuer", "forcedTransfer")]


def test_a_recovery_of_a_custody_wallet_is_an_issuer_forced_transfer(cli: Any, w: World, scenario: Scenario) -> None:
    desk = Desk(cli, w, scenario)
    new = w.net.new_account().address
    add_management_key(w.net, w.trex, w.seg_identity, new)
    tx = recovery_address(w.net, w.trex, w.seg.address, new, w.seg_identity)
    code, doc = desk.run()
    assert code == 1
    [brk] = kinds(doc, "issuer_forced_transfer")
    assert (brk["tx_hash"], brk["amount"]) == (tx, str(1_000 * UNIT))
    assert "recoveryAddress" in brk["detail"] and w.trex.agent.address in brk["detail"] and new in brk["detail"]
    assert kinds(doc, "unauthorized_transfer") == []
    assert moved(desk.transfers(), tx) == [("seg-1", "out", "issuer", "recoveryAddress")]


def test_an_agent_contract_is_named_with_the_transaction_sender(cli: Any, w: World, scenario: Scenario) -> None:
    """The agent can be a contract: the finding names the token's caller, not only tx.from."""
    desk = Desk(cli, w, scenario)
    signers = (w.net.new_account(), w.net.new_account())
    agent_contract = w.net.deploy_custody_wallet([s.address for s in signers], 2)
    add_token_agent(w.net, w.trex, agent_contract.address)
    data = Devnet.calldata(w.token, "forcedTransfer", w.seg.address, w.bob.address, 40 * UNIT)
    tx = w.net.exec_custody(agent_contract, signers, w.trex.token, data=data)  # sent by the node's first account
    _, doc = desk.run()
    [brk] = kinds(doc, "issuer_forced_transfer")
    assert brk["tx_hash"] == tx and brk["amount"] == str(40 * UNIT)
    assert agent_contract.address in brk["detail"] and w.net.deployer in brk["detail"]
    assert w.trex.agent.address not in brk["detail"]
    assert kinds(doc, "unauthorized_transfer") == []


# ----------------------------------------------------------------------------- thefts stay thefts


def test_a_theft_by_the_wallets_own_key_stays_an_unauthorized_transfer(cli: Any, w: World, scenario: Scenario) -> None:
    desk = Desk(cli, w, scenario)
    tx = transfer_as(w.net, w.trex, w.seg, w.thief.address, 600 * UNIT)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["tx_hash"], theft["amount"], theft["severity"]) == (tx, str(-600 * UNIT), "critical")
    assert kinds(doc, "issuer_forced_transfer") == []
    assert moved(desk.transfers(), tx) == [("seg-1", "out", "wallet", None)]

    desk.book("seg-1", "-600", "withdrawal", tx)  # booking a theft does not make it authorized
    _, doc = desk.run()
    assert [b["status"] for b in kinds(doc, "unauthorized_transfer")] == ["open"]


def test_a_theft_through_a_spender_contract_stays_an_unauthorized_transfer(
    cli: Any, w: World, scenario: Scenario
) -> None:
    """The wallet's key approves a contract the thief controls, which then calls transferFrom:
    the token's caller is not the wallet, and not an agent."""
    desk = Desk(cli, w, scenario)
    thieves = (w.net.new_account(), w.net.new_account())
    puller = w.net.deploy_custody_wallet([t.address for t in thieves], 1)
    approve_as(w.net, w.trex, w.seg, puller.address, 700 * UNIT)
    data = Devnet.calldata(w.token, "transferFrom", w.seg.address, w.thief.address, 700 * UNIT)
    tx = w.net.exec_custody(puller, thieves[:1], w.trex.token, data=data)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["tx_hash"], theft["amount"]) == (tx, str(-700 * UNIT))
    assert kinds(doc, "issuer_forced_transfer") == []
    assert [b["kind"] for b in doc["breaks"] if b["kind"] == "unapproved_allowance"]
    assert moved(desk.transfers(), tx) == [("seg-1", "out", "spender", None)]


def test_a_contract_wallets_own_transfer_is_the_wallets_and_a_forced_one_the_issuers(
    cli: Any, w: World, scenario: Scenario
) -> None:
    """The vault's owners execute a transfer (the transaction is sent by someone else): the
    token's caller is the vault itself. Then the agent forces tokens out of the vault."""
    desk = Desk(cli, w, scenario, vault=True)
    data = Devnet.calldata(w.token, "transfer", w.thief.address, 10 * UNIT)
    own = w.net.exec_custody(w.vault, w.vault_owners, w.trex.token, data=data)
    forced = forced_transfer(w.net, w.trex, w.vault.address, w.bob.address, 20 * UNIT)
    _, doc = desk.run()
    assert [(b["wallet"], b["tx_hash"]) for b in kinds(doc, "unauthorized_transfer")] == [("vault-1", own)]
    assert [(b["wallet"], b["tx_hash"]) for b in kinds(doc, "issuer_forced_transfer")] == [("vault-1", forced)]
    transfers = desk.transfers()
    assert moved(transfers, own) == [("vault-1", "out", "wallet", None)]
    assert moved(transfers, forced) == [("vault-1", "out", "issuer", "forcedTransfer")]


# ----------------------------------------------------------------------------- the issuer moves tokens in


def test_issuer_inflows_are_never_unexpected_but_a_holders_transfer_in_is(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    dividend = mint(w.net, w.trex, w.seg.address, 5 * UNIT)
    forced_in = forced_transfer(w.net, w.trex, w.bob.address, w.seg.address, 7 * UNIT)
    deposit = transfer_as(w.net, w.trex, w.bob, w.seg.address, 11 * UNIT)  # nobody booked it
    _, doc = desk.run()
    assert [b["tx_hash"] for b in kinds(doc, "unexpected_inflow")] == [deposit]
    assert kinds(doc, "issuer_forced_transfer") == []  # moved in, not out
    transfers = desk.transfers()
    assert moved(transfers, dividend) == [("seg-1", "in", "issuer", "mint")]
    assert moved(transfers, forced_in) == [("seg-1", "in", "issuer", "forcedTransfer")]
    assert moved(transfers, deposit) == [("seg-1", "in", "wallet", None)]  # bob moved his own tokens
    assert kinds(doc, "unexplained_balance_change") == []


# ----------------------------------------------------------------------------- a node that cannot trace


def _refuse_tracing(proxy: RpcProxy) -> None:
    def refuse(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32601, "message": "Method not found"}}

    proxy.on("debug_traceTransaction", refuse)


def test_without_tracing_the_top_level_call_and_the_tokens_events_still_tell_the_issuer(
    cli: Any, w: World, scenario: Scenario
) -> None:
    with RpcProxy(w.net.url) as proxy:
        _refuse_tracing(proxy)
        desk = Desk(cli, w, scenario, url=proxy.url)
        direct = forced_transfer(w.net, w.trex, w.seg.address, w.bob.address, 30 * UNIT)  # tx.to is the token
        theft = transfer_as(w.net, w.trex, w.seg, w.thief.address, 40 * UNIT)
        # Through an agent contract: the transaction's call is not the token's; within the free
        # balance nothing the receipt holds says who called the token: not claimed as the issuer's.
        signers = (w.net.new_account(), w.net.new_account())
        agent_contract = w.net.deploy_custody_wallet([s.address for s in signers], 2)
        add_token_agent(w.net, w.trex, agent_contract.address)
        data = Devnet.calldata(w.token, "forcedTransfer", w.seg.address, w.bob.address, 50 * UNIT)
        hidden = w.net.exec_custody(agent_contract, signers, w.trex.token, data=data)
        # Beyond the free balance, the token's TokensUnfrozen just before the Transfer does.
        freeze_partial(w.net, w.trex, w.seg.address, 870 * UNIT)
        data = Devnet.calldata(w.token, "forcedTransfer", w.seg.address, w.bob.address, 60 * UNIT)
        unfrozen = w.net.exec_custody(agent_contract, signers, w.trex.token, data=data)
        _, doc = desk.run()
        assert any("debug_traceTransaction" in r.methods for r in proxy.seen())
    issuer = {b["tx_hash"]: b for b in kinds(doc, "issuer_forced_transfer")}
    assert set(issuer) == {direct, unfrozen}
    assert w.trex.agent.address in issuer[direct]["detail"]
    assert "not known" in issuer[unfrozen]["detail"] and w.net.deployer in issuer[unfrozen]["detail"]
    assert {b["tx_hash"] for b in kinds(doc, "unauthorized_transfer")} == {theft, hidden}
    transfers = desk.transfers()
    assert moved(transfers, direct) == [("seg-1", "out", "issuer", "forcedTransfer")]
    assert moved(transfers, theft) == [("seg-1", "out", "wallet", None)]
    assert moved(transfers, hidden) == [("seg-1", "out", None, None)]
    assert moved(transfers, unfrozen) == [("seg-1", "out", "issuer", "forcedTransfer")]


# ----------------------------------------------------------------------------- segregation statements


def futures_holding(doc: dict[str, Any], wallet: str = "seg-1") -> tuple[dict[str, Any], dict[str, Any]]:
    [st] = [s for s in doc["statements"] if s["class"] == "futures"]
    [holding] = [h for h in st["holdings"] if h["wallet"] == wallet]
    return st, holding


def test_a_statement_values_only_the_free_part_to_the_cent_and_keeps_the_freezes_it_used(
    cli: Any, w: World, scenario: Scenario
) -> None:
    desk = Desk(cli, w, scenario)
    frozen = 333_333_333_333_333_333_333  # 333.333333333333333333 MMF
    freeze_partial(w.net, w.trex, w.seg.address, frozen)
    code, doc = desk.json("segregation", "statement")
    st, holding = futures_holding(doc)
    assert (holding["units"], holding["units_display"]) == (str(1_000 * UNIT), "1000.000000000000000000")
    assert (holding["encumbered"], holding["encumbered_display"]) == (str(frozen), "333.333333333333333333")
    # free 666.666666666666666667 at 1.00: 666.67; less 2%: 653.333333333333333333... -> 653.33
    assert (holding["market_value"], holding["haircut"], holding["value"]) == ("666.67", "0.02", "653.33")
    # C1 is owed its 1,000 MMF at market: 1,000.00; the deficit is what the freeze took away
    assert (st["amount_required"], st["funds_in_segregation"], st["excess"]) == ("1000.00", "653.33", "-346.67")
    assert st["total_market_value"] == "666.67" and code == 1
    partial_run = doc["run_id"]
    shown_to_people = desk.call("segregation", "statement").stdout
    assert "of which frozen" in shown_to_people, shown_to_people

    set_address_frozen(w.net, w.trex, w.seg.address, True)  # the whole position cannot move now
    _, doc = desk.json("segregation", "statement")
    st, holding = futures_holding(doc)
    assert (holding["units"], holding["encumbered"]) == (str(1_000 * UNIT), str(1_000 * UNIT))
    assert (holding["market_value"], holding["value"], st["funds_in_segregation"]) == ("0.00", "0.00", "0.00")
    set_address_frozen(w.net, w.trex, w.seg.address, False)
    pause(w.net, w.trex)
    _, doc = desk.json("segregation", "statement")
    assert futures_holding(doc)[1]["value"] == "0.00"

    # the stored statement recomputes to the cent from its stored inputs, freezes included
    ledger = Ledger(load_settings(str(desk.config)).database_url)
    try:
        stored = segregation_store.get_statement(ledger, partial_run)
    finally:
        ledger.close()
    assert stored.inputs["holds"] == [["seg-1", "MMF", str(frozen), False, False, ""]]
    again = [statement_doc(s) for s in compute_statements(inputs_from_json(stored.inputs))]
    assert again == [s.document for s in stored.statements]
    shown = desk.json("runs", "show", partial_run)[1]
    assert futures_holding(shown)[1]["encumbered"] == str(frozen)


def test_config_check_online_asks_each_erc3643_token_its_views(cli: Any, w: World, scenario: Scenario) -> None:
    desk = Desk(cli, w, scenario)
    ok = desk.call("config", "check", "--online", "--json")
    assert ok.code == 0, ok.stderr
    [token] = json.loads(ok.stdout)["chains"]["eth"]["tokens"]
    assert (token["asset"], token["issuer_standard"], token["erc3643_views"]) == ("MMF", "erc3643", True)

    plain = w.net.deploy_token("Plain USD", "PUSD", 6)  # isFrozen and paused, but no getFrozenTokens
    scenario.add_token("PUSD", "eth", plain.address, 6, issuer_standard="erc3643", price_usd="1.00")
    scenario.write()
    bad = desk.call("config", "check", "--online", "--json")
    assert bad.code == 2
    error = json.loads(bad.stdout)["chains"]["eth"]["error"]
    assert f"assets.PUSD ({plain.address})" in error and "getFrozenTokens(" in error
    assert "assets.MMF" not in error


# ----------------------------------------------------------------------------- the pilot's weekly report

MONDAY_W47 = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp())
FRIDAY_CLOSE_W47 = int(datetime(2026, 11, 20, 23, 0, tzinfo=UTC).timestamp())  # 17:00 in Chicago


def test_the_pilot_report_shows_the_encumbered_units_beside_the_held_ones(cli: Any, scenario: Scenario) -> None:
    with AnvilNode.start(chain_id=31337, extra_args=["--timestamp", str(MONDAY_W47)]) as node:
        net = Devnet(node.url)
        net.install_multicall3()
        trex = deploy_trex(net, name="Tokenized MMF", symbol="TMMF", decimals=18)
        seg = net.new_account()
        register_holder(net, trex, seg.address)
        mint(net, trex, seg.address, 1_000 * UNIT)
        freeze_partial(net, trex, seg.address, 250 * UNIT)
        net.rpc("evm_setNextBlockTimestamp", [FRIDAY_CLOSE_W47 + 1])
        unfreeze_partial(net, trex, seg.address, 250 * UNIT)  # after the close: not in the report
        scenario.add_chain("eth", node.url, 31337)
        scenario.add_token("MMF", "eth", trex.token, 18, kind="mmf", issuer_standard="erc3643", price_usd="1.02")
        scenario.add_wallet("seg-1", "eth", seg.address, "futures")
        scenario.extra = '\n[segregation]\ntimezone = "America/Chicago"\n'
        config = scenario.write()
        result = cli("--config", str(config), "report", "pilot", "--week", "2026-W47", "--json")
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rows"] == [
        {
            "class": "futures",
            "asset": "MMF",
            "units": str(1_000 * UNIT),
            "units_display": "1000.000000000000000000",
            "encumbered_units": str(250 * UNIT),
            "encumbered_units_display": "250.000000000000000000",
            "market_value_usd": "1020.00",  # what is held, at market: the report says what is held
        }
    ]
