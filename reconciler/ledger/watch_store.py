"""The ledger side of following the head: tentative breaks awaiting their confirmations, and
each chain's watched head.

Invariants: a chain's watched head is one row, moved only forward by the watcher after the run
that judged the blocks up to it was written (so a head in this table was judged); the node's
head beside it and ``caught_up_at`` (the last time the watcher had judged everything the node
had) are what `health` measures the lag with, from another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlmodel import col

from reconciler.domain import BlockRef, BreakStatus
from reconciler.ledger.models import BreakRow, WatchHead
from reconciler.ledger.store import Ledger


@dataclass(frozen=True, slots=True)
class WatchedHead:
    chain: str
    block: BlockRef  # the newest block judged
    node_head: int  # the node's head when the watcher last read it
    caught_up_at: datetime  # the last time block.number >= node_head
    updated_at: datetime


def tentative_breaks(ledger: Ledger, chain: str) -> list[tuple[str, BlockRef]]:
    """The chain's active tentative breaks, each with its evidence block."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(BreakRow.id), col(BreakRow.evidence_block_number), col(BreakRow.evidence_block_hash)).where(
                col(BreakRow.chain) == chain,
                col(BreakRow.tentative).is_(True),
                col(BreakRow.status) != BreakStatus.RESOLVED.value,
            )
        ).all()
    return [(str(i), BlockRef(int(n), str(h))) for i, n, h in rows if n is not None and h is not None]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def record_head(ledger: Ledger, chain: str, block: BlockRef, node_head: int, now: datetime) -> None:
    """The watcher judged up to ``block`` while the node's head was ``node_head``."""
    with ledger._session() as s:
        row = s.get(WatchHead, chain, with_for_update=True)
        caught_up = block.number >= node_head
        if row is None:
            s.add(
                WatchHead(
                    chain=chain,
                    block_number=block.number,
                    block_hash=block.hash,
                    node_head=node_head,
                    caught_up_at=now,
                    updated_at=now,
                )
            )
            return
        row.block_number, row.block_hash = block.number, block.hash
        row.node_head = max(node_head, block.number)
        row.updated_at = now
        if caught_up:
            row.caught_up_at = now


def record_node_head(ledger: Ledger, chain: str, node_head: int, now: datetime) -> None:
    """The node's head as the watcher read it (the watched head unchanged): how far behind."""
    with ledger._session() as s:
        row = s.get(WatchHead, chain, with_for_update=True)
        if row is None:
            return
        if row.block_number >= node_head:
            row.caught_up_at = now
        row.node_head = node_head
        row.updated_at = now


def _watched(r: WatchHead) -> WatchedHead:
    return WatchedHead(
        r.chain, BlockRef(int(r.block_number), r.block_hash), int(r.node_head), _utc(r.caught_up_at), _utc(r.updated_at)
    )


def watched_heads(ledger: Ledger) -> dict[str, WatchedHead]:
    with ledger._session() as s:
        return {r.chain: _watched(r) for r in s.scalars(select(WatchHead))}


def watched_head(ledger: Ledger, chain: str) -> WatchedHead | None:
    with ledger._session() as s:
        row = s.get(WatchHead, chain)
        return _watched(row) if row is not None else None
