"""The command line: `reconciler [--config FILE] [--debug] COMMAND [ARGS] [--json]`.

Invariants: with --json, stdout carries exactly one JSON document and nothing else (tables,
progress and errors go to stderr); exit codes are 0 clean, 1 breaks, 2 could not complete,
and any unexpected exception exits 2 with a one-line message (the traceback with --debug).
"""

from __future__ import annotations

import gc
import hashlib
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
from rich.console import Console, RenderableType

from reconciler import __version__
from reconciler.app import jsonout, wallet_review
from reconciler.app.documents import (
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
from reconciler.app.run import RunOptions, RunReport, run_reconciliation
from reconciler.bootstrap import adapter_for, open_ledger
from reconciler.cli_conventions import (
    MisplacedOption,
    arrange,
    conventional_help,
    epilog,
    quiet_noisy_loggers,
    said_once,
)
from reconciler.cli_format import (
    NONE,
    ChainView,
    Col,
    Row,
    StdoutConsole,
    break_history,
    breaks_summary,
    chain_lines,
    fields,
    fit_table,
    history_lines,
    human_amount,
    human_display,
    human_duration,
    human_instant,
    human_number,
    human_value,
    run_ids_in,
)
from reconciler.daemon.logformat import JsonLogFormatter
from reconciler.daemon.metrics import Metrics
from reconciler.domain import BreakRecord, BreakStatus, abbreviate_ids
from reconciler.errors import InputError, ReconcilerError
from reconciler.inputs.books import BookStream, parse_accounts_csv
from reconciler.inputs.config import load_settings
from reconciler.inputs.csvfile import file_lines, file_sha256
from reconciler.inputs.instructions import load_instructions, load_key, sign_file
from reconciler.inputs.settings import Settings
from reconciler.interrupt import Interrupted, interruptible
from reconciler.ledger import daemon_store, surveillance_store
from reconciler.ledger.store import Ledger, redact_url
from reconciler.redaction import RedactingFilter, redact_urls

app = typer.Typer(
    name="reconciler",
    help="Custody and segregation reconciler for tokenized collateral.",
    epilog=epilog(),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Write a starter configuration, and check one.", no_args_is_help=True)
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

# Sized when printing: COLUMNS, else the terminal, else (a pipe, a log) wide enough for whole rows.
out = StdoutConsole(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)
# Informational lines (progress, "waiting", "imported …"): stderr, silenced by --quiet. Errors and
# warnings go to `err`, which --quiet never silences.
info = Console(stderr=True, highlight=False, soft_wrap=True)
# Whether a one-shot run's log lines that repeat its reason are held back (text logs, no --debug).
_said_once = True

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@dataclass
class State:
    config: str | None
    debug: bool
    quiet: bool = False


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", metavar="FILE", help="Configuration file (TOML); else $RECONCILER_CONFIG, ./reconciler.toml."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs (the reconciler's own) and tracebacks.")] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress or informational lines on stderr (errors and warnings stay)."),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version.", callback=_print_version, is_eager=True)
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format", metavar="text|json", help="Log lines as text (key=value) or json (one object per line)."
        ),
    ] = "text",
) -> None:
    global _said_once
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
    # web3 and alembic log at DEBUG too: --debug is the reconciler's own debug, not theirs.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    quiet_noisy_loggers()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    info.quiet = quiet
    _said_once = log_format == "text" and not debug
    ctx.obj = State(config=config, debug=debug, quiet=quiet)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def _settings(ctx: typer.Context) -> Settings:
    return load_settings(_state(ctx).config)


