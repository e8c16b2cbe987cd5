"""Documents users and scripts rely on (the `--json` shapes of design.md), built from values.

Invariant: amounts are strings of base units, each with a `*_display` twin in asset units at
the asset's full decimals; block numbers are integers; hashes are lowercase 0x hex.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from reconciler.app.jsonout import Rows, quoted
from reconciler.app.run import RunReport, ScanSummary, UnreconciledBook
from reconciler.domain import BreakEventRecord, BreakRecord, Position, format_amount
from reconciler.engine.surveillance import Movement
from reconciler.inputs.instructions import verify
from reconciler.inputs.settings import Settings
from reconciler.ledger.books import StoredAccount, StoredEntry
from reconciler.ledger.runs import ChainResult, RunSummary, StoredRun
from reconciler.ledger.surveillance_store import InstructionStatus, StoredMovement
from reconciler.spill import Concatenated, SpilledPositions, document_text
from reconciler.transfers import Direction, ObservationStatus


def _decimals(settings: Settings | None, asset: str | None, known: int | None = None) -> int | None:
    """The asset's decimals from the configuration, else as the ledger last knew them."""
    if settings is None or asset is None or asset not in settings.assets:
        return known
    return settings.assets[asset].decimals


def amount_fields(name: str, value: int | None, decimals: int | None) -> dict[str, Any]:
    if value is None:
        return {name: None, f"{name}_display": None}
    return {
        name: str(value),
        f"{name}_display": format_amount(value, decimals) if decimals is not None else str(value),
    }


def chain_doc(c: ChainResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "block_number": c.block.number if c.block else None,
        "block_hash": c.block.hash if c.block else None,
        "head": c.head,  # the node's head at the pin: block_number is confirmations below it
    }
    if c.error:
        doc["error"] = c.error
    else:
        doc["chain_id"] = c.chain_id
        doc["read_path"] = c.read_path
    # Where the data came from (the endpoints that answered, also for a chain left unread).
    doc["sources"] = [{"endpoint": endpoint, "client_version": version} for endpoint, version in c.sources]
    return doc


def position_doc(p: Position) -> dict[str, Any]:
    # Built in one literal: a run document holds one per position (40,000 at 10,000 wallets).
    book, onchain, decimals = p.book, p.onchain, p.decimals
    difference = onchain - book
    return {
        "chain": p.chain,
        "wallet": p.wallet,
        "asset": p.asset,
        "book": str(book),
        "book_display": format_amount(book, decimals),
        "onchain": str(onchain),
        "onchain_display": format_amount(onchain, decimals),
        "difference": str(difference),
        "difference_display": format_amount(difference, decimals),
    }


def position_text(p: Position) -> str:
    """``position_doc`` as jsonout prints a row of it, made without the dict (a run of
    100,000 wallets prints 400,000 of them)."""
    book, onchain, decimals = p.book, p.onchain, p.decimals
    difference = onchain - book
    return (
        f'{{"chain": {quoted(p.chain)}, "wallet": {quoted(p.wallet)}, "asset": {quoted(p.asset)}, '
        f'"book": "{book}", "book_display": "{format_amount(book, decimals)}", '
        f'"onchain": "{onchain}", "onchain_display": "{format_amount(onchain, decimals)}", '
        f'"difference": "{difference}", "difference_display": "{format_amount(difference, decimals)}"}}'
    )


def position_texts(positions: Sequence[Position]) -> Iterator[str]:
    """``position_text`` of each of ``positions``; a run's kept on disk are printed from the
    texts made as they were read (``document_texts``), or from the text they were kept as,
    without making a Position of each."""
    if not isinstance(positions, Concatenated) or not all(isinstance(p, SpilledPositions) for p in positions.parts):
        yield from map(position_text, positions)
        return
    for part in positions.parts:
        assert isinstance(part, SpilledPositions)
        made = part.document_texts()
        if made is not None:
            yield from made
            continue
        chain = quoted(part.chain)
        formats: dict[str, tuple[str, int]] = {}
        for wallet, asset, book, onchain in part.fields():
            known = formats.get(asset)
            if known is None:
                known = formats[asset] = (quoted(asset), part.decimals_of(asset))
            name, decimals = known
            yield document_text(chain, wallet, name, decimals, book, onchain)


def position_blocks(positions: Sequence[Position]) -> Iterator[bytes] | None:
    """The document texts of a run's positions kept on disk with them, as blocks of whole
    lines (``Rows.blocks``); None when they were not kept."""
    if not isinstance(positions, Concatenated) or not all(
        isinstance(p, SpilledPositions) and p.has_document_texts() for p in positions.parts
    ):
        return None
    return (block for part in positions.parts if isinstance(part, SpilledPositions) for block in part.document_blocks())


