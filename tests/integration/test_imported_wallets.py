"""A wallet imported into the ledger is a custody wallet like a configured one, end to end on a
real Anvil and real ledgers (SQLite and PostgreSQL): reconciled by `run`, its movements judged by
`scan` against instructions signed by its approvers, its configuration baselined, its holdings
in the segregation statement, its Safe transactions checked by `presign`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from chains.evm.devnet import Devnet
from reconciler.engine.safetx import SafeTx, typed_data
from tests.conftest import Scenario
from tests.integration.helpers import instruction_line, load, make_custody, position, run_json, sign_instructions

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
ETH = 10**18
HEADER = "name,chain,address,class,kind,approvers,threshold,allowed_spenders"


class Fleet:
    """make_custody's two wallets, of which seg-1 (an EOA whose key the test holds, 2 of 3
    approvers) is imported instead of configured, and a Safe 1.3.0 "vault" (futures, USDC)
    imported too; house-1 stays in the configuration. Loaded and reconciled once."""

    def __init__(self, cli: Any, devnet: Devnet, scenario: Scenario) -> None:
        self.cli, self.net, self.scenario = cli, devnet, scenario
        self.approvers: list[LocalAccount] = [devnet.new_account() for _ in range(3)]
        self.key: LocalAccount = devnet.new_account(10 * ETH)
        owners = sorted((devnet.new_account() for _ in range(3)), key=lambda a: int(a.address, 16))
        self.safe = devnet.deploy_safe_130([o.address for o in owners], 2)
        self.custody = make_custody(devnet, scenario, devnet.url)
        del scenario.wallets["seg-1"]
        devnet.mint(self.custody.usdc, self.key.address, 1_000_000_500_000)
        devnet.mint(self.custody.tmmf, self.key.address, 2_500 * 10**18)
        devnet.mint(self.custody.usdc, self.safe.address, 5_000_000_000)
        devnet.mine()
        self.config = scenario.write()
        approvers = ";".join(a.address for a in self.approvers)
        self.wallets_csv = scenario.write_csv(
            "wallets.csv",
            HEADER,
            [f"seg-1,eth,{self.key.address},futures,eoa,{approvers},2,", f"vault,eth,{self.safe.address},futures,safe,"
             f"{approvers},2,"],
        )  # fmt: skip
        assert cli("--config", str(self.config), "init").code == 0
        imported = cli("--config", str(self.config), "wallets", "import", str(self.wallets_csv))
        assert imported.code == 0, imported.stderr
        load(cli, self.config)  # books name seg-1: they resolve to the imported wallet
        books = self.custody.book(
            [("seg-1", "ETH", "10", "deposit"), ("vault", "USDC", "5000", "deposit")], name="more-books.csv"
        )
        assert cli("--config", str(self.config), "books", "import", str(books)).code == 0

    def sign(self, ident: str, to: str, amount: int, wallet: str = "seg-1") -> Path:
        line = instruction_line(ident, wallet, to, amount)
        path = self.scenario.folder / f"{ident}.jsonl"
        return sign_instructions(self.cli, self.config, path, [line], self.approvers[:2])

    def pay(self, to: str, amount: int) -> str:
        data = self.net.calldata(self.custody.usdc, "transfer", to, amount)
        return self.net.send_eth(self.key, self.custody.usdc.address, 0, data)


@pytest.fixture
def fleet(cli: Any, devnet: Devnet, scenario: Scenario) -> Fleet:
    return Fleet(cli, devnet, scenario)


def test_imported_wallets_are_reconciled_and_their_outflows_judged_by_their_approvers(fleet: Fleet) -> None:
    cli, config = fleet.cli, str(fleet.config)
    code, doc, _ = run_json(cli, fleet.config)
    assert code == 0, doc["breaks"]
    assert {p["wallet"] for p in doc["positions"]} == {"seg-1", "vault", "house-1"}
    assert len(doc["positions"]) == 3 * 3  # every wallet x USDC, TMMF, ETH
    seg = position(doc, "seg-1", "USDC")
    assert seg["book"] == seg["onchain"] == "1000000500000"
    assert position(doc, "vault", "USDC")["onchain"] == "5000000000"

    # an outflow signed for by 2 of the imported wallet's 3 approvers is authorized
    signed = cli("--config", config, "instructions", "import", str(fleet.sign("wd-1", OUTSIDER, 250_000_000)))
    assert signed.code == 0, signed.stderr
    paid = fleet.pay(OUTSIDER, 250_000_000)
    # a second one is not
    stolen = fleet.pay(OUTSIDER, 1_000_000)
    scanned = cli("--config", config, "scan", "--json")
    assert scanned.code == 1, scanned.stderr
    breaks = json.loads(scanned.stdout)["breaks"]
    [theft] = [b for b in breaks if b["kind"] == "unauthorized_transfer"]
    assert (theft["wallet"], theft["tx_hash"], theft["amount"]) == ("seg-1", stolen, "-1000000")
    listed = json.loads(cli("--config", config, "instructions", "list", "--json").stdout)["instructions"]
    assert [(i["id"], i["status"], i["consumed_by"]) for i in listed] == [("wd-1", "consumed", paid)]

    # and the next run sees the balance the books do not explain
    code, doc, _ = run_json(cli, fleet.config)
    assert code == 1
    mismatch = {(b["wallet"], b["asset"]): b["amount"] for b in doc["breaks"] if b["kind"] == "balance_mismatch"}
    assert mismatch[("seg-1", "USDC")] == "-251000000"
    assert set(mismatch) == {("seg-1", "USDC"), ("seg-1", "ETH")}  # and the gas it paid


def test_an_imported_wallet_is_baselined_segregated_and_its_safe_transactions_presigned(fleet: Fleet) -> None:
    cli, config = fleet.cli, str(fleet.config)
    baselined = cli("--config", config, "wallets", "baseline", "--wallet", "vault", "--json")
    assert baselined.code == 0, baselined.stderr
    [vault] = json.loads(baselined.stdout)["wallets"]
    assert (vault["wallet"], vault["kind"], vault["threshold"]) == ("vault", "safe", 2)
    shown = cli("--config", config, "wallets", "show", "--wallet", "vault", "--json")
    assert shown.code == 0, shown.stderr

    statement = cli("--config", config, "segregation", "statement", "--json")
    doc = json.loads(statement.stdout)
    [futures] = [s for s in doc["statements"] if s["class"] == "futures"]
    held = {(h["wallet"], h["asset"]) for h in futures["holdings"]}
    assert {("seg-1", "USDC"), ("vault", "USDC")} <= held, futures["holdings"]

    # presign finds the imported Safe by its domain, and checks the transfer against its approvers' instructions
    assert cli("--config", config, "instructions", "import", str(fleet.sign("v-1", OUTSIDER, 1_000, "vault"))).code == 0
    data = Devnet.calldata(fleet.custody.usdc, "transfer", OUTSIDER, 1_000)
    tx = SafeTx(to=fleet.custody.usdc.address, data=data, nonce=int(fleet.safe.functions.nonce().call()))
    path = fleet.scenario.folder / "tx.json"
    path.write_text(json.dumps(typed_data(tx, 31337, fleet.safe.address, "1.3.0")))
    checked = cli("--config", config, "presign", str(path), "--json")
    doc = json.loads(checked.stdout)
    assert (checked.code, doc["wallet"], doc["verdict"]) == (0, "vault", "ok"), doc["findings"]
    tx_over = SafeTx(to=fleet.custody.usdc.address, data=Devnet.calldata(fleet.custody.usdc, "transfer", OUTSIDER,
                     1_001), nonce=tx.nonce)  # fmt: skip
    path.write_text(json.dumps(typed_data(tx_over, 31337, fleet.safe.address, "1.3.0")))
    checked = cli("--config", config, "presign", str(path), "--json")
    doc = json.loads(checked.stdout)
    assert (checked.code, doc["verdict"]) == (1, "danger")
    assert any(f["rule"] == "unauthorized_outflow" for f in doc["findings"]), doc["findings"]
