"""The ledger side of transfer surveillance: checkpoints, observed movements, instructions.

Invariants: a movement is written once (its identity and wallet side are unique) and never
deleted — a movement whose block left the canonical chain is marked ``reorged`` and kept as
evidence; the checkpoint, the new movements, the reorged marks and the instructions they consume
are written in the run's one transaction, so a failure leaves the checkpoint where it was; an
instruction row authorizes nothing by itself (its signatures are verified whenever it is used);
an instruction is consumed by the observed (not reorged) outflow that carries its id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BlockRef, Position
from reconciler.engine.surveillance import Movement
from reconciler.errors import InputError
from reconciler.ledger import executions_store, snapshots
from reconciler.ledger.models import (
    BookEntry,
    ImportBatch,
    InstructionRow,
    MovementRow,
    Run,
    RunChain,
    ScanCheckpoint,
)
from reconciler.ledger.store import Ledger
from reconciler.transfers import Direction, Initiator, Instruction, MovementKind, Observation, ObservationStatus

OBSERVED = ObservationStatus.OBSERVED.value
REORGED = ObservationStatus.REORGED.value


@dataclass(frozen=True, slots=True)
class SurveillanceWrite:
    """What one run learned of one chain's movements, written with the run's results."""

    chain: str
    checkpoint: BlockRef  # observed up to and including this block
    start: BlockRef | None = None  # the first scan's starting point, recorded as a checkpoint
    movements: tuple[tuple[Movement, str | None], ...] = ()  # new movements, with the instruction consumed
    orphaned: frozenset[str] = frozenset()  # block hashes no longer canonical
    observed: int = 0
    reorged: int = 0
    executions: tuple[executions_store.ExecutionRecord, ...] = ()  # judged for the first time

    def apply(self, s: Session, run_id: str) -> None:
        write(s, self, run_id)


@dataclass(frozen=True, slots=True)
class FlowStart:
    """The previous complete run's pin of a chain (its balances there: ``flow_change``)."""

    block: BlockRef
    run_id: str


@dataclass(frozen=True, slots=True)
class InstructionStatus:
    instruction: Instruction
    consumed_by: str | None


def checkpoints(ledger: Ledger, chain: str) -> list[tuple[int, str]]:
    """Every checkpoint the chain's scans recorded, newest (highest) first."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(ScanCheckpoint.block_number), col(ScanCheckpoint.block_hash))
            .where(col(ScanCheckpoint.chain) == chain)
            .order_by(col(ScanCheckpoint.block_number).desc(), col(ScanCheckpoint.id).desc())
        ).all()
    seen: set[tuple[int, str]] = set()
    out = []
    for number, block_hash in rows:
        if (number, block_hash) not in seen:
            seen.add((number, block_hash))
            out.append((int(number), str(block_hash)))
    return out


def start_at(ledger: Ledger, chain: str, block: BlockRef) -> bool:
    """Begin the chain's surveillance at ``block`` unless it has begun; True when it did now."""
    with ledger._session() as s:
        begun = s.scalars(select(col(ScanCheckpoint.id)).where(col(ScanCheckpoint.chain) == chain).limit(1)).first()
        if begun is not None:
            return False
        s.add(
            ScanCheckpoint(
                chain=chain,
                block_number=block.number,
                block_hash=block.hash,
                run_id=None,
                recorded_at=datetime.now(UTC),
            )
        )
        return True


