"""The command line: `reconciler [--config FILE] [--debug] COMMAND [ARGS] [--json]`.

Invariants: with --json, stdout carries exactly one JSON document and nothing else (tables,
progress and errors go to stderr); exit codes are 0 clean, 1 breaks, 2 could not complete,
and any unexpected exception exits 2 with a one-line message (the traceback with --debug).
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from reconciler import __version__, wallet_review
from reconciler.bootstrap import adapter_for, open_ledger
from reconciler.config import Settings, load_settings
from reconciler.domain import BreakRecord, BreakStatus, format_amount
from reconciler.errors import InputError, ReconcilerError
from reconciler.imports import parse_accounts_csv, parse_books_csv
from reconciler.instructions import load_instructions, load_key, sign_file
from reconciler.interrupt import Interrupted, interruptible
from reconciler.ledger import Ledger, daemon_store, surveillance_store
from reconciler.ledger.store import redact_url
from reconciler.logformat import JsonLogFormatter
from reconciler.metrics import Metrics
from reconciler.redaction import RedactingFilter, redact_urls
from reconciler.report import (
    break_doc,
    breaks_doc,
    event_doc,
    instruction_doc,
    run_doc,
    run_summary_doc,
    scan_doc,
    stored_run_doc,
    transfer_doc,
)
from reconciler.runner import RunOptions, RunReport, run_reconciliation

app = typer.Typer(
    name="reconciler",
    help="Custody and segregation reconciler for tokenized collateral.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)
accounts_app = typer.Typer(help="Customer and house accounts.", no_args_is_help=True)
books_app = typer.Typer(help="The firm's books of custody entries.", no_args_is_help=True)
breaks_app = typer.Typer(help="Breaks and their lifecycle.", no_args_is_help=True)
runs_app = typer.Typer(help="Past runs and their documents.", no_args_is_help=True)
transfers_app = typer.Typer(help="Observed movements of custody wallets.", no_args_is_help=True)
instructions_app = typer.Typer(help="Signed transfer instructions that authorize outflows.", no_args_is_help=True)
wallets_app = typer.Typer(help="Custody wallets' on-chain configuration: baseline and now.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(accounts_app, name="accounts")
app.add_typer(books_app, name="books")
app.add_typer(breaks_app, name="breaks")
app.add_typer(runs_app, name="runs")
app.add_typer(wallets_app, name="wallets")
alerts_app = typer.Typer(help="Alerts queued for webhooks.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(transfers_app, name="transfers")
app.add_typer(instructions_app, name="instructions")

# Off a terminal (a pipe, a log) Rich would squeeze tables to 80 columns; amounts need room.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@dataclass
class State:
    config: str | None
    debug: bool


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", help="Configuration file (TOML).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs and tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version.", callback=_print_version, is_eager=True)
    ] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Log lines as text (key=value) or json (one object per line).")
    ] = "text",
) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"{log_format!r} is not text or json", param_hint="--log-format")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())
    # urllib3 logs each request line ("POST /v3/<api key> HTTP/1.1") at DEBUG: hosted RPC URLs
    # keep their key in the path. Quiet it, and redact URLs in whatever reaches a handler.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    ctx.obj = State(config=config, debug=debug)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def _settings(ctx: typer.Context) -> Settings:
    return load_settings(_state(ctx).config)


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def _read_file(path: Path) -> tuple[str, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from exc
    return text, hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------- init & config


@app.command()
def init(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Create or migrate the database schema (idempotent; never writes the config)."""
    settings = _settings(ctx)
    ledger = Ledger(settings.database_url)
    try:
        before, version = ledger.init()
    finally:
        ledger.close()
    if json_out:
        _emit_json(
            {"database": redact_url(settings.database_url), "schema_version": version, "previous_version": before}
        )
    else:
        change = (
            "created"
            if before == 0
            else "already up to date"
            if before == version
            else f"upgraded from schema version {before}"
        )
        err.print(f"database ready: {redact_url(settings.database_url)} (schema version {version}, {change})")


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    online: Annotated[
        bool, typer.Option("--online", help="Also check each node's chain id and each token's decimals().")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Validate the configuration file; with --online, also against the chains."""
    settings = _settings(ctx)
    chains: dict[str, Any] = {}
    failed = False
    if online:
        from reconciler.runner import read_chain

        for chain in settings.chains.values():
            adapter = adapter_for(chain)
            try:
                result, _observed = read_chain(chain, settings, adapter)
                assert result.block is not None
                chains[chain.name] = {"ok": True, "block_number": result.block.number}
            except ReconcilerError as exc:
                failed = True
                chains[chain.name] = {"ok": False, "error": str(exc)}
                err.print(f"chain {chain.name}: {exc}")
            finally:
                adapter.close()
    doc = {
        "ok": not failed,
        "config": str(settings.path),
        "database": redact_url(settings.database_url),
        "chains": chains or {name: {} for name in settings.chains},
        "assets": sorted(settings.assets),
        "wallets": sorted(settings.wallets),
    }
    if json_out:
        _emit_json(doc)
    else:
        err.print(
            f"{settings.path}: {'ok' if not failed else 'FAILED'} — {len(settings.chains)} chain(s), "
            f"{len(settings.assets)} asset(s), {len(settings.wallets)} wallet(s)"
        )
    if failed:
        raise typer.Exit(2)


# ---------------------------------------------------------------------- imports


@accounts_app.command("import")
def accounts_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import accounts from CSV (account,class,name); all rows or none."""
    settings = _settings(ctx)
    text, digest = _read_file(file)
    rows = parse_accounts_csv(text, str(file))
    ledger = open_ledger(settings)
    try:
        added, updated = ledger.import_accounts(rows, str(file), digest)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "rows": len(rows), "added": added, "updated": updated})
    else:
        err.print(f"{file}: {len(rows)} account(s): {added} added, {updated} renamed")


