"""The presign file: one Safe transaction, as the EIP-712 document a signer's wallet receives or
as the bare message, validated into a ``SafeTx``.

Invariants:
- A file is taken whole or not at all: ``parse_presign_file`` returns a ``PresignInput`` or
  raises ``InputError`` naming every problem it found and where (``line 3, column 5`` for
  malformed JSON, ``message.value``, ``domain.chainId``, ``types.SafeTx``), each with the fix.
- A typed-data document is accepted only when a device would hash it as the Safe does: its
  ``primaryType`` is SafeTx, its ``types.SafeTx`` is the Safe's SafeTx type field for field
  (the ``baseGas`` or the pre-1.0.0 ``dataGas`` variant), its domain has no field but
  ``chainId`` and ``verifyingContract``, and no other type rides along. Whether that variant
  and domain are the ones of the wallet's version is known only once the version is:
  ``check_version`` says so.
- Nothing is guessed: integers are JSON integers or plain decimal strings (``chainId`` may
  also be 0x-hex, as wallets send it), never floats, booleans, signs or exponents; addresses
  are 20-byte hex, all lower or upper case or correctly EIP-55 checksummed (a mixed-case
  address with a wrong checksum was mistyped or altered, and its "fixed" form would be just
  as wrong, so none is offered); an object with the same key twice is refused (a reader sees
  the first, JSON keeps the last).
- Nothing here reads the chain.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.domain import UINT256_DIGITS, UINT256_MAX, eip55
from reconciler.engine.safetx import (
    DELEGATECALL,
    DOMAIN_FIELDS,
    LEGACY_DOMAIN_FIELDS,
    LEGACY_SAFE_TX_FIELDS,
    SAFE_TX_FIELDS,
    SafeTx,
    SafeVersion,
    signs_chain_id,
    type_string,
    uses_base_gas,
)
from reconciler.errors import InputError

Form = Literal["typed_data", "message"]
TYPED_DATA: Form = "typed_data"
MESSAGE: Form = "message"

_DIGITS_RE = re.compile(r"[0-9]+")
_HEX_INT_RE = re.compile(r"0x[0-9a-fA-F]{1,64}")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA_RE = re.compile(r"0x[0-9a-fA-F]*")
_TYPED_KEYS = ("types", "domain", "primaryType", "message")
_ENVELOPE_KEYS = ("safe", "chainId")
_DOMAIN_KEYS = ("chainId", "verifyingContract")
_MAX_SHOWN = 100
# A SafeTx document nests four levels deep; json's C scanner recurses once per level and can
# overflow the C stack (a segfault, not a RecursionError) long before Python's limit on some
# stacks, so depth is measured first, without recursion.
MAX_NESTING = 32
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET_RE = re.compile(r"[\[\]{}]")
_MAX_HINTED = 64  # difflib is quadratic: no hint for a key longer than any field name can be


@dataclass(frozen=True, slots=True)
class PresignInput:
    """A validated presign file. ``safe`` (EIP-55) and ``chain_id`` are what the file says, None
    when it does not say (then only ``--safe``/``--chain-id`` or the configuration will);
    ``form`` which of the two forms it was; ``domain_fields`` the typed-data document's
    domain fields as a device hashes them (its ``EIP712Domain`` type, or the domain's keys in
    that order), () for the message form; ``gas_field`` "baseGas" or "dataGas", the name the
    file gives the SafeTx type's sixth field."""

    tx: SafeTx
    form: Form
    safe: str | None
    chain_id: int | None
    domain_fields: tuple[str, ...] = ()
    gas_field: str = "baseGas"


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}… ({len(text)} characters)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, int):
        return "a number"
    return "a string"


def _hint(key: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, list(known), n=1) if len(key) <= _MAX_HINTED else []
    if match:
        return f"; did you mean {match[0]!r}?"
    return f"; expected only {', '.join(known)}"


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{where}: {text}" if where else text)


# ----------------------------------------------------------------------------- values


