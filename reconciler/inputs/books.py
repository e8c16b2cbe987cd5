"""The accounts and books CSV files, parsed and validated before anything touches the ledger.

Invariant: a file yields rows only when every line is valid; otherwise InputError lists each
problem as ``line N, column C: reason`` and the caller writes nothing. Checks that need the
ledger (known accounts, entry ids already stored, book balances) take their facts as
arguments. Every limit a database column has is checked here, so that SQLite (which enforces
no length) and PostgreSQL refuse the same files with the same messages.

Books stream: ``BookStream`` reads a file line by line and yields its valid rows in chunks, so
memory stays bounded however long the file is; the caller (the ledger, inside one transaction)
keeps nothing of a file that turns out to hold a problem on any line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import date

from reconciler.domain import (
    HASH_RE,
    MAX_ACCOUNT_LENGTH,
    MAX_ACCOUNT_NAME_LENGTH,
    MAX_ENTRY_ID_LENGTH,
    MAX_MEMO_LENGTH,
    AccountRow,
    AddressError,
    AmountError,
    BookRow,
    EntryIds,
    EntryKind,
    SegClass,
    checksum_address,
    parse_amount,
)
from reconciler.engine.balances import BalanceBound
from reconciler.errors import InputError
from reconciler.inputs.csvfile import _DATE_RE, AMOUNT_FIELD_LIMIT, _Problems, _records
from reconciler.inputs.settings import Settings, WalletSettings, shown_names

ACCOUNT_COLUMNS = ("account", "class", "name")
BOOK_COLUMNS = ("entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo")
BOOK_OPTIONAL = ("tx_hash",)
# The lengths of the ledger's columns (other fields: csvfile.DEFAULT_FIELD_LIMIT), checked with
# NUL and control characters on every field before a column's own rules.
ACCOUNT_LIMITS = {"account": MAX_ACCOUNT_LENGTH, "name": MAX_ACCOUNT_NAME_LENGTH}
BOOK_LIMITS = {
    "entry_id": MAX_ENTRY_ID_LENGTH,
    "account": MAX_ACCOUNT_LENGTH,
    "memo": MAX_MEMO_LENGTH,
    "amount": AMOUNT_FIELD_LIMIT,
}

# A books file of a million bad lines must not hold a million messages: the first ones are kept,
# the rest counted.
MAX_LISTED_PROBLEMS = 100


def parse_accounts_csv(text: str, source: str) -> list[AccountRow]:
    problems = _Problems()
    rows: list[AccountRow] = []
    first_line: dict[str, int] = {}
    classes = tuple(c.value for c in SegClass)
    for line, rec in _records(text, source, ACCOUNT_COLUMNS, (), problems, ACCOUNT_LIMITS, ("name",)):
        account = rec["account"]
        if not account.strip():
            problems.add(line, "account", "is empty")
            continue
        if account in first_line:
            problems.add(line, "account", f"{account!r} already appears on line {first_line[account]}")
            continue
        first_line[account] = line
        ok = True
        if rec["class"] not in classes:
            problems.add(line, "class", f"{rec['class']!r} is not one of {', '.join(classes)}")
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
        matches = [w for c in settings.chains if (w := settings.wallet_by_address(c, address)) is not None]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(w.name for w in matches)
            raise LookupError(f"address {address} is configured on several chains ({names}); name the wallet")
        raise LookupError(f"no configured wallet has address {address}")
    known = shown_names(settings.wallets) or "none configured"
    raise LookupError(f"unknown wallet {value!r}; configured wallets: {known}")


class MemoryEntryIds:
    """EntryIds for a file parsed whole: a dict of the file's ids and the ledger's as a set."""

    def __init__(self, stored: Set[str] = frozenset()) -> None:
        self._first: dict[str, int] = {}
        self._stored = stored

    def seen(self, ids: Sequence[tuple[str, int]]) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for entry_id, line in ids:
            if entry_id in self._first:
                found[entry_id] = self._first[entry_id]
            elif entry_id in self._stored:
                found[entry_id] = None
            else:
                self._first[entry_id] = line
        return found


BOOKS_CHUNK_ROWS = 10_000


@dataclass(slots=True)
class _Line:
    """A data line checked except for its entry id's uniqueness, which is asked per chunk."""

    line: int
    entry_id: str | None  # None: the id itself is bad, and its problem is first in `problems`
    problems: list[tuple[str, str]]
    row: BookRow | None  # every column but the entry id's uniqueness is valid


class _Chunk:
    """The lines of the chunk being read and the line-level problems among them, in file
    order; one object for the whole file (the record reader holds it), emptied per chunk."""

    def __init__(self) -> None:
        self.items: list[_Line | tuple[int, str | None, str]] = []
        self.first: dict[str, int] = {}  # entry id -> its first line in the chunk
        self.lines = 0

    def add(self, line: int, column: str | None, reason: str) -> None:
        self.items.append((line, column, reason))

    def take(self) -> tuple[list[_Line | tuple[int, str | None, str]], dict[str, int]]:
        items, first = self.items, self.first
        self.items, self.first, self.lines = [], {}, 0
        return items, first


