"""The pure surveillance engine: reorg arithmetic, movements, matching, findings, flow check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import AssetKind, BlockRef, BreakKey, BreakKind, SegClass, Severity
from reconciler.engine.surveillance import (
    SURVEILLANCE_CHECKS,
    FlowWindow,
    Movement,
    SurveillanceInputs,
    check_allowances,
    check_flows,
    check_inflows,
    check_outflows,
    common_ancestor,
    flow_residuals,
    match_outflows,
    movements_for,
    surveillance_coverage,
)
from reconciler.inputs.settings import AssetSettings, WalletSettings
from reconciler.transfers import ZERO_ADDRESS, Direction, MovementKind, Observation, ValidInstruction

W1_ADDR = "0x" + "11" * 20
W2_ADDR = "0x" + "22" * 20
USDC_ADDR = "0x" + "33" * 20
MMF_ADDR = "0x" + "44" * 20
OTHER_TOKEN = "0x" + "55" * 20
ALICE = "0xaBCdEf0000000000000000000000000000000001"
BOB = "0x00000000000000000000000000000000000000B0"
SPENDER_OK = "0x00000000000000000000000000000000000005E1"
SPENDER_BAD = "0x00000000000000000000000000000000000005E2"

W1 = WalletSettings(name="w1", chain="eth", address=W1_ADDR, seg_class=SegClass.FUTURES, allowed_spenders=(SPENDER_OK,))
W2 = WalletSettings(name="w2", chain="eth", address=W2_ADDR, seg_class=SegClass.HOUSE)
USDC = AssetSettings(name="USDC", chain="eth", decimals=6, kind=AssetKind.STABLECOIN, address=USDC_ADDR)
MMF = AssetSettings(name="MMF", chain="eth", decimals=18, kind=AssetKind.MMF, address=MMF_ADDR)
ETH = AssetSettings(name="ETH", chain="eth", decimals=18, kind=AssetKind.NATIVE, native=True)
WALLETS = (W1, W2)
ASSETS = (USDC, MMF, ETH)
PIN = BlockRef(200, "0x" + "ee" * 32)
T0 = 1_800_000_000  # block time of block 100


def _tx(n: int) -> str:
    return "0x" + f"{n:064x}"


def _block_hash(n: int) -> str:
    return "0x" + f"{n:064x}"[::-1]


def obs(
    kind: MovementKind = MovementKind.TOKEN,
    *,
    frm: str = W1_ADDR,
    to: str = ALICE,
    amount: int = 1_000_000,
    block: int = 100,
    tx: int = 1,
    log: int | None = 0,
    token: str | None = USDC_ADDR,
    trace: str | None = None,
) -> Observation:
    native = kind in (MovementKind.NATIVE, MovementKind.FEE)
    return Observation(
        chain="eth",
        block_number=block,
        block_hash=_block_hash(block),
        block_time=T0 + (block - 100) * 12,
        tx_hash=_tx(tx),
        kind=kind,
        token=None if native else token,
        from_address=frm,
        to_address=to,
        amount=amount,
        log_index=None if native else log,
        trace_position=(trace if trace is not None else ("fee" if kind is MovementKind.FEE else ""))
        if native
        else None,
    )


def instr(
    id: str = "wd-1",
    *,
    wallet: str = "w1",
    asset: str = "USDC",
    to: str = ALICE,
    amount: int = 1_000_000,
    valid_until: int = T0 + 3600,
) -> ValidInstruction:
    return ValidInstruction(
        id=id, chain="eth", wallet=wallet, asset=asset, to=to, amount=amount, valid_until=valid_until
    )


def moves(*observations: Observation) -> list[Movement]:
    return movements_for(observations, WALLETS, ASSETS)


def inputs(*observations: Observation, now: int = T0 + 10 * 86400, **kwargs: Any) -> SurveillanceInputs:
    return SurveillanceInputs(
        chain="eth",
        block=PIN,
        now=now,
        wallets=WALLETS,
        assets=ASSETS,
        movements=tuple(moves(*observations)),
        **kwargs,
    )


# ----------------------------------------------------------------------------- reorg arithmetic
# First, as the style guide asks: safe-transaction-service once rewound with `min(n - 250, 0)`.


def _lookup(chain: dict[int, str]) -> tuple[list[int], Callable[[int], str | None]]:
    asked: list[int] = []

    def canonical(n: int) -> str | None:
        asked.append(n)
        return chain.get(n)

    return asked, canonical


def test_common_ancestor_is_the_top_when_nothing_changed() -> None:
    chain = {n: f"0x{n:02x}" for n in range(10)}
    asked, canonical = _lookup(chain)
    assert common_ancestor([(9, "0x09"), (8, "0x08"), (5, "0x05")], canonical) == 9
    assert asked == [9]


def test_common_ancestor_walks_back_to_the_highest_surviving_block() -> None:
    chain = {n: f"0x{n:02x}" for n in range(10)}
    chain.update({8: "0xf8", 9: "0xf9"})  # blocks 8 and 9 were replaced
    stored = [(9, "0x09"), (8, "0x08"), (7, "0x07"), (3, "0x03")]
    asked, canonical = _lookup(chain)
    assert common_ancestor(stored, canonical) == 7
    assert asked == [9, 8, 7]  # never below the answer, never a negative or clamped number


def test_common_ancestor_none_when_no_stored_block_survived() -> None:
    asked, canonical = _lookup(dict.fromkeys(range(10), "0xnew"))
    assert common_ancestor([(4, "0x04"), (2, "0x02"), (0, "0x00")], canonical) is None
    assert asked == [4, 2, 0]


def test_common_ancestor_when_the_canonical_chain_became_shorter() -> None:
    _, canonical = _lookup({0: "0x00", 1: "0x01", 2: "0x02"})
    assert common_ancestor([(5, "0x05"), (4, "0x04"), (2, "0x02")], canonical) == 2


def test_common_ancestor_compares_hashes_without_case() -> None:
    assert common_ancestor([(1, "0xABCD")], lambda n: "0xabcd") == 1


def test_common_ancestor_of_nothing_stored_is_none() -> None:
    assert common_ancestor([], lambda n: pytest.fail("nothing to ask")) is None


@pytest.mark.parametrize("stored", [[(3, "a"), (3, "b")], [(3, "a"), (5, "b")], [(1, "a"), (-1, "b")]])
def test_common_ancestor_refuses_unordered_or_negative_input_before_any_lookup(stored: list[tuple[int, str]]) -> None:
    with pytest.raises(ValueError):
        common_ancestor(stored, lambda n: pytest.fail("looked up before checking the input"))


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(min_value=1, max_value=60),
    fork=st.integers(min_value=-1, max_value=59),
    data=st.data(),
)
def test_common_ancestor_property(length: int, fork: int, data: st.DataObject) -> None:
    """Random chain, random fork point (-1: even genesis differs), random sparse stored set."""
    fork = min(fork, length - 1)
    old = {n: f"0xold{n}" for n in range(length)}
    new_length = data.draw(st.integers(min_value=max(fork + 1, 0), max_value=length + 5), label="new length")
    new = {n: (old[n] if n <= fork else f"0xnew{n}") for n in range(new_length)}
    numbers = data.draw(st.sets(st.integers(min_value=0, max_value=length - 1), max_size=length), label="stored")
    stored = [(n, old[n]) for n in sorted(numbers, reverse=True)]
    expected = max((n for n in numbers if n <= fork), default=None)
    asked, canonical = _lookup(new)
    assert common_ancestor(stored, canonical) == expected
    assert all(n >= (expected if expected is not None else 0) for n in asked)
    assert asked == sorted(asked, reverse=True)


# ----------------------------------------------------------------------------- movements


def test_transfer_between_two_custody_wallets_is_an_out_and_an_in() -> None:
    [out, inn] = moves(obs(frm=W1_ADDR, to=W2_ADDR))
    assert (out.wallet, out.direction, out.counterparty) == ("w1", Direction.OUT, W2_ADDR)
    assert (inn.wallet, inn.direction, inn.counterparty) == ("w2", Direction.IN, W1_ADDR)
    assert out.asset == inn.asset == "USDC" and out.decimals == 6


def test_unconfigured_tokens_and_strangers_are_ignored() -> None:
    assert moves(obs(token=OTHER_TOKEN), obs(frm=ALICE, to=BOB, tx=2)) == []


def test_addresses_match_without_case() -> None:
    [m] = moves(obs(frm=W1_ADDR.lower(), token=USDC_ADDR.upper().replace("0X", "0x")))
    assert m.wallet == "w1" and m.direction is Direction.OUT


def test_native_movements_use_the_chains_native_asset_and_fees_are_fees() -> None:
    sent = obs(MovementKind.NATIVE, to=ALICE, amount=5 * 10**18, trace="0.1")
    fee = obs(MovementKind.FEE, to=ZERO_ADDRESS, amount=21000 * 10**9, tx=2)
    got = moves(sent, fee)
    assert [(m.asset, m.direction, m.amount) for m in got] == [
        ("ETH", Direction.OUT, 5 * 10**18),
        ("ETH", Direction.FEE, 21000 * 10**9),
    ]
    assert movements_for([sent, fee], WALLETS, (USDC,)) == []  # no native asset configured


def test_approvals_are_kept_by_owner_and_zero_transfers_are_dropped() -> None:
    approval = obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=7, tx=2)
    revoke = obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=0, tx=3)
    poison = obs(to=ALICE, amount=0, tx=4)  # address-poisoning spam: a zero-value transferFrom
    to_us = obs(MovementKind.APPROVAL, frm=ALICE, to=W1_ADDR, amount=9, tx=5)  # we are the spender
    got = moves(approval, revoke, poison, to_us)
    assert [(m.direction, m.amount, m.tx_hash) for m in got] == [
        (Direction.APPROVAL, 7, _tx(2)),
        (Direction.APPROVAL, 0, _tx(3)),
    ]


def test_movements_come_in_chain_order() -> None:
    a = obs(block=101, tx=1, log=5)
    b = obs(block=100, tx=2, log=9)
    c = obs(block=100, tx=3, log=2)
    d = obs(MovementKind.NATIVE, block=100, tx=4, trace="0.1")
    assert [m.tx_hash for m in moves(a, b, c, d)] == [_tx(3), _tx(2), _tx(4), _tx(1)]


def test_movements_refuse_duplicates_and_negative_amounts() -> None:
    with pytest.raises(ValueError, match="twice"):
        moves(obs(), obs())
    # A transaction's own value and its fee at one trace position are still two observations.
    value, fee = obs(MovementKind.NATIVE, trace=""), obs(MovementKind.FEE, to=ZERO_ADDRESS, trace="")
    assert [m.direction for m in moves(value, fee)] == [Direction.OUT, Direction.FEE]
    with pytest.raises(ValueError, match="negative"):
        moves(obs(amount=-1))


# ----------------------------------------------------------------------------- matching


def _outflows(*observations: Observation) -> list[Movement]:
    return [m for m in moves(*observations) if m.direction is Direction.OUT]


def test_an_outflow_consumes_its_matching_instruction() -> None:
    [out] = _outflows(obs())
    result = match_outflows([out], [instr()], {})
    assert result.matches == ((out, "wd-1"),) and result.unauthorized == ()


@pytest.mark.parametrize(
    "other",
    [
        {"amount": 1_000_001},
        {"to": BOB},
        {"asset": "MMF"},
        {"wallet": "w2"},
        {"valid_until": T0 - 1},
    ],
)
def test_anything_different_does_not_authorize(other: dict[str, Any]) -> None:
    [out] = _outflows(obs())
    result = match_outflows([out], [instr(**other)], {})
    assert result.matches == () and result.unauthorized == (out,)


def test_valid_until_equal_to_the_block_time_still_authorizes() -> None:
    [out] = _outflows(obs())
    assert match_outflows([out], [instr(valid_until=T0)], {}).matches == ((out, "wd-1"),)


def test_a_consumed_instruction_never_authorizes_again() -> None:
    first, second = _outflows(obs(tx=1), obs(tx=2, block=101))
    result = match_outflows([first, second], [instr()], {})
    assert result.matches == ((first, "wd-1"),) and result.unauthorized == (second,)
    later = match_outflows([second], [instr()], {"wd-1": first.tx_hash})
    assert later.matches == () and later.unauthorized == (second,)


def test_the_earliest_expiring_instruction_is_taken_then_the_smallest_id() -> None:
    [out] = _outflows(obs())
    candidates = [instr("c", valid_until=T0 + 50), instr("b", valid_until=T0 + 10), instr("a", valid_until=T0 + 50)]
    assert match_outflows([out], candidates, {}).matches[0][1] == "b"
    assert match_outflows([out], candidates[::2], {}).matches[0][1] == "a"


def test_outflows_are_judged_in_chain_order_whatever_order_they_come_in() -> None:
    early, late = _outflows(obs(block=100, tx=1), obs(block=150, tx=2))
    # Only the early one can use the short instruction; taken in chain order, both match.
    short, long_ = instr("short", valid_until=T0 + 1), instr("long", valid_until=T0 + 3600)
    result = match_outflows([late, early], [long_, short], {})
    assert result.matches == ((early, "short"), (late, "long"))


def test_already_matched_outflows_fees_and_inflows_are_not_judged() -> None:
    got = moves(obs(tx=1), obs(frm=ALICE, to=W1_ADDR, tx=2), obs(MovementKind.FEE, to=ZERO_ADDRESS, tx=3))
    result = match_outflows(got, [], {}, already_matched={got[0].identity})
    assert result.matches == () and result.unauthorized == ()


def test_matching_refuses_duplicate_instruction_ids_and_duplicate_outflows() -> None:
    [out] = _outflows(obs())
    with pytest.raises(ValueError, match="given twice"):
        match_outflows([out], [instr("x"), instr("x", amount=5)], {})
    with pytest.raises(ValueError, match="given twice"):
        match_outflows([out, out], [], {})


def _max_matching(outflows: Sequence[Movement], instructions: Sequence[ValidInstruction]) -> int:
    """Size of a maximum bipartite matching (Kuhn), the yardstick for the greedy choice."""
    edges = [
        [
            j
            for j, i in enumerate(instructions)
            if (i.wallet, i.asset, i.to.lower(), i.amount) == (m.wallet, m.asset, m.counterparty.lower(), m.amount)
            and i.valid_until >= m.block_time
        ]
        for m in outflows
    ]
    owner: dict[int, int] = {}

    def augment(k: int, seen: set[int]) -> bool:
        for j in edges[k]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = k
                return True
        return False

    return sum(augment(k, set()) for k in range(len(outflows)))


_outflow_obs = st.builds(
    lambda block, to, amount, wallet: obs(block=block, to=to, amount=amount, frm=wallet),
    block=st.integers(min_value=100, max_value=110),
    to=st.sampled_from([ALICE, BOB]),
    amount=st.integers(min_value=1, max_value=3),
    wallet=st.sampled_from([W1_ADDR, W2_ADDR]),
)
_instructions = st.builds(
    lambda to, amount, wallet, valid_until: instr(
        to=to, amount=amount, wallet=wallet, valid_until=T0 + valid_until * 12
    ),
    to=st.sampled_from([ALICE, BOB]),
    amount=st.integers(min_value=1, max_value=3),
    wallet=st.sampled_from(["w1", "w2"]),
    valid_until=st.integers(min_value=-1, max_value=11),
)


@settings(max_examples=300, deadline=None)
@given(
    raw_outflows=st.lists(_outflow_obs, max_size=12),
    raw_instructions=st.lists(_instructions, max_size=10),
    consumed_mask=st.lists(st.booleans(), min_size=10, max_size=10),
    matched_mask=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_matching_properties(
    raw_outflows: list[Observation],
    raw_instructions: list[ValidInstruction],
    consumed_mask: list[bool],
    matched_mask: list[bool],
) -> None:
    # unique identities and ids
    observations = [replace(o, tx_hash=_tx(k), log_index=k) for k, o in enumerate(raw_outflows)]
    instructions = [replace(i, id=f"i{k:02d}") for k, i in enumerate(raw_instructions)]
    outflows = moves(*observations)
    consumed = {i.id: "0xearlier" for i, c in zip(instructions, consumed_mask, strict=False) if c}
    already = {m.identity for m, c in zip(outflows, matched_mask, strict=False) if c}
    result = match_outflows(outflows, instructions, consumed, already)

    used = [instr_id for _, instr_id in result.matches]
    assert len(used) == len(set(used)), "an instruction was consumed twice"
    assert not set(used) & set(consumed), "a consumed instruction was used again"
    judged = [m.identity for m in outflows if m.identity not in already]
    ended = [m.identity for m, _ in result.matches] + [m.identity for m in result.unauthorized]
    assert sorted(ended) == sorted(judged), "every outflow ends matched or flagged, never both, never neither"
    by_id = {i.id: i for i in instructions}
    for m, instr_id in result.matches:
        i = by_id[instr_id]
        assert (i.wallet, i.asset, i.to, i.amount) == (m.wallet, m.asset, m.counterparty, m.amount)
        assert i.valid_until >= m.block_time
    open_ = [i for i in instructions if i.id not in consumed]
    assert len(result.matches) == _max_matching([m for m in outflows if m.identity not in already], open_)
    again = match_outflows(list(reversed(outflows)), list(reversed(instructions)), consumed, already)
    assert again == result, "the result depends on the order of the input"


# ----------------------------------------------------------------------------- passes


def test_unauthorized_transfer_is_critical_with_tx_hash_and_negative_amount() -> None:
    [finding] = check_outflows(inputs(obs(amount=2_500_000, tx=7, log=3)))
    assert finding.key == BreakKey(BreakKind.UNAUTHORIZED_TRANSFER, "eth", "w1", "USDC", _tx(7))
    assert finding.severity is Severity.CRITICAL and finding.amount == -2_500_000
    for part in ("2.500000 USDC", W1_ADDR, ALICE, _tx(7), "block 100", _block_hash(100), "log:3"):
        assert part in finding.detail


def test_a_matched_outflow_raises_nothing() -> None:
    assert check_outflows(inputs(obs(), instructions=(instr(),))) == []


def test_two_unauthorized_outflows_of_one_tx_are_one_finding() -> None:
    [finding] = check_outflows(inputs(obs(tx=7, log=1, amount=1), obs(tx=7, log=2, to=BOB, amount=2)))
    assert finding.amount == -3 and ALICE in finding.detail and BOB in finding.detail


def test_unauthorized_detail_says_why_near_misses_did_not_authorize() -> None:
    first = obs(tx=1)
    second = obs(tx=2, block=101)
    expired = obs(tx=3, block=120)
    got = check_outflows(
        inputs(
            first,
            second,
            expired,
            instructions=(instr("wd-1", valid_until=T0 + 100), instr("old", valid_until=T0 - 5)),
            consumed={"old": _tx(99)},
        )
    )
    details = {f.key.tx_hash: f.detail for f in got}
    assert set(details) == {_tx(2), _tx(3)}
    assert f"'wd-1' was consumed by tx {_tx(1)}" in details[_tx(2)]
    assert f"'old' was already consumed by tx {_tx(99)}" in details[_tx(2)]
    assert "'wd-1' was consumed" in details[_tx(3)]


def test_an_expired_instruction_is_named_in_the_finding() -> None:
    [finding] = check_outflows(inputs(obs(block=110), instructions=(instr(valid_until=T0),)))
    assert "'wd-1' expired at 2027-01-15T08:00:00Z" in finding.detail


def test_unbooked_inflow_waits_for_the_grace_then_warns() -> None:
    inflow = obs(frm=ALICE, to=W1_ADDR, amount=42, tx=9)
    young = inputs(inflow, now=T0 + 3600)
    assert check_inflows(young) == [] and surveillance_coverage(young) == frozenset()
    old = inputs(inflow, now=T0 + 86400)  # exactly the grace: due
    [finding] = check_inflows(old)
    assert finding.key == BreakKey(BreakKind.UNEXPECTED_INFLOW, "eth", "w1", "USDC", _tx(9))
    assert finding.severity is Severity.WARNING and finding.amount == 42
    assert "24h" in finding.detail and ALICE in finding.detail
    assert finding.key in surveillance_coverage(old)  # booking it later resolves it
    booked = inputs(inflow, now=T0 + 86400, booked_tx_hashes=frozenset({_tx(9).upper().replace("0X", "0x")}))
    assert check_inflows(booked) == []
    assert check_inflows(inputs(inflow, now=T0 + 60, inflow_grace=timedelta(seconds=30)))[0].key.tx_hash == _tx(9)


def test_mmf_issuer_mints_are_never_unexpected_but_other_mints_are() -> None:
    mmf_mint = obs(frm=ZERO_ADDRESS, to=W1_ADDR, token=MMF_ADDR, tx=1)
    usdc_mint = obs(frm=ZERO_ADDRESS, to=W1_ADDR, token=USDC_ADDR, tx=2)
    got = check_inflows(inputs(mmf_mint, usdc_mint))
    assert [f.key.asset for f in got] == ["USDC"]


def test_approval_to_an_unknown_spender_is_critical_keyed_on_its_tx() -> None:
    bad = obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=2**256 - 1, tx=5)
    ok = obs(MovementKind.APPROVAL, to=SPENDER_OK, amount=10, tx=6)
    revoke = obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=0, tx=7)
    [finding] = check_allowances(inputs(bad, ok, revoke))
    assert finding.key == BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, "eth", "w1", "USDC", _tx(5))
    assert finding.severity is Severity.CRITICAL and finding.amount == 2**256 - 1
    assert SPENDER_BAD in finding.detail and "allowed_spenders" in finding.detail


def test_standing_allowances_merge_spenders_per_wallet_and_asset() -> None:
    allowances = {
        ("w1", "USDC", SPENDER_BAD): 5,
        ("w1", "USDC", BOB): 9,
        ("w1", "USDC", SPENDER_OK.lower()): 100,  # allowed, compared without case
        ("w2", "USDC", BOB): 0,
    }
    got = check_allowances(inputs(allowances=allowances))
    [finding] = got
    assert finding.key == BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, "eth", "w1", "USDC", None)
    assert finding.amount == 9 and SPENDER_BAD in finding.detail and BOB in finding.detail
    assert f"block {PIN.number}" in finding.detail
    coverage = surveillance_coverage(inputs(allowances=allowances))
    assert BreakKey(BreakKind.UNAPPROVED_ALLOWANCE, "eth", "w2", "USDC", None) in coverage  # read at zero: resolves


def test_event_like_breaks_are_never_covered() -> None:
    data = inputs(obs(tx=1), obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=1, tx=2))
    kinds = {k.kind for k in surveillance_coverage(data)}
    assert BreakKind.UNAUTHORIZED_TRANSFER not in kinds and BreakKind.UNAPPROVED_ALLOWANCE not in kinds


def test_inputs_refuse_another_chains_data() -> None:
    other = replace(obs(), chain="base")
    wallet = WalletSettings(name="wb", chain="base", address=W1_ADDR, seg_class=SegClass.FUTURES)
    asset = AssetSettings(name="USDCb", chain="base", decimals=6, kind=AssetKind.STABLECOIN, address=USDC_ADDR)
    with pytest.raises(ValueError, match="chain base"):
        SurveillanceInputs(
            chain="eth",
            block=PIN,
            now=T0,
            wallets=WALLETS,
            assets=ASSETS,
            movements=tuple(movements_for([other], [wallet], [asset])),
        )


# ----------------------------------------------------------------------------- flows


BEFORE = BlockRef(99, "0x" + "b0" * 32)
AFTER = BlockRef(200, "0x" + "a0" * 32)


def _window(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> FlowWindow:
    return FlowWindow(before_block=BEFORE, after_block=AFTER, before=before, after=after)


def test_flow_explained_by_in_out_and_gas_has_no_residual() -> None:
    got = moves(
        obs(frm=ALICE, to=W1_ADDR, amount=500, tx=1),
        obs(amount=200, tx=2),
        obs(MovementKind.NATIVE, frm=W1_ADDR, to=ALICE, amount=10, tx=3),
        obs(MovementKind.FEE, to=ZERO_ADDRESS, amount=3, tx=3),
        obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=10**30, tx=4),  # moves nothing
    )
    before = {("w1", "USDC"): 1000, ("w1", "ETH"): 100}
    after = {("w1", "USDC"): 1300, ("w1", "ETH"): 87}
    residuals = flow_residuals(before, after, got)
    assert [(r.wallet, r.asset, r.residual) for r in residuals] == [("w1", "ETH", 0), ("w1", "USDC", 0)]
    assert len(check_flows(inputs(flow=_window(before, after)))) == 2  # without the movements: breaks


def test_mmf_dividend_mint_is_counted_once() -> None:
    mint = moves(obs(frm=ZERO_ADDRESS, to=W1_ADDR, token=MMF_ADDR, amount=7 * 10**18))
    [r] = flow_residuals({("w1", "MMF"): 10**20}, {("w1", "MMF"): 10**20 + 7 * 10**18}, mint)
    assert r.residual == 0 and r.inflows == 7 * 10**18 and r.recognized == 0


def test_unexplained_change_names_both_blocks_and_the_residual() -> None:
    before = {("w1", "USDC"): 1_000_000, ("w2", "USDC"): 0}
    after = {("w1", "USDC"): 400_000, ("w2", "USDC"): 0}
    data = inputs(obs(amount=100_000, block=150), flow=_window(before, after))
    [finding] = check_flows(data)
    assert finding.key == BreakKey(BreakKind.UNEXPLAINED_BALANCE_CHANGE, "eth", "w1", "USDC", None)
    assert finding.severity is Severity.CRITICAL and finding.amount == -500_000
    for part in ("block 99", BEFORE.hash, "block 200", AFTER.hash, "-0.500000", "1.000000", "0.400000"):
        assert part in finding.detail
    assert finding.key not in surveillance_coverage(data)


def test_flow_check_counts_only_the_blocks_of_its_window() -> None:
    before = {("w1", "USDC"): 10}
    after = {("w1", "USDC"): 10}
    outside = inputs(obs(amount=5, block=99), obs(amount=5, block=201, tx=2), flow=_window(before, after))
    assert check_flows(outside) == []
    inside = inputs(obs(amount=5, block=200), flow=_window(before, after))
    assert [f.amount for f in check_flows(inside)] == [5]


def test_flow_check_without_a_previous_run_compares_nothing() -> None:
    assert check_flows(inputs(obs())) == []


def test_recognized_issuer_actions_explain_a_change() -> None:
    window = FlowWindow(BEFORE, AFTER, {("w1", "MMF"): 0}, {("w1", "MMF"): 9}, recognized={("w1", "MMF"): 9})
    assert check_flows(inputs(flow=window)) == []


def test_flow_residuals_refuse_mismatched_reads() -> None:
    with pytest.raises(ValueError, match="one pin only"):
        flow_residuals({("w1", "USDC"): 1}, {}, [])
    with pytest.raises(KeyError):
        flow_residuals({("w1", "USDC"): 1}, {("w1", "USDC"): 1}, moves(obs(MovementKind.NATIVE)))


@settings(max_examples=300, deadline=None)
@given(
    amounts=st.lists(
        st.tuples(
            st.sampled_from([MovementKind.TOKEN, MovementKind.NATIVE, MovementKind.FEE]),
            st.booleans(),
            st.integers(min_value=1, max_value=10**27),
        ),
        max_size=15,
    ),
    start=st.integers(min_value=0, max_value=10**30),
    delta=st.one_of(st.just(0), st.integers(min_value=-(10**27), max_value=10**27)),
)
def test_flow_residual_is_zero_exactly_when_the_movements_explain_the_change(
    amounts: list[tuple[MovementKind, bool, int]], start: int, delta: int
) -> None:
    observations = []
    expected = {("w1", "USDC"): 0, ("w1", "ETH"): 0}
    for k, (kind, incoming, amount) in enumerate(amounts):
        incoming = incoming and kind is not MovementKind.FEE
        frm, to = (ALICE, W1_ADDR) if incoming else (W1_ADDR, ALICE)
        observations.append(obs(kind, frm=frm, to=to, amount=amount, tx=k, log=k, trace=str(k)))
        asset = "USDC" if kind is MovementKind.TOKEN else "ETH"
        expected[("w1", asset)] += amount if incoming else -amount
    before = dict.fromkeys(expected, start)
    after = {key: start + change + (delta if key == ("w1", "USDC") else 0) for key, change in expected.items()}
    residuals = {(r.wallet, r.asset): r.residual for r in flow_residuals(before, after, moves(*observations))}
    assert residuals == {("w1", "USDC"): delta, ("w1", "ETH"): 0}
    findings = check_flows(inputs(*observations, flow=_window(before, after)))
    assert (findings == []) == (delta == 0)


def test_every_check_has_one_signature_and_returns_findings_with_unique_keys() -> None:
    data = inputs(
        obs(tx=1),
        obs(tx=1, log=1, to=BOB),
        obs(frm=ALICE, to=W1_ADDR, tx=2),
        obs(MovementKind.APPROVAL, to=SPENDER_BAD, amount=1, tx=3),
        obs(MovementKind.APPROVAL, to=BOB, amount=1, tx=3, log=1),
        allowances={("w1", "USDC", BOB): 1},
        flow=_window({("w1", "USDC"): 0}, {("w1", "USDC"): 5}),
    )
    keys = [f.key for check in SURVEILLANCE_CHECKS for f in check(data)]
    assert len(keys) == len(set(keys))
    assert {k.kind for k in keys} == {
        BreakKind.UNAUTHORIZED_TRANSFER,
        BreakKind.UNEXPECTED_INFLOW,
        BreakKind.UNAPPROVED_ALLOWANCE,
        BreakKind.UNEXPLAINED_BALANCE_CHANGE,
    }


def test_behind_the_watcher_a_pin_judges_but_resolves_nothing_the_watcher_judges_there() -> None:
    from reconciler.engine.passes import RunObservations, surveillance_pass

    inflow = obs(frm=ALICE, to=W1_ADDR, tx=9)
    key = BreakKey(BreakKind.UNEXPECTED_INFLOW, "eth", "w1", "USDC", _tx(31))  # one the watcher opened
    judged = inputs(inflow)
    behind = inputs(inflow, resolves=False)
    settings: Any = None  # the surveillance pass reads only its inputs
    both = surveillance_pass(RunObservations(settings, {}, {}, surveillance={"eth": judged}))
    held = surveillance_pass(RunObservations(settings, {}, {}, surveillance={"eth": behind}))
    assert key in both.coverage, "a run at the head resolves what it no longer finds"
    assert key not in held.coverage
    assert [f.key for f in held.findings] == [f.key for f in both.findings], "it still judges all it sees"
