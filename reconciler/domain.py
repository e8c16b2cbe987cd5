"""Value types of the reconciler (pure: standard library and eth-utils only).

Invariant: amounts are integers in base units everywhere; Decimal appears only when an amount
is shown to a person or valued in USD, and float never.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple, NewType, Protocol

BaseUnits = NewType("BaseUnits", int)

UINT256_MAX = 2**256 - 1
UINT256_DIGITS = len(str(UINT256_MAX))  # 78
AMOUNT_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")
HASH_RE = re.compile(r"0x[0-9a-f]{64}")
_ADDRESS_RE = re.compile(r"(?:0[xX])?[0-9a-fA-F]{40}")


class AssetKind(StrEnum):
    STABLECOIN = "stablecoin"
    MMF = "mmf"
    NATIVE = "native"
    WRAPPED = "wrapped"


class SegClass(StrEnum):
    FUTURES = "futures"
    CLEARED_SWAPS = "cleared_swaps"
    FOREIGN_FUTURES = "foreign_futures"
    HOUSE = "house"


class BreakKind(StrEnum):
    BALANCE_MISMATCH = "balance_mismatch"
    UNAUTHORIZED_TRANSFER = "unauthorized_transfer"
    UNEXPECTED_INFLOW = "unexpected_inflow"
    UNEXPLAINED_BALANCE_CHANGE = "unexplained_balance_change"
    UNAPPROVED_ALLOWANCE = "unapproved_allowance"
    WALLET_CONFIG_CHANGE = "wallet_config_change"
    ASSET_FROZEN = "asset_frozen"
    SOURCE_DISAGREEMENT = "source_disagreement"
    SEGREGATION_DEFICIT = "segregation_deficit"
    RESIDUAL_INTEREST_BELOW_TARGET = "residual_interest_below_target"
    COMMINGLING = "commingling"
    CONCENTRATION_LIMIT = "concentration_limit"
    COLLATERAL_ENCUMBERED = "collateral_encumbered"
    ISSUER_FORCED_TRANSFER = "issuer_forced_transfer"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class BreakStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EntryKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    ADJUSTMENT = "adjustment"
    DISTRIBUTION = "distribution"


class AmountError(ValueError):
    """An amount string that is not an exact decimal within the asset's precision."""


def parse_amount(text: str, decimals: int) -> BaseUnits:
    """Parse a decimal string in asset units into exact base units.

    Rejects exponents, signs other than a leading '-', separators, spaces, and more
    significant fractional digits than the asset has. Trailing zeros beyond the precision are
    allowed (``1.500`` for a 2-decimals asset) because they do not change the value.
    """
    if not AMOUNT_RE.fullmatch(text):
        raise AmountError(f"{_shown(text)} is not a plain decimal amount (digits, optional '-' and one '.')")
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    whole, _, frac = digits.partition(".")
    significant = frac.rstrip("0")
    if len(significant) > decimals:
        raise AmountError(f"{_shown(text)} has {len(significant)} fractional digits; the asset has {decimals}")
    # Refuse by length before int(): Python caps int() at 4300 digits with a ValueError, and
    # nothing longer than a uint256 is ever a valid amount anyway.
    whole = whole.lstrip("0") or "0"
    if len(whole) > UINT256_DIGITS:
        raise AmountError(
            f"{_shown(text)} has {len(whole)} digits before the point; a uint256 amount has at most {UINT256_DIGITS}"
        )
    fraction = int(significant) * 10 ** (decimals - len(significant)) if significant else 0
    units = int(whole) * 10**decimals + fraction
    if units > UINT256_MAX:
        raise AmountError(f"{_shown(text)} is larger than a uint256 can hold")
    return BaseUnits(-units if negative else units)


def _shown(text: str, limit: int = 40) -> str:
    """An input quoted for a message, cut short: a 5,000-digit amount should not fill a screen."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def format_amount(units: int, decimals: int) -> str:
    """Base units to a decimal string with the asset's full decimals (``1.500000``)."""
    # By the decimal digits, not divmod: a run document formats three amounts per position.
    return format_digits(str(units), decimals)