def _uint(value: Any, where: str, problems: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems.add(
            where,
            f"{_shown(value)} is {_kind(value)}, not an integer: write it as a JSON integer or a string of "
            "decimal digits",
        )
        return None
    if isinstance(value, str):
        if not _DIGITS_RE.fullmatch(value):
            sign = " (negative)" if value.startswith("-") else ""
            problems.add(
                where,
                f"{_shown(value)}{sign} is not a plain decimal integer: write digits only, no sign, point, "
                "exponent, spaces or 0x",
            )
            return None
        if len(value.lstrip("0")) > UINT256_DIGITS:
            problems.add(where, f"{_shown(value)} is above 2**256-1, the largest uint256")
            return None
    number = int(value)
    if number < 0:
        problems.add(where, f"{number} is negative: a uint256 is 0 or more")
        return None
    if number > UINT256_MAX:
        problems.add(where, f"{_shown(value)} is above 2**256-1, the largest uint256")
        return None
    return number


def _chain_id(value: Any, where: str, problems: _Problems) -> int | None:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        if not _HEX_INT_RE.fullmatch("0x" + value[2:]):
            problems.add(where, f"{_shown(value)} is not a chain id: write it as digits, or 0x and hex digits")
            return None
        parsed: int | None = int(value[2:], 16)
    else:
        parsed = _uint(value, where, problems)
    if parsed == 0:
        problems.add(where, "0 is not a chain id (mainnet is 1)")
        return None
    return parsed


def _address(value: Any, where: str, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value):
        problems.add(where, f"{_shown(value)} is not an address: write 0x followed by 40 hex digits")
        return None
    digits = value[2:]
    checksummed = eip55(value)
    if digits not in (digits.lower(), digits.upper()) and value != checksummed:
        problems.add(
            where,
            f"{value} is mixed-case but its EIP-55 checksum is wrong: it was mistyped or altered; take the "
            "address again from its source",
        )
        return None
    return checksummed


def _data(value: Any, where: str, problems: _Problems) -> bytes | None:
    if value is None:
        problems.add(where, 'is null: write "0x" for no calldata')
        return None
    if not isinstance(value, str) or not _DATA_RE.fullmatch(value):
        problems.add(where, f'{_shown(value)} is not calldata: write 0x followed by hex digits ("0x" for none)')
        return None
    if len(value) % 2:
        problems.add(where, f"{_shown(value)} has an odd number of hex digits: calldata is whole bytes")
        return None
    return bytes.fromhex(value[2:])


# ----------------------------------------------------------------------------- the message


def _message_names(gas_field: str) -> tuple[str, ...]:
    fields = SAFE_TX_FIELDS if gas_field == "baseGas" else LEGACY_SAFE_TX_FIELDS
    return tuple(name for name, _ in fields)


def _message(
    fields: Mapping[str, Any],
    prefix: str,
    gas_field: str | None,
    problems: _Problems,
    extra: Sequence[str] = (),
) -> tuple[SafeTx | None, str]:
    """The SafeTx in ``fields`` (keys besides the message's own and ``extra`` are refused).
    ``gas_field`` None: either ``baseGas`` or ``dataGas`` (not both)."""
    both = gas_field is None and "baseGas" in fields and "dataGas" in fields
    if both:
        problems.add(
            prefix.rstrip(".") or "the file",
            "has both baseGas and dataGas: they are one field (dataGas before Safe 1.0.0)",
        )
    if gas_field is None:
        gas_field = "dataGas" if "dataGas" in fields and "baseGas" not in fields else "baseGas"
    names = _message_names(gas_field)
    allowed = (*names, *extra)
    for key in fields:
        if key in allowed or (both and key == "dataGas"):
            continue
        hint = _hint(key, allowed)
        if key in ("baseGas", "dataGas"):
            hint = f"; the document's SafeTx type calls this field {gas_field}"
        problems.add(f"{prefix}{key}", f"is not a field of the SafeTx message{hint}")
    missing = [name for name in names if name not in fields]
    if len(missing) == 1:
        problems.add(f"{prefix}{missing[0]}", f"is missing: a SafeTx message has {', '.join(names)}")
    elif missing:
        problems.add(
            prefix.rstrip(".") or "the file",
            f"lacks the fields {', '.join(missing)}: a SafeTx message has {', '.join(names)}",
        )
    before = len(problems.items)
    values = {name: fields.get(name) for name in names}
    to = _address(values["to"], f"{prefix}to", problems) if "to" in fields else None
    value = _uint(values["value"], f"{prefix}value", problems) if "value" in fields else None
    data = _data(values["data"], f"{prefix}data", problems) if "data" in fields else None
    operation = _uint(values["operation"], f"{prefix}operation", problems) if "operation" in fields else None
    if operation is not None and operation > DELEGATECALL:
        problems.add(f"{prefix}operation", f"unknown operation {operation}: 0 is CALL, 1 is DELEGATECALL")
        operation = None
    gas = {
        name: _uint(values[name], f"{prefix}{name}", problems) if name in fields else None
        for name in ("safeTxGas", gas_field, "gasPrice", "nonce")
    }
    gas_token = _address(values["gasToken"], f"{prefix}gasToken", problems) if "gasToken" in fields else None
    receiver = (
        _address(values["refundReceiver"], f"{prefix}refundReceiver", problems) if "refundReceiver" in fields else None
    )
    if len(problems.items) > before or any(name not in fields for name in names):
        return None, gas_field
    assert to is not None and value is not None and data is not None and operation is not None
    assert gas_token is not None and receiver is not None
    safe_tx_gas, base_gas, gas_price, nonce = (gas[n] for n in ("safeTxGas", gas_field, "gasPrice", "nonce"))
    assert safe_tx_gas is not None and base_gas is not None and gas_price is not None and nonce is not None
    return SafeTx(to, value, data, operation, safe_tx_gas, base_gas, gas_price, gas_token, receiver, nonce), gas_field


# ----------------------------------------------------------------------------- typed data


def _type_fields(value: Any, where: str, problems: _Problems) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, list):
        problems.add(where, f'is {_kind(value)}: a type is an array of {{"name", "type"}} objects')
        return None
    out = []
    for i, entry in enumerate(value):
        ok = isinstance(entry, dict) and set(entry) == {"name", "type"}
        if not ok or not isinstance(entry["name"], str) or not isinstance(entry["type"], str):
            problems.add(f"{where}[{i}]", f'{_shown(entry)} is not a {{"name": …, "type": …}} object of two strings')
            return None
        out.append((entry["name"], entry["type"]))
    return tuple(out)


