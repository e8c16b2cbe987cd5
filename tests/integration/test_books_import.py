"""`books import` streams a file of any length into one transaction: all of it or nothing, on
SQLite and PostgreSQL; the same bytes twice are a no-op; book balances sum exactly."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from reconciler.domain import UINT256_MAX, AccountRow, BookRow, EntryKind, SegClass
from reconciler.inputs.books import BOOKS_CHUNK_ROWS
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, new_address

# More lines than two chunks of the import, so that the last chunk comes after others were
# already written inside the transaction.
ROWS = 2 * BOOKS_CHUNK_ROWS + 500


def _ready(cli: Any, scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_token("TMMF", "eth", "0x6B175474E89094C44Da98b954EedeAC495271d0F", 18, kind="mmf")
    scenario.add_wallet("w1", "eth", new_address())
    scenario.add_wallet("w2", "eth", new_address(), "house")
    config = scenario.write()
    assert cli("--config", str(config), "init").code == 0
    accounts = scenario.write_csv("accounts.csv", ACCOUNTS_HEADER, ["C1,futures,One", "H1,house,House"])
    result = cli("--config", str(config), "accounts", "import", str(accounts))
    assert result.code == 0, result.stderr
    return config


def _lines(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i:07d},2026-11-24,C1,w{1 + i % 2},USDC,1.5,deposit,row {i}" for i in range(start, start + count)]


def _counts(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        counts = {
            t: int(conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
            for t in ("book_entry", "import_batch")
        }
    engine.dispose()
    return counts


def test_a_multi_chunk_file_imports_whole(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    books = scenario.write_csv("books.csv", BOOKS_HEADER, _lines("E", ROWS))

    result = cli("--config", str(config), "books", "import", str(books), "--json")

    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["imported"] == ROWS and doc["already_imported"] is False
    ledger = Ledger(scenario.db_url)
    half = ROWS // 2
    assert ledger.book_balances() == {("w1", "USDC"): 1_500_000 * half, ("w2", "USDC"): 1_500_000 * half}
    ledger.close()
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT rows, sha256 FROM import_batch WHERE kind = 'books'")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(ROWS, doc["sha256"])]


def test_a_bad_line_at_the_end_of_a_multi_chunk_file_leaves_nothing(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    first = scenario.write_csv("first.csv", BOOKS_HEADER, ["K1,2026-11-24,C1,w1,USDC,10,deposit,kept"])
    assert cli("--config", str(config), "books", "import", str(first)).code == 0
    before = _counts(scenario.db_url)
    last = ROWS + 2  # header, then ROWS good lines, then this one
    books = scenario.write_csv(
        "books.csv", BOOKS_HEADER, [*_lines("E", ROWS), "E_BAD,2026-11-24,C1,w1,USDC,1.0000001,deposit,"]
    )

    result = cli("--config", str(config), "books", "import", str(books), "--json")

    assert result.code == 2 and result.stdout == ""
    assert "nothing was imported" in result.stderr
    assert f"line {last}, column amount: '1.0000001' has 7 fractional digits" in result.stderr
    assert _counts(scenario.db_url) == before == {"book_entry": 1, "import_batch": 2}


def test_a_balance_out_of_bounds_after_the_last_chunk_leaves_nothing(cli: Any, scenario: Scenario) -> None:
    """Every line is valid; only the total after the whole file is not: found after all the
    chunks were written, and all of them undone."""
    config = _ready(cli, scenario)
    before = _counts(scenario.db_url)
    huge = f"{UINT256_MAX // 10**18}.{UINT256_MAX % 10**18:018d}"  # 2^256 - 1 base units of TMMF
    books = scenario.write_csv(
        "books.csv",
        BOOKS_HEADER,
        [*_lines("E", ROWS), f"T1,2026-11-24,C1,w1,TMMF,{huge},deposit,", "T2,2026-11-24,C1,w1,TMMF,1,deposit,"],
    )

    result = cli("--config", str(config), "books", "import", str(books))

    assert result.code == 2
    assert f"line {ROWS + 3}, column amount: the book balance of wallet w1 x asset TMMF" in result.stderr
    assert _counts(scenario.db_url) == before


def test_duplicates_across_chunks_and_with_the_ledger_name_their_lines(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    first = scenario.write_csv("first.csv", BOOKS_HEADER, ["K1,2026-11-24,C1,w1,USDC,10,deposit,kept"])
    assert cli("--config", str(config), "books", "import", str(first)).code == 0
    before = _counts(scenario.db_url)
    lines = _lines("E", ROWS)
    lines.append("E0000003,2026-11-25,C1,w1,USDC,2,deposit,same id as line 5")  # line 5 is E0000003
    lines.append("K1,2026-11-25,C1,w1,USDC,2,deposit,already stored")
    lines.append("E0000003,2026-11-25,C1,w1,USDC,x,deposit,a third time and a bad amount")
    lines.append("E9,too short")
    books = scenario.write_csv("books.csv", BOOKS_HEADER, lines)

    result = cli("--config", str(config), "books", "import", str(books))

    assert result.code == 2
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert problems == [
        f"line {ROWS + 2}, column entry_id: 'E0000003' already appears on line 5",
        f"line {ROWS + 3}, column entry_id: 'K1' is already in the ledger; entry ids are unique forever",
        f"line {ROWS + 4}, column entry_id: 'E0000003' already appears on line 5",
        f"line {ROWS + 4}, column amount: 'x' is not a plain decimal amount (digits, optional '-' and one '.')",
        f"line {ROWS + 5}: expected 8 fields, found 2",
    ]
    assert _counts(scenario.db_url) == before


def test_many_bad_lines_are_counted_not_all_listed(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    bad = [f"B{i},2026-11-24,C1,w1,USDC,-1,deposit," for i in range(5000)]
    books = scenario.write_csv("books.csv", BOOKS_HEADER, bad)

    result = cli("--config", str(config), "books", "import", str(books))

    assert result.code == 2
    assert "line 2, column amount: a deposit is positive, not -1" in result.stderr
    assert result.stderr.rstrip().endswith("… and 4980 more problem(s)")  # 20 shown of 5000
    assert _counts(scenario.db_url)["book_entry"] == 0


def test_the_same_file_again_is_a_no_op(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    books = scenario.write_csv("books.csv", BOOKS_HEADER, _lines("E", 3))
    first = cli("--config", str(config), "books", "import", str(books), "--json")
    assert first.code == 0, first.stderr
    digest = json.loads(first.stdout)["sha256"]
    after_first = _counts(scenario.db_url)

    again = cli("--config", str(config), "books", "import", str(books), "--json")
    human = cli("--config", str(config), "books", "import", str(books))

    assert again.code == 0, again.stderr
    assert json.loads(again.stdout) == {"file": str(books), "sha256": digest, "imported": 0, "already_imported": True}
    assert human.code == 0 and human.stdout == ""
    assert f"{books}: already imported on " in human.stderr
    assert f"(sha256 {digest[:8]}…), nothing to do" in human.stderr
    assert _counts(scenario.db_url) == after_first

    # Other bytes with an id already stored are refused as before, and change nothing.
    other = scenario.write_csv("other.csv", BOOKS_HEADER, [*_lines("E", 1), *_lines("N", 1)])
    refused = cli("--config", str(config), "books", "import", str(other), "--json")
    assert refused.code == 2 and refused.stdout == ""
    assert "line 2, column entry_id: 'E0000000' is already in the ledger" in refused.stderr
    assert _counts(scenario.db_url) == after_first


def test_a_refused_file_is_not_taken_as_imported(cli: Any, scenario: Scenario) -> None:
    """Only an accepted import counts: a file refused once imports once it can."""
    config = _ready(cli, scenario)
    books = scenario.write_csv("books.csv", BOOKS_HEADER, ["E1,2026-11-24,C9,w1,USDC,1,deposit,"])
    assert cli("--config", str(config), "books", "import", str(books)).code == 2
    accounts = scenario.write_csv("more.csv", ACCOUNTS_HEADER, ["C9,futures,Nine"])
    assert cli("--config", str(config), "accounts", "import", str(accounts)).code == 0

    result = cli("--config", str(config), "books", "import", str(books), "--json")

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["imported"] == 1


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", "'\\t'")])
def test_a_file_with_another_delimiter_is_refused_with_a_hint(
    cli: Any, scenario: Scenario, delimiter: str, shown: str
) -> None:
    config = _ready(cli, scenario)
    before = _counts(scenario.db_url)
    rows = [line.replace(",", delimiter) for line in _lines("E", 2)]
    books = scenario.write_csv("books.csv", BOOKS_HEADER.replace(",", delimiter), rows)

    result = cli("--config", str(config), "books", "import", str(books))

    assert result.code == 2
    assert (
        f"line 1: columns are separated by {shown}, not ',' — wrong delimiter? save the file as comma-separated CSV"
    ) in result.stderr
    assert "missing column" not in result.stderr
    assert _counts(scenario.db_url) == before


def test_accounts_with_another_delimiter_get_the_hint(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    accounts = scenario.write_csv("a.csv", "account;class;name", ["C2;futures;Two"])
    result = cli("--config", str(config), "accounts", "import", str(accounts))
    assert result.code == 2
    assert "line 1: columns are separated by ';', not ','" in result.stderr


def test_a_file_that_is_not_utf8_names_the_byte(cli: Any, scenario: Scenario) -> None:
    config = _ready(cli, scenario)
    books = scenario.folder / "books.csv"
    good = (BOOKS_HEADER + "\n" + "\n".join(_lines("E", 2000)) + "\n").encode()
    books.write_bytes(good + "E9,2026-11-24,C1,w1,USDC,1,deposit,caf\xe9\n".encode("latin-1"))
    result = cli("--config", str(config), "books", "import", str(books))
    assert result.code == 2
    assert f"not UTF-8 text (byte {len(good) + len('E9,2026-11-24,C1,w1,USDC,1,deposit,caf')})" in result.stderr


# ------------------------------------------------------------------------- book balances


HUGE = [
    ("w1", "TMMF", 2**64 + 1),
    ("w1", "TMMF", 10**27 + 7),
    ("w1", "TMMF", -(2**70)),
    ("w2", "TMMF", UINT256_MAX),
    ("w2", "TMMF", -(2**255)),
    ("w2", "USDC", 2**63),
    ("w2", "USDC", 2**63),
    ("w1", "USDC", -(2**65) - 3),
]


def test_book_balances_sum_exactly_above_2_64_on_every_engine(db_url: str) -> None:
    """Summed by PostgreSQL over NUMERIC, in Python over SQLite's text: the same exact sums."""
    ledger = Ledger(db_url)
    ledger.init()
    ledger.import_accounts([AccountRow(2, "C1", SegClass.FUTURES, "One")], "accounts.csv", "0" * 64)
    rows = [
        BookRow(i + 2, f"E{i}", date(2026, 11, 24), "C1", w, a, amount, EntryKind.ADJUSTMENT, "", None)
        for i, (w, a, amount) in enumerate(HUGE)
    ]
    assert ledger.import_books(rows, "books.csv", "0" * 64) == len(HUGE)

    expected: dict[tuple[str, str], int] = {}
    for w, a, amount in HUGE:
        expected[(w, a)] = expected.get((w, a), 0) + amount
    balances = ledger.book_balances()
    ledger.close()

    assert balances == expected
    assert balances[("w2", "TMMF")] == UINT256_MAX - 2**255
    assert balances[("w2", "USDC")] == 2**64
    assert all(type(v) is int for v in balances.values())


