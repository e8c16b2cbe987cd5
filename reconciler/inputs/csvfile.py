"""What every CSV import shares: reading a file's records with its header checked, collecting
problems as ``line N, column C: reason``, and reading a file's bytes once (SHA-256 and UTF-8
checked) or line by line.

Invariant: a problem is never lost and never raised line by line: each parser collects them
all, then raises one InputError naming every line (``_Problems``), so the caller writes
nothing of a file with any bad line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from reconciler.errors import InputError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ProblemSink(Protocol):
    """Where the record reader puts a line's problem: ``_Problems``, or a books chunk that
    keeps it in file order among its lines."""

    def add(self, line: int, column: str | None, reason: str) -> None: ...


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
    return f"is {len(value):,} characters long; at most {limit} are allowed"


# Every field of every import is checked before its column's own rules: at most its column's
# length (DEFAULT_FIELD_LIMIT where the column has no tighter one), no NUL (PostgreSQL cannot
# store one, and SQLite would keep a value that no longer matches what a person sees), and no
# other C0 control character or DEL — except a tab in free-text columns (memo, name): a control
# character in an identifier or an amount is never meant, and can disguise one value as another.
DEFAULT_FIELD_LIMIT = 1_000
# Amounts are described, shortened, by their own parsers (how many digits, at most how many).
AMOUNT_FIELD_LIMIT = 100_000
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# csv's own default (131,072 characters) would end the reading of a file at a longer field with
# an error that names no column; our per-column limits are checked on the field instead.
_CSV_FIELD_CEILING = 2**31 - 1
_CONTROL_NAMES = {"\n": "a line break (LF)", "\r": "a carriage return (CR)", "\t": "a tab", "\x1b": "ESC"}


def field_problem(value: str, limit: int = DEFAULT_FIELD_LIMIT, free_text: bool = False) -> str | None:
    """Why a field's text cannot be imported, whatever its column means (None: it can)."""
    if reason := _too_long(value, limit):
        return reason
    if "\x00" in value:
        return "contains a NUL character"
    found = (_CONTROL_IN_TEXT_RE if free_text else _CONTROL_RE).search(value)
    if found is not None:
        char = found.group()
        name = _CONTROL_NAMES.get(char, f"U+{ord(char):04X}")
        allowed = "only tabs are allowed among control characters" if free_text else "no control character is allowed"
        return f"contains a control character ({name}, at character {found.start() + 1}); {allowed}"
    return None


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
    problems: ProblemSink,
    limits: Mapping[str, int] | None = None,
    free_text: Collection[str] = (),
) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data line's number and fields by column name, the header checked first. ``text`` is
    the whole file or its lines with their endings (as read with ``newline=""``). A line with a
    field that ``field_problem`` refuses (``limits``: per column, else DEFAULT_FIELD_LIMIT;
    ``free_text``: the columns where a tab is allowed) is reported and not yielded."""
    if isinstance(text, str):
        lines: Iterable[str] = io.StringIO(text.removeprefix("\ufeff"), newline="")
    else:
        lines = text
    previous = csv.field_size_limit(_CSV_FIELD_CEILING)
    try:
        yield from _checked_records(lines, source, required, optional, problems, limits or {}, free_text)
    finally:
        csv.field_size_limit(previous)


def _checked_records(
    lines: Iterable[str],
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    problems: ProblemSink,
    limits: Mapping[str, int],
    free_text: Collection[str],
) -> Iterator[tuple[int, dict[str, str]]]:
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
    for n, column in enumerate(header, start=1):
        if "\x00" in column:
            raise InputError(source, [f"line 1, column {n} of the header: contains a NUL character"])
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
            record = dict(zip(header, fields, strict=True))
            refused = False
            for column, value in record.items():
                limit = limits.get(column, DEFAULT_FIELD_LIMIT)
                if reason := field_problem(value, limit, column in free_text):
                    problems.add(line, column, reason)
                    refused = True
            if not refused:
                yield line, record
    except csv.Error as exc:
        problems.add(reader.line_num, None, f"malformed CSV: {exc}")


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