def _emit_json(doc: Any) -> None:
    jsonout.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def report_import(json_out: bool, file: Path, digest: str, count: int, what: str) -> None:
    """What an accepted import prints: its --json document, or one line on stderr."""
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count})
    else:
        info.print(f"{file}: {count} {what} imported")


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
        info.print(f"database ready: {redact_url(settings.database_url)} (schema version {version}, {change})")


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    online: Annotated[
        bool, typer.Option("--online", help="Also check each node's chain id and each token's decimals().")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Validate the configuration file; with --online, also read each chain as a run does and
    list what was verified: endpoint, chain id, head and pinned block, read path, decimals."""
    settings = _settings(ctx)
    chains: dict[str, Any] = {}
    failed = False
    if online:
        from reconciler.app.online_check import check_chain, describe

        for chain in settings.chains.values():
            chains[chain.name] = check_chain(chain, settings)
            failed = failed or not chains[chain.name]["ok"]
            if not chains[chain.name]["ok"]:
                err.print(f"chain {chain.name}: {chains[chain.name]['error']}", markup=False)
            if not json_out:
                for line in describe(chain.name, chains[chain.name]):
                    out.print(line, markup=False, soft_wrap=True)
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


@config_app.command("init")
def config_init(
    path: Annotated[
        Path, typer.Argument(help="Where to write it (a folder gets a reconciler.toml inside).")
    ] = Path("reconciler.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration (default ./reconciler.toml) to edit; never
    overwrites a file unless --force."""
    from reconciler.templates import starter_config

    target = path / "reconciler.toml" if path.is_dir() else path
    if target.exists() and not force:
        raise ReconcilerError(f"{target} already exists; use --force to overwrite it")
    try:
        target.write_text(starter_config(), encoding="utf-8")
    except OSError as exc:
        raise ReconcilerError(f"cannot write {target}: {exc.strerror}") from exc
    shown = str(target)
    flag = "" if target.resolve() == Path("reconciler.toml").resolve() else f" --config {shown}"
    info.print(
        f"wrote {shown}\nnext:\n"
        f"  1. edit {shown}: your node's rpc_urls and chain_id, your tokens, your custody wallets\n"
        f"  2. reconciler{flag} config check --online   (asks the node what it says)\n"
        f"  3. reconciler{flag} init                    (creates the ledger database)\n"
        f"  4. reconciler{flag} accounts import FILE, books import FILE, then run",
        markup=False,
    )


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
        info.print(f"{file}: {len(rows)} account(s): {added} added, {updated} renamed")


@books_app.command("import")
def books_import(ctx: typer.Context, file: Path, json_out: JsonFlag = False) -> None:
    """Import book entries from CSV (entry_id,date,account,wallet,asset,amount,kind,memo[,tx_hash]).

    All rows or none, streamed (memory stays bounded however long the file). A file already
    imported byte for byte is a no-op."""
    settings = _settings(ctx)
    digest = file_sha256(file)
    ledger = open_ledger(settings)
    try:
        earlier = ledger.books_import_of(digest)
        count = (
            0
            if earlier
            else ledger.import_books_stream(
                lambda known, entry_ids: BookStream(file_lines(file, digest), str(file), settings, known, entry_ids),
                str(file),
                digest,
            )
        )
    finally:
        ledger.close()
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count, "already_imported": earlier is not None})
    elif earlier:
        info.print(f"{file}: already imported on {earlier:%Y-%m-%d %H:%M:%S} UTC (sha256 {digest[:8]}…), nothing to do")
    else:
        info.print(f"{file}: {count} book entr{'y' if count == 1 else 'ies'} imported")


# ---------------------------------------------------------------------- run


def _breaks_table(breaks: Sequence[BreakRecord], settings: Settings, title: str | None = None) -> RenderableType:
    return _break_docs_table([break_doc(b, settings) for b in breaks], title)


