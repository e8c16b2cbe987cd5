"""A custody wallet's on-chain configuration, and the issuer controls on the assets it holds,
as values (pure: standard library and eth-utils only).

Invariants: every value here was read at one pinned block and says which; addresses are
EIP-55 and hashes 0x-prefixed lowercase hex (checked on construction, so a value built from a
stored baseline is as strict as one read from the chain); a read that failed or answered
something unreadable is recorded as such (``problems``, ``ControlState.UNKNOWN``) and never as a
harmless default: "could not tell" is never "not frozen" and never "unchanged".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

from reconciler.domain import is_checksummed

HASH_RE = re.compile(r"0x[0-9a-f]{64}")
FUNCTION_NAME_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
EIP7702_PREFIX = bytes.fromhex("ef0100")

JsonValue = str | int | list[str] | None


class WalletKind(StrEnum):
    SAFE = "safe"  # a proxy with the Safe storage layout (also our CustodyWallet)
    EOA = "eoa"  # no code, or an EIP-7702 delegation designator
    CONTRACT = "contract"  # any other code


class ControlState(StrEnum):
    """What an issuer-control view answered: a definite yes or no, or that it could not tell."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


def _check_address(what: str, value: object) -> None:
    if not is_checksummed(value):
        raise ValueError(f"{what} must be an EIP-55 checksummed address, not {value!r}")


def _check_optional_address(what: str, value: object) -> None:
    if value is not None:
        _check_address(what, value)


def _check_hash(what: str, value: object) -> None:
    if not isinstance(value, str) or not HASH_RE.fullmatch(value):
        raise ValueError(f"{what} must be a 0x-prefixed lowercase 32-byte hex hash, not {value!r}")


