"""What every command shares: the consoles, the global options' state, reading the
configuration and a file, printing one JSON document, and the options several commands take.

Invariants: with --json, stdout carries exactly one JSON document and nothing else (tables,
progress and errors go to stderr; ``info`` is silenced by --quiet, ``err`` never).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import __version__
from reconciler.cli.conventions import quiet_noisy_loggers
from reconciler.cli.tables import SafeConsole
from reconciler.errors import InputError
from reconciler.redaction import RedactingFilter

if TYPE_CHECKING:  # imported where used: a command loads what it needs when it runs
    from reconciler.inputs.settings import Settings
    from reconciler.ledger.store import Ledger

# Each sized when printing: COLUMNS, else the terminal, else (a pipe, a log) wide enough for whole rows.
out = SafeConsole()
err = SafeConsole(stderr=True, soft_wrap=True)
# Informational lines (progress, "waiting", "imported …"): stderr, silenced by --quiet. Errors and
# warnings go to `err`, which --quiet never silences.
info = SafeConsole(stderr=True, soft_wrap=True)
# Whether a one-shot run's log lines that repeat its reason are held back (text logs, no --debug).
_said_once = True

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WalletOption = Annotated[
    list[str] | None, typer.Option("--wallet", help="Only this wallet (repeatable). Default: every wallet.")
]


@dataclass
class State:
    config: str | None
    debug: bool
    quiet: bool = False


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(0)


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
        from reconciler.daemon.logformat import JsonLogFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())
    # urllib3 logs each request line ("POST /v3/<api key> HTTP/1.1") at DEBUG: hosted RPC URLs
    # keep their key in the path. Quiet it, and redact URLs in whatever reaches a handler.
    # web3 and alembic log at DEBUG too: --debug is the reconciler's own debug, not theirs.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    quiet_noisy_loggers()
    from reconciler.daemon.logformat import TidyFilter

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        if not any(isinstance(f, TidyFilter) for f in handler.filters):
            handler.addFilter(TidyFilter())
    info.quiet = quiet
    _said_once = log_format == "text" and not debug
    ctx.obj = State(config=config, debug=debug, quiet=quiet)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def _settings(ctx: typer.Context) -> Settings:
    """The configuration, its wallets joined by those imported into the ledger (read when a
    command first needs them: reconciler.app.fleet)."""
    from reconciler.app.fleet import with_ledger_wallets
    from reconciler.inputs.config import load_settings

    return with_ledger_wallets(load_settings(_state(ctx).config))


def open_ledger(settings: Settings) -> Ledger:
    """The ledger for a command (reconciler.bootstrap.open_ledger): its alerts are queued for
    the webhooks as the daemon's are, but not logged — the command prints what it found."""
    from reconciler.bootstrap import open_ledger as open_ready

    return open_ready(settings, alert_log=False)


def _emit_json(doc: Any) -> None:
    from reconciler.app import jsonout

    jsonout.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def report_import(
    json_out: bool, file: Path, digest: str, count: int, what: str, earlier: datetime | None = None
) -> None:
    """What an accepted import prints: its --json document, or one line on stderr; ``earlier``:
    when the same bytes were imported before (this import was a no-op)."""
    if json_out:
        _emit_json({"file": str(file), "sha256": digest, "imported": count, "already_imported": earlier is not None})
    elif earlier is not None:
        info.print(already_imported(file, digest, earlier))
    else:
        info.print(f"{file}: {count} {what} imported")


def already_imported(file: Path, digest: str, earlier: datetime) -> str:
    """The line an import of a file already imported byte for byte prints (exit 0)."""
    return f"{file}: already imported on {earlier:%Y-%m-%d %H:%M:%S} UTC (sha256 {digest[:8]}…), nothing to do"


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


def write_atomically(path: Path, text: str) -> None:
    """The whole file or nothing: a reader never opens a half-written file."""
    import tempfile

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