def movement_blocks_above(ledger: Ledger, chain: str, number: int) -> set[tuple[int, str]]:
    """The (number, hash) of every block above ``number`` that holds an observed movement."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(MovementRow.block_number), col(MovementRow.block_hash))
            .where(col(MovementRow.chain) == chain, col(MovementRow.block_number) > number)
            .where(col(MovementRow.status) == OBSERVED)
            .distinct()
        ).all()
    return {(int(n), str(h)) for n, h in rows}


def _movement(row: MovementRow, decimals: Mapping[str, int]) -> Movement | None:
    if row.asset not in decimals:
        return None  # its asset left the configuration: nothing to judge it against
    direction = Direction(row.direction)
    obs = Observation(
        chain=row.chain,
        block_number=row.block_number,
        block_hash=row.block_hash,
        block_time=row.block_time,
        tx_hash=row.tx_hash,
        kind=MovementKind(row.kind),
        token=row.token,
        from_address=row.from_address,
        to_address=row.to_address,
        amount=row.amount,
        log_index=row.log_index,
        trace_position=row.trace_position,
        initiator=Initiator(row.initiator) if row.initiator else None,
        function=row.function,
    )
    counterparty = row.from_address if direction is Direction.IN else row.to_address
    return Movement(row.wallet, row.asset, decimals[row.asset], direction, counterparty, row.amount, obs)


_IN_WALLETS = 1_000  # above this many wallets, stored_movements filters by wallet in Python


def stored_movements(
    ledger: Ledger,
    chain: str,
    decimals: Mapping[str, int],
    wallets: Collection[str],
    after_block: int | None,
    booked: frozenset[str],
) -> list[Movement]:
    """The chain's observed movements a run judges again: those after ``after_block`` (the flow
    window) and every inflow no book entry carries yet (its unexpected_inflow may be due)."""
    # A large fleet's names are matched here, not in the query: SQLite refuses a statement with
    # more than 250,000 variables ("too many SQL variables"), and a million wallets are a million.
    listed = isinstance(wallets, Sequence) and len(wallets) <= _IN_WALLETS
    wanted = None if listed else wallets  # a fleet's names: looked up, never made into a set
    with ledger._session() as s:
        query = select(MovementRow).where(col(MovementRow.chain) == chain, col(MovementRow.status) == OBSERVED)
        if wanted is None:
            query = query.where(col(MovementRow.wallet).in_(list(wallets)))
        window = col(MovementRow.block_number) > after_block if after_block is not None else None
        inflow = col(MovementRow.direction) == Direction.IN.value
        query = query.where(or_(window, inflow) if window is not None else inflow)
        rows = [r for r in s.scalars(query) if wanted is None or r.wallet in wanted]
    out = []
    for row in rows:
        in_window = after_block is not None and row.block_number > after_block
        if not in_window and row.tx_hash.lower() in booked:
            continue
        movement = _movement(row, decimals)
        if movement is not None:
            out.append(movement)
    return out


def judged_outflows(ledger: Ledger, chain: str, from_block: int) -> frozenset[tuple[str, str, str, str]]:
    """Identities of the chain's outflows from ``from_block`` on already judged (matched or
    flagged) by earlier runs: the caller asks only from the oldest outflow it judges, so the cost
    follows what a run looks at, not the chain's whole history."""
    with ledger._session() as s:
        rows = s.execute(
            select(
                col(MovementRow.chain), col(MovementRow.block_hash), col(MovementRow.tx_hash), col(MovementRow.position)
            ).where(
                col(MovementRow.chain) == chain,
                col(MovementRow.status) == OBSERVED,
                col(MovementRow.direction) == Direction.OUT.value,
                col(MovementRow.block_number) >= from_block,
            )
        ).all()
    return frozenset((str(c), str(b), str(t), str(p)) for c, b, t, p in rows)


def consumed(ledger: Ledger, chain: str | None = None) -> dict[str, str]:
    """instruction id -> the tx hash of the observed outflow that consumed it."""
    with ledger._session() as s:
        query = select(col(MovementRow.instruction_id), col(MovementRow.tx_hash)).where(
            col(MovementRow.instruction_id).is_not(None), col(MovementRow.status) == OBSERVED
        )
        if chain is not None:
            query = query.where(col(MovementRow.chain) == chain)
        return {str(i): str(t) for i, t in s.execute(query).all()}


