"""The shipped starter configuration and sample CSVs are valid and agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import load_settings
from reconciler.imports import parse_accounts_csv, parse_books_csv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "reconciler.example.toml"
ACCOUNTS = ROOT / "examples" / "accounts.csv"
BOOKS = ROOT / "examples" / "books.csv"


@pytest.fixture(autouse=True)
def _no_outside_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # RECONCILER_DATABASE_URL would be validated instead of [database] url.
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)


def test_the_example_configuration_is_valid_and_names_a_chain_an_asset_and_a_wallet() -> None:
    settings = load_settings(str(EXAMPLE))
    assert settings.chains
    assert settings.assets
    assert settings.wallets
    # The relative SQLite path resolves next to the example file, not the working directory.
    assert settings.database_url == f"sqlite:///{(ROOT / 'reconciler.db').resolve()}"


def test_the_example_books_parse_against_the_example_configuration_and_accounts() -> None:
    settings = load_settings(str(EXAMPLE))
    accounts = parse_accounts_csv(ACCOUNTS.read_text(encoding="utf-8"), str(ACCOUNTS))
    assert accounts
    books = parse_books_csv(BOOKS.read_text(encoding="utf-8"), str(BOOKS), settings, {a.account for a in accounts})
    assert books
    # Every configured wallet and asset appears in the sample books, so a run shows them all.
    assert {r.wallet for r in books} == set(settings.wallets)
    assert {r.asset for r in books} == set(settings.assets)