def format_digits(digits: str, decimals: int) -> str:
    """``format_amount`` of the integer whose decimal text (``str(units)``) is ``digits``."""
    if decimals == 0:
        return digits
    sign = ""
    if digits[0] == "-":
        sign, digits = "-", digits[1:]
    if len(digits) <= decimals:
        digits = digits.rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


SHORT_ID_LENGTH = 8


def abbreviate_ids(ids: Iterable[str], length: int = SHORT_ID_LENGTH) -> dict[str, str]:
    """Each id's short form for people (like git's abbreviated hashes): its first ``length``
    characters, or more where two of ``ids`` share that prefix (the shortest prefix that tells
    each apart from the others, never shorter than ``length``)."""
    unique = sorted(set(ids))
    shown: dict[str, str] = {}
    for i, current in enumerate(unique):
        needed = length
        for j in (i - 1, i + 1):  # sorted: the longest shared prefix is with a neighbour
            if 0 <= j < len(unique):
                needed = max(needed, _shared_prefix(current, unique[j]) + 1)
        shown[current] = current[:needed]
    return shown


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class AddressError(ValueError):
    """An address that is malformed or not EIP-55 checksummed."""


@lru_cache(maxsize=1 << 17)
def eip55(address: str) -> str:
    """The EIP-55 form of ``address`` (40 hex digits in any case, 0x-prefixed or not);
    ValueError otherwise.

    Cached: a run meets each wallet several times (its read, its configuration, its
    baseline, the transfer scan), and eth-utils' version costs ~15 us a call. Bounded (about
    30 MB at most): a fleet of a million wallets is hashed again, never held here whole."""
    if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
        raise ValueError(f"{address!r} is not a 20-byte hex address (0x followed by 40 hex digits)")
    # In a few integer operations instead of a loop over 40 characters: a letter is upper case
    # where the hex digit of keccak(lowercase address) at its place is 8 or more. In ASCII a hex
    # digit is 8 or more exactly when bit 6 (a-f) or bit 3 (8, 9) is set, a letter is a byte
    # with bit 6 set, and clearing bit 5 makes it upper case.
    from eth_hash.auto import keccak  # here, not at import: the command line starts without it

    raw = address[-40:].lower().encode("ascii")
    digest = int.from_bytes(keccak(raw).hex()[:40].encode("ascii"), "big")
    text = int.from_bytes(raw, "big")
    upper = ((digest >> 6 | digest >> 3) & (text >> 6) & _LOW_BITS) << 5
    return "0x" + (text ^ upper).to_bytes(40, "big").decode("ascii")


_LOW_BITS = int.from_bytes(b"\x01" * 40, "big")  # bit 0 of each of 40 bytes


def is_checksummed(value: object) -> bool:
    """Whether ``value`` is an address in its EIP-55 form."""
    return isinstance(value, str) and _ADDRESS_RE.fullmatch(value) is not None and eip55(value) == value


def checksum_address(text: str) -> str:
    """Return ``text`` if it is an EIP-55 checksummed address; raise with the fix otherwise."""
    if not isinstance(text, str) or not _ADDRESS_RE.fullmatch(text):
        raise AddressError(f"{text!r} is not a 20-byte hex address (0x followed by 40 hex digits)")
    expected = eip55(text)
    if text != expected:
        raise AddressError(f"{text!r} is not EIP-55 checksummed; the checksummed form is {expected}")
    return expected


