"""The segregation commands: `segregation statement`, `equity import`, `offchain import`.

Invariants as for every command: with --json (or --csv) stdout carries exactly one document and
nothing else; errors go to stderr; exit codes are 0 clean, 1 a segregation break of severity
error or critical open, 2 could not complete (an incomplete statement, bad input).
"""

from __future__ import annotations

import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from reconciler.cli.common import (
    JsonFlag,
    _emit_json,
    _read_file,
    _settings,
    err,
    info,
    open_ledger,
    out,
    report_import,
)
from reconciler.cli.tables import _money, say, shown
from reconciler.domain import SegClass
from reconciler.engine.segregation.values import ALL_CLASSES
from reconciler.interrupt import interruptible

if TYPE_CHECKING:  # the use cases, file formats and the ledger are imported when a command runs
    from reconciler.engine.segregation.values import Statement

segregation_app = typer.Typer(help="Segregation statements per account class.", no_args_is_help=True)
equity_app = typer.Typer(help="Customer equity from the back office (cash, open trade equity).", no_args_is_help=True)
offchain_app = typer.Typer(help="Customer funds held off chain (banks, clearing houses).", no_args_is_help=True)

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
    from reconciler.inputs.segregation import parse_equity_csv
    from reconciler.ledger import segregation_store as store

    settings = _settings(ctx)
    text, digest = _read_file(file)
    ledger = open_ledger(settings)
    try:
        earlier = ledger.import_of("equity", digest)
        count = 0
        if earlier is None:  # the same bytes again: a no-op (a different file repeating a day is refused)
            rows = parse_equity_csv(text, str(file), store.account_classes(ledger))
            stored = store.stored_equity_keys(ledger, [(r.business_date, r.account) for r in rows])
            if stored:
                rows = parse_equity_csv(text, str(file), store.account_classes(ledger), stored)
            count = store.import_equity(ledger, rows, str(file), digest)
    finally:
        ledger.close()
    report_import(json_out, file, digest, count, "equity row(s)", earlier)


@offchain_app.command("import")
def offchain_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import off-chain funds from CSV (date,class,depository,amount_usd); all rows or none."""
    from reconciler.inputs.segregation import parse_offchain_csv
    from reconciler.ledger import segregation_store as store

    settings = _settings(ctx)
    text, digest = _read_file(file)
    rows = parse_offchain_csv(text, str(file))
    ledger = open_ledger(settings)
    try:
        earlier = ledger.import_of("offchain", digest)
        count = 0
        if earlier is None:  # the same bytes again: a no-op (a different file repeating a day is refused)
            stored = store.stored_offchain_keys(ledger, [(r.business_date, r.seg_class, r.depository) for r in rows])
            if stored:
                rows = parse_offchain_csv(text, str(file), stored)
            count = store.import_offchain(ledger, rows, str(file), digest)
    finally:
        ledger.close()
    report_import(json_out, file, digest, count, "off-chain row(s)", earlier)


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
    from reconciler.app.documents import break_doc
    from reconciler.app.segregation_documents import statements_csv
    from reconciler.app.statement import run_statement, statement_document
    from reconciler.bootstrap import valuation_reader_for

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
                say(err, f"warning: the statement's document was not kept with run {report.run.id}: {exc}")
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
            say(err, f"statement incomplete: {report.run.reason}")
    raise typer.Exit(report.exit_code)


def _print_statements(doc: dict[str, Any], statements: tuple[Statement, ...]) -> None:
    from rich.table import Table

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
        # The frozen units of permissioned tokens, shown only where a holding has any.
        encumbered = any(h["encumbered"] != "0" for h in sdoc["holdings"])
        for col, justify in (
            ("wallet", "left"),
            ("asset", "left"),
            ("units", "right"),
            *((("of which frozen", "right"),) if encumbered else ()),
            ("price USD", "right"),
            ("market value", "right"),
            ("haircut", "right"),
            ("value", "right"),
        ):
            holdings.add_column(col, justify=justify)
        for h in sdoc["holdings"]:
            frozen = [(h["encumbered_display"] or "unknown") if h["encumbered"] != "0" else ""] if encumbered else []
            holdings.add_row(
                h["wallet"],
                h["asset"],
                h["units_display"],
                *frozen,
                h["price_usd"] or "-",
                _money(h["market_value"]),
                h["haircut"],
                _money(h["value"]),
            )
        for o in sdoc["offchain"]:
            amount = _money(o["amount"])
            blank = [""] if encumbered else []
            holdings.add_row(shown(o["depository"]), "USD (off chain)", "", *blank, "", amount, "", amount)
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
            say(out, f"  incomplete: {shown(problem)}", style="yellow", hang=4)
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
                shown(b["detail"]),
            )
        out.print(table)
    verdict = {
        0: "complete: no open segregation breaks",
        1: "complete: segregation breaks open",
        2: "INCOMPLETE: no all-clear for what could not be valued or read",
    }[doc["exit_code"]]
    if doc["exit_code"] == 0 and any(b["status"] != "resolved" for b in doc["breaks"]):
        verdict = "complete: segregation breaks open, none of severity error or critical"
    say(out, f"statement {doc['run_id']}: {verdict}", style="green" if doc["exit_code"] == 0 else "red")
