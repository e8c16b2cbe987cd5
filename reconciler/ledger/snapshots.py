"""Balance snapshots stored in proportion to change.

Invariant: for every run that recorded positions, the full ordered list of its positions on a
chain — book, on-chain value and decimals — can be rebuilt exactly from the ledger, while a run
in which nothing changed stores no balance_snapshot row at all.

How: each run that records positions on a chain gets the next ``snapshot_seq`` of that chain.
Its rows are either the full set (``snapshot_base`` is the run itself) or only the positions
that differ from the chain's previous recorded run (``snapshot_base`` is the full set they build
on). A run's positions are its base's rows overlaid, in ``snapshot_seq`` order, with the changes
of every run of that base up to itself. A full set is taken again when the ordered list of
positions is not the previous run's (a wallet or asset was added, removed or moved in the
configuration), or when the changes stored since the base would outnumber the positions, which
bounds the rows any rebuild reads to twice the positions.

Two sha256 digests on run_chain, over the ordered keys and over keys and values, let a run find
"nothing changed" without reading the previous positions back.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BlockRef, Position
from reconciler.errors import LedgerError
from reconciler.ledger.base import insert_plain
from reconciler.ledger.models import BalanceSnapshot, RunChain
from reconciler.ledger.staging import Staged, union
from reconciler.spill import Concatenated, SpilledPositions

_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One stored position: ``seq`` is its index among the chain's positions in the run."""

    seq: int
    wallet: str
    asset: str
    decimals: int | None
    book: int
    onchain: int


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """What a run records about its positions on one chain (the run_chain columns)."""

    snapshot_seq: int
    snapshot_base: str
    snapshot_offset: int
    snapshot_rows: int
    positions: int
    positions_keys: str
    positions_digest: str

    def columns(self) -> dict[str, Any]:
        return {
            "snapshot_seq": self.snapshot_seq,
            "snapshot_base": self.snapshot_base,
            "snapshot_offset": self.snapshot_offset,
            "snapshot_rows": self.snapshot_rows,
            "positions": self.positions,
            "positions_keys": self.positions_keys,
            "positions_digest": self.positions_digest,
        }


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """Per chain: the run_chain columns, and the rows to insert (made batch by batch as they
    are inserted, so a first run of 400,000 positions never holds them all)."""

    chains: Mapping[str, ChainSnapshot]
    rows: Iterable[tuple[object, ...]]  # in _COLUMNS order
    # Chains whose every position is copied from the unit workers' stages (attached), with
    # their pinned block (reconciler.ledger.staging; SQLite).
    staged: tuple[tuple[str, int, Staged], ...] = ()


def _digests(items: Iterable[Position]) -> tuple[str, str]:
    keys = hashlib.sha256()
    values = hashlib.sha256()
    # One join per batch: hashing 40,000 small strings one update at a time costs more, and
    # one join over 400,000 positions held ~100 MB of text at once. The digests are those of
    # the whole "\n"-joined text (sha256 is fed in order; batches after the first begin "\n").
    it = iter(items)
    for start in itertools.count(step=_BATCH):
        part = list(itertools.islice(it, _BATCH))
        if not part:
            break
        sep = "\n" if start else ""
        keys.update((sep + "\n".join(f"{p.wallet}\t{p.asset}" for p in part)).encode())
        values.update(
            (sep + "\n".join(f"{p.wallet}\t{p.asset}\t{p.decimals}\t{p.book}\t{p.onchain}" for p in part)).encode()
        )
    return keys.hexdigest(), values.hexdigest()


