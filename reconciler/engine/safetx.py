"""A Safe transaction before anyone signs it: its hashes and its decoded call (pure: standard
library, eth-hash, eth-abi and the core).

Invariants:
- ``safe_hashes`` computes exactly what the Safe's ``getTransactionHash`` returns for the
  wallet's version, and so what a hardware wallet shows: the domain is
  ``EIP712Domain(uint256 chainId,address verifyingContract)`` from Safe 1.3.0 on and
  ``EIP712Domain(address verifyingContract)`` before it; the SafeTx type names its sixth field
  ``baseGas`` from Safe 1.0.0 on and ``dataGas`` before it (the field's value and place are the
  same, only the type string and so the typehash differ).
- ``decode_call`` never raises on what the calldata holds: a selector it has no ABI for, or
  calldata no reading of its selector's ABI makes sense of (short, a bad offset), is shown raw
  (``function`` None, no arguments) with a ``note`` saying why. Calldata a strict decoder
  refuses but a contract compiled with Solidity's ABI coder v1 would accept (dirty padding,
  high bits) is read as that contract reads it, with a note: what may run is never left
  unjudged for being oddly encoded. Arguments are decoded by the selector whatever the target,
  so an approval on a token nobody configured is still seen; ``contract`` says what the target
  is known to be.
- ``multiSend(bytes)`` calls are decoded recursively into ``inner``, one entry per packed
  transaction (``operation (uint8) || to (20 bytes) || value (uint256) || dataLength
  (uint256) || data``) exactly as MultiSend's loop reads them, whatever the target: an unknown
  address that is sent a batch is still read as one. A batch that cannot be read (it runs past
  its end, or nests deeper than ``MAX_DEPTH``) is marked ``batch_unread`` with a note.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from reconciler.domain import UINT256_MAX, eip55
from reconciler.errors import InputError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CALL = 0
DELEGATECALL = 1
MAX_DEPTH = 8  # MultiSend inside MultiSend: no real batch nests this deep

# ----------------------------------------------------------------------------- types and hashes

# (name, type) in the order the Safe's type string lists them: the order is part of the hash.
DOMAIN_FIELDS: tuple[tuple[str, str], ...] = (("chainId", "uint256"), ("verifyingContract", "address"))
LEGACY_DOMAIN_FIELDS: tuple[tuple[str, str], ...] = (("verifyingContract", "address"),)
SAFE_TX_FIELDS: tuple[tuple[str, str], ...] = (
    ("to", "address"),
    ("value", "uint256"),
    ("data", "bytes"),
    ("operation", "uint8"),
    ("safeTxGas", "uint256"),
    ("baseGas", "uint256"),
    ("gasPrice", "uint256"),
    ("gasToken", "address"),
    ("refundReceiver", "address"),
    ("nonce", "uint256"),
)
# Safe < 1.0.0 called the sixth field dataGas.
LEGACY_SAFE_TX_FIELDS: tuple[tuple[str, str], ...] = tuple(
    ("dataGas", kind) if name == "baseGas" else (name, kind) for name, kind in SAFE_TX_FIELDS
)


def type_string(name: str, fields: Sequence[tuple[str, str]]) -> str:
    """EIP-712 ``encodeType`` of a struct with no struct members: ``Name(type name,...)``."""
    return f"{name}({','.join(f'{kind} {field_name}' for field_name, kind in fields)})"


DOMAIN_TYPEHASH = keccak(type_string("EIP712Domain", DOMAIN_FIELDS).encode())
LEGACY_DOMAIN_TYPEHASH = keccak(type_string("EIP712Domain", LEGACY_DOMAIN_FIELDS).encode())
SAFE_TX_TYPEHASH = keccak(type_string("SafeTx", SAFE_TX_FIELDS).encode())
LEGACY_SAFE_TX_TYPEHASH = keccak(type_string("SafeTx", LEGACY_SAFE_TX_FIELDS).encode())

SafeVersion = tuple[int, int, int]
CHAIN_ID_FROM: SafeVersion = (1, 3, 0)  # first version whose domain has chainId
BASE_GAS_FROM: SafeVersion = (1, 0, 0)  # first version whose SafeTx says baseGas, not dataGas
# "1.3.0", "v1.3.0", and the Safe transaction service's "1.3.0+L2" (build metadata).
_VERSION_RE = re.compile(r"v?(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})(\+[0-9A-Za-z.-]{1,40})?")


def parse_safe_version(text: str, *, source: str = "safe version") -> SafeVersion:
    """``"1.3.0"`` -> ``(1, 3, 0)``; anything that is not three dot-separated numbers (an
    optional leading ``v`` and ``+build`` suffix aside) is an InputError."""
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:60] + "…"
        raise InputError(
            source,
            [
                f"{shown} is not a Safe version: write it as the Safe's VERSION() returns it, three numbers "
                "such as 1.3.0, 1.4.1, 1.1.1 or 0.1.0"
            ],
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def signs_chain_id(version: SafeVersion) -> bool:
    """Whether the Safe's domain separator includes the chain id (1.3.0 and later)."""
    return version >= CHAIN_ID_FROM