def _type_difference(given: tuple[tuple[str, str], ...], safe: tuple[tuple[str, str], ...]) -> str:
    given_types, safe_types = dict(given), dict(safe)
    parts = []
    missing = [n for n, _ in safe if n not in given_types]
    extra = [n for n, _ in given if n not in safe_types]
    if missing:
        parts.append("it lacks " + ", ".join(missing))
    if extra:
        parts.append("it adds " + ", ".join(extra))
    for name, kind in given:
        if name in safe_types and safe_types[name] != kind:
            parts.append(f"{name} is {kind}, the Safe's is {safe_types[name]}")
    if len(given) != len(dict(given)):
        parts.append("a field is listed twice")
    if not parts:
        parts.append("its fields are in another order")
    return "; ".join(parts)


def _safe_tx_type(types: Mapping[str, Any], problems: _Problems) -> str | None:
    """Which variant ``types.SafeTx`` is ("baseGas"/"dataGas"); None (and a problem) otherwise."""
    if "SafeTx" not in types:
        problems.add("types", "has no SafeTx type: a Safe transaction document defines types.SafeTx")
        return None
    given = _type_fields(types["SafeTx"], "types.SafeTx", problems)
    if given is None:
        return None
    if given == SAFE_TX_FIELDS:
        return "baseGas"
    if given == LEGACY_SAFE_TX_FIELDS:
        return "dataGas"
    closest = LEGACY_SAFE_TX_FIELDS if "dataGas" in dict(given) else SAFE_TX_FIELDS
    problems.add(
        "types.SafeTx",
        f"differs from the Safe's SafeTx type ({_type_difference(given, closest)}): a device would show a hash "
        f"the Safe never checks; the Safe's type is {type_string('SafeTx', closest)}",
    )
    return None