def plan(s: Session, run_id: str, blocks: Mapping[str, BlockRef | None], positions: Sequence[Position]) -> SnapshotPlan:
    """Decide, inside the run's transaction (the writer lock orders runs), what the run stores."""
    by_chain, offsets = _by_chain(positions)
    chains: dict[str, ChainSnapshot] = {}
    writes: list[Iterable[tuple[object, ...]]] = []
    staged: list[tuple[str, int, Staged]] = []
    sqlite = s.get_bind().dialect.name == "sqlite"
    for chain, items in by_chain.items():
        block = blocks[chain]
        assert block is not None, "positions only exist for chains that were read"
        keys, digest = items.digests() if isinstance(items, SpilledPositions) else _digests(items)
        prev = s.execute(
            select(
                col(RunChain.snapshot_seq),
                col(RunChain.snapshot_base),
                col(RunChain.snapshot_rows),
                col(RunChain.positions_keys),
                col(RunChain.positions_digest),
            )
            .where(col(RunChain.chain) == chain, col(RunChain.snapshot_seq).is_not(None))
            .order_by(col(RunChain.snapshot_seq).desc())
            .limit(1)
        ).first()
        write: Iterable[tuple[int, Position]] | None = None  # None: every position (items)
        base, stored = run_id, 0
        if prev is not None and prev.positions_keys == keys and prev.snapshot_base is not None:
            if prev.positions_digest == digest:
                changed: list[tuple[int, Position]] = []
            else:
                # The same keys in the same order: the previous positions streamed beside these.
                changed = _changes(items, _stream(s, chain, prev.snapshot_base, prev.snapshot_seq), chain)
            if (prev.snapshot_rows or 0) + len(changed) <= len(items):
                write, base, stored = changed, prev.snapshot_base, (prev.snapshot_rows or 0) + len(changed)
        seq = (prev.snapshot_seq if prev is not None else 0) + 1
        chains[chain] = ChainSnapshot(seq, base, offsets[chain], stored, len(items), keys, digest)
        if write is not None:
            writes.append(_rows(run_id, chain, block.number, write))
        elif isinstance(items, SpilledPositions) and sqlite and _whole(items.staged, len(items)):
            staged.append((chain, block.number, items.staged))
        elif isinstance(items, SpilledPositions):
            writes.append(_spilled_rows(run_id, chain, block.number, items))
        else:
            writes.append(_rows(run_id, chain, block.number, enumerate(items)))
    return SnapshotPlan(chains, itertools.chain.from_iterable(writes), tuple(staged))


def _whole(staged: object, positions: int) -> bool:
    return isinstance(staged, Staged) and staged.positions == positions


def insert_staged(s: Session, run_id: str, staged: Iterable[tuple[str, int, Staged]]) -> None:
    """Every position of each chain copied from its attached stages, in one statement each,
    in order (what ``insert_rows`` of its rows stores)."""
    for chain, block, stage in staged:
        s.connection().exec_driver_sql(
            f"INSERT INTO balance_snapshot ({', '.join(_COLUMNS)}) "
            "SELECT ?, ?, wallet, asset, ?, book, onchain, decimals, seq "
            f"FROM ({union(stage, 'positions')}) ORDER BY seq",
            (run_id, chain, block),
        )


def _changes(items: Iterable[Position], before: Iterable[Snapshot], chain: str) -> list[tuple[int, Position]]:
    """(index, position) of each of ``items`` whose book, on-chain value or decimals differ
    from the previous run's at the same index; the two must hold the same keys in order."""
    changed: list[tuple[int, Position]] = []
    for i, (p, old) in enumerate(itertools.zip_longest(items, before)):
        if p is None or old is None or (old.wallet, old.asset) != (p.wallet, p.asset):
            raise LedgerError(
                f"{chain}: the previous run's positions rebuilt from the ledger do not line up with its recorded "
                "keys; balance_snapshot rows are missing (restore the ledger from a backup)"
            )
        if (old.book, old.onchain, old.decimals) != (p.book, p.onchain, p.decimals):
            changed.append((i, p))
    return changed


def _by_chain(positions: Sequence[Position]) -> tuple[dict[str, Sequence[Position]], dict[str, int]]:
    """A run's positions per chain, and where each chain's begin among them. A run's spilled
    positions (reconciler.spill) are already one sequence per chain, read back as needed."""
    by_chain: dict[str, Sequence[Position]] = {}
    offsets: dict[str, int] = {}
    if isinstance(positions, Concatenated):
        offset = 0
        for part in positions.parts:
            first = next(iter(part), None)
            if first is not None:
                by_chain[first.chain], offsets[first.chain] = part, offset
            offset += len(part)
        return by_chain, offsets
    lists: dict[str, list[Position]] = {}
    for i, p in enumerate(positions):
        if p.chain not in lists:
            lists[p.chain] = []
            offsets[p.chain] = i
        lists[p.chain].append(p)
    return dict(lists), offsets


