"""`presign` against a real Safe 1.3.0 on Anvil, with the real MultiSend and MultiSendCallOnly at
their canonical addresses: each payload a signing ceremony could be handed, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from chains.evm.devnet import Devnet
from chains.evm.devnet_safe import deploy_multisend_130
from reconciler.engine.safetx import InnerTx, SafeTx, multisend_calldata, typed_data
from tests.conftest import Scenario
from tests.integration.helpers import instruction_line, load, make_custody, run_json, sign_instructions
from tests.integration.rpcproxy import RpcProxy

ETH = 10**18
OUTSIDER = "0x000000000000000000000000000000000000dEaD"
SPENDER = "0x00000000000000000000000000000000000bEEf1"


class Ceremony:
    """A Safe 1.3.0 ("vault", 2 of 3 owners) holding USDC, configured with three instruction
    approvers (2 of 3), MultiSendCallOnly allowlisted, one allowed spender; loaded and run once."""

    def __init__(self, cli: Any, devnet: Devnet, scenario: Scenario, url: str | None = None) -> None:
        self.cli, self.net, self.scenario = cli, devnet, scenario
        self.multisend = deploy_multisend_130(devnet)
        self.owners = sorted((devnet.new_account() for _ in range(3)), key=lambda a: int(a.address, 16))
        self.approvers: list[LocalAccount] = [devnet.new_account() for _ in range(3)]
        self.safe: Contract = devnet.deploy_safe_130([o.address for o in self.owners], 2)
        custody = make_custody(devnet, scenario, url or devnet.url)
        self.usdc = custody.usdc
        devnet.mint(self.usdc, self.safe.address, 5_000_000_000)  # 5,000 USDC
        devnet.mine()
        scenario.add_wallet(
            "vault",
            "eth",
            self.safe.address,
            "futures",
            approvers=[a.address for a in self.approvers],
            threshold=2,
            allowed_spenders=[SPENDER],
        )
        scenario.extra = f'\n[presign]\ndelegatecall_allowlist = ["{self.multisend.multisend_call_only}"]\n'
        self.config = scenario.write()
        load(cli, self.config)
        books = custody.book([("vault", "USDC", "5000", "deposit")], name="vault-books.csv")
        assert cli("--config", str(self.config), "books", "import", str(books)).code == 0
        assert cli("--config", str(self.config), "wallets", "baseline").code == 0

    def nonce(self) -> int:
        return int(self.safe.functions.nonce().call())

    def payload(self, to: str, data: bytes = b"", operation: int = 0, name: str = "tx.json", **kw: Any) -> Path:
        fields: dict[str, Any] = {"nonce": self.nonce(), **kw}
        tx = SafeTx(to=to, data=data, operation=operation, **fields)
        path = self.scenario.folder / name
        path.write_text(json.dumps(typed_data(tx, 31337, self.safe.address, "1.3.0")))
        return path

    def transfer(self, to: str, amount: int) -> bytes:
        return Devnet.calldata(self.usdc, "transfer", to, amount)

    def instruct(self, ident: str, to: str, amount: int) -> None:
        path = self.scenario.folder / f"{ident}.jsonl"
        line = instruction_line(ident, "vault", to, amount)
        sign_instructions(self.cli, self.config, path, [line], self.approvers[:2])
        assert self.cli("--config", str(self.config), "instructions", "import", str(path)).code == 0

    def presign(self, path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        result = self.cli("--config", str(self.config), "presign", str(path), *extra, "--json")
        assert result.code in (0, 1, 2), result.stderr
        return result.code, json.loads(result.stdout)


def rules(doc: dict[str, Any]) -> dict[str, str]:
    """rule -> the worst severity it was found with."""
    rank = {"info": 0, "warning": 1, "error": 2, "critical": 3}
    out: dict[str, str] = {}
    for f in doc["findings"]:
        if rank[f["severity"]] >= rank.get(out.get(f["rule"], "info"), 0):
            out[f["rule"]] = f["severity"]
    return out


@pytest.fixture
def ceremony(cli: Any, devnet: Devnet, scenario: Scenario) -> Ceremony:
    return Ceremony(cli, devnet, scenario)


def test_an_instructed_transfer_is_ok_and_its_hashes_are_the_safes(ceremony: Ceremony) -> None:
    ceremony.instruct("wd-1", OUTSIDER, 250_000_000)
    path = ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 250_000_000))
    code, doc = ceremony.presign(path)
    assert (code, doc["verdict"]) == (0, "ok"), doc["findings"]
    tx = json.loads(path.read_text())["message"]
    on_chain = ceremony.safe.functions.getTransactionHash(
        tx["to"], 0, bytes.fromhex(tx["data"][2:]), 0, 0, 0, 0, tx["gasToken"], tx["refundReceiver"], int(tx["nonce"])
    ).call()
    assert doc["safe_tx_hash"] == "0x" + bytes(on_chain).hex()
    assert doc["domain_hash"] == "0x" + bytes(ceremony.safe.functions.domainSeparator().call()).hex()
    assert doc["wallet"] == "vault" and doc["chain"] == "eth" and doc["nonce"] == doc["wallet_nonce"] == "0"
    assert doc["call"]["contract"] == "USDC" and doc["call"]["function"] == "transfer(address,uint256)"
    sim = doc["simulation"]
    assert sim["success"] is True
    assert sim["outflows"] == [
        {"asset": "USDC", "token": ceremony.usdc.address, "to": OUTSIDER, "amount": "250000000",
         "amount_display": "250.000000"}
    ]  # fmt: skip
    assert [c["meaning"] for c in sim["storage_changes"]] == ["nonce (slot 5)"]
    # Nothing was sent, nothing consumed: the instruction is still open, the Safe still holds it.
    assert ceremony.usdc.functions.balanceOf(ceremony.safe.address).call() == 5_000_000_000
    listed = json.loads(ceremony.cli("--config", str(ceremony.config), "instructions", "list", "--json").stdout)
    assert [i["status"] for i in listed["instructions"]] == ["open"]


def test_without_an_instruction_or_one_unit_over_it_is_danger(ceremony: Ceremony) -> None:
    code, doc = ceremony.presign(ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 1_000)))
    assert (code, doc["verdict"], rules(doc)) == (1, "danger", {"unauthorized_outflow": "critical"})
    ceremony.instruct("wd-2", OUTSIDER, 1_000)
    code, doc = ceremony.presign(ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 1_001)))
    assert (code, rules(doc)) == (1, {"unauthorized_outflow": "critical"})


@pytest.mark.parametrize("allowlisted", [False, True])
def test_the_bybit_delegatecall(ceremony: Ceremony, allowlisted: bool) -> None:
    writer = ceremony.net.deploy("SlotWriter")
    evil = ceremony.net.deploy("MaliciousSingleton", Account.create().address)
    if allowlisted:  # allowlisting the target never hides the write it makes
        text = ceremony.config.read_text().replace(
            f'delegatecall_allowlist = ["{ceremony.multisend.multisend_call_only}"]',
            f'delegatecall_allowlist = ["{ceremony.multisend.multisend_call_only}", "{writer.address}"]',
        )
        ceremony.config.write_text(text)
    path = ceremony.payload(writer.address, Devnet.calldata(writer, "takeover", evil.address), operation=1)
    code, doc = ceremony.presign(path)
    found = rules(doc)
    assert code == 1 and doc["verdict"] == "danger"
    assert found["wallet_storage_write"] == "critical"
    assert ("delegatecall" in found) is not allowlisted
    [change] = [c for c in doc["simulation"]["storage_changes"] if c["slot"] == "0x0"]
    assert change["meaning"] == "singleton (slot 0)" and change["after"].endswith(evil.address[2:].lower())
    assert ceremony.safe.functions.getOwners().call() == [o.address for o in ceremony.owners]  # not executed


def test_a_multisend_hiding_enable_module(ceremony: Ceremony) -> None:
    ceremony.instruct("wd-3", OUTSIDER, 1_000)
    batch = multisend_calldata(
        [
            InnerTx(0, ceremony.usdc.address, 0, ceremony.transfer(OUTSIDER, 1_000)),
            InnerTx(0, ceremony.safe.address, 0, Devnet.calldata(ceremony.safe, "enableModule", SPENDER)),
        ]
    )
    code, doc = ceremony.presign(ceremony.payload(ceremony.multisend.multisend, batch, operation=1))
    found = rules(doc)
    assert code == 1 and found["wallet_config_call"] == "critical" and found["delegatecall"] == "critical"
    assert found["wallet_storage_write"] == "critical"  # modules[x] and the list head
    assert [c["function"] for c in doc["call"]["inner"]] == ["transfer(address,uint256)", "enableModule(address)"]


def test_an_allowlisted_multisend_call_only_of_two_instructed_transfers_is_ok(ceremony: Ceremony) -> None:
    ceremony.instruct("wd-4", OUTSIDER, 1_000)
    ceremony.instruct("wd-5", SPENDER, 2_000)
    batch = multisend_calldata(
        [
            InnerTx(0, ceremony.usdc.address, 0, ceremony.transfer(OUTSIDER, 1_000)),
            InnerTx(0, ceremony.usdc.address, 0, ceremony.transfer(SPENDER, 2_000)),
        ]
    )
    code, doc = ceremony.presign(ceremony.payload(ceremony.multisend.multisend_call_only, batch, operation=1))
    assert (code, doc["verdict"]) == (0, "ok"), doc["findings"]
    assert [o["amount"] for o in doc["simulation"]["outflows"]] == ["1000", "2000"]


def test_approvals_change_threshold_gas_refund_and_nonce(ceremony: Ceremony) -> None:
    usdc = ceremony.usdc
    unknown = ceremony.payload(usdc.address, Devnet.calldata(usdc, "approve", OUTSIDER, 10**6), name="a1.json")
    assert rules(ceremony.presign(unknown)[1]) == {"approval": "critical"}
    allowed = ceremony.payload(usdc.address, Devnet.calldata(usdc, "approve", SPENDER, 10**6), name="a2.json")
    assert ceremony.presign(allowed)[0] == 0
    threshold = ceremony.payload(
        ceremony.safe.address, Devnet.calldata(ceremony.safe, "changeThreshold", 3), name="t.json"
    )
    code, doc = ceremony.presign(threshold)
    assert code == 1 and rules(doc)["wallet_config_call"] == "critical"
    assert any(c["meaning"] == "threshold (slot 4)" for c in doc["simulation"]["storage_changes"])
    nothing = ceremony.transfer(OUTSIDER, 0)
    refund = ceremony.payload(
        usdc.address, nothing, name="r.json", gas_price=1, gas_token=usdc.address, refund_receiver=OUTSIDER
    )
    assert rules(ceremony.presign(refund)[1]).get("gas_refund") == "error"
    future = ceremony.payload(usdc.address, nothing, name="n.json", nonce=ceremony.nonce() + 3)
    code, doc = ceremony.presign(future)
    assert code == 0, doc.get("reasons")
    assert rules(doc) == {"nonce": "warning"} and doc["wallet_nonce"] == "0" and doc["nonce"] == "3"


def test_offline_checks_hashes_and_static_rules_only(ceremony: Ceremony, tmp_path: Path) -> None:
    # The public vector of a Safe 1.3.0 USDC transfer on chain 1 (Cyfrin/safe-hash-rs README).
    message = {
        "to": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "value": "0",
        "data": "0xa9059cbb"
        "00000000000000000000000092d0ebaf7eb707f0650f9471e61348f4656c29bc"
        "00000000000000000000000000000000000000000000000000000005d21dba00",
        "operation": 0,
        "safeTxGas": 0,
        "baseGas": 0,
        "gasPrice": 0,
        "gasToken": "0x0000000000000000000000000000000000000000",
        "refundReceiver": "0x0000000000000000000000000000000000000000",
        "nonce": 63,
    }
    path = tmp_path / "vector.json"
    path.write_text(json.dumps(message))
    safe = "0x1c694Fc3006D81ff4a56F97E1b99529066a23725"
    result = ceremony.cli("presign", str(path), "--offline", "--chain-id", "1", "--safe", safe, "--json")
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["simulation"] is None and doc["verdict"] == "ok" and doc["wallet"] is None
    assert doc["domain_hash"] == "0x1655e94a9bcc5a957daa1acae692b4c22e7aaf146b4deb9194f8221d2f09d8c3"
    assert doc["message_hash"] == "0xf22754eba5a2b230714534b4657195268f00dc0031296de4b835d82e7aa1e574"
    assert doc["safe_tx_hash"] == "0xad06b099fca34e51e4886643d95d9a19ace2cd024065efb66662a876e8c40343"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1"),
        ('{"types": {}, "primaryType": "SafeTx", "domain": {}, "message": {"operation": 2}}', "operation"),
    ],
)
def test_bad_inputs_exit_2_with_the_reason(ceremony: Ceremony, content: str, message: str) -> None:
    path = ceremony.scenario.folder / "bad.json"
    path.write_text(content)
    result = ceremony.cli("--config", str(ceremony.config), "presign", str(path), "--json")
    assert result.code == 2 and result.stdout == "" and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_domain_naming_no_configured_wallet_or_another_chain_is_refused(ceremony: Ceremony) -> None:
    stranger = ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 1))
    doc = json.loads(stranger.read_text())
    doc["domain"]["verifyingContract"] = OUTSIDER
    stranger.write_text(json.dumps(doc))
    result = ceremony.cli("--config", str(ceremony.config), "presign", str(stranger))
    assert result.code == 2 and "not a configured wallet" in result.stderr
    doc["domain"]["verifyingContract"] = ceremony.safe.address
    doc["domain"]["chainId"] = 5
    stranger.write_text(json.dumps(doc))
    result = ceremony.cli("--config", str(ceremony.config), "presign", str(stranger), "--wallet", "vault")
    assert result.code == 2 and "chain id is 5" in result.stderr


def test_a_node_without_debug_trace_call_leaves_it_unchecked(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    with RpcProxy(devnet.url) as proxy:
        ceremony = Ceremony(cli, devnet, scenario, url=proxy.url)
        proxy.on(
            "debug_traceCall",
            lambda request, response: {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {"code": -32601, "message": "Method not found"},
            },
        )
        ceremony.instruct("wd-6", OUTSIDER, 1_000)
        code, doc = ceremony.presign(ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 1_000)))
    assert code == 2 and doc["verdict"] == "unchecked" and doc["simulation"] is None
    assert any("debug_traceCall" in r for r in doc["reasons"])


def test_presign_writes_nothing_to_the_ledger(ceremony: Ceremony) -> None:
    code, before, _ = run_json(ceremony.cli, ceremony.config)
    runs = json.loads(ceremony.cli("--config", str(ceremony.config), "runs", "list", "--json").stdout)["runs"]
    trail = json.loads(ceremony.cli("--config", str(ceremony.config), "breaks", "verify-audit", "--json").stdout)
    ceremony.presign(ceremony.payload(ceremony.usdc.address, ceremony.transfer(OUTSIDER, 7)))
    assert json.loads(ceremony.cli("--config", str(ceremony.config), "runs", "list", "--json").stdout)["runs"] == runs
    after = json.loads(ceremony.cli("--config", str(ceremony.config), "breaks", "verify-audit", "--json").stdout)
    assert after == trail and before["run_id"] == runs[0]["id"] and code in (0, 1)
