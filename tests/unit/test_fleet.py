"""The Fleet: configured and imported wallets as one Mapping, the imported ones packed and made
into WalletSettings only when asked for, read again only when the ledger's stamp changes."""

from __future__ import annotations

import random
from pathlib import Path

from reconciler.domain import SegClass, WalletRow, eip55
from reconciler.inputs.settings import Fleet, ImportedWallets, Settings, WalletSettings

A1 = eip55("0x" + "a1" * 20)
A2 = eip55("0x" + "a2" * 20)
CONFIGURED = {"cfg-1": WalletSettings("cfg-1", "eth", eip55("0x" + "c1" * 20), SegClass.HOUSE)}


def _rows(n: int, seed: int = 1) -> list[WalletRow]:
    rng = random.Random(seed)
    rows = [
        WalletRow(f"d{i:05d}", ("eth", "base")[i % 2], eip55("0x" + rng.randbytes(20).hex()), "futures", "", (), 0, ())
        for i in range(n)
    ]
    rows[7] = rows[7]._replace(kind="safe", seg_class="cleared_swaps", approvers=(A1, A2), threshold=2)
    rows[8] = rows[8]._replace(kind="eoa", allowed_spenders=(A2,))
    return rows


def test_packed_wallets_come_back_as_they_went_in() -> None:
    rows = _rows(2_000)
    packed = ImportedWallets(iter(rows), ["eth", "base"])
    assert len(packed) == len(rows)
    for i, row in enumerate(rows):
        wallet = packed.wallet(i)
        assert (wallet.name, wallet.chain, wallet.address, wallet.seg_class.value, wallet.kind) == (
            row.name, row.chain, row.address, row.seg_class, row.kind,
        )  # fmt: skip
        assert (wallet.approvers, wallet.threshold, wallet.allowed_spenders) == (
            row.approvers, row.threshold, row.allowed_spenders,
        )  # fmt: skip
        assert packed.index(row.name) == i
        assert packed.find(row.chain, row.address) == i
        assert packed.find("base" if row.chain == "eth" else "eth", row.address) is None
    assert packed.index("d") is None and packed.index("e") is None and packed.index("d00000x") is None
    assert packed.find("eth", A1) is None and packed.find("gnosis", rows[0].address) is None
    assert packed.wallet(7).seg_class is SegClass.CLEARED_SWAPS and packed.wallet(7).threshold == 2


def test_the_fleet_is_one_mapping_configured_first_then_imported_by_name() -> None:
    rows = _rows(10)
    loads: list[int] = []
    stamp = [1]

    def load() -> ImportedWallets:
        loads.append(1)
        return ImportedWallets(iter(rows[: 5 if stamp[0] == 1 else 10]), ["eth", "base"])

    fleet = Fleet(CONFIGURED, load=load, stamp=lambda: stamp[0])
    fleet.refresh()
    assert loads == [], "nothing is read before a wallet is asked for"
    assert list(fleet) == ["cfg-1", *(r.name for r in rows[:5])]
    assert len(fleet) == 6 and "d00003" in fleet and "d00009" not in fleet and 3 not in fleet
    assert fleet["cfg-1"] is CONFIGURED["cfg-1"]
    assert fleet["d00002"].address == rows[2].address
    assert fleet.source_of("cfg-1") == "config" and fleet.source_of("d00001") == "ledger"
    fleet.refresh()
    assert loads == [1], "an unchanged stamp reads nothing again"
    stamp[0] = 2
    fleet.refresh()
    assert loads == [1, 1] and len(fleet) == 11 and "d00009" in fleet

    settings = Settings(path=Path("x.toml"), database_url="sqlite:///x.db", chains={}, assets={}, wallets=fleet)
    on_eth = settings.wallets_on("eth")
    assert [w.name for w in on_eth] == ["cfg-1", "d00000", "d00002", "d00004", "d00006", "d00008"]
    assert settings.wallet_by_address("base", rows[3].address) == fleet["d00003"]
    assert settings.wallet_by_address("base", CONFIGURED["cfg-1"].address) is None
    assert settings.wallet_by_address("eth", CONFIGURED["cfg-1"].address) is CONFIGURED["cfg-1"]


def test_a_fleet_without_a_ledger_is_its_configured_wallets() -> None:
    fleet = Fleet(CONFIGURED)
    assert dict(fleet) == CONFIGURED and fleet.on_chain("eth") == list(CONFIGURED.values())


def test_a_chains_wallets_are_named_counted_and_found_without_being_made() -> None:
    """What the surveillance of a large fleet asks of it: membership, a count, the addresses
    only when a scan reads them, the wallets with approvers, an order — the same answers for
    a fleet as for wallets listed in the configuration."""
    rows = _rows(300)
    fleet = Fleet(CONFIGURED, load=lambda: ImportedWallets(iter(rows), ["eth", "base"]))
    one = {r.name: ImportedWallets(iter([r]), ["eth", "base"]).wallet(0) for r in rows}
    listed = {"cfg-1": CONFIGURED["cfg-1"], **one}
    for wallets in (fleet, listed):
        settings = Settings(path=Path("x.toml"), database_url="sqlite:///x.db", chains={}, assets={}, wallets=wallets)
        eth = list(settings.wallets_on("eth"))
        names = settings.names_on("eth")
        assert len(names) == len(eth) == 151 and list(names) == [w.name for w in eth]
        assert "cfg-1" in names and rows[2].name in names and rows[1].name not in names and "nobody" not in names
        addresses = settings.addresses_on("eth")
        assert len(addresses) == 151 and list(addresses) == [w.address for w in eth] and addresses[0] == eth[0].address
        assert [w.name for w in settings.wallets_with_approvers("base")] == [rows[7].name]
        assert settings.wallets_with_approvers("eth") == []
        shuffled = list(reversed(eth))
        assert settings.ordered(shuffled) == eth
        assert settings.wallet_by_address("eth", rows[4].address).name == rows[4].name  # type: ignore[union-attr]
