"""A chain's positions kept on disk while a run goes on, instead of in memory.

A run of 1,000,000 wallets x 4 assets finds 4,000,000 positions; held as objects until the run
is written they were most of its memory. Its units append theirs here as they finish (in
order), and whatever needs them afterwards — the flow check, the ledger's snapshots, the
``--json`` document, the text summary — reads them back, one at a time, as often as it needs.

Invariants: the positions read back are those appended, in the order appended, with their
exact amounts; the file is an anonymous temporary file (gone when the object is collected or
the process ends, never named on disk); names hold no tab or newline (configuration names are
``[A-Za-z0-9][A-Za-z0-9_.-]*``), so one position is one line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence, ValuesView
from typing import Any, NamedTuple, overload

from reconciler.app.jsonout import quoted
from reconciler.domain import Position, format_digits
from reconciler.walletconfig import WalletConfig

_READ = 1 << 20  # bytes read back at a time


class _ReadBack(Sequence[Position]):
    """Positions read back in order; by index only by reading from the start (for the rare
    caller that indexes)."""

    @overload
    def __getitem__(self, index: int) -> Position: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Position]: ...
    def __getitem__(self, index: int | slice) -> Position | Sequence[Position]:
        count = len(self)
        if isinstance(index, slice):
            return list(itertools.islice(self, *index.indices(count)))
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(index)
        return next(itertools.islice(self, index, None))


def _read_lines(fd: int, size: int) -> Iterator[str]:
    """The lines of the first ``size`` bytes of file ``fd``, read a block at a time."""
    offset, rest = 0, b""
    while offset < size:
        block = os.pread(fd, min(_READ, size - offset), offset)
        offset += len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from (line.decode() for line in lines)


def document_text(chain: str, wallet: str, asset: str, decimals: int, book: str, onchain: str) -> str:
    """A position as the `--json` run document prints it (one line), from its chain's and
    asset's names already quoted as JSON strings and its amounts' decimal text."""
    difference = str(int(onchain) - int(book))
    return (
        f'{{"chain": {chain}, "wallet": {quoted(wallet)}, "asset": {asset}, '
        f'"book": "{book}", "book_display": "{format_digits(book, decimals)}", '
        f'"onchain": "{onchain}", "onchain_display": "{format_digits(onchain, decimals)}", '
        f'"difference": "{difference}", "difference_display": "{format_digits(difference, decimals)}"}}'
    )


# A position as text: wallet, asset, decimals, book and on-chain amounts (decimal text).
PositionText = tuple[str, str, int, str, str]


def position_texts(positions: Sequence[Position]) -> list[PositionText]:
    """Each position's fields as text, made once for every form a chunk is kept in."""
    return [(p.wallet, p.asset, p.decimals, str(p.book), str(p.onchain)) for p in positions]


def _document_lines(chain_name: str, rows: Sequence[PositionText]) -> str:
    """``document_text`` of each position, a line each: made as ``document_text`` makes them,
    each name quoted once and an amount the chain and the books agree on formatted once (most
    of a fleet's)."""
    if not rows:
        return ""
    chain = quoted(chain_name)
    assets = {r[1]: quoted(r[1]) for r in rows}
    zero = {r[2]: format_digits("0", r[2]) for r in rows}
    lines = []
    last, name = "", ""
    for wallet, asset, decimals, book, onchain in rows:
        if wallet != last:
            last, name = wallet, quoted(wallet)
        if book == onchain:
            shown = format_digits(book, decimals)
            lines.append(
                f'{{"chain": {chain}, "wallet": {name}, "asset": {assets[asset]}, '
                f'"book": "{book}", "book_display": "{shown}", '
                f'"onchain": "{onchain}", "onchain_display": "{shown}", '
                f'"difference": "0", "difference_display": "{zero[decimals]}"}}\n'
            )
        else:
            lines.append(document_text(chain, wallet, assets[asset], decimals, book, onchain) + "\n")
    return "".join(lines)


