"""A run's positions kept on disk (reconciler.spill) come back exactly, in order, as often as
they are read; and a row of the run document made without a dict is the row made with one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.app.documents import position_doc, position_text, position_texts
from reconciler.app.jsonout import Rows, _row, dumps
from reconciler.domain import Position
from reconciler.ledger import snapshots
from reconciler.spill import Concatenated, SpilledPositions

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,24}", fullmatch=True)
AMOUNTS = st.integers(-(2**256), 2**256)
DECIMALS = {"USDC": 6, "ETH": 18, "WBTC": 8, "X": 0}


@given(st.lists(st.tuples(NAMES, st.sampled_from(sorted(DECIMALS)), AMOUNTS, AMOUNTS), max_size=60),
       st.integers(1, 7))  # fmt: skip
def test_positions_come_back_as_appended_in_any_number_of_appends(
    rows: list[tuple[str, str, int, int]], per_append: int
) -> None:
    positions = [Position("eth", w, a, DECIMALS[a], b, o) for w, a, b, o in rows]
    spill = SpilledPositions("eth", DECIMALS)
    for start in range(0, len(positions), per_append):
        spill.extend(positions[start : start + per_append])
    assert len(spill) == len(positions)
    assert list(spill) == positions
    assert spill.digests() == snapshots._digests(positions)  # what the ledger keys snapshots by
    assert list(spill) == positions  # read again: the same
    if positions:
        assert spill[0] == positions[0] and spill[-1] == positions[-1]
        assert spill[1:3] == positions[1:3]
    spill.close()


def test_positions_larger_than_a_read_block_come_back_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.spill._READ", 7)  # lines split across every read
    positions = [Position("eth", f"wallet-{i}", "USDC", 6, i * 10**30, -i) for i in range(50)]
    spill = SpilledPositions("eth", DECIMALS)
    spill.extend(positions[:20])
    spill.extend(positions[20:])
    assert list(spill) == positions


def test_chains_concatenated_keep_chain_order() -> None:
    eth = SpilledPositions("eth", DECIMALS)
    eth.extend([Position("eth", "a", "USDC", 6, 1, 2), Position("eth", "b", "USDC", 6, 3, 4)])
    base = SpilledPositions("base", DECIMALS)
    base.extend([Position("base", "c", "ETH", 18, 5, 6)])
    joined = Concatenated([eth, base])
    assert len(joined) == 3
    assert [p.wallet for p in joined] == ["a", "b", "c"]
    assert joined[2].chain == "base" and joined[-3].wallet == "a"
    with pytest.raises(IndexError):
        joined[3]


@given(NAMES, NAMES, NAMES, st.integers(0, 36), AMOUNTS, AMOUNTS)
def test_a_position_row_made_directly_is_the_row_of_its_dict(
    chain: str, wallet: str, asset: str, decimals: int, book: int, onchain: int
) -> None:
    p = Position(chain, wallet, asset, decimals, book, onchain)
    assert position_text(p) == _row(position_doc(p))


@given(st.lists(st.tuples(NAMES, st.sampled_from(sorted(DECIMALS)), AMOUNTS, AMOUNTS), max_size=30),
       st.lists(st.tuples(NAMES, st.sampled_from(sorted(DECIMALS)), AMOUNTS, AMOUNTS), max_size=30))  # fmt: skip
def test_a_runs_rows_printed_from_disk_are_those_of_its_positions(
    eth_rows: list[tuple[str, str, int, int]], base_rows: list[tuple[str, str, int, int]]
) -> None:
    parts = []
    for chain, rows in (("eth", eth_rows), ("base", base_rows)):
        spill = SpilledPositions(chain, DECIMALS)
        spill.extend([Position(chain, w, a, DECIMALS[a], b, o) for w, a, b, o in rows])
        parts.append(spill)
    joined = Concatenated(parts)
    positions = list(joined)
    assert list(position_texts(joined)) == [_row(position_doc(p)) for p in positions]
    assert dumps({"positions": Rows(joined, position_doc, texts=position_texts)}) == dumps(
        {"positions": Rows(positions, position_doc)}
    )


def test_first_seen_configurations_come_back_in_order_and_by_name() -> None:
    from reconciler.spill import ConfigText, RenderedConfigs, SpilledConfigs, picked
    from reconciler.walletconfig import WalletConfig, WalletKind

    configs = [
        WalletConfig(wallet=f"w{i}", chain="eth", address=f"0x{i + 1:040x}", block_number=7,
                     kind=WalletKind.EOA, code_hash="0x" + "c5" * 32)  # fmt: skip
        for i in range(9)
    ]
    # A Safe with lists and a problem whose words hold a tab and a newline: still one line.
    configs[6] = WalletConfig(wallet="w6", chain="eth", address=f"0x{7:040x}", block_number=7, kind=WalletKind.SAFE,
                              code_hash="0x" + "c6" * 32, owners=(f"0x{8:040x}", f"0x{9:040x}"), threshold=2,
                              problems=("getOwners() reverted:\tsee\nthe node",))  # fmt: skip
    spill = SpilledConfigs("eth")
    spill.extend(configs[:4])
    spill.extend([])
    spill.extend(RenderedConfigs("eth", configs[4:7]))  # as a unit worker sends them
    spill.extend(configs[7:])
    assert len(spill) == 9 and list(spill) == configs and spill[3] == configs[3]
    # What the baselines store: each configuration's text, as read, without making it again.
    assert list(spill.texts()) == [ConfigText("eth", c.wallet, c.address, 7, c.to_text()) for c in configs]
    named = spill.by_name()
    assert list(named) == [c.wallet for c in configs] and len(named) == 9
    assert list(named.values()) == configs  # read through once, in order
    assert named["w5"] == configs[5] and "w8" in named and "nobody" not in named
    assert picked(named, ["w2", "w7", "nobody"]) == {"w2": configs[2], "w7": configs[7]}
    assert picked({"w2": configs[2]}, ["w2", "w3"]) == {"w2": configs[2]}
