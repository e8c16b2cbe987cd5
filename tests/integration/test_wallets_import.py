"""`wallets import` and `wallets list` on real ledgers (SQLite and PostgreSQL), through the CLI:
all rows or none with every bad line named, the same file again a no-op, a wallet never changed
by another file, names and addresses unique across the configuration and the ledger, and a
chain's imported wallets read chunk by chunk in name order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy

from reconciler.domain import eip55
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario

HEADER = "name,chain,address,class,kind,approvers,threshold,allowed_spenders"
CFG = eip55("0x" + "c0" * 20)
A1 = eip55("0x" + "a1" * 20)
A2 = eip55("0x" + "a2" * 20)


def addr(i: int) -> str:
    return eip55(f"0x{i:040x}" if i else "0x" + "ee" * 20)


def _ready(cli: Any, scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_chain("base", "http://127.0.0.1:10", 8453)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_wallet("cfg-1", "eth", CFG, "house")
    config = scenario.write()
    assert cli("--config", str(config), "init").code == 0
    return config


def _counts(url: str) -> tuple[int, int]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        wallets = int(conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM imported_wallet")).scalar_one())
        batches = int(conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM import_batch")).scalar_one())
    engine.dispose()
    return wallets, batches


def _import(cli: Any, config: Path, path: Path) -> tuple[int, dict[str, Any], str]:
    result = cli("--config", str(config), "wallets", "import", str(path), "--json")
    return result.code, (json.loads(result.stdout) if result.stdout else {}), result.stderr


def test_imported_wallets_are_listed_beside_the_configured_ones_and_a_reimport_is_a_no_op(
    cli: Any, scenario: Scenario
) -> None:
    config = _ready(cli, scenario)
    path = scenario.write_csv(
        "wallets.csv",
        HEADER,
        [f"dep-2,eth,{addr(2)},futures,eoa,,,", f"dep-1,base,{addr(1)},house,safe,{A1};{A2},2,{A1}"],
    )
    code, doc, err = _import(cli, config, path)
    assert code == 0, err
    assert (doc["imported"], doc["unchanged"], doc["already_imported"]) == (2, 0, False)
    listed = cli("--config", str(config), "wallets", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == {
        "wallets": [
            {"name": "cfg-1", "chain": "eth", "address": CFG, "class": "house", "kind": None, "approvers": [],
             "threshold": 0, "allowed_spenders": [], "source": "config"},
            {"name": "dep-1", "chain": "base", "address": addr(1), "class": "house", "kind": "safe",
             "approvers": [A1, A2], "threshold": 2, "allowed_spenders": [A1], "source": "ledger"},
            {"name": "dep-2", "chain": "eth", "address": addr(2), "class": "futures", "kind": "eoa",
             "approvers": [], "threshold": 0, "allowed_spenders": [], "source": "ledger"},
        ]
    }  # fmt: skip
    table = cli("--config", str(config), "wallets", "list")
    assert table.code == 0 and "dep-1" in table.stdout and "2 of 2" in table.stdout and "ledger" in table.stdout
    before = _counts(scenario.db_url)

    again = cli("--config", str(config), "wallets", "import", str(path))
    assert again.code == 0 and "already imported" in again.stderr and "nothing to do" in again.stderr
    assert _counts(scenario.db_url) == before

    # a grown list: the wallets already there are kept as they are, the new one is added
    grown = scenario.write_csv(
        "wallets-2.csv",
        "name,chain,address,class,kind,approvers,threshold,allowed_spenders",
        [f"dep-1,base,{addr(1)},house,safe,{A1};{A2},2,{A1}", f"dep-3,eth,{addr(3)},futures,,,,"],
    )
    code, doc, err = _import(cli, config, grown)
    assert code == 0, err
    assert (doc["imported"], doc["unchanged"]) == (1, 1)
    assert _counts(scenario.db_url) == (before[0] + 1, before[1] + 1)
    # a file that adds nothing is not recorded as an import
    same = scenario.write_csv("wallets-3.csv", "name,chain,address,class", [f"dep-3,eth,{addr(3)},futures"])
    code, doc, err = _import(cli, config, same)
    assert code == 0 and (doc["imported"], doc["unchanged"]) == (0, 1), err
    assert _counts(scenario.db_url) == (before[0] + 1, before[1] + 1)


def test_a_file_that_would_change_an_imported_wallet_is_refused_naming_the_line(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    first = scenario.write_csv("wallets.csv", "name,chain,address,class", [f"dep-1,eth,{addr(1)},futures"])
    assert _import(cli, config, first)[0] == 0
    before = _counts(scenario.db_url)
    for rows, where, said in (
        ([f"dep-9,eth,{addr(9)},futures", f"dep-1,eth,{addr(1)},house"], "line 3, column class",
         "already in the ledger with class 'futures' (this file: 'house')"),
        ([f"dep-1,eth,{addr(7)},futures"], "line 2, column address", "already in the ledger with address"),
        ([f"dep-8,eth,{addr(1)},futures"], "line 2, column address", "is already wallet 'dep-1' in the ledger"),
    ):  # fmt: skip
        path = scenario.write_csv("changed.csv", "name,chain,address,class", rows)
        code, doc, err = _import(cli, config, path)
        assert (code, doc) == (2, {}), err
        assert f"{where}: " in err and said in err and "nothing was imported" in err, err
        assert _counts(scenario.db_url) == before


def test_every_bad_line_is_named_and_nothing_is_imported(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    lower = addr(0xABC).lower()
    wrong_case = "0x" + addr(0xABC)[2:].swapcase()
    rows = [
        f"ok-1,eth,{addr(1)},futures,,,,",
        f"low,eth,{lower},futures,,,,",
        f"case,eth,{wrong_case},futures,,,,",
        f"chain,eht,{addr(2)},futures,,,,",
        f"klass,eth,{addr(3)},customer,,,,",
        f"cfg-1,eth,{addr(4)},house,,,,",
        f"cfg-addr,eth,{CFG},house,,,,",
        f"ok-1,eth,{addr(5)},futures,,,,",
        f"twin,eth,{addr(1)},futures,,,,",
        f"kind,eth,{addr(6)},futures,multisig,,,",
        f"thr,eth,{addr(7)},futures,,{A1},2,",
        f"appr,eth,{addr(8)},futures,,{A1};{A1},1,",
        f"-bad,eth,{addr(9)},futures,,,,",
    ]
    path = scenario.write_csv("bad.csv", HEADER, rows)
    code, _, err = _import(cli, config, path)
    assert code == 2
    checksummed = addr(0xABC)
    for expected in (
        f"line 3, column address: '{lower}' is not EIP-55 checksummed; the checksummed form is {checksummed}",
        f"line 4, column address: '{wrong_case}' is not EIP-55 checksummed; the checksummed form is {checksummed}",
        "line 5, column chain: 'eht' names no [chains.eht]; did you mean 'eth'?",
        "line 6, column class: 'customer' is not one of futures, cleared_swaps, foreign_futures, house",
        "line 7, column name: 'cfg-1' is configured in reconciler.toml ([wallets.cfg-1])",
        f"line 8, column address: {CFG} on chain eth is configured as [wallets.cfg-1]",
        "line 9, column name: 'ok-1' already appears on line 2",
        f"line 10, column address: {addr(1)} on chain eth already appears on line 2",
        "line 11, column kind: 'multisig' is not one of safe, eoa, contract",
        "line 12, column threshold: 2 exceeds the 1 approver(s) listed",
        f"line 13, column approvers: entry 2: {A1} is listed twice",
        "line 14, column name: '-bad' is not a wallet name",
    ):
        assert expected in err, (expected, err)
    assert _counts(scenario.db_url) == (0, 0)


def test_duplicates_across_chunks_of_a_long_file_are_found(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    rows = [f"w{i:05d},eth,{addr(i + 1)},futures" for i in range(5_200)]
    rows.append(f"w00003,base,{addr(99_999)},futures")  # its name is on line 5, chunks ago
    rows.append(f"late,eth,{addr(4)},futures")  # the address of w00003, line 5
    path = scenario.write_csv("long.csv", "name,chain,address,class", rows)
    code, _, err = _import(cli, config, path)
    assert code == 2
    assert "line 5202, column name: 'w00003' appears earlier in this file" in err, err
    assert f"line 5203, column address: {addr(4)} on chain eth is already wallet 'w00003' earlier in this file" in err
    assert _counts(scenario.db_url) == (0, 0)
    rows = rows[:-2]
    path = scenario.write_csv("long.csv", "name,chain,address,class", rows)
    code, doc, err = _import(cli, config, path)
    assert code == 0 and doc["imported"] == 5_200, err

    # a chain read chunk by chunk, in name order (byte order on both databases)
    ledger = Ledger(scenario.db_url)
    try:
        names: list[str] = []
        after: str | None = None
        while chunk := ledger.wallets("eth", after, 1_000):
            assert len(chunk) <= 1_000
            names += [w.name for w in chunk]
            after = chunk[-1].name
        assert names == [f"w{i:05d}" for i in range(5_200)]
        assert ledger.wallets("base") == [] and ledger.imported_wallet_count("eth") == 5_200
    finally:
        ledger.close()


def test_names_sort_in_byte_order_and_chunks_follow_it(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    names = ["b-1", "B1", "a.1", "a-1", "A2", "a_1", "a1", "Z9", "0x"]
    path = scenario.write_csv(
        "w.csv", "name,chain,address,class", [f"{n},eth,{addr(i + 1)},futures" for i, n in enumerate(names)]
    )
    assert _import(cli, config, path)[0] == 0
    ledger = Ledger(scenario.db_url)
    try:
        assert [w.name for w in ledger.wallets("eth", None, 100)] == sorted(names)
        assert [w.name for w in ledger.wallets("eth", "a-1", 3)] == sorted(names)[sorted(names).index("a-1") + 1 :][:3]
    finally:
        ledger.close()
    listed = json.loads(cli("--config", str(config), "wallets", "list", "--json").stdout)["wallets"]
    assert [w["name"] for w in listed] == ["cfg-1", *sorted(names)]


def test_a_configuration_that_later_names_an_imported_wallet_is_refused(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    path = scenario.write_csv("w.csv", "name,chain,address,class", [f"dep-1,eth,{addr(1)},futures"])
    assert _import(cli, config, path)[0] == 0
    scenario.add_wallet("dep-1", "eth", addr(5), "house")
    config = scenario.write()
    result = cli("--config", str(config), "wallets", "list", "--json")
    assert result.code == 2 and result.stdout == ""
    assert "wallets.dep-1 in reconciler.toml is also a wallet imported into the ledger" in result.stderr
    del scenario.wallets["dep-1"]
    scenario.add_wallet("cfg-2", "eth", addr(1), "house")
    config = scenario.write()
    result = cli("--config", str(config), "run", "--json")
    assert result.code == 2
    assert f"wallets.cfg-2 in reconciler.toml has the address of the imported wallet 'dep-1' ({addr(1)}" in (
        result.stderr
    )
    # `config check` reads the configuration alone: it still says what the file holds
    checked = cli("--config", str(config), "config", "check", "--json")
    assert checked.code == 0 and json.loads(checked.stdout)["wallets"] == ["cfg-1", "cfg-2"]


def test_a_ledger_opened_for_the_next_job_brings_the_wallets_imported_since(cli: Any, scenario: Scenario) -> None:
    """The daemon keeps one Settings and opens the ledger for every job (bootstrap.open_ledger):
    a wallets import made meanwhile is seen by the next job, without a restart."""
    from reconciler.app.fleet import with_ledger_wallets
    from reconciler.bootstrap import open_ledger
    from reconciler.inputs.config import load_settings

    config = _ready(cli, scenario)
    first = scenario.write_csv("w1.csv", "name,chain,address,class", [f"dep-1,eth,{addr(1)},futures"])
    assert _import(cli, config, first)[0] == 0
    settings = with_ledger_wallets(load_settings(str(config)))
    assert list(settings.wallets) == ["cfg-1", "dep-1"]
    second = scenario.write_csv("w2.csv", "name,chain,address,class", [f"dep-2,base,{addr(2)},house"])
    assert _import(cli, config, second)[0] == 0
    assert list(settings.wallets) == ["cfg-1", "dep-1"], "read once, until a ledger is opened again"
    open_ledger(settings).close()
    assert list(settings.wallets) == ["cfg-1", "dep-1", "dep-2"]
    assert settings.wallet_by_address("base", addr(2)) == settings.wallets["dep-2"]
    assert [w.name for w in settings.wallets_on("base")] == ["dep-2"]


def test_stored_movements_of_a_fleet_too_large_for_an_in_list_are_the_same(db_url: str) -> None:
    """Above 1,000 wallets the movements a run judges again are filtered by wallet in Python (a
    million names are more variables than SQLite takes in one statement): the same rows."""
    from datetime import UTC, datetime

    from reconciler.ledger import surveillance_store
    from reconciler.ledger.models import MovementRow

    ledger = Ledger(db_url)
    ledger.init()
    try:
        with ledger._session() as s:
            for n, wallet in enumerate(("w-keep", "w-other", "w-keep")):
                s.add(
                    MovementRow(
                        chain="eth", block_number=10 + n, block_hash="0x" + f"{n:064x}", block_time=0,
                        tx_hash="0x" + f"{n + 7:064x}", position=str(n), kind="token", wallet=wallet, direction="in",
                        asset="USDC", token=addr(1), from_address=addr(2), to_address=addr(3), amount=5 + n,
                        status="observed", observed_at=datetime.now(UTC),
                    )
                )  # fmt: skip
        few = ["w-keep"]
        many = ["w-keep", *(f"x{i:05d}" for i in range(5_000))]
        decimals = {"USDC": 6}
        by_few = surveillance_store.stored_movements(ledger, "eth", decimals, few, None, frozenset())
        by_many = surveillance_store.stored_movements(ledger, "eth", decimals, many, None, frozenset())
        assert [(m.wallet, m.amount) for m in by_few] == [(m.wallet, m.amount) for m in by_many]
        assert sorted(m.amount for m in by_many) == [5, 7]
    finally:
        ledger.close()
