"""The ledger on SQLite and PostgreSQL: exact amounts, all-or-nothing imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlmodel import Session, select

from reconciler.ledger import Ledger
from reconciler.ledger.models import BalanceSnapshot, Run
from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address

EXTREMES = [0, 1, -1, 2**63 - 1, 2**63, 2**64 + 1, 10**27 + 1, 2**256 - 1, -(2**256 - 1)]


@pytest.mark.parametrize("value", EXTREMES)
def test_amounts_round_trip_exactly(db_url: str, value: int) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    run = ledger.start_run()
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
    config = _config(scenario)
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
}


@pytest.mark.parametrize("case", sorted(BAD_BOOKS))
def test_a_bad_books_file_changes_nothing(cli: Any, scenario: Scenario, case: str) -> None:
    config = _config(scenario)
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
    config = _config(scenario)
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
    config = _config(scenario)
    first = scenario.write_csv("a1.csv", ACCOUNTS_HEADER, ["C1,futures,One"])
    again = scenario.write_csv("a2.csv", ACCOUNTS_HEADER, ["C2,futures,Two", "C1,house,One"])
    assert cli("--config", str(config), "accounts", "import", str(first)).code == 0
    before = _dump(scenario.db_url)
    result = cli("--config", str(config), "accounts", "import", str(again))
    assert result.code == 2 and "line 3, column class" in result.stderr
    assert _dump(scenario.db_url) == before


def test_init_is_idempotent(cli: Any, scenario: Scenario) -> None:
    config = _config(scenario)
    for _ in range(2):
        result = cli("--config", str(config), "init", "--json")
        assert result.code == 0 and json.loads(result.stdout)["schema_version"] == 1
    assert "reconciler.toml" in [p.name for p in config.parent.iterdir()]
