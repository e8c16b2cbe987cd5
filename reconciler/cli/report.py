"""`report pilot` and `report html`: the pilot's weekly report of digital assets held for
customers, and one run as a self-contained HTML page.

Invariants as for every command: with --json stdout carries exactly one document; exit 2 when
a chain or a price could not be read, the run is unknown, or the file cannot be written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from reconciler.cli.common import JsonFlag, _emit_json, _settings, err, info, open_ledger, out, write_atomically
from reconciler.cli.tables import _money, say, shown
from reconciler.domain import BreakStatus
from reconciler.errors import LedgerError, ReconcilerError

if TYPE_CHECKING:  # the use cases and the ledger are imported when a command runs
    from reconciler.ledger.store import Ledger

report_app = typer.Typer(help="Regulatory reports.", no_args_is_help=True)


@report_app.command("pilot")
def report_pilot(
    ctx: typer.Context,
    week: Annotated[str, typer.Option("--week", help="ISO week, like 2026-W47.")],
    json_out: JsonFlag = False,
) -> None:
    """The weekly report of digital assets held for customers, by account class and asset (units
    and USD at market), as of the week's last close of business (Friday 17:00 in [segregation]
    timezone). Exit 2 when a chain or a price could not be read."""
    from reconciler.app.statement import pilot
    from reconciler.bootstrap import valuation_reader_for
    from reconciler.engine.segregation.pilot import pilot_week_close

    settings = _settings(ctx)
    zone = ZoneInfo(settings.segregation.timezone)
    try:
        close = pilot_week_close(week, zone)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from None
    doc, code = pilot(settings, valuation_reader_for, week, close)
    if json_out:
        _emit_json(doc)
    else:
        _print_pilot(doc)
    for problem in doc["problems"]:
        say(err, f"incomplete: {shown(problem)}")
    raise typer.Exit(code)


def _print_pilot(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Digital assets held for customers, week {doc['week']}, as of {doc['as_of']}")
    # The units the issuers froze (ERC-3643), shown only where a row has any.
    encumbered = any(r["encumbered_units"] != "0" for r in doc["rows"])
    columns = [("class", "left"), ("asset", "left"), ("units", "right")]
    columns += [("of which frozen", "right")] if encumbered else []
    for col, justify in (*columns, ("market value USD", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in doc["rows"]:
        frozen = [(r["encumbered_units_display"] or "unknown") if r["encumbered_units"] != "0" else ""]
        table.add_row(
            r["class"], r["asset"], r["units_display"], *(frozen if encumbered else []), _money(r["market_value_usd"])
        )
    for t in doc["totals"]:
        blank = [""] if encumbered else []
        table.add_row(t["class"], "total", "", *blank, _money(t["market_value_usd"]), style="bold")
    out.print(table)


# How far back `latest` looks for a reconciliation run among scans and statements.
_LATEST_WINDOW = 1000


def _latest_run_id(ledger: Ledger) -> str:
    runs = ledger.list_runs(_LATEST_WINDOW)
    for r in runs:
        if r.job == "run":
            return r.id
    raise LedgerError(
        "the ledger holds no reconciliation run yet: `reconciler run` makes one"
        if not runs
        else f"none of the newest {len(runs)} runs is a reconciliation run; give a run id (`reconciler runs list`)"
    )


@report_app.command("html")
def report_html(
    ctx: typer.Context,
    run_id: Annotated[
        str, typer.Argument(help="A run id, any unique prefix of one (4 characters or more), or `latest`.")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write (replaced whole).")],
) -> None:
    """Write one run as a self-contained HTML page for a compliance officer: status, pinned
    blocks, the run's breaks by severity, the ledger's open breaks now, the positions that
    differ, and the audit trail's head. Read-only toward the ledger; links to each chain's
    explorer_url where set. Prints `wrote FILE` on stderr; exit 2 when the run is unknown or
    the file cannot be written."""
    from reconciler.app.documents import break_doc, run_summary_doc, stored_run_doc
    from reconciler.app.report_html import PageContext, render_run_report
    from reconciler.ledger import daemon_store

    settings = _settings(ctx)
    folder = out_file.parent if str(out_file.parent) else Path(".")
    if out_file.is_dir() or not folder.is_dir():
        problem = "is a folder; name a file" if out_file.is_dir() else f"cannot be written: no folder {folder}"
        raise ReconcilerError(f"--out {out_file} {problem}")
    ledger = open_ledger(settings)
    try:
        stored = ledger.get_run(_latest_run_id(ledger) if run_id == "latest" else run_id)
        open_now = ledger.list_breaks([BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED])
        notes: dict[str, str] = {}
        for brk in open_now:
            if brk.status is BreakStatus.ACKNOWLEDGED:
                _, events = ledger.get_break(brk.id)
                acks = [e.note for e in events if e.event == "acknowledged" and e.note]
                if acks:
                    notes[brk.id] = acks[-1]
        head = daemon_store.audit_head(ledger)
    finally:
        ledger.close()
    context = PageContext(
        generated_at=datetime.now(UTC),
        audit_head=str(head) if head is not None else "none (the trail is empty)",
        finished_at=run_summary_doc(stored.summary)["finished_at"],
        explorers={name: c.explorer_url for name, c in settings.chains.items() if c.explorer_url},
        wallet_addresses={name: w.address for name, w in settings.wallets.items()},
        notes=notes,
    )
    page = render_run_report(stored_run_doc(stored), [break_doc(b, settings) for b in open_now], context)
    try:
        write_atomically(out_file, page)
    except OSError as exc:
        err.print(f"error: cannot write {out_file}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    info.print(f"wrote {out_file}")