def break_doc(b: BreakRecord, settings: Settings | None) -> dict[str, Any]:
    return {
        "id": b.id,
        "kind": b.key.kind.value,
        "severity": b.severity.value,
        "status": b.status.value,
        "chain": b.key.chain,
        "wallet": b.key.wallet,
        "asset": b.key.asset,
        **amount_fields("amount", b.amount, _decimals(settings, b.key.asset, b.decimals)),
        "tx_hash": b.key.tx_hash,
        "detail": b.detail,
        "block_number": b.block_number,
        "block_hash": b.block_hash,
        "first_run_id": b.first_run_id,
        "last_run_id": b.last_run_id,
        "resolved_run_id": b.resolved_run_id,
        "times_seen": b.times_seen,
        "tentative": b.tentative,
    }


def event_doc(e: BreakEventRecord, decimals: int | None) -> dict[str, Any]:
    return {
        "event": e.event,
        "at": e.at,
        "run_id": e.run_id,
        **amount_fields("amount", e.amount, decimals),
        "block_number": e.block_number,
        "block_hash": e.block_hash,
        "note": e.note,
    }


def unreconciled_doc(u: UnreconciledBook) -> dict[str, Any]:
    return {"wallet": u.wallet, "asset": u.asset, **amount_fields("book", u.amount, u.decimals)}


def scan_fields(scan: ScanSummary | None) -> dict[str, Any]:
    if scan is None:
        return {"from_block": None, "to_block": None}
    fields: dict[str, Any] = {
        "from_block": scan.from_block,
        "to_block": scan.to_block,
        # How many blocks were observed: 0 when there was none new (from_block is then to_block + 1).
        "new_blocks": max(0, scan.to_block - scan.from_block + 1),
        "observed": scan.observed,
        "reorged": scan.reorged,
        "executions": scan.executions,
    }
    if scan.unchecked:
        fields["unchecked"] = list(scan.unchecked)
    return fields


def run_header(run: RunSummary, exit_code: int | None) -> dict[str, Any]:
    """The fields every run's document starts with (run, scan, statement)."""
    return {
        "run_id": run.id,
        "status": run.status,
        "exit_code": exit_code,
        "reason": run.reason,
        "started_at": run.started_at.isoformat(),
        "trigger": run.trigger,
        "job": run.job,
        "instance": run.instance,
    }


def run_doc(report: RunReport, settings: Settings) -> dict[str, Any]:
    chains: Mapping[str, ChainResult] = {c.chain: c for c in report.chains}
    scans = {s.chain: s for s in report.scans}
    return {
        **run_header(report.run, report.exit_code),
        "chains": {name: {**chain_doc(c), "scan": scan_fields(scans.get(name))} for name, c in chains.items()},
        "positions": Rows(report.positions, position_doc, texts=position_texts, blocks=position_blocks),
        "breaks": [break_doc(b, settings) for b in report.breaks],
        "unreconciled_books": [unreconciled_doc(u) for u in report.unreconciled],
    }


def scan_doc(report: RunReport, settings: Settings) -> dict[str, Any]:
    """`scan --json`: per chain the blocks observed and what was found there, and the breaks."""
    scans = {s.chain: s for s in report.scans}
    chains: dict[str, Any] = {}
    for c in report.chains:
        scan = scans.get(c.chain)
        doc: dict[str, Any] = {
            **scan_fields(scan),
            "block_hash": c.block.hash if c.block and scan else None,
            "observed": scan.observed if scan else 0,
            "reorged": scan.reorged if scan else 0,
        }
        if c.error:
            doc["error"] = c.error
        chains[c.chain] = doc
    return {
        "run_id": report.run.id,
        "status": report.run.status,
        "exit_code": report.exit_code,
        "reason": report.run.reason,
        "chains": chains,
        "breaks": [break_doc(b, settings) for b in report.breaks],
        # What this scan first observed, in and out, as `transfers list --json` shows it.
        "transfers": [
            movement_doc(m, instruction_id, settings)
            for s in report.scans
            for m, instruction_id in s.movements
            if m.direction in (Direction.IN, Direction.OUT)
        ],
    }


def movement_doc(m: Movement, instruction_id: str | None, settings: Settings | None) -> dict[str, Any]:
    """A movement first observed by a scan, in the shape of `transfers list --json`."""
    o = m.observation
    return transfer_doc(
        StoredMovement(
            o.chain,
            o.block_number,
            o.block_hash,
            o.tx_hash,
            o.log_index,
            o.trace_position,
            o.kind.value,
            m.wallet,
            m.direction.value,
            m.asset,
            o.from_address,
            o.to_address,
            m.amount,
            ObservationStatus.OBSERVED.value,
            instruction_id,
            o.initiator.value if o.initiator is not None else None,
            o.function,
        ),
        settings,
    )