class RenderedPositions(_ReadBack):
    """Positions as a spill keeps them (their lines, the lines of the two digests and, when
    the run prints them, their document texts), made where they were judged: a unit worker
    process sends these, and the run appends them without making a Position again."""

    def __init__(  # noqa: PLR0913 - the parts of a rendered chunk
        self, chain: str, decimals: Mapping[str, int], data: bytes, keys: bytes, values: bytes, count: int,
        texts: bytes | None = None,
    ) -> None:  # fmt: skip
        self.chain, self.decimals = chain, dict(decimals)
        self.data, self.keys, self.values, self.positions, self.texts = data, keys, values, count, texts

    @classmethod
    def of(
        cls, positions: Sequence[Position], texts: bool = False, rows: Sequence[PositionText] | None = None
    ) -> RenderedPositions:
        """``positions`` rendered (from ``rows``, their ``position_texts``, when made
        already); with ``texts``, their document texts too."""
        if not positions:
            return cls("", {}, b"", b"", b"", 0, b"" if texts else None)
        chain = positions[0].chain
        rows = position_texts(positions) if rows is None else rows
        text = "".join(f"{w}\t{a}\t{b}\t{o}\n" for w, a, _, b, o in rows)
        keys = "\n".join(f"{w}\t{a}" for w, a, _, _, _ in rows)
        values = "\n".join(f"{w}\t{a}\t{d}\t{b}\t{o}" for w, a, d, b, o in rows)
        decimals = {a: d for _, a, d, _, _ in rows}
        document = _document_lines(chain, rows).encode() if texts else None
        return cls(chain, decimals, text.encode(), keys.encode(), values.encode(), len(rows), document)

    def __len__(self) -> int:
        return self.positions

    def __iter__(self) -> Iterator[Position]:
        for line in self.data.decode().splitlines():
            wallet, asset, book, onchain = line.split("\t")
            yield Position(self.chain, wallet, asset, self.decimals[asset], int(book), int(onchain))


