"""The ledger's runs: begun (claiming a scheduled firing), holding the writer lock, finished in
one transaction with everything they found, abandoned; wallet baselines; past runs and their
documents.

Invariant: a run's results (chains, balance snapshots, baselines, break changes, the run's
status and its audit record) are written in one transaction.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlmodel import col

from reconciler.domain import BlockRef, BreakKey, BreakRecord, BreakStatus, Finding, Position, Severity
from reconciler.engine.lifecycle import plan_breaks
from reconciler.errors import LedgerError
from reconciler.ledger import snapshots, staging, trail
from reconciler.ledger.base import (
    MAX_FIRING_ATTEMPTS,
    LedgerBase,
    _chunks,
    _first_line,
    _now,
    _raw_rows,
    _resolve_prefix,
    _utc,
    insert_plain,
    redact_url,
)
from reconciler.ledger.breaks import _active, _event, _order, _record, change, key_text
from reconciler.ledger.daemon_models import JobFiring
from reconciler.ledger.liveness import Heartbeat
from reconciler.ledger.locks import LEDGER_HELD, LockTimeout, RunLock, host_name, process_start
from reconciler.ledger.models import BreakRow, Run, RunChain, TokenBaseline, WalletBaseline
from reconciler.ledger.staging import Staged
from reconciler.spill import ConfigText
from reconciler.walletconfig import TokenImplementation, WalletConfig

_BASELINE_BATCH = 5000  # wallet baselines per executemany
_ExitCode = Callable[[str, Sequence[BreakRecord]], int]


@dataclass(frozen=True, slots=True)
class ChainResult:
    """What a run learned of one chain: its pinned block, or why it could not be read."""

    chain: str
    chain_id: int | None
    block: BlockRef | None
    read_path: str | None
    error: str | None
    # The endpoints that answered (redacted: scheme://host[:port]) with the client each said it
    # runs (web3_clientVersion, None if it would not say): where the run's data came from.
    sources: tuple[tuple[str, str | None], ...] = ()
    # The node's head when the block was pinned (``block`` is ``confirmations`` below it), so an
    # on-chain zero at a lagging pin can be understood; None where it is not known (read before
    # it was recorded, or the chain was not read). Kept in the run's document, not a column.
    head: int | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    reason: str | None
    exit_code: int | None
    trigger: str = "cli"
    job: str = "run"
    scheduled_for: datetime | None = None
    instance: str | None = None
    rerun_of: str | None = None  # the run of the same firing whose process died


@dataclass(frozen=True, slots=True)
class BaselineView:
    """The baselines a run judges against: wallet rows up to id ``upto`` (read chunk by
    chunk), and every token's newest (few)."""

    upto: int
    tokens: dict[tuple[str, str], TokenImplementation]
    tokens_upto: int = 0


@dataclass(frozen=True, slots=True)
class Baselines:
    """The newest baseline of each wallet (by (chain, wallet name)) and token (by (chain, token
    address)), and whether a person reviewed it (`wallets baseline`) or a run recorded it."""

    wallets: dict[tuple[str, str], WalletConfig]
    reviewed: dict[tuple[str, str], bool]
    tokens: dict[tuple[str, str], TokenImplementation]


@dataclass(frozen=True, slots=True)
class NewBaselines:
    """Baselines to record: wallet configurations with the hash of the block they were read
    at, token implementations with their chain."""

    # Read once, as they are recorded; a run's first seen are kept as the text they are stored as.
    wallets: Iterable[tuple[WalletConfig | ConfigText, str]] = ()
    tokens: tuple[tuple[str, TokenImplementation], ...] = ()
    reviewed: bool = False
    note: str = ""
    # Chains whose first seen are copied from the unit workers' stages (attached; SQLite), each
    # with the hash of the block they were read at; recorded before ``wallets``.
    staged: tuple[tuple[str, str, Staged], ...] = ()


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A tentative break whose evidence block has reached its chain's confirmations and is
    still canonical (checked against the node by the run that confirms it)."""

    break_id: str
    block: BlockRef
    confirmations: int


class FiringTaken(LedgerError):
    """Another daemon instance claimed this scheduled firing first: skip it."""


class RunWrite(Protocol):
    """More of a run's results, written inside its one transaction (transfer observations,
    checkpoints, statements): ledger modules provide them."""

    def apply(self, s: Session, run_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """A balance snapshot as a run recorded it, for reproducing the run's document."""

    chain: str
    wallet: str
    asset: str
    decimals: int | None
    book: int
    onchain: int