def pinned_number(head: int, confirmations: int) -> int:
    """The block a run reads: ``confirmations`` below head, never below genesis."""
    if head < 0 or confirmations < 0:
        raise ValueError(f"head ({head}) and confirmations ({confirmations}) must not be negative")
    return max(head - confirmations, 0)


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block a run pinned: every read of the run names this number and hash."""

    number: int
    hash: str


@dataclass(frozen=True, slots=True)
class Position:
    """Books against chain for one wallet x asset at one pinned block."""

    chain: str
    wallet: str
    asset: str
    decimals: int
    book: int
    onchain: int

    @property
    def difference(self) -> int:
        """On-chain minus book: negative means the chain holds less than the books say."""
        return self.onchain - self.book


@dataclass(frozen=True, slots=True)
class BreakKey:
    """What identifies a break across runs."""

    kind: BreakKind
    chain: str
    wallet: str
    asset: str | None
    tx_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A break as one run sees it, before it meets the ledger's history."""

    key: BreakKey
    severity: Severity
    amount: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class BreakRecord:
    """A break as the ledger holds it, with its evidence and lifecycle."""

    id: str
    key: BreakKey
    severity: Severity
    status: BreakStatus
    amount: int | None
    detail: str
    block_number: int | None
    block_hash: str | None
    first_run_id: str
    last_run_id: str
    resolved_run_id: str | None
    times_seen: int
    decimals: int | None = None  # the asset's, as the ledger last knew them
    tentative: bool = False  # found in a block short of its chain's confirmations, not yet confirmed


@dataclass(frozen=True, slots=True)
class BreakEventRecord:
    event: str
    at: str
    run_id: str | None
    amount: int | None
    block_number: int | None
    block_hash: str | None
    note: str


# ----------------------------------------------------------------------------- records the imports produce

# Column limits, in characters: the imports (reconciler.inputs) check them and the ledger's
# tables (reconciler.ledger.models) are sized from them, so that SQLite (which enforces no
# length) and PostgreSQL refuse the same files with the same messages. Memo and account name
# are unbounded in the tables and bounded by the imports.
MAX_NAME_LENGTH = 200  # chain, asset and wallet names are stored in columns of this size
MAX_ENTRY_ID_LENGTH = 200
MAX_ACCOUNT_LENGTH = 200
MAX_ACCOUNT_NAME_LENGTH = 1000
MAX_MEMO_LENGTH = 1000
MAX_WALLET_LENGTH = MAX_NAME_LENGTH  # a wallet is stored by its configured name
MAX_ASSET_LENGTH = MAX_NAME_LENGTH
MAX_DEPOSITORY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class AccountRow:
    line: int
    account: str
    seg_class: SegClass
    name: str


@dataclass(frozen=True, slots=True)
class BookRow:
    line: int
    entry_id: str
    date: date
    account: str
    wallet: str
    asset: str
    amount: int
    kind: EntryKind
    memo: str
    tx_hash: str | None


class EntryIds(Protocol):
    """Where the entry ids of a books file were seen before: earlier in the file, or in the
    ledger."""

    def seen(self, ids: Sequence[tuple[str, int]]) -> Mapping[str, int | None]:
        """``ids``: (entry_id, line) of the next lines of the file, in file order, each id once.
        Returns, for each id seen before, the line of its first appearance in the file, or None
        when it is already in the ledger; every other id is remembered at its line."""
        ...


@dataclass(frozen=True, slots=True)
class EquityImportRow:
    line: int
    business_date: date
    account: str
    cash_cents: int
    open_trade_equity_cents: int


@dataclass(frozen=True, slots=True)
class OffchainImportRow:
    line: int
    business_date: date
    seg_class: SegClass
    depository: str
    amount_cents: int


WALLET_KINDS = ("safe", "eoa", "contract")  # a wallet's declared kind (walletconfig.WalletKind's values)


class WalletRow(NamedTuple):
    """A custody wallet imported into the ledger (`wallets import`), as stored: a plain tuple,
    so that a million of them cost no more than their fields. ``kind`` is "" when not declared;
    ``approvers`` and ``allowed_spenders`` are EIP-55 addresses."""

    name: str
    chain: str
    address: str
    seg_class: str
    kind: str
    approvers: tuple[str, ...]
    threshold: int
    allowed_spenders: tuple[str, ...]