@books_app.command("import")
def books_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import book entries from CSV (entry_id,date,account,wallet,asset,amount,kind,memo[,tx_hash]).

    All rows or none."""
    settings = _settings(ctx)
    text, digest = _read_file(file)
    ledger = open_ledger(settings)
    try:
        rows = parse_books_csv(text, str(file), settings, ledger.known_accounts())
        count = ledger.import_books(rows, str(file), digest)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count})
    else:
        err.print(f"{file}: {count} book entr{'y' if count == 1 else 'ies'} imported")


# ---------------------------------------------------------------------- run


def _breaks_table(
    breaks: Sequence[BreakRecord], settings: Settings, title: str | None = None, short_ids: bool = False
) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "kind", "severity", "status", "chain", "wallet", "asset", "amount", "seen"):
        table.add_column(col)
    for b in breaks:
        table.add_row(
            b.id[:8] if short_ids else b.id,
            b.key.kind.value,
            b.severity.value,
            b.status.value,
            b.key.chain,
            b.key.wallet,
            b.key.asset or "",
            break_doc(b, settings)["amount_display"] or "",
            str(b.times_seen),
        )
    return table


def print_run(report: RunReport, settings: Settings) -> None:
    chains = Table(title="Pinned blocks", title_justify="left")
    for col in ("chain", "block", "hash", "read path / error"):
        chains.add_column(col)
    for c in report.chains:
        chains.add_row(
            c.chain,
            str(c.block.number) if c.block else "-",
            c.block.hash if c.block else "-",
            c.error or (c.read_path or ""),
        )
    out.print(chains)
    positions = Table(title="Positions (difference = on-chain - book)", title_justify="left")
    for col, justify in (
        ("chain", "left"),
        ("wallet", "left"),
        ("asset", "left"),
        ("book", "right"),
        ("on-chain", "right"),
        ("difference", "right"),
    ):
        positions.add_column(col, justify=justify)  # type: ignore[arg-type]
    for p in report.positions:
        style = "red" if p.difference else None
        positions.add_row(
            p.chain,
            p.wallet,
            p.asset,
            format_amount(p.book, p.decimals),
            format_amount(p.onchain, p.decimals),
            format_amount(p.difference, p.decimals),
            style=style,
        )
    out.print(positions)
    if report.breaks:
        out.print(_breaks_table(report.breaks, settings, title="Breaks", short_ids=True))
    verdict = {
        0: "[green]complete: no open breaks[/green]",
        1: "[red]complete: breaks open[/red]",
        2: "[red]INCOMPLETE: no all-clear for what could not be read[/red]",
    }[report.exit_code]
    if report.unreconciled:
        unrec = Table(
            title="Book balances no configured wallet x asset covers (not reconciled)", title_justify="left"
        )
        for col in ("wallet", "asset", "book"):
            unrec.add_column(col, justify="right" if col == "book" else "left")
        for u in report.unreconciled:
            shown = format_amount(u.amount, u.decimals) if u.decimals is not None else f"{u.amount} base units"
            unrec.add_row(u.wallet, u.asset, shown, style="yellow")
        out.print(unrec)
        err.print(
            f"warning: {len(report.unreconciled)} book balance(s) are not reconciled: their wallet or asset "
            "is not in the configuration"
        )
    out.print(f"run {report.run.id}: {verdict}")
    if report.run.reason:
        err.print(f"reason: {report.run.reason}")


def _execute(
    settings: Settings, job: str, render: Callable[[RunReport], dict[str, Any]], checkpoint: Callable[[], None]
) -> RunReport:
    """One run or scan from the command line, inside the caller's interruptible block: waits
    for the ledger (saying so); on SIGINT/SIGTERM it is recorded incomplete and returned, so the
    caller still reports it before leaving the block raises Interrupted (exit 2)."""
    ledger = open_ledger(settings)

    def waiting() -> None:
        err.print(
            f"waiting: another run holds the ledger (giving up after {settings.lock_timeout:g}s)…", highlight=False
        )

    options = RunOptions(
        lock_timeout=settings.lock_timeout, on_wait=waiting, render=render, job=job, checkpoint=checkpoint
    )
    try:
        return run_reconciliation(settings, ledger, adapter_for, options)
    finally:
        ledger.close()


@app.command()
def run(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Reconcile every wallet x asset against the books at one pinned block per chain, after
    observing every movement since the last scan (transfers, approvals, native value)."""
    settings = _settings(ctx)
    with interruptible() as guard:
        report = _execute(settings, "run", lambda r: run_doc(r, settings), guard.check)
        if json_out:
            _emit_json(report.document if report.document is not None else run_doc(report, settings))
            if report.run.reason:
                err.print(f"run incomplete: {report.run.reason}")
        else:
            print_run(report, settings)
    raise typer.Exit(report.exit_code)


