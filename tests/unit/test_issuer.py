"""Issuer actions on permissioned (ERC-3643) tokens, the pure parts: who moved a transfer, from
call frames or a receipt; the issuer-outflow finding and its resolution; the freeze checks; and
valuing only the free part of a holding."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.app.segregation_documents import holding_doc
from reconciler.domain import AssetKind, BlockRef, BreakKey, BreakKind, SegClass, Severity, eip55
from reconciler.engine.executions import Frame, Log
from reconciler.engine.initiators import (
    ISSUER_FUNCTIONS,
    RECOVERY_SUCCESS_TOPIC,
    TOKENS_UNFROZEN_TOPIC,
    TRANSFER_TOPIC,
    Classification,
    ReceiptLog,
    TxEvidence,
    annotate,
    check_issuer_outflows,
    classify,
    issuer_coverage,
    transactions_to_trace,
)
from reconciler.engine.segregation.pilot import pilot_report
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.stored import inputs_from_json, inputs_to_json
from reconciler.engine.segregation.values import (
    ChainPin,
    IssuerHold,
    SegregationInputs,
    encumbered_units,
    units_value,
)
from reconciler.engine.surveillance import (
    SurveillanceInputs,
    check_inflows,
    check_outflows,
    match_outflows,
    movements_for,
)
from reconciler.engine.wallets import (
    WalletObservations,
    WatchedAsset,
    WatchedWallet,
    check_encumbrances,
    check_issuer_controls,
    wallet_check_coverage,
)
from reconciler.inputs.settings import AssetSettings, SegregationSettings, WalletSettings
from reconciler.transfers import ZERO_ADDRESS, Initiator, MovementKind, Observation, ValidInstruction
from reconciler.walletconfig import ControlState, FreezeReading, FrozenTokensReading, IssuerControls, PauseReading


def addr(n: int) -> str:
    return eip55(f"{n:040x}")


TOKEN = addr(0x70CE)
PROXY_IMPL = addr(0x1A91)
WALLET = addr(0xC057)
SAFE_SINGLETON = addr(0x5AFE)
AGENT = addr(0xA6E7)
RELAYER = addr(0x4E1A)
BOB = addr(0xB0B)
SPENDER = addr(0x5DE4)
UNIT = 10**18
TX = "0x" + "ab" * 32
BLOCK_HASH = "0x" + "cd" * 32

FORCED = bytes.fromhex("9fc1d0e7")
BATCH_FORCED = bytes.fromhex("42a47abc")
RECOVERY = bytes.fromhex("9285948a")
MINT = bytes.fromhex("40c10f19")
BURN = bytes.fromhex("9dc29fac")
TRANSFER = bytes.fromhex("a9059cbb")
TRANSFER_FROM = bytes.fromhex("23b872dd")
UNKNOWN = bytes.fromhex("deadbeef")


def topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def transfer_log(frm: str, to: str, amount: int, token: str = TOKEN) -> Log:
    return Log(token, (TRANSFER_TOPIC, topic(frm), topic(to)), amount.to_bytes(32, "big"))


def unfrozen_log(holder: str, amount: int) -> Log:
    return Log(TOKEN, (TOKENS_UNFROZEN_TOPIC, topic(holder)), amount.to_bytes(32, "big"))


def recovered_log(lost: str, new: str) -> Log:
    return Log(TOKEN, (RECOVERY_SUCCESS_TOPIC, topic(lost), topic(new), topic(addr(0x1D))), b"")


def transfer_obs(frm: str = WALLET, to: str = BOB, amount: int = 5 * UNIT, log_index: int = 3) -> Observation:
    return Observation(
        chain="eth",
        block_number=100,
        block_hash=BLOCK_HASH,
        block_time=1_800_000_000,
        tx_hash=TX,
        kind=MovementKind.TOKEN,
        token=TOKEN,
        from_address=frm,
        to_address=to,
        amount=amount,
        log_index=log_index,
    )


def call(
    frm: str,
    to: str,
    selector: bytes,
    *,
    logs: tuple[Log, ...] = (),
    calls: tuple[Frame, ...] = (),
    kind: str = "CALL",
    error: str | None = None,
) -> Frame:
    return Frame(kind=kind, from_address=frm, to=to, input=selector + bytes(64), logs=logs, calls=calls, error=error)


def traced(root: Frame) -> TxEvidence:
    return TxEvidence(TX, root.from_address, root.to, root.input, root=root)


# ----------------------------------------------------------------------------- from call frames


@pytest.mark.parametrize(
    ("selector", "name"),
    [(FORCED, "forcedTransfer"), (BATCH_FORCED, "batchForcedTransfer"), (RECOVERY, "recoveryAddress"), (BURN, "burn")],
)
def test_an_agents_call_into_the_token_is_the_issuers(selector: bytes, name: str) -> None:
    root = call(AGENT, TOKEN, selector, logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    assert classify(transfer_obs(), traced(root)) == Classification(Initiator.ISSUER, name, AGENT)
    assert ISSUER_FUNCTIONS[selector] == name


def test_the_token_frame_is_found_through_a_proxy_and_an_agent_contract() -> None:
    """An agent contract (called by a relayer) calls the token proxy, whose implementation emits
    the log by DELEGATECALL: the agent is the proxy's caller, not the relayer nor the proxy."""
    agent_contract = addr(0xA6C0)
    impl = call(TOKEN, PROXY_IMPL, FORCED, kind="DELEGATECALL", logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    root = call(RELAYER, agent_contract, UNKNOWN, calls=(call(agent_contract, TOKEN, FORCED, calls=(impl,)),))
    found = classify(transfer_obs(), traced(root))
    assert found == Classification(Initiator.ISSUER, "forcedTransfer", agent_contract)


def test_a_safe_executing_its_own_transfer_is_the_wallet_whoever_sent_it() -> None:
    token_call = call(WALLET, TOKEN, TRANSFER, logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    singleton = call(WALLET, SAFE_SINGLETON, UNKNOWN, kind="DELEGATECALL", calls=(token_call,))
    root = call(RELAYER, WALLET, UNKNOWN, calls=(singleton,))
    assert classify(transfer_obs(), traced(root)) == Classification(Initiator.WALLET, None, WALLET)


def test_transfer_from_by_another_account_is_a_spender_and_by_the_holder_the_wallet() -> None:
    by_spender = call(SPENDER, TOKEN, TRANSFER_FROM, logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    assert classify(transfer_obs(), traced(by_spender)) == Classification(Initiator.SPENDER, None, SPENDER)
    by_holder = call(WALLET, TOKEN, TRANSFER_FROM, logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    assert classify(transfer_obs(), traced(by_holder)) == Classification(Initiator.WALLET, None, WALLET)


def test_mints_and_recoveries_are_told_by_the_tokens_events_too() -> None:
    mint = call(AGENT, TOKEN, MINT, logs=(transfer_log(ZERO_ADDRESS, WALLET, UNIT),))
    assert classify(transfer_obs(ZERO_ADDRESS, WALLET, UNIT), traced(mint)) == Classification(
        Initiator.ISSUER, "mint", AGENT
    )
    # A function this code does not know, but the token says RecoverySuccess(lost, new) in it.
    odd = call(AGENT, TOKEN, UNKNOWN, logs=(transfer_log(WALLET, BOB, 5 * UNIT), recovered_log(WALLET, BOB)))
    assert classify(transfer_obs(), traced(odd)) == Classification(Initiator.ISSUER, "recoveryAddress", AGENT)


@pytest.mark.parametrize(
    "root",
    [
        # the Transfer is not in the trace at all
        call(AGENT, TOKEN, FORCED, logs=(transfer_log(WALLET, BOB, 4 * UNIT),)),
        # its frame reverted (its logs were dropped from the receipt)
        call(
            RELAYER,
            addr(0xC0),
            UNKNOWN,
            calls=(call(AGENT, TOKEN, FORCED, error="reverted", logs=(transfer_log(WALLET, BOB, 5 * UNIT),)),),
        ),
        # emitted under another account than the one called (not a token's own frame)
        call(AGENT, addr(0xE71), FORCED, logs=(transfer_log(WALLET, BOB, 5 * UNIT),)),
        # an unknown function called by someone other than the holder
        call(RELAYER, TOKEN, UNKNOWN, logs=(transfer_log(WALLET, BOB, 5 * UNIT),)),
        # two identical Transfers that tell different stories
        call(
            RELAYER,
            addr(0xC0),
            UNKNOWN,
            calls=(
                call(AGENT, TOKEN, FORCED, logs=(transfer_log(WALLET, BOB, 5 * UNIT),)),
                call(WALLET, TOKEN, TRANSFER, logs=(transfer_log(WALLET, BOB, 5 * UNIT),)),
            ),
        ),
    ],
    ids=["not-found", "reverted", "other-emitter", "unknown-function", "ambiguous"],
)
def test_what_the_trace_does_not_settle_gets_no_initiator(root: Frame) -> None:
    assert classify(transfer_obs(), traced(root)) is None


NON_ISSUER = st.sampled_from([TRANSFER, TRANSFER_FROM, UNKNOWN, bytes.fromhex("88d695b2")])


@settings(max_examples=200, deadline=None)
@given(selector=NON_ISSUER, depth=st.integers(0, 4), via_proxy=st.booleans(), amount=st.integers(1, 2**96))
def test_a_holders_own_call_is_never_classified_as_the_issuers(
    selector: bytes, depth: int, via_proxy: bool, amount: int
) -> None:
    """Whatever wraps it, a Transfer whose token frame the holder itself called with a function
    that is not the issuer's is the wallet's: the classification cannot hide a theft."""
    log = transfer_log(WALLET, BOB, amount)
    inner = call(TOKEN, PROXY_IMPL, selector, kind="DELEGATECALL", logs=(log,)) if via_proxy else None
    frame = call(WALLET, TOKEN, selector, logs=() if inner else (log,), calls=(inner,) if inner else ())
    for level in range(depth):
        frame = call(addr(0xF00 + level), WALLET if level == 0 else addr(0xF00 + level - 1), UNKNOWN, calls=(frame,))
    found = classify(transfer_obs(amount=amount), traced(frame))
    assert found == Classification(Initiator.WALLET, None, WALLET)


# ----------------------------------------------------------------------------- without a trace


def receipt(*logs: tuple[int, Log], to: str | None = TOKEN, data: bytes = FORCED, sender: str = AGENT) -> TxEvidence:
    return TxEvidence(TX, sender, to, data, receipt=tuple(ReceiptLog(i, log) for i, log in logs))


def test_without_a_trace_a_call_straight_into_the_token_names_its_function_and_sender() -> None:
    evidence = receipt((3, transfer_log(WALLET, BOB, 5 * UNIT)))
    assert classify(transfer_obs(), evidence) == Classification(Initiator.ISSUER, "forcedTransfer", AGENT)
    theft = receipt((3, transfer_log(WALLET, BOB, 5 * UNIT)), data=TRANSFER, sender=WALLET)
    assert classify(transfer_obs(), theft) == Classification(Initiator.WALLET, None, WALLET)


def test_without_a_trace_only_the_tokens_own_events_say_issuer() -> None:
    via = addr(0xA6C0)
    unfrozen = receipt(
        (2, unfrozen_log(WALLET, UNIT)), (3, transfer_log(WALLET, BOB, 5 * UNIT)), to=via, sender=RELAYER
    )
    assert classify(transfer_obs(), unfrozen) == Classification(Initiator.ISSUER, "forcedTransfer", None)
    burned = receipt((2, unfrozen_log(WALLET, UNIT)), (3, transfer_log(WALLET, ZERO_ADDRESS, 5 * UNIT)), to=via)
    assert classify(transfer_obs(to=ZERO_ADDRESS), burned) == Classification(Initiator.ISSUER, "burn", None)
    recovered = receipt((3, transfer_log(WALLET, BOB, 5 * UNIT)), (9, recovered_log(WALLET, BOB)), to=via)
    assert classify(transfer_obs(), recovered) == Classification(Initiator.ISSUER, "recoveryAddress", None)
    # TokensUnfrozen of another holder, or not just before the Transfer: nothing is claimed.
    other = receipt((2, unfrozen_log(BOB, UNIT)), (3, transfer_log(WALLET, BOB, 5 * UNIT)), to=via, sender=RELAYER)
    apart = receipt((1, unfrozen_log(WALLET, UNIT)), (3, transfer_log(WALLET, BOB, 5 * UNIT)), to=via, sender=RELAYER)
    assert classify(transfer_obs(), other) is None and classify(transfer_obs(), apart) is None
    # The wallet sent the transaction itself (a router pulled its tokens): its own.
    assert classify(transfer_obs(), receipt(to=via, sender=WALLET)) == Classification(Initiator.WALLET, None, WALLET)


def test_annotate_classifies_erc3643_transfers_and_only_the_certain_for_other_tokens() -> None:
    usdc = addr(0x05DC)
    trex = transfer_obs()
    plain_sent = replace(transfer_obs(), token=usdc, tx_hash="0x" + "01" * 32, log_index=1)
    fee = Observation(
        "eth",
        100,
        BLOCK_HASH,
        0,
        plain_sent.tx_hash,
        MovementKind.FEE,
        None,
        WALLET,
        ZERO_ADDRESS,
        21_000,
        trace_position="fee",
    )
    plain_relayed = replace(plain_sent, tx_hash="0x" + "02" * 32)
    untraced = replace(transfer_obs(), tx_hash="0x" + "03" * 32)
    root = call(AGENT, TOKEN, FORCED, logs=(transfer_log(WALLET, BOB, 5 * UNIT),))
    observations = [trex, plain_sent, fee, plain_relayed, untraced]
    assert transactions_to_trace(observations, [TOKEN]) == [(TX, BLOCK_HASH), (untraced.tx_hash, BLOCK_HASH)]
    out = annotate(observations, {TX: traced(root)}, [TOKEN], [WALLET])
    assert [(o.initiator, o.function, o.agent) for o in out] == [
        (Initiator.ISSUER, "forcedTransfer", AGENT),
        (Initiator.WALLET, None, WALLET),  # the wallet paid the gas of its transaction
        (None, None, None),
        (None, None, None),  # someone else sent it: not claimed
        (None, None, None),  # no evidence: never a guess
    ]


# ----------------------------------------------------------------------------- the issuer-outflow finding

MMF = AssetSettings(name="MMF", chain="eth", decimals=18, kind=AssetKind.MMF, address=TOKEN, issuer_standard="erc3643")
GOLD = AssetSettings(
    name="GOLD", chain="eth", decimals=18, kind=AssetKind.WRAPPED, address=TOKEN, issuer_standard="erc3643"
)
W = WalletSettings(name="seg-1", chain="eth", address=WALLET, seg_class=SegClass.FUTURES)
PIN = BlockRef(200, "0x" + "ee" * 32)


def surveillance(*observations: Observation, asset: AssetSettings = MMF, **kw: object) -> SurveillanceInputs:
    movements = tuple(movements_for(observations, [W], [asset]))
    return SurveillanceInputs("eth", PIN, 1_900_000_000, (W,), (asset,), movements, **kw)  # type: ignore[arg-type]


def forced(agent: str | None = AGENT, sender: str = AGENT, function: str = "forcedTransfer") -> Observation:
    return replace(transfer_obs(), initiator=Initiator.ISSUER, function=function, agent=agent, sender=sender)


def test_an_issuer_outflow_is_critical_names_the_agent_and_is_never_matched_or_unauthorized() -> None:
    instruction = ValidInstruction("wd-1", "eth", "seg-1", "MMF", BOB, 5 * UNIT, 2_000_000_000)
    inputs = surveillance(forced(agent=addr(0xA6C0), sender=RELAYER), instructions=(instruction,))
    [finding] = check_issuer_outflows(inputs)
    assert finding.key == BreakKey(BreakKind.ISSUER_FORCED_TRANSFER, "eth", "seg-1", "MMF", TX)
    assert (finding.severity, finding.amount) == (Severity.CRITICAL, 5 * UNIT)
    for text in ("forcedTransfer", addr(0xA6C0), RELAYER, BOB, TX, "5.000000000000000000 MMF"):
        assert text in finding.detail
    assert check_outflows(inputs) == []
    result = match_outflows(inputs.movements, inputs.instructions, {})
    assert result.matches == () and result.unauthorized == ()  # the instruction stays unconsumed


def test_without_a_trace_the_finding_says_the_agent_is_not_known() -> None:
    [finding] = check_issuer_outflows(surveillance(forced(agent=None, sender=RELAYER)))
    assert "agent is not known" in finding.detail and RELAYER in finding.detail


def test_an_issuer_outflow_booked_raises_nothing_and_its_break_is_resolved() -> None:
    booked = frozenset({TX})
    assert check_issuer_outflows(surveillance(forced(), booked_tx_hashes=booked)) == []
    key = BreakKey(BreakKind.ISSUER_FORCED_TRANSFER, "eth", "seg-1", "MMF", TX)
    assert issuer_coverage(surveillance(forced(), booked_tx_hashes=booked)) == {key}
    # observed by an earlier run, booked since: this run resolves it without seeing it again
    later = surveillance(booked_tx_hashes=booked, issuer_outflows=frozenset({("seg-1", "MMF", TX)}))
    assert issuer_coverage(later) == {key}
    assert issuer_coverage(surveillance(forced())) == frozenset()  # not booked: stays open
    judged = surveillance(forced(), already_matched=frozenset({forced().identity}))
    assert check_issuer_outflows(judged) == []  # judged once


def test_a_wallets_own_transfer_is_still_unauthorized_and_not_the_issuers() -> None:
    own = replace(transfer_obs(), initiator=Initiator.WALLET, agent=WALLET, sender=WALLET)
    inputs = surveillance(own)
    assert check_issuer_outflows(inputs) == []
    [theft] = check_outflows(inputs)
    assert theft.key.kind is BreakKind.UNAUTHORIZED_TRANSFER and theft.severity is Severity.CRITICAL


def test_issuer_inflows_are_never_unexpected_whatever_the_asset_kind() -> None:
    mint_in = replace(transfer_obs(ZERO_ADDRESS, WALLET), initiator=Initiator.ISSUER, function="mint")
    forced_in = replace(transfer_obs(BOB, WALLET), initiator=Initiator.ISSUER, function="forcedTransfer", log_index=4)
    deposit = replace(transfer_obs(BOB, WALLET), initiator=Initiator.WALLET, log_index=5, tx_hash="0x" + "07" * 32)
    found = check_inflows(surveillance(mint_in, forced_in, deposit, asset=GOLD))
    assert [f.key.tx_hash for f in found] == [deposit.tx_hash]


# ----------------------------------------------------------------------------- freezes read at the pin

ERC = WatchedAsset("MMF", TOKEN, 18, issuer_standard="erc3643")
BLOCK = BlockRef(500, "0x" + "55" * 32)


def wallet_obs(
    frozen: int | None = 0,
    flag: ControlState = ControlState.NO,
    paused: ControlState = ControlState.NO,
    balance: int | None = 1_000 * UNIT,
    asset: WatchedAsset = ERC,
) -> WalletObservations:
    controls = IssuerControls(
        block_number=BLOCK.number,
        freezes=(
            FreezeReading(
                TOKEN,
                WALLET,
                "isFrozen",
                BLOCK.number,
                flag,
                "isFrozen(x) reverted" if flag is ControlState.UNKNOWN else "",
            ),
        ),
        pauses=(PauseReading(TOKEN, BLOCK.number, paused),),
        frozen=(FrozenTokensReading(TOKEN, WALLET, BLOCK.number, frozen, "" if frozen is not None else "reverted"),),
    )
    balances = {} if balance is None else {("seg-1", "MMF"): balance}
    return WalletObservations(
        "eth", BLOCK, (WatchedWallet("seg-1", WALLET),), {}, assets=(asset,), controls=controls, balances=balances
    )


def test_a_partial_freeze_is_collateral_encumbered_with_the_exact_amount() -> None:
    [finding] = check_encumbrances(wallet_obs(frozen=300 * UNIT + 7))
    assert finding.key == BreakKey(BreakKind.COLLATERAL_ENCUMBERED, "eth", "seg-1", "MMF")
    assert (finding.severity, finding.amount) == (Severity.WARNING, 300 * UNIT + 7)
    assert "300.000000000000000007" in finding.detail and "699.999999999999999993" in finding.detail
    assert check_encumbrances(wallet_obs(frozen=0)) == []
    [unknown] = check_encumbrances(wallet_obs(frozen=None))
    assert (unknown.severity, unknown.amount) == (Severity.WARNING, None) and "could not tell" in unknown.detail
    assert check_issuer_controls(wallet_obs(frozen=300 * UNIT)) == []  # a partial freeze is not asset_frozen


def test_a_frozen_wallet_or_a_paused_erc3643_token_is_critical() -> None:
    [frozen] = check_issuer_controls(wallet_obs(flag=ControlState.YES))
    assert frozen.severity is Severity.CRITICAL and f"isFrozen({WALLET}) is true" in frozen.detail
    [paused] = check_issuer_controls(wallet_obs(paused=ControlState.YES))
    assert paused.severity is Severity.CRITICAL and "paused" in paused.detail
    assert check_issuer_controls(wallet_obs(paused=ControlState.YES, balance=0)) == []  # holds none
    [unknown] = check_issuer_controls(wallet_obs(flag=ControlState.UNKNOWN))
    assert unknown.severity is Severity.WARNING and "could not tell" in unknown.detail
    # freeze_check naming the same view is one read and one reason, at the ERC-3643 severity
    both = replace(ERC, freeze_check="isFrozen", pause_check=True)
    [one] = check_issuer_controls(wallet_obs(flag=ControlState.YES, asset=both))
    assert one.severity is Severity.CRITICAL and one.detail.count("isFrozen(") == 1


def test_the_coverage_resolves_encumbrances_of_erc3643_assets_only() -> None:
    plain = WatchedAsset("USDC", addr(0x05DC), 6)
    obs = replace(wallet_obs(), assets=(ERC, plain))
    spans = {kind: assets for kind, _, assets in wallet_check_coverage(obs)}
    assert spans[BreakKind.COLLATERAL_ENCUMBERED] == ("MMF",)


# ----------------------------------------------------------------------------- valuing the free part

HOLD = st.builds(
    IssuerHold,
    frozen=st.none() | st.integers(0, 2**200),
    wallet_frozen=st.none() | st.booleans(),
    paused=st.none() | st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(units=st.integers(0, 2**200), hold=st.none() | HOLD, price=st.decimals("0.0001", "100000", places=4))
def test_encumbered_and_free_add_up_to_what_is_held_and_free_is_never_worth_more(
    units: int, hold: IssuerHold | None, price: Decimal
) -> None:
    encumbered = encumbered_units(units, hold)
    if encumbered is None:  # could not tell: only when no view said "all of it"
        assert hold is not None and hold.wallet_frozen is not True and hold.paused is not True
        return
    free = units - encumbered
    assert 0 <= encumbered <= units and encumbered + free == units
    assert units_value(free, 18, price) <= units_value(units, 18, price)
    if hold is not None and (hold.wallet_frozen or hold.paused):
        assert free == 0


MMF_PRICED = replace(MMF, price_usd=Decimal("1.00"), dco_haircuts=(Decimal("0.02"),), government_fund=True)


def seg_inputs(holds: dict[tuple[str, str], IssuerHold]) -> SegregationInputs:
    return SegregationInputs(
        as_of=datetime(2026, 11, 24, 23, tzinfo=UTC),
        business_date=datetime(2026, 11, 24).date(),
        wallets={"seg-1": W},
        assets={"MMF": MMF_PRICED},
        segregation=SegregationSettings(),
        accounts={},
        book=(),
        holdings={("seg-1", "MMF"): 1_000 * UNIT},
        chains={"eth": ChainPin("eth", BlockRef(1, "0x" + "11" * 32), 0)},
        classes=(SegClass.FUTURES,),
        holds=holds,
    )


def futures_holding(holds: dict[tuple[str, str], IssuerHold]) -> dict[str, object]:
    [statement] = compute_statements(seg_inputs(holds))
    [holding] = statement.holdings
    return holding_doc(holding)


def test_a_statement_values_only_the_free_units_and_shows_the_encumbered_ones() -> None:
    partial = futures_holding({("seg-1", "MMF"): IssuerHold(300 * UNIT, False, False)})
    assert (partial["units"], partial["encumbered"], partial["encumbered_display"]) == (
        str(1_000 * UNIT),
        str(300 * UNIT),
        "300.000000000000000000",
    )
    assert (partial["market_value"], partial["value"]) == ("700.00", "686.00")
    frozen_wallet = futures_holding({("seg-1", "MMF"): IssuerHold(0, True, False)})
    assert (frozen_wallet["encumbered"], frozen_wallet["market_value"], frozen_wallet["value"]) == (
        str(1_000 * UNIT),
        "0.00",
        "0.00",
    )
    none = futures_holding({})
    assert (none["encumbered"], none["market_value"]) == ("0", "1000.00")


def test_a_hold_that_could_not_be_read_makes_the_statement_incomplete_not_clean() -> None:
    inputs = seg_inputs({("seg-1", "MMF"): IssuerHold(None, False, False, "getFrozenTokens(x) reverted")})
    [statement] = compute_statements(inputs)
    assert not statement.complete and statement.funds_in_segregation is None
    assert any("could not tell how much is frozen (getFrozenTokens(x) reverted)" in p for p in statement.problems)
    [holding] = statement.holdings
    assert holding.encumbered is None and holding.value is None


def test_stored_inputs_keep_the_holds_and_older_ones_read_as_nothing_encumbered() -> None:
    inputs = seg_inputs({("seg-1", "MMF"): IssuerHold(2**200 + 1, None, True, "isFrozen(x) reverted")})
    stored = json.loads(json.dumps(inputs_to_json(inputs)))
    again = inputs_from_json(stored)
    assert again.holds == inputs.holds and again.assets["MMF"].issuer_standard == "erc3643"
    assert [holding_doc(h) for s in compute_statements(again) for h in s.holdings] == [
        holding_doc(h) for s in compute_statements(inputs) for h in s.holdings
    ]
    del stored["holds"]
    for a in stored["assets"]:
        del a["issuer_standard"]
    older = inputs_from_json(stored)
    [holding] = [h for s in compute_statements(older) for h in s.holdings]
    assert holding.encumbered == 0 and holding_doc(holding)["market_value"] == "1000.00"


def test_the_pilot_report_shows_encumbered_units_beside_the_held_ones() -> None:
    inputs = seg_inputs({("seg-1", "MMF"): IssuerHold(250 * UNIT, False, False)})
    [row] = pilot_report(inputs).rows
    assert (row.units, row.encumbered, row.market_value) == (1_000 * UNIT, 250 * UNIT, Decimal("1000.00"))
    unknown = replace(inputs, holds={("seg-1", "MMF"): IssuerHold(None, False, False, "reverted")})
    report = pilot_report(unknown)
    assert report.rows[0].encumbered is None and any("could not tell" in p for p in report.problems)