def approval_pairs(ledger: Ledger, chain: str) -> set[tuple[str, str, str]]:
    """(wallet, asset, spender) of every Approval observed from a custody wallet."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(MovementRow.wallet), col(MovementRow.asset), col(MovementRow.to_address))
            .where(
                col(MovementRow.chain) == chain,
                col(MovementRow.status) == OBSERVED,
                col(MovementRow.direction) == Direction.APPROVAL.value,
            )
            .distinct()
        ).all()
    return {(str(w), str(a), str(sp)) for w, a, sp in rows}


def issuer_outflows(ledger: Ledger, chain: str) -> frozenset[tuple[str, str, str]]:
    """(wallet, asset, tx hash) of every observed outflow the token's issuer made (rare: forced
    transfers, recoveries, burns of permissioned tokens)."""
    with ledger._session() as s:
        rows = s.execute(
            select(col(MovementRow.wallet), col(MovementRow.asset), col(MovementRow.tx_hash))
            .where(
                col(MovementRow.chain) == chain,
                col(MovementRow.initiator) == Initiator.ISSUER.value,
                col(MovementRow.status) == OBSERVED,
                col(MovementRow.direction) == Direction.OUT.value,
            )
            .distinct()
        ).all()
    return frozenset((str(w), str(a), str(t)) for w, a, t in rows)


def booked_tx_hashes(ledger: Ledger) -> frozenset[str]:
    with ledger._session() as s:
        rows = s.scalars(select(col(BookEntry.tx_hash)).where(col(BookEntry.tx_hash).is_not(None)).distinct())
        return frozenset(str(h).lower() for h in rows)


def flow_start(ledger: Ledger, chain: str) -> FlowStart | None:
    """The newest complete reconciliation run that read ``chain``: its pin and balances."""
    with ledger._session() as s:
        found = s.execute(
            select(col(Run.id), col(RunChain.block_number), col(RunChain.block_hash))
            .join(RunChain, col(RunChain.run_id) == col(Run.id))
            .where(
                col(Run.status) == "complete",
                col(Run.job) == "run",
                col(RunChain.chain) == chain,
                col(RunChain.block_number).is_not(None),
            )
            .order_by(col(RunChain.block_number).desc(), col(Run.started_at).desc())
            .limit(1)
        ).first()
        if found is None:
            return None
        run_id, number, block_hash = found
    assert number is not None
    return FlowStart(BlockRef(int(number), str(block_hash)), str(run_id))


def flow_change(
    ledger: Ledger,
    start: FlowStart,
    chain: str,
    positions: Iterable[Position],
    wallets: Container[str],
    assets: Container[str],
) -> snapshots.FlowChange:
    """This run's positions on ``chain`` against the balances ``start``'s run read there."""
    with ledger._session() as s:
        return snapshots.flow_change(s, start.run_id, chain, positions, wallets, assets)


def write(s: Session, w: SurveillanceWrite, run_id: str) -> None:
    """Inside the run's transaction: mark orphaned movements reorged, add the new ones (an
    identity already stored is kept as it is), and move the checkpoint."""
    now = datetime.now(UTC)
    executions_store.write(s, w.chain, w.executions, w.orphaned, run_id)
    if w.orphaned:
        s.execute(
            update(MovementRow)
            .where(col(MovementRow.chain) == w.chain, col(MovementRow.block_hash).in_(sorted(w.orphaned)))
            .values(status=REORGED)
        )
    if w.movements:
        hashes = sorted({m.observation.block_hash for m, _ in w.movements})
        stored = {
            (b, t, p, wallet, d)
            for b, t, p, wallet, d in s.execute(
                select(
                    col(MovementRow.block_hash),
                    col(MovementRow.tx_hash),
                    col(MovementRow.position),
                    col(MovementRow.wallet),
                    col(MovementRow.direction),
                ).where(col(MovementRow.chain) == w.chain, col(MovementRow.block_hash).in_(hashes))
            ).all()
        }
        rows = []
        for m, instruction_id in w.movements:
            o = m.observation
            if (o.block_hash, o.tx_hash, o.position, m.wallet, m.direction.value) in stored:
                continue
            rows.append(
                MovementRow(
                    chain=o.chain,
                    block_number=o.block_number,
                    block_hash=o.block_hash,
                    block_time=o.block_time,
                    tx_hash=o.tx_hash,
                    position=o.position,
                    log_index=o.log_index,
                    trace_position=o.trace_position,
                    kind=o.kind.value,
                    wallet=m.wallet,
                    direction=m.direction.value,
                    asset=m.asset,
                    token=o.token,
                    from_address=o.from_address,
                    to_address=o.to_address,
                    amount=m.amount,
                    status=OBSERVED,
                    instruction_id=instruction_id,
                    run_id=run_id,
                    observed_at=now,
                    initiator=o.initiator.value if o.initiator is not None else None,
                    function=o.function,
                )
            )
        s.add_all(rows)
    for ref in (w.start, w.checkpoint):
        if ref is not None:
            s.add(
                ScanCheckpoint(
                    chain=w.chain, block_number=ref.number, block_hash=ref.hash, run_id=run_id, recorded_at=now
                )
            )


# ---------------------------------------------------------------------------- instructions


def stored_instruction_ids(ledger: Ledger) -> set[str]:
    with ledger._session() as s:
        return set(s.scalars(select(col(InstructionRow.id))))


def import_instructions(
    ledger: Ledger, instructions: Sequence[Instruction], lines: Mapping[int, str], source: str, sha256: str
) -> int:
    """Store a whole verified file, or nothing (an id already stored rejects the file)."""
    with ledger._session() as s:
        ids = [i.id for i in instructions]
        taken = set(s.scalars(select(col(InstructionRow.id)).where(col(InstructionRow.id).in_(ids))))
        if taken:
            raise InputError(
                source,
                [
                    f"line {i.line}, field id: {i.id!r} is already imported; instruction ids are unique forever"
                    for i in instructions
                    if i.id in taken
                ],
            )
        batch = str(uuid.uuid4())
        s.add(
            ImportBatch(
                id=batch,
                kind="instructions",
                source=source,
                sha256=sha256,
                rows=len(instructions),
                imported_at=datetime.now(UTC),
            )
        )
        s.flush()
        s.add_all(
            InstructionRow(
                id=i.id,
                chain=i.chain,
                wallet=i.wallet,
                asset=i.asset,
                to_address=i.to,
                amount=i.amount,
                valid_until=i.valid_until.astimezone(UTC),
                signatures=json.dumps(list(i.signatures)),
                document=lines.get(i.line, ""),
                import_id=batch,
            )
            for i in instructions
        )
        return len(instructions)


def _instruction(row: InstructionRow) -> Instruction:
    valid_until = row.valid_until if row.valid_until.tzinfo else row.valid_until.replace(tzinfo=UTC)
    signatures: Any = json.loads(row.signatures)
    return Instruction(
        id=row.id,
        chain=row.chain,
        wallet=row.wallet,
        asset=row.asset,
        to=row.to_address,
        amount=row.amount,
        valid_until=valid_until,
        signatures=tuple(str(x) for x in signatures),
    )


def instructions(ledger: Ledger, chain: str | None = None) -> list[Instruction]:
    with ledger._session() as s:
        query = select(InstructionRow).order_by(col(InstructionRow.valid_until), col(InstructionRow.id))
        if chain is not None:
            query = query.where(col(InstructionRow.chain) == chain)
        return [_instruction(r) for r in s.scalars(query)]


def instruction_statuses(ledger: Ledger) -> list[InstructionStatus]:
    used = consumed(ledger)
    return [InstructionStatus(i, used.get(i.id)) for i in instructions(ledger)]


# ---------------------------------------------------------------------------- transfers list


@dataclass(frozen=True, slots=True)
class StoredMovement:
    chain: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int | None
    trace_position: str | None
    kind: str
    wallet: str
    direction: str
    asset: str
    from_address: str
    to_address: str
    amount: int
    status: str
    instruction_id: str | None
    initiator: str | None = None
    function: str | None = None
    position: str = ""  # its place in the transaction: log:N, trace:PATH, or fee
    block_time: int = 0  # Unix seconds


def list_movements(
    ledger: Ledger, wallet: str | None, status: str | None, directions: Sequence[str], limit: int | None = None
) -> list[StoredMovement]:
    with ledger._session() as s:
        query = select(MovementRow).where(col(MovementRow.direction).in_(list(directions)))
        if wallet is not None:
            query = query.where(col(MovementRow.wallet) == wallet)
        if status is not None:
            query = query.where(col(MovementRow.status) == status)
        query = query.order_by(
            col(MovementRow.chain), col(MovementRow.block_number), col(MovementRow.log_index), col(MovementRow.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return [
            StoredMovement(
                r.chain,
                r.block_number,
                r.block_hash,
                r.tx_hash,
                r.log_index,
                r.trace_position,
                r.kind,
                r.wallet,
                r.direction,
                r.asset,
                r.from_address,
                r.to_address,
                r.amount,
                r.status,
                r.instruction_id,
                r.initiator,
                r.function,
                r.position,
                int(r.block_time),
            )
            for r in s.scalars(query)
        ]


def count_movements(ledger: Ledger) -> int:
    with ledger._session() as s:
        return int(s.execute(select(func.count()).select_from(MovementRow)).scalar_one())