def _domain_type(types: Mapping[str, Any], domain: Mapping[str, Any], problems: _Problems) -> tuple[str, ...] | None:
    if "EIP712Domain" not in types:
        # Wallets derive the type from the domain's keys, in EIP-712's order.
        return tuple(name for name in _DOMAIN_KEYS if name in domain)
    given = _type_fields(types["EIP712Domain"], "types.EIP712Domain", problems)
    if given is None:
        return None
    if given not in (DOMAIN_FIELDS, LEGACY_DOMAIN_FIELDS):
        closest = DOMAIN_FIELDS if "chainId" in dict(given) else LEGACY_DOMAIN_FIELDS
        problems.add(
            "types.EIP712Domain",
            f"differs from a Safe's domain type ({_type_difference(given, closest)}): a device would show a hash "
            f"the Safe never checks; a Safe's is {type_string('EIP712Domain', DOMAIN_FIELDS)} (1.3.0 and later) or "
            f"{type_string('EIP712Domain', LEGACY_DOMAIN_FIELDS)} (before)",
        )
        return None
    names = tuple(name for name, _ in given)
    if set(names) != set(domain):
        problems.add(
            "domain",
            f"has the fields {', '.join(domain) or 'none'} but types.EIP712Domain declares {', '.join(names)}: "
            "they must be the same",
        )
        return None
    return names


def _typed_data(doc: Mapping[str, Any], problems: _Problems) -> PresignInput | None:
    for key in doc:
        if key not in _TYPED_KEYS:
            problems.add(key, f"is not a key of an EIP-712 document{_hint(key, _TYPED_KEYS)}")
    for key in _TYPED_KEYS:
        if key not in doc:
            problems.add(key, "is missing: an EIP-712 document has types, domain, primaryType and message")
    if problems.items:
        return None
    if doc["primaryType"] != "SafeTx":
        problems.add("primaryType", f"is {_shown(doc['primaryType'])}: presign checks SafeTx documents only")
    types, domain, message = doc["types"], doc["domain"], doc["message"]
    not_objects = [
        name
        for name, value in (("types", types), ("domain", domain), ("message", message))
        if not isinstance(value, dict)
    ]
    for name in not_objects:
        problems.add(name, f"is {_kind(doc[name])}, not an object")
    if not_objects:
        return None
    for name in types:
        if name not in ("EIP712Domain", "SafeTx"):
            problems.add(f"types.{name}", "is not part of a SafeTx document: remove it (only EIP712Domain and SafeTx)")
    for key in domain:
        if key not in _DOMAIN_KEYS:
            problems.add(
                f"domain.{key}",
                "is not a field of a Safe's domain, which has only chainId and verifyingContract: a device would "
                "show a hash the Safe never checks",
            )
    gas_field = _safe_tx_type(types, problems)
    domain_fields = _domain_type(types, domain, problems)
    safe = None
    if "verifyingContract" not in domain:
        problems.add("domain.verifyingContract", "is missing: it is the Safe's address")
    else:
        safe = _address(domain["verifyingContract"], "domain.verifyingContract", problems)
    chain_id = _chain_id(domain["chainId"], "domain.chainId", problems) if "chainId" in domain else None
    tx, _ = _message(message, "message.", gas_field, problems)
    if problems.items or tx is None or gas_field is None or domain_fields is None:
        return None
    return PresignInput(tx, TYPED_DATA, safe, chain_id, domain_fields, gas_field)