class SpilledPositions(_ReadBack):
    """One chain's positions, appended unit by unit and read back in order; with ``texts``,
    their `--json` document texts kept beside them as they are appended (made by whoever
    judged them: a unit worker, in parallel, rather than the run when it prints)."""

    def __init__(self, chain: str, decimals: Mapping[str, int], texts: bool = False) -> None:
        self.chain = chain
        self._decimals = dict(decimals)
        self._file = tempfile.TemporaryFile()
        self._texts = tempfile.TemporaryFile() if texts else None
        self._texts_size = 0
        # The same positions staged by unit workers for the ledger to copy in one statement
        # (reconciler.ledger.staging.Staged), when they were.
        self.staged: Any = None
        self._size = 0
        self._count = 0
        self._keys = hashlib.sha256()
        self._values = hashlib.sha256()
        self._lock = threading.Lock()

    def extend(self, positions: Sequence[Position]) -> None:
        """Append ``positions`` (after those appended before), and fold them into the
        digests the ledger's snapshots are keyed by (reconciler.ledger.snapshots)."""
        texts = self._texts is not None
        rendered = positions if isinstance(positions, RenderedPositions) else RenderedPositions.of(positions, texts)
        if not rendered.positions:
            return
        if self._texts is not None and rendered.texts is None:  # rendered by a worker that did not make them
            rendered.texts = _document_lines(self.chain, position_texts(list(rendered))).encode()
        with self._lock:
            sep = b"\n" if self._count else b""
            self._keys.update(sep + rendered.keys)
            self._values.update(sep + rendered.values)
            os.pwrite(self._file.fileno(), rendered.data, self._size)
            self._size += len(rendered.data)
            self._count += rendered.positions
            if self._texts is not None and rendered.texts is not None:
                os.pwrite(self._texts.fileno(), rendered.texts, self._texts_size)
                self._texts_size += len(rendered.texts)

    def digests(self) -> tuple[str, str]:
        """sha256 of the positions' "\n"-joined ``wallet\tasset`` lines, and of their
        ``wallet\tasset\tdecimals\tbook\tonchain`` lines: made as they were appended."""
        with self._lock:
            return self._keys.hexdigest(), self._values.hexdigest()

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Position]:
        chain, decimals = self.chain, self._decimals
        for line in self._lines():
            wallet, asset, book, onchain = line.split("\t")
            yield Position(chain, wallet, asset, decimals[asset], int(book), int(onchain))

    def document_texts(self) -> Iterator[str] | None:
        """The positions' `--json` document texts, in order, when they were kept (else None)."""
        if self._texts is None:
            return None
        return _read_lines(self._texts.fileno(), self._texts_size)

    def has_document_texts(self) -> bool:
        return self._texts is not None

    def document_blocks(self) -> Iterator[bytes]:
        """The kept document texts as blocks of whole lines (each text a line ending "\n"),
        about a megabyte each; none when there are no positions."""
        assert self._texts is not None
        fd, size, offset, rest = self._texts.fileno(), self._texts_size, 0, b""
        while offset < size:
            block = rest + os.pread(fd, min(_READ, size - offset), offset)
            offset += len(block) - len(rest)
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]

    def fields(self) -> Iterator[list[str]]:
        """Each position as the text it was kept as: wallet, asset, book, on-chain (decimal)."""
        return (line.split("\t") for line in self._lines())

    def decimals_of(self, asset: str) -> int:
        return self._decimals[asset]

    def assets(self) -> Collection[str]:
        """The assets whose decimals are known here (every position's asset is one)."""
        return self._decimals.keys()

    def _lines(self) -> Iterator[str]:
        return _read_lines(self._file.fileno(), self._size)

    def close(self) -> None:
        self._file.close()
        if self._texts is not None:
            self._texts.close()