@dataclass(frozen=True, slots=True)
class StoredRun:
    summary: RunSummary
    document: dict[str, Any] | None
    chains: list[ChainResult]
    positions: list[StoredPosition]
    # The audit trail's head right after the run's outcome record (None: still running, or
    # finished before the trail existed).
    audit_head: trail.Head | None = None


class RunsMixin(LedgerBase):
    """Runs, their outcomes and documents, and wallet baselines."""

    def begin_run(
        self,
        trigger: str = "cli",
        job: str = "run",
        scheduled_for: datetime | None = None,
        rerun_of: str | None = None,
    ) -> tuple[RunSummary, RunLock]:
        """Record a run as ``running``, with host, pid and process start, marked alive (on
        PostgreSQL by a session lock) before its row exists, so it is never mistaken for
        abandoned, and kept alive by a heartbeat until the run ends. The caller releases the
        returned lock when the run ends.

        A scheduled run (trigger "schedule" with its ``scheduled_for``) also claims that firing
        of its job, in the same transaction: when another daemon instance claimed it first,
        FiringTaken is raised and nothing is recorded. A re-run (``rerun_of``: the firing's run
        whose process died) claims the lost firing once more, by a conditional update that one
        instance wins; FiringTaken when another instance re-ran it, or it was re-run already."""
        lock = RunLock(self.engine, self.sqlite_path)
        run_id = str(uuid.uuid4())
        try:
            lock.mark_alive(run_id)
        except SQLAlchemyError as exc:
            lock.release()
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        pid = os.getpid()
        started = _now()
        run = Run(
            id=run_id,
            started_at=started,
            status="running",
            host=host_name(),
            pid=pid,
            proc_start=process_start(pid),
            trigger=trigger,
            job=job,
            scheduled_for=scheduled_for.astimezone(UTC) if scheduled_for is not None else None,
            heartbeat_at=started,
            rerun_of=rerun_of,
        )
        claim = trigger == "schedule" and scheduled_for is not None
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                s.add(run)
                s.flush()
                trail.record_run_started(s, run, self.audit_key)
                if claim and scheduled_for is not None:
                    s.flush()
                    if rerun_of is not None:
                        _claim_lost_firing(s, job, scheduled_for, rerun_of, run)
                    else:
                        s.add(
                            JobFiring(
                                job=job,
                                scheduled_for=scheduled_for,
                                run_id=run_id,
                                instance=f"{run.host}:{pid}",
                                claimed_at=run.started_at,
                            )
                        )
        except FiringTaken:
            lock.release()
            raise
        except IntegrityError as exc:
            lock.release()
            if claim:
                raise FiringTaken(f"{job} firing of {scheduled_for} was claimed by another instance") from exc
            raise LedgerError(f"database refused the write: {_first_line(exc, self.url)}") from exc
        except SQLAlchemyError as exc:
            lock.release()
            raise LedgerError(f"database {redact_url(self.url)} failed: {_first_line(exc, self.url)}") from exc
        except BaseException:
            lock.release()
            raise
        heartbeat = Heartbeat(self.engine, run_id, lambda exc: _first_line(exc, self.url)).start()
        lock.on_release(heartbeat.stop)
        return _run_summary(run), lock

    def hold_ledger(
        self,
        run_id: str,
        lock: RunLock,
        timeout: float,
        on_wait: Callable[[], None],
        chains: tuple[str, ...] | None = None,
    ) -> None:
        """Wait, at most ``timeout`` seconds, for the ledger's writer lock (with ``chains``, a
        watcher's run: shared, and those chains' locks; see reconciler.ledger.locks); a run that
        gives up is recorded incomplete ("another run holds the ledger") and LedgerError is
        raised."""
        try:
            lock.acquire(timeout, on_wait, chains)
        except LockTimeout:
            reason = f"{LEDGER_HELD} (waited {timeout:g}s); try again when it has finished"
        except SQLAlchemyError as exc:
            reason = f"database failed while waiting for the ledger: {_first_line(exc, self.url)}"
        else:
            return
        self.abandon_run(run_id, reason)
        raise LedgerError(reason)

    def finish_run(
        self,
        run_id: str,
        chains: Sequence[ChainResult],
        positions: Sequence[Position],
        findings: Sequence[Finding],
        coverage: Container[BreakKey],
        decimals: Mapping[str, int],
        status: str,
        reason: str | None,
        exit_code_for: _ExitCode,
        baselines: NewBaselines | None = None,
        writes: Sequence[RunWrite] = (),
        notes: Mapping[BreakKey, str] | None = None,
        tentative: Mapping[BreakKey, BlockRef] | None = None,
        confirm: Sequence[Confirmation] = (),
    ) -> tuple[RunSummary, list[BreakRecord]]:
        """Write everything the run found in one transaction and return the breaks to report:
        every break active after the run, plus those this run resolved.

        A finding whose key is in ``tentative`` opens a tentative break, its evidence block
        (short of its chain's confirmations) recorded with it; each of ``confirm`` whose break is
        still tentative and active is confirmed. A tentative break resolved because its movement
        or execution was reorged away (its key has a note, see reconciler.engine.passes) is
        retracted: resolved, with a ``retracted`` event instead of ``resolved``, never confirmed.

        The findings meet the breaks as they are inside this transaction (rows locked on
        PostgreSQL; SQLite's write lock is taken at BEGIN), never as an earlier read saw them:
        an acknowledgement or a manual resolution made meanwhile is respected.
        """
        now = _now()
        blocks = {c.chain: c.block for c in chains}
        with self._session(staging.attachments(positions, baselines.staged if baselines else ())) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LedgerError(f"run {run_id} vanished from the ledger")
            if run.status != "running":
                raise LedgerError(f"run {run_id} was closed meanwhile as {run.status}: {run.reason}")
            active_rows = {
                r.id: r
                for r in s.scalars(
                    select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value).with_for_update()
                )
            }
            plan = plan_breaks(
                [_active(r) for r in active_rows.values()],
                findings,
                coverage,
            )
            snaps = snapshots.plan(s, run_id, blocks, positions)
            for c in chains:
                taken = snaps.chains.get(c.chain)
                s.add(
                    RunChain(
                        run_id=run_id,
                        chain=c.chain,
                        chain_id=c.chain_id,
                        block_number=c.block.number if c.block else None,
                        block_hash=c.block.hash if c.block else None,
                        read_path=c.read_path,
                        error=c.error,
                        sources=_sources_json(c.sources),
                        **(taken.columns() if taken is not None else {}),
                    )
                )
            s.flush()  # the run's chain rows first
            snapshots.insert_rows(s, snaps.rows)
            snapshots.insert_staged(s, run_id, snaps.staged)
            s.flush()
            if baselines is not None:
                _add_baselines(s, baselines, run_id)
            for extra in writes:
                extra.apply(s, run_id)
            existing = active_rows
            opened: list[tuple[BreakRow, str]] = []
            for f in plan.opened:
                block = blocks.get(f.key.chain)
                row = BreakRow(
                    id=str(uuid.uuid4()),
                    key=key_text(f.key),
                    kind=f.key.kind.value,
                    severity=f.severity.value,
                    status=BreakStatus.OPEN.value,
                    chain=f.key.chain,
                    wallet=f.key.wallet,
                    asset=f.key.asset,
                    tx_hash=f.key.tx_hash,
                    amount=f.amount,
                    detail=f.detail,
                    block_number=block.number if block else None,
                    block_hash=block.hash if block else None,
                    first_run_id=run_id,
                    last_run_id=run_id,
                    opened_at=now,
                    last_seen_at=now,
                    times_seen=1,
                    decimals=decimals.get(f.key.asset) if f.key.asset else None,
                )
                evidence = (tentative or {}).get(f.key)
                if evidence is not None:
                    row.tentative = True
                    row.evidence_block_number, row.evidence_block_hash = evidence.number, evidence.hash
                s.add(row)
                opened.append((row, f.detail))
            s.flush()  # break rows before the events that reference them (no ORM relationship orders them)
            changes: list[trail.BreakChange] = []

            def record(row: BreakRow, event: str, note: str) -> None:
                ev = _event(row, run_id, event, now, note)
                s.add(ev)
                changes.append(change(row, ev))

            for row, detail in opened:
                record(row, "opened", detail)
            for active, f in plan.seen_again:
                row = existing[active.id]
                block = blocks.get(f.key.chain)
                escalated = f.severity.rank > Severity(row.severity).rank
                row.amount = f.amount
                row.detail = f.detail
                row.severity = f.severity.value
                row.last_run_id = run_id
                row.last_seen_at = now
                row.times_seen += 1
                if f.key.asset and f.key.asset in decimals:
                    row.decimals = decimals[f.key.asset]
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                record(row, "seen", f.detail)
                if escalated:
                    record(row, "escalated", f"severity rose to {f.severity.value}")
            for active in plan.resolved:
                row = existing[active.id]
                row.status = BreakStatus.RESOLVED.value
                row.resolved_run_id = run_id
                row.resolved_at = now
                block = blocks.get(row.chain)
                if block is not None:
                    row.block_number, row.block_hash = block.number, block.hash
                why = (notes or {}).get(active.key, "not found by a run that checked it")
                if row.tentative and notes is not None and active.key in notes:
                    record(row, "retracted", f"reorged: {why}")
                else:
                    record(row, "resolved", why)
            for confirmation in confirm:
                held = existing.get(confirmation.break_id)
                evidence = confirmation.block
                if held is None or not held.tentative or held.status == BreakStatus.RESOLVED.value:
                    continue
                if (held.evidence_block_number, held.evidence_block_hash) != (evidence.number, evidence.hash):
                    continue
                held.tentative = False
                record(
                    held,
                    "confirmed",
                    f"block {evidence.number} ({evidence.hash}) has {confirmation.confirmations} confirmation(s) "
                    "and is still canonical",
                )
            s.flush()
            trail.record_break_events(s, self.alerts, changes, self.audit_key)
            after = list(s.scalars(select(BreakRow).where(col(BreakRow.status) != BreakStatus.RESOLVED.value)))
            resolved_rows = [existing[b.id] for b in plan.resolved]
            report = [_record(r) for r in sorted(after + resolved_rows, key=_order)]
            run.status = status
            run.reason = reason
            run.finished_at = now
            run.exit_code = exit_code_for(status, report)
            trail.record_run_outcome(s, self.alerts, run, self.audit_key)
            return _run_summary(run), report

    def abandon_run(self, run_id: str, reason: str) -> None:
        """Mark a run incomplete after a failure or a signal stopped it (a finished run keeps
        its outcome)."""
        with self._session() as s:
            run = s.get(Run, run_id, with_for_update=True)
            if run is None or run.status != "running":
                return
            run.status, run.reason, run.finished_at, run.exit_code = "incomplete", reason, _now(), 2
            trail.record_run_outcome(s, self.alerts, run, self.audit_key)

    def abandon_runs_of_this_process(self, reason: str) -> list[str]:
        """Mark incomplete every run this process still has ``running`` (a stopping daemon whose
        jobs did not reach a safe point in time); returns their ids."""
        with self._session() as s:
            runs = list(
                s.scalars(
                    select(Run)
                    .where(col(Run.status) == "running", col(Run.host) == host_name(), col(Run.pid) == os.getpid())
                    .with_for_update()
                )
            )
            for run in runs:
                run.status, run.reason, run.finished_at, run.exit_code = "incomplete", reason, _now(), 2
                trail.record_run_outcome(s, self.alerts, run, self.audit_key)
            return [r.id for r in runs]

    def baselines(self) -> Baselines:
        wallets: dict[tuple[str, str], WalletConfig] = {}
        reviewed: dict[tuple[str, str], bool] = {}
        tokens: dict[tuple[str, str], TokenImplementation] = {}
        with self._session() as s:
            # Only the newest row per (chain, wallet), as plain columns: older rows are the
            # history of reviews, and an ORM object per row cost most of this at 10,000 wallets.
            newest = select(func.max(col(WalletBaseline.id))).group_by(
                col(WalletBaseline.chain), col(WalletBaseline.wallet)
            )
            rows = s.execute(
                select(
                    col(WalletBaseline.chain),
                    col(WalletBaseline.wallet),
                    col(WalletBaseline.config),
                    col(WalletBaseline.reviewed),
                ).where(col(WalletBaseline.id).in_(newest.scalar_subquery()))
            )
            for chain, wallet, config, was_reviewed in rows:
                wallets[(chain, wallet)] = WalletConfig.from_json(json.loads(config))
                reviewed[(chain, wallet)] = bool(was_reviewed)
            for t in s.scalars(select(TokenBaseline).order_by(col(TokenBaseline.id))):
                tokens[(t.chain, t.token)] = TokenImplementation.from_json(json.loads(t.implementation))
        return Baselines(wallets, reviewed, tokens)

    def baseline_view(self, upto: int | None = None, tokens_upto: int | None = None) -> BaselineView:
        """The baselines as they are now, for a run to read wallet by wallet chunk
        (``wallet_baselines_of``): every token's, and how far the wallets' rows go (a baseline
        recorded later, e.g. by `wallets baseline` while the run reads, is not its). With
        ``upto`` and ``tokens_upto``: as they were when another process took its view."""
        with self._session() as s:
            if upto is None:
                upto = int(s.scalar(select(func.max(col(WalletBaseline.id)))) or 0)
            if tokens_upto is None:
                tokens_upto = int(s.scalar(select(func.max(col(TokenBaseline.id)))) or 0)
            tokens = {
                (t.chain, t.token): TokenImplementation.from_json(json.loads(t.implementation))
                for t in s.scalars(
                    select(TokenBaseline).where(col(TokenBaseline.id) <= tokens_upto).order_by(col(TokenBaseline.id))
                )
            }
        return BaselineView(upto, tokens, tokens_upto)

    def stored_positions(self, chain: str) -> int | None:
        """How many positions the newest run that stored them holds on ``chain`` (None: none)."""
        with self._session() as s:
            found = s.execute(
                select(col(RunChain.positions))
                .where(col(RunChain.chain) == chain, col(RunChain.snapshot_seq).is_not(None))
                .order_by(col(RunChain.snapshot_seq).desc())
                .limit(1)
            ).first()
        return None if found is None or found[0] is None else int(found[0])

    def wallet_baselines_of(
        self,
        view: BaselineView,
        chain: str,
        wallets: Sequence[str],
        observed: Mapping[str, WalletConfig] | None = None,
    ) -> dict[tuple[str, str], WalletConfig]:
        """The newest baseline (as ``view`` saw them) of each of ``wallets`` on ``chain`` that
        has one; served by the (chain, wallet) index. A baseline equal to the configuration
        ``observed`` (by wallet name) but for its block is that configuration at the
        baseline's block: not parsed and checked field by field again (most of a fleet's)."""
        newest: dict[str, tuple[int, int, str]] = {}
        with self._session() as s:
            sqlite = s.get_bind().dialect.name == "sqlite"
            for part in _chunks(list(wallets)):
                query = select(
                    col(WalletBaseline.wallet),
                    col(WalletBaseline.id),
                    col(WalletBaseline.block_number),
                    col(WalletBaseline.config),
                ).where(
                    col(WalletBaseline.chain) == chain,
                    col(WalletBaseline.wallet).in_(part),
                    col(WalletBaseline.id) <= view.upto,
                )
                for wallet, row_id, block, config in _raw_rows(s, query) if sqlite else s.execute(query):
                    if wallet not in newest or newest[wallet][0] < int(row_id or 0):
                        newest[wallet] = (int(row_id or 0), int(block), config)
        out: dict[tuple[str, str], WalletConfig] = {}
        for w, (_, block, text) in newest.items():
            seen = observed.get(w) if observed is not None else None
            # The very text this configuration stores as at the baseline's block: it is that
            # configuration, compared without parsing the baseline.
            if seen is not None and seen.to_text(block) == text:
                out[(chain, w)] = seen.at_block(block)
                continue
            data = json.loads(text)
            if seen is not None and seen.same_as_stored(data):
                out[(chain, w)] = seen.at_block(data["block_number"])
                continue
            out[(chain, w)] = WalletConfig.from_json(data)
        return out

    def record_baselines(self, baselines: NewBaselines) -> None:
        with self._session() as s:
            _add_baselines(s, baselines, None)

    def save_document(self, run_id: str, document: Mapping[str, Any]) -> None:
        """Keep the run's `--json` document as printed, without its positions (those are the
        run's balance snapshots), so `runs show` reproduces it."""
        doc = {k: v for k, v in document.items() if k != "positions"}
        with self._session() as s:
            s.execute(update(Run).where(col(Run.id) == run_id).values(document=json.dumps(doc)))

    def list_runs(self, limit: int) -> list[RunSummary]:
        with self._session() as s:
            rows = s.scalars(select(Run).order_by(col(Run.started_at).desc(), col(Run.id)).limit(limit))
            return [_run_summary(r) for r in rows]

    def get_run(self, run_id: str) -> StoredRun:
        with self._session() as s:
            run = s.get(Run, _resolve_prefix(s, Run, col(Run.id), run_id, "run", "`reconciler runs list`"))
            assert run is not None
            chains = [
                ChainResult(
                    c.chain,
                    c.chain_id,
                    BlockRef(c.block_number, c.block_hash) if c.block_number is not None and c.block_hash else None,
                    c.read_path,
                    c.error,
                    _sources_from_json(c.sources),
                )
                for c in s.scalars(select(RunChain).where(col(RunChain.run_id) == run.id))
            ]
            positions = [
                StoredPosition(chain, p.wallet, p.asset, p.decimals, p.book, p.onchain)
                for chain, p in snapshots.run_positions(s, run.id)
            ]
            document = json.loads(run.document) if run.document else None
            head = trail.Head(run.audit_seq, run.audit_hash) if run.audit_seq is not None and run.audit_hash else None
            return StoredRun(_run_summary(run), document, chains, positions, head)