def _bare(doc: Mapping[str, Any], problems: _Problems) -> PresignInput | None:
    if "message" in doc:
        for key in doc:
            if key not in ("message", *_ENVELOPE_KEYS):
                problems.add(key, f"is not expected beside message{_hint(key, ('message', *_ENVELOPE_KEYS))}")
        fields = doc["message"]
        if not isinstance(fields, dict):
            problems.add("message", f"is {_kind(fields)}, not an object")
            return None
        tx, gas_field = _message(fields, "message.", None, problems)
    else:
        tx, gas_field = _message(doc, "", None, problems, extra=_ENVELOPE_KEYS)
    safe = _address(doc["safe"], "safe", problems) if doc.get("safe") is not None else None
    chain_id = _chain_id(doc["chainId"], "chainId", problems) if doc.get("chainId") is not None else None
    if problems.items or tx is None:
        return None
    return PresignInput(tx, MESSAGE, safe, chain_id, (), gas_field)


def _nesting(text: str) -> int:
    depth = deepest = 0
    for bracket in _BRACKET_RE.finditer(_JSON_STRING_RE.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _nul_path(value: Any, where: str = "") -> str | None:
    """The dotted path (``message.data``) of the first key or string holding a NUL, or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if "\x00" in key:
                return path
            if (found := _nul_path(item, path)) is not None:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            if (found := _nul_path(item, f"{where}[{n}]")) is not None:
                return found
    return None


def parse_presign_file(text: str, *, source: str) -> PresignInput:
    """The Safe transaction in ``text`` (see the module's invariants); InputError naming
    ``source`` and every problem otherwise."""
    nesting = _nesting(text)
    if nesting > MAX_NESTING:
        raise InputError(
            source, [f"not valid JSON for a SafeTx: nested {nesting} levels deep (a SafeTx document has 4)"]
        )
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InputError(source, [f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"]) from None
    except _DuplicateKey as exc:
        raise InputError(
            source, [f"the key {exc.args[0]!r} appears twice in one object: keep one (JSON would keep the last)"]
        ) from None
    except (ValueError, RecursionError) as exc:  # a number of thousands of digits
        raise InputError(source, [f"not valid JSON: {exc}"]) from None
    if (where := _nul_path(doc)) is not None:
        raise InputError(source, [f"{where or 'the document'}: contains a NUL character; no SafeTx field holds one"])
    if not isinstance(doc, dict):
        raise InputError(
            source,
            [
                f"the file holds {_kind(doc)}, not an object: expected one SafeTx, as an EIP-712 document "
                '({"types", "domain", "primaryType": "SafeTx", "message"}) or as the message fields with safe and '
                "chainId beside them"
            ],
        )
    problems = _Problems()
    typed = any(key in doc for key in ("types", "domain", "primaryType"))
    parsed = _typed_data(doc, problems) if typed else _bare(doc, problems)
    if problems.items or parsed is None:
        raise InputError(source, problems.items or ["no SafeTx found"])
    return parsed


def check_version(parsed: PresignInput, version: SafeVersion, *, source: str) -> None:
    """InputError when a typed-data document's domain or SafeTx type is not the one a Safe of
    ``version`` hashes: a device would show its hash, which that Safe never checks. The
    message form carries no types and is hashed by ``version`` alone."""
    if parsed.form != TYPED_DATA:
        return
    shown = ".".join(map(str, version))
    problems = []
    domain = DOMAIN_FIELDS if signs_chain_id(version) else LEGACY_DOMAIN_FIELDS
    expected_names = tuple(name for name, _ in domain)
    if parsed.domain_fields != expected_names:
        given = type_string("EIP712Domain", [(n, dict(DOMAIN_FIELDS)[n]) for n in parsed.domain_fields])
        problems.append(
            f"domain: the document's domain is {given} but a Safe {shown} signs {type_string('EIP712Domain', domain)}: "
            f"a device would show a hash this Safe never checks; build the document for Safe {shown}"
        )
    gas_field = "baseGas" if uses_base_gas(version) else "dataGas"
    if parsed.gas_field != gas_field:
        problems.append(
            f"types.SafeTx: the document names the sixth field {parsed.gas_field} but a Safe {shown} names it "
            f"{gas_field} (dataGas before 1.0.0): a device would show a hash this Safe never checks"
        )
    if problems:
        raise InputError(source, problems)