def transfer_doc(m: StoredMovement, settings: Settings | None) -> dict[str, Any]:
    """`transfers list --json`: one movement as one custody wallet saw it."""
    return {
        "chain": m.chain,
        "block_number": m.block_number,
        "block_hash": m.block_hash,
        "tx_hash": m.tx_hash,
        "log_index": m.log_index,
        "trace_position": m.trace_position,
        "kind": m.kind,
        "wallet": m.wallet,
        "direction": m.direction,
        "asset": m.asset,
        "from": m.from_address,
        "to": m.to_address,
        **amount_fields("amount", m.amount, _decimals(settings, m.asset)),
        "status": m.status,
        "instruction_id": m.instruction_id,
        "initiator": m.initiator,
        "function": m.function,
    }


def instruction_doc(st: InstructionStatus, settings: Settings, now: datetime) -> dict[str, Any]:
    """`instructions list --json`: status open, consumed (with the tx) or expired; signatures
    verified again now (``valid``/``problems``)."""
    i = st.instruction
    problems = verify(i, settings) if i.wallet in settings.wallets and i.asset in settings.assets else [
        f"wallet {i.wallet} or asset {i.asset} is no longer configured"
    ]
    status = "consumed" if st.consumed_by else "expired" if i.valid_until < now else "open"
    return {
        "id": i.id,
        "chain": i.chain,
        "wallet": i.wallet,
        "asset": i.asset,
        "to": i.to,
        **amount_fields("amount", i.amount, _decimals(settings, i.asset)),
        "valid_until": i.valid_until.isoformat().replace("+00:00", "Z"),
        "signatures": len(i.signatures),
        "status": status,
        "consumed_by": st.consumed_by,
        "valid": not problems,
        "problems": problems,
    }


def run_summary_doc(r: RunSummary) -> dict[str, Any]:
    return {
        "id": r.id,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "status": r.status,
        "reason": r.reason,
        "exit_code": r.exit_code,
        "trigger": r.trigger,
        "job": r.job,
        "scheduled_for": r.scheduled_for.isoformat() if r.scheduled_for else None,
        "instance": r.instance,
        "rerun_of": r.rerun_of,
    }


def stored_run_doc(stored: StoredRun) -> dict[str, Any]:
    """The run's document as `run --json` printed it: the kept document with its positions
    put back from the run's balance snapshots. A run that never printed one (interrupted,
    killed, its database lost) gets the same shape from what the ledger holds."""
    positions = [
        {
            "chain": p.chain,
            "wallet": p.wallet,
            "asset": p.asset,
            **amount_fields("book", p.book, p.decimals),
            **amount_fields("onchain", p.onchain, p.decimals),
            **amount_fields("difference", p.onchain - p.book, p.decimals),
        }
        for p in stored.positions
    ]
    kept = stored.document
    if kept is None:
        r = stored.summary
        kept = {
            **run_header(r, r.exit_code),
            "chains": {c.chain: chain_doc(c) for c in stored.chains},
            "breaks": [],
            "unreconciled_books": [],
        }
    doc: dict[str, Any] = {}
    for key, value in kept.items():
        doc[key] = value
        if key == "chains":
            doc["positions"] = positions
    return doc


def breaks_doc(breaks: Sequence[BreakRecord], settings: Settings | None) -> dict[str, Any]:
    return {"breaks": [break_doc(b, settings) for b in breaks]}


def entry_doc(e: StoredEntry, settings: Settings) -> dict[str, Any]:
    """`books list --json`: one entry, with the books CSV's field names."""
    asset = settings.assets.get(e.asset)
    return {
        "entry_id": e.entry_id,
        "date": e.date.isoformat(),
        "account": e.account,
        "wallet": e.wallet,
        "asset": e.asset,
        **amount_fields("amount", e.amount, asset.decimals if asset is not None else None),
        "kind": e.kind,
        "memo": e.memo,
        "tx_hash": e.tx_hash,
    }


def book_balance_doc(wallet: str, asset: str, book: int, settings: Settings) -> dict[str, Any]:
    """`books balances --json`: one wallet x asset's book balance (the sum of its entries), as
    a run compares it; ``reconciled``: whether a run compares it (wallet and asset configured,
    on the same chain)."""
    configured = settings.assets.get(asset)
    holder = settings.wallets.get(wallet)
    return {
        "wallet": wallet,
        "chain": holder.chain if holder is not None else None,
        "asset": asset,
        **amount_fields("book", book, configured.decimals if configured is not None else None),
        "reconciled": holder is not None and configured is not None and configured.chain == holder.chain,
    }


def account_doc(a: StoredAccount) -> dict[str, Any]:
    """`accounts list --json`: one account, with the accounts CSV's field names."""
    return {"account": a.account, "class": a.seg_class, "name": a.name}