class Concatenated(_ReadBack):
    """Several chains' positions as one sequence, chain after chain (a run's, in chain order)."""

    def __init__(self, parts: Sequence[Sequence[Position]]) -> None:
        self.parts = tuple(parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __iter__(self) -> Iterator[Position]:
        for part in self.parts:
            yield from part


class ConfigText(NamedTuple):
    """A wallet configuration as a baseline stores it (``WalletConfig.to_text``), with what
    identifies it: recorded as it was read, without making the configuration again."""

    chain: str
    wallet: str
    address: str
    block_number: int
    text: str


def _config_lines(configs: Sequence[WalletConfig]) -> bytes:
    # One line per configuration: its JSON escapes tabs and newlines, names and addresses hold none.
    return "".join(f"{c.wallet}\t{c.address}\t{c.block_number}\t{c.to_text()}\n" for c in configs).encode()


def _config(text: ConfigText) -> WalletConfig:
    return WalletConfig.from_json(json.loads(text.text))


class RenderedConfigs(Sequence[WalletConfig]):
    """Configurations as a spill keeps them, made where they were read (a unit worker process
    sends these; the run appends them as they are)."""

    def __init__(self, chain: str, configs: Sequence[WalletConfig]) -> None:
        self.chain = chain
        self.texts = [c.to_text() for c in configs]  # each as its baseline stores it
        self.data = "".join(
            f"{c.wallet}\t{c.address}\t{c.block_number}\t{text}\n" for c, text in zip(configs, self.texts, strict=True)
        ).encode()
        self.configs = len(configs)

    def __len__(self) -> int:
        return self.configs

    def __iter__(self) -> Iterator[WalletConfig]:
        return map(_config, _texts(self.chain, self.data.decode().splitlines()))

    def __getstate__(self) -> dict[str, Any]:  # sent as the lines (the texts are in them)
        return {"chain": self.chain, "data": self.data, "configs": self.configs, "texts": []}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @overload
    def __getitem__(self, index: int) -> WalletConfig: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[WalletConfig]: ...
    def __getitem__(self, index: int | slice) -> WalletConfig | Sequence[WalletConfig]:
        return list(self)[index]


def _texts(chain: str, lines: Iterable[str]) -> Iterator[ConfigText]:
    for line in lines:
        wallet, address, block, text = line.split("\t", 3)
        yield ConfigText(chain, wallet, address, int(block), text)


class SpilledConfigs(Sequence[WalletConfig]):
    """A chain's wallet configurations first seen by a run (no baseline covers them yet: a
    first run's are every wallet's), kept on disk unit by unit until the run records them as
    baselines, as the text a baseline stores; read back in order (``texts``, or made again)."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.staged: Any = None  # as SpilledPositions.staged
        self._file = tempfile.TemporaryFile()
        self._size = 0
        self._count = 0
        self._lock = threading.Lock()

    def extend(self, configs: Sequence[WalletConfig]) -> None:
        if not configs:
            return
        data = configs.data if isinstance(configs, RenderedConfigs) else _config_lines(configs)
        with self._lock:
            os.pwrite(self._file.fileno(), data, self._size)
            self._size += len(data)
            self._count += len(configs)

    def __len__(self) -> int:
        return self._count

    def texts(self) -> Iterator[ConfigText]:
        """Each configuration as the text a baseline stores, in order."""
        return _texts(self.chain, _read_lines(self._file.fileno(), self._size))

    def __iter__(self) -> Iterator[WalletConfig]:
        return map(_config, self.texts())

    @overload
    def __getitem__(self, index: int) -> WalletConfig: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[WalletConfig]: ...
    def __getitem__(self, index: int | slice) -> WalletConfig | Sequence[WalletConfig]:
        items = list(self)  # rare: by index (the run reads them in order)
        return items[index]

    def by_name(self) -> ConfigsByName:
        return ConfigsByName(self)


class ConfigsByName(Mapping[str, WalletConfig]):
    """``SpilledConfigs`` by wallet name, without an index: iterated in order (values and
    items read the file once); a lookup reads it through (``pick`` many at once), making only
    the configurations it finds."""

    def __init__(self, configs: SpilledConfigs) -> None:
        self._configs = configs

    def __len__(self) -> int:
        return len(self._configs)

    def __iter__(self) -> Iterator[str]:
        return (t.wallet for t in self._configs.texts())

    def __getitem__(self, name: str) -> WalletConfig:
        for t in self._configs.texts():
            if t.wallet == name:
                return _config(t)
        raise KeyError(name)

    def values(self) -> ValuesView[WalletConfig]:
        return _Values(self._configs)

    def texts(self) -> Iterator[ConfigText]:
        return self._configs.texts()

    @property
    def staged(self) -> Any:
        """The unit workers' stage of these configurations (reconciler.ledger.staging), if any."""
        return self._configs.staged

    def staged_whole(self) -> bool:
        """Whether the stage holds every one of these configurations (and is to be copied)."""
        return self.staged is not None and self.staged.configs == len(self._configs)

    def pick(self, names: Container[str]) -> dict[str, WalletConfig]:
        return {t.wallet: _config(t) for t in self._configs.texts() if t.wallet in names}


class _Values(ValuesView[WalletConfig]):
    def __init__(self, configs: SpilledConfigs) -> None:
        super().__init__({})
        self._configs = configs

    def __len__(self) -> int:
        return len(self._configs)

    def __iter__(self) -> Iterator[WalletConfig]:
        return iter(self._configs)

    def __contains__(self, value: object) -> bool:
        return any(c == value for c in self._configs)


def picked(configs: Mapping[str, WalletConfig], names: Collection[str]) -> dict[str, WalletConfig]:
    """The configurations of ``names`` among ``configs`` (one read through when spilled)."""
    if isinstance(configs, ConfigsByName):
        return configs.pick(set(names))
    return {n: configs[n] for n in names if n in configs}