def _break_docs_table(docs: Sequence[dict[str, Any]], title: str | None = None) -> RenderableType:
    """Breaks (their JSON documents) for a person: short ids, the form every command accepts;
    whole amounts with separators; the columns that matter least left out when narrow."""
    short = abbreviate_ids(d["id"] for d in docs)
    columns = (
        Col("id", whole=True),
        Col("kind"),
        Col("severity", drop=3),
        Col("status"),
        Col("chain", drop=2),
        Col("wallet"),
        Col("asset"),
        Col("amount", justify="right", whole=True),
        Col("seen", justify="right", drop=1),
    )
    rows = [
        Row(
            (
                short[d["id"]],
                d["kind"],
                d["severity"],
                d["status"],
                d["chain"],
                d["wallet"],
                d["asset"] or NONE,
                human_display(d["amount"], d["amount_display"]),
                f"{d['times_seen']:,}",
            ),
            style="dim" if d["status"] == "resolved" else None,
        )
        for d in docs
    ]
    return fit_table(out.width, columns, rows, title)


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
    if report.run.job == "run":
        differ = sum(1 for p in report.positions if p.difference)
        hint = " (--positions lists them)" if differ and not positions else ""
        unread = [c.chain for c in report.chains if c.block is None]
        if unread:
            hint += f"; none of {', '.join(unread)}: not read"
        out.print(f"positions: {len(report.positions) - differ:,} agree, {differ:,} differ{hint}", soft_wrap=True)
    seen = [(b.status.value, b.first_run_id, b.last_run_id) for b in report.breaks]
    out.print(breaks_summary(report.run.id, seen), soft_wrap=True)
    if positions and report.positions:
        out.print(_positions_table(report))
    if report.breaks:
        out.print(_breaks_table(report.breaks, settings, title="Breaks"))
    verdict = {
        0: "[green]complete: no open breaks[/green]",
        1: "[red]complete: breaks open[/red]",
        2: "[red]INCOMPLETE: no all-clear for what could not be read[/red]",
    }[report.exit_code]
    if report.unreconciled:
        rows = [
            Row((u.wallet, u.asset, human_amount(u.amount, u.decimals)), style="yellow") for u in report.unreconciled
        ]
        title = "Book balances no configured wallet x asset covers (not reconciled)"
        columns = (Col("wallet"), Col("asset"), Col("book", justify="right", whole=True))
        out.print(fit_table(out.width, columns, rows, title))
        err.print(
            f"warning: {len(report.unreconciled)} book balance(s) are not reconciled: their wallet or asset "
            "is not in the configuration"
        )
    what = "scan" if report.run.job == "scan" else "run"
    out.print(f"{what} {abbreviate_ids([report.run.id])[report.run.id]}: {verdict}")
    if report.run.reason:
        err.print(f"reason: {report.run.reason}", markup=False)


def _execute(
    settings: Settings, job: str, render: Callable[[RunReport], dict[str, Any]], checkpoint: Callable[[], None]
) -> RunReport:
    """One run or scan from the command line, inside the caller's interruptible block: waits
    for the ledger (saying so); on SIGINT/SIGTERM it is recorded incomplete and returned, so the
    caller still reports it before leaving the block raises Interrupted (exit 2). The log lines
    that repeat the run's reason (the chain that failed, the alert) are held back: the caller
    prints the reason itself, once."""
    ledger = open_ledger(settings)

    def waiting() -> None:
        info.print(
            f"waiting: another run holds the ledger (giving up after {settings.lock_timeout:g}s)…", highlight=False
        )

    options = RunOptions(
        lock_timeout=settings.lock_timeout, on_wait=waiting, render=render, job=job, checkpoint=checkpoint
    )
    try:
        with said_once(_said_once) as printed:
            report = run_reconciliation(settings, ledger, adapter_for, options)
            printed.append(report.run.reason or "")
        return report
    finally:
        ledger.close()


@app.command()
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
    settings = _settings(ctx)
    with interruptible() as guard:
        report = _execute(settings, "run", lambda r: run_doc(r, settings), guard.check)
        if json_out:
            _emit_json(report.document if report.document is not None else run_doc(report, settings))
            if report.run.reason:
                err.print(f"run incomplete: {report.run.reason}", markup=False)
        else:
            print_run(report, settings, positions=positions)
        _warn_if_no_books(report)
    raise typer.Exit(report.exit_code)


def _warn_if_no_books(report: RunReport) -> None:
    """A run against a ledger without a single book entry compares every balance with zero: say
    so (stderr, also under --json), since it is almost always a forgotten import."""
    if report.no_books:
        err.print(
            "warning: the ledger has no book entries; every on-chain balance will show as a difference — "
            "import books with: reconciler books import FILE"
        )