def _claim_lost_firing(s: Session, job: str, scheduled_for: datetime, lost_run: str, run: Run) -> None:
    """Claim the firing whose run ``lost_run`` died for ``run``: one conditional update, which
    matches only while the firing is lost, still names that run and has had one attempt (on
    PostgreSQL a second claimant waits for the first and then matches nothing; SQLite takes its
    write lock first)."""
    claimed = s.execute(
        update(JobFiring)
        .where(
            col(JobFiring.job) == job,
            col(JobFiring.run_id) == lost_run,  # the firing's run: names the firing itself
            col(JobFiring.lost_at).is_not(None),
            col(JobFiring.attempts) < MAX_FIRING_ATTEMPTS,
        )
        .values(
            run_id=run.id,
            attempts=col(JobFiring.attempts) + 1,
            instance=f"{run.host}:{run.pid}",
            claimed_at=run.started_at,
            lost_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise FiringTaken(f"{job} firing of {scheduled_for} was re-run by another instance, or already re-run")


def _add_baselines(s: Session, baselines: NewBaselines, run_id: str | None) -> None:
    now = _now()
    # Plain rows, one executemany per batch, in order (the newest id per wallet is its
    # baseline): a first run at 100,000 wallets records 100,000 of them, which as one list of
    # dicts (and SQLAlchemy's parameters for it) held ~200 MB at once.
    names = ("chain", "wallet", "address", "block_number", "block_hash", "config", "reviewed", "note", "recorded_at",
             "run_id")  # fmt: skip
    wallet_rows = (
        (config.chain, config.wallet, config.address, config.block_number, block_hash,
         config.text if isinstance(config, ConfigText) else config.to_text(), baselines.reviewed, baselines.note,
         now, run_id)  # fmt: skip
        for config, block_hash in baselines.wallets
    )
    table: Any = WalletBaseline.__table__  # type: ignore[attr-defined]
    if baselines.staged:
        dialect = s.connection().dialect
        bound = [
            bind(value) if (bind := table.columns[name].type._cached_bind_processor(dialect)) is not None else value
            for name, value in (("reviewed", baselines.reviewed), ("note", baselines.note), ("recorded_at", now))
        ]
        for chain, block_hash, stage in baselines.staged:
            s.connection().exec_driver_sql(
                f"INSERT INTO wallet_baseline ({', '.join(names)}) "
                "SELECT ?, wallet, address, block_number, ?, config, ?, ?, ?, ? "
                f"FROM ({staging.union(stage, 'configs')}) ORDER BY seq",
                (chain, block_hash, *bound, run_id),
            )
    insert_plain(s, table, names, wallet_rows, _BASELINE_BATCH)
    s.add_all(
        TokenBaseline(
            chain=chain,
            token=impl.token,
            block_number=impl.block_number,
            implementation=json.dumps(impl.to_json()),
            reviewed=baselines.reviewed,
            recorded_at=now,
            run_id=run_id,
        )
        for chain, impl in baselines.tokens
    )


def _sources_json(sources: Sequence[tuple[str, str | None]]) -> str | None:
    if not sources:
        return None
    return json.dumps([{"endpoint": endpoint, "client_version": version} for endpoint, version in sources])


def _sources_from_json(text: str | None) -> tuple[tuple[str, str | None], ...]:
    if not text:
        return ()
    return tuple((str(s["endpoint"]), s.get("client_version")) for s in json.loads(text))


def _run_summary(run: Run) -> RunSummary:
    return RunSummary(
        id=run.id,
        started_at=_utc(run.started_at),
        finished_at=_utc(run.finished_at) if run.finished_at else None,
        status=run.status,
        reason=run.reason,
        exit_code=run.exit_code,
        trigger=run.trigger,
        job=run.job,
        scheduled_for=_utc(run.scheduled_for) if run.scheduled_for else None,
        instance=f"{run.host}:{run.pid}" if run.host else None,
        rerun_of=run.rerun_of,
    )
