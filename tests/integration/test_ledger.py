"""The ledger on SQLite and PostgreSQL: exact amounts, all-or-nothing imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlmodel import Session, select

from reconciler.domain import UINT256_MAX, format_amount
from reconciler.ledger import schema
from reconciler.ledger.models import BalanceSnapshot, Run
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address

EXTREMES = [0, 1, -1, 2**63 - 1, 2**63, 2**64 + 1, 10**27 + 1, 2**256 - 1, -(2**256 - 1)]


@pytest.mark.parametrize("value", EXTREMES)
def test_amounts_round_trip_exactly(db_url: str, value: int) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    run, lock = ledger.begin_run()
    lock.release()
    with Session(ledger.engine) as s:
        s.add(
            BalanceSnapshot(
                run_id=run.id, chain="eth", wallet="w", asset="A", block_number=2**40, book=value, onchain=-value
            )
        )
        s.commit()
    with Session(ledger.engine) as s:
        row = s.exec(select(BalanceSnapshot)).one()
        assert (row.book, row.onchain, row.block_number) == (value, -value, 2**40)
        assert type(row.book) is int
        assert s.get(Run, run.id) is not None
    ledger.close()


def _config(scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_token("TMMF", "eth", "0x6B175474E89094C44Da98b954EedeAC495271d0F", 18, kind="mmf")
    scenario.add_wallet("w1", "eth", new_address())
    scenario.add_wallet("w2", "eth", new_address(), "house")
    return scenario.write()


def _ready(cli: Any, scenario: Scenario) -> Path:
    """The config written and the ledger created."""
    config = _config(scenario)
    result = cli("--config", str(config), "init")
    assert result.code == 0, result.stderr
    return config


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sqlalchemy.create_engine(url)
    tables = ("account", "book_entry", "import_batch")
    with engine.connect() as conn:
        out = {
            t: sorted(map(tuple, conn.execute(sqlalchemy.text(f"SELECT * FROM {t}")).all()), key=repr) for t in tables
        }
    engine.dispose()
    return out


def test_books_sum_exactly_above_2_64(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    books = scenario.write_csv(
        "books.csv",
        BOOKS_HEADER,
        [
            "E1,2026-11-24,C1,w1,TMMF,999999999.999999999999999999,deposit,",
            "E2,2026-11-24,C1,w1,TMMF,0.000000000000000001,deposit,",
            "E3,2026-11-24,C1,w1,TMMF,-1,withdrawal,",
        ],
    )
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    result = cli("--config", str(config), "books", "import", str(books), "--json")
    assert result.code == 0 and json.loads(result.stdout)["imported"] == 3
    ledger = Ledger(scenario.db_url)
    assert ledger.book_balances() == {("w1", "TMMF"): 10**27 - 10**18}
    ledger.close()


BAD_BOOKS = {
    "over-precise amount": ("E9,2026-11-24,C1,w1,USDC,1.0000001,deposit,", "line 3, column amount"),
    "unknown wallet": ("E9,2026-11-24,C1,nope,USDC,1,deposit,", "line 3, column wallet"),
    "lower-case address": ("E9,2026-11-24,C1,{lower},USDC,1,deposit,", "line 3, column wallet"),
    "unknown asset": ("E9,2026-11-24,C1,w1,DAI,1,deposit,", "line 3, column asset"),
    "unknown account": ("E9,2026-11-24,C9,w1,USDC,1,deposit,", "line 3, column account"),
    "entry id already stored": ("E1,2026-11-24,C1,w1,USDC,1,deposit,", "line 3, column entry_id"),
    "entry id twice in the file": ("E5,2026-11-24,C1,w1,USDC,1,deposit,", "line 3, column entry_id"),
    "amount of thousands of digits": ("E9,2026-11-24,C1,w1,USDC," + "1" * 5000 + ",deposit,", "line 3, column amount"),
    "entry id longer than its column": ("E" * 250 + ",2026-11-24,C1,w1,USDC,1,deposit,", "line 3, column entry_id"),
    "memo longer than its column": ("E9,2026-11-24,C1,w1,USDC,1,deposit," + "m" * 1001, "line 3, column memo"),
}


@pytest.mark.parametrize("case", sorted(BAD_BOOKS))
def test_a_bad_books_file_changes_nothing(cli: Any, scenario: Scenario, case: str) -> None:
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One", "H1,house,House"])
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    good = scenario.write_csv("good.csv", BOOKS_HEADER, ["E1,2026-11-24,C1,w1,USDC,10,deposit,first"])
    assert cli("--config", str(config), "books", "import", str(good)).code == 0
    before = _dump(scenario.db_url)

    bad_row, where = BAD_BOOKS[case]
    bad_row = bad_row.format(lower=scenario.wallets["w1"]["address"].lower())  # type: ignore[union-attr]
    bad = scenario.write_csv("bad.csv", BOOKS_HEADER, ["E5,2026-11-24,C1,w1,USDC,5,deposit,valid row", bad_row])
    result = cli("--config", str(config), "books", "import", str(bad), "--json")

    assert result.code == 2
    assert result.stdout == ""
    assert where in result.stderr, result.stderr
    assert "nothing was imported" in result.stderr
    assert _dump(scenario.db_url) == before


def test_a_books_file_missing_a_column_changes_nothing(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    before = _dump(scenario.db_url)
    bad = scenario.write_csv(
        "bad.csv", "entry_id,date,account,wallet,asset,amount,memo", ["E1,2026-11-24,C1,w1,USDC,5,x"]
    )
    result = cli("--config", str(config), "books", "import", str(bad))
    assert result.code == 2 and "line 1: missing column(s) kind" in result.stderr
    assert _dump(scenario.db_url) == before


def test_changing_an_accounts_class_is_refused(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    first = scenario.write_csv("a1.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    again = scenario.write_csv("a2.csv", ACCOUNTS_HEADER, ["C2,futures,Two", "C1,house,One"])
    assert cli("--config", str(config), "accounts", "import", str(first)).code == 0
    before = _dump(scenario.db_url)
    result = cli("--config", str(config), "accounts", "import", str(again))
    assert result.code == 2 and "line 3, column class" in result.stderr
    assert _dump(scenario.db_url) == before


def test_an_account_longer_than_its_column_is_refused_on_every_engine(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    first = scenario.write_csv("a1.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    assert cli("--config", str(config), "accounts", "import", str(first)).code == 0
    before = _dump(scenario.db_url)
    bad = scenario.write_csv("a2.csv", ACCOUNTS_HEADER, ["C2,futures,Two", "A" * 250 + ",house,Long"])
    result = cli("--config", str(config), "accounts", "import", str(bad))
    assert result.code == 2
    assert "line 3, column account: is 250 characters long; at most 200" in result.stderr
    assert _dump(scenario.db_url) == before


MAX = format_amount(UINT256_MAX, 18)  # 2^256 - 1 base units of the 18-decimals TMMF


def _book_lines(start: int, rows: list[tuple[str, str, str]]) -> list[str]:
    return [f"E{start + i},2026-11-24,C1,{w},TMMF,{amount},{kind}," for i, (w, amount, kind) in enumerate(rows)]


def test_nine_uint256_maxima_are_refused_and_nothing_is_stored(cli: Any, scenario: Scenario) -> None:
    """Before: the file imported, then every run failed with `does not fit NUMERIC(78, 0)`."""
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    before = _dump(scenario.db_url)
    books = scenario.write_csv("books.csv", BOOKS_HEADER, _book_lines(1, [("w1", MAX, "deposit")] * 9))

    result = cli("--config", str(config), "books", "import", str(books), "--json")

    assert result.code == 2 and result.stdout == ""
    assert "nothing was imported" in result.stderr
    assert "line 3, column amount: the book balance of wallet w1 x asset TMMF" in result.stderr
    assert _dump(scenario.db_url) == before


@pytest.mark.parametrize(
    ("stored", "incoming", "where"),
    [
        # The ledger already holds the most a wallet can; one more base unit crosses.
        ([("w1", MAX, "deposit")], [("w2", MAX, "deposit"), ("w1", "0.000000000000000001", "adjustment")], "line 3"),
        # The same bound below zero.
        ([("w1", "-" + MAX, "withdrawal")], [("w1", "-0.000000000000000001", "withdrawal")], "line 2"),
    ],
)
def test_a_book_balance_beyond_uint256_is_refused_counting_the_ledger(
    cli: Any, scenario: Scenario, stored: list[tuple[str, str, str]], incoming: list[tuple[str, str, str]], where: str
) -> None:
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    first = scenario.write_csv("first.csv", BOOKS_HEADER, _book_lines(1, stored))
    assert cli("--config", str(config), "books", "import", str(first)).code == 0
    before = _dump(scenario.db_url)
    bad = scenario.write_csv("bad.csv", BOOKS_HEADER, _book_lines(100, incoming))

    result = cli("--config", str(config), "books", "import", str(bad))

    assert result.code == 2
    assert f"{where}, column amount: the book balance of wallet w1 x asset TMMF" in result.stderr, result.stderr
    assert f"ledger before this file: {'-' if stored[0][1].startswith('-') else ''}{UINT256_MAX}" in result.stderr
    assert _dump(scenario.db_url) == before


def test_a_file_that_ends_within_the_bound_imports(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    assert cli("--config", str(config), "accounts", "import", str(config.parent / "accounts.csv")).code == 0
    first = scenario.write_csv("first.csv", BOOKS_HEADER, _book_lines(1, [("w1", MAX, "deposit")]))
    assert cli("--config", str(config), "books", "import", str(first)).code == 0
    # Above the bound after its first line, back at it after the second: the balance is the sum.
    more = scenario.write_csv(
        "more.csv", BOOKS_HEADER, _book_lines(10, [("w1", "5", "deposit"), ("w1", "-5", "withdrawal")])
    )
    assert cli("--config", str(config), "books", "import", str(more)).code == 0
    ledger = Ledger(scenario.db_url)
    assert ledger.book_balances() == {("w1", "TMMF"): UINT256_MAX}
    ledger.close()


def test_init_is_idempotent(cli: Any, scenario: Scenario) -> None:
    config = _config(scenario)
    versions = []
    for _ in range(2):
        result = cli("--config", str(config), "init", "--json")
        assert result.code == 0, result.stderr
        doc = json.loads(result.stdout)
        versions.append((doc["previous_version"], doc["schema_version"]))
    newest = schema.version_number(schema.head())
    assert newest >= 2 and versions == [(0, newest), (newest, newest)]
    assert "reconciler.toml" in [p.name for p in config.parent.iterdir()]
