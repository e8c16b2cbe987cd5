"""Transfer surveillance end to end: real Anvil, real ledgers, the CLI. Every movement of a
custody wallet is observed, kept as evidence, explained and matched to a signed instruction —
or raised as a break."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from eth_account.signers.local import LocalAccount

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import Custody, instruction_line, load, make_custody, run_json, sign_instructions
from tests.integration.rpcproxy import RpcProxy

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
ETH = 10**18


def kinds(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in doc["breaks"] if b["kind"] == kind]


class Desk:
    """A custody setup whose seg-1 is an EOA the test holds the key of, with three approvers
    (2 of 3), already reconciled once so that surveillance starts at that pin."""

    def __init__(self, cli: Any, devnet: Devnet, scenario: Scenario, **chain_kw: Any) -> None:
        self.cli, self.net, self.scenario = cli, devnet, scenario
        self.approvers: list[LocalAccount] = [devnet.new_account() for _ in range(3)]
        self.key: LocalAccount = devnet.new_account(10 * ETH)
        self.custody: Custody = make_custody(devnet, scenario, chain_kw.pop("url", devnet.url), **chain_kw)
        scenario.wallets["seg-1"]["address"] = self.key.address
        scenario.wallets["seg-1"]["approvers"] = [a.address for a in self.approvers]
        scenario.wallets["seg-1"]["threshold"] = 2
        self.custody.wallets["seg-1"] = self.key.address
        devnet.mint(self.custody.usdc, self.key.address, 1_000_000_500_000)
        devnet.mint(self.custody.tmmf, self.key.address, 2_500 * 10**18)
        devnet.mine()
        self.config = scenario.write()
        load(cli, self.config)
        books = self.custody.book([("seg-1", "ETH", "10", "deposit")], name="eth-books.csv")
        assert cli("--config", str(self.config), "books", "import", str(books)).code == 0
        code, doc, _ = run_json(cli, self.config)
        assert code == 0, doc["breaks"]

    def run(self) -> tuple[int, dict[str, Any]]:
        code, doc, _ = run_json(self.cli, self.config)
        return code, doc

    def instruction(self, ident: str, to: str, amount: int, asset: str = "USDC", hours: int = 24) -> dict[str, Any]:
        return instruction_line(ident, "seg-1", to, amount, asset, hours)

    def sign(self, lines: list[dict[str, Any]], signers: list[LocalAccount], name: str = "instr.jsonl") -> Path:
        return sign_instructions(self.cli, self.config, self.scenario.folder / name, lines, signers)

    def import_(self, path: Path) -> Any:
        return self.cli("--config", str(self.config), "instructions", "import", str(path), "--json")

    def pay(self, to: str, amount: int) -> str:
        """seg-1 sends USDC with its own key (an ordinary transfer the wallet signs)."""
        data = self.net.calldata(self.custody.usdc, "transfer", to, amount)
        return self.net.send_eth(self.key, self.custody.usdc.address, 0, data)


@pytest.fixture
def desk(cli: Any, devnet: Devnet, scenario: Scenario) -> Desk:
    return Desk(cli, devnet, scenario)


def test_an_outflow_with_a_2_of_3_signed_instruction_is_authorized_and_consumes_it(desk: Desk) -> None:
    path = desk.sign([desk.instruction("wd-1", OUTSIDER, 250_000_000)], desk.approvers[:2])
    imported = desk.import_(path)
    assert imported.code == 0, imported.stderr
    tx = desk.pay(OUTSIDER, 250_000_000)
    receipt = desk.net.w3.eth.get_transaction_receipt(tx)
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    books = desk.custody.book(
        [("seg-1", "USDC", "-250", "withdrawal"), ("seg-1", "ETH", f"-0.{gas:018d}", "adjustment")], name="wd.csv"
    )
    assert desk.cli("--config", str(desk.config), "books", "import", str(books)).code == 0

    code, doc = desk.run()
    assert code == 0, doc["breaks"]
    assert doc["chains"]["eth"]["scan"]["observed"] >= 2  # the transfer and the gas fee
    listed = json.loads(desk.cli("--config", str(desk.config), "instructions", "list", "--json").stdout)
    [wd] = listed["instructions"]
    assert (wd["id"], wd["status"], wd["consumed_by"], wd["valid"]) == ("wd-1", "consumed", tx, True)
    transfers = json.loads(desk.cli("--config", str(desk.config), "transfers", "list", "--json").stdout)["transfers"]
    [out] = [t for t in transfers if t["direction"] == "out"]
    assert (out["tx_hash"], out["instruction_id"], out["amount"], out["amount_display"]) == (
        tx, "wd-1", "250000000", "250.000000"
    )
    assert out["wallet"] == "seg-1" and out["to"] == OUTSIDER and out["status"] == "observed"
    assert isinstance(out["log_index"], int) and out["block_hash"].startswith("0x")

    # The same instruction cannot authorize a second identical transfer.
    second = desk.pay(OUTSIDER, 250_000_000)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["tx_hash"], theft["severity"], theft["amount"]) == (second, "critical", "-250000000")
    assert "already consumed" in theft["detail"]


@pytest.mark.parametrize("case", ["one-of-two", "non-approver", "duplicate-signer"])
def test_instructions_short_of_valid_approver_signatures_are_refused_whole(desk: Desk, case: str) -> None:
    good = desk.instruction("wd-ok", OUTSIDER, 1)
    bad = desk.instruction("wd-bad", OUTSIDER, 2)
    stranger = desk.net.new_account()
    ok_path = desk.sign([good], desk.approvers[:2], "good.jsonl")
    signers = {
        "one-of-two": desk.approvers[:1],
        "non-approver": [desk.approvers[0], stranger],
        "duplicate-signer": desk.approvers[:1],
    }[case]
    if case == "non-approver":
        # sign refuses a key that is not an approver; forge the file as an attacker would
        path = desk.sign([bad], desk.approvers[:1], "bad.jsonl")
        line = json.loads(path.read_text())
        from reconciler.inputs.config import load_settings
        from reconciler.inputs.instructions import sign
        from reconciler.transfers import Instruction

        settings = load_settings(str(desk.config))
        instr = Instruction(
            "wd-bad", "eth", "seg-1", "USDC", OUTSIDER, 2, datetime.fromisoformat(line["valid_until"]), ()
        )
        line["signatures"].append(sign(instr, settings, bytes(stranger.key)))
        path.write_text(json.dumps(line) + "\n")
    else:
        path = desk.sign([bad], signers, "bad.jsonl")
        if case == "duplicate-signer":
            line = json.loads(path.read_text())
            line["signatures"] = line["signatures"] * 2
            path.write_text(json.dumps(line) + "\n")
    combined = desk.scenario.folder / "both.jsonl"
    combined.write_text(ok_path.read_text() + path.read_text())
    before = desk.cli("--config", str(desk.config), "instructions", "list", "--json").stdout
    result = desk.import_(combined)
    assert result.code == 2 and result.stdout == ""
    assert "line 2" in result.stderr and "nothing was imported" in result.stderr
    assert desk.cli("--config", str(desk.config), "instructions", "list", "--json").stdout == before


def test_an_expired_instruction_authorizes_nothing(desk: Desk) -> None:
    path = desk.sign([desk.instruction("wd-old", OUTSIDER, 5, hours=-1)], desk.approvers[1:])
    assert desk.import_(path).code == 0
    desk.pay(OUTSIDER, 5)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert "expired" in theft["detail"]


def test_a_row_written_into_the_database_without_signatures_authorizes_nothing(desk: Desk) -> None:
    path = desk.sign([desk.instruction("wd-real", OUTSIDER, 7)], desk.approvers[:2])
    assert desk.import_(path).code == 0
    engine = sqlalchemy.create_engine(desk.scenario.db_url)
    with engine.begin() as conn:
        # an insider forges an authorization for a different amount: no valid signatures
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO instruction (id, chain, wallet, asset, to_address, amount, valid_until, signatures, "
                "document, import_id) SELECT 'wd-forged', chain, wallet, asset, to_address, "
                + ("'9'" if engine.dialect.name == "sqlite" else "9")
                + ", valid_until, '[]', '', import_id FROM instruction WHERE id = 'wd-real'"
            )
        )
    engine.dispose()
    desk.pay(OUTSIDER, 9)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert theft["amount"] == "-9" and theft["severity"] == "critical"
    listed = json.loads(desk.cli("--config", str(desk.config), "instructions", "list", "--json").stdout)
    forged = next(i for i in listed["instructions"] if i["id"] == "wd-forged")
    assert forged["valid"] is False and forged["status"] == "open"


def test_tokens_leaving_by_signature_alone_are_observed_as_outflows(desk: Desk) -> None:
    """EIP-3009 submitted by a relayer, and permit then transferFrom by the spender: the wallet
    sends no transaction at all."""
    spender = desk.net.new_account()
    relayed = desk.net.transfer_with_authorization(desk.custody.usdc, desk.key, OUTSIDER, 11)
    desk.net.permit(desk.custody.usdc, desk.key, spender.address, 13)
    data = desk.net.calldata(desk.custody.usdc, "transferFrom", desk.key.address, OUTSIDER, 13)
    pulled = desk.net.send_eth(spender, desk.custody.usdc.address, 0, data)
    code, doc = desk.run()
    assert code == 1
    thefts = {b["tx_hash"]: b["amount"] for b in kinds(doc, "unauthorized_transfer")}
    assert thefts == {relayed: "-11", pulled: "-13"}
    allowances = kinds(doc, "unapproved_allowance")
    assert allowances and all(b["severity"] == "critical" for b in allowances)
    assert any(spender.address in b["detail"] for b in allowances)


def test_eth_sent_by_the_wallet_key_is_an_outflow_and_its_gas_a_fee(desk: Desk) -> None:
    tx = desk.net.send_eth(desk.key, OUTSIDER, ETH // 2)
    code, doc = desk.run()
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["tx_hash"], theft["asset"], theft["amount"]) == (tx, "ETH", str(-(ETH // 2)))
    assert kinds(doc, "unexplained_balance_change") == [], "the gas is explained as a fee"
    moves = json.loads(
        desk.cli("--config", str(desk.config), "transfers", "list", "--all", "--json").stdout
    )["transfers"]
    fee = [m for m in moves if m["direction"] == "fee"]
    assert len(fee) == 1 and int(fee[0]["amount"]) > 0 and fee[0]["tx_hash"] == tx


def test_a_contract_wallet_moving_eth_by_an_internal_call_is_observed(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    owners = sorted((devnet.new_account() for _ in range(3)), key=lambda a: int(a.address, 16))
    wallet = devnet.deploy_custody_wallet([o.address for o in owners], 2)
    devnet.set_native_balance(wallet.address, 3 * ETH)
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.add_wallet("vault", "eth", wallet.address, "futures", approvers=[o.address for o in owners], threshold=2)
    config = scenario.write()
    load(cli, config)
    books = custody.book([("vault", "ETH", "3", "deposit")], name="vault.csv")
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    assert run_json(cli, config)[0] == 0

    tx = devnet.exec_custody(wallet, owners[:2], OUTSIDER, value=ETH)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["wallet"], theft["asset"], theft["amount"], theft["tx_hash"]) == ("vault", "ETH", str(-ETH), tx)
    assert kinds(doc, "unexplained_balance_change") == []
    [moved] = [
        t for t in json.loads(cli("--config", str(config), "transfers", "list", "--json").stdout)["transfers"]
        if t["tx_hash"] == tx
    ]
    assert moved["log_index"] is None and moved["trace_position"] not in (None, "")


def test_a_module_moving_funds_without_an_instruction_is_flagged(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    owners = sorted((devnet.new_account() for _ in range(2)), key=lambda a: int(a.address, 16))
    wallet = devnet.deploy_custody_wallet([o.address for o in owners], 2)
    devnet.set_native_balance(wallet.address, 2 * ETH)
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.add_wallet("vault", "eth", wallet.address, "futures")
    config = scenario.write()
    load(cli, config)
    books = custody.book([("vault", "ETH", "2", "deposit")], name="vault.csv")
    assert cli("--config", str(config), "books", "import", str(books)).code == 0
    assert cli("--config", str(config), "wallets", "baseline").code == 0
    assert run_json(cli, config)[0] == 0

    module = devnet.new_account()
    devnet.exec_custody(wallet, owners, wallet.address, data=Devnet.calldata(wallet, "enableModule", module.address))
    data = Devnet.calldata(wallet, "execTransactionFromModule", OUTSIDER, ETH, b"", 0)
    tx = devnet.send_eth(module, wallet.address, 0, data)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    change = kinds(doc, "wallet_config_change")[0]
    assert change["severity"] == "critical" and module.address in change["detail"]
    [theft] = kinds(doc, "unauthorized_transfer")
    assert (theft["tx_hash"], theft["amount"]) == (tx, str(-ETH))


def test_a_balance_change_with_no_event_is_unexplained(desk: Desk) -> None:
    desk.net.set_native_balance(desk.key.address, 10 * ETH - 123)
    desk.net.mine()
    code, doc = desk.run()
    assert code == 1
    [odd] = kinds(doc, "unexplained_balance_change")
    assert (odd["severity"], odd["wallet"], odd["asset"], odd["amount"]) == ("critical", "seg-1", "ETH", "-123")
    assert "moved without an observed event" in odd["detail"]


def test_an_approval_to_an_unknown_spender_is_unapproved(desk: Desk) -> None:
    spender = desk.net.new_account()
    data = desk.net.calldata(desk.custody.usdc, "approve", spender.address, 10**9)
    tx = desk.net.send_eth(desk.key, desk.custody.usdc.address, 0, data)
    code, doc = desk.run()
    assert code == 1
    found = {(b["tx_hash"], b["amount"]) for b in kinds(doc, "unapproved_allowance")}
    assert (tx, str(10**9)) in found, "the Approval event"
    assert (None, str(10**9)) in found, "the standing allowance at the pin"

    # revoked: the standing allowance reads zero and that break resolves; the event stays for review
    revoke = desk.net.calldata(desk.custody.usdc, "approve", spender.address, 0)
    desk.net.send_eth(desk.key, desk.custody.usdc.address, 0, revoke)
    _, doc = desk.run()
    standing = [b for b in kinds(doc, "unapproved_allowance") if b["tx_hash"] is None]
    assert [b["status"] for b in standing] == ["resolved"]


def test_an_unbooked_inflow_is_unexpected_after_the_grace_and_resolved_when_booked(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    scenario.extra = '\n[surveillance]\ninflow_grace = "0s"\n'
    desk = Desk(cli, devnet, scenario)
    devnet.mint(desk.custody.usdc, desk.key.address, 77)  # an inflow nobody booked
    code, doc = desk.run()
    [inflow] = kinds(doc, "unexpected_inflow")
    assert inflow["severity"] == "warning" and inflow["amount"] == "77"
    books = desk.custody.book([("seg-1", "USDC", "0.000077", "deposit")], name="dep.csv")
    text = books.read_text().splitlines()
    books.write_text(text[0] + ",tx_hash\n" + text[1] + f",{inflow['tx_hash']}\n")
    assert cli("--config", str(desk.config), "books", "import", str(books)).code == 0
    _, doc = desk.run()
    assert [b["status"] for b in kinds(doc, "unexpected_inflow")] == ["resolved"]


def test_a_reorg_marks_a_flagged_transfer_reorged_and_resolves_its_break(desk: Desk) -> None:
    tx = desk.pay(OUTSIDER, 21)
    code, doc = desk.run()
    [theft] = kinds(doc, "unauthorized_transfer")
    assert theft["tx_hash"] == tx
    # The block holding it is replaced by one holding a different transfer from the wallet.
    other = {"from": desk.net.deployer, "to": OUTSIDER, "value": hex(1)}
    desk.net.rpc("anvil_reorg", [2, [[other, 0]]])
    code, doc = desk.run()
    resolved = [b for b in kinds(doc, "unauthorized_transfer") if b["tx_hash"] == tx]
    assert [b["status"] for b in resolved] == ["resolved"]
    shown = json.loads(desk.cli("--config", str(desk.config), "breaks", "show", theft["id"], "--json").stdout)
    assert "reorged away" in shown["events"][-1]["note"]
    moves = json.loads(
        desk.cli("--config", str(desk.config), "transfers", "list", "--status", "reorged", "--json").stdout
    )["transfers"]
    assert [m["tx_hash"] for m in moves] == [tx], "kept as evidence, marked reorged"


def test_a_reorg_that_replaces_a_transfer_with_another_judges_the_new_branch_on_its_own(desk: Desk) -> None:
    first = desk.pay(OUTSIDER, 31)
    _, doc = desk.run()
    assert [b["tx_hash"] for b in kinds(doc, "unauthorized_transfer")] == [first]
    desk.net.rpc("anvil_impersonateAccount", [desk.key.address])
    data = "0x" + desk.net.calldata(desk.custody.usdc, "transfer", OUTSIDER, 99).hex()
    nonce = desk.net.w3.eth.get_transaction(first)["nonce"]  # the replaced transaction's slot
    replacement = {"from": desk.key.address, "to": desk.custody.usdc.address, "data": data}
    replacement |= {"nonce": hex(nonce), "gas": hex(200_000)}
    desk.net.rpc("anvil_reorg", [1, [[replacement, 0]]])
    desk.net.rpc("anvil_stopImpersonatingAccount", [desk.key.address])
    _, doc = desk.run()
    found = {b["amount"]: b["status"] for b in kinds(doc, "unauthorized_transfer")}
    assert found == {"-31": "resolved", "-99": "open"}


def test_scan_json_and_an_incremental_scan_return_exactly_the_new_movements(desk: Desk) -> None:
    first = desk.cli("--config", str(desk.config), "scan", "--json")
    assert first.code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["chains"]["eth"]["observed"] == 0 and doc["breaks"] == []
    tx = desk.pay(OUTSIDER, 3)
    again = json.loads(desk.cli("--config", str(desk.config), "scan", "--json").stdout)
    eth = again["chains"]["eth"]
    assert eth["from_block"] == doc["chains"]["eth"]["to_block"] + 1 and eth["to_block"] == desk.net.head()
    assert eth["observed"] == 2 and eth["reorged"] == 0  # the transfer and its fee
    assert eth["block_hash"] == desk.net.w3.eth.get_block(eth["to_block"])["hash"].to_0x_hex()
    assert [b["tx_hash"] for b in kinds(again, "unauthorized_transfer")] == [tx]
    third = json.loads(desk.cli("--config", str(desk.config), "scan", "--json").stdout)
    assert third["chains"]["eth"]["observed"] == 0


def test_a_failed_scan_leaves_the_checkpoint_where_it_was(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    with RpcProxy(devnet.url) as proxy:
        desk = Desk(cli, devnet, scenario, url=proxy.url)
        tx = desk.pay(OUTSIDER, 4)
        pruned = {"code": 4444, "message": "pruned"}
        proxy.on("eth_getLogs", lambda req, resp: {**resp, "result": None, "error": pruned})
        code, doc = desk.run()
        assert code == 2 and doc["status"] == "incomplete" and "pruned" in doc["chains"]["eth"]["error"]
        proxy.reset()
        # a node that refuses ranges above 2 blocks: the scan halves and still completes
        def refuse_large(req: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
            p = req["params"][0]
            if int(p["toBlock"], 16) - int(p["fromBlock"], 16) > 1:
                refused = {"code": -32005, "message": "block range is too large"}
                return {"jsonrpc": "2.0", "id": req["id"], "error": refused}
            return resp

        proxy.on("eth_getLogs", refuse_large)
        code, doc = desk.run()
        assert doc["status"] == "complete" and code == 1
        assert [b["tx_hash"] for b in kinds(doc, "unauthorized_transfer")] == [tx], "observed once the node answers"


def test_surveillance_begins_at_the_first_wallets_baseline(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    baselined = cli("--config", str(config), "wallets", "baseline", "--json")
    assert baselined.code == 0, baselined.stderr
    tx = devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 8)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    assert [b["tx_hash"] for b in kinds(doc, "unauthorized_transfer")] == [tx], "seen although the first run came later"


def test_an_unexpected_inflow_of_a_wallet_that_left_the_configuration_stays_open(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    """Nobody judges the inflows of a wallet no longer configured: its break is not resolved by
    their absence."""
    scenario.extra = '\n[surveillance]\ninflow_grace = "0s"\n'
    desk = Desk(cli, devnet, scenario)
    devnet.mint(desk.custody.usdc, desk.custody.wallets["house-1"], 55)
    _, doc = desk.run()
    [inflow] = kinds(doc, "unexpected_inflow")
    assert inflow["wallet"] == "house-1"
    del scenario.wallets["house-1"]
    scenario.write()
    _, doc = desk.run()
    assert [b["status"] for b in kinds(doc, "unexpected_inflow")] == ["open"]
    listed = json.loads(cli("--config", str(desk.config), "breaks", "list", "--json").stdout)["breaks"]
    assert [b["id"] for b in listed if b["kind"] == "unexpected_inflow"] == [inflow["id"]]
