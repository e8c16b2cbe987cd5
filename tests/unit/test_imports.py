"""CSV imports: a file yields rows only when every line is valid; errors name line and column."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from reconciler.domain import (
    MAX_ACCOUNT_LENGTH,
    MAX_ACCOUNT_NAME_LENGTH,
    MAX_ASSET_LENGTH,
    MAX_ENTRY_ID_LENGTH,
    MAX_MEMO_LENGTH,
    MAX_WALLET_LENGTH,
    UINT256_MAX,
    AccountRow,
    BookRow,
    EntryKind,
    SegClass,
    format_amount,
)
from reconciler.errors import InputError
from reconciler.inputs.books import (
    MAX_LISTED_PROBLEMS,
    BookStream,
    MemoryEntryIds,
    book_balance_problems,
    parse_accounts_csv,
    parse_books_csv,
)
from reconciler.inputs.config import load_settings
from reconciler.inputs.csvfile import file_lines, file_sha256
from reconciler.inputs.settings import Settings

USDC = "0x1773e1dDF200EFB0fafC1E372028AA623f95d2DE"
ARB_USDC = "0x042cbEd33A17aE69A84fBf37d880F2074b494d6e"
W1 = "0xeA3E1C24BBC66C2a2f4DE96e35920F0e1984cFa7"
W2 = "0x27ECfCF2fb4796549b8C8cfd2840B1dE5CF7f859"
W3 = "0x27C5342cf9ec9345FCBcD7fAdA407e23ad3C1243"
UNCONFIGURED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TX = "0x" + "ab" * 32

CONFIG = f"""
[chains.eth]
kind = "evm"
rpc_urls = ["http://127.0.0.1:8545"]
chain_id = 31337

[chains.arb]
kind = "evm"
rpc_urls = ["http://127.0.0.1:8546"]
chain_id = 42161

[assets.USDC]
chain = "eth"
address = "{USDC}"
decimals = 6
kind = "stablecoin"

[assets.ETH]
chain = "eth"
native = true
kind = "native"

[assets.ARB_USDC]
chain = "arb"
address = "{ARB_USDC}"
decimals = 6
kind = "stablecoin"

[wallets.w1]
chain = "eth"
address = "{W1}"
class = "futures"

[wallets.w2]
chain = "eth"
address = "{W2}"
class = "house"

