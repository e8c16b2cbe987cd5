"""The executions of custody wallets that surveillance judged, kept as evidence.

Invariants: an execution (chain, block hash, tx hash, wallet) is stored once, when the run that
first observed it is written, in that run's transaction; one whose block left the canonical
chain is marked ``reorged`` (never deleted), and only ``observed`` ones feed what later runs
read back — the blocks a reorg walk checks, and the owners/modules mapping entries probed at
each pin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.engine.executions import OrphanedExecution
from reconciler.ledger.base import LedgerBase
from reconciler.ledger.models import ExecutionRow

OBSERVED = "observed"
REORGED = "reorged"


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """What is kept of one judged execution of one wallet."""

    wallet: str
    block_number: int
    block_hash: str
    tx_hash: str
    rules: tuple[str, ...] = ()
    owners_written: tuple[str, ...] = ()
    modules_written: tuple[str, ...] = ()


def _joined(items: Iterable[str]) -> str:
    return ",".join(sorted(set(items)))


def _split(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def write(s: Session, chain: str, records: Sequence[ExecutionRecord], orphaned: Iterable[str], run_id: str) -> None:
    """Inside the run's transaction: mark executions on orphaned blocks reorged, add the new
    ones (one already stored is kept as it is)."""
    hashes = sorted(set(orphaned))
    if hashes:
        s.execute(
            update(ExecutionRow)
            .where(col(ExecutionRow.chain) == chain, col(ExecutionRow.block_hash).in_(hashes))
            .values(status=REORGED)
        )
    if not records:
        return
    blocks = sorted({r.block_hash for r in records})
    stored = set(
        s.execute(
            select(col(ExecutionRow.block_hash), col(ExecutionRow.tx_hash), col(ExecutionRow.wallet)).where(
                col(ExecutionRow.chain) == chain, col(ExecutionRow.block_hash).in_(blocks)
            )
        ).all()
    )
    now = datetime.now(UTC)
    s.add_all(
        ExecutionRow(
            chain=chain,
            block_number=r.block_number,
            block_hash=r.block_hash,
            tx_hash=r.tx_hash,
            wallet=r.wallet,
            status=OBSERVED,
            rules=_joined(r.rules),
            owners_written=_joined(r.owners_written),
            modules_written=_joined(r.modules_written),
            run_id=run_id,
            observed_at=now,
        )
        for r in records
        if (r.block_hash, r.tx_hash, r.wallet) not in stored
    )


def blocks_above(ledger: LedgerBase, chain: str, number: int) -> set[tuple[int, str]]:
    """(number, hash) of every block above ``number`` holding an observed execution."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(ExecutionRow.block_number), col(ExecutionRow.block_hash))
            .where(
                col(ExecutionRow.chain) == chain,
                col(ExecutionRow.block_number) > number,
                col(ExecutionRow.status) == OBSERVED,
            )
            .distinct()
        ).all()
    return {(int(n), str(h)) for n, h in rows}


def on_blocks(ledger: LedgerBase, chain: str, hashes: Iterable[str]) -> list[OrphanedExecution]:
    """The observed executions on these blocks (those a reorg took away)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return []
    with ledger._session() as s:
        rows = s.scalars(
            select(ExecutionRow).where(
                col(ExecutionRow.chain) == chain,
                col(ExecutionRow.block_hash).in_(wanted),
                col(ExecutionRow.status) == OBSERVED,
            )
        ).all()
    return [OrphanedExecution(r.wallet, r.tx_hash, int(r.block_number), r.block_hash) for r in rows]


def written_entries(ledger: LedgerBase, chain: str) -> dict[str, set[str]]:
    """Per wallet name, every address whose owners/modules entry an observed execution wrote."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(ExecutionRow.wallet), col(ExecutionRow.owners_written), col(ExecutionRow.modules_written)).where(
                col(ExecutionRow.chain) == chain,
                col(ExecutionRow.status) == OBSERVED,
                (col(ExecutionRow.owners_written) != "") | (col(ExecutionRow.modules_written) != ""),
            )
        ).all()
    out: dict[str, set[str]] = {}
    for wallet, owners, modules in rows:
        out.setdefault(wallet, set()).update(_split(owners) + _split(modules))
    return out


def count(ledger: LedgerBase, chain: str | None = None) -> int:
    with ledger._session() as s:
        query = select(col(ExecutionRow.id))
        if chain is not None:
            query = query.where(col(ExecutionRow.chain) == chain)
        return len(s.execute(query).all())
