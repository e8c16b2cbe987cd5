"""The command line: `reconciler [--config FILE] [--debug] COMMAND [ARGS] [--json]`.

The entry point, and the one place the Typer apps are assembled: every command module defines
its commands (and its sub-app), this module registers them in the order `reconciler --help`
lists them; no command module imports this one.

Invariants: with --json, stdout carries exactly one JSON document and nothing else (tables,
progress and errors go to stderr); exit codes are 0 clean, 1 breaks, 2 could not complete,
and any unexpected exception exits 2 with a one-line message (the traceback with --debug).
Importing this module imports nothing but the standard library and the package's version: the
app is built on first use (`build_app`), after `--version` and shell completion were answered
without it.
"""

from __future__ import annotations

import os
import sys
from functools import cache

from reconciler import __version__

TYPE_CHECKING = False  # as typing's, without importing typing: this module is on every TAB's path
if TYPE_CHECKING:
    from typing import Any

    import typer

# Start-up: `--version` and each TAB of shell completion start a process of their own, so they
# are answered before Typer, Rich or any command module is imported (`_asks_version`,
# reconciler.cli.completion); every other command imports what it needs when it runs.
_GLOBAL_VALUED = ("--config", "--log-format")
_GLOBAL_FLAGS = ("--debug", "--quiet", "-q", "--version")


@cache
def build_app() -> typer.Typer:
    """The Typer app, assembled once: commands first, then the groups, each in the order help
    lists them."""
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
    from reconciler.cli.conventions import epilog

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
    return app


@cache
def build_command() -> Any:
    """The Click command of the app, with the command line's conventions applied."""
    import typer

    from reconciler.cli.conventions import conventional_help

    command = typer.main.get_command(build_app())
    conventional_help(command)
    return command


def __getattr__(name: str) -> Any:
    if name == "app":  # `from reconciler.cli.main import app`, built on first use
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def completion_tree_source() -> str:
    """The source of reconciler/cli/completion_tree.py, from the app as it is now: help texts as
    Typer renders them (plain text), on one line."""
    from typer import rich_utils

    from reconciler.cli.completion import build_tree, render_tree

    command = build_command()
    width, rich_utils.MAX_WIDTH = rich_utils.MAX_WIDTH, 100_000
    try:
        with command.make_context("reconciler", [], resilient_parsing=True) as ctx:
            tree = build_tree(command, ctx, rich_utils.rich_render_text)
    finally:
        rich_utils.MAX_WIDTH = width
    return render_tree(tree)


def _asks_version(args: list[str]) -> bool:
    """``--version`` among the global options before the command (as in `reconciler
    --version`), with nothing Typer would refuse there: answered without starting Typer."""
    i = 0
    asked = False
    while i < len(args) and args[i].startswith("-"):
        word = args[i]
        if word in _GLOBAL_VALUED:
            i += 2
            continue
        if word.split("=", 1)[0] in _GLOBAL_VALUED and "=" in word:
            i += 1
            continue
        if word not in _GLOBAL_FLAGS:
            return False  # -h, --json, a typo: Typer says what it means
        asked = asked or word == "--version"
        i += 1
    return asked


def _say_error(exc: BaseException) -> None:
    """``error: …`` on stderr, its text `neutralise`d line by line (a node's message or a CSV
    value inside it never drives the terminal); the lines the message is made of (an import's
    problems, one a line) stay lines."""
    from reconciler.redaction import neutralise

    text = "\n".join(neutralise(line) for line in str(exc).split("\n"))
    print(f"error: {text}", file=sys.stderr)


def _print_traceback() -> None:
    """Library exceptions in the chain (requests, psycopg) quote full URLs: redact them."""
    import traceback

    from reconciler.redaction import neutralise, redact_urls

    print(neutralise(redact_urls(traceback.format_exc()), keep_newlines=True), file=sys.stderr, end="")


def tune_gc() -> None:
    """Fewer collections: a run builds tens of thousands of small objects (positions, rows,
    document fields) that all live until it ends, and the default thresholds scanned them
    again and again — about a third of a 10,000-wallet run. Objects made by imports are frozen
    out of every later collection. Reference cycles are still collected, just less often. Once
    per process: a caller that runs several commands in one process (the tests) would otherwise
    freeze each command's leftover garbage for good."""
    import gc

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
    given = sys.argv[1:] if argv is None else list(argv)
    if _asks_version(given):
        print(__version__)
        sys.exit(0)
    if os.environ.get("_RECONCILER_COMPLETE"):
        from reconciler.cli.completion import answer

        answered = answer(os.environ)
        if answered is not None:
            text, code = answered
            sys.stdout.write(text)
            sys.stdout.flush()
            sys.exit(code)
    from reconciler.cli.conventions import MisplacedOption, arrange
    from reconciler.errors import ReconcilerError
    from reconciler.interrupt import Interrupted
    from reconciler.redaction import neutralise, redact_urls

    tune_gc()
    command = build_command()
    try:
        args = arrange(command, given)
    except MisplacedOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    debug = "--debug" in args
    try:
        command.main(args=args, prog_name="reconciler")
    except Interrupted as exc:  # a BaseException: `except Exception` below would not see it
        if debug:
            _print_traceback()
        _say_error(exc)  # "error: interrupted by SIGTERM"
        sys.exit(2)
    except ReconcilerError as exc:
        if debug:
            _print_traceback()
        _say_error(exc)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the contract: a crash exits 2, never 1
        if debug:
            _print_traceback()
        first = neutralise(redact_urls(str(exc)).splitlines()[0]) if str(exc) else ""
        print(
            f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(0)