def _rows(run_id: str, chain: str, block: int, write: Iterable[tuple[int, Position]]) -> Iterator[tuple[object, ...]]:
    """The balance_snapshot rows to write, in ``_COLUMNS`` order, amounts as decimal text."""
    for i, p in write:
        yield (run_id, chain, p.wallet, p.asset, block, _amount(p.book), _amount(p.onchain), p.decimals, i)


def _spilled_rows(run_id: str, chain: str, block: int, items: SpilledPositions) -> Iterator[tuple[object, ...]]:
    """``_rows`` of every position of ``items``, from the text it keeps them as (made into
    Positions and their amounts back into text, they were most of writing a first run)."""
    decimals = {asset: items.decimals_of(asset) for asset in items.assets()}
    for i, (wallet, asset, book, onchain) in enumerate(items.fields()):
        if len(book) > _DIGITS or len(onchain) > _DIGITS:
            _amount(int(book)), _amount(int(onchain))  # raises, saying which
        yield (run_id, chain, wallet, asset, block, book, onchain, decimals[asset], i)


_DIGITS = 78  # NUMERIC(78, 0): the most digits an amount's text has (a sign makes 79)


def _amount(value: int) -> str:
    """An amount as the decimal text balance_snapshot keeps on SQLite (and PostgreSQL's COPY
    reads), checked as ExactInt checks what it binds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"amounts are ints in base units, got {type(value).__name__}")
    if abs(value) > 10**_DIGITS - 1:
        raise ValueError(f"amount {value} does not fit NUMERIC(78, 0)")
    return str(value)


_COLUMNS = ("run_id", "chain", "wallet", "asset", "block_number", "book", "onchain", "decimals", "seq")


def insert_rows(s: Session, rows: Iterable[Sequence[object]]) -> None:
    """Inside the run's transaction: COPY on PostgreSQL, else one executemany per batch of
    plain rows (an ORM object per position was most of a large run's time)."""
    connection = s.connection()
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection  # psycopg's, in the same transaction
        assert driver is not None
        try:
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY balance_snapshot ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except connection.dialect.loaded_dbapi.Error as exc:  # below SQLAlchemy: say it as it would
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerError(f"database error: {type(exc).__name__}: {first}") from exc
        return
    # SQLite: the driver's executemany over plain tuples (SQLAlchemy's work per row of 400,000
    # was most of a first run's write).
    insert_plain(s, BalanceSnapshot.__table__, _COLUMNS, rows, _BATCH, bound=("book", "onchain"))  # type: ignore[attr-defined]


def _select_snapshots() -> Select[str, str, int | None, int, int, int | None]:
    """A Snapshot's columns, in its order but ``seq`` last."""
    return select(
        col(BalanceSnapshot.wallet),
        col(BalanceSnapshot.asset),
        col(BalanceSnapshot.decimals),
        col(BalanceSnapshot.book),
        col(BalanceSnapshot.onchain),
        col(BalanceSnapshot.seq),
    )


def _in_base(query: Any, chain: str, base: str, upto: int) -> Any:
    """``query`` over the snapshot rows of the runs on ``chain`` that build on the full set of
    run ``base``, up to the one with ``snapshot_seq`` ``upto`` (the rows one run's positions
    are rebuilt from)."""
    return query.join(
        RunChain,
        and_(
            col(RunChain.run_id) == col(BalanceSnapshot.run_id),
            col(RunChain.chain) == col(BalanceSnapshot.chain),
        ),
    ).where(
        col(RunChain.chain) == chain,
        col(RunChain.snapshot_base) == base,
        col(RunChain.snapshot_seq) <= upto,
    )


def _rebuild(s: Session, chain: str, base: str, upto: int) -> list[Snapshot]:
    """The positions of the run with ``snapshot_seq`` ``upto`` on ``chain``, in their order."""
    found: dict[tuple[str, str], Snapshot] = {}
    query = _in_base(_select_snapshots(), chain, base, upto).order_by(col(RunChain.snapshot_seq))
    for wallet, asset, decimals, book, onchain, seq in s.execute(query):
        found[(wallet, asset)] = Snapshot(seq or 0, wallet, asset, decimals, int(book), int(onchain))
    return sorted(found.values(), key=lambda x: x.seq)


def positions_of(s: Session, run_id: str, chain: str) -> list[Snapshot]:
    """A run's positions on one chain, in the order it printed them; [] when it recorded none."""
    rc = s.get(RunChain, (run_id, chain))
    if rc is None:
        return []
    if rc.snapshot_seq is None or rc.snapshot_base is None:  # recorded before revision 0008: all rows
        legacy = s.execute(
            _select_snapshots()
            .where(col(BalanceSnapshot.run_id) == run_id, col(BalanceSnapshot.chain) == chain)
            .order_by(col(BalanceSnapshot.seq), col(BalanceSnapshot.wallet), col(BalanceSnapshot.asset))
        )
        return [Snapshot(seq or 0, w, a, d, int(b), int(o)) for w, a, d, b, o, seq in legacy]
    rebuilt = _rebuild(s, chain, rc.snapshot_base, rc.snapshot_seq)
    if len(rebuilt) != (rc.positions or 0):
        raise LedgerError(
            f"run {run_id} on {chain}: {len(rebuilt)} positions rebuilt from the ledger, but the run recorded "
            f"{rc.positions}; balance_snapshot rows are missing (restore the ledger from a backup)"
        )
    return rebuilt


def balances_of(s: Session, run_id: str, chain: str) -> dict[tuple[str, str], int]:
    """A run's on-chain balances on one chain, per (wallet, asset): ``positions_of`` without a
    Snapshot per position nor their sorted list (the flow check of a 100,000-wallet fleet
    reads 400,000 of them); the same rows, overlaid in the same order, checked the same way."""
    rc = s.get(RunChain, (run_id, chain))
    if rc is None:
        return {}
    if rc.snapshot_seq is None or rc.snapshot_base is None:  # recorded before revision 0008
        return {(p.wallet, p.asset): p.onchain for p in positions_of(s, run_id, chain)}
    query = _in_base(
        select(col(BalanceSnapshot.wallet), col(BalanceSnapshot.asset), col(BalanceSnapshot.onchain)),
        chain,
        rc.snapshot_base,
        rc.snapshot_seq,
    ).order_by(col(RunChain.snapshot_seq))
    found: dict[tuple[str, str], int] = {}
    names: dict[str, str] = {}  # one string per name: each row brings its own (as books do)
    for wallet, asset, onchain in s.execute(query):
        found[(names.setdefault(wallet, wallet), names.setdefault(asset, asset))] = int(onchain)
    if len(found) != (rc.positions or 0):
        raise LedgerError(
            f"run {run_id} on {chain}: {len(found)} positions rebuilt from the ledger, but the run recorded "
            f"{rc.positions}; balance_snapshot rows are missing (restore the ledger from a backup)"
        )
    return found


@dataclass(frozen=True, slots=True)
class FlowChange:
    """A chain's positions against an earlier run's on-chain balances: (before, after) of each
    position read at both whose balance differs, and which positions were read at both."""

    changed: dict[tuple[str, str], tuple[int, int]]
    compared: Container[tuple[str, str]]


class _Keys:
    """Every key of a run's positions, without a set of them: the earlier run read the same
    ordered keys, so a key is compared when it is a position of this run."""

    def __init__(self, wallets: Container[str], assets: Container[str]) -> None:
        self.wallets, self.assets = wallets, assets

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and key[0] in self.wallets and key[1] in self.assets


def flow_change(
    s: Session, run_id: str, chain: str, current: Iterable[Position], wallets: Container[str], assets: Container[str]
) -> FlowChange:
    """``current`` (a run's positions on ``chain``, in order; ``wallets`` and ``assets`` hold
    their names) against run ``run_id``'s on-chain balances there. When that run read the same
    positions in the same order (a fleet that did not change), its balances are streamed in
    order beside ``current`` and only the differing ones are kept; otherwise they are read
    whole, as ``balances_of``."""
    rc = s.get(RunChain, (run_id, chain))
    if (
        rc is not None
        and isinstance(current, SpilledPositions)
        and rc.positions_keys is not None
        and (rc.positions_keys, rc.positions_digest) == current.digests()
    ):
        return FlowChange({}, _Keys(wallets, assets))  # the same positions, keys and values: no change
    if rc is not None and rc.snapshot_seq is not None and rc.snapshot_base is not None:
        changed: dict[tuple[str, str], tuple[int, int]] = {}
        count = 0
        aligned = True
        for p, old in itertools.zip_longest(current, _stream(s, chain, rc.snapshot_base, rc.snapshot_seq)):
            if p is None or old is None or (p.wallet, p.asset) != (old.wallet, old.asset):
                aligned = False
                break
            count += 1
            if old.onchain != p.onchain:
                changed[(p.wallet, p.asset)] = (old.onchain, p.onchain)
        if aligned:
            if count != (rc.positions or 0):
                raise LedgerError(
                    f"run {run_id} on {chain}: {count} positions rebuilt from the ledger, but the run recorded "
                    f"{rc.positions}; balance_snapshot rows are missing (restore the ledger from a backup)"
                )
            return FlowChange(changed, _Keys(wallets, assets))
    before = balances_of(s, run_id, chain)
    now = {(p.wallet, p.asset): p.onchain for p in current}
    compared = before.keys() & now.keys()
    return FlowChange({k: (before[k], now[k]) for k in compared if before[k] != now[k]}, compared)


def _stream(s: Session, chain: str, base: str, upto: int) -> Iterator[Snapshot]:
    """The positions of the run with ``snapshot_seq`` ``upto`` on ``chain``, in order (what
    ``_rebuild`` returns, never held whole): the base's full set streamed by seq, each
    overlaid with the newest change stored for its seq by the runs since (bounded: changes
    never outnumber the positions)."""
    overlay: dict[int, tuple[int | None, int, int]] = {}
    since = (
        _in_base(
            select(
                col(BalanceSnapshot.seq),
                col(BalanceSnapshot.decimals),
                col(BalanceSnapshot.book),
                col(BalanceSnapshot.onchain),
            ),
            chain,
            base,
            upto,
        )
        .where(col(RunChain.run_id) != base)
        .order_by(col(RunChain.snapshot_seq))
    )
    for seq, decimals, book, onchain in s.execute(since):
        overlay[int(seq or 0)] = (decimals, int(book), int(onchain))
    rows = (
        _select_snapshots()
        .where(col(BalanceSnapshot.run_id) == base, col(BalanceSnapshot.chain) == chain)
        .order_by(col(BalanceSnapshot.seq))
        .execution_options(yield_per=10_000)
    )
    for wallet, asset, decimals, book, onchain, seq in s.execute(rows):
        at = int(seq or 0)
        changed = overlay.get(at)
        if changed is None:
            yield Snapshot(at, wallet, asset, decimals, int(book), int(onchain))
        else:
            yield Snapshot(at, wallet, asset, *changed)


def run_positions(s: Session, run_id: str) -> list[tuple[str, Snapshot]]:
    """Every position of a run, chain by chain in the order the run printed them."""
    chains = s.execute(
        select(col(RunChain.chain), col(RunChain.snapshot_offset)).where(col(RunChain.run_id) == run_id)
    ).all()
    out: list[tuple[int, int, str, Snapshot]] = []
    for chain, offset in chains:
        for snap in positions_of(s, run_id, chain):
            # legacy rows carry the run-wide index; newer ones the index within the chain
            at = snap.seq if offset is None else offset + snap.seq
            out.append((at, 0, chain, snap))
    out.sort(key=lambda t: (t[0], t[2], t[3].wallet, t[3].asset))
    return [(chain, snap) for _, _, chain, snap in out]