def uses_base_gas(version: SafeVersion) -> bool:
    """Whether the Safe's SafeTx type says ``baseGas`` (1.0.0 and later) rather than ``dataGas``."""
    return version >= BASE_GAS_FROM


@dataclass(frozen=True, slots=True)
class SafeTx:
    """One Safe transaction, the arguments of ``getTransactionHash`` and so of the signature.
    Addresses EIP-55, integers base units, ``data`` the raw calldata. ``operation`` is a uint8
    here (0 CALL, 1 DELEGATECALL; Safe 0.1.0 also had 2 CREATE): the input parser admits only
    0 and 1."""

    to: str
    value: int = 0
    data: bytes = b""
    operation: int = CALL
    safe_tx_gas: int = 0
    base_gas: int = 0
    gas_price: int = 0
    gas_token: str = ZERO_ADDRESS
    refund_receiver: str = ZERO_ADDRESS
    nonce: int = 0

    def __post_init__(self) -> None:
        # A caller's bug, not an input problem: the parser has said what was wrong already.
        for name in ("value", "safe_tx_gas", "base_gas", "gas_price", "nonce"):
            amount = getattr(self, name)
            if type(amount) is not int or not 0 <= amount <= UINT256_MAX:
                raise ValueError(f"SafeTx.{name} must be an int in 0..2**256-1, not {amount!r}")
        if type(self.operation) is not int or not 0 <= self.operation <= 255:
            raise ValueError(f"SafeTx.operation must be a uint8, not {self.operation!r}")
        if not isinstance(self.data, bytes):
            raise ValueError(f"SafeTx.data must be bytes, not {type(self.data).__name__}")
        for name in ("to", "gas_token", "refund_receiver"):
            address = getattr(self, name)
            if eip55(address) != address:
                raise ValueError(f"SafeTx.{name} must be EIP-55, not {address!r}")


@dataclass(frozen=True, slots=True)
class SafeHashes:
    """The three hashes a hardware wallet shows, 0x lowercase hex."""

    domain_hash: str
    message_hash: str
    safe_tx_hash: str


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(eip55(address)[2:])


def domain_hash(chain_id: int | None, safe: str, version: SafeVersion) -> bytes:
    if signs_chain_id(version):
        if chain_id is None:
            raise InputError(
                "chain id",
                [
                    f"Safe {'.'.join(map(str, version))} signs the chain id: give it (chainId in the file, "
                    "or --chain-id)"
                ],
            )
        return keccak(DOMAIN_TYPEHASH + _uint(chain_id) + _address(safe))
    return keccak(LEGACY_DOMAIN_TYPEHASH + _address(safe))