class BookStream:
    """A books file read line by line.

    ``chunks()`` yields the valid rows of each ``chunk_rows`` lines, in file order, while
    ``problems`` collects what is wrong with every line, in the order and words a whole-file
    parse gives. A file is good only once ``chunks()`` is exhausted with no problem: a caller
    that writes chunks as they come must undo them all otherwise (``check()`` raises).
    """

    def __init__(
        self,
        lines: str | Iterable[str],
        source: str,
        settings: Settings,
        known_accounts: Set[str],
        entry_ids: EntryIds,
        chunk_rows: int = BOOKS_CHUNK_ROWS,
    ) -> None:
        self._lines = lines
        self.source = source
        self._settings = settings
        self._known_accounts = known_accounts
        self._entry_ids = entry_ids
        self._chunk_rows = chunk_rows
        self.problems = _Problems(MAX_LISTED_PROBLEMS)

    @property
    def ok(self) -> bool:
        return self.problems.count == 0

    def check(self) -> None:
        if not self.ok:
            raise self.problems.error(self.source)

    def chunks(self) -> Iterator[list[BookRow]]:
        chunk = _Chunk()
        for line, rec in _records(self._lines, self.source, BOOK_COLUMNS, BOOK_OPTIONAL, chunk, BOOK_LIMITS, ("memo",)):
            checked = self._check(line, rec)
            if checked.entry_id is not None:
                chunk.first.setdefault(checked.entry_id, line)
            chunk.items.append(checked)
            chunk.lines += 1
            if chunk.lines >= self._chunk_rows:
                yield self._close(chunk)
        yield self._close(chunk)

    def _close(self, chunk: _Chunk) -> list[BookRow]:
        items, first = chunk.take()
        unique = list(first.items())
        found = self._entry_ids.seen(unique) if unique else {}
        rows: list[BookRow] = []
        for item in items:
            if isinstance(item, tuple):
                self.problems.add(*item)
                continue
            if item.entry_id is not None:
                reason: str | None = None
                if item.entry_id in found:
                    earlier = found[item.entry_id]
                    reason = (
                        f"{item.entry_id!r} is already in the ledger; entry ids are unique forever"
                        if earlier is None
                        else f"{item.entry_id!r} already appears on line {earlier}"
                    )
                elif first[item.entry_id] != item.line:
                    reason = f"{item.entry_id!r} already appears on line {first[item.entry_id]}"
                if reason is not None:
                    item.problems.insert(0, ("entry_id", reason))
            for column, why in item.problems:
                self.problems.add(item.line, column, why)
            if not item.problems and item.row is not None:
                rows.append(item.row)
        return rows

    def _check(self, line: int, rec: dict[str, str]) -> _Line:
        settings = self._settings
        problems: list[tuple[str, str]] = []

        def bad(column: str, reason: str) -> None:
            problems.append((column, reason))

        entry_id: str | None = rec["entry_id"]
        if not rec["entry_id"].strip():
            bad("entry_id", "is empty")
            entry_id = None

        entry_date: date | None = None
        if not _DATE_RE.fullmatch(rec["date"]):
            bad("date", f"{rec['date']!r} is not an ISO date like 2026-11-24")
        else:
            try:
                entry_date = date.fromisoformat(rec["date"])
            except ValueError as exc:
                bad("date", f"{rec['date']!r}: {exc}")

        if rec["account"] not in self._known_accounts:
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
        if rec["kind"] not in _KINDS:
            bad("kind", f"{rec['kind']!r} is not one of {', '.join(_KINDS)}")
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

        tx_hash = rec.get("tx_hash") or None
        if tx_hash is not None:
            tx_hash = tx_hash.lower()
            if not HASH_RE.fullmatch(tx_hash):
                bad("tx_hash", f"{rec['tx_hash']!r} is not a 0x-prefixed 32-byte hash")

        row: BookRow | None = None
        if not problems and entry_id is not None and entry_date and wallet and asset and kind and amount is not None:
            row = BookRow(
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
        return _Line(line, entry_id, problems, row)


_KINDS = tuple(k.value for k in EntryKind)


def parse_books_csv(
    text: str,
    source: str,
    settings: Settings,
    known_accounts: Set[str],
    stored_entry_ids: Set[str] = frozenset(),
) -> list[BookRow]:
    """A whole books file at once (small files, tests and the demo); `books import` streams."""
    stream = BookStream(text, source, settings, known_accounts, MemoryEntryIds(stored_entry_ids))
    rows = [row for chunk in stream.chunks() for row in chunk]
    stream.check()
    return rows


def book_balance_problems(existing: Mapping[tuple[str, str], int], rows: Iterable[BookRow]) -> list[str]:
    """Problems for each wallet x asset whose book balance would leave ±(2^256 - 1);
    ``existing`` holds the ledger's balances for (at least) the pairs the file touches."""
    bound = BalanceBound(existing)
    bound.add(rows)
    return bound.problems()
