"""One segregation statement: record it as a run -> hold the ledger -> pin a block per chain (now,
or the last at or before an instant) -> read holdings and price feeds -> load books, equity and
off-chain funds -> engine -> store the statements with their inputs -> the breaks' lifecycle.

Invariants: the statement is a run (job "segregation_statement") from its first step, so any
failure or signal leaves it recorded incomplete with the reason; it holds the ledger's writer
lock like every run; an as-of pin is final — the block is the highest at or before the instant,
the chain has a later block (so no block at or before the instant can still appear) and the
block has the chain's confirmations — and otherwise the chain is unread, with the reason; a
chain that could not be read makes the statements that need it incomplete; the exit code is 2
for an incomplete statement, else 1 when a segregation break of severity error or critical that
this statement looks at is open or acknowledged, else 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from chains.base import BalanceQuery
from reconciler.app.documents import run_header
from reconciler.app.segregation_documents import iso_seconds, pilot_doc, price_doc, statement_doc
from reconciler.domain import BlockRef, BreakKind, BreakRecord, BreakStatus, SegClass, Severity
from reconciler.engine.segregation.findings import statement_findings
from reconciler.engine.segregation.pilot import pilot_report
from reconciler.engine.segregation.requirement import compute_statements
from reconciler.engine.segregation.stored import inputs_to_json
from reconciler.engine.segregation.valuation import resolve_price
from reconciler.engine.segregation.values import (
    ALL_CLASSES,
    CLASS_CHAIN,
    ChainPin,
    FeedReading,
    IssuerHold,
    SegregationInputs,
    Statement,
    to_cent_units,
)
from reconciler.engine.wallets import ERC3643_FREEZE_VIEW
from reconciler.errors import ChainError, LedgerError, chain_message
from reconciler.inputs.settings import AssetSettings, ChainSettings, Settings, WalletSettings
from reconciler.interrupt import Interrupted
from reconciler.ledger import segregation_store as store
from reconciler.ledger.runs import ChainResult, RunSummary
from reconciler.ledger.store import Ledger
from reconciler.walletconfig import ControlState, FreezeQuery, IssuerControls

log = logging.getLogger(__name__)

JOB = "segregation_statement"
SEGREGATION_KINDS = frozenset(
    {
        BreakKind.SEGREGATION_DEFICIT,
        BreakKind.RESIDUAL_INTEREST_BELOW_TARGET,
        BreakKind.COMMINGLING,
        BreakKind.CONCENTRATION_LIMIT,
    }
)
REORG_RETRIES = 2


class ValuationReader(Protocol):
    """What a statement reads of one chain (chains.evm.valuation.EvmValuationReader)."""

    @property
    def read_path(self) -> str | None: ...

    def chain_id(self) -> int: ...

    def head(self) -> int: ...

    def header(self, block: BlockRef) -> ChainPin: ...

    def header_at(self, number: int) -> ChainPin: ...

    def last_at_or_before(self, instant: int, head: int) -> ChainPin | None: ...

    def pin(self, confirmations: int) -> BlockRef: ...

    def block_hash(self, number: int) -> str: ...

    def token_decimals(self, tokens: Sequence[str], block: BlockRef) -> list[int]: ...

    def balances(self, queries: Sequence[BalanceQuery], block: BlockRef) -> list[int]: ...

    def feeds(self, feeds: Sequence[str], block: BlockRef, block_time: int) -> list[FeedReading]: ...

    def issuer_controls(
        self,
        freezes: Sequence[FreezeQuery],
        pauses: Sequence[str],
        implementations: Sequence[str],
        block: BlockRef,
        frozen: Sequence[tuple[str, str]] = (),
    ) -> IssuerControls: ...

    def close(self) -> None: ...


ReaderFactory = Callable[[ChainSettings], ValuationReader]


@dataclass(frozen=True, slots=True)
class ChainReading:
    pin: ChainPin
    balances: dict[tuple[str, str], int]
    feeds: dict[str, FeedReading]
    holds: dict[tuple[str, str], IssuerHold] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatementReport:
    run: RunSummary
    as_of: datetime
    business_date: date
    classes: tuple[SegClass, ...]
    chains: tuple[ChainResult, ...]
    pins: Mapping[str, ChainPin] = field(default_factory=dict)
    inputs: SegregationInputs | None = None
    statements: tuple[Statement, ...] = ()
    breaks: tuple[BreakRecord, ...] = ()

    @property
    def exit_code(self) -> int:
        return statement_exit_code(self.run.status, self.breaks)


def statement_exit_code(status: str, breaks: Sequence[BreakRecord]) -> int:
    if status != "complete":
        return 2
    blocking = (BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED)
    return 1 if any(b.status in blocking and b.severity.rank >= Severity.ERROR.rank for b in breaks) else 0


def relevant(brk: BreakRecord, classes: Sequence[SegClass]) -> bool:
    """Segregation breaks a statement of ``classes`` speaks for: commingling always, class-level
    breaks of those classes."""
    if brk.key.kind not in SEGREGATION_KINDS:
        return False
    if brk.key.chain == CLASS_CHAIN:
        return brk.key.wallet in {c.value for c in classes}
    return True


# --------------------------------------------------------------------------- reading chains


def _iso(instant: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(instant, tz).isoformat()


def pin_for(chain: ChainSettings, reader: ValuationReader, instant: int | None, tz: ZoneInfo) -> ChainPin:
    """Now: head - confirmations. As of an instant: the highest block at or before it, once final."""
    if instant is None:
        return reader.header(reader.pin(chain.confirmations))
    head = reader.head()
    found = reader.last_at_or_before(instant, head)
    when = _iso(instant, tz)
    if found is None:
        first = reader.header_at(0)
        raise ChainError(
            f"chain {chain.name} has no block at or before {when} (its first block is at {_iso(first.timestamp, tz)})"
        )
    if found.block.number >= head:
        raise ChainError(
            f"chain {chain.name} has not passed {when} yet: its newest block {head} is at "
            f"{_iso(found.timestamp, tz)}, and a block at or before that instant could still come; "
            "try again once a later block exists"
        )
    if found.block.number > head - chain.confirmations:
        raise ChainError(
            f"block {found.block.number}, the last at or before {when} on chain {chain.name}, has "
            f"{head - found.block.number} confirmation(s); chains.{chain.name}.confirmations = "
            f"{chain.confirmations}: try again later"
        )
    return found


def read_for_segregation(
    chain: ChainSettings, settings: Settings, reader: ValuationReader, instant: int | None
) -> ChainReading:
    """Holdings of every configured wallet x asset of the chain and every price feed of its
    assets, at one pin; reads that raced a reorg of the pin are thrown away and made again."""
    node_chain_id = reader.chain_id()
    if node_chain_id != chain.chain_id:
        raise ChainError(
            f"the node reports chain id {node_chain_id} but chains.{chain.name}.chain_id = "
            f"{chain.chain_id}: is rpc_urls pointing at the right network?"
        )
    tz = ZoneInfo(settings.segregation.timezone)
    assets = settings.assets_on(chain.name)
    tokens = [a for a in assets if a.address is not None]
    pairs = [(w, a) for w in settings.wallets_on(chain.name) for a in assets]
    queries = [BalanceQuery(w.address, a.address) for w, a in pairs]
    priced = [a for a in assets if a.price_feed is not None]
    for _attempt in range(REORG_RETRIES + 1):
        pin = pin_for(chain, reader, instant, tz)
        block = pin.block
        decimals = reader.token_decimals([a.address for a in tokens if a.address is not None], block)
        for asset, reported in zip(tokens, decimals, strict=True):
            if reported != asset.decimals:
                raise ChainError(
                    f"token {asset.address} reports decimals() = {reported} at block {block.number} but "
                    f"assets.{asset.name}.decimals = {asset.decimals}: fix the configuration"
                )
        values = reader.balances(queries, block) if queries else []
        feeds = reader.feeds([a.price_feed for a in priced if a.price_feed is not None], block, pin.timestamp)
        holds = read_holds(reader, settings.wallets_on(chain.name), tokens, block)
        if reader.block_hash(block.number) == block.hash:
            return ChainReading(
                pin,
                {(w.name, a.name): v for (w, a), v in zip(pairs, values, strict=True)},
                {a.name: r for a, r in zip(priced, feeds, strict=True)},
                holds,
            )
        log.warning("event=reorg chain=%s block=%d hash=%s action=repin", chain.name, block.number, block.hash)
    raise ChainError(f"block after block was replaced by reorgs ({REORG_RETRIES + 1} pins); raise confirmations")


def _known(state: ControlState) -> bool | None:
    return None if state is ControlState.UNKNOWN else state is ControlState.YES


def read_holds(
    reader: ValuationReader, wallets: Sequence[WalletSettings], tokens: Sequence[AssetSettings], block: BlockRef
) -> dict[tuple[str, str], IssuerHold]:
    """What the issuers of the ERC-3643 tokens hold back of each wallet at ``block``:
    getFrozenTokens, isFrozen and paused(), in one batch with the issuer-control reads of a run."""
    erc3643 = [a for a in tokens if a.erc3643 and a.address is not None]
    if not erc3643 or not wallets:
        return {}
    controls = reader.issuer_controls(
        [FreezeQuery(a.address, w.address, ERC3643_FREEZE_VIEW) for a in erc3643 for w in wallets if a.address],
        [a.address for a in erc3643 if a.address],
        [],
        block,
        [(a.address, w.address) for a in erc3643 for w in wallets if a.address],
    )
    flags = {(r.token, r.holder): r for r in controls.freezes}
    pauses = {r.token: r for r in controls.pauses}
    frozen = {(r.token, r.holder): r for r in controls.frozen}
    holds: dict[tuple[str, str], IssuerHold] = {}
    for a in erc3643:
        assert a.address is not None
        pause = pauses[a.address]
        for w in wallets:
            amount, flag = frozen[(a.address, w.address)], flags[(a.address, w.address)]
            notes = "; ".join(n for n in (amount.note, flag.note, pause.note) if n)
            holds[(w.name, a.name)] = IssuerHold(amount.amount, _known(flag.state), _known(pause.state), notes)
    return holds


def read_chains(
    settings: Settings, readers_for: ReaderFactory, instant: int | None, checkpoint: Callable[[], None]
) -> tuple[list[ChainResult], dict[str, ChainReading]]:
    results: list[ChainResult] = []
    read: dict[str, ChainReading] = {}
    for chain in settings.chains.values():
        checkpoint()
        try:
            reader = readers_for(chain)
            try:
                reading = read_for_segregation(chain, settings, reader, instant)
                path = reader.read_path
            finally:
                reader.close()
        except Exception as exc:  # noqa: BLE001 - any failure makes the chain unread, never clean
            why = str(exc) if isinstance(exc, ChainError) else f"{type(exc).__name__}: {exc}"
            log.error("event=chain_failed job=%s chain=%s reason=%r", JOB, chain.name, why)
            results.append(ChainResult(chain.name, None, None, None, why))
            continue
        read[chain.name] = reading
        results.append(ChainResult(chain.name, chain.chain_id, reading.pin.block, path, None))
    return results, read


def build_inputs(
    settings: Settings,
    as_of: datetime,
    business_date: date,
    results: Sequence[ChainResult],
    read: Mapping[str, ChainReading],
    classes: Sequence[SegClass] = ALL_CLASSES,
    ledger: Ledger | None = None,
) -> SegregationInputs:
    """The engine's inputs from what was read and (when a ledger is given) what the books,
    accounts, equity and off-chain imports say for the business date: book entries dated on or
    before it, the equity and off-chain rows of the latest day on or before it (nothing dated
    later is ever used, so the same instant always gives the same statement)."""
    holdings: dict[tuple[str, str], int] = {}
    feeds: dict[str, FeedReading] = {}
    holds: dict[tuple[str, str], IssuerHold] = {}
    for reading in read.values():
        holdings.update(reading.balances)
        feeds.update(reading.feeds)
        holds.update(reading.holds)
    return SegregationInputs(
        as_of=as_of,
        business_date=business_date,
        wallets=settings.wallets,
        assets=settings.assets,
        segregation=settings.segregation,
        accounts=store.account_classes(ledger) if ledger else {},
        book=tuple(store.book_holdings(ledger, business_date)) if ledger else (),
        holdings=holdings,
        chains={name: r.pin for name, r in read.items()},
        unread={c.chain: c.error for c in results if c.error},
        feeds=feeds,
        equity=tuple(store.equity_for(ledger, business_date)) if ledger else (),
        offchain=tuple(store.offchain_for(ledger, business_date)) if ledger else (),
        classes=tuple(classes),
        holds=holds,
        books_through=business_date if ledger else None,
    )


def business_date_of(instant: datetime, settings: Settings) -> date:
    """The business date of an instant: its date in the firm's time zone ([segregation]
    timezone, else [schedule] timezone, else UTC), whatever zone the instant was written in."""
    return instant.astimezone(ZoneInfo(settings.segregation.timezone)).date()


# --------------------------------------------------------------------------- the statement run


def _cents(value: Decimal | None) -> int | None:
    return None if value is None else to_cent_units(value)


def run_statement(
    settings: Settings,
    ledger: Ledger,
    readers_for: ReaderFactory,
    as_of: datetime | None = None,
    classes: Sequence[SegClass] = ALL_CLASSES,
    on_wait: Callable[[], None] = lambda: None,
    checkpoint: Callable[[], None] = lambda: None,
    trigger: str = "cli",
    scheduled_for: datetime | None = None,
    rerun_of: str | None = None,
) -> StatementReport:
    """``as_of`` None: at each chain's current pin, as of now. Otherwise as of that instant.
    ``rerun_of``: a lost scheduled firing run again (see `Ledger.begin_run`)."""
    tz = ZoneInfo(settings.segregation.timezone)
    instant = None if as_of is None else int(as_of.timestamp())
    when = (as_of or datetime.now(tz).replace(microsecond=0)).astimezone(as_of.tzinfo if as_of else tz)
    business_date = business_date_of(when, settings)
    run, lock = ledger.begin_run(trigger, JOB, scheduled_for, rerun_of)
    log.info("event=run_started run_id=%s trigger=%s job=%s as_of=%s", run.id, trigger, JOB, when.isoformat())
    base = StatementReport(run, when, business_date, tuple(classes), ())
    try:
        try:
            ledger.hold_ledger(run.id, lock, settings.lock_timeout, on_wait)
            return _statement(settings, ledger, readers_for, base, instant, checkpoint)
        except Interrupted as exc:
            reason = f"interrupted by {exc.signame} before the statement finished; nothing it saw was saved"
            log.error("event=run_interrupted run_id=%s reason=%r", run.id, reason)
            ledger.abandon_run(run.id, reason)
            return _incomplete(settings, base, reason)
        except LedgerError as exc:  # hold_ledger recorded it
            return _incomplete(settings, base, str(exc))
    finally:
        lock.release()


def _incomplete(settings: Settings, base: StatementReport, reason: str) -> StatementReport:
    unread = tuple(ChainResult(name, None, None, None, f"not read: {reason}") for name in settings.chains)
    return replace(base, run=replace(base.run, status="incomplete", reason=reason, exit_code=2), chains=unread)


def _statement(
    settings: Settings,
    ledger: Ledger,
    readers_for: ReaderFactory,
    base: StatementReport,
    instant: int | None,
    checkpoint: Callable[[], None],
) -> StatementReport:
    run = base.run
    results, read = read_chains(settings, readers_for, instant, checkpoint)
    pins = {name: r.pin for name, r in read.items()}
    try:
        inputs = build_inputs(settings, base.as_of, base.business_date, results, read, base.classes, ledger)
        statements = compute_statements(inputs)
        checked = statement_findings(inputs, statements)
        problems = [chain_message(c.chain, c.error) for c in results if c.error]
        problems += [f"{st.seg_class.value}: {p}" for st in statements for p in st.problems]
        problems = list(dict.fromkeys(problems))
        status = "incomplete" if problems else "complete"
        reason = "; ".join(problems) or None
        write = store.StatementWrite(
            base.as_of,
            base.business_date,
            inputs_to_json(inputs),
            tuple(
                store.StatementFigures(
                    st.seg_class,
                    st.complete,
                    _cents(st.amount_required),
                    _cents(st.funds_in_segregation),
                    _cents(st.excess),
                    _cents(st.target_residual_interest),
                    statement_doc(st),
                )
                for st in statements
            ),
        )
        checkpoint()
        decimals = {a.name: a.decimals for a in settings.assets.values()}

        def exit_code_for(status: str, breaks: Sequence[BreakRecord]) -> int:
            return statement_exit_code(status, [b for b in breaks if relevant(b, base.classes)])

        summary, breaks = ledger.finish_run(
            run.id,
            results,
            [],
            checked.findings,
            checked.coverage,
            decimals,
            status,
            reason,
            exit_code_for,
            writes=(write,),
        )
    except Exception as exc:  # noqa: BLE001 - a statement that exists always ends recorded, never clean
        what = "database failed during the statement" if isinstance(exc, LedgerError) else "the statement failed"
        detail = str(exc) if isinstance(exc, LedgerError) else f"{type(exc).__name__}: {exc}"
        reason = f"{what}: {detail}"
        log.error("event=run_failed run_id=%s reason=%r", run.id, reason)
        try:
            ledger.abandon_run(run.id, reason)
        except LedgerError:
            log.error("event=run_unrecorded run_id=%s", run.id)
        return replace(
            base, run=replace(run, status="incomplete", reason=reason, exit_code=2), chains=tuple(results), pins=pins
        )
    log.info(
        "event=run_finished run_id=%s job=%s status=%s exit_code=%s", run.id, JOB, summary.status, summary.exit_code
    )
    return replace(
        base,
        run=summary,
        chains=tuple(results),
        pins=pins,
        inputs=inputs,
        statements=tuple(statements),
        breaks=tuple(b for b in breaks if relevant(b, base.classes)),
    )


# --------------------------------------------------------------------------- documents


def chains_doc(results: Sequence[ChainResult], pins: Mapping[str, ChainPin]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in results:
        doc: dict[str, Any] = {
            "block_number": c.block.number if c.block else None,
            "block_hash": c.block.hash if c.block else None,
        }
        pin = pins.get(c.chain)
        doc["block_time"] = iso_seconds(pin.timestamp) if pin else None
        if c.error:
            doc["error"] = c.error
        out[c.chain] = doc
    return out


def statement_document(report: StatementReport, settings: Settings, breaks: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = report.inputs
    prices = (
        [price_doc(resolve_price(a, inputs), a.chain) for a in settings.assets.values()] if inputs is not None else []
    )
    return {
        **run_header(report.run, report.exit_code),
        "as_of": report.as_of.isoformat(),
        "business_date": report.business_date.isoformat(),
        "chains": chains_doc(report.chains, report.pins),
        "prices": prices,
        "statements": [statement_doc(st) for st in report.statements],
        "breaks": breaks,
    }


# --------------------------------------------------------------------------- pilot report


def pilot(settings: Settings, readers_for: ReaderFactory, week: str, close: datetime) -> tuple[dict[str, Any], int]:
    """The weekly report of digital assets held for customers, as of ``close``; its exit code is
    0 when complete, 2 otherwise. Reads chains only (no ledger)."""
    results, read = read_chains(settings, readers_for, int(close.timestamp()), lambda: None)
    inputs = build_inputs(settings, close, close.date(), results, read)
    report = pilot_report(inputs)
    doc = pilot_doc(week, close, chains_doc(results, {n: r.pin for n, r in read.items()}), report)
    return doc, 0 if not report.problems else 2
