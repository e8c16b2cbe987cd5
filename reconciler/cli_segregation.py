"""The segregation commands: `segregation statement`, `equity import`, `offchain import`, `report
pilot`, as Typer sub-apps that reconciler.cli registers (``register(app)``).

Invariants as in reconciler.cli: with --json (or --csv) stdout carries exactly one document and
nothing else; errors go to stderr; exit codes are 0 clean, 1 a segregation break of severity
error or critical open, 2 could not complete (an incomplete statement, bad input).

The sub-apps and ``register`` come before the import of reconciler.cli, so this module works
whichever of the two is imported first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table

from reconciler.app.segregation_documents import statements_csv
from reconciler.app.statement import pilot, run_statement, statement_document
from reconciler.domain import BreakStatus, SegClass
from reconciler.engine.segregation import ALL_CLASSES, Statement, pilot_week_close
from reconciler.inputs.segregation import parse_equity_csv, parse_offchain_csv
from reconciler.interrupt import interruptible
from reconciler.ledger import segregation_store as store

segregation_app = typer.Typer(help="Segregation statements per account class.", no_args_is_help=True)
equity_app = typer.Typer(help="Customer equity from the back office (cash, open trade equity).", no_args_is_help=True)
offchain_app = typer.Typer(help="Customer funds held off chain (banks, clearing houses).", no_args_is_help=True)
report_app = typer.Typer(help="Regulatory reports.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(segregation_app, name="segregation")
    app.add_typer(equity_app, name="equity")
    app.add_typer(offchain_app, name="offchain")
    app.add_typer(report_app, name="report")


from reconciler.app.documents import break_doc, run_summary_doc, stored_run_doc  # noqa: E402
from reconciler.app.report_html import PageContext, render_run_report  # noqa: E402
from reconciler.bootstrap import open_ledger, valuation_reader_for  # noqa: E402
from reconciler.cli import JsonFlag, _emit_json, _read_file, _settings, err, info, out, report_import  # noqa: E402
from reconciler.errors import LedgerError, ReconcilerError  # noqa: E402
from reconciler.ledger import daemon_store  # noqa: E402
from reconciler.ledger.store import Ledger  # noqa: E402

CsvFlag = Annotated[bool, typer.Option("--csv", help="Print the statements as one CSV document on stdout.")]
_CLASSES = [c.value for c in ALL_CLASSES]


def _zone(name: str, option: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"{name!r} is not an IANA time zone like America/Chicago", param_hint=option) from None


def parse_as_of(text: str, tz: ZoneInfo) -> datetime:
    """An instant: "2026-11-24T17:00" (local time in ``tz``), with an offset ("…-06:00", "…Z"),
    or a date alone, meaning its close of business (17:00 in ``tz``)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(17, 0), tzinfo=tz)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO instant like 2026-11-24T17:00 (or 2026-11-24 for its close of business)",
            param_hint="--as-of",
        ) from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)


# ---------------------------------------------------------------------- imports


@equity_app.command("import")
def equity_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import customer equity from CSV (date,account,cash_usd,open_trade_equity_usd); all rows or none."""
    settings = _settings(ctx)
    text, digest = _read_file(file)
    ledger = open_ledger(settings)
    try:
        rows = parse_equity_csv(text, str(file), store.account_classes(ledger))
        stored = store.stored_equity_keys(ledger, [(r.business_date, r.account) for r in rows])
        if stored:
            rows = parse_equity_csv(text, str(file), store.account_classes(ledger), stored)
        count = store.import_equity(ledger, rows, str(file), digest)
    finally:
        ledger.close()
    report_import(json_out, file, digest, count, "equity row(s)")


@offchain_app.command("import")
def offchain_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import off-chain funds from CSV (date,class,depository,amount_usd); all rows or none."""
    settings = _settings(ctx)
    text, digest = _read_file(file)
    rows = parse_offchain_csv(text, str(file))
    ledger = open_ledger(settings)
    try:
        stored = store.stored_offchain_keys(ledger, [(r.business_date, r.seg_class, r.depository) for r in rows])
        if stored:
            rows = parse_offchain_csv(text, str(file), stored)
        count = store.import_offchain(ledger, rows, str(file), digest)
    finally:
        ledger.close()
    report_import(json_out, file, digest, count, "off-chain row(s)")


