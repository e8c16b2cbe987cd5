"""CSV imports parsed and validated before anything touches the ledger.

Invariant: a file yields rows only when every line is valid; otherwise InputError lists each
problem as ``line N, column C: reason`` and the caller writes nothing. Checks that need the
ledger (known accounts, entry ids already stored, book balances) take their facts as
arguments. Every limit a database column has is checked here, so that SQLite (which enforces
no length) and PostgreSQL refuse the same files with the same messages.

Books stream: ``iter_books`` reads a file line by line and yields its valid rows in chunks, so
memory stays bounded however long the file is; the caller (the ledger, inside one transaction)
keeps nothing of a file that turns out to hold a problem on any line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from reconciler.config import Settings, WalletSettings
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

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

ACCOUNT_COLUMNS = ("account", "class", "name")
BOOK_COLUMNS = ("entry_id", "date", "account", "wallet", "asset", "amount", "kind", "memo")
BOOK_OPTIONAL = ("tx_hash",)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# A books file of a million bad lines must not hold a million messages: the first ones are kept,
# the rest counted.
MAX_LISTED_PROBLEMS = 100


class _Problems:
    def __init__(self, limit: int | None = None) -> None:
        self.items: list[str] = []
        self.count = 0
        self._limit = limit

    def add(self, line: int, column: str | None, reason: str) -> None:
        self.count += 1
        if self._limit is None or len(self.items) < self._limit:
            where = f"line {line}" + (f", column {column}" if column else "")
            self.items.append(f"{where}: {reason}")

    def error(self, source: str) -> InputError:
        """The InputError listing the problems kept, counting those that were not."""
        error = InputError(source, self.items)
        if self.count > len(self.items):
            lines = str(error).split("\n")
            if lines[-1].startswith("  … and "):
                lines.pop()
            lines.append(f"  … and {self.count - (len(lines) - 1)} more problem(s)")
            error.args = ("\n".join(lines),)
        return error


def _too_long(value: str, limit: int) -> str | None:
    if len(value) <= limit:
        return None
    return f"is {len(value)} characters long; at most {limit} are allowed"


def _delimiter_hint(header: Sequence[str], required: tuple[str, ...]) -> str | None:
    """A header that splits into the required columns on ';' or a tab: the file was saved with
    another delimiter (a spreadsheet in a locale whose decimal separator is a comma)."""
    line = ",".join(header)
    for delimiter in (";", "\t"):
        if delimiter in line:
            fields = next(csv.reader([line], delimiter=delimiter), [])
            if all(column in fields for column in required):
                return (
                    f"line 1: columns are separated by {delimiter!r}, not ',' — wrong delimiter? "
                    "save the file as comma-separated CSV"
                )
    return None


def _records(
    text: str | Iterable[str],
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    problems: _Problems | _Chunk,
) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data line's number and fields by column name, the header checked first. ``text`` is
    the whole file or its lines with their endings (as read with ``newline=""``)."""
    if isinstance(text, str):
        lines: Iterable[str] = io.StringIO(text.removeprefix("\ufeff"), newline="")
    else:
        lines = text
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, [f"line 1: the file is empty; expected the header {','.join(required)}"]) from None
    except csv.Error as exc:
        raise InputError(source, [f"line 1: {exc}"]) from exc
    missing = [c for c in required if c not in header]
    if missing and (hint := _delimiter_hint(header, required)):
        raise InputError(source, [hint])
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
        for line, rec in _records(self._lines, self.source, BOOK_COLUMNS, BOOK_OPTIONAL, chunk):
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
        elif reason := _too_long(rec["entry_id"], MAX_ENTRY_ID_LENGTH):
            bad("entry_id", reason)
            entry_id = None

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
        elif rec["account"] not in self._known_accounts:
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

        if reason := _too_long(rec["memo"], MAX_MEMO_LENGTH):
            bad("memo", reason)

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


# ----------------------------------------------------------------------------- files


_READ_SIZE = 1 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in one pass that also checks they are UTF-8 (the
    error names the first bad byte), without holding the file in memory."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes fed to the decoder so far
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(_READ_SIZE)
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    raise InputError(str(path), [f"not UTF-8 text (byte {offset - pending + exc.start})"]) from exc
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
    except OSError as exc:
        raise InputError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    return digest.hexdigest()


class _HashingReader(io.RawIOBase):
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        view[: len(data)] = data
        self.digest.update(data)
        return len(data)


def file_lines(path: Path, sha256: str) -> Iterator[str]:
    """The lines of a UTF-8 file with their endings, as csv reads them (a byte-order mark
    dropped), read as they are consumed. Once all are read, the bytes must still have the
    SHA-256 the import was checked and will be recorded with, or nothing may be kept."""
    changed = InputError(str(path), ["the file changed while it was being imported; import it again"])
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    with fh:
        hashing = _HashingReader(fh)
        text = io.TextIOWrapper(io.BufferedReader(hashing, _READ_SIZE), encoding="utf-8-sig", newline="")
        try:
            yield from text
        except UnicodeDecodeError as exc:  # it was UTF-8 when its digest was taken
            raise changed from exc
        except OSError as exc:
            raise InputError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
        if hashing.digest.hexdigest() != sha256:
            raise changed