def message_hash(tx: SafeTx, version: SafeVersion) -> bytes:
    typehash = SAFE_TX_TYPEHASH if uses_base_gas(version) else LEGACY_SAFE_TX_TYPEHASH
    return keccak(
        typehash
        + _address(tx.to)
        + _uint(tx.value)
        + keccak(tx.data)
        + _uint(tx.operation)
        + _uint(tx.safe_tx_gas)
        + _uint(tx.base_gas)
        + _uint(tx.gas_price)
        + _address(tx.gas_token)
        + _address(tx.refund_receiver)
        + _uint(tx.nonce)
    )


def safe_hashes(tx: SafeTx, chain_id: int | None, safe: str, version: str | SafeVersion) -> SafeHashes:
    """The domain hash, message (SafeTx struct) hash and safeTxHash of ``tx`` for the Safe at
    ``safe`` of ``version`` ("1.3.0" or a parsed tuple). ``chain_id`` is signed from 1.3.0 on
    (None there is an InputError) and ignored before."""
    parsed = parse_safe_version(version) if isinstance(version, str) else version
    domain = domain_hash(chain_id, safe, parsed)
    message = message_hash(tx, parsed)
    digest = keccak(b"\x19\x01" + domain + message)
    return SafeHashes("0x" + domain.hex(), "0x" + message.hex(), "0x" + digest.hex())


def typed_data(tx: SafeTx, chain_id: int | None, safe: str, version: str | SafeVersion) -> dict[str, Any]:
    """The EIP-712 document a signer's wallet receives for ``tx`` (integers as decimal strings,
    ``data`` hex), with the domain and SafeTx type of ``version``."""
    parsed = parse_safe_version(version) if isinstance(version, str) else version
    domain_fields = DOMAIN_FIELDS if signs_chain_id(parsed) else LEGACY_DOMAIN_FIELDS
    tx_fields = SAFE_TX_FIELDS if uses_base_gas(parsed) else LEGACY_SAFE_TX_FIELDS
    domain: dict[str, Any] = {"verifyingContract": eip55(safe)}
    if signs_chain_id(parsed):
        domain = {"chainId": chain_id, **domain}
    values = (
        tx.to,
        str(tx.value),
        "0x" + tx.data.hex(),
        tx.operation,
        str(tx.safe_tx_gas),
        str(tx.base_gas),
        str(tx.gas_price),
        tx.gas_token,
        tx.refund_receiver,
        str(tx.nonce),
    )
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in domain_fields],
            "SafeTx": [{"name": n, "type": t} for n, t in tx_fields],
        },
        "domain": domain,
        "primaryType": "SafeTx",
        "message": {name: value for (name, _), value in zip(tx_fields, values, strict=True)},
    }


# ----------------------------------------------------------------------------- known contracts

# Safe's canonical deployments (safe-global/safe-deployments src/assets/v1.3.0 and v1.4.1,
# "canonical" and "eip155" entries), the same address on every chain that has them.
MULTISEND_ADDRESSES = frozenset(
    {
        "0xA238CBeb142c10Ef7Ad8442C6D1f9E89e07e7761",  # 1.3.0 canonical
        "0x998739BFdAAdde7C933B942a68053933098f9EDa",  # 1.3.0 eip155
        "0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526",  # 1.4.1
    }
)
MULTISEND_CALL_ONLY_ADDRESSES = frozenset(
    {
        "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D",  # 1.3.0 canonical
        "0xA1dabEF33b3B82c7814B6D82A79e50F4AC44102B",  # 1.3.0 eip155
        "0x9641d764fc13c8B624c04430C7356C1C7C8102e2",  # 1.4.1
    }
)

SAFE_LABEL = "safe"
MULTISEND_LABEL = "MultiSend"
MULTISEND_CALL_ONLY_LABEL = "MultiSendCallOnly"