# ---------------------------------------------------------------------- statement


@segregation_app.command("statement")
def statement(
    ctx: typer.Context,
    klass: Annotated[
        str | None,
        typer.Option("--class", help=f"One class ({', '.join(_CLASSES)}). Default: every class."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Compute as of this instant (2026-11-24T17:00, or a date for its 17:00 close): each chain is "
            "pinned at the last block at or before it. Default: now, at each chain's current pin.",
        ),
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="Time zone of --as-of. Default: [segregation] timezone.")
    ] = None,
    json_out: JsonFlag = False,
    csv_out: CsvFlag = False,
) -> None:
    """Compute the segregation statement of each account class (amount required, funds in
    segregation at market less haircut, excess or deficiency, target residual interest) and the
    segregation breaks. Exit 1 when such a break of severity error or critical is open."""
    if json_out and csv_out:
        raise typer.BadParameter("give --json or --csv, not both", param_hint="--csv")
    if klass is not None and klass not in _CLASSES:
        raise typer.BadParameter(f"{klass!r} is not one of {', '.join(_CLASSES)}", param_hint="--class")
    settings = _settings(ctx)
    zone = _zone(tz, "--tz") if tz else ZoneInfo(settings.segregation.timezone)
    instant = parse_as_of(as_of, zone) if as_of else None
    classes = (SegClass(klass),) if klass else ALL_CLASSES
    ledger = open_ledger(settings)

    def waiting() -> None:
        info.print(f"waiting: another run holds the ledger (giving up after {settings.lock_timeout:g}s)…")

    with interruptible() as guard:
        try:
            report = run_statement(
                settings,
                ledger,
                valuation_reader_for,
                as_of=instant,
                classes=classes,
                on_wait=waiting,
                checkpoint=guard.check,
            )
            doc = statement_document(report, settings, [break_doc(b, settings) for b in report.breaks])
            try:
                ledger.save_document(report.run.id, doc)
            except Exception as exc:  # noqa: BLE001 - the statement itself is recorded; say so and go on
                err.print(f"warning: the statement's document was not kept with run {report.run.id}: {exc}")
        finally:
            ledger.close()
        if json_out:
            _emit_json(doc)
        elif csv_out:
            sys.stdout.write(statements_csv(report.statements))
            sys.stdout.flush()
        else:
            _print_statements(doc, report.statements)
        if report.run.reason:
            err.print(f"statement incomplete: {report.run.reason}")
    raise typer.Exit(report.exit_code)


def _money(value: str | None) -> str:
    if value is None:
        return "-"
    sign = "-" if value.startswith("-") else ""
    whole, _, cents = value.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{cents}"


