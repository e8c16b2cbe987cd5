"""The shipped starter configuration and sample CSVs are valid and agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.inputs.books import parse_accounts_csv, parse_books_csv
from reconciler.inputs.config import load_settings
from reconciler.inputs.instructions import parse_instructions, typed_data, verify

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "reconciler.example.toml"
ACCOUNTS = ROOT / "examples" / "accounts.csv"
BOOKS = ROOT / "examples" / "books.csv"
INSTRUCTIONS = ROOT / "examples" / "instructions.jsonl"


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


def test_the_example_instructions_parse_against_the_example_configuration() -> None:
    settings = load_settings(str(EXAMPLE))
    instructions = parse_instructions(INSTRUCTIONS.read_text(encoding="utf-8"), str(INSTRUCTIONS), settings)
    assert instructions
    assert len({i.id for i in instructions}) == len(instructions)
    for instruction in instructions:
        # Shipped unsigned, for `instructions sign` to fill in.
        assert instruction.signatures == ()
        wallet = settings.wallets[instruction.wallet]
        assert instruction.chain == wallet.chain
        assert settings.assets[instruction.asset].chain == wallet.chain
        # The wallet can authorize outflows (approvers and a threshold): the only thing missing
        # is the approvers' signatures.
        assert wallet.approvers and 1 <= wallet.threshold <= len(wallet.approvers)
        assert verify(instruction, settings) == [
            f"has 0 valid approver signature(s); wallets.{wallet.name} needs {wallet.threshold} from distinct approvers"
        ]
        message = typed_data(instruction, settings)
        assert message["primaryType"] == "TransferInstruction"
        assert message["domain"]["verifyingContract"] == wallet.address