@dataclass(frozen=True, slots=True)
class KnownContracts:
    """What the decoder can name a target as: configured tokens (EIP-55 address -> asset
    name), the Safe itself, and the MultiSend / MultiSendCallOnly deployments (by default
    Safe's canonical ones)."""

    safe: str | None = None
    tokens: Mapping[str, str] = field(default_factory=dict)
    multisend: frozenset[str] = MULTISEND_ADDRESSES
    multisend_call_only: frozenset[str] = MULTISEND_CALL_ONLY_ADDRESSES

    def label(self, address: str) -> str | None:
        key = address.lower()
        if self.safe is not None and key == self.safe.lower():
            return SAFE_LABEL
        for token, name in self.tokens.items():
            if token.lower() == key:
                return name
        if key in {a.lower() for a in self.multisend}:
            return MULTISEND_LABEL
        if key in {a.lower() for a in self.multisend_call_only}:
            return MULTISEND_CALL_ONLY_LABEL
        return None


# ----------------------------------------------------------------------------- ABIs


@dataclass(frozen=True, slots=True)
class Function:
    """A function the decoder knows: its canonical signature and its parameters' names."""

    signature: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.signature.split("(", 1)[0]

    @property
    def types(self) -> tuple[str, ...]:
        inner = self.signature[len(self.name) + 1 : -1]
        return _split_types(inner)

    @property
    def selector(self) -> bytes:
        return keccak(self.signature.encode())[:4]


def _split_types(text: str) -> tuple[str, ...]:
    # Top-level commas only (no tuple types among the known ABIs, but keep it right).
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if text:
        out.append(text[start:])
    return tuple(out)


ERC20_FUNCTIONS = (
    Function("transfer(address,uint256)", ("to", "value")),
    Function("transferFrom(address,address,uint256)", ("from", "to", "value")),
    Function("approve(address,uint256)", ("spender", "value")),
    Function("increaseAllowance(address,uint256)", ("spender", "addedValue")),
    Function("decreaseAllowance(address,uint256)", ("spender", "subtractedValue")),
    Function(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        ("owner", "spender", "value", "deadline", "v", "r", "s"),
    ),
    Function(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)",
        ("from", "to", "value", "validAfter", "validBefore", "nonce", "v", "r", "s"),
    ),
    Function("setApprovalForAll(address,bool)", ("operator", "approved")),
)
# The functions by which a Safe changes who controls it (design: wallet_config_call).
SAFE_CONFIG_FUNCTIONS = (
    Function("addOwnerWithThreshold(address,uint256)", ("owner", "_threshold")),
    Function("removeOwner(address,address,uint256)", ("prevOwner", "owner", "_threshold")),
    Function("swapOwner(address,address,address)", ("prevOwner", "oldOwner", "newOwner")),
    Function("changeThreshold(uint256)", ("_threshold",)),
    Function("enableModule(address)", ("module",)),
    Function("disableModule(address,address)", ("prevModule", "module")),
    Function("setGuard(address)", ("guard",)),
    Function("setModuleGuard(address)", ("moduleGuard",)),
    Function("setFallbackHandler(address)", ("handler",)),
    Function("changeMasterCopy(address)", ("_masterCopy",)),
)
SAFE_OTHER_FUNCTIONS = (
    Function("approveHash(bytes32)", ("hashToApprove",)),
    Function(
        "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
        (
            "to",
            "value",
            "data",
            "operation",
            "safeTxGas",
            "baseGas",
            "gasPrice",
            "gasToken",
            "refundReceiver",
            "signatures",
        ),
    ),
    Function("execTransactionFromModule(address,uint256,bytes,uint8)", ("to", "value", "data", "operation")),
    Function(
        "setup(address[],uint256,address,bytes,address,address,uint256,address)",
        ("_owners", "_threshold", "to", "data", "fallbackHandler", "paymentToken", "payment", "paymentReceiver"),
    ),
)
MULTISEND = Function("multiSend(bytes)", ("transactions",))
MULTISEND_SELECTOR = MULTISEND.selector