def _print_statements(doc: dict[str, Any], statements: tuple[Statement, ...]) -> None:
    pins = ", ".join(
        f"{name} block {c['block_number']}" if c["block_number"] is not None else f"{name} not read"
        for name, c in doc["chains"].items()
    )
    out.print(f"Segregation statements as of {doc['as_of']} ({pins})")
    for st, sdoc in zip(statements, doc["statements"], strict=True):
        title = {
            SegClass.FUTURES: "Futures customers (Reg 1.20)",
            SegClass.CLEARED_SWAPS: "Cleared swaps customers (Part 22)",
            SegClass.FOREIGN_FUTURES: "Foreign futures secured amount (Reg 30.7)",
            SegClass.HOUSE: "House (not segregated): what its wallets hold",
        }[st.seg_class]
        holdings = Table(title=title, title_justify="left")
        for col, justify in (
            ("wallet", "left"),
            ("asset", "left"),
            ("units", "right"),
            ("price USD", "right"),
            ("market value", "right"),
            ("haircut", "right"),
            ("value", "right"),
        ):
            holdings.add_column(col, justify=justify)  # type: ignore[arg-type]
        for h in sdoc["holdings"]:
            holdings.add_row(
                h["wallet"],
                h["asset"],
                h["units_display"],
                h["price_usd"] or "-",
                _money(h["market_value"]),
                h["haircut"],
                _money(h["value"]),
            )
        for o in sdoc["offchain"]:
            holdings.add_row(o["depository"], "USD (off chain)", "", "", _money(o["amount"]), "", _money(o["amount"]))
        if holdings.row_count:
            out.print(holdings)
        else:
            out.print(f"{title}: nothing held")
        if st.seg_class is SegClass.HOUSE:
            out.print(f"  total market value: {_money(sdoc['total_market_value'])}")
        else:
            debits = sum(1 for c in sdoc["customers"] if c["debit"])
            lines = (
                (
                    f"amount required ({len(sdoc['customers']) - debits} credit, {debits} debit excluded)",
                    sdoc["amount_required"],
                ),
                ("funds in segregation", sdoc["funds_in_segregation"]),
                ("excess (deficiency)", sdoc["excess"]),
                ("targeted residual interest", sdoc["target_residual_interest"]),
                ("excess over target", sdoc["excess_over_target"]),
            )
            for label, value in lines:
                style = "red" if value is not None and value.startswith("-") else None
                out.print(f"  {label:<48} {_money(value):>24}", style=style)
        for problem in sdoc["problems"]:
            out.print(f"  [yellow]incomplete:[/yellow] {problem}")
    if doc["breaks"]:
        table = Table(title="Segregation breaks", title_justify="left")
        for col in ("id", "kind", "severity", "status", "chain", "wallet", "asset", "detail"):
            table.add_column(col)
        for b in doc["breaks"]:
            table.add_row(
                b["id"][:8],
                b["kind"],
                b["severity"],
                b["status"],
                b["chain"],
                b["wallet"],
                b["asset"] or "",
                b["detail"],
            )
        out.print(table)
    verdict = {
        0: "[green]complete: no open segregation breaks[/green]",
        1: "[red]complete: segregation breaks open[/red]",
        2: "[red]INCOMPLETE: no all-clear for what could not be valued or read[/red]",
    }[doc["exit_code"]]
    out.print(f"statement {doc['run_id']}: {verdict}")


# ---------------------------------------------------------------------- report pilot


@report_app.command("pilot")
def report_pilot(
    ctx: typer.Context,
    week: Annotated[str, typer.Option("--week", help="ISO week, like 2026-W47.")],
    json_out: JsonFlag = False,
) -> None:
    """The weekly report of digital assets held for customers, by account class and asset (units
    and USD at market), as of the week's last close of business (Friday 17:00 in [segregation]
    timezone). Exit 2 when a chain or a price could not be read."""
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
        err.print(f"incomplete: {problem}")
    raise typer.Exit(code)


def _print_pilot(doc: dict[str, Any]) -> None:
    table = Table(title=f"Digital assets held for customers, week {doc['week']}, as of {doc['as_of']}")
    for col, justify in (("class", "left"), ("asset", "left"), ("units", "right"), ("market value USD", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in doc["rows"]:
        table.add_row(r["class"], r["asset"], r["units_display"], _money(r["market_value_usd"]))
    for t in doc["totals"]:
        table.add_row(t["class"], "total", "", _money(t["market_value_usd"]), style="bold")
    out.print(table)


# ---------------------------------------------------------------------- report html

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


def _write_atomically(path: Path, text: str) -> None:
    """The whole page or nothing: a reader never opens a half-written file."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        audit_head=head,
        finished_at=run_summary_doc(stored.summary)["finished_at"],
        explorers={name: c.explorer_url for name, c in settings.chains.items() if c.explorer_url},
        wallet_addresses={name: w.address for name, w in settings.wallets.items()},
        notes=notes,
    )
    page = render_run_report(stored_run_doc(stored), [break_doc(b, settings) for b in open_now], context)
    try:
        _write_atomically(out_file, page)
    except OSError as exc:
        err.print(f"error: cannot write {out_file}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    info.print(f"wrote {out_file}")
