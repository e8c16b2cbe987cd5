"""Amounts are exact integers in base units; addresses are EIP-55 or refused with the fix."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import (
    AMOUNT_RE,
    UINT256_MAX,
    AddressError,
    AmountError,
    Position,
    checksum_address,
    format_amount,
    parse_amount,
    pinned_number,
)

# EIP-55's own test vector.
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


# ----------------------------------------------------------------------------- parse_amount


def test_parse_amount_is_exact_for_large_values() -> None:
    assert parse_amount("1000000000.000000000000000001", 18) == 10**27 + 1
    assert parse_amount("10000000000.000000000000000001", 18) == 10**28 + 1
    assert parse_amount("123456789012345678901234567890.123456789012345678", 18) == (
        123456789012345678901234567890123456789012345678
    )


def test_parse_amount_does_not_go_through_a_28_digit_decimal_context() -> None:
    # 10**28 + 1 has 29 significant digits: a Decimal with the default 28-digit context
    # rounds the last unit away, so an implementation taking that shortcut fails here.
    text = "10000000000.000000000000000001"
    with localcontext() as ctx:
        ctx.prec = 28
        assert int(Decimal(text) * 10**18) == 10**28
    assert parse_amount(text, 18) == 10**28 + 1


@pytest.mark.parametrize(
    ("text", "decimals", "expected"),
    [
        ("0", 6, 0),
        ("1", 6, 1_000_000),
        ("1.5", 6, 1_500_000),
        ("1250000.50", 6, 1_250_000_500_000),
        ("0.000001", 6, 1),
        ("-0.000001", 6, -1),
        ("-42.25", 2, -4225),
        ("7", 0, 7),
        ("7.000", 0, 7),
        ("007.10", 2, 710),
        ("-0", 6, 0),
    ],
)
def test_parse_amount_valid(text: str, decimals: int, expected: int) -> None:
    assert parse_amount(text, decimals) == expected


@pytest.mark.parametrize(
    "text",
    [
        "1e5",
        "1E5",
        "+5",
        "1,000",
        " 5",
        "5 ",
        "NaN",
        "Infinity",
        "1_000",
        ".5",
        "5.",
        "",
        "--1",
        "-",
        "0x10",
        "5\n",
        "１",
    ],
)
def test_parse_amount_rejects_non_plain_decimals(text: str) -> None:
    with pytest.raises(AmountError, match="not a plain decimal"):
        parse_amount(text, 6)


def test_parse_amount_rejects_over_precision() -> None:
    with pytest.raises(AmountError, match="7 fractional digits; the asset has 6"):
        parse_amount("1.1234567", 6)
    with pytest.raises(AmountError, match="fractional digits"):
        parse_amount("0.5", 0)


def test_parse_amount_allows_trailing_zeros_beyond_precision() -> None:
    assert parse_amount("1.500000000", 6) == 1_500_000
    assert parse_amount("-1.1234560000", 6) == -1_123_456


def test_parse_amount_uint256_bounds() -> None:
    assert parse_amount(str(UINT256_MAX), 0) == UINT256_MAX
    assert parse_amount("-" + str(UINT256_MAX), 0) == -UINT256_MAX
    with pytest.raises(AmountError, match="uint256"):
        parse_amount(str(UINT256_MAX + 1), 0)
    with pytest.raises(AmountError, match="uint256"):
        parse_amount("-" + str(UINT256_MAX + 1), 0)
    # The bound applies to base units, not to the written number.
    whole, frac = divmod(UINT256_MAX, 10**18)
    assert parse_amount(f"{whole}.{frac:018d}", 18) == UINT256_MAX
    with pytest.raises(AmountError, match="uint256"):
        parse_amount(f"{whole + 1}", 18)


@pytest.mark.parametrize("text", ["1" * 5000, "-" + "9" * 4301 + ".5", "1" * 79, "-" + "1" * 79, "1" * 100_000 + ".0"])
def test_parse_amount_refuses_too_many_digits_with_an_amount_error(text: str) -> None:
    # Python's int() refuses more than 4300 digits with a bare ValueError; the length check
    # comes first, and the message stays short whatever the input's length.
    with pytest.raises(AmountError, match="digits before the point; a uint256 amount has at most 78") as exc_info:
        parse_amount(text, 0 if "." not in text else 1)
    assert len(str(exc_info.value)) < 200


def test_parse_amount_counts_significant_digits_only() -> None:
    assert parse_amount("0" * 5000 + "1", 0) == 1
    assert parse_amount("1." + "0" * 5000, 6) == 1_000_000
    assert parse_amount("0" * 100 + str(UINT256_MAX), 0) == UINT256_MAX


def test_parse_amount_shortens_long_inputs_in_messages() -> None:
    with pytest.raises(AmountError) as exc_info:
        parse_amount("x" * 10_000, 6)
    assert "not a plain decimal" in str(exc_info.value)
    assert "10000 characters" in str(exc_info.value)
    assert len(str(exc_info.value)) < 200


_DIGITY = st.text(alphabet="0123456789.-", max_size=120) | st.builds(
    lambda sign, whole, frac: f"{sign}{whole}{frac}",
    st.sampled_from(["", "-"]),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.sampled_from(["", ".5", ".000", "." + "0" * 5000]),
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60) | _DIGITY, decimals=st.integers(min_value=0, max_value=77))
def test_parse_amount_raises_nothing_but_amount_error(text: str, decimals: int) -> None:
    try:
        units = parse_amount(text, decimals)
    except AmountError as exc:
        assert len(str(exc)) < 300
        return
    assert type(units) is int
    assert -UINT256_MAX <= units <= UINT256_MAX
    assert AMOUNT_RE.fullmatch(text)


def test_parse_amount_negative_values() -> None:
    assert parse_amount("-1250000.50", 6) == -1_250_000_500_000
    assert parse_amount("-1000000000.000000000000000001", 18) == -(10**27 + 1)


def test_parse_amount_returns_int_not_decimal() -> None:
    value = parse_amount("1.5", 6)
    assert type(value) is int


# ----------------------------------------------------------------------------- format_amount


@pytest.mark.parametrize(
    ("units", "decimals", "expected"),
    [
        (1_500_000, 6, "1.500000"),
        (0, 6, "0.000000"),
        (1, 6, "0.000001"),
        (-1, 6, "-0.000001"),
        (-1_500_000, 6, "-1.500000"),
        (1_000_000_000_000, 6, "1000000.000000"),
        (10**27 + 1, 18, "1000000000.000000000000000001"),
        (42, 0, "42"),
        (-42, 0, "-42"),
    ],
)
def test_format_amount_shows_full_decimals(units: int, decimals: int, expected: str) -> None:
    assert format_amount(units, decimals) == expected


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(min_value=-UINT256_MAX, max_value=UINT256_MAX),
    decimals=st.integers(min_value=0, max_value=30),
)
def test_format_then_parse_round_trips(units: int, decimals: int) -> None:
    text = format_amount(units, decimals)
    assert AMOUNT_RE.fullmatch(text)
    if decimals:
        assert len(text.rsplit(".", 1)[1]) == decimals
    else:
        assert "." not in text
    assert parse_amount(text, decimals) == units


def test_position_difference_is_onchain_minus_book() -> None:
    pos = Position(chain="eth", wallet="w1", asset="USDC", decimals=6, book=1_000_000, onchain=500_000)
    assert pos.difference == -500_000


# ----------------------------------------------------------------------------- checksum_address


@pytest.mark.parametrize(
    "address",
    [
        CHECKSUMMED,
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0xde709f2102306220921060314715629080e2fb77",  # its checksum happens to be all lower case
        "0x1111111111111111111111111111111111111111",
    ],
)
def test_checksum_address_accepts_eip55(address: str) -> None:
    assert checksum_address(address) == address


def test_checksum_address_rejects_all_lowercase_and_shows_the_fix() -> None:
    with pytest.raises(AddressError) as exc_info:
        checksum_address(CHECKSUMMED.lower())
    assert CHECKSUMMED in str(exc_info.value)
    assert "EIP-55" in str(exc_info.value)


def test_checksum_address_rejects_all_uppercase() -> None:
    with pytest.raises(AddressError) as exc_info:
        checksum_address("0x" + CHECKSUMMED[2:].upper())
    assert CHECKSUMMED in str(exc_info.value)


def test_checksum_address_rejects_wrong_case_and_shows_the_fix() -> None:
    wrong = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # one letter's case flipped
    assert wrong.lower() == CHECKSUMMED.lower()
    with pytest.raises(AddressError) as exc_info:
        checksum_address(wrong)
    assert CHECKSUMMED in str(exc_info.value)


def test_checksum_address_rejects_missing_prefix() -> None:
    with pytest.raises(AddressError):
        checksum_address(CHECKSUMMED[2:])


@pytest.mark.parametrize(
    "text",
    [
        CHECKSUMMED[:-1],  # 39 hex digits
        CHECKSUMMED[:-2],  # 19 bytes
        CHECKSUMMED + "00",  # 21 bytes
        "0x" + "g" * 40,
        "0xZ" + CHECKSUMMED[3:],
        "0x",
        "",
        "not an address",
    ],
)
def test_checksum_address_rejects_malformed(text: str) -> None:
    with pytest.raises(AddressError, match="20-byte hex address"):
        checksum_address(text)


@pytest.mark.parametrize(
    ("head", "confirmations", "expected"),
    [(0, 0, 0), (10, 0, 10), (10, 3, 7), (10, 10, 0), (2, 12, 0), (2**40, 64, 2**40 - 64)],
)
def test_pinned_number_is_head_minus_confirmations_never_below_genesis(
    head: int, confirmations: int, expected: int
) -> None:
    assert pinned_number(head, confirmations) == expected


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=10_000))
def test_pinned_number_never_exceeds_head_nor_goes_negative(head: int, confirmations: int) -> None:
    pinned = pinned_number(head, confirmations)
    assert 0 <= pinned <= head
    assert pinned == head - confirmations or pinned == 0


def test_pinned_number_rejects_negative_inputs() -> None:
    with pytest.raises(ValueError):
        pinned_number(-1, 0)
    with pytest.raises(ValueError):
        pinned_number(5, -1)


@given(st.binary(min_size=20, max_size=20), st.sampled_from(["lower", "upper", "as-is"]))
def test_eip55_agrees_with_eth_utils_and_is_checked_exactly(raw: bytes, case: str) -> None:
    from eth_utils.address import to_checksum_address

    from reconciler.domain import eip55, is_checksummed

    expected = to_checksum_address(raw)
    given_hex = {"lower": expected.lower(), "upper": "0x" + expected[2:].upper(), "as-is": expected}[case]
    assert eip55(given_hex) == expected
    assert eip55(given_hex[2:]) == expected  # without 0x, as eth-utils accepts it
    assert is_checksummed(expected)
    assert is_checksummed(given_hex) == (given_hex == expected)
    assert not is_checksummed(expected[2:])
    assert checksum_address(expected) == expected
