"""A run reads each chunk's wallet baselines through a view taken at its start (a baseline
recorded meanwhile, e.g. by `wallets baseline`, is the next run's), newest first; a stored
baseline equal to the configuration just read but for its block is that configuration at
the baseline's block — the same value as parsing it — on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from reconciler.ledger.runs import NewBaselines
from reconciler.ledger.store import Ledger
from reconciler.walletconfig import WalletConfig, WalletKind

OWNER = "0x000000000000000000000000000000000000dEaD"


def _config(wallet: str, block: int, threshold: int = 1) -> WalletConfig:
    return WalletConfig(
        wallet=wallet,
        chain="eth",
        address="0x" + f"{len(wallet) + block:040x}",
        block_number=block,
        kind=WalletKind.SAFE,
        code_hash="0x" + "ab" * 32,
        threshold=threshold,
        owners=(OWNER,),
        nonce=4,
    )


def test_baselines_read_per_chunk_are_those_of_the_runs_start(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    a1, b1 = _config("a", 10), _config("b", 10)
    ledger.record_baselines(NewBaselines(((a1, "0x01"), (b1, "0x01"))))
    ledger.record_baselines(NewBaselines(((replace(a1, block_number=11, threshold=2), "0x02"),), reviewed=True))
    view = ledger.baseline_view()
    ledger.record_baselines(NewBaselines(((replace(a1, block_number=12, threshold=3), "0x03"),), reviewed=True))

    got = ledger.wallet_baselines_of(view, "eth", ["a", "b", "c"])
    assert got == {("eth", "a"): replace(a1, block_number=11, threshold=2), ("eth", "b"): b1}
    assert ledger.wallet_baselines_of(view, "base", ["a"]) == {}
    assert ledger.wallet_baselines_of(ledger.baseline_view(), "eth", ["a"])[("eth", "a")].threshold == 3

    # Observed at block 50: equal to b's baseline but for the block, unlike a's (threshold 2).
    observed = {"a": _config("a", 50), "b": _config("b", 50)}
    shortcut = ledger.wallet_baselines_of(view, "eth", ["a", "b"], observed)
    assert shortcut == got
    assert shortcut[("eth", "b")].block_number == 10
    ledger.close()


def test_a_configuration_is_the_same_as_its_stored_form_only_when_every_field_is() -> None:
    config = _config("a", 10)
    stored = config.to_json()
    assert config.same_as_stored({**stored, "block_number": 99})
    for field, other in [("threshold", 2), ("owners", []), ("kind", "eoa"), ("nonce", None), ("threshold", True),
                         ("guard", OWNER), ("problems", ["a list breaks"]), ("address", OWNER)]:  # fmt: skip
        assert not config.same_as_stored({**stored, field: other}), field
    assert not config.same_as_stored({k: v for k, v in stored.items() if k != "guard"})
    assert config.at_block(99) == WalletConfig.from_json({**stored, "block_number": 99})
