"""CSV imports parsed and validated before anything touches the ledger.

Invariant: a file yields rows only when every line is valid; otherwise InputError lists each
problem as ``line N, column C: reason`` and the caller writes nothing. Checks that need the
ledger (known accounts, entry ids already stored, book balances) take their facts as
arguments. Every limit a database column has is checked here, so that SQLite (which enforces
no length) and PostgreSQL refuse the same files with the same messages.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import date

from reconciler.config import MAX_NAME_LENGTH, Settings, WalletSettings
from reconciler.domain import (
    HASH_RE,
    UINT256_MAX,
    AddressError,
    AmountError,
    EntryKind,
    SegClass,
    checksum_address,
    parse_amount,
)
from reconciler.errors import InputError

ACCOUNT_COLUMNS = ("account", "class", "name")
BOOK_COLUMNS = ("entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo")
BOOK_OPTIONAL = ("tx_hash",)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# Column limits, in characters; reconciler.ledger.models sizes its columns from these. Memo and
# account name are unbounded there and bounded here, so both engines refuse the same files.
MAX_ENTRY_ID_LENGTH = 200
MAX_ACCOUNT_LENGTH = 200
MAX_ACCOUNT_NAME_LENGTH = 1000
MAX_MEMO_LENGTH = 1000
MAX_WALLET_LENGTH = MAX_NAME_LENGTH  # a wallet is stored by its configured name
MAX_ASSET_LENGTH = MAX_NAME_LENGTH


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


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, line: int, column: str | None, reason: str) -> None:
        where = f"line {line}" + (f", column {column}" if column else "")
        self.items.append(f"{where}: {reason}")


def _too_long(value: str, limit: int) -> str | None:
    if len(value) <= limit:
        return None
    return f"is {len(value)} characters long; at most {limit} are allowed"


def _records(
    text: str,
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    problems: _Problems,
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, [f"line 1: the file is empty; expected the header {','.join(required)}"]) from None
    except csv.Error as exc:
        raise InputError(source, [f"line 1: {exc}"]) from exc
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    dupes = sorted({c for c in header if header.count(c) > 1})
    header_problems = []
    if missing:
        header_problems.append(f"line 1: missing column(s) {', '.join(missing)}")
    if unknown:
        allowed = ", ".join(required + optional)
        header_problems.append(f"line 1: unknown column(s) {', '.join(unknown)}; the columns are {allowed}")
    if dupes:
        header_problems.append(f"line 1: column(s) {', '.join(dupes)} appear twice")
    if header_problems:
        raise InputError(source, header_problems)
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""] * len(fields) and len(fields) <= 1:
                continue
            if len(fields) != len(header):
                problems.add(line, None, f"expected {len(header)} fields, found {len(fields)}")
                continue
            yield line, dict(zip(header, fields, strict=True))
    except csv.Error as exc:
        problems.add(reader.line_num, None, f"malformed CSV: {exc}")


def parse_accounts_csv(text: str, source: str) -> list[AccountRow]:
    problems = _Problems()
    rows: list[AccountRow] = []
    first_line: dict[str, int] = {}
    classes = tuple(c.value for c in SegClass)
    for line, rec in _records(text, source, ACCOUNT_COLUMNS, (), problems):
        account = rec["account"]
        if not account.strip():
            problems.add(line, "account", "is empty")
            continue
        if reason := _too_long(account, MAX_ACCOUNT_LENGTH):
            problems.add(line, "account", reason)
            continue
        if account in first_line:
            problems.add(line, "account", f"{account!r} already appears on line {first_line[account]}")
            continue
        first_line[account] = line
        ok = True
        if rec["class"] not in classes:
            problems.add(line, "class", f"{rec['class']!r} is not one of {', '.join(classes)}")
            ok = False
        if reason := _too_long(rec["name"], MAX_ACCOUNT_NAME_LENGTH):
            problems.add(line, "name", reason)
            ok = False
        if ok:
            rows.append(AccountRow(line, account, SegClass(rec["class"]), rec["name"]))
    if problems.items:
        raise InputError(source, problems.items)
    return rows


def _resolve_wallet(settings: Settings, value: str) -> WalletSettings:
    """A wallet is named as in the configuration, or by its checksummed address."""
    if value in settings.wallets:
        return settings.wallets[value]
    if value.lower().startswith("0x"):
        address = checksum_address(value)  # raises AddressError with the checksummed form
        matches = [w for w in settings.wallets.values() if w.address == address]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(w.name for w in matches)
            raise LookupError(f"address {address} is configured on several chains ({names}); name the wallet")
        raise LookupError(f"no configured wallet has address {address}")
    known = ", ".join(settings.wallets) or "none configured"
    raise LookupError(f"unknown wallet {value!r}; configured wallets: {known}")


def parse_books_csv(
    text: str,
    source: str,
    settings: Settings,
    known_accounts: Set[str],
    stored_entry_ids: Set[str] = frozenset(),
) -> list[BookRow]:
    problems = _Problems()
    rows: list[BookRow] = []
    first_line: dict[str, int] = {}
    kinds = tuple(k.value for k in EntryKind)
    for line, rec in _records(text, source, BOOK_COLUMNS, BOOK_OPTIONAL, problems):
        ok = True

        def bad(column: str, reason: str, line: int = line) -> None:
            nonlocal ok
            ok = False
            problems.add(line, column, reason)

        entry_id = rec["entry_id"]
        if not entry_id.strip():
            bad("entry_id", "is empty")
        elif reason := _too_long(entry_id, MAX_ENTRY_ID_LENGTH):
            bad("entry_id", reason)
        elif entry_id in first_line:
            bad("entry_id", f"{entry_id!r} already appears on line {first_line[entry_id]}")
        elif entry_id in stored_entry_ids:
            bad("entry_id", f"{entry_id!r} is already in the ledger; entry ids are unique forever")
        else:
            first_line[entry_id] = line

        entry_date: date | None = None
        if not _DATE_RE.fullmatch(rec["date"]):
            bad("date", f"{rec['date']!r} is not an ISO date like 2026-11-24")
        else:
            try:
                entry_date = date.fromisoformat(rec["date"])
            except ValueError as exc:
                bad("date", f"{rec['date']!r}: {exc}")

        if reason := _too_long(rec["account"], MAX_ACCOUNT_LENGTH):
            bad("account", reason)
        elif rec["account"] not in known_accounts:
            bad("account", f"unknown account {rec['account']!r}; import it first with `accounts import`")

        wallet: WalletSettings | None = None
        try:
            wallet = _resolve_wallet(settings, rec["wallet"])
        except (AddressError, LookupError) as exc:
            bad("wallet", str(exc))

        asset = settings.assets.get(rec["asset"])
        if asset is None:
            known = ", ".join(settings.assets) or "none configured"
            bad("asset", f"unknown asset {rec['asset']!r}; configured assets: {known}")
        elif wallet is not None and asset.chain != wallet.chain:
            bad("asset", f"asset {asset.name} is on chain {asset.chain}, wallet {wallet.name} on {wallet.chain}")

        kind: EntryKind | None = None
        if rec["kind"] not in kinds:
            bad("kind", f"{rec['kind']!r} is not one of {', '.join(kinds)}")
        else:
            kind = EntryKind(rec["kind"])

        amount: int | None = None
        if asset is not None:
            try:
                amount = parse_amount(rec["amount"], asset.decimals)
            except AmountError as exc:
                bad("amount", str(exc))
        if amount is not None and kind is EntryKind.DEPOSIT and amount <= 0:
            bad("amount", f"a deposit is positive, not {rec['amount']}")
        if amount is not None and kind is EntryKind.WITHDRAWAL and amount >= 0:
            bad("amount", f"a withdrawal is negative, not {rec['amount']}")

        if reason := _too_long(rec["memo"], MAX_MEMO_LENGTH):
            bad("memo", reason)

        tx_hash = rec.get("tx_hash") or None
        if tx_hash is not None:
            tx_hash = tx_hash.lower()
            if not HASH_RE.fullmatch(tx_hash):
                bad("tx_hash", f"{rec['tx_hash']!r} is not a 0x-prefixed 32-byte hash")

        if ok and entry_date and wallet and asset and kind and amount is not None:
            rows.append(
                BookRow(
                    line=line,
                    entry_id=entry_id,
                    date=entry_date,
                    account=rec["account"],
                    wallet=wallet.name,
                    asset=asset.name,
                    amount=amount,
                    kind=kind,
                    memo=rec["memo"],
                    tx_hash=tx_hash,
                )
            )
    if problems.items:
        raise InputError(source, problems.items)
    return rows


def book_balance_problems(existing: Mapping[tuple[str, str], int], rows: Sequence[BookRow]) -> list[str]:
    """Problems for each wallet x asset whose book balance would leave ±(2^256 - 1).

    ``existing`` holds the ledger's balances for (at least) the pairs the file touches. The
    balance is the sum of all entries, so only the total after the file counts; the line named
    is the one from which the running total (ledger first, then the file in order) stays out of
    range. No custody wallet can hold more than a uint256, and the ledger stores balances as
    NUMERIC(78, 0): such a file would otherwise import and break every later run.
    """
    totals: dict[tuple[str, str], int] = {}
    crossed: dict[tuple[str, str], BookRow] = {}
    for row in rows:
        pair = (row.wallet, row.asset)
        before = totals.get(pair, existing.get(pair, 0))
        after = before + row.amount
        totals[pair] = after
        if abs(after) <= UINT256_MAX:
            crossed.pop(pair, None)
        elif abs(before) <= UINT256_MAX or pair not in crossed:
            crossed[pair] = row
    problems: list[str] = []
    for pair, row in sorted(crossed.items(), key=lambda item: item[1].line):
        wallet, asset = pair
        stored = existing.get(pair, 0)
        side = "above 2^256 - 1" if totals[pair] > 0 else "below -(2^256 - 1)"
        problems.append(
            f"line {row.line}, column amount: the book balance of wallet {wallet} x asset {asset} would be "
            f"{totals[pair]} base units, {side}, which no token balance can reach "
            f"(ledger before this file: {stored}; this file adds {totals[pair] - stored}); "
            "check the amounts and the asset's decimals"
        )
    return problems
