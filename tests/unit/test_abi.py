"""Hand-encoded ABI of the hot path, checked against eth_abi (eth_abi.encode/decode) as an independent oracle."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.evm import abi
from chains.evm.abi import (
    AGGREGATE3,
    BALANCE_OF,
    DECIMALS,
    GET_ETH_BALANCE,
    TRANSFER_TOPIC,
    AbiError,
    balance_of,
    balance_of_hex,
    decode_aggregate3,
    decode_uint,
    encode_aggregate3,
    get_eth_balance,
    hex_bytes,
    uint_result,
)

HOLDER = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TOKEN = "0x1773e1dDF200EFB0fafC1E372028AA623f95d2DE"
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"

_ADDRESSES = st.binary(min_size=20, max_size=20).map(to_checksum_address)
_CALLDATA = st.binary(min_size=0, max_size=100)
_RESULTS = st.lists(st.tuples(st.booleans(), st.binary(min_size=0, max_size=100)), max_size=12)


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_selectors_match_their_signatures() -> None:
    assert BALANCE_OF == _selector("balanceOf(address)")
    assert DECIMALS == _selector("decimals()")
    assert GET_ETH_BALANCE == _selector("getEthBalance(address)")
    assert AGGREGATE3 == _selector("aggregate3((address,bool,bytes)[])")
    assert TRANSFER_TOPIC == "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def test_balance_of_and_get_eth_balance_calldata() -> None:
    assert balance_of(HOLDER) == BALANCE_OF + abi_encode(["address"], [HOLDER])
    assert get_eth_balance(HOLDER) == GET_ETH_BALANCE + abi_encode(["address"], [HOLDER])
    # Case and prefix do not change the encoding.
    assert balance_of(HOLDER.lower()) == balance_of(HOLDER) == balance_of(HOLDER[2:])
    assert len(balance_of(HOLDER)) == 36


@pytest.mark.parametrize("bad", [HOLDER[:-2], HOLDER + "00", "0x"])
def test_balance_of_rejects_addresses_that_are_not_20_bytes(bad: str) -> None:
    with pytest.raises(AbiError, match="20-byte"):
        balance_of(bad)


# ----------------------------------------------------------------------------- aggregate3 calldata


def test_encode_aggregate3_matches_eth_abi_for_a_typical_chunk() -> None:
    calls = [(TOKEN, balance_of(HOLDER)), (MULTICALL3, get_eth_balance(HOLDER)), (TOKEN, DECIMALS)]
    encoded = encode_aggregate3(calls)
    assert encoded[:4] == AGGREGATE3
    expected = abi_encode(["(address,bool,bytes)[]"], [[(t, True, d) for t, d in calls]])
    assert encoded[4:] == expected


def test_encode_aggregate3_without_allow_failure() -> None:
    calls = [(TOKEN, balance_of(HOLDER))]
    expected = abi_encode(["(address,bool,bytes)[]"], [[(TOKEN, False, balance_of(HOLDER))]])
    assert encode_aggregate3(calls, allow_failure=False)[4:] == expected


def test_encode_aggregate3_of_no_calls() -> None:
    assert encode_aggregate3([])[4:] == abi_encode(["(address,bool,bytes)[]"], [[]])


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(st.tuples(_ADDRESSES, _CALLDATA), max_size=10),
    allow_failure=st.booleans(),
)
def test_encode_aggregate3_agrees_with_eth_abi(calls: list[tuple[str, bytes]], allow_failure: bool) -> None:
    expected = abi_encode(["(address,bool,bytes)[]"], [[(t, allow_failure, d) for t, d in calls]])
    encoded = encode_aggregate3(calls, allow_failure=allow_failure)
    assert encoded[:4] == AGGREGATE3
    assert encoded[4:] == expected
    # And eth_abi reads back what was meant.
    assert abi_decode(["(address,bool,bytes)[]"], encoded[4:])[0] == tuple(
        (t.lower(), allow_failure, d) for t, d in calls
    )


# ----------------------------------------------------------------------------- aggregate3 results


def _results(results: list[tuple[bool, bytes]]) -> bytes:
    return abi_encode(["(bool,bytes)[]"], [results])


def test_decode_aggregate3_typical_result() -> None:
    balance = (10**27 + 1).to_bytes(32, "big")
    revert = bytes.fromhex("08c379a0") + b"\x00" * 10
    decoded = decode_aggregate3(_results([(True, balance), (False, revert), (True, b"")]), 3)
    assert decoded == [(True, balance), (False, revert), (True, b"")]
    assert decode_uint(decoded[0][1], "balance") == 10**27 + 1


@settings(max_examples=200, deadline=None)
@given(results=_RESULTS)
def test_decode_aggregate3_round_trips_eth_abi(results: list[tuple[bool, bytes]]) -> None:
    assert decode_aggregate3(_results(results), len(results)) == results


@settings(max_examples=200, deadline=None)
@given(results=_RESULTS, data=st.data())
def test_decode_aggregate3_rejects_truncated_results(results: list[tuple[bool, bytes]], data: st.DataObject) -> None:
    full = _results(results)
    # Only the zero padding after the last returnData may go without losing content.
    padding = -len(results[-1][1]) % 32 if results else 0
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - padding - 1))
    with pytest.raises(AbiError):
        decode_aggregate3(full[:cut], len(results))


@pytest.mark.parametrize("cut", [0, 1, 31, 32, 63, 64, 95, 96, 127, 160, 191, 192, 200, 223])
def test_decode_aggregate3_rejects_truncation_at_word_boundaries(cut: int) -> None:
    full = _results([(True, (5).to_bytes(32, "big"))])
    assert len(full) == 224
    with pytest.raises(AbiError):
        decode_aggregate3(full[:cut], 1)


@settings(max_examples=100, deadline=None)
@given(results=_RESULTS, delta=st.integers(min_value=1, max_value=5), sign=st.sampled_from([-1, 1]))
def test_decode_aggregate3_rejects_a_wrong_count(results: list[tuple[bool, bytes]], delta: int, sign: int) -> None:
    expected = len(results) + sign * delta
    if expected < 0:
        expected = len(results) + delta
    with pytest.raises(AbiError, match=f"returned {len(results)} results for {expected} calls"):
        decode_aggregate3(_results(results), expected)


def test_decode_aggregate3_rejects_a_success_flag_that_is_not_a_bool() -> None:
    data = bytearray(_results([(True, b"\x01")]))
    # The first tuple starts after the array offset, the length and one element offset.
    assert data[3 * 32 : 4 * 32] == (1).to_bytes(32, "big")
    data[3 * 32 : 4 * 32] = (2).to_bytes(32, "big")
    with pytest.raises(AbiError, match="not a bool"):
        decode_aggregate3(bytes(data), 1)


def test_decode_aggregate3_rejects_a_length_past_the_end() -> None:
    data = bytearray(_results([(True, b"\x01")]))
    length_at = 5 * 32
    assert data[length_at : length_at + 32] == (1).to_bytes(32, "big")
    data[length_at : length_at + 32] = (33).to_bytes(32, "big")
    with pytest.raises(AbiError, match="past the end"):
        decode_aggregate3(bytes(data), 1)


def test_decode_aggregate3_rejects_an_offset_past_the_end() -> None:
    data = bytearray(_results([(True, b"\x01")]))
    data[0:32] = (2**255).to_bytes(32, "big")
    with pytest.raises(AbiError):
        decode_aggregate3(bytes(data), 1)


# ----------------------------------------------------------------------------- words and hex


@pytest.mark.parametrize("value", [0, 1, 6, 18, 10**27 + 1, 2**256 - 1])
def test_decode_uint_reads_one_word(value: int) -> None:
    assert decode_uint(abi_encode(["uint256"], [value]), "x") == value


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_decode_uint_rejects_anything_but_32_bytes(size: int) -> None:
    with pytest.raises(AbiError, match=f"balanceOf: expected one 32-byte word, got {size} bytes"):
        decode_uint(b"\x00" * size, "balanceOf")


def test_hex_bytes_reads_0x_hex() -> None:
    assert hex_bytes("0x") == b""
    assert hex_bytes("0x00ff") == b"\x00\xff"


@pytest.mark.parametrize("bad", [None, "", "00ff", 5])
def test_hex_bytes_rejects_values_without_0x(bad: object) -> None:
    with pytest.raises(AbiError, match="0x-prefixed"):
        hex_bytes(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["0x123", "0xzz"])
def test_hex_bytes_rejects_malformed_hex_as_abi_error(bad: str) -> None:
    # The module promises AbiError for any result that does not have the expected shape; the
    # adapter only translates AbiError into ChainError.
    with pytest.raises(AbiError):
        hex_bytes(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "0x00 ff",  # bytes.fromhex skips spaces between bytes
        " 0x00ff",
        "0x00ff ",
        "0x 00ff",
        "0x00\tff\n",
        "0x00ff\n",
        "0X00ff",  # the prefix is lowercase in JSON-RPC
        "0x0x00",
        "0x00 f",
        "0x-1",
        "0x+f",
        "0x00_ff",
        "0x٠٠",  # non-ASCII digits
        "0x\u300000ff",  # non-ASCII whitespace
        b"0x00ff",
    ],
)
def test_hex_bytes_rejects_whitespace_and_other_lookalikes(bad: object) -> None:
    with pytest.raises(AbiError, match="expected 0x-prefixed hex bytes"):
        hex_bytes(bad)


@given(st.binary(max_size=300), st.booleans())
def test_hex_bytes_reads_every_byte_string_in_either_case(data: bytes, upper: bool) -> None:
    text = data.hex().upper() if upper else data.hex()
    assert hex_bytes("0x" + text) == data


def test_hex_bytes_reads_a_large_aggregate3_answer() -> None:
    results = [(True, (i * 7919).to_bytes(32, "big")) for i in range(4000)]
    answer = "0x" + abi_encode(["(bool,bytes)[]"], [results]).hex()
    assert decode_aggregate3(hex_bytes(answer), 4000) == results
    with pytest.raises(AbiError):
        hex_bytes(answer[:-1])  # cut off mid-byte
    with pytest.raises(AbiError):
        hex_bytes(answer[:1000] + " " + answer[1000:-1])  # a space in place of a digit


def _strict_uint(value: object) -> int | None:
    try:
        return decode_uint(hex_bytes(value), "balanceOf")
    except AbiError:
        return None


@given(st.binary(min_size=32, max_size=32), st.booleans())
def test_uint_result_reads_one_word_in_either_case(word: bytes, upper: bool) -> None:
    text = "0x" + (word.hex().upper() if upper else word.hex())
    assert uint_result(text) == int.from_bytes(word, "big") == _strict_uint(text)


@pytest.mark.parametrize(
    "bad",
    [
        "0x" + "00" * 31,  # short is not read as zero
        "0x" + "00" * 33,  # nor is a longer answer cut
        "0x",
        "0x" + "00 " * 21 + "0",  # 66 characters, spaces skipped by bytes.fromhex
        " 0x" + "00" * 31 + "0",
        "0X" + "00" * 32,
        "0x" + "zz" * 32,
        "0x" + "_0" * 32,
        None,
        1,
        b"0x" + b"00" * 32,
    ],
)
def test_uint_result_refuses_what_decode_uint_refuses(bad: object) -> None:
    assert _strict_uint(bad) is None
    assert uint_result(bad) is None


@given(_ADDRESSES, st.sampled_from(["0x", "0X", ""]), st.booleans())
def test_balance_of_hex_is_the_hex_of_balance_of(address: str, prefix: str, upper: bool) -> None:
    digits = address[2:].upper() if upper else address[2:].lower()
    assert balance_of_hex(prefix + digits) == "0x" + balance_of(address).hex()


@pytest.mark.parametrize("bad", ["0x" + "11" * 19, "0x" + "11" * 21, "0x" + "zz" * 20, "0x" + "11 " * 13 + "1", ""])
def test_balance_of_hex_refuses_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(AbiError, match="not a 20-byte address"):
        balance_of_hex(bad)


_ADDR = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(st.lists(st.tuples(_ADDR, st.sampled_from([abi.BALANCE_OF, abi.GET_ETH_BALANCE]), _ADDR), max_size=40),
       st.booleans())  # fmt: skip
def test_aggregate3_of_one_address_calls_built_as_text_is_the_encoding(
    calls: list[tuple[str, bytes, str]], allow_failure: bool
) -> None:
    mixed = [(t.upper().replace("0X", "0x"), s, h) for t, s, h in calls]  # any case: the same bytes
    expected = abi.encode_aggregate3([(t, s + abi._address_word(h)) for t, s, h in calls], allow_failure)
    assert abi.encode_aggregate3_hex(mixed, allow_failure) == "0x" + expected.hex()


def test_aggregate3_of_one_address_calls_refuses_what_is_not_an_address() -> None:
    with pytest.raises(abi.AbiError):
        abi.encode_aggregate3_hex([("0x" + "00" * 20, abi.BALANCE_OF, "0x" + "zz" * 20)])
    with pytest.raises(abi.AbiError):
        abi.encode_aggregate3_hex([("0x" + "00" * 19, abi.BALANCE_OF, "0x" + "00" * 20)])


def _results(items: list[tuple[bool, bytes]]) -> bytes:
    n = len(items)
    tails = [abi._uint_word(int(ok)) + abi._uint_word(64) + abi._uint_word(len(d)) + d + b"\0" * (-len(d) % 32)
             for ok, d in items]  # fmt: skip
    heads, at = [], n * 32
    for t in tails:
        heads.append(abi._uint_word(at))
        at += len(t)
    return abi._uint_word(32) + abi._uint_word(n) + b"".join(heads) + b"".join(tails)


@given(st.lists(st.tuples(st.booleans(), st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=70))),
                max_size=12))  # fmt: skip
def test_results_read_in_place_only_when_every_one_is_a_word(items: list[tuple[bool, bytes]]) -> None:
    data = _results(items)
    assert abi.decode_aggregate3(data, len(items)) == items
    words = abi.aggregate3_words(data, len(items))
    if all(ok and len(d) == 32 for ok, d in items):
        assert words == [int.from_bytes(d, "big") for _, d in items]
    else:
        assert words is None  # the decoder then names what is wrong; never read as a value
    assert abi.aggregate3_words(data, len(items) + 1) is None
    assert abi.aggregate3_words(data[:-1], len(items)) is None or not items