KNOWN_FUNCTIONS: Mapping[bytes, Function] = {
    f.selector: f for f in (*ERC20_FUNCTIONS, *SAFE_CONFIG_FUNCTIONS, *SAFE_OTHER_FUNCTIONS, MULTISEND)
}
CONFIG_SIGNATURES = frozenset(f.signature for f in SAFE_CONFIG_FUNCTIONS)

# ----------------------------------------------------------------------------- MultiSend packing


@dataclass(frozen=True, slots=True)
class InnerTx:
    """One transaction of a MultiSend batch. ``to`` EIP-55; ``operation`` as packed (uint8)."""

    operation: int
    to: str
    value: int
    data: bytes


_INNER_HEADER = 1 + 20 + 32 + 32


def encode_multisend(transactions: Sequence[InnerTx]) -> bytes:
    """The packed ``transactions`` argument of ``multiSend(bytes)``."""
    out = bytearray()
    for tx in transactions:
        out += bytes([tx.operation]) + bytes.fromhex(eip55(tx.to)[2:]) + _uint(tx.value)
        out += _uint(len(tx.data)) + tx.data
    return bytes(out)


def multisend_calldata(transactions: Sequence[InnerTx]) -> bytes:
    """The calldata of ``multiSend(bytes)`` carrying ``transactions``."""
    return MULTISEND_SELECTOR + abi_encode(["bytes"], [encode_multisend(transactions)])


def decode_multisend(packed: bytes) -> list[InnerTx]:
    """The transactions of a packed batch, read as MultiSend and MultiSendCallOnly (1.3.0,
    1.4.1) read them: an entry starts only where more than 32 bytes remain (their loop runs
    while ``i < length`` with ``i`` counted from the length word), so up to 32 trailing bytes
    are ignored; an entry that runs past the end would make them read memory beyond the batch,
    and is a ValueError naming where."""
    out: list[InnerTx] = []
    offset = 0
    while offset + 32 < len(packed):
        index = len(out) + 1
        if len(packed) - offset < _INNER_HEADER:
            raise ValueError(
                f"inner call {index} starts at byte {offset} but only {len(packed) - offset} bytes remain, "
                f"fewer than the {_INNER_HEADER}-byte header (operation, to, value, data length): MultiSend "
                "would read past the batch"
            )
        operation = packed[offset]
        to = eip55("0x" + packed[offset + 1 : offset + 21].hex())
        value = int.from_bytes(packed[offset + 21 : offset + 53], "big")
        length = int.from_bytes(packed[offset + 53 : offset + 85], "big")
        start = offset + _INNER_HEADER
        if length > len(packed) - start:
            raise ValueError(
                f"inner call {index} declares {length} bytes of data but only {len(packed) - start} remain: "
                "MultiSend would read past the batch"
            )
        out.append(InnerTx(operation, to, value, packed[start : start + length]))
        offset = start + length
    return out


def ignored_tail(packed: bytes, batch: Sequence[InnerTx]) -> int:
    """How many trailing bytes of ``packed`` MultiSend ignores after ``batch`` (0 to 32)."""
    return len(packed) - sum(_INNER_HEADER + len(tx.data) for tx in batch)


# ----------------------------------------------------------------------------- decoded calls

ArgValue = str | int | bool | bytes | tuple["ArgValue", ...]


@dataclass(frozen=True, slots=True)
class Arg:
    """One decoded argument: addresses EIP-55, integers int, bytes and bytesN bytes, arrays tuples."""

    name: str
    type: str
    value: ArgValue


