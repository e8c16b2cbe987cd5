"""The `--json` documents as text: indented for people, one line per row for long lists.

Invariant: ``json.loads(dumps(doc)) == doc`` for every document; only whitespace differs from
``json.dumps(doc, indent=2)``. A list of objects (positions, breaks, transfers) prints one object
per line, encoded by the C encoder in one call per row: ``indent=2`` makes Python fall back to
its pure-Python encoder, which took 1.2 s for a 40,000-position run document.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Generic, TypeVar, overload

T = TypeVar("T")

_row = json.JSONEncoder(separators=(", ", ": ")).encode
_scalar = json.JSONEncoder().encode
quoted = json.encoder.encode_basestring_ascii  # a string as _row and _scalar print it


class Rows(Sequence[dict[str, Any]], Generic[T]):
    """A document's long list of objects, made one at a time as it is read or printed: a
    100,000-wallet run has 400,000 positions, and holding them all as dicts would cost more
    than the rest of the run together."""

    def __init__(
        self,
        items: Sequence[T],
        make: Callable[[T], dict[str, Any]],
        texts: Callable[[Sequence[T]], Iterator[str]] | None = None,
        blocks: Callable[[Sequence[T]], Iterator[bytes] | None] | None = None,
    ) -> None:
        self._items = items
        self._make = make
        # The rows as this module prints them (``_row(make(item))`` each), made directly: for
        # the longest lists (a run's positions), without a dict per row.
        self._texts = texts
        # The same rows already made (a run's positions, by whoever read them), as blocks of
        # whole lines of ASCII, each row one line ending "\n"; None when they were not made.
        self._blocks = blocks

    def texts(self) -> Iterator[str]:
        return self._texts(self._items) if self._texts is not None else map(_row, self)

    def blocks(self) -> Iterator[bytes] | None:
        return self._blocks(self._items) if self._blocks is not None else None

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._make, self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def dumps(doc: Any) -> str:
    parts: list[str] = []
    _write(doc, 0, parts.append, lambda block: parts.append(block.decode("ascii")))
    return "".join(parts)


def dump(doc: Any, out: IO[str], flush_every: int = 1 << 16) -> None:
    """``dumps`` written to ``out`` as it is made, so a long document is never one string.
    Rows already made as ASCII (``Rows.blocks``) go straight to the bytes under ``out``, when
    it has them in an encoding that writes ASCII as itself."""
    parts: list[str] = []
    size = 0
    binary: IO[bytes] | None = getattr(out, "buffer", None)
    encoding = codecs.lookup(getattr(out, "encoding", None) or "ascii").name
    if encoding not in ("utf-8", "ascii", "latin-1", "iso8859-1") or os.linesep != "\n":
        binary = None

    def emit(part: str) -> None:
        nonlocal size
        parts.append(part)
        size += len(part)
        if size >= flush_every:
            out.write("".join(parts))
            parts.clear()
            size = 0

    def emit_block(block: bytes) -> None:
        nonlocal size
        if binary is None:
            emit(block.decode("ascii"))
            return
        out.write("".join(parts))
        parts.clear()
        size = 0
        out.flush()
        binary.write(block)

    _write(doc, 0, emit, emit_block)
    out.write("".join(parts))


def _write(value: Any, level: int, emit: Callable[[str], None], emit_block: Callable[[bytes], None]) -> None:
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        emit("{\n")
        last = len(value) - 1
        for i, (key, item) in enumerate(value.items()):
            emit(f"{pad}{_scalar(str(key))}: ")
            _write(item, level + 1, emit, emit_block)
            emit(",\n" if i < last else "\n")
        emit("  " * level + "}")
    elif isinstance(value, Rows):
        if not value:
            emit("[]")
            return
        emit("[\n")
        sep = ""
        blocks = value.blocks()
        if blocks is not None:  # indented and separated a block at a time
            glue, start = (",\n" + pad).encode(), pad.encode()
            for block in blocks:
                emit_block(sep.encode() + start + block[:-1].replace(b"\n", glue))
                sep = ",\n"
        else:
            for row in value.texts():
                emit(sep + pad + row)
                sep = ",\n"
        emit("\n" + "  " * level + "]")
    elif isinstance(value, list) and value:
        if all(isinstance(item, dict) for item in value):
            emit("[\n" + pad + f",\n{pad}".join(map(_row, value)) + "\n" + "  " * level + "]")
            return
        emit("[\n")
        last = len(value) - 1
        for i, item in enumerate(value):
            emit(pad)
            _write(item, level + 1, emit, emit_block)
            emit(",\n" if i < last else "\n")
        emit("  " * level + "]")
    else:
        emit(_scalar(value))