[wallets.w3]
chain = "arb"
address = "{W3}"
class = "cleared_swaps"
"""

HEADER = "entry_id,date,account,wallet,asset,amount,kind,memo"
ACCOUNTS = frozenset({"C1", "C2", "HOUSE"})


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    path = tmp_path / "reconciler.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_settings(str(path))


def _books(*lines: str, header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def _book_problems(settings: Settings, text: str, stored: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(InputError) as exc_info:
        parse_books_csv(text, "books.csv", settings, ACCOUNTS, stored)
    err = exc_info.value
    assert err.source == "books.csv"
    assert str(err).startswith("books.csv: rejected, nothing was imported:")
    for problem in err.problems:
        assert problem in str(err)
    return err.problems


def _only_problem(settings: Settings, text: str) -> str:
    problems = _book_problems(settings, text)
    assert len(problems) == 1, problems
    return problems[0]


# ----------------------------------------------------------------------------- valid books


def test_valid_books_parse_to_exact_base_units(settings: Settings) -> None:
    text = _books(
        "E1,2026-11-24,C1,w1,USDC,1250000.50,deposit,initial margin",
        "E2,2026-11-24,C1,w1,USDC,-250000.5,withdrawal,",
        "E3,2026-11-25,HOUSE,w2,ETH,1000000000.000000000000000001,adjustment,",
        'E4,2026-11-25,C2,w1,USDC,-0.000001,distribution,"memo, with comma"',
    )
    rows = parse_books_csv(text, "books.csv", settings, ACCOUNTS)
    assert rows == [
        BookRow(
            2,
            "E1",
            date(2026, 11, 24),
            "C1",
            "w1",
            "USDC",
            1_250_000_500_000,
            EntryKind.DEPOSIT,
            "initial margin",
            None,
        ),
        BookRow(3, "E2", date(2026, 11, 24), "C1", "w1", "USDC", -250_000_500_000, EntryKind.WITHDRAWAL, "", None),
        BookRow(4, "E3", date(2026, 11, 25), "HOUSE", "w2", "ETH", 10**27 + 1, EntryKind.ADJUSTMENT, "", None),
        BookRow(5, "E4", date(2026, 11, 25), "C2", "w1", "USDC", -1, EntryKind.DISTRIBUTION, "memo, with comma", None),
    ]


def test_optional_tx_hash_column_and_any_column_order(settings: Settings) -> None:
    header = "memo,tx_hash,kind,amount,asset,wallet,account,date,entry_id"
    text = _books(
        f"m,{TX.upper().replace('0X', '0x')},deposit,5,USDC,w1,C1,2026-11-24,E1",
        ",,deposit,6,USDC,w1,C1,2026-11-24,E2",
        header=header,
    )
    rows = parse_books_csv(text, "books.csv", settings, ACCOUNTS)
    assert [(r.entry_id, r.amount, r.tx_hash, r.memo) for r in rows] == [
        ("E1", 5_000_000, TX, "m"),
        ("E2", 6_000_000, None, ""),
    ]


def test_header_only_gives_no_rows(settings: Settings) -> None:
    assert parse_books_csv(HEADER + "\n", "books.csv", settings, ACCOUNTS) == []
    assert parse_books_csv(HEADER, "books.csv", settings, ACCOUNTS) == []


def test_byte_order_mark_and_crlf_are_accepted(settings: Settings) -> None:
    text = "\ufeff" + HEADER + "\r\nE1,2026-11-24,C1,w1,USDC,1,deposit,x\r\n"
    rows = parse_books_csv(text, "books.csv", settings, ACCOUNTS)
    assert [(r.entry_id, r.amount) for r in rows] == [("E1", 1_000_000)]


def test_customer_entry_in_a_house_wallet_is_not_an_input_error(settings: Settings) -> None:
    rows = parse_books_csv(_books("E1,2026-11-24,C1,w2,USDC,1,deposit,"), "books.csv", settings, ACCOUNTS)
    assert rows[0].wallet == "w2"


def test_wallet_given_as_checksummed_address_resolves_to_its_name(settings: Settings) -> None:
    rows = parse_books_csv(_books(f"E1,2026-11-24,C1,{W2},USDC,1,deposit,"), "books.csv", settings, ACCOUNTS)
    assert rows[0].wallet == "w2"


def test_empty_file_is_rejected(settings: Settings) -> None:
    problems = _book_problems(settings, "")
    assert problems[0].startswith("line 1")
    assert "empty" in problems[0]


# ----------------------------------------------------------------------------- header problems


def test_missing_column_is_rejected(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit", header=HEADER[: -len(",memo")]))
    assert problem.startswith("line 1")
    assert "missing column(s) memo" in problem


def test_unknown_extra_column_is_rejected(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit,,x", header=HEADER + ",note"))
    assert problem.startswith("line 1")
    assert "unknown column(s) note" in problem


def test_duplicated_column_is_rejected(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit,,x", header=HEADER + ",memo"))
    assert problem.startswith("line 1")
    assert "memo" in problem and "twice" in problem


# ----------------------------------------------------------------------------- one bad field per file


@pytest.mark.parametrize(
    ("line", "column", "needle"),
    [
        ("E1,2026-11-24,C1,nowallet,USDC,1,deposit,", "wallet", "unknown wallet 'nowallet'"),
        ("E1,2026-11-24,C1,w1,DAI,1,deposit,", "asset", "unknown asset 'DAI'"),
        ("E1,2026-11-24,C1,w1,ARB_USDC,1,deposit,", "asset", "chain arb"),
        ("E1,2026-11-24,C1,w3,USDC,1,deposit,", "asset", "chain eth"),
        ("E1,2026-11-24,NOBODY,w1,USDC,1,deposit,", "account", "unknown account 'NOBODY'"),
        ("E1,2026-11-24,C1,w1,USDC,1.1234567,deposit,", "amount", "7 fractional digits; the asset has 6"),
        ("E1,2026-11-24,C1,w1,USDC,1e5,deposit,", "amount", "not a plain decimal"),
        ("E1,2026-11-24,C1,w1,USDC,+5,deposit,", "amount", "not a plain decimal"),
        ('E1,2026-11-24,C1,w1,USDC,"1,000",deposit,', "amount", "not a plain decimal"),
        ("E1,2026-11-24,C1,w1,USDC, 5,deposit,", "amount", "not a plain decimal"),
        ("E1,2026-11-24,C1,w1,USDC,,deposit,", "amount", "not a plain decimal"),
        ("E1,2026-11-24,C1,w1,USDC,-5,deposit,", "amount", "deposit is positive"),
        ("E1,2026-11-24,C1,w1,USDC,0,deposit,", "amount", "deposit is positive"),
        ("E1,2026-11-24,C1,w1,USDC,5,withdrawal,", "amount", "withdrawal is negative"),
        ("E1,2026-11-24,C1,w1,USDC,5,payment,", "kind", "'payment' is not one of"),
        ("E1,2026-11-24,C1,w1,USDC,5,Deposit,", "kind", "'Deposit' is not one of"),
        ("E1,2026-13-01,C1,w1,USDC,5,deposit,", "date", "'2026-13-01'"),
        ("E1,2026-02-30,C1,w1,USDC,5,deposit,", "date", "'2026-02-30'"),
        ("E1,24/11/2026,C1,w1,USDC,5,deposit,", "date", "not an ISO date"),
        ("E1,20261124,C1,w1,USDC,5,deposit,", "date", "not an ISO date"),
        ("E1,,C1,w1,USDC,5,deposit,", "date", "not an ISO date"),
        (",2026-11-24,C1,w1,USDC,5,deposit,", "entry_id", "is empty"),
    ],
)
def test_one_bad_field_rejects_the_file_naming_line_and_column(
    settings: Settings, line: str, column: str, needle: str
) -> None:
    problem = _only_problem(settings, _books("E0,2026-11-24,C1,w1,USDC,1,deposit,fine", line))
    assert problem.startswith(f"line 3, column {column}:"), problem
    assert needle in problem


def test_malformed_tx_hash_is_rejected(settings: Settings) -> None:
    text = _books("E1,2026-11-24,C1,w1,USDC,5,deposit,,0x1234", header=HEADER + ",tx_hash")
    problem = _only_problem(settings, text)
    assert problem.startswith("line 2, column tx_hash:")
    assert "32-byte hash" in problem


def test_amounts_are_checked_against_the_assets_own_decimals(settings: Settings) -> None:
    # 18 decimals is fine for ETH, and one more is not.
    assert parse_books_csv(_books("E1,2026-11-24,C1,w1,ETH,0.000000000000000001,deposit,"), "b", settings, ACCOUNTS)
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,ETH,0.0000000000000000001,deposit,"))
    assert problem.startswith("line 2, column amount:")


def test_duplicate_entry_id_in_the_file_names_both_lines(settings: Settings) -> None:
    text = _books(
        "E1,2026-11-24,C1,w1,USDC,1,deposit,",
        "E2,2026-11-24,C1,w1,USDC,1,deposit,",
        "E1,2026-11-25,C1,w1,USDC,2,deposit,",
    )
    problem = _only_problem(settings, text)
    assert problem.startswith("line 4, column entry_id:")
    assert "'E1'" in problem
    assert "line 2" in problem


def test_entry_id_already_in_the_ledger_is_rejected(settings: Settings) -> None:
    problems = _book_problems(settings, _books("E9,2026-11-24,C1,w1,USDC,1,deposit,"), stored=frozenset({"E9"}))
    assert len(problems) == 1
    assert problems[0].startswith("line 2, column entry_id:")
    assert "already in the ledger" in problems[0]


def test_non_checksummed_wallet_address_shows_the_checksummed_form(settings: Settings) -> None:
    problem = _only_problem(settings, _books(f"E1,2026-11-24,C1,{W1.lower()},USDC,1,deposit,"))
    assert problem.startswith("line 2, column wallet:")
    assert W1 in problem


def test_address_of_no_configured_wallet_is_rejected(settings: Settings) -> None:
    problem = _only_problem(settings, _books(f"E1,2026-11-24,C1,{UNCONFIGURED},USDC,1,deposit,"))
    assert problem.startswith("line 2, column wallet:")
    assert UNCONFIGURED in problem


def test_wrong_number_of_fields_names_the_line(settings: Settings) -> None:
    text = _books(
        "E1,2026-11-24,C1,w1,USDC,1,deposit,",
        "E2,2026-11-24,C1,w1,USDC,1,deposit",
        "E3,2026-11-24,C1,w1,USDC,1,deposit,,extra",
    )
    problems = _book_problems(settings, text)
    assert problems == [
        "line 3: expected 8 fields, found 7",
        "line 4: expected 8 fields, found 9",
    ]


def test_every_problem_in_the_file_is_reported(settings: Settings) -> None:
    text = _books(
        "E1,2026-11-24,C1,w1,USDC,1,deposit,ok",
        "E2,2026-13-01,C1,w1,USDC,1,deposit,",
        "E3,2026-11-24,NOBODY,w1,USDC,1,deposit,",
        "E4,2026-11-24,C1,w1,USDC,1.1234567,deposit,",
        "E1,2026-11-24,C1,w1,USDC,-1,deposit,",
        "E6,2026-11-24,C1,w1,USDC,1,deposit,ok",
    )
    problems = _book_problems(settings, text)
    assert [p.split(":", 1)[0] for p in problems] == [
        "line 3, column date",
        "line 4, column account",
        "line 5, column amount",
        "line 6, column entry_id",
        "line 6, column amount",
    ]


def test_several_problems_on_one_line_are_all_reported(settings: Settings) -> None:
    problems = _book_problems(settings, _books("E1,24/11/2026,NOBODY,nowallet,DAI,1,bogus,"))
    columns = [p.split(":", 1)[0] for p in problems]
    assert columns == [
        "line 2, column date",
        "line 2, column account",
        "line 2, column wallet",
        "line 2, column asset",
        "line 2, column kind",
    ]


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(settings: Settings) -> None:
    text = HEADER + "\n\nE1,2026-11-24,C1,w1,USDC,1,deposit,\n\nE2,2026-11-24,C1,w1,USDC,x,deposit,\n"
    problem = _only_problem(settings, text)
    assert problem.startswith("line 5, column amount:")


# ----------------------------------------------------------------------------- accounts


def test_valid_accounts_parse() -> None:
    text = "account,class,name\nC1,futures,Customer One\nC2,cleared_swaps,\nH,house,The Firm\nF,foreign_futures,F\n"
    assert parse_accounts_csv(text, "accounts.csv") == [
        AccountRow(2, "C1", SegClass.FUTURES, "Customer One"),
        AccountRow(3, "C2", SegClass.CLEARED_SWAPS, ""),
        AccountRow(4, "H", SegClass.HOUSE, "The Firm"),
        AccountRow(5, "F", SegClass.FOREIGN_FUTURES, "F"),
    ]


def test_accounts_header_only_gives_no_rows() -> None:
    assert parse_accounts_csv("account,class,name\n", "accounts.csv") == []


def _account_problems(text: str) -> list[str]:
    with pytest.raises(InputError) as exc_info:
        parse_accounts_csv(text, "accounts.csv")
    assert exc_info.value.source == "accounts.csv"
    return exc_info.value.problems


def test_account_with_a_bad_class_is_rejected() -> None:
    problems = _account_problems("account,class,name\nC1,futures,A\nC2,future,B\n")
    assert len(problems) == 1
    assert problems[0].startswith("line 3, column class:")
    assert "'future'" in problems[0]


def test_duplicate_account_names_both_lines() -> None:
    problems = _account_problems("account,class,name\nC1,futures,A\nC2,house,B\nC1,house,C\n")
    assert len(problems) == 1
    assert problems[0].startswith("line 4, column account:")
    assert "line 2" in problems[0]


def test_accounts_missing_column_is_rejected() -> None:
    problems = _account_problems("account,name\nC1,A\n")
    assert problems == ["line 1: missing column(s) class"]


def test_accounts_unknown_column_is_rejected() -> None:
    problems = _account_problems("account,class,name,email\nC1,futures,A,a@example\n")
    assert len(problems) == 1
    assert problems[0].startswith("line 1:") and "email" in problems[0]


def test_accounts_all_problems_reported() -> None:
    problems = _account_problems("account,class,name\n,futures,A\nC1,nope,B\nC2,house\n")
    assert [p.split(":", 1)[0] for p in problems] == [
        "line 2, column account",
        "line 3, column class",
        "line 4",
    ]


def test_address_configured_on_two_chains_must_be_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    path = tmp_path / "reconciler.toml"
    path.write_text(CONFIG.replace(W3, W1), encoding="utf-8")
    settings = load_settings(str(path))
    problem = _only_problem(settings, _books(f"E1,2026-11-24,C1,{W1},USDC,1,deposit,"))
    assert problem.startswith("line 2, column wallet:")
    assert "w1" in problem and "w3" in problem
    # By name it is unambiguous.
    assert parse_books_csv(_books("E1,2026-11-24,C1,w1,USDC,1,deposit,"), "b", settings, ACCOUNTS)[0].wallet == "w1"


# ----------------------------------------------------------------------------- sizes


def test_an_amount_of_thousands_of_digits_is_a_line_and_column_error(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC," + "1" * 5000 + ",deposit,"))
    assert problem.startswith("line 2, column amount:")
    assert "5000 digits before the point" in problem
    assert len(problem) < 300


def test_an_amount_of_79_digits_is_a_line_and_column_error(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,ETH," + "1" * 79 + ",deposit,"))
    assert problem.startswith("line 2, column amount:")
    assert "at most 78" in problem


@pytest.mark.parametrize(
    ("column", "limit", "make_line"),
    [
        ("entry_id", MAX_ENTRY_ID_LENGTH, lambda v: f"{v},2026-11-24,C1,w1,USDC,1,deposit,"),
        ("memo", MAX_MEMO_LENGTH, lambda v: f"E1,2026-11-24,C1,w1,USDC,1,deposit,{v}"),
    ],
)
def test_book_columns_longer_than_their_limit_are_refused_on_every_engine(
    settings: Settings, column: str, limit: int, make_line: Any
) -> None:
    assert parse_books_csv(_books(make_line("x" * limit)), "books.csv", settings, ACCOUNTS)
    problem = _only_problem(settings, _books(make_line("x" * (limit + 1))))
    assert problem.startswith(f"line 2, column {column}:")
    assert f"is {limit + 1:,} characters long; at most {limit}" in problem


def test_a_book_account_longer_than_its_column_is_named_as_such(settings: Settings) -> None:
    long_account = "C" * (MAX_ACCOUNT_LENGTH + 1)
    problem = _only_problem(settings, _books(f"E1,2026-11-24,{long_account},w1,USDC,1,deposit,"))
    assert problem.startswith("line 2, column account:")
    assert f"at most {MAX_ACCOUNT_LENGTH}" in problem


def test_accounts_longer_than_their_columns_are_refused() -> None:
    text = "\n".join(
        [
            "account,class,name",
            f"{'A' * MAX_ACCOUNT_LENGTH},futures,{'n' * MAX_ACCOUNT_NAME_LENGTH}",
            f"{'B' * (MAX_ACCOUNT_LENGTH + 1)},futures,ok",
            f"C1,house,{'n' * (MAX_ACCOUNT_NAME_LENGTH + 1)}",
        ]
    )
    problems = _account_problems(text + "\n")
    assert [p.split(":", 1)[0] for p in problems] == ["line 3, column account", "line 4, column name"]
    assert f"at most {MAX_ACCOUNT_LENGTH}" in problems[0]
    assert f"at most {MAX_ACCOUNT_NAME_LENGTH}" in problems[1]


def test_the_ledger_columns_are_sized_from_the_import_limits() -> None:
    from reconciler.ledger.models import Account, BookEntry

    def length(model: Any, name: str) -> int | None:
        value: int | None = getattr(model.__table__.c[name].type, "length", None)
        return value

    assert length(BookEntry, "entry_id") == MAX_ENTRY_ID_LENGTH
    assert length(BookEntry, "account") == length(Account, "account") == MAX_ACCOUNT_LENGTH
    assert length(BookEntry, "wallet") == MAX_WALLET_LENGTH
    assert length(BookEntry, "asset") == MAX_ASSET_LENGTH
    # Unbounded columns hold whatever the import lets through.
    for model, name, limit in ((BookEntry, "memo", MAX_MEMO_LENGTH), (Account, "name", MAX_ACCOUNT_NAME_LENGTH)):
        stored = length(model, name)
        assert stored is None or stored >= limit


# ----------------------------------------------------------------------------- book balance bound


def _row(line: int, amount: int, wallet: str = "w1", asset: str = "USDC") -> BookRow:
    kind = EntryKind.DEPOSIT if amount > 0 else EntryKind.WITHDRAWAL if amount < 0 else EntryKind.ADJUSTMENT
    return BookRow(line, f"E{line}", date(2026, 11, 24), "C1", wallet, asset, amount, kind, "", None)


def test_balance_within_uint256_passes() -> None:
    assert book_balance_problems({}, [_row(2, UINT256_MAX)]) == []
    assert book_balance_problems({("w1", "USDC"): -UINT256_MAX}, [_row(2, 2 * UINT256_MAX)]) == []


def test_the_line_that_crosses_the_bound_is_named_with_wallet_and_asset() -> None:
    rows = [_row(2, UINT256_MAX), _row(3, 1, asset="ETH"), _row(4, 1), _row(5, 5)]
    problems = book_balance_problems({}, rows)
    assert len(problems) == 1
    assert problems[0].startswith("line 4, column amount: the book balance of wallet w1 x asset USDC")
    assert str(UINT256_MAX + 6) in problems[0]
    assert "above 2^256" in problems[0]


def test_the_ledgers_balance_counts_toward_the_bound() -> None:
    problems = book_balance_problems({("w1", "USDC"): UINT256_MAX}, [_row(2, 1)])
    assert len(problems) == 1 and problems[0].startswith("line 2, column amount:")
    assert "ledger before this file: " + str(UINT256_MAX) in problems[0]
    # Another pair's balance does not.
    assert book_balance_problems({("w2", "USDC"): UINT256_MAX, ("w1", "ETH"): UINT256_MAX}, [_row(2, 1)]) == []


def test_a_negative_balance_has_the_same_bound() -> None:
    problems = book_balance_problems({("w1", "USDC"): -UINT256_MAX}, [_row(7, -1)])
    assert len(problems) == 1 and problems[0].startswith("line 7, column amount:")
    assert "below" in problems[0]


def test_only_the_balance_after_the_file_counts_not_the_order_of_its_lines() -> None:
    # Above the bound after line 2, back within it after line 3: the balance is the sum.
    assert book_balance_problems({("w1", "USDC"): UINT256_MAX}, [_row(2, 5), _row(3, -5)]) == []
    # Out, back in, out again: the line named is the last crossing, from which it stays out.
    rows = [_row(2, UINT256_MAX), _row(3, 1), _row(4, -1), _row(5, 1)]
    problems = book_balance_problems({}, rows)
    assert len(problems) == 1 and problems[0].startswith("line 5, column amount:")


def test_each_pair_out_of_range_is_reported_in_line_order() -> None:
    rows = [_row(2, UINT256_MAX, "w2"), _row(3, UINT256_MAX), _row(4, 1), _row(5, 1, "w2")]
    problems = book_balance_problems({}, rows)
    assert [p.split(":", 1)[0] for p in problems] == ["line 4, column amount", "line 5, column amount"]
    assert "wallet w1" in problems[0] and "wallet w2" in problems[1]


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    existing=st.integers(min_value=-UINT256_MAX, max_value=UINT256_MAX),
    amounts=st.lists(st.integers(min_value=-UINT256_MAX, max_value=UINT256_MAX), max_size=8),
)
def test_a_file_is_refused_exactly_when_its_final_balance_leaves_the_bound(existing: int, amounts: list[int]) -> None:
    rows = [_row(i + 2, a) for i, a in enumerate(amounts)]
    problems = book_balance_problems({("w1", "USDC"): existing}, rows)
    out = abs(existing + sum(amounts)) > UINT256_MAX
    assert bool(problems) == out
    if out:
        assert len(problems) == 1
        line = int(problems[0].split(",", 1)[0].removeprefix("line "))
        running = existing + sum(amounts[: line - 1])
        assert abs(running) > UINT256_MAX  # out of range from the named line to the end
        assert all(abs(existing + sum(amounts[:k])) > UINT256_MAX for k in range(line - 1, len(amounts) + 1))


def test_a_file_of_uint256_maxima_is_refused_at_the_second_line(settings: Settings) -> None:
    lines = [f"E{i},2026-11-24,C1,w1,ETH,{format_amount(UINT256_MAX, 18)},deposit," for i in range(9)]
    rows = parse_books_csv(_books(*lines), "books.csv", settings, ACCOUNTS)
    problems = book_balance_problems({}, rows)
    assert len(problems) == 1 and problems[0].startswith("line 3, column amount: the book balance of wallet w1")


# ----------------------------------------------------------------------------- streaming


def _stream(settings: Settings, text: str, chunk_rows: int, stored: frozenset[str]) -> tuple[list[BookRow], list[str]]:
    stream = BookStream(text, "books.csv", settings, ACCOUNTS, MemoryEntryIds(stored), chunk_rows=chunk_rows)
    rows = [row for chunk in stream.chunks() for row in chunk]
    return rows, stream.problems.items


MIXED = _books(
    "E1,2026-11-24,C1,w1,USDC,1,deposit,ok",
    "E2,2026-13-01,C1,w1,USDC,1,deposit,",
    "S1,2026-11-24,C1,w1,USDC,1,deposit,stored",
    "E1,2026-11-24,C1,w1,USDC,x,deposit,dup of line 2",
    "E3,2026-11-24,C1,w1,USDC,1,deposit",
    "",
    "S1,2026-11-24,C1,w1,USDC,1,deposit,stored again",
    "E4,2026-11-24,NOBODY,w1,USDC,1,deposit,",
    "E4,2026-11-24,C1,w1,USDC,1,deposit,dup of a bad line",
    "E4,2026-11-24,C1,w1,USDC,1,deposit,and again",
    ",2026-11-24,C1,w1,USDC,1,deposit,",
    "E5,2026-11-24,C1,w1,USDC,1,deposit,ok",
)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5, 10_000])
def test_chunks_give_the_rows_and_problems_of_a_whole_file(settings: Settings, chunk_rows: int) -> None:
    rows, problems = _stream(settings, MIXED, chunk_rows, frozenset({"S1"}))
    assert [(r.line, r.entry_id) for r in rows] == [(2, "E1"), (13, "E5")]
    assert problems == [
        "line 3, column date: '2026-13-01': month must be in 1..12",
        "line 4, column entry_id: 'S1' is already in the ledger; entry ids are unique forever",
        "line 5, column entry_id: 'E1' already appears on line 2",
        "line 5, column amount: 'x' is not a plain decimal amount (digits, optional '-' and one '.')",
        "line 6: expected 8 fields, found 7",
        "line 8, column entry_id: 'S1' is already in the ledger; entry ids are unique forever",
        "line 9, column account: unknown account 'NOBODY'; import it first with `accounts import`",
        "line 10, column entry_id: 'E4' already appears on line 9",
        "line 11, column entry_id: 'E4' already appears on line 9",
        "line 12, column entry_id: is empty",
    ]


def test_a_stream_reads_lines_as_they_are_consumed(settings: Settings) -> None:
    """Chunks come out before the file is read to its end (memory stays bounded)."""
    read: list[int] = []

    def lines() -> Iterator[str]:
        yield HEADER + "\n"
        for i in range(10):
            read.append(i)
            yield f"E{i},2026-11-24,C1,w1,USDC,1,deposit,\n"

    stream = BookStream(lines(), "books.csv", settings, ACCOUNTS, MemoryEntryIds(), chunk_rows=3)
    chunks = stream.chunks()
    first = next(chunks)
    assert [r.entry_id for r in first] == ["E0", "E1", "E2"]
    assert len(read) <= 4
    assert [len(c) for c in chunks] == [3, 3, 1]
    stream.check()


def test_problems_beyond_the_listed_ones_are_counted(settings: Settings) -> None:
    text = _books(*(f"E{i},2026-11-24,C1,w1,USDC,-1,deposit," for i in range(MAX_LISTED_PROBLEMS + 50)))
    with pytest.raises(InputError) as exc_info:
        parse_books_csv(text, "books.csv", settings, ACCOUNTS)
    err = exc_info.value
    assert len(err.problems) == MAX_LISTED_PROBLEMS
    assert err.problems[0] == "line 2, column amount: a deposit is positive, not -1"
    assert str(err).splitlines()[-1] == f"  … and {MAX_LISTED_PROBLEMS + 50 - 20} more problem(s)"
    assert len(str(err).splitlines()) == 1 + 20 + 1


# ----------------------------------------------------------------------------- delimiter


SEMICOLON_HINT = "line 1: columns are separated by ';', not ',' — wrong delimiter? save the file as comma-separated CSV"


def test_a_semicolon_books_file_gets_the_delimiter_hint(settings: Settings) -> None:
    text = _books("E1;2026-11-24;C1;w1;USDC;1,5;deposit;", header=HEADER.replace(",", ";"))
    assert _book_problems(settings, text) == [SEMICOLON_HINT]


def test_a_tab_separated_accounts_file_gets_the_delimiter_hint() -> None:
    problems = _account_problems("account\tclass\tname\nC1\tfutures\tOne\n")
    assert problems == [
        "line 1: columns are separated by '\\t', not ',' — wrong delimiter? save the file as comma-separated CSV"
    ]


def test_equity_and_offchain_files_get_the_delimiter_hint() -> None:
    from reconciler.inputs.segregation import parse_equity_csv, parse_offchain_csv

    with pytest.raises(InputError) as equity:
        parse_equity_csv("date;account;cash_usd;open_trade_equity_usd\n2026-11-24;C1;1;2\n", "e.csv", {})
    assert equity.value.problems == [SEMICOLON_HINT]
    with pytest.raises(InputError) as offchain:
        parse_offchain_csv("date;class;depository;amount_usd\n2026-11-24;futures;Bank;1\n", "o.csv")
    assert offchain.value.problems == [SEMICOLON_HINT]


def test_no_hint_when_the_other_delimiter_would_not_give_the_columns(settings: Settings) -> None:
    # A semicolon in a column name is only a wrong header, not a wrong delimiter.
    problems = _book_problems(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit", header="entry_id;x,date"))
    assert problems[0].startswith("line 1: missing column(s) entry_id, account, wallet")
    problems = _account_problems("account;class,name\nC1,futures\n")
    assert problems[0] == "line 1: missing column(s) account, class"


# ----------------------------------------------------------------------------- files


def test_file_digest_and_lines_match_the_bytes(tmp_path: Path) -> None:
    raw = ("\ufeff" + HEADER + '\r\nE1,2026-11-24,C1,w1,USDC,1,deposit,"two\r\nlines"\rE2,x\n').encode()
    path = tmp_path / "books.csv"
    path.write_bytes(raw)
    digest = file_sha256(path)
    assert digest == hashlib.sha256(raw).hexdigest()
    assert list(file_lines(path, digest)) == [
        HEADER + "\r\n",
        'E1,2026-11-24,C1,w1,USDC,1,deposit,"two\r\n',
        'lines"\r',
        "E2,x\n",
    ]


def test_a_file_not_utf8_names_its_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "books.csv"
    # A multi-byte character across the reader's chunk boundary, then a bad byte further on.
    body = b"x" * ((1 << 20) - 1) + "é".encode() + b"ok\xff"
    path.write_bytes(body)
    with pytest.raises(InputError) as exc_info:
        file_sha256(path)
    assert exc_info.value.problems == [f"not UTF-8 text (byte {len(body) - 1})"]
    path.write_bytes(b"abc\xc3")  # cut short at the end
    with pytest.raises(InputError) as exc_info:
        file_sha256(path)
    assert exc_info.value.problems == ["not UTF-8 text (byte 3)"]


def test_a_file_changed_after_its_digest_was_taken_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "books.csv"
    path.write_text(HEADER + "\nE1,2026-11-24,C1,w1,USDC,1,deposit,\n")
    digest = file_sha256(path)
    path.write_text(HEADER + "\nE1,2026-11-24,C1,w1,USDC,2,deposit,\n")
    with pytest.raises(InputError) as exc_info:
        list(file_lines(path, digest))
    assert exc_info.value.problems == ["the file changed while it was being imported; import it again"]


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc_info:
        file_sha256(tmp_path / "nope.csv")
    assert exc_info.value.problems[0].startswith("cannot read the file:")


# ----------------------------------------------------------------------------- text a ledger cannot keep


@pytest.mark.parametrize("column", ["entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo"])
def test_a_nul_in_any_column_of_a_whole_books_file_is_named(settings: Settings, column: str) -> None:
    fields = dict(zip(HEADER.split(","), "E1,2026-11-24,C1,w1,USDC,1,deposit,memo".split(","), strict=True))
    fields[column] = fields[column][:1] + "\x00" + fields[column][1:]
    problem = _only_problem(settings, _books("E0,2026-11-24,C1,w1,USDC,1,deposit,", ",".join(fields.values())))
    assert problem == f"line 3, column {column}: contains a NUL character"


def test_a_field_longer_than_csvs_own_limit_is_named_with_its_column(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit," + "m" * 3_145_728))
    assert problem == "line 2, column memo: is 3,145,728 characters long; at most 1000 are allowed"


def test_control_characters_in_identifiers_and_text(settings: Settings) -> None:
    problem = _only_problem(settings, _books("E1,2026-11-24,C1,w1,USDC,1,deposit,\x07bell"))
    assert problem.startswith("line 2, column memo: contains a control character (U+0007, at character 1)")
    problem = _only_problem(settings, _books("E1\x7f,2026-11-24,C1,w1,USDC,1,deposit,"))
    assert problem.startswith("line 2, column entry_id: contains a control character (U+007F")
    [row] = parse_books_csv(_books("E1,2026-11-24,C1,w1,USDC,1,deposit,tab\there"), "books.csv", settings, ACCOUNTS)
    assert row.memo == "tab\there"


def test_a_nul_in_an_accounts_header_is_refused() -> None:
    problems = _account_problems("account,class,na\x00me\nC1,futures,One\n")
    assert problems == ["line 1, column 3 of the header: contains a NUL character"]
