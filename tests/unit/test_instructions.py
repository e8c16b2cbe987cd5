"""Signed transfer instructions: the file format, EIP-712 signatures, signing files, keys."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from reconciler.errors import ConfigError, InputError
from reconciler.inputs.config import parse_settings
from reconciler.inputs.instructions import (
    SECP256K1_N,
    load_instructions,
    load_key,
    parse_instructions,
    partition_valid,
    recover_signers,
    sign,
    sign_file,
    typed_data,
    verify,
    verify_file,
)
from reconciler.inputs.settings import Settings
from reconciler.transfers import ZERO_ADDRESS, Instruction, ValidInstruction

KEY_A = bytes.fromhex("a1" * 32)
KEY_B = bytes.fromhex("b2" * 32)
KEY_C = bytes.fromhex("c3" * 32)
KEY_OUTSIDER = bytes.fromhex("d4" * 32)
A, B, C, OUTSIDER = (Account.from_key(k).address for k in (KEY_A, KEY_B, KEY_C, KEY_OUTSIDER))
WALLET = "0x" + "11" * 20
HOUSE = "0x" + "22" * 20
SOLO = "0x" + "33" * 20
BASE_WALLET = "0x" + "44" * 20
USDC = "0x" + "55" * 20
USDC_BASE = "0x" + "66" * 20
TO = "0x" + "77" * 20
TO_CHECKSUMMED = "0x7777777777777777777777777777777777777777"
RECIPIENT = "0xaBCdEf0000000000000000000000000000000001"


def _settings() -> Settings:
    raw: dict[str, Any] = {
        "chains": {
            "eth": {"kind": "evm", "rpc_urls": ["http://127.0.0.1:8545"], "chain_id": 31337},
            "base": {"kind": "evm", "rpc_urls": ["http://127.0.0.1:9545"], "chain_id": 8453},
        },
        "assets": {
            "USDC": {"chain": "eth", "address": USDC, "decimals": 6, "kind": "stablecoin"},
            "ETH": {"chain": "eth", "native": True, "kind": "native"},
            "USDC-base": {"chain": "base", "address": USDC_BASE, "decimals": 6, "kind": "stablecoin"},
        },
        "wallets": {
            "cust-seg-1": {
                "chain": "eth",
                "address": WALLET,
                "class": "futures",
                "approvers": [A, B, C],
                "threshold": 2,
            },
            "house-1": {"chain": "eth", "address": HOUSE, "class": "house"},
            "solo": {"chain": "eth", "address": SOLO, "class": "house", "approvers": [A]},  # threshold 0
            "base-seg": {"chain": "base", "address": BASE_WALLET, "class": "futures", "approvers": [A], "threshold": 1},
        },
    }
    return parse_settings(raw, Path("/nonexistent/reconciler.toml"))


SETTINGS = _settings()


def fields(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "wd-2026-11-24-001",
        "chain": "eth",
        "wallet": "cust-seg-1",
        "asset": "USDC",
        "to": RECIPIENT,
        "amount": "1250000000",
        "valid_until": "2026-11-25T00:00:00Z",
        "signatures": [],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def line(**overrides: Any) -> str:
    return json.dumps(fields(**overrides))


def one(**overrides: Any) -> Instruction:
    [instr] = parse_instructions(line(**overrides), "i.jsonl", SETTINGS)
    return instr


def signed(*keys: bytes, **overrides: Any) -> Instruction:
    instr = one(**overrides)
    sigs = tuple(sign(instr, SETTINGS, k) for k in keys)
    return replace(instr, signatures=sigs)


def problems_of(text: str, loader: Any = parse_instructions) -> list[str]:
    with pytest.raises(InputError) as info:
        loader(text, "i.jsonl", SETTINGS)
    assert info.value.source == "i.jsonl"
    return list(info.value.problems)


# ----------------------------------------------------------------------------- parsing


def test_a_well_formed_line_parses() -> None:
    instr = one()
    assert instr == Instruction(
        id="wd-2026-11-24-001",
        chain="eth",
        wallet="cust-seg-1",
        asset="USDC",
        to=RECIPIENT,
        amount=1_250_000_000,
        valid_until=datetime(2026, 11, 25, tzinfo=UTC),
        signatures=(),
        line=1,
    )
    assert instr.valid_until_unix == 1795564800


def test_blank_lines_are_skipped_and_line_numbers_kept() -> None:
    text = "\n" + line(id="a") + "\n   \n" + line(id="b") + "\n"
    assert [(i.id, i.line) for i in parse_instructions(text, "i.jsonl", SETTINGS)] == [("a", 2), ("b", 4)]


def test_an_offset_other_than_utc_is_kept_and_converted() -> None:
    instr = one(valid_until="2026-11-24T18:00:00-06:00")
    assert instr.valid_until.utcoffset() == timedelta(hours=-6)
    assert instr.valid_until_unix == one().valid_until_unix


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-11-25T00:00:00", "no UTC offset"),
        ("2026-11-25", "no UTC offset"),
        ("tomorrow", "not an ISO 8601 instant"),
        ("2026-11-25T00:00:00.5Z", "fractions of a second"),
        ("1969-12-31T23:59:59Z", "before 1970"),
    ],
)
def test_valid_until_needs_an_instant_with_its_offset(value: str, reason: str) -> None:
    [problem] = problems_of(line(valid_until=value))
    assert problem.startswith("line 1, field valid_until: ") and reason in problem


def test_an_expired_instruction_is_not_a_parse_or_signature_problem() -> None:
    instr = signed(KEY_A, KEY_B, valid_until="2001-01-01T00:00:00Z")
    assert verify(instr, SETTINGS) == []


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("1", 1), ("0001", 1), (str(2**256 - 1), 2**256 - 1), ("1250000000", 1_250_000_000)],
)
def test_amount_forms_accepted(amount: str, expected: int) -> None:
    assert one(amount=amount).amount == expected


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("-5", "digits only"),
        ("+5", "digits only"),
        ("1.5", "digits only"),
        ("1e6", "digits only"),
        (" 5", "digits only"),
        ("1_000", "digits only"),
        ("", "digits only"),
        ("0", "is 0"),
        (str(2**256), "larger than a uint256"),
        ("1" * 79, "at most 78"),
        ("9" * 5000, "at most 78"),
        (5, "must be a JSON string"),
        (None, "must be a JSON string"),
    ],
)
def test_amount_forms_refused(amount: Any, reason: str) -> None:
    [problem] = problems_of(line(amount=amount))
    assert problem.startswith("line 1, field amount: ") and reason in problem


def test_to_must_be_checksummed_and_the_message_shows_the_fix() -> None:
    [problem] = problems_of(line(to=TO.lower().replace("77", "ab")))
    assert "line 1, field to:" in problem and "checksummed form is 0x" in problem
    [problem] = problems_of(line(to="0x1234"))
    assert "not a 20-byte hex address" in problem


def test_unknown_wallet_asset_and_chain_are_named_with_a_hint() -> None:
    problems = problems_of(line(wallet="cust-seg-2", asset="USCD", chain="ethh"))
    assert any(
        "field wallet: 'cust-seg-2' is not a configured wallet; did you mean 'cust-seg-1'" in p for p in problems
    )
    assert any("field asset: 'USCD' is not a configured asset; did you mean 'USDC'" in p for p in problems)
    assert any("field chain: 'ethh' is not a configured chain" in p for p in problems)


def test_asset_and_chain_must_be_the_wallets() -> None:
    [problem] = problems_of(line(asset="USDC-base"))
    assert "field asset: USDC-base is on chain base, but wallet cust-seg-1 is on eth" in problem
    [problem] = problems_of(line(chain="base"))
    assert "field chain: 'base', but wallet cust-seg-1 is on chain eth" in problem


def test_ids_are_unique_in_the_file_and_in_the_ledger_and_bounded() -> None:
    problems = problems_of(line(id="x") + "\n" + line(id="y") + "\n" + line(id="x"))
    assert problems == ["line 3, field id: 'x' already appears on line 1"]
    [problem] = problems_of(line(id="old"), lambda t, s, st: parse_instructions(t, s, st, stored_ids={"old"}))
    assert "already in the ledger" in problem
    for bad, reason in [("", "is empty"), ("x" * 201, "at most 200"), (" x", "spaces"), ("a\nb", "control")]:
        [problem] = problems_of(line(id=bad))
        assert problem.startswith("line 1, field id: ") and reason in problem


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('"a string"', "not a JSON object"),
        (line()[:-1] + ', "amount": "9"}', "field 'amount' appears twice"),
        (line()[:-1] + ', "memo": "x"}', "unknown field 'memo'"),
        (line()[:-1] + ', "walet": "x"}', "did you mean 'wallet'?"),
        (line(to=...), "field to: is missing"),
        (line(signatures="0xab"), "field signatures: must be a JSON list"),
        (line(signatures=[1]), "field signatures: must be a JSON list"),
    ],
)
def test_malformed_lines(text: str, reason: str) -> None:
    problems = problems_of(text)
    assert any(reason in p for p in problems), problems
    assert all(p.startswith("line 1") for p in problems)


def test_signatures_may_be_absent_before_signing() -> None:
    assert one(signatures=...).signatures == ()


def test_the_whole_file_is_rejected_with_every_line_reported() -> None:
    text = "\n".join(
        [
            line(id="ok-1"),
            line(id="bad-amount", amount="1.5"),
            "",
            line(id="bad-to-and-time", to=TO.lower().replace("77", "ab"), valid_until="2026-11-25T00:00:00"),
            line(id="ok-2"),
            "{",
        ]
    )
    problems = problems_of(text)
    assert [p.split(":")[0] for p in problems] == [
        "line 2, field amount",
        "line 4, field to",
        "line 4, field valid_until",
        "line 6",
    ]
    with pytest.raises(InputError) as info:
        parse_instructions(text, "i.jsonl", SETTINGS)
    assert str(info.value).startswith("i.jsonl: rejected, nothing was imported:")


# ----------------------------------------------------------------------------- EIP-712


def test_typed_data_is_the_designs_message() -> None:
    data = typed_data(one(), SETTINGS)
    assert data["primaryType"] == "TransferInstruction"
    assert data["domain"] == {"name": "reconciler", "version": "1", "chainId": 31337, "verifyingContract": WALLET}
    assert data["message"] == {
        "id": "wd-2026-11-24-001",
        "wallet": WALLET,
        "asset": USDC,
        "to": RECIPIENT,
        "amount": 1_250_000_000,
        "validUntil": 1795564800,
    }
    assert [f["name"] for f in data["types"]["TransferInstruction"]] == [
        "id",
        "wallet",
        "asset",
        "to",
        "amount",
        "validUntil",
    ]
    assert typed_data(one(asset="ETH"), SETTINGS)["message"]["asset"] == ZERO_ADDRESS


def _digest_by_hand(instr: Instruction, chain_id: int, wallet: str, asset: str) -> bytes:
    """The EIP-712 digest computed from the specification, independently of eth-account."""
    domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    primary = keccak(
        text="TransferInstruction(string id,address wallet,address asset,address to,uint256 amount,uint256 validUntil)"
    )
    domain = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [domain_type, keccak(text="reconciler"), keccak(text="1"), chain_id, wallet],
        )
    )
    struct = keccak(
        encode(
            ["bytes32", "bytes32", "address", "address", "address", "uint256", "uint256"],
            [primary, keccak(text=instr.id), wallet, asset, instr.to, instr.amount, instr.valid_until_unix],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


@pytest.mark.parametrize("asset", ["USDC", "ETH"])
def test_a_signature_over_the_specified_digest_verifies(asset: str) -> None:
    """What any other EIP-712 implementation (a hardware wallet, ethers, a contract) signs."""
    instr = one(asset=asset)
    digest = _digest_by_hand(instr, 31337, WALLET, USDC if asset == "USDC" else ZERO_ADDRESS)
    sigs = tuple("0x" + bytes(Account.unsafe_sign_hash(digest, k).signature).hex() for k in (KEY_A, KEY_C))
    assert sigs == tuple(sign(instr, SETTINGS, k) for k in (KEY_A, KEY_C))
    assert verify(replace(instr, signatures=sigs), SETTINGS) == []


def test_two_of_three_approvers_make_it_valid() -> None:
    instr = signed(KEY_A, KEY_C)
    assert recover_signers(instr, SETTINGS) == [A, C]
    assert verify(instr, SETTINGS) == []
    valid, invalid = partition_valid([instr], SETTINGS)
    assert invalid == []
    assert valid == [
        ValidInstruction(
            id=instr.id,
            chain="eth",
            wallet="cust-seg-1",
            asset="USDC",
            to=RECIPIENT,
            amount=1_250_000_000,
            valid_until=1795564800,
        )
    ]


def test_one_of_two_required_is_not_enough() -> None:
    [problem] = verify(signed(KEY_B), SETTINGS)
    assert problem == "has 1 valid approver signature(s); wallets.cust-seg-1 needs 2 from distinct approvers"
    [problem] = verify(signed(), SETTINGS)
    assert problem.startswith("has 0 valid approver signature(s)")


def test_a_signature_by_a_non_approver_is_a_problem_even_with_enough_others() -> None:
    [problem] = verify(signed(KEY_A, KEY_OUTSIDER, KEY_B), SETTINGS)
    assert problem.startswith(f"signature 2 recovers to {OUTSIDER}, which is not an approver of wallets.cust-seg-1")


def test_a_duplicate_signer_counts_once_and_is_a_problem() -> None:
    problems = verify(signed(KEY_A, KEY_A), SETTINGS)
    assert problems == [
        f"signature 2 is a second signature by {A} (signature 1)",
        "has 1 valid approver signature(s); wallets.cust-seg-1 needs 2 from distinct approvers",
    ]


def _with_signatures(instr: Instruction, *sigs: str) -> Instruction:
    return replace(instr, signatures=sigs)


def _high_s(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s = int.from_bytes(raw[32:64], "big")
    flipped = (SECP256K1_N - s).to_bytes(32, "big")
    return "0x" + (raw[:32] + flipped + bytes([55 - raw[64]])).hex()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda s: s[:-2], "not 65 bytes"),
        (lambda s: s + "00", "not 65 bytes"),
        (lambda s: s[2:], "not 65 bytes"),
        (lambda s: "0x" + "zz" + s[4:], "not 65 bytes"),
        (lambda s: s[:-2] + "1d", "v = 29"),
        (lambda s: s[:-2] + "00", "v = 0"),
        (lambda s: "0x" + "00" * 32 + s[66:], "out of range"),
        (lambda s: "0x" + s[2:66] + "00" * 32 + s[-2:], "out of range"),
        (_high_s, "high s value"),
    ],
)
def test_malformed_signatures_are_named_and_recover_to_none(mangle: Any, reason: str) -> None:
    good = signed(KEY_A, KEY_B)
    bad = _with_signatures(good, good.signatures[0], mangle(good.signatures[1]))
    assert recover_signers(bad, SETTINGS) == [A, None]
    problems = verify(bad, SETTINGS)
    assert problems[0].startswith("signature 2 ") and reason in problems[0]
    assert "needs 2" in problems[1]


def test_high_s_twin_would_recover_to_the_same_signer_without_the_check() -> None:
    """Why the check exists: (r, N - s) with v flipped is a second valid form of one signature."""
    good = signed(KEY_A)
    twin = _high_s(good.signatures[0])
    raw = bytes.fromhex(twin[2:])
    signable = encode_typed_data(full_message=typed_data(good, SETTINGS))
    vrs = (raw[64], int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))
    assert Account.recover_message(signable, vrs=vrs) == A


def test_a_signature_is_bound_to_every_field_the_chain_and_the_wallet() -> None:
    instr = signed(KEY_A, KEY_B)
    changed = [
        _with_signatures(one(amount="1250000001"), *instr.signatures),
        _with_signatures(one(to=TO_CHECKSUMMED), *instr.signatures),
        _with_signatures(one(valid_until="2026-11-25T00:00:01Z"), *instr.signatures),
        _with_signatures(one(id="wd-other"), *instr.signatures),
        _with_signatures(one(asset="ETH"), *instr.signatures),
    ]
    for other in changed:
        assert all("not an approver" in p for p in verify(other, SETTINGS)[:2])
    wallets = dict(SETTINGS.wallets)
    wallets["cust-seg-1"] = replace(wallets["cust-seg-1"], address="0x" + "99" * 20)
    assert any("not an approver" in p for p in verify(instr, replace(SETTINGS, wallets=wallets)))
    chains = dict(SETTINGS.chains)
    chains["eth"] = replace(chains["eth"], chain_id=1)
    assert any("not an approver" in p for p in verify(instr, replace(SETTINGS, chains=chains)))


def test_a_wallet_without_approvers_or_threshold_authorizes_nothing() -> None:
    for wallet in ("house-1", "solo"):
        instr = signed(KEY_A, wallet=wallet)
        assert verify(instr, SETTINGS) == [
            f"wallets.{wallet} has no approvers: configure approvers and threshold (1 or more) "
            "to authorize its outflows"
        ]


def test_verify_takes_approvers_and_threshold_from_the_caller() -> None:
    instr = signed(KEY_A)
    assert verify(instr, SETTINGS, approvers=[A], threshold=1) == []
    assert "not an approver" in verify(instr, SETTINGS, approvers=[B], threshold=1)[0]


def test_a_stored_row_for_a_wallet_no_longer_configured_authorizes_nothing() -> None:
    instr = replace(signed(KEY_A, KEY_B), wallet="gone", line=0)
    assert verify(instr, SETTINGS) == ["wallet 'gone' is not configured"]
    valid, invalid = partition_valid([instr], SETTINGS)
    assert valid == [] and invalid[0][0] is instr
    with pytest.raises(ConfigError):
        typed_data(instr, SETTINGS)


def test_verify_file_and_load_instructions_name_every_bad_line() -> None:
    good = signed(KEY_A, KEY_B, id="ok")
    short = replace(signed(KEY_A, id="short"), line=3)
    stranger = replace(signed(KEY_A, KEY_OUTSIDER, id="stranger"), line=5)
    with pytest.raises(InputError) as info:
        verify_file([good, short, stranger], SETTINGS, source="i.jsonl")
    assert info.value.problems == [
        "line 3: has 1 valid approver signature(s); wallets.cust-seg-1 needs 2 from distinct approvers",
        f"line 5: signature 2 recovers to {OUTSIDER}, which is not an approver of wallets.cust-seg-1 "
        "(signed by another key, or over different data)",
        "line 5: has 1 valid approver signature(s); wallets.cust-seg-1 needs 2 from distinct approvers",
    ]
    verify_file([good], SETTINGS)

    text = "\n".join(
        [
            line(id="ok", signatures=list(good.signatures)),
            line(id="bad", amount="x"),
            line(id="short", signatures=list(short.signatures)),
        ]
    )
    problems = problems_of(text, load_instructions)
    assert [p.split(":")[0] for p in problems] == ["line 2, field amount", "line 3"]
    loaded = load_instructions(line(id="ok", signatures=list(good.signatures)), "i.jsonl", SETTINGS)
    assert [i.id for i in loaded] == ["ok"]


# ----------------------------------------------------------------------------- signing files


def test_sign_file_adds_a_signature_per_line_keeping_everything_else() -> None:
    text = line(id="a", signatures=...) + "\n\n" + line(id="b", asset="ETH", amount="5") + "\n"
    once = sign_file(text, "i.jsonl", SETTINGS, KEY_A)
    twice = sign_file(once, "i.jsonl", SETTINGS, KEY_B)
    lines = twice.split("\n")
    assert lines[1] == "" and len(lines) == 4 and lines[3] == ""
    first, second = json.loads(lines[0]), json.loads(lines[2])
    assert list(first) == ["id", "chain", "wallet", "asset", "to", "amount", "valid_until", "signatures"]
    assert first["amount"] == "1250000000" and second["asset"] == "ETH"
    instructions = load_instructions(twice, "i.jsonl", SETTINGS)
    assert [recover_signers(i, SETTINGS) for i in instructions] == [[A, B], [A, B]]
    assert sign_file(twice, "i.jsonl", SETTINGS, KEY_A) == twice  # not signed twice by one key
    wallets = dict(SETTINGS.wallets)
    wallets["cust-seg-1"] = replace(wallets["cust-seg-1"], threshold=1)
    assert len(load_instructions(once, "i.jsonl", replace(SETTINGS, wallets=wallets))) == 2  # 1 of 1 needed
    with pytest.raises(InputError, match="needs 2"):
        load_instructions(once, "i.jsonl", SETTINGS)


def test_sign_file_refuses_a_key_that_is_not_an_approver_and_a_malformed_file() -> None:
    with pytest.raises(InputError) as info:
        sign_file(line(), "i.jsonl", SETTINGS, KEY_OUTSIDER)
    assert info.value.problems == [
        f"line 1: the signing key's address {OUTSIDER} is not an approver of wallets.cust-seg-1"
    ]
    with pytest.raises(InputError) as info:
        sign_file(line(amount="-1"), "i.jsonl", SETTINGS, KEY_A)
    assert info.value.problems[0].startswith("line 1, field amount")


# ----------------------------------------------------------------------------- keys

SECRET_KEY_HEX = "a1" * 32
PASSWORD = "correct-horse-battery-staple-7"


def _assert_secret_free(exc: BaseException) -> None:
    text = str(exc)
    for secret in (SECRET_KEY_HEX, SECRET_KEY_HEX.upper(), PASSWORD, "SECRETVALUE"):
        assert secret not in text
    # Nothing a traceback (--debug) would print either: no cause, no shown context.
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_load_key_from_an_environment_variable() -> None:
    assert load_key(key_env="SIGNER", environ={"SIGNER": SECRET_KEY_HEX}) == KEY_A
    assert load_key(key_env="SIGNER", environ={"SIGNER": f" 0x{SECRET_KEY_HEX}\n"}) == KEY_A


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({}, r"SIGNER \(--key-env\) is not set"),
        ({"SIGNER": ""}, "is not set or empty"),
        ({"SIGNER": "SECRETVALUE" + SECRET_KEY_HEX[11:]}, "does not hold a private key"),
        ({"SIGNER": SECRET_KEY_HEX[:-2]}, "does not hold a private key"),
        ({"SIGNER": "00" * 32}, "not a valid secp256k1 private key"),
        ({"SIGNER": f"{SECP256K1_N:064x}"}, "not a valid secp256k1 private key"),
    ],
)
def test_load_key_from_env_errors_never_show_the_value(environ: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        load_key(key_env="SIGNER", environ=environ)
    _assert_secret_free(info.value)
    for value in environ.values():
        if value:
            assert value.strip() not in str(info.value)


def test_a_key_pasted_where_the_variable_name_belongs_is_not_echoed() -> None:
    with pytest.raises(ConfigError, match="takes the NAME") as info:
        load_key(key_env="0x" + SECRET_KEY_HEX, environ={})
    _assert_secret_free(info.value)


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "signer.json"
    path.write_text(json.dumps(Account.encrypt(KEY_A, PASSWORD, kdf="pbkdf2", iterations=2)))
    return path


def test_load_key_from_an_encrypted_keystore(keystore: Path) -> None:
    assert load_key(keystore=keystore, password_env="PW", environ={"PW": PASSWORD}) == KEY_A
    assert load_key(keystore=str(keystore), password_env="PW", environ={"PW": PASSWORD}) == KEY_A


def test_load_key_with_a_wrong_password_names_the_file_and_variable_only(keystore: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_key(keystore=keystore, password_env="PW", environ={"PW": PASSWORD + "x"})
    assert str(keystore) in str(info.value) and "PW" in str(info.value) and "wrong password" in str(info.value)
    _assert_secret_free(info.value)
    assert PASSWORD + "x" not in str(info.value)


def test_load_key_keystore_errors(keystore: Path, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"keystore": keystore, "password_env": "PW", "environ": {}}, r"PW \(--password-env\) is not set"),
        ({"keystore": keystore, "environ": {"PW": PASSWORD}}, "needs --password-env"),
        ({"keystore": tmp_path / "missing.json", "password_env": "PW", "environ": {"PW": PASSWORD}}, "cannot read"),
        ({"key_env": "K", "keystore": keystore, "environ": {}}, "either"),
        ({"environ": {}}, "either"),
        ({"key_env": "K", "password_env": "PW", "environ": {"K": SECRET_KEY_HEX}}, "goes with --keystore"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(ConfigError, match=reason) as info:
            load_key(**kwargs)
        assert SECRET_KEY_HEX not in str(info.value) and PASSWORD not in str(info.value)
    not_json = tmp_path / "not.json"
    not_json.write_text("SECRETVALUE " + SECRET_KEY_HEX)
    with pytest.raises(ConfigError, match="is not JSON") as info:
        load_key(keystore=not_json, password_env="PW", environ={"PW": PASSWORD})
    _assert_secret_free(info.value)
    no_crypto = tmp_path / "plain.json"
    no_crypto.write_text(json.dumps({"private_key": SECRET_KEY_HEX}))
    with pytest.raises(ConfigError, match="no 'crypto' section") as info:
        load_key(keystore=no_crypto, password_env="PW", environ={"PW": PASSWORD})
    _assert_secret_free(info.value)


def test_signing_with_a_bad_key_does_not_quote_it() -> None:
    with pytest.raises(ConfigError, match="not a valid secp256k1 private key") as info:
        sign(one(), SETTINGS, b"\x00" * 32)
    assert info.value.__suppress_context__


def test_naive_datetimes_never_reach_an_instruction() -> None:
    aware = one(valid_until="2026-11-25T05:30:00+05:30").valid_until
    assert aware.tzinfo is not None and aware == datetime(2026, 11, 25, tzinfo=UTC)


def test_lines_split_on_newlines_only() -> None:
    """U+2028 is legal inside a JSON string; splitting on it would shift every line number."""
    text = line(id="a", asset="US\u2028DC") + "\r\n" + line(id="b", amount="x") + "\r\n"
    problems = problems_of("\ufeff" + text)
    assert [p.split(":")[0] for p in problems] == ["line 1, field asset", "line 2, field amount"]


def test_sign_file_leaves_a_line_this_key_signed_exactly_as_it_was() -> None:
    first = json.dumps(
        fields(id="a", signatures=list(signed(KEY_A, id="a").signatures)), indent=None, separators=(",", ":")
    )
    text = first + "\n" + line(id="b") + "\n"
    out = sign_file(text, "i.jsonl", SETTINGS, KEY_A).split("\n")
    assert out[0] == first and json.loads(out[1])["signatures"] != []
