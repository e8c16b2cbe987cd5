"""Building blocks for integration tests: a custody setup on the real Anvil node."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from chains.evm.devnet import Devnet
from tests.conftest import CliResult, Scenario

ACCOUNTS_HEADER = "account,class,name"
BOOKS_HEADER = "entry_id,date,account,wallet,asset,amount,kind,memo"


def new_address() -> str:
    return str(Account.create().address)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Custody:
    """Two wallets holding a 6-decimals USDC, an 18-decimals TMMF and ETH, booked exactly."""

    net: Devnet
    scenario: Scenario
    usdc: Contract
    tmmf: Contract
    wallets: dict[str, str] = field(default_factory=dict)
    entries: int = 0

    def book(self, rows: list[tuple[str, str, str, str]], name: str | None = None) -> Path:
        """rows: (wallet, asset, amount, kind) for account C1."""
        lines = []
        for wallet, asset, amount, kind in rows:
            self.entries += 1
            lines.append(f"E{self.entries:05d},2026-11-24,C1,{wallet},{asset},{amount},{kind},")
        return self.scenario.write_csv(name or f"books{self.entries}.csv", BOOKS_HEADER, lines)


def make_custody(net: Devnet, scenario: Scenario, chain_url: str, **chain_kw: Any) -> Custody:
    usdc = net.deploy_token("Test USD", "USDC", 6)
    tmmf = net.deploy_token("Tokenized MMF", "TMMF", 18)
    custody = Custody(net, scenario, usdc, tmmf)
    scenario.add_chain("eth", chain_url, 31337, **chain_kw)
    scenario.add_token("USDC", "eth", usdc.address, 6)
    scenario.add_token("TMMF", "eth", tmmf.address, 18, kind="mmf")
    scenario.add_native("ETH", "eth")
    for name, klass in (("seg-1", "futures"), ("house-1", "house")):
        address = new_address()
        custody.wallets[name] = address
        scenario.add_wallet(name, "eth", address, klass)
    net.mint(usdc, custody.wallets["seg-1"], 1_000_000_500_000)  # 1,000,000.5 USDC
    net.mint(tmmf, custody.wallets["seg-1"], 2_500 * 10**18)
    net.set_native_balance(custody.wallets["house-1"], 7 * 10**18)
    net.mine()
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,Customer One", "H1,house,House"])
    custody.book(
        [
            ("seg-1", "USDC", "1000000.5", "deposit"),
            ("seg-1", "TMMF", "2500", "deposit"),
            ("house-1", "ETH", "7", "deposit"),
        ],
        name="books.csv",
    )
    return custody


def load(cli: Any, config: Path) -> None:
    """init + accounts import + books import, each asserted to succeed."""
    for args in (
        ("init",),
        ("accounts", "import", str(config.parent / "accounts.csv")),
        ("books", "import", str(config.parent / "books.csv")),
    ):
        result: CliResult = cli("--config", str(config), *args)
        assert result.code == 0, result.stderr


def run_json(cli: Any, config: Path) -> tuple[int, dict[str, Any], str]:
    result: CliResult = cli("--config", str(config), "run", "--json")
    doc = json.loads(result.stdout)  # stdout carries exactly one JSON document
    assert doc["exit_code"] == result.code
    return result.code, doc, result.stderr


def position(doc: dict[str, Any], wallet: str, asset: str) -> dict[str, Any]:
    rows = [p for p in doc["positions"] if p["wallet"] == wallet and p["asset"] == asset]
    assert len(rows) == 1, doc["positions"]
    return rows[0]


def instruction_line(
    ident: str, wallet: str, to: str, amount: int, asset: str = "USDC", hours: int = 24
) -> dict[str, Any]:
    """A withdrawal instruction on eth, unsigned, valid for ``hours`` from now."""
    until = (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)
    return {
        "id": ident,
        "chain": "eth",
        "wallet": wallet,
        "asset": asset,
        "to": to,
        "amount": str(amount),
        "valid_until": until.isoformat().replace("+00:00", "Z"),
        "signatures": [],
    }


def sign_instructions(
    cli: Any, config: Path, path: Path, lines: list[dict[str, Any]], signers: list[LocalAccount]
) -> Path:
    """``lines`` written to ``path`` and signed there by each of ``signers`` in turn, through
    `instructions sign` (the key in an environment variable, as an approver's desk passes it)."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for signer in signers:
        os.environ["TEST_SIGNING_KEY"] = signer.key.hex()
        try:
            signed = cli("--config", str(config), "instructions", "sign", str(path), "--key-env", "TEST_SIGNING_KEY")
        finally:
            del os.environ["TEST_SIGNING_KEY"]
        assert signed.code == 0, signed.stderr
        path.write_text(signed.stdout)
    return path
