"""The presign file: both forms accepted, every bad input refused with where and why."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reconciler.domain import eip55
from reconciler.engine.safetx import ZERO_ADDRESS, SafeTx, safe_hashes, typed_data
from reconciler.errors import InputError
from reconciler.inputs.safetx import MESSAGE, TYPED_DATA, PresignInput, check_version, parse_presign_file

SAFE = "0x1c694Fc3006D81ff4a56F97E1b99529066a23725"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
TRANSFER = bytes.fromhex(
    "a9059cbb00000000000000000000000092d0ebaf7eb707f0650f9471e61348f4656c29bc00000000000000000000000000000000000000"
    "000000000000000005d21dba00"
)
# Cyfrin/safe-hash-rs README.md's mainnet USDC transfer (Safe 1.3.0, nonce 63).
TX = SafeTx(USDC, 0, TRANSFER, 0, 0, 0, 0, ZERO_ADDRESS, ZERO_ADDRESS, 63)
SAFE_TX_HASH = "0xad06b099fca34e51e4886643d95d9a19ace2cd024065efb66662a876e8c40343"

# The document as a wallet receives it (eth_signTypedData_v4): chainId as a 0x-hex string, gas
# fields as numbers, value and nonce as decimal strings, addresses in lower case.
WALLET_DOC = """{
  "types": {
    "EIP712Domain": [
      {"name": "chainId", "type": "uint256"},
      {"name": "verifyingContract", "type": "address"}
    ],
    "SafeTx": [
      {"name": "to", "type": "address"},
      {"name": "value", "type": "uint256"},
      {"name": "data", "type": "bytes"},
      {"name": "operation", "type": "uint8"},
      {"name": "safeTxGas", "type": "uint256"},
      {"name": "baseGas", "type": "uint256"},
      {"name": "gasPrice", "type": "uint256"},
      {"name": "gasToken", "type": "address"},
      {"name": "refundReceiver", "type": "address"},
      {"name": "nonce", "type": "uint256"}
    ]
  },
  "domain": {"chainId": "0x1", "verifyingContract": "0x1c694fc3006d81ff4a56f97e1b99529066a23725"},
  "primaryType": "SafeTx",
  "message": {
    "to": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
    "value": "0",
    "data": "TRANSFER",
    "operation": 0,
    "safeTxGas": 0,
    "baseGas": 0,
    "gasPrice": "0",
    "gasToken": "0x0000000000000000000000000000000000000000",
    "refundReceiver": "0x0000000000000000000000000000000000000000",
    "nonce": "63"
  }
}""".replace("TRANSFER", "0x" + TRANSFER.hex())


def doc() -> dict[str, Any]:
    return typed_data(TX, 1, SAFE, "1.3.0")


def message() -> dict[str, Any]:
    return dict(doc()["message"])


def parse(value: Any) -> PresignInput:
    text = value if isinstance(value, str) else json.dumps(value)
    return parse_presign_file(text, source="tx.json")


def problems(value: Any) -> list[str]:
    with pytest.raises(InputError) as exc:
        parse(value)
    assert exc.value.source == "tx.json"
    assert str(exc.value).startswith("tx.json: ")
    return exc.value.problems


def one_problem(value: Any) -> str:
    found = problems(value)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------------------- accepted


def test_the_typed_data_document_a_wallet_receives() -> None:
    parsed = parse(WALLET_DOC)
    assert parsed == PresignInput(TX, TYPED_DATA, SAFE, 1, ("chainId", "verifyingContract"), "baseGas")
    assert safe_hashes(parsed.tx, parsed.chain_id, SAFE, "1.3.0").safe_tx_hash == SAFE_TX_HASH


@pytest.mark.parametrize("chain_id", [1, "1", "0x1", "0X01"])
def test_chain_id_as_number_decimal_or_hex(chain_id: Any) -> None:
    d = doc()
    d["domain"]["chainId"] = chain_id
    assert parse(d).chain_id == 1


def test_typed_data_without_an_eip712domain_type() -> None:
    d = doc()
    del d["types"]["EIP712Domain"]
    assert parse(d).domain_fields == ("chainId", "verifyingContract")


@pytest.mark.parametrize("version", ["1.1.1", "0.1.0"])
def test_legacy_typed_data(version: str) -> None:
    parsed = parse(typed_data(TX, None, SAFE, version))
    assert parsed.chain_id is None and parsed.domain_fields == ("verifyingContract",)
    assert parsed.gas_field == ("dataGas" if version == "0.1.0" else "baseGas")
    assert parsed.tx == TX
    check_version(parsed, (int(version[0]), int(version[2]), int(version[4])), source="tx.json")


def test_bare_message_with_safe_and_chain_id_beside_it() -> None:
    parsed = parse({**message(), "safe": SAFE.lower(), "chainId": "1"})
    assert parsed == PresignInput(TX, MESSAGE, SAFE, 1, (), "baseGas")
    check_version(parsed, (1, 3, 0), source="tx.json")  # nothing to check in a message


def test_message_nested_under_message() -> None:
    parsed = parse({"message": message(), "safe": SAFE, "chainId": 1})
    assert (parsed.tx, parsed.form, parsed.safe, parsed.chain_id) == (TX, MESSAGE, SAFE, 1)


def test_bare_message_without_safe_or_chain_id() -> None:
    parsed = parse(message())
    assert (parsed.safe, parsed.chain_id) == (None, None)
    assert parse({**message(), "safe": None, "chainId": None}).safe is None


def test_bare_message_with_data_gas() -> None:
    m = message()
    m["dataGas"] = m.pop("baseGas")
    m["dataGas"] = 5
    parsed = parse(m)
    assert parsed.gas_field == "dataGas" and parsed.tx.base_gas == 5


def test_integers_as_numbers_or_decimal_strings_and_addresses_in_any_single_case() -> None:
    m = message()
    m.update(value=10**30, safeTxGas="0007", gasPrice=str(2**256 - 1), nonce=2**256 - 1)
    m.update(to=USDC.upper().replace("0X", "0x"), gasToken=USDC, refundReceiver=USDC.lower())
    m["data"] = "0x" + TRANSFER.hex().upper()
    tx = parse(m).tx
    assert (tx.value, tx.safe_tx_gas, tx.gas_price, tx.nonce) == (10**30, 7, 2**256 - 1, 2**256 - 1)
    assert tx.to == tx.gas_token == tx.refund_receiver == USDC and tx.data == TRANSFER


def test_delegatecall_and_empty_data() -> None:
    m = message()
    m.update(operation="1", data="0x")
    tx = parse(m).tx
    assert tx.operation == 1 and tx.data == b""


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"to": 1,}', "line 1, column 10: not valid JSON: Expecting property name enclosed in double quotes"),
        ('{\n  "to": "0x"\n  "value": 1\n}', "line 3, column 3: not valid JSON: Expecting ',' delimiter"),
        ("", "line 1, column 1: not valid JSON: Expecting value"),
        ("[" * 100_000, "not valid JSON for a SafeTx: nested 100000 levels deep (a SafeTx document has 4)"),
        ('{"value": ' + "[" * 40 + "]" * 40 + "}", "not valid JSON for a SafeTx: nested 41 levels deep"),
        ("1" * 5000, "not valid JSON"),
    ],
)
def test_malformed_json(text: str, expected: str) -> None:
    assert one_problem(text).startswith(expected)


def test_brackets_inside_strings_are_not_nesting() -> None:
    m = message()
    m["to"] = "[{" * 100
    assert one_problem(m).startswith("to: '[{[{")


@pytest.mark.parametrize(("value", "kind"), [([], "an array"), ('"x"', "a string"), (1, "a number"), (None, "null")])
def test_not_an_object(value: Any, kind: str) -> None:
    assert one_problem(value).startswith(f"the file holds {kind}, not an object: expected one SafeTx")


def test_duplicate_keys() -> None:
    text = json.dumps(message())[:-1] + ', "nonce": 64}'
    assert one_problem(text) == "the key 'nonce' appears twice in one object: keep one (JSON would keep the last)"


def test_a_missing_field_is_named() -> None:
    m = message()
    del m["nonce"]
    assert one_problem(m).startswith("nonce: is missing: a SafeTx message has to, value, data,")
    d = doc()
    del d["message"]["gasToken"]
    assert one_problem(d).startswith("message.gasToken: is missing")


def test_several_missing_fields_are_named_in_one_line() -> None:
    assert one_problem({"message": {"to": USDC}}).startswith(
        "message: lacks the fields value, data, operation, safeTxGas, baseGas, gasPrice, gasToken, refundReceiver, "
        "nonce: a SafeTx message has"
    )


def test_an_unknown_field_is_named_with_the_nearest() -> None:
    m = message()
    m["refundReciever"] = m.pop("refundReceiver")
    assert problems(m) == [
        "refundReciever: is not a field of the SafeTx message; did you mean 'refundReceiver'?",
        "refundReceiver: is missing: a SafeTx message has to, value, data, operation, safeTxGas, baseGas, gasPrice, "
        "gasToken, refundReceiver, nonce",
    ]
    assert one_problem({**message(), "signatures": "0x"}).startswith(
        "signatures: is not a field of the SafeTx message; expected only to, value,"
    )
    d = doc()
    d["message"]["chainId"] = 1  # beside the message only in the bare form
    assert one_problem(d).startswith("message.chainId: is not a field of the SafeTx message")


def test_both_base_gas_and_data_gas() -> None:
    assert one_problem({**message(), "dataGas": 0}) == (
        "the file: has both baseGas and dataGas: they are one field (dataGas before Safe 1.0.0)"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "message.value: -1 is negative: a uint256 is 0 or more"),
        ("-1", "message.value: '-1' (negative) is not a plain decimal integer: write digits only"),
        (2**256, f"message.value: {2**256} is above 2**256-1, the largest uint256"),
        (str(2**256), f"message.value: '{2**256}' is above 2**256-1, the largest uint256"),
        ("9" * 100, "is above 2**256-1"),
        (1.5, "message.value: 1.5 is a number with a fraction or exponent, not an integer"),
        (1e3, "message.value: 1000.0 is a number with a fraction or exponent, not an integer"),
        (True, "message.value: true is a JSON boolean, not an integer"),
        (None, "message.value: null is null, not an integer"),
        ([1], "message.value: [1] is an array, not an integer"),
        ("1e3", "message.value: '1e3' is not a plain decimal integer"),
        ("0x10", "message.value: '0x10' is not a plain decimal integer"),
        (" 1", "message.value: ' 1' is not a plain decimal integer"),
        ("+1", "message.value: '+1' is not a plain decimal integer"),
        ("1.0", "message.value: '1.0' is not a plain decimal integer"),
        ("", "message.value: '' is not a plain decimal integer"),
    ],
)
def test_bad_integers(value: Any, expected: str) -> None:
    d = doc()
    d["message"]["value"] = value
    assert expected in one_problem(d)


@pytest.mark.parametrize("operation", [2, "2", 255])
def test_unknown_operation(operation: Any) -> None:
    d = doc()
    d["message"]["operation"] = operation
    assert one_problem(d) == f"message.operation: unknown operation {int(operation)}: 0 is CALL, 1 is DELEGATECALL"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0x1234", "message.to: '0x1234' is not an address: write 0x followed by 40 hex digits"),
        (USDC[2:], "is not an address"),
        ("0X" + USDC[2:], "is not an address"),
        (USDC + "00", "is not an address"),
        ("0x" + "g" * 40, "is not an address"),
        (None, "message.to: null is not an address"),
        (
            "0xa0B86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
            "message.to: 0xa0B86991c6218b36c1d19D4a2e9Eb0cE3606eB48 is mixed-case but its EIP-55 checksum is "
            "wrong: it was mistyped or altered; take the address again from its source",
        ),
    ],
)
def test_bad_addresses(value: Any, expected: str) -> None:
    d = doc()
    d["message"]["to"] = value
    assert expected in one_problem(d)
    if "mixed-case" in expected:
        assert eip55(USDC) not in one_problem(d)  # no "fixed" form is offered: it would be as wrong


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0x123", "message.data: '0x123' has an odd number of hex digits: calldata is whole bytes"),
        ("a9059cbb", "message.data: 'a9059cbb' is not calldata: write 0x followed by hex digits"),
        ("0xzz", "is not calldata"),
        ("", "is not calldata"),
        (None, 'message.data: is null: write "0x" for no calldata'),
        (12, "message.data: 12 is not calldata"),
    ],
)
def test_bad_data(value: Any, expected: str) -> None:
    d = doc()
    d["message"]["data"] = value
    assert expected in one_problem(d)


@pytest.mark.parametrize(
    ("chain_id", "expected"),
    [
        (0, "domain.chainId: 0 is not a chain id (mainnet is 1)"),
        ("0x", "domain.chainId: '0x' is not a chain id: write it as digits, or 0x and hex digits"),
        ("0xg1", "is not a chain id"),
        (-1, "domain.chainId: -1 is negative"),
        (1.0, "domain.chainId: 1.0 is a number with a fraction or exponent"),
    ],
)
def test_bad_chain_ids(chain_id: Any, expected: str) -> None:
    d = doc()
    d["domain"]["chainId"] = chain_id
    assert expected in one_problem(d)


def test_bad_safe_and_chain_id_beside_a_bare_message() -> None:
    assert problems({**message(), "safe": "0x12", "chainId": "mainnet"}) == [
        "safe: '0x12' is not an address: write 0x followed by 40 hex digits",
        "chainId: 'mainnet' is not a plain decimal integer: write digits only, no sign, point, exponent, spaces or 0x",
    ]
    assert one_problem({"message": message(), "safe": SAFE, "chain": 1}) == (
        "chain: is not expected beside message; did you mean 'chainId'?"
    )


def test_primary_type_must_be_safe_tx() -> None:
    d = doc()
    d["primaryType"] = "Permit"
    assert one_problem(d) == "primaryType: is 'Permit': presign checks SafeTx documents only"


def test_a_typed_data_document_needs_its_four_keys() -> None:
    d = doc()
    del d["types"]
    d["extra"] = 1
    assert problems(d) == [
        "extra: is not a key of an EIP-712 document; expected only types, domain, primaryType, message",
        "types: is missing: an EIP-712 document has types, domain, primaryType and message",
    ]
    d = doc()
    d["message"] = "0x"
    assert one_problem(d) == "message: is a string, not an object"


def _safe_tx_type(change: Any) -> str:
    d = doc()
    change(d["types"]["SafeTx"])
    return one_problem(d)


def test_a_changed_safe_tx_type_is_refused_naming_the_difference() -> None:
    def retype(fields: list[dict[str, str]]) -> None:
        fields[1]["type"] = "uint128"

    assert _safe_tx_type(retype) == (
        "types.SafeTx: differs from the Safe's SafeTx type (value is uint128, the Safe's is uint256): a device would "
        "show a hash the Safe never checks; the Safe's type is SafeTx(address to,uint256 value,bytes data,uint8 "
        "operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,"
        "uint256 nonce)"
    )
    assert "(it lacks nonce)" in _safe_tx_type(lambda f: f.pop())
    assert "(it adds salt)" in _safe_tx_type(lambda f: f.append({"name": "salt", "type": "bytes32"}))
    assert "(its fields are in another order)" in _safe_tx_type(lambda f: f.reverse())
    assert 'is not a {"name": …, "type": …} object' in _safe_tx_type(lambda f: f.append({"name": "x"}))
    d = doc()
    d["types"]["SafeTx"] = {"to": "address"}
    assert one_problem(d).startswith("types.SafeTx: is an object: a type is an array of")


def test_the_data_gas_variant_is_recognised() -> None:
    d = doc()
    d["types"]["SafeTx"][5]["name"] = "dataGas"
    d["message"]["dataGas"] = d["message"].pop("baseGas")
    assert parse(d).gas_field == "dataGas"
    d["message"]["baseGas"] = d["message"].pop("dataGas")  # message and type disagree
    assert problems(d)[0] == (
        "message.baseGas: is not a field of the SafeTx message; the document's SafeTx type calls this field dataGas"
    )


def test_a_domain_with_other_fields_is_refused() -> None:
    d = doc()
    d["domain"]["name"] = "Safe"
    del d["types"]["EIP712Domain"]
    assert one_problem(d) == (
        "domain.name: is not a field of a Safe's domain, which has only chainId and verifyingContract: a device would "
        "show a hash the Safe never checks"
    )
    d = doc()
    del d["domain"]["verifyingContract"]
    del d["types"]["EIP712Domain"]
    assert one_problem(d) == "domain.verifyingContract: is missing: it is the Safe's address"


def test_a_changed_domain_type_is_refused() -> None:
    d = doc()
    d["types"]["EIP712Domain"].reverse()
    assert one_problem(d).startswith(
        "types.EIP712Domain: differs from a Safe's domain type (its fields are in another order)"
    )
    d = doc()
    d["types"]["EIP712Domain"] = [{"name": "verifyingContract", "type": "address"}]
    assert one_problem(d) == (
        "domain: has the fields chainId, verifyingContract but types.EIP712Domain declares verifyingContract: they "
        "must be the same"
    )


def test_other_types_are_refused() -> None:
    d = doc()
    d["types"]["Permit"] = [{"name": "owner", "type": "address"}]
    assert one_problem(d) == "types.Permit: is not part of a SafeTx document: remove it (only EIP712Domain and SafeTx)"


def test_every_problem_is_reported_at_once() -> None:
    d = doc()
    d["primaryType"] = "Permit"
    d["domain"]["chainId"] = 0
    d["message"].update(value=-1, operation=2, to="0x12")
    assert problems(d) == [
        "primaryType: is 'Permit': presign checks SafeTx documents only",
        "domain.chainId: 0 is not a chain id (mainnet is 1)",
        "message.to: '0x12' is not an address: write 0x followed by 40 hex digits",
        "message.value: -1 is negative: a uint256 is 0 or more",
        "message.operation: unknown operation 2: 0 is CALL, 1 is DELEGATECALL",
    ]


def test_check_version_refuses_a_document_built_for_another_version() -> None:
    modern = parse(doc())
    with pytest.raises(InputError) as exc:
        check_version(modern, (1, 1, 1), source="tx.json")
    assert exc.value.problems == [
        "domain: the document's domain is EIP712Domain(uint256 chainId,address verifyingContract) but a Safe 1.1.1 "
        "signs EIP712Domain(address verifyingContract): a device would show a hash this Safe never checks; build the "
        "document for Safe 1.1.1"
    ]
    old = parse(typed_data(TX, None, SAFE, "0.1.0"))
    with pytest.raises(InputError) as exc:
        check_version(old, (1, 3, 0), source="tx.json")
    assert [p.split(":")[0] for p in exc.value.problems] == ["domain", "types.SafeTx"]
    assert "names the sixth field dataGas but a Safe 1.3.0 names it baseGas" in exc.value.problems[1]
    check_version(modern, (1, 4, 1), source="tx.json")


def test_parsing_does_not_change_the_document() -> None:
    d = doc()
    before = copy.deepcopy(d)
    parse(d)
    assert d == before


def test_a_nul_anywhere_in_the_payload_is_refused_naming_where() -> None:
    tampered = doc()
    tampered["message"]["data"] = "0x\u0000"
    assert one_problem(tampered) == "message.data: contains a NUL character; no SafeTx field holds one"
    keyed = doc()
    keyed["domain"]["na\u0000me"] = "x"
    assert one_problem(keyed).startswith("domain.na\x00me: contains a NUL character")