def test_a_run_reads_the_books_as_committed_when_it_began(db_url: str) -> None:
    """A run reads its books chunk by chunk through a view taken at its start: an import
    committed meanwhile is not half in one chunk and missing from another; the wallets and
    assets no configured pair covers are summed alone, through the same view."""
    ledger = Ledger(db_url)
    ledger.init()
    ledger.import_accounts([AccountRow(2, "C1", SegClass.FUTURES, "One")], "accounts.csv", "0" * 64)

    def entries(first: int, items: list[tuple[str, str, int]]) -> list[BookRow]:
        return [
            BookRow(i + 2, f"E{first + i}", date(2026, 11, 24), "C1", w, a, amount, EntryKind.ADJUSTMENT, "", None)
            for i, (w, a, amount) in enumerate(items)
        ]

    ledger.import_books(entries(0, [("w1", "USDC", 5), ("w2", "USDC", 7), ("gone", "USDC", 3)]), "a.csv", "1" * 64)
    view = ledger.book_view()
    assert view.any_entries
    ledger.import_books(entries(10, [("w1", "USDC", 100), ("w3", "ETH", 9), ("gone", "USDC", 1)]), "b.csv", "2" * 64)

    assert ledger.book_sums_of(view, ["w1", "w2", "w3"]) == {("w1", "USDC"): 5, ("w2", "USDC"): 7}
    assert ledger.books_outside(view, lambda wallet, asset: wallet != "gone") == {("gone", "USDC"): 3}
    later = ledger.book_view()  # the next run sees both imports
    assert ledger.book_sums_of(later, ["w1", "w3"]) == {("w1", "USDC"): 105, ("w3", "ETH"): 9}
    assert ledger.books_outside(later, lambda wallet, asset: wallet != "gone") == {("gone", "USDC"): 4}
    ledger.close()


def test_an_empty_ledger_has_a_view_without_entries(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    view = ledger.book_view()
    assert not view.any_entries
    assert ledger.book_sums_of(view, ["w1"]) == {}
    assert ledger.books_outside(view, lambda wallet, asset: False) == {}
    ledger.close()