@app.command()
def scan(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Observe every movement of the custody wallets since the last scan, up to the pinned block
    of each chain, and judge it: outflows against signed instructions, inflows against the books,
    approvals against allowed spenders. No balances are compared (that is `run`)."""
    settings = _settings(ctx)
    with interruptible() as guard:
        report = _execute(settings, "scan", lambda r: scan_doc(r, settings), guard.check)
        doc = report.document if report.document is not None else scan_doc(report, settings)
        if json_out:
            _emit_json(doc)
        else:
            for name, c in doc["chains"].items():
                seen = (
                    f"blocks {c['from_block']}..{c['to_block']}: {c['observed']} movement(s) observed, "
                    f"{c['reorged']} reorged"
                    if c.get("to_block") is not None
                    else f"not scanned: {c.get('error')}"
                )
                out.print(f"{name}: {seen}")
            if report.breaks:
                out.print(_breaks_table(report.breaks, settings, title="Breaks", short_ids=True))
        if report.run.reason:
            err.print(f"scan incomplete: {report.run.reason}")
    raise typer.Exit(report.exit_code)


# ---------------------------------------------------------------------- transfers & instructions


@transfers_app.command("list")
def transfers_list(
    ctx: typer.Context,
    wallet: Annotated[str | None, typer.Option("--wallet", help="Only this wallet.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="observed or reorged.")] = None,
    all_kinds: Annotated[bool, typer.Option("--all", help="Also approvals and gas fees.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Observed movements into and out of custody wallets, with the instruction that
    authorized each outflow."""
    settings = _settings(ctx)
    if status is not None and status not in ("observed", "reorged"):
        raise typer.BadParameter(f"{status!r} is not observed or reorged", param_hint="--status")
    if wallet is not None and wallet not in settings.wallets:
        known = ", ".join(settings.wallets)
        raise typer.BadParameter(f"no wallet {wallet!r}; configured: {known}", param_hint="--wallet")
    directions = ["in", "out", "approval", "fee"] if all_kinds else ["in", "out"]
    ledger = open_ledger(settings)
    try:
        rows = surveillance_store.list_movements(ledger, wallet, status, directions)
    finally:
        ledger.close()
    docs = [transfer_doc(r, settings) for r in rows]
    if json_out:
        _emit_json({"transfers": docs})
        return
    table = Table()
    for col in ("chain", "block", "tx", "wallet", "dir", "asset", "amount", "counterparty", "status", "instruction"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for d in docs:
        table.add_row(
            d["chain"],
            str(d["block_number"]),
            d["tx_hash"],
            d["wallet"],
            d["direction"],
            d["asset"],
            d["amount_display"],
            d["to"] if d["direction"] != "in" else d["from"],
            d["status"],
            d["instruction_id"] or "",
        )
    out.print(table)


@instructions_app.command("import")
def instructions_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import signed transfer instructions (JSON lines); the whole file or nothing."""
    settings = _settings(ctx)
    text, digest = _read_file(file)
    ledger = open_ledger(settings)
    try:
        parsed = load_instructions(text, str(file), settings, surveillance_store.stored_instruction_ids(ledger))
        lines = dict(enumerate(text.splitlines(), start=1))
        count = surveillance_store.import_instructions(ledger, parsed, lines, str(file), digest)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count})
    else:
        err.print(f"{file}: {count} instruction(s) imported")


@instructions_app.command("sign")
def instructions_sign(
    ctx: typer.Context,
    file: Path,
    key_env: Annotated[
        str | None, typer.Option("--key-env", help="Environment variable holding the signing key (hex).")
    ] = None,
    keystore: Annotated[Path | None, typer.Option("--keystore", help="An encrypted keystore (JSON) file.")] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the keystore's password.")
    ] = None,
) -> None:
    """Add a signature to every instruction of FILE and print the result (JSON lines) on stdout.
    The key comes only from the environment or an encrypted keystore, never the command line."""
    settings = _settings(ctx)
    if (key_env is None) == (keystore is None):
        raise typer.BadParameter("give either --key-env VAR or --keystore PATH (with --password-env VAR)")
    text, _digest = _read_file(file)
    key = load_key(key_env=key_env, keystore=keystore, password_env=password_env)
    signed = sign_file(text, str(file), settings, key)
    sys.stdout.write(signed if signed.endswith("\n") or not signed else signed + "\n")


@instructions_app.command("list")
def instructions_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every imported instruction with its status: open, consumed (by a tx hash) or expired;
    signatures are verified again, and an instruction that no longer verifies says why."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        statuses = surveillance_store.instruction_statuses(ledger)
    finally:
        ledger.close()
    now = datetime.now(UTC)
    docs = [instruction_doc(st, settings, now) for st in statuses]
    if json_out:
        _emit_json({"instructions": docs})
        return
    table = Table()
    for col in ("id", "wallet", "asset", "to", "amount", "valid until", "status", "valid"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for d in docs:
        table.add_row(
            d["id"],
            d["wallet"],
            d["asset"],
            d["to"],
            d["amount_display"],
            d["valid_until"],
            d["status"] + (f" by {d['consumed_by']}" if d["consumed_by"] else ""),
            "yes" if d["valid"] else "NO: " + "; ".join(d["problems"]),
        )
    out.print(table)


# ---------------------------------------------------------------------- runs


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, newest first.")] = 20,
    json_out: JsonFlag = False,
) -> None:
    """Past runs, newest first, with their outcome and who ran them."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        runs = ledger.list_runs(limit)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"runs": [run_summary_doc(r) for r in runs]})
        return
    table = Table()
    for col in ("id", "started", "finished", "status", "exit", "trigger", "job", "instance", "reason"):
        table.add_column(col)
    for r in runs:
        doc = run_summary_doc(r)
        table.add_row(
            r.id,
            doc["started_at"],
            doc["finished_at"] or "",
            r.status,
            "" if r.exit_code is None else str(r.exit_code),
            r.trigger,
            r.job,
            r.instance or "",
            r.reason or "",
        )
    out.print(table)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str, json_out: JsonFlag = False) -> None:
    """One run's document as `run --json` printed it (positions and breaks as they were)."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        stored = ledger.get_run(run_id)
        head = daemon_store.audit_head(ledger)
    finally:
        ledger.close()
    doc = stored_run_doc(stored)
    # The audit trail's head, for an auditor to pin (stderr: stdout keeps the document as printed).
    err.print(f"audit trail head: {head}")
    if json_out:
        _emit_json(doc)
        return
    for key in ("run_id", "status", "exit_code", "reason", "started_at", "trigger", "job", "instance"):
        out.print(f"{key:>12}: {doc.get(key)}")
    for name, c in doc["chains"].items():
        pinned = f"block {c['block_number']} {c['block_hash']}" if c.get("block_number") is not None else "not read"
        out.print(f"{'chain ' + name:>12}: {pinned} {c.get('error') or ''}")
    differing = [p for p in doc["positions"] if p["difference"] != "0"]
    out.print(f"   positions: {len(doc['positions'])} ({len(differing)} differing)")
    for b in doc["breaks"]:
        what = " ".join(str(b[k]) for k in ("id", "kind", "severity", "status", "wallet", "asset", "amount_display"))
        out.print(f"       break: {what}")


# ---------------------------------------------------------------------- breaks


_STATUSES = [s.value for s in BreakStatus]


@breaks_app.command("list")
def breaks_list(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="open, acknowledged or resolved; repeatable. Default: open and acknowledged."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every break, resolved ones included.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """List breaks."""
    settings = _settings(ctx)
    for s in status or []:
        if s not in _STATUSES:
            raise typer.BadParameter(f"{s!r} is not one of {', '.join(_STATUSES)}", param_hint="--status")
    wanted = (
        None if all_ else [BreakStatus(s) for s in status] if status else [BreakStatus.OPEN, BreakStatus.ACKNOWLEDGED]
    )
    ledger = open_ledger(settings)
    try:
        breaks = ledger.list_breaks(wanted)
    finally:
        ledger.close()
    if json_out:
        _emit_json(breaks_doc(breaks, settings))
        return
    out.print(_breaks_table(breaks, settings))


@breaks_app.command("show")
def breaks_show(ctx: typer.Context, break_id: str, json_out: JsonFlag = False) -> None:
    """One break with its evidence and history."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        brk, events = ledger.get_break(break_id)
    finally:
        ledger.close()
    asset = settings.assets.get(brk.key.asset or "")
    event_docs = [event_doc(e, asset.decimals if asset else brk.decimals) for e in events]
    brk_doc = break_doc(brk, settings)
    if json_out:
        _emit_json({"break": brk_doc, "events": event_docs})
        return
    for key, value in brk_doc.items():
        out.print(f"{key:>16}: {value}")
    for e in event_docs:
        out.print(
            f"  {e['at']} {e['event']:<9} run={e['run_id']} block={e['block_number']} amount={e['amount_display']}"
        )


@breaks_app.command("ack")
def breaks_ack(
    ctx: typer.Context,
    break_id: str,
    note: Annotated[str, typer.Option("--note", help="Why, and who is on it (kept in the audit trail).")],
    json_out: JsonFlag = False,
) -> None:
    """Acknowledge an open break (it stays until a run no longer finds it)."""
    _change_break(ctx, break_id, note, json_out, Ledger.acknowledge, "acknowledged")


def _change_break(
    ctx: typer.Context,
    break_id: str,
    note: str,
    json_out: bool,
    change: Callable[[Ledger, str, str], BreakRecord],
    done: str,
) -> None:
    """A person's change to a break, with the note that explains it kept in the audit trail."""
    settings = _settings(ctx)
    if not note.strip():
        raise typer.BadParameter("say why, for the audit trail", param_hint="--note")
    ledger = open_ledger(settings)
    try:
        brk = change(ledger, break_id, note)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"break": break_doc(brk, settings)})
    else:
        err.print(f"break {brk.id} {done}")