def _json_value(value: ArgValue) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class DecodedCall:
    """A call as the decoder read it. ``contract`` is the asset name of a configured token,
    "safe", "MultiSend", "MultiSendCallOnly" or None; ``function`` the signature when the
    calldata decoded under it, else None (raw); ``selector`` the first four bytes (None when
    the calldata is shorter); ``inner`` the batch of a ``multiSend(bytes)``; ``note`` why the
    call is shown raw or anything odd about its encoding, and ``batch_unread`` whether a
    ``multiSend``'s batch could not be read (neither is part of ``to_json``)."""

    to: str
    value: int
    operation: int
    data: bytes
    contract: str | None = None
    function: str | None = None
    selector: str | None = None
    args: tuple[Arg, ...] = ()
    inner: tuple[DecodedCall, ...] = ()
    note: str | None = None
    batch_unread: bool = False  # a multiSend whose batch did not decode or nests too deep

    @property
    def unread_batch(self) -> bool:
        """Whether this is a ``multiSend(bytes)`` call whose batch was not decoded (it does not
        decode, or nests too deep): the calls it would make are unknown."""
        return self.selector == "0x" + MULTISEND_SELECTOR.hex() and (self.function is None or self.batch_unread)

    def arg(self, name: str) -> ArgValue:
        """The value of the argument called ``name``; KeyError when there is none."""
        for a in self.args:
            if a.name == name:
                return a.value
        raise KeyError(name)

    def call_text(self) -> str:
        """``approve(spender=0x…, value=1000)``, or the selector and length of raw calldata."""
        if self.function == MULTISEND.signature and self.inner:
            return f"multiSend(transactions=a batch of {len(self.inner)} calls)"
        if self.function is not None:
            name = self.function.split("(", 1)[0]
            shown = ", ".join(f"{a.name}={_text_value(a.value)}" for a in self.args)
            return f"{name}({shown})"
        if not self.data:
            return "no calldata"
        if self.selector is None:
            return f"{len(self.data)} bytes of calldata (shorter than a selector)"
        return f"selector {self.selector} with {len(self.data)} bytes of calldata (not decoded)"

    def walk(self, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], DecodedCall]]:
        """This call and every inner call depth first, each with its path: () for the
        transaction's own call, (2,) for the second call of its batch, (2, 1) for the first
        call of the batch inside that one (numbers from 1)."""
        yield path, self
        for i, call in enumerate(self.inner, start=1):
            yield from call.walk((*path, i))

    def to_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "value": str(self.value),
            "operation": self.operation,
            "contract": self.contract,
            "function": self.function,
            "selector": self.selector,
            "args": [{"name": a.name, "type": a.type, "value": _json_value(a.value)} for a in self.args],
            "data": "0x" + self.data.hex(),
            "inner": [call.to_json() for call in self.inner],
        }


