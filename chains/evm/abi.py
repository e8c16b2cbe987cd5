"""Hand-encoded calldata and results for the fixed ABIs of the hot paths.

balanceOf(address), decimals(), getEthBalance(address) and aggregate3((address,bool,bytes)[])
never change, so they are encoded and decoded with bytes and int.from_bytes: several times
faster than a generic ABI codec (toolchain.md has the figures). Invariant: a result that does
not have exactly the expected shape raises AbiError; it is never read as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

BALANCE_OF = bytes.fromhex("70a08231")
DECIMALS = bytes.fromhex("313ce567")
ALLOWANCE = bytes.fromhex("dd62ed3e")  # allowance(address,address)
GET_ETH_BALANCE = bytes.fromhex("4d2301cc")
AGGREGATE3 = bytes.fromhex("82ad56cb")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

_WORD = 32


class AbiError(ValueError):
    """Bytes that do not decode as the fixed ABI says."""


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address[2:] if address.startswith(("0x", "0X")) else address)
    if len(raw) != 20:
        raise AbiError(f"{address!r} is not a 20-byte address")
    return b"\x00" * 12 + raw


def _uint_word(value: int) -> bytes:
    return value.to_bytes(_WORD, "big")


def balance_of(holder: str) -> bytes:
    return BALANCE_OF + _address_word(holder)


_BALANCE_OF_HEX = "0x" + BALANCE_OF.hex() + "00" * 12


def balance_of_hex(holder: str) -> str:
    """``"0x" + balance_of(holder).hex()``, built as text: a JSON-RPC batch of balanceOf calls
    sends it as is, so the bytes round trip per call is skipped."""
    digits = holder[2:] if holder.startswith(("0x", "0X")) else holder
    try:
        ok = len(digits) == 40 and len(bytes.fromhex(digits)) == 20
    except ValueError:
        ok = False
    if not ok:
        raise AbiError(f"{holder!r} is not a 20-byte address")
    return _BALANCE_OF_HEX + digits.lower()


def allowance(owner: str, spender: str) -> bytes:
    return ALLOWANCE + _address_word(owner) + _address_word(spender)


def get_eth_balance(holder: str) -> bytes:
    return GET_ETH_BALANCE + _address_word(holder)


def decode_uint(data: bytes, what: str) -> int:
    if len(data) != _WORD:
        raise AbiError(f"{what}: expected one 32-byte word, got {len(data)} bytes")
    return int.from_bytes(data, "big")


def encode_aggregate3(calls: Sequence[tuple[str, bytes]], allow_failure: bool = True) -> bytes:
    """aggregate3 calldata for (target, calldata) pairs."""
    n = len(calls)
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = n * _WORD  # offsets are relative to the start of the offsets area
    flag = _uint_word(1 if allow_failure else 0)
    for target, data in calls:
        padded = data + b"\x00" * (-len(data) % _WORD)
        tup = _address_word(target) + flag + _uint_word(3 * _WORD) + _uint_word(len(data)) + padded
        heads.append(_uint_word(offset))
        tails.append(tup)
        offset += len(tup)
    return AGGREGATE3 + _uint_word(_WORD) + _uint_word(n) + b"".join(heads) + b"".join(tails)


_ZERO12 = "00" * 12


def encode_aggregate3_hex(calls: Sequence[tuple[str, bytes, str]], allow_failure: bool = True) -> str:
    """``"0x" + encode_aggregate3(...).hex()`` for calls that each take one address —
    (target, 4-byte selector, argument), e.g. balanceOf(holder) — built as text in one pass:
    every call is the same 192 bytes, so the offsets are known without encoding each."""
    n = len(calls)
    for target, selector, argument in calls:
        if len(target) != 42 or len(argument) != 42 or len(selector) != 4:
            raise AbiError(f"not a call of one address: {target!r} {selector.hex()} {argument!r}")
    middle = f"{1 if allow_failure else 0:064x}{3 * _WORD:064x}{4 + _WORD:064x}"
    tails = "".join(
        f"{_ZERO12}{target[2:]}{middle}{selector.hex()}{_ZERO12}{argument[2:]}{'00' * 28}"
        for target, selector, argument in calls
    ).lower()
    try:
        bytes.fromhex(tails)
    except ValueError as exc:
        raise AbiError(f"an address of the calls is not hex: {exc}") from exc
    heads = "".join(f"{n * _WORD + i * 6 * _WORD:064x}" for i in range(n))
    return f"0x{AGGREGATE3.hex()}{_WORD:064x}{n:064x}{heads}{tails}"


_WORD_RESULT = _uint_word(1) + _uint_word(2 * _WORD) + _uint_word(_WORD)  # success, offset, length


def aggregate3_words(data: bytes, expected: int) -> list[int] | None:
    """The results of aggregate3 as uint256s when every one succeeded with exactly one word
    (what balance reads return), read at their fixed places; None for any other shape (then
    ``decode_aggregate3`` says what is wrong)."""
    n = expected
    head = 2 * _WORD + n * _WORD
    if len(data) != head + n * 4 * _WORD or data[: 2 * _WORD] != _uint_word(_WORD) + _uint_word(n):
        return None
    if data[2 * _WORD : head] != _result_offsets(n):
        return None
    out: list[int] = []
    for at in range(head, len(data), 4 * _WORD):
        if data[at : at + 3 * _WORD] != _WORD_RESULT:
            return None
        out.append(int.from_bytes(data[at + 3 * _WORD : at + 4 * _WORD], "big"))
    return out


@lru_cache(maxsize=8)
def _result_offsets(n: int) -> bytes:
    return b"".join(_uint_word(n * _WORD + i * 4 * _WORD) for i in range(n))


def _read_word(data: bytes, at: int) -> int:
    if at < 0 or at + _WORD > len(data):
        raise AbiError(f"result too short: wanted a word at byte {at} of {len(data)}")
    return int.from_bytes(data[at : at + _WORD], "big")


def decode_aggregate3(data: bytes, expected: int) -> list[tuple[bool, bytes]]:
    """Decode aggregate3's Result[] (bool success, bytes returnData)."""
    array_at = _read_word(data, 0)
    n = _read_word(data, array_at)
    if n != expected:
        raise AbiError(f"aggregate3 returned {n} results for {expected} calls")
    base = array_at + _WORD
    out: list[tuple[bool, bytes]] = []
    for i in range(n):
        tup = base + _read_word(data, base + i * _WORD)
        success = _read_word(data, tup)
        if success > 1:
            raise AbiError(f"aggregate3 result {i}: success flag {success} is not a bool")
        bytes_at = tup + _read_word(data, tup + _WORD)
        length = _read_word(data, bytes_at)
        start = bytes_at + _WORD
        if start + length > len(data):
            raise AbiError(f"aggregate3 result {i}: {length} bytes run past the end")
        out.append((success == 1, data[start : start + length]))
    return out


def uint_result(value: object) -> int | None:
    """The uint256 of a JSON-RPC result of exactly one 32-byte word ("0x" and 64 hex digits),
    or None for any other shape (then hex_bytes and decode_uint say what is wrong): the check
    of a batched ``balanceOf`` answer without building a message per value."""
    if isinstance(value, str) and len(value) == 66 and value[:2] == "0x":
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            return None
        if len(raw) == _WORD:
            return int.from_bytes(raw, "big")
    return None


def hex_bytes(value: object) -> bytes:
    """0x-prefixed hex of whole bytes, strictly (no spaces, no odd length). No regex: an
    aggregate3 answer is hundreds of kilobytes. bytes.fromhex refuses anything but hex digits
    and whitespace; whitespace it skips, which the length check then refuses."""
    if isinstance(value, str) and value[:2] == "0x":
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            pass
        else:
            if len(raw) * 2 == len(value) - 2:
                return raw
    raise AbiError(f"expected 0x-prefixed hex bytes, got {value!r:.80}")