@breaks_app.command("resolve")
def breaks_resolve(
    ctx: typer.Context,
    break_id: str,
    note: Annotated[str, typer.Option("--note", help="Why it is closed, and by whom (kept in the audit trail).")],
    json_out: JsonFlag = False,
) -> None:
    """Resolve a break by hand, with the reason kept in its audit trail: typically one no run can
    check any more (its wallet or asset left the configuration), or an event-like break (an
    unauthorized transfer) after review. A run that finds the condition again opens a new break."""
    _change_break(ctx, break_id, note, json_out, Ledger.resolve, "resolved")


@breaks_app.command("verify-audit")
def breaks_verify_audit(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Check the audit trail's hash chain: exit 0 when every record verifies, 1 naming the
    first that does not (a record edited or deleted behind the product's back)."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        result = daemon_store.verify_audit(ledger)
    finally:
        ledger.close()
    doc = {
        "ok": result.first_bad is None,
        "records": result.records,
        "head": result.head,
        "first_bad_record": result.first_bad,
        "problem": result.problem,
    }
    if json_out:
        _emit_json(doc)
    elif result.first_bad is None:
        out.print(f"audit trail intact: {result.records} record(s), head {result.head}")
    else:
        err.print(f"audit trail BROKEN at record {result.first_bad}: {result.problem}")
    raise typer.Exit(0 if result.first_bad is None else 1)


# ---------------------------------------------------------------------- daemon


@app.command()
def daemon(ctx: typer.Context) -> None:
    """Run the jobs of [schedule] (run, scan, segregation_statement) around the clock until
    SIGTERM or SIGINT, which stop it cleanly (the job in progress is recorded incomplete) with
    exit 0. Several instances may share one PostgreSQL ledger: each firing runs exactly once."""
    from reconciler.scheduler import Daemon, JobOutcome

    settings = _settings(ctx)
    jobs = [j for j in ("run", "scan", "segregation_statement") if getattr(settings.schedule, j)]
    if not jobs:
        raise ReconcilerError(
            'nothing is scheduled: set [schedule] run, scan or segregation_statement (e.g. run = "*/5 * * * *")'
        )
    ledger = open_ledger(settings)
    guard_file = daemon_store.DaemonGuard(ledger)
    guard_file.acquire()
    # every firing's outcome is logged (INFO) unless the log level was raised with --debug
    logging.getLogger("reconciler").setLevel(min(logging.getLogger("reconciler").getEffectiveLevel(), logging.INFO))
    metrics = Metrics()
    server = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    if server is not None:
        err.print(f"metrics at {server.url}")

    def after(outcome: JobOutcome) -> None:
        observed = open_ledger(settings)
        try:
            if outcome.run_id is None:
                metrics.observe_job(outcome.job, outcome.outcome)
            else:
                metrics.observe_stored_run(observed.get_run(outcome.run_id), outcome=outcome.outcome)
            metrics.refresh_from_ledger(observed)
        finally:
            observed.close()
        _deliver_alerts(settings)

    runner = Daemon(settings, after_job=after)
    err.print(f"daemon: {', '.join(jobs)} on schedule ({settings.schedule.timezone}); SIGTERM or Ctrl-C stops it")
    stopped_by = int(signal.SIGTERM)
    try:
        with interruptible() as guard:
            runner.start(extra=lambda: _deliver_alerts(settings))
            while True:
                guard.check()
                time.sleep(0.2)
    except Interrupted as exc:
        stopped_by = exc.signum
    finally:
        runner.stop(stopped_by)
        if server is not None:
            server.close()
        guard_file.release()
        ledger.close()
    err.print(f"daemon stopped ({signal.Signals(stopped_by).name})")
    raise typer.Exit(0)


def _deliver_alerts(settings: Settings, checkpoint: Callable[[], None] = lambda: None) -> None:
    """Deliver queued alerts, if webhooks are configured (the daemon's delivery job; what fails
    is retried later with the same event id)."""
    if not settings.webhooks:
        return
    from reconciler.alerts import deliver_pending

    def stopping() -> bool:
        try:
            checkpoint()
        except Interrupted:
            return True
        return False

    ledger = open_ledger(settings)
    try:
        deliver_pending(ledger, settings, should_stop=stopping)
    except ReconcilerError as exc:
        logging.getLogger("reconciler.alerts").error("event=alert_delivery_failed reason=%r", str(exc))
    finally:
        ledger.close()


@alerts_app.command("deliver")
def alerts_deliver(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Deliver the queued alerts that are due now (the daemon does this every few seconds; use
    this where no daemon runs). Exit 0 when nothing due is left undelivered, 1 otherwise."""
    from reconciler.alerts import deliver_pending

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        with interruptible() as guard:
            done = deliver_pending(ledger, settings, should_stop=lambda: guard.interrupted)
    finally:
        ledger.close()
    doc = {"delivered": len(done.delivered), "failed": len(done.failed), "pending": done.pending}
    if json_out:
        _emit_json(doc)
    else:
        err.print(f"{doc['delivered']} delivered, {doc['failed']} failed (retried later), {doc['pending']} pending")
    raise typer.Exit(1 if done.failed else 0)


@app.command()
def health(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """For a process supervisor or a load balancer: exit 0 when the last run of every scheduled
    job finished complete within twice its interval, 1 otherwise, saying why."""
    from reconciler.health import assess

    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        last = daemon_store.last_finished_runs(ledger)
    finally:
        ledger.close()
    report = assess(settings.schedule, last, datetime.now(UTC))
    if json_out:
        _emit_json({"ok": report.ok, "problems": report.problems})
    else:
        for problem in report.problems:
            err.print(problem)
        out.print("healthy" if report.ok else "UNHEALTHY")
    raise typer.Exit(0 if report.ok else 1)


# ---------------------------------------------------------------------- wallets


WalletOption = Annotated[
    list[str] | None, typer.Option("--wallet", help="Only this wallet (repeatable). Default: every wallet.")
]


@wallets_app.command("baseline")
def wallets_baseline(ctx: typer.Context, wallet: WalletOption = None, json_out: JsonFlag = False) -> None:
    """Record each wallet's on-chain configuration at the pinned block as reviewed. Every run
    compares with the newest baseline; re-baselining after a review resolves the change."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        readings = wallet_review.read_current(settings, adapter_for, wallet or ())
        wallet_review.record_reviewed(ledger, readings, settings)
    finally:
        ledger.close()
    if json_out:
        _emit_json({"wallets": [r.config.to_json() for r in readings.wallets]})
        return
    for r in readings.wallets:
        err.print(
            f"baselined {r.config.wallet} on {r.chain} at block {r.config.block_number}: {r.config.kind.value}"
            + (f", {len(r.config.owners)} owner(s), threshold {r.config.threshold}" if r.config.owners else "")
        )


@wallets_app.command("show")
def wallets_show(ctx: typer.Context, wallet: WalletOption = None, json_out: JsonFlag = False) -> None:
    """Each wallet's configuration now, beside its baseline. Exit 1 when one differs from its
    baseline, 2 when a chain could not be read."""
    settings = _settings(ctx)
    ledger = open_ledger(settings)
    try:
        baselines = ledger.baselines()
        readings = wallet_review.read_current(settings, adapter_for, wallet or ())
    finally:
        ledger.close()
    docs: list[dict[str, Any]] = []
    changed = False
    for r in readings.wallets:
        changes = wallet_review.differences(baselines, r)
        baseline = baselines.wallets.get((r.chain, r.config.wallet))
        changed = changed or bool(changes)
        docs.append(
            {
                **r.config.to_json(),
                "baseline": baseline.to_json() if baseline is not None else None,
                "baseline_reviewed": baselines.reviewed.get((r.chain, r.config.wallet)),
                "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in changes or []],
            }
        )
    for chain, why in readings.errors.items():
        err.print(f"chain {chain}: {why}")
    if json_out:
        _emit_json({"wallets": docs, "errors": readings.errors})
    else:
        for doc in docs:
            table = Table(title=f"{doc['wallet']} on {doc['chain']} ({doc['kind']})", title_justify="left")
            for col in ("field", "baseline", "now"):
                table.add_column(col)
            base = doc["baseline"] or {}
            for field in ("code_hash", "implementation", "admin", "singleton", "owners", "threshold", "modules",
                          "guard", "fallback_handler", "delegation", "problems"):
                before, now = base.get(field), doc[field]
                table.add_row(field, _shown(before), _shown(now), style="red" if base and before != now else None)
            out.print(table)
    if readings.errors:
        raise typer.Exit(2)
    raise typer.Exit(1 if changed else 0)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) or "[]"
    return str(value)


# ---------------------------------------------------------------------- demo


@app.command()
def demo(
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Write the demo's config, books and database into this folder and keep them."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Start a local Anvil, deploy collateral tokens, plant breaks and reconcile."""
    from reconciler.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, json_out=json_out, out=out, err=err))


# ---------------------------------------------------------------------- entry point


def _print_traceback() -> None:
    """Library exceptions in the chain (requests, psycopg) quote full URLs: redact them."""
    print(redact_urls(traceback.format_exc()), file=sys.stderr, end="")


def main(argv: list[str] | None = None) -> None:
    """Entry point: Typer handles usage errors (exit 2); every other failure exits 2 too, and so
    does a signal caught inside an `interruptible()` block (outside one, Python's defaults)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="reconciler")
    except Interrupted as exc:  # a BaseException: `except Exception` below would not see it
        if debug:
            _print_traceback()
        print(f"error: {exc}", file=sys.stderr)  # "error: interrupted by SIGTERM"
        sys.exit(2)
    except ReconcilerError as exc:
        if debug:
            _print_traceback()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the contract: a crash exits 2, never 1
        if debug:
            _print_traceback()
        first = redact_urls(str(exc)).splitlines()[0] if str(exc) else ""
        print(
            f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Benchmark against the RPC floor on a local Anvil (`reconciler bench [--n N ...] [--large]`; --help)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed
    from benchmarks.bench import main as bench_main

    raise typer.Exit(bench_main(ctx.args))


# Segregation commands live in their own module; registered last, once the helpers above exist.
from reconciler import cli_segregation  # noqa: E402

cli_segregation.register(app)
