"""Shared fixtures: a real Anvil node per session, real ledgers on SQLite and PostgreSQL.

Anvil starts once per session on a free port; each test that changes the chain runs inside
evm_snapshot/evm_revert. Each PostgreSQL test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy

from chains.evm.devnet import AnvilNode, Devnet
from reconciler.cli.main import main

# The width of whatever runs the suite (a terminal, CI, pytest-xdist's workers set COLUMNS=80)
# must not steer it: consoles made at import read COLUMNS once, so it goes before they are made.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

PG_BASE = os.environ.get("RECONCILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _no_outside_reconciler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's RECONCILER_CONFIG or RECONCILER_DATABASE_URL must not steer the tests."""
    for name in ("RECONCILER_CONFIG", "RECONCILER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # Nor a width a test before it set and left (a test that wants a width says it).
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------- chains


@pytest.fixture(scope="session")
def anvil_node(request: pytest.FixtureRequest) -> Iterator[AnvilNode]:
    node = AnvilNode.start(chain_id=31337)
    yield node
    if request.session.testsfailed:
        print(f"\n--- Anvil log ({node.url}) ---\n{node.log_tail(80)}")
    node.stop()


@pytest.fixture(scope="session")
def devnet_session(anvil_node: AnvilNode) -> Devnet:
    net = Devnet(anvil_node.url)
    net.install_multicall3()
    return net


@pytest.fixture
def devnet(devnet_session: Devnet) -> Iterator[Devnet]:
    """The session's chain, reverted to where it was after the test."""
    snap = devnet_session.snapshot()
    yield devnet_session
    devnet_session.revert(snap)


# ------------------------------------------------------------------------- ledgers


def _pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


# ------------------------------------------------------------------------- CLI


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the real entry point in-process; returns exit code, stdout and stderr."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


# ------------------------------------------------------------------------- scenario builder


@dataclass
class Scenario:
    """A config file, accounts and books for tests, written into a folder."""

    folder: Path
    db_url: str
    chains: dict[str, dict[str, object]] = field(default_factory=dict)
    assets: dict[str, dict[str, object]] = field(default_factory=dict)
    wallets: dict[str, dict[str, object]] = field(default_factory=dict)
    extra: str = ""
    database: dict[str, object] = field(default_factory=dict)  # [database] keys besides url

    def add_chain(self, name: str, url: str, chain_id: int, **kw: object) -> None:
        self.chains[name] = {"kind": "evm", "rpc_urls": [url], "chain_id": chain_id, **kw}

    def add_token(
        self, name: str, chain: str, address: str, decimals: int, kind: str = "stablecoin", **kw: object
    ) -> None:
        self.assets[name] = {"chain": chain, "address": address, "decimals": decimals, "kind": kind, **kw}

    def add_native(self, name: str, chain: str) -> None:
        self.assets[name] = {"chain": chain, "native": True, "kind": "native"}

    def add_wallet(self, name: str, chain: str, address: str, klass: str = "futures", **kw: object) -> None:
        self.wallets[name] = {"chain": chain, "address": address, "class": klass, **kw}

    def write(self) -> Path:
        lines = ["[database]", f'url = "{self.db_url}"', *(f"{k} = {_toml(v)}" for k, v in self.database.items()), ""]
        for section, tables in (("chains", self.chains), ("assets", self.assets), ("wallets", self.wallets)):
            for name, table in tables.items():
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
                lines.append("")
        path = self.folder / "reconciler.toml"
        path.write_text("\n".join(lines) + self.extra)
        return path

    def write_csv(self, name: str, header: str, rows: list[str]) -> Path:
        path = self.folder / name
        path.write_text("\n".join([header, *rows]) + "\n")
        return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"'


@pytest.fixture
def scenario(tmp_path: Path, db_url: str) -> Scenario:
    return Scenario(folder=tmp_path, db_url=db_url)
