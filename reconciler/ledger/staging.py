"""A run's rows staged by its unit workers, for SQLite to copy in one statement.

A first run of a large fleet stores a snapshot row per position and a baseline per wallet. On
SQLite, binding them from Python one at a time was most of recording such a run, on one core
after the reads (400,000 rows: about a second). So the unit workers (reconciler.app.workers)
also write their chunks' rows into a scratch SQLite file each, as they judge them, in parallel;
when the run stores every position of a chain (its first run, or one whose positions changed
too much to store only the changes) and records its first-seen configurations, its transaction
copies them from the attached files with ``INSERT … SELECT``, in order.

Invariants: a staged row is made from the same values as the position or configuration the
run keeps on disk (reconciler.spill), and numbered as the run numbers it (a position's ``seq``,
a wallet's place in its chain); a stage is used only when it holds exactly as many rows as the
run has positions (or first-seen configurations) for the chain, else the rows are bound as
before; the files are the run's scratch (a private temporary directory, removed with the
positions that name it) and never hold anything the ledger does not get.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.spill import PositionText
from reconciler.walletconfig import WalletConfig

_DIGITS = 78  # NUMERIC(78, 0): an amount of more digits is refused where the rows are bound
_SCHEMA = (
    "CREATE TABLE positions (seq INTEGER PRIMARY KEY, wallet TEXT NOT NULL, asset TEXT NOT NULL, "
    "book TEXT NOT NULL, onchain TEXT NOT NULL, decimals INTEGER)",
    "CREATE TABLE configs (seq INTEGER PRIMARY KEY, wallet TEXT NOT NULL, address TEXT NOT NULL, "
    "block_number INTEGER NOT NULL, config TEXT NOT NULL)",
)


def worth_staging(previous: int | None, positions: int) -> bool:
    """Whether a chain's positions are worth staging: the run will likely store every one (the
    chain has no stored positions, or not as many as this run will have: the fleet changed).
    Otherwise it stores only the changes, and a stage would go unused; when it does store them
    all (more changes than positions since the last full set), they are bound as before."""
    return previous != positions


def stage_directory() -> Path:
    """A private scratch directory for one chain's stages."""
    return Path(tempfile.mkdtemp(prefix="reconciler-stage-"))


class StageWriter:
    """One worker's stage: its chunks' positions and first-seen configurations, as it judges
    them (a scratch file: no journal, no sync; it is read once, by the run, after the worker
    has ended)."""

    def __init__(self, path: Path, positions: bool = True) -> None:
        """A stage at ``path``; of first-seen configurations only, without ``positions`` (the
        run is not expected to store every position: see ``worth_staging``)."""
        self.path = path
        self.with_positions = positions
        self.usable = True  # False: an amount too long to store (the run binds the rows and says so)
        self.positions = 0
        self.configs = 0
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def add(
        self, first_seq: int, positions: Sequence[PositionText], first_wallet: int, wallets: Sequence[str],
        configs: Sequence[WalletConfig], config_texts: Sequence[str],
    ) -> None:  # fmt: skip
        """A chunk's rows: its positions (as text) numbered from ``first_seq``; its first-seen
        configurations (``config_texts``: each as its baseline stores it) numbered by their
        wallet's place among ``wallets`` (the chunk's, the first at ``first_wallet``)."""
        if not self.usable:
            return
        rows = []
        if self.with_positions:
            rows = [(first_seq + i, w, a, b, o, d) for i, (w, a, d, b, o) in enumerate(positions)]
        if any(len(r[3]) > _DIGITS or len(r[4]) > _DIGITS for r in rows):
            self.usable = False
            return
        place = {name: first_wallet + i for i, name in enumerate(wallets)}
        texts = [
            (place[c.wallet], c.wallet, c.address, c.block_number, text)
            for c, text in zip(configs, config_texts, strict=True)
        ]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._db.executemany("INSERT INTO configs VALUES (?, ?, ?, ?, ?)", texts)
        self._db.execute("COMMIT")
        self.positions += len(rows)
        self.configs += len(texts)

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True, slots=True)
class Staged:
    """A chain's stages: the workers' files, and how many positions and configurations they
    hold in all."""

    files: tuple[Path, ...]
    positions: int
    configs: int

    def aliases(self) -> list[tuple[str, Path]]:
        """The schema name each file is attached as (the same for the same file)."""
        return [(alias(f), f) for f in self.files]


def alias(path: Path) -> str:
    return "stage_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def removed_with(owner: object, directory: Path) -> None:
    """``directory`` removed when ``owner`` is collected (or the process ends)."""
    weakref.finalize(owner, shutil.rmtree, directory, True)


def union(staged: Staged, table: str) -> str:
    """The rows of ``table`` in every stage of ``staged`` (attached), as one SELECT."""
    return " UNION ALL ".join(f"SELECT * FROM {name}.{table}" for name, _ in staged.aliases())


def attachments(positions: object, baselines: Iterable[tuple[str, str, Staged]] = ()) -> list[tuple[str, Path]]:
    """The stage files a run's recording reads: those of its positions (kept per chain,
    reconciler.spill) and of its first-seen configurations, each once, with its alias."""
    found: dict[str, Path] = {}
    stages = [getattr(part, "staged", None) for part in getattr(positions, "parts", ())]
    for stage in (*stages, *(s for _, _, s in baselines)):
        if isinstance(stage, Staged):
            found.update(stage.aliases())
    return list(found.items())