def _check_count(what: str, value: object, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")


def delegation_of(code: bytes) -> str | None:
    """The delegate of an EIP-7702 designator (``0xef0100 || address``), as a lowercase hex
    address; None for any other code."""
    if len(code) == 23 and code.startswith(EIP7702_PREFIX):
        return "0x" + code[3:].hex()
    return None


def wallet_kind(code: bytes, first_owner: int, threshold: int) -> WalletKind:
    """Classify an account from its code and two storage words.

    No code, or a 23-byte EIP-7702 designator, is an EOA. Code whose storage has the Safe
    pattern — the owners list starts (owners[0x1] != 0) and the threshold is positive — is a
    Safe, whatever slot 0 holds: a singleton that was zeroed or swapped is the very change to
    report, not a reason to stop reading the wallet as a Safe. Anything else is a contract.
    """
    if not code or delegation_of(code) is not None:
        return WalletKind.EOA
    if first_owner != 0 and threshold > 0:
        return WalletKind.SAFE
    return WalletKind.CONTRACT


@dataclass(frozen=True, slots=True)
class WalletConfig:
    """One wallet's configuration at one block, as `wallets show --json` prints it.

    ``owners`` and ``modules`` keep the order of the wallet's linked lists. For kinds other
    than a Safe, the Safe fields are None (or empty). ``nonce`` is informational: it moves with
    every transaction, so it is never compared. ``problems`` lists what could not be read
    cleanly (a view that reverts, a list that does not end, an owner count that disagrees with
    the list); its strings carry no block number, so the same state gives the same problems.
    """

    wallet: str
    chain: str
    address: str
    block_number: int
    kind: WalletKind
    code_hash: str
    implementation: str | None = None
    admin: str | None = None
    singleton: str | None = None
    owners: tuple[str, ...] = ()
    threshold: int | None = None
    nonce: int | None = None
    modules: tuple[str, ...] = ()
    guard: str | None = None
    fallback_handler: str | None = None
    delegation: str | None = None
    problems: tuple[str, ...] = ()
    # An EIP-1967 beacon proxy: the beacon (its slot) and the implementation it names now.
    beacon: str | None = None
    beacon_implementation: str | None = None
    # Addresses whose owners[x] / modules[x] mapping entry is set though the linked lists do
    # not hold them (written straight into storage: isOwner/isModuleEnabled are true for them).
    hidden_owners: tuple[str, ...] = ()
    hidden_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_address(f"{self.wallet}: address", self.address)
        _check_count(f"{self.wallet}: block_number", self.block_number, optional=False)
        if not isinstance(self.kind, WalletKind):
            raise ValueError(f"{self.wallet}: kind must be a WalletKind, not {self.kind!r}")
        _check_hash(f"{self.wallet}: code_hash", self.code_hash)
        for name in (
            "implementation",
            "admin",
            "singleton",
            "guard",
            "fallback_handler",
            "delegation",
            "beacon",
            "beacon_implementation",
        ):
            _check_optional_address(f"{self.wallet}: {name}", getattr(self, name))
        for name in ("owners", "modules", "hidden_owners", "hidden_modules"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise ValueError(f"{self.wallet}: {name} must be a tuple of addresses, not {value!r}")
            for item in value:
                _check_address(f"{self.wallet}: {name} entry", item)
        _check_count(f"{self.wallet}: threshold", self.threshold, optional=True)
        _check_count(f"{self.wallet}: nonce", self.nonce, optional=True)
        if not isinstance(self.problems, tuple) or not all(isinstance(p, str) for p in self.problems):
            raise ValueError(f"{self.wallet}: problems must be a tuple of strings, not {self.problems!r}")

    def to_json(self) -> dict[str, Any]:
        """The design's `wallets show --json` object (plus address, nonce and problems)."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, StrEnum):
                value = value.value
            out[name] = value
        return out

    def to_text(self, block_number: int | None = None) -> str:
        """``json.dumps(self.to_json())``, the form a baseline stores (as read at
        ``block_number`` when given). A configuration whose fields after its code hash are all
        at their defaults (an account without code, most of a fleet) is written from a
        template of those: the same text, for a fraction of the cost at a first run of a large
        fleet."""
        block = self.block_number if block_number is None else block_number
        for name, value in _TAIL_DEFAULTS:
            if getattr(self, name) != value:
                return json.dumps({**self.to_json(), "block_number": block})
        return (
            f'{{"wallet": {encode_basestring_ascii(self.wallet)}, "chain": {encode_basestring_ascii(self.chain)}, '
            f'"address": {encode_basestring_ascii(self.address)}, "block_number": {int(block)}, '
            f'"kind": {encode_basestring_ascii(self.kind.value)}, "code_hash": '
            f"{encode_basestring_ascii(self.code_hash)}, {_TAIL_TEXT}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a run's first-seen configurations spilled to disk) as its values: the
        # dataclass's own state methods were most of writing and reading them back.
        return (_restored, tuple(getattr(self, name) for name in _FIELDS))

    def same_as_stored(self, data: Mapping[str, Any]) -> bool:
        """Whether ``data`` (a stored ``to_json()``) is this configuration but for its block:
        compared field by field, without making either form of the other."""
        if len(data) != len(_FIELDS):
            return False
        for name in _FIELDS:
            if name == "block_number" or name not in data:
                continue
            mine, theirs = getattr(self, name), data[name]
            if isinstance(mine, tuple):
                if not isinstance(theirs, list) or list(mine) != theirs:
                    return False
            elif mine != theirs or type(theirs) is bool and type(mine) is not bool:
                return False
        return isinstance(data.get("block_number"), int)

    def at_block(self, block_number: int) -> WalletConfig:
        """This configuration as recorded at ``block_number`` (a stored baseline equal to it but
        for the block): its fields were checked when it was made, and are not checked again."""
        twin = object.__new__(WalletConfig)
        for put, get in _COPIERS:
            put(twin, get(self))
        _SETTERS[_BLOCK](twin, block_number)
        return twin

    @classmethod
    def without_code(cls, wallet: str, chain: str, address: str, block_number: int, code_hash: str) -> WalletConfig:
        """An account without code (an EOA, most of a fleet), its other fields at their
        defaults. Not checked again: ``address`` is a configured wallet's, checked (EIP-55) when
        the configuration or the import was read, and ``code_hash`` is the hash of no code.
        Checking cost more than the rest of reading such a wallet."""
        return _made((wallet, chain, address, block_number, WalletKind.EOA, code_hash, *_TAIL_VALUES))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WalletConfig:
        """The inverse of to_json (for a stored baseline); a malformed value raises ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown wallet configuration field(s): {', '.join(unknown)}")
        values: dict[str, Any] = dict(data)
        try:
            values["kind"] = WalletKind(values["kind"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"wallet configuration has no valid kind: {data.get('kind')!r}") from exc
        for name in ("owners", "modules", "problems", "hidden_owners", "hidden_modules"):
            if name in values:
                if not isinstance(values[name], list | tuple):
                    raise ValueError(f"{name} must be a list, not {values[name]!r}")
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"incomplete wallet configuration: {exc}") from exc


# Fields that make up the reviewed configuration: what a baseline pins and a run compares.
# Left out on purpose: the wallet's name and chain (they identify it), block_number (every
# read has its own) and nonce (it moves with every transaction).
COMPARED_FIELDS: tuple[str, ...] = (
    "address",
    "kind",
    "code_hash",
    "implementation",
    "admin",
    "singleton",
    "owners",
    "threshold",
    "modules",
    "guard",
    "fallback_handler",
    "delegation",
    "problems",
    "beacon",
    "beacon_implementation",
    "hidden_owners",
    "hidden_modules",
)


@dataclass(frozen=True, slots=True)
class FreezeQuery:
    """Ask ``token``'s ``function(address) returns (bool)`` view about ``holder``."""

    token: str
    holder: str
    function: str

    def __post_init__(self) -> None:
        _check_address("token", self.token)
        _check_address("holder", self.holder)
        if not FUNCTION_NAME_RE.fullmatch(self.function):
            raise ValueError(f"{self.function!r} is not a Solidity function name (like 'isBlacklisted')")


@dataclass(frozen=True, slots=True)
class FreezeReading:
    """Whether the issuer of ``token`` has frozen (blacklisted) ``holder``, at ``block_number``.
    ``note`` says why the state is UNKNOWN (empty otherwise)."""

    token: str
    holder: str
    function: str
    block_number: int
    state: ControlState
    note: str = ""

    def __post_init__(self) -> None:
        _check_address("token", self.token)
        _check_address("holder", self.holder)


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Whether ``token`` is paused (``paused()``) at ``block_number``."""

    token: str
    block_number: int
    state: ControlState
    note: str = ""

    def __post_init__(self) -> None:
        _check_address("token", self.token)


@dataclass(frozen=True, slots=True)
class FrozenTokensReading:
    """How many of ``holder``'s tokens the issuer froze (ERC-3643 ``getFrozenTokens``) at
    ``block_number``: ``amount`` in base units, or None when the view could not tell (``note``
    says why)."""

    token: str
    holder: str
    block_number: int
    amount: int | None
    note: str = ""

    def __post_init__(self) -> None:
        _check_address("token", self.token)
        _check_address("holder", self.holder)
        if self.amount is not None and (isinstance(self.amount, bool) or self.amount < 0):
            raise ValueError(f"a frozen amount must be a non-negative integer, not {self.amount!r}")


@dataclass(frozen=True, slots=True)
class TokenImplementation:
    """Where a proxied token's logic lives: the EIP-1967 implementation slot and the older
    ZeppelinOS slot (USDC's FiatTokenProxy). None where the slot is empty."""

    token: str
    block_number: int
    eip1967: str | None
    zeppelinos: str | None

    def __post_init__(self) -> None:
        _check_address("token", self.token)
        _check_optional_address(f"{self.token}: eip1967 implementation", self.eip1967)
        _check_optional_address(f"{self.token}: zeppelinos implementation", self.zeppelinos)

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "block_number": self.block_number,
            "eip1967": self.eip1967,
            "zeppelinos": self.zeppelinos,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenImplementation:
        try:
            return cls(
                token=data["token"],
                block_number=int(data["block_number"]),
                eip1967=data.get("eip1967"),
                zeppelinos=data.get("zeppelinos"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete token implementation record: {exc}") from exc


@dataclass(frozen=True, slots=True)
class IssuerControls:
    """Everything read about issuer controls on one chain at one block."""

    block_number: int
    freezes: tuple[FreezeReading, ...] = ()
    pauses: tuple[PauseReading, ...] = ()
    implementations: tuple[TokenImplementation, ...] = ()
    frozen: tuple[FrozenTokensReading, ...] = ()


_FIELDS = tuple(f.name for f in fields(WalletConfig))
_DEFAULTS = tuple((f.name, f.default) for f in fields(WalletConfig) if f.default is not MISSING)
# Every field after code_hash has a default; their JSON text when all are at it (to_text).
_TAIL_DEFAULTS = _DEFAULTS
assert [name for name, _ in _TAIL_DEFAULTS] == list(_FIELDS[_FIELDS.index("code_hash") + 1 :])
_TAIL_TEXT = json.dumps(dict(_TAIL_DEFAULTS))[1:]


def _restored(*values: Any) -> WalletConfig:
    """A configuration from its values in field order, as pickled in this process (checked
    when it was made)."""
    return _made(values)


# A configuration's slots, set and read directly (not through the frozen class's __setattr__):
# making one from values already checked is most of its cost for a large fleet.
_SETTERS = tuple(getattr(WalletConfig, name).__set__ for name in _FIELDS)
_COPIERS = tuple((getattr(WalletConfig, name).__set__, getattr(WalletConfig, name).__get__) for name in _FIELDS)
_BLOCK = _FIELDS.index("block_number")
_TAIL_VALUES = tuple(value for _, value in _TAIL_DEFAULTS)


def _made(values: Sequence[Any]) -> WalletConfig:
    """A configuration from its values in field order, not checked again."""
    made = object.__new__(WalletConfig)
    for put, value in zip(_SETTERS, values):  # noqa: B905 - always a value per field
        put(made, value)
    return made
