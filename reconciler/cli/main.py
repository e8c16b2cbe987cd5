"""The command line: `reconciler [--config FILE] [--debug] COMMAND [ARGS] [--json]`.

The entry point, and the one place the Typer apps are assembled: every command module defines
its commands (and its sub-app), this module registers them in the order `reconciler --help`
lists them; no command module imports this one.

Invariants: with --json, stdout carries exactly one JSON document and nothing else (tables,
progress and errors go to stderr); exit codes are 0 clean, 1 breaks, 2 could not complete,
and any unexpected exception exits 2 with a one-line message (the traceback with --debug).
"""

from __future__ import annotations

import gc
import sys
import traceback

import typer

from reconciler.cli import (
    books,
    breaks,
    common,
    daemon,
    demo,
    presign,
    report,
    runs,
    segregation,
    setup,
    transfers,
    wallets,
)
from reconciler.cli.conventions import MisplacedOption, arrange, conventional_help, epilog
from reconciler.errors import ReconcilerError
from reconciler.interrupt import Interrupted
from reconciler.redaction import redact_urls

app = typer.Typer(
    name="reconciler",
    help="Custody and segregation reconciler for tokenized collateral.",
    epilog=epilog(),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(common._root)

# Commands first, then the groups, each in the order help lists them.
app.command()(setup.init)
app.command()(runs.run)
app.command()(runs.scan)
app.command()(daemon.daemon)
app.command()(daemon.health)
app.command()(demo.demo)
app.command()(presign.presign)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)(
    setup.bench
)
app.add_typer(setup.config_app, name="config")
app.add_typer(books.accounts_app, name="accounts")
app.add_typer(books.books_app, name="books")
app.add_typer(breaks.breaks_app, name="breaks")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(wallets.wallets_app, name="wallets")
app.add_typer(daemon.alerts_app, name="alerts")
app.add_typer(transfers.transfers_app, name="transfers")
app.add_typer(transfers.instructions_app, name="instructions")
app.add_typer(segregation.segregation_app, name="segregation")
app.add_typer(segregation.equity_app, name="equity")
app.add_typer(segregation.offchain_app, name="offchain")
app.add_typer(report.report_app, name="report")


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