def _text_value(value: ArgValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        if len(value) > _SHOWN_BYTES:
            return f"0x{value[:_SHOWN_BYTES].hex()}… ({len(value)} bytes)"
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return "[" + ", ".join(_text_value(v) for v in value) + "]"
    return str(value)


_SHOWN_BYTES = 96  # longer bytes arguments (calldata, signatures) are cut in text, never in JSON


def _converted(kind: str, value: Any) -> ArgValue:
    if kind.endswith("]"):
        element = kind[: kind.rindex("[")]
        return tuple(_converted(element, v) for v in value)
    if kind == "address":
        return eip55(str(value))
    if isinstance(value, bool | int | bytes):
        return value
    return str(value)


def decode_call(to: str, value: int, data: bytes, operation: int, known: KnownContracts) -> DecodedCall:
    """The call ``to`` with ``data``, decoded by its selector's ABI (see the module's
    invariants); ``multiSend(bytes)`` batches recursively."""
    return _decode(eip55(to), value, data, operation, known, 0)


def _decode(to: str, value: int, data: bytes, operation: int, known: KnownContracts, depth: int) -> DecodedCall:
    contract = known.label(to)
    if len(data) < 4:
        note = None if not data else f"{len(data)} bytes of calldata, shorter than a 4-byte selector"
        return DecodedCall(to, value, operation, data, contract, note=note)
    selector = "0x" + data[:4].hex()
    function = KNOWN_FUNCTIONS.get(data[:4])
    if function is None:
        return DecodedCall(to, value, operation, data, contract, selector=selector, note="unknown selector")
    raw = DecodedCall(to, value, operation, data, contract, selector=selector)
    values, note = _abi_values(function, data[4:])
    if values is None:
        return _with_note(raw, note or "")
    args = tuple(
        Arg(name, kind, _converted(kind, v))
        for name, kind, v in zip(function.names, function.types, values, strict=True)
    )
    decoded = DecodedCall(to, value, operation, data, contract, function.signature, selector, args, note=note)
    if function is not MULTISEND:
        return decoded
    if depth >= MAX_DEPTH:
        note = f"MultiSend nested deeper than {MAX_DEPTH} levels: its batch is not decoded"
        return replace(_with_note(decoded, note), batch_unread=True)
    packed = args[0].value
    assert isinstance(packed, bytes)
    try:
        batch = decode_multisend(packed)
    except ValueError as exc:
        return replace(_with_note(decoded, f"the MultiSend batch does not decode: {exc}"), batch_unread=True)
    inner = tuple(_decode(tx.to, tx.value, tx.data, tx.operation, known, depth + 1) for tx in batch)
    tail = ignored_tail(packed, batch)
    if tail:
        decoded = _with_note(decoded, f"the batch ends with {tail} bytes that MultiSend ignores")
    odd = [str(i) for i, tx in enumerate(batch, start=1) if tx.operation > DELEGATECALL]
    if odd:
        decoded = _with_note(
            decoded, f"inner call(s) {', '.join(odd)} have an operation other than 0 or 1: MultiSend reverts on them"
        )
    return replace(decoded, inner=inner)


_STATIC_TYPES = frozenset({"address", "bool", "uint8", "uint256", "bytes32"})


def _abi_values(function: Function, body: bytes) -> tuple[tuple[Any, ...] | None, str | None]:
    """The arguments and a note: strictly decoded (note only if the encoding is not the
    canonical one), or as a lenient decoder reads them. Contracts compiled with Solidity's ABI
    coder v1 accept dirty padding and high bits (they clean addresses, bools and small ints),
    so calldata a strict decoder refuses can still run: it is read the way they read it, with
    a note, rather than left raw and unjudged. (None, why) when no reading is possible."""
    try:
        values = abi_decode(function.types, body)
    except (DecodingError, ValueError, OverflowError) as exc:
        strict_error = str(exc)
    else:
        expected = len(abi_encode(function.types, values))
        if abi_encode(function.types, values) == body:
            return values, None
        # Solidity ignores what follows the arguments; a reviewer should know it is there.
        return values, (
            f"the calldata is not the canonical encoding of these arguments ({len(body)} bytes after the "
            f"selector, {expected} expected)"
        )
    lenient = f"read leniently, as an ABI coder v1 contract would: a strict decoder refuses it ({strict_error})"
    try:
        return abi_decode(function.types, body, strict=False), lenient
    except (DecodingError, ValueError, OverflowError):
        pass
    if set(function.types) <= _STATIC_TYPES and len(body) >= 32 * len(function.types):
        words = [body[32 * i : 32 * i + 32] for i in range(len(function.types))]
        return tuple(_clean(kind, word) for kind, word in zip(function.types, words, strict=True)), lenient
    return None, f"the calldata does not decode as {function.signature}: {strict_error}"


def _clean(kind: str, word: bytes) -> Any:
    if kind == "address":
        return "0x" + word[12:].hex()
    if kind == "bool":
        return word != bytes(32)
    if kind == "uint8":
        return word[-1]
    if kind == "uint256":
        return int.from_bytes(word, "big")
    return word


def _with_note(call: DecodedCall, note: str) -> DecodedCall:
    return replace(call, note=note if call.note is None else f"{call.note}; {note}")


def decode_safe_tx(tx: SafeTx, known: KnownContracts) -> DecodedCall:
    """``decode_call`` of the transaction's own call."""
    return decode_call(tx.to, tx.value, tx.data, tx.operation, known)
