"""`run`, `scan`, `runs list` and `runs show`: one reconciliation or surveillance pass from
the command line, and the runs the ledger keeps.

Invariant: a run interrupted by SIGINT or SIGTERM is recorded incomplete and still reported
before the command exits 2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli import common
from reconciler.cli.breaks import _break_docs_table, _breaks_table
from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, info, open_ledger, out
from reconciler.cli.conventions import said_once
from reconciler.cli.tables import (
    NONE,
    ChainView,
    Col,
    Row,
    breaks_summary,
    chain_lines,
    fields,
    fit_table,
    human_amount,
    human_duration,
    human_instant,
    human_value,
    say,
)
from reconciler.domain import abbreviate_ids
from reconciler.interrupt import Interrupted, interruptible

if TYPE_CHECKING:  # the use cases and the ledger are imported when a command runs
    from rich.console import RenderableType

    from reconciler.app.run import RunReport
    from reconciler.inputs.settings import Settings

runs_app = typer.Typer(help="Past runs and their documents.", no_args_is_help=True)


def _positions_table(report: RunReport) -> RenderableType:
    """Differing rows first, then non-zero ones, then zero rows (a large book is mostly zeros)."""
    order = sorted(report.positions, key=lambda p: 0 if p.difference else 1 if (p.book or p.onchain) else 2)
    columns = (
        Col("chain", drop=1),
        Col("wallet"),
        Col("asset"),
        Col("book", justify="right", whole=True),
        Col("on-chain", justify="right", whole=True),
        Col("difference", justify="right", whole=True),
    )
    rows = [
        Row(
            (
                p.chain,
                p.wallet,
                p.asset,
                human_amount(p.book, p.decimals),
                human_amount(p.onchain, p.decimals),
                human_amount(p.difference, p.decimals),
            ),
            style="red" if p.difference else None,
        )
        for p in order
    ]
    return fit_table(out.width, columns, rows, "Positions (difference = on-chain - book)")


def _report_chains(report: RunReport, settings: Settings) -> list[ChainView]:
    scans = {s.chain: s for s in report.scans}
    views = []
    for c in report.chains:
        chain = settings.chains.get(c.chain)
        scan = scans.get(c.chain)
        views.append(
            ChainView(
                c.chain,
                c.block.number if c.block else None,
                c.block.hash if c.block else None,
                head=c.head,
                confirmations=chain.confirmations if chain is not None else None,
                read_path=c.read_path,
                scanned=(
                    (scan.from_block, scan.to_block, scan.observed, scan.reorged)
                    if report.run.job == "scan" and scan is not None
                    else (None, None, 0, 0)
                    if report.run.job == "scan"
                    else None
                ),
            )
        )
    return views


def print_run(report: RunReport, settings: Settings, positions: bool = False) -> None:
    """A run (or a scan) for a person: per chain the pinned block, a summary, the breaks; every
    position only when asked (``positions``), differing rows first."""
    for line in chain_lines(_report_chains(report, settings)):
        out.print(line, soft_wrap=True)
    for scan in report.scans:
        for note in scan.unchecked:
            say(err, f"{scan.chain}: not checked: {note}")
    if report.run.job == "run":
        differ = sum(1 for p in report.positions if p.difference)
        hint = " (--positions lists them)" if differ and not positions else ""
        unread = [c.chain for c in report.chains if c.block is None]
        if unread:
            hint += f"; none of {', '.join(unread)}: not read"
        say(out, f"positions: {len(report.positions) - differ:,} agree, {differ:,} differ{hint}")
    seen = [(b.status.value, b.first_run_id, b.last_run_id) for b in report.breaks]
    say(out, breaks_summary(report.run.id, seen))
    if positions and report.positions:
        out.print(_positions_table(report))
    # Those still open first; those this run resolved apart (a narrow table may not show status).
    still = [b for b in report.breaks if b.status.value != "resolved"]
    gone = [b for b in report.breaks if b.status.value == "resolved"]
    if still:
        out.print(_breaks_table(still, settings, title="Breaks"))
    if gone:
        out.print(_breaks_table(gone, settings, title="Resolved by this run"))
    verdict = run_verdict(report.exit_code, [(b.status.value, b.severity.value) for b in report.breaks])
    if report.unreconciled:
        rows = [
            Row((u.wallet, u.asset, human_amount(u.amount, u.decimals)), style="yellow") for u in report.unreconciled
        ]
        title = "Book balances no configured wallet x asset covers (not reconciled)"
        columns = (Col("wallet"), Col("asset"), Col("book", justify="right", whole=True))
        out.print(fit_table(out.width, columns, rows, title))
        say(
            err,
            f"warning: {len(report.unreconciled)} book balance(s) are not reconciled: their wallet or asset "
            "is not in the configuration",
        )
    what = "scan" if report.run.job == "scan" else "run"
    say(out, f"{what} {abbreviate_ids([report.run.id])[report.run.id]}: {verdict}", _VERDICT_STYLE[report.exit_code])
    if report.run.reason:
        say(err, f"reason: {report.run.reason}")


_VERDICT_STYLE = {0: "green", 1: "red", 2: "red"}


def run_verdict(exit_code: int, breaks: Sequence[tuple[str, str]]) -> str:
    """A run's last word from its exit code and its breaks' (status, severity): a complete run
    with warnings open says so, rather than "no open breaks"."""
    if exit_code == 2:
        return "INCOMPLETE: no all-clear for what could not be read"
    if exit_code == 1:
        return "complete: breaks open"
    below = Counter(severity for status, severity in breaks if status in ("open", "acknowledged"))
    if not below:
        return "complete: no open breaks"
    said = [
        f"{below[sev]:,} {sev}" + ("s" if below[sev] != 1 and sev == "warning" else "")
        for sev in ("warning", "info")
        if below[sev]
    ]
    return f"complete: {' and '.join(said)} open, none of severity error or critical"


def _execute(
    settings: Settings,
    job: str,
    render: Callable[[RunReport], dict[str, Any]],
    checkpoint: Callable[[], None],
    document_positions: bool = False,
) -> RunReport:
    """One run or scan from the command line, inside the caller's interruptible block: waits
    for the ledger (saying so); on SIGINT/SIGTERM it is recorded incomplete and returned, so the
    caller still reports it before leaving the block raises Interrupted (exit 2). The log lines
    that repeat the run's reason (the chain that failed, the alert) are held back: the caller
    prints the reason itself, once."""
    from reconciler.app.run import RunOptions, run_reconciliation
    from reconciler.bootstrap import adapter_for

    ledger = open_ledger(settings)

    def waiting() -> None:
        info.print(
            f"waiting: another run holds the ledger (giving up after {settings.lock_timeout:g}s)…", highlight=False
        )

    options = RunOptions(
        lock_timeout=settings.lock_timeout,
        on_wait=waiting,
        render=render,
        job=job,
        checkpoint=checkpoint,
        document_positions=document_positions,
    )
    try:
        with said_once(common._said_once) as printed:
            report = run_reconciliation(settings, ledger, adapter_for, options)
            printed.append(report.run.reason or "")
        return report
    finally:
        ledger.close()


def run(
    ctx: typer.Context,
    json_out: JsonFlag = False,
    positions: Annotated[
        bool,
        typer.Option("--positions", help="Also list every wallet x asset: differing first, then non-zero, then zero."),
    ] = False,
) -> None:
    """Reconcile every wallet x asset against the books at one pinned block per chain, after
    observing every movement since the last scan (transfers, approvals, native value). Prints
    per chain the pinned block, a summary and the breaks (`--positions`: every position too)."""
    from reconciler.app.documents import run_doc

    settings = _settings(ctx)
    with _interruption_said_by(reported := []), interruptible() as guard:
        report = _execute(settings, "run", lambda r: run_doc(r, settings), guard.check, document_positions=json_out)
        reported.append(report)
        if json_out:
            _emit_json(report.document if report.document is not None else run_doc(report, settings))
            if report.run.reason:
                say(err, f"run incomplete: {report.run.reason}")
        else:
            print_run(report, settings, positions=positions)
        _warn_if_no_books(report)
    raise typer.Exit(report.exit_code)


@contextmanager
def _interruption_said_by(reported: list[RunReport]) -> Iterator[None]:
    """SIGINT or SIGTERM during a run: the run is recorded incomplete and printed with its
    reason ("interrupted by SIGINT"); it exits 2 without saying it a second time as an error."""
    try:
        yield
    except Interrupted as exc:
        if reported and str(exc) in (reported[-1].run.reason or ""):
            raise typer.Exit(2) from None
        raise


def _warn_if_no_books(report: RunReport) -> None:
    """A run against a ledger without a single book entry compares every balance with zero: say
    so (stderr, also under --json), since it is almost always a forgotten import."""
    if report.no_books:
        say(
            err,
            "warning: the ledger has no book entries; every on-chain balance will show as a difference — "
            "import books with: reconciler books import FILE",
        )


def scan(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Observe every movement of the custody wallets since the last scan, up to the pinned block
    of each chain, and judge it: outflows against signed instructions, inflows against the books,
    approvals against allowed spenders. No balances are compared (that is `run`)."""
    from reconciler.app.documents import scan_doc

    settings = _settings(ctx)
    with _interruption_said_by(reported := []), interruptible() as guard:
        report = _execute(settings, "scan", lambda r: scan_doc(r, settings), guard.check)
        reported.append(report)
        if json_out:
            _emit_json(report.document if report.document is not None else scan_doc(report, settings))
            if report.run.reason:
                say(err, f"scan incomplete: {report.run.reason}")
        else:
            print_run(report, settings)
    raise typer.Exit(report.exit_code)


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    json_out: JsonFlag = False,
) -> None:
    """Past runs, newest first, with their outcome and who ran them."""
    from reconciler.app.documents import run_summary_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        runs = ledger.list_runs(limit)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"runs": [run_summary_doc(r) for r in runs]})
        return
    if not runs:
        out.print("no runs yet")
        return
    short = abbreviate_ids(r.id for r in runs)
    columns = (
        Col("id", whole=True),
        Col("started (UTC)", whole=True),
        Col("took", justify="right", drop=3),
        Col("status"),
        Col("exit", justify="right"),
        Col("trigger", drop=2),
        Col("job"),
        Col("instance", drop=1),
        Col("reason", wrap=True),
    )
    table_rows = [
        Row(
            (
                short[r.id],
                human_instant(r.started_at),
                human_duration((r.finished_at - r.started_at).total_seconds()) if r.finished_at else NONE,
                r.status,
                NONE if r.exit_code is None else str(r.exit_code),
                r.trigger,
                r.job,
                r.instance or NONE,
                r.reason or "",
            ),
            style="red" if r.status == "incomplete" else None,
        )
        for r in runs
    ]
    out.print(fit_table(out.width, columns, table_rows))


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str, json_out: JsonFlag = False) -> None:
    """One run's document as `run --json` printed it (positions and breaks as they were).
    RUN_ID: the id or any unique prefix of it (4 characters or more)."""
    from reconciler.app.documents import stored_run_doc

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        stored = ledger.get_run(run_id)
    finally:
        ledger.close()
    doc = stored_run_doc(stored)
    head = stored.audit_head
    if json_out:
        # The document as printed, with the audit head beside it for an examiner to keep.
        _emit_json({**doc, "audit_head": head.doc() if head is not None else None})
        if head is not None:
            err.print(f"audit trail head after this run: {head}", markup=False, soft_wrap=True)
        return
    run = stored.summary  # the ledger's record of the run; the document shows what it printed
    by = [f"trigger {run.trigger}", f"job {run.job}"] + ([f"instance {run.instance}"] if run.instance else [])
    if run.scheduled_for is not None:
        by.append(f"firing {human_instant(run.scheduled_for)} UTC")
    if run.rerun_of is not None:
        by.append(f"re-run of {run.rerun_of} (its process died)")
    header = fields(
        [
            ("run", run.id),
            ("status", f"{run.status}, exit code {human_value(run.exit_code)}"),
            ("started", f"{human_instant(run.started_at)} UTC"),
            ("took", human_duration((run.finished_at - run.started_at).total_seconds()) if run.finished_at else None),
            ("by", ", ".join(by)),
            ("reason", run.reason),
            # after this run's outcome record: kept elsewhere, `breaks verify-audit --head` proves the
            # trail still holds it
            ("audit head", str(head) if head is not None else None),
        ],
        out.width,
    )
    for line in header:
        out.print(line, soft_wrap=True)
    views = [
        ChainView(
            name,
            c.get("block_number", c.get("to_block")),  # a scan's document names the blocks it observed
            c.get("block_hash"),
            head=c.get("head"),
            read_path=c.get("read_path"),
            scanned=(
                (c.get("from_block"), c.get("to_block"), c.get("observed", 0), c.get("reorged", 0))
                if run.job == "scan"
                else None
            ),
        )
        for name, c in doc.get("chains", {}).items()
    ]
    for line in chain_lines(views, unread="not read (see the reason above)"):
        out.print(line, soft_wrap=True)
    for name, c in doc.get("chains", {}).items():
        scanned = c.get("scan", c) if isinstance(c.get("scan", c), dict) else {}
        for note in scanned.get("unchecked", []):
            say(out, f"{name}: not checked: {note}")
    if run.job == "run":
        differing = sum(1 for p in doc["positions"] if p["difference"] != "0")
        say(out, f"positions: {len(doc['positions']) - differing:,} agree, {differing:,} differ")
    breaks = doc.get("breaks", [])
    seen = [(b["status"], b.get("first_run_id"), b.get("last_run_id")) for b in breaks]
    say(out, breaks_summary(run.id, seen))
    still = [b for b in breaks if b["status"] != "resolved"]
    gone = [b for b in breaks if b["status"] == "resolved"]
    if still:
        out.print(_break_docs_table(still, title="Breaks"))
    if gone:
        out.print(_break_docs_table(gone, title="Resolved by this run"))
