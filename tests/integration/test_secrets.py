"""Credentials inside RPC and database URLs never appear in stdout, stderr, logs, JSON or the
ledger database.

The console script runs as a real subprocess, so what is checked is what an operator or a log
collector would see, --debug logging included; the RPC side goes through a real Anvil (behind a
proxy that serves any path, as a hosted provider does), the ledger is a real SQLite file whose
raw bytes are searched, and the PostgreSQL side uses the real server (trust authentication: a
password is accepted and ignored).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from tests.conftest import Scenario
from tests.integration.helpers import closed_port_url, load, make_custody, new_address
from tests.integration.rpcproxy import RpcProxy

SECRET = "SECRETKEY0123456789abcdef"
PG_SECRET = "PGSECRET"
KEY_PATH = f"/v3/{SECRET}?apikey={SECRET}"
RECONCILER = Path(sys.executable).parent / "reconciler"


def reconciler(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RECONCILER), "--config", str(config), *args], capture_output=True, text=True, timeout=120, check=False
    )


def ledger_bytes(folder: Path) -> bytes:
    """The SQLite ledger as stored: the file and any journal or write-ahead log beside it."""
    files = sorted(folder.glob("ledger.db*"))
    assert files, f"no ledger in {folder}"
    return b"".join(f.read_bytes() for f in files)


def assert_hidden(secret: str, done: subprocess.CompletedProcess[str]) -> None:
    where = [name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if secret in text]
    assert not where, f"{secret} shown on {', '.join(where)}:\n{done.stdout}\n{done.stderr}"


# ------------------------------------------------------------------------- RPC URLs


@dataclass
class Endpoint:
    """An RPC URL carrying an API key, and what a run against it should report."""

    url: str
    shown: str  # the endpoint as errors may name it
    exit_code: int
    says: str | None  # plain words the chain's error carries
    proxy: RpcProxy | None


@pytest.fixture(params=["unreachable", "http-500", "working"])
def endpoint(request: pytest.FixtureRequest, devnet: Devnet) -> Iterator[Endpoint]:
    if request.param == "unreachable":
        base = closed_port_url()
        yield Endpoint(base + KEY_PATH, base, 2, "connection refused", None)
        return
    with RpcProxy(devnet.url) as proxy:
        if request.param == "http-500":
            # A provider that quotes the request, key included, in its error page.
            proxy.fail(500, lambda path, _body: f"internal error while serving {path} for key {SECRET}")
            yield Endpoint(proxy.url + KEY_PATH, proxy.url, 2, "HTTP 500", proxy)
        else:
            yield Endpoint(proxy.url + KEY_PATH, proxy.url, 0, None, proxy)


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_an_api_key_in_an_rpc_url_is_never_shown_or_stored(
    cli: Any, devnet: Devnet, tmp_path: Path, endpoint: Endpoint, debug: bool
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    make_custody(devnet, scenario, endpoint.url)
    config = scenario.write()
    load(cli, config)

    done = reconciler(config, *(["--debug"] if debug else []), "run", "--json")

    assert done.returncode == endpoint.exit_code, done.stderr
    doc = json.loads(done.stdout)
    assert_hidden(SECRET, done)
    assert SECRET.encode() not in ledger_bytes(tmp_path)
    if endpoint.says is not None:
        error = doc["chains"]["eth"]["error"]
        assert endpoint.shown in error and endpoint.says in error, error
        assert endpoint.says in doc["reason"]
    else:
        assert doc["status"] == "complete"
    if endpoint.proxy is not None:
        assert {r.path for r in endpoint.proxy.seen()} == {KEY_PATH}, "the key really was in every request"
    if debug:
        assert "level=INFO" in done.stderr and "event=run_started" in done.stderr, "debug logging was on"


# ------------------------------------------------------------------------- database URLs


def with_password(url: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    assert at, f"{url} names no user"
    return f"{scheme}://{userinfo.split(':')[0]}:{password}@{host}"


def write_config(folder: Path, db_url: str) -> Path:
    """A configuration whose chain is down: a run exists, reaches the ledger and is incomplete."""
    scenario = Scenario(folder=folder, db_url=db_url)
    scenario.add_chain("eth", closed_port_url(), 31337)
    scenario.add_token("USDC", "eth", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 6)
    scenario.add_wallet("seg-1", "eth", new_address())
    return scenario.write()


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_database_password_is_never_shown(pg_url: str, tmp_path: Path, form: str) -> None:
    url = with_password(pg_url, PG_SECRET) if form == "userinfo" else f"{pg_url}&password={PG_SECRET}"
    config = write_config(tmp_path, url)

    init = reconciler(config, "init", "--json")
    checked = reconciler(config, "config", "check", "--json")
    ran = reconciler(config, "run", "--json")

    for done in (init, checked, ran):
        assert_hidden(PG_SECRET, done)
    assert init.returncode == 0, init.stderr
    assert checked.returncode == 0, checked.stderr
    for doc in (json.loads(init.stdout), json.loads(checked.stdout)):
        assert "***" in doc["database"] and "127.0.0.1:5432/test" in doc["database"]
    assert ran.returncode == 2 and json.loads(ran.stdout)["status"] == "incomplete", ran.stderr


@pytest.mark.parametrize(
    "url",
    [f"postgresql+psycopg://u:{PG_SECRET}@127.0.0.1:1/x", f"postgresql+psycopg://u@127.0.0.1:1/x?password={PG_SECRET}"],
    ids=["userinfo", "query"],
)
def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path, url)

    for args in (("init", "--json"), ("run", "--json"), ("--debug", "run", "--json")):
        done = reconciler(config, *args)
        assert done.returncode == 2
        assert done.stdout == "", "no run exists without a database: nothing on stdout"
        assert_hidden(PG_SECRET, done)
        assert "127.0.0.1:1/x" in done.stderr and "***" in done.stderr, done.stderr