@app.command()
def scan(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Observe every movement of the custody wallets since the last scan, up to the pinned block
    of each chain, and judge it: outflows against signed instructions, inflows against the books,
    approvals against allowed spenders. No balances are compared (that is `run`)."""
    settings = _settings(ctx)
    with interruptible() as guard:
        report = _execute(settings, "scan", lambda r: scan_doc(r, settings), guard.check)
        if json_out:
            _emit_json(report.document if report.document is not None else scan_doc(report, settings))
            if report.run.reason:
                err.print(f"scan incomplete: {report.run.reason}", markup=False)
        else:
            print_run(report, settings)
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
    if not docs:
        out.print("no movements observed" + (f" for {wallet}" if wallet else "") + (f" ({status})" if status else ""))
        return
    columns = (
        Col("chain", drop=3),
        Col("block", justify="right", whole=True),
        Col("tx", whole=True),
        Col("wallet"),
        Col("dir"),
        Col("asset"),
        Col("amount", justify="right", whole=True),
        Col("counterparty", whole=True, drop=4),
        Col("status", drop=2),
        Col("instruction", whole=True, drop=1),
    )
    table_rows = [
        Row(
            (
                d["chain"],
                human_number(d["block_number"]),
                d["tx_hash"],
                d["wallet"],
                d["direction"],
                d["asset"],
                human_display(d["amount"], d["amount_display"]),
                d["to"] if d["direction"] != "in" else d["from"],
                d["status"],
                d["instruction_id"] or NONE,
            ),
            style="dim" if d["status"] == "reorged" else None,
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, table_rows))


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
    report_import(json_out, file, digest, count, "instruction(s)")


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
    if not docs:
        out.print("no instructions imported (reconciler instructions import FILE)")
        return
    columns = (
        Col("id", whole=True),
        Col("wallet"),
        Col("asset"),
        Col("to", whole=True, drop=3),
        Col("amount", justify="right", whole=True),
        Col("valid until", whole=True, drop=2),
        Col("status"),
        Col("consumed by", whole=True, drop=1),
        Col("valid", wrap=True),
    )
    table_rows = [
        Row(
            (
                d["id"],
                d["wallet"],
                d["asset"],
                d["to"],
                human_display(d["amount"], d["amount_display"]),
                human_instant(d["valid_until"]),
                d["status"],
                d["consumed_by"] or NONE,
                "yes" if d["valid"] else "NO: " + "; ".join(d["problems"]),
            ),
            style=None if d["valid"] else "red",
        )
        for d in docs
    ]
    out.print(fit_table(out.width, columns, table_rows))


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
    RUN_ID: the id or any unique prefix of it."""
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
    run = stored.summary  # the ledger's record of the run; the document shows what it printed
    by = [f"trigger {run.trigger}", f"job {run.job}"] + ([f"instance {run.instance}"] if run.instance else [])
    header = fields(
        [
            ("run", run.id),
            ("status", f"{run.status}, exit code {human_value(run.exit_code)}"),
            ("started", f"{human_instant(run.started_at)} UTC"),
            ("took", human_duration((run.finished_at - run.started_at).total_seconds()) if run.finished_at else None),
            ("by", ", ".join(by)),
            ("reason", run.reason),
        ],
        out.width,
    )
    for line in header:
        out.print(line, soft_wrap=True, markup=False)
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
    if run.job == "run":
        differing = sum(1 for p in doc["positions"] if p["difference"] != "0")
        out.print(f"positions: {len(doc['positions']) - differing:,} agree, {differing:,} differ", soft_wrap=True)
    breaks = doc.get("breaks", [])
    seen = [(b["status"], b.get("first_run_id"), b.get("last_run_id")) for b in breaks]
    out.print(breaks_summary(run.id, seen), soft_wrap=True)
    if breaks:
        out.print(_break_docs_table(breaks, title="Breaks"))


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
    if not breaks:
        shown = "any status" if wanted is None else " or ".join(st.value for st in wanted)
        out.print(f"no breaks ({shown})")
        return
    out.print(_breaks_table(breaks, settings))


@breaks_app.command("show")
def breaks_show(ctx: typer.Context, break_id: str, json_out: JsonFlag = False) -> None:
    """One break with its evidence and history (BREAK_ID: the id or any unique prefix of it)."""
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
    short = run_ids_in(event_docs, brk.first_run_id, brk.last_run_id, brk.resolved_run_id)
    acked = [e for e in event_docs if e["event"] == "acknowledged"]
    resolved = [e for e in event_docs if e["event"] == "resolved"]
    lines = fields(
        [
            ("break", brk.id),
            ("kind", f"{brk.key.kind.value} ({brk.severity.value})"),
            ("status", brk.status.value),
            ("chain", brk.key.chain),
            ("wallet", brk.key.wallet),
            ("asset", brk.key.asset),
            ("amount", None if brk.amount is None else human_display(brk_doc["amount"], brk_doc["amount_display"])),
            ("tx", brk.key.tx_hash),
            ("block", human_number(brk.block_number) if brk.block_number is not None else None),
            ("block hash", brk.block_hash),
            ("detail", brk.detail or None),
            ("seen", f"{brk.times_seen:,} time{'' if brk.times_seen == 1 else 's'}"),
            ("first seen", f"run {short.get(brk.first_run_id, brk.first_run_id)}"),
            ("last seen", f"run {short.get(brk.last_run_id, brk.last_run_id)}"),
            ("resolved by", f"run {short[brk.resolved_run_id]}" if brk.resolved_run_id else None),
            ("acknowledged", f"{human_instant(acked[-1]['at'])} UTC: {acked[-1]['note']}" if acked else None),
            ("resolved", f"{human_instant(resolved[-1]['at'])} UTC: {resolved[-1]['note']}" if resolved else None),
        ],
        out.width,
    )
    lines += ["history (UTC):", *history_lines(break_history(event_docs, short), out.width)]
    for line in lines:
        out.print(line, soft_wrap=True, markup=False)


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
        err.print(f"break {abbreviate_ids([brk.id])[brk.id]} {done}")


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
    from reconciler.daemon.scheduler import Daemon, JobOutcome

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
        info.print(f"metrics at {server.url}")

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
    info.print(f"daemon: {', '.join(jobs)} on schedule ({settings.schedule.timezone}); SIGTERM or Ctrl-C stops it")
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
    from reconciler.daemon.alerts import deliver_pending

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
    from reconciler.daemon.alerts import deliver_pending

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
    from reconciler.daemon.health import assess

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
        columns = (Col("field", whole=True), Col("baseline", whole=True), Col("now", whole=True))
        for doc in docs:
            base = doc["baseline"] or {}
            rows = [
                Row(
                    (field, _shown(base.get(field)), _shown(doc[field])),
                    style="red" if base and base.get(field) != doc[field] else None,
                )
                for field in ("code_hash", "implementation", "admin", "singleton", "owners", "threshold", "modules",
                              "guard", "fallback_handler", "delegation", "problems")
            ]
            out.print(fit_table(out.width, columns, rows, f"{doc['wallet']} on {doc['chain']} ({doc['kind']})"))
    if readings.errors:
        raise typer.Exit(2)
    raise typer.Exit(1 if changed else 0)


def _shown(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) or "[]"
    return str(value)


# ---------------------------------------------------------------------- demo


@app.command()
def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Write the demo's config, books and database into DIR and keep them; refuses a folder holding "
            "such files that the demo did not write, starts its own over.",
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Start two local Anvil chains, plant breaks, reconcile, and explain what was found and
    what to try next (`--keep DIR` keeps the config, books and ledger to explore)."""
    from reconciler.app.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, json_out=json_out, out=out, err=err, info=info, print_run=print_run))


# ---------------------------------------------------------------------- entry point


def _print_traceback() -> None:
    """Library exceptions in the chain (requests, psycopg) quote full URLs: redact them."""
    print(redact_urls(traceback.format_exc()), file=sys.stderr, end="")


def tune_gc() -> None:
    """Fewer collections: a run builds tens of thousands of small objects (positions, rows,
    document fields) that all live until it ends, and the default thresholds scanned them
    again and again — about a third of a 10,000-wallet run. Objects made by imports are frozen
    out of every later collection. Reference cycles are still collected, just less often. Once
    per process: a caller that runs several commands in one process (the tests) would otherwise
    freeze each command's leftover garbage for good."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


_gc_tuned = False


def main(argv: list[str] | None = None) -> None:
    """Entry point: Typer handles usage errors (exit 2); every other failure exits 2 too, and so
    does a signal caught inside an `interruptible()` block (outside one, Python's defaults)."""
    tune_gc()
    command = typer.main.get_command(app)
    conventional_help(command)
    try:
        args = arrange(command, sys.argv[1:] if argv is None else argv)
    except MisplacedOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    debug = "--debug" in args
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
