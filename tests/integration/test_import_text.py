"""Text that cannot be stored faithfully is refused by every import, on SQLite and PostgreSQL
alike, through the CLI: a NUL in any field (PostgreSQL cannot store one; SQLite would), another
control character, or a field longer than its column — 3 MB included, which csv's own limit used
to refuse without naming the column. The whole file is refused, nothing is stored, and the
message names the line and the column (the field, in JSON lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address

BIG = 3 * 1024 * 1024  # 3,145,728 characters
TABLES = ("import_batch", "account", "book_entry", "equity_balance", "offchain_balance", "instruction")


def _config(scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_wallet("w1", "eth", new_address(), approvers=[new_address()], threshold=1)
    return scenario.write()


def _counts(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
    finally:
        engine.dispose()


@pytest.fixture
def desk(cli: Any, scenario: Scenario) -> tuple[Any, Path, Scenario]:
    config = _config(scenario)
    assert cli("--config", str(config), "init").code == 0
    accounts = scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,Customer One", "H1,house,House"])
    assert cli("--config", str(config), "accounts", "import", str(accounts)).code == 0
    return cli, config, scenario


def _refused(desk: tuple[Any, Path, Scenario], command: str, name: str, text: str, *expected: str) -> str:
    cli, config, scenario = desk
    path = scenario.folder / name
    path.write_bytes(text.encode("utf-8"))
    before = _counts(scenario.db_url)
    result = cli("--config", str(config), *command.split(), str(path))
    assert result.code == 2, result.stderr[-500:]
    for part in expected:
        assert part in result.stderr, (part, result.stderr[-1000:])
    assert _counts(scenario.db_url) == before, "nothing of the file was stored"
    assert len(result.stderr) < 5_000, "a 3 MB field is never echoed"
    return str(result.stderr)


BOOK_OK = "E1,2026-11-24,C1,w1,USDC,1,deposit,fine"


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("E2,2026-11-24,C1,w1,USDC,1,deposit,a memo with \x00 inside", "memo"),
        ("E2\x00,2026-11-24,C1,w1,USDC,1,deposit,", "entry_id"),
        ("E2,2026-11-24,C1\x00,w1,USDC,1,deposit,", "account"),
        ("E2,2026-11-24,C1,w1,US\x00DC,1,deposit,", "asset"),
        ("E2,2026-11-24,C1,w1,USDC,1\x00,deposit,", "amount"),
    ],
)
def test_a_nul_in_any_books_field_refuses_the_file(desk: Any, line: str, column: str) -> None:
    _refused(
        desk,
        "books import",
        "books.csv",
        f"{BOOKS_HEADER}\n{BOOK_OK}\n{line}\n",
        f"line 3, column {column}: contains a NUL character",
    )


def test_control_characters_are_refused_but_a_tab_in_a_memo_is_text(desk: Any) -> None:
    _refused(
        desk,
        "books import",
        "books.csv",
        f"{BOOKS_HEADER}\n{BOOK_OK}\nE2,2026-11-24,C1,w1,USDC,1,deposit,\x1b[2J\n",
        "line 3, column memo: contains a control character (ESC",
    )
    _refused(
        desk,
        "books import",
        "books.csv",
        f'{BOOKS_HEADER}\nE2,2026-11-24,C1,w1,USDC,1,deposit,"two\nlines"\n',
        "column memo: contains a control character (a line break (LF)",
    )
    _refused(
        desk,
        "books import",
        "books.csv",
        f"{BOOKS_HEADER}\nE2\t,2026-11-24,C1,w1,USDC,1,deposit,\n",
        "line 2, column entry_id: contains a control character (a tab",
    )
    cli, config, scenario = desk
    books = scenario.write_csv("tab.csv", BOOKS_HEADER, ["E3,2026-11-24,C1,w1,USDC,1,deposit,a\ttab"])
    assert cli("--config", str(config), "books", "import", str(books)).code == 0


def test_a_3_mb_field_is_refused_naming_its_column_and_the_limit(desk: Any) -> None:
    _refused(
        desk,
        "books import",
        "books.csv",
        f"{BOOKS_HEADER}\n{BOOK_OK}\nE2,2026-11-24,C1,w1,USDC,1,deposit,{'m' * BIG}\n",
        "line 3, column memo: is 3,145,728 characters long; at most 1000 are allowed",
    )
    _refused(
        desk,
        "books import",
        "books.csv",
        f"{BOOKS_HEADER}\nE2,2026-11-24,C1,w1,{'A' * BIG},1,deposit,\n",
        "line 2, column asset: is 3,145,728 characters long; at most 1000 are allowed",
    )
    _refused(
        desk,
        "accounts import",
        "accounts.csv",
        f"{ACCOUNTS_HEADER}\nC2,futures,{'n' * BIG}\n",
        "line 2, column name: is 3,145,728 characters long; at most 1000 are allowed",
    )
    _refused(
        desk,
        "equity import",
        "equity.csv",
        f"date,account,cash_usd,open_trade_equity_usd\n2026-11-24,{'C' * BIG},1,0\n",
        "line 2, column account: is 3,145,728 characters long; at most 200 are allowed",
    )
    _refused(
        desk,
        "offchain import",
        "offchain.csv",
        f"date,class,depository,amount_usd\n2026-11-24,futures,{'B' * BIG},1\n",
        "line 2, column depository: is 3,145,728 characters long; at most 200 are allowed",
    )


def test_a_nul_is_refused_by_the_accounts_equity_and_offchain_imports(desk: Any) -> None:
    _refused(
        desk,
        "accounts import",
        "accounts.csv",
        f"{ACCOUNTS_HEADER}\nC2,futures,Two\nC3,futures,Th\x00ree\n",
        "line 3, column name: contains a NUL character",
    )
    _refused(
        desk,
        "equity import",
        "equity.csv",
        "date,account,cash_usd,open_trade_equity_usd\n2026-11-24,C1,1,0\n2026-11-25,C1\x00,1,0\n",
        "line 3, column account: contains a NUL character",
    )
    _refused(
        desk,
        "offchain import",
        "offchain.csv",
        "date,class,depository,amount_usd\n2026-11-24,futures,Bank A,1\n2026-11-24,futures,Bank\x00B,1\n",
        "line 3, column depository: contains a NUL character",
    )


def test_a_nul_in_an_instruction_line_is_refused_naming_the_field(desk: Any) -> None:
    fields = {"id": "i1", "chain": "eth", "wallet": "w1", "asset": "USDC", "to": new_address(), "amount": "1"}
    good = json.dumps({**fields, "valid_until": "2026-11-25T00:00:00Z", "signatures": []})
    escaped = good.replace('"id": "i1"', '"id": "i\\u00002"')
    raw = good.replace('"wallet": "w1"', '"wallet": "w\x001"')
    _refused(
        desk, "instructions import", "i.jsonl", f"{good}\n{escaped}\n", "line 2, field id: contains a NUL character"
    )
    _refused(
        desk, "instructions import", "i.jsonl", f"{good}\n{raw}\n", "line 2, field wallet: contains a NUL character"
    )
