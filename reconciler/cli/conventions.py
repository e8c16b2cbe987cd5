"""Command-line conventions around the Typer app: where options may go, how help reads, and which
log lines a one-shot command leaves to its own output.

Invariants: only a token that is exactly a global option (``--config``, ``--config=FILE``,
``--log-format``, ``--debug``, ``--quiet``/``-q``, ``--version``) is moved in front of the
command, never a value of the command's own options (``--note --debug`` keeps its note) and
nothing after ``--``; a command that parses its own arguments (``bench``) is left alone. Help
shows ``FILE``, ``BREAK_ID`` and no ``<bool>`` for a flag. Nothing here changes what a command
does, prints on stdout, or exits with.
"""

from __future__ import annotations

import ast
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.markup import escape

# Global options: those that take a value, and flags.
GLOBAL_VALUE_OPTIONS = frozenset({"--config", "--log-format"})
GLOBAL_FLAGS = frozenset({"--debug", "--quiet", "-q", "--version"})

# Libraries that log every request at DEBUG (web3's providers, urllib3's connection pool, alembic's
# migration steps): --debug is the reconciler's own debug, not theirs.
NOISY_LOGGERS = ("urllib3", "requests", "web3", "websockets", "asyncio", "alembic", "rlp", "filelock")

EXIT_CODES = (
    "0  complete; no open break of severity error or critical",
    "1  breaks: one open or acknowledged, of severity error or critical",
    "2  could not complete: bad configuration or input, a chain or the",
    "   database unreachable, interrupted",
)
ENVIRONMENT = (
    "RECONCILER_CONFIG        the configuration file when --config is not",
    "                         given (else ./reconciler.toml)",
    "RECONCILER_DATABASE_URL  replaces [database] url (keep passwords here)",
)
EXAMPLES = (
    ("reconciler demo", "two local chains, breaks planted"),
    ("reconciler config init", "a commented ./reconciler.toml"),
    ("reconciler config check --online", "ask each node what it says"),
    ("reconciler init", "create the ledger database"),
    ("reconciler books import books.csv", "the firm's books"),
    ("reconciler run", "reconcile at pinned blocks"),
    ("reconciler run --json | jq .breaks", "one JSON document"),
    ("reconciler breaks list", "what is open"),
    ("reconciler runs list --config x.toml", "global options go anywhere"),
)


def epilog() -> str:
    """The top-level help's closing section: examples, exit codes, environment, completion."""
    width = max(len(cmd) for cmd, _ in EXAMPLES)
    lines = ["Examples:"]
    lines += [f"  {cmd:<{width}}  # {what}" for cmd, what in EXAMPLES]
    lines += ["", "Exit codes:"] + [f"  {line}" for line in EXIT_CODES]
    lines += ["", "Environment:"] + [f"  {line}" for line in ENVIRONMENT]
    lines += [
        "",
        "Global options (--config, --debug, --quiet, --log-format) go before or",
        "after the command; --json goes after it.",
        "Shell completion: reconciler --install-completion (bash, zsh, fish).",
    ]
    return escape("\n".join(lines))  # help is Rich markup: "[database]" must stay text


# ------------------------------------------------------------------------- arguments


class MisplacedOption(Exception):
    """An option given where it cannot work, with the place it goes."""


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "option"


def _own_options(command: Any) -> tuple[set[str], set[str]]:
    """The command's own option names, and those of them that take a value (the next token)."""
    names: set[str] = set()
    valued: set[str] = set()
    for param in getattr(command, "params", ()):
        if _is_option(param):
            opts = {*param.opts, *param.secondary_opts}
            names |= opts
            if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                valued |= opts
    return names, valued


def _is_global(token: str) -> bool:
    return token in GLOBAL_FLAGS or token in GLOBAL_VALUE_OPTIONS or token.split("=", 1)[0] in GLOBAL_VALUE_OPTIONS


def arrange(root: Any, args: Sequence[str]) -> list[str]:
    """``args`` with the global options found after the command name moved in front of it, as
    Click expects them. Raises MisplacedOption for ``--json`` before the command."""
    args = list(args)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i] == "--json":
            command = next((a for a in args[i + 1 :] if not a.startswith("-")), None)
            example = f"reconciler {command} --json" if command else "reconciler run --json"
            raise MisplacedOption(f"--json goes after the command: {example}")
        i += 2 if args[i] in GLOBAL_VALUE_OPTIONS else 1
    if i >= len(args) or args[i] == "--":
        return args
    command, j = root, i
    while j < len(args) and args[j] in (getattr(command, "commands", None) or {}):
        command = command.commands[args[j]]
        j += 1
    if getattr(command, "context_settings", {}).get("ignore_unknown_options"):
        return args  # parses its own arguments (bench)
    own, takes_value = _own_options(command)
    moved: list[str] = []
    kept: list[str] = []
    k = j
    while k < len(args):
        token = args[k]
        if token == "--":
            kept += args[k:]
            break
        if token in takes_value:
            kept += args[k : k + 2]  # the option and its value, whatever the value looks like
            k += 2
        elif token.split("=", 1)[0] in own:
            kept.append(token)  # the command's own option of the same name (none today) wins
            k += 1
        elif token in GLOBAL_VALUE_OPTIONS and k + 1 < len(args):
            moved += args[k : k + 2]
            k += 2
        elif _is_global(token):
            moved.append(token)
            k += 1
        else:
            kept.append(token)
            k += 1
    return args[:i] + moved + args[i:j] + kept


# ------------------------------------------------------------------------- help

# Value placeholders by option; the rest follow the type (FILE, N, TEXT).
_METAVARS = {
    "--config": "FILE",
    "--log-format": "text|json",
    "--note": "TEXT",
    "--status": "STATUS",
    "--limit": "N",
    "--wallet": "WALLET",
    "--key-env": "VAR",
    "--password-env": "VAR",
    "--keystore": "FILE",
    "--keep": "DIR",
    "--out": "FILE",
    "--class": "CLASS",
    "--as-of": "DATE",
    "--since": "DATE",
    "--account": "ACCOUNT",
    "--asset": "ASSET",
    "--tz": "ZONE",
    "--week": "WEEK",
}


def _type_metavar(param: Any) -> str:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    name = getattr(annotation, "__name__", "") if annotation is not None else ""
    if name in ("Path", "PurePath"):
        return "FILE"
    if name == "int":
        return "N"
    return "TEXT"


def _flag_help_option(command: Any) -> None:
    """-h/--help is made on demand (per context): hide its ``<bool>`` when it is."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


def _argument_class(cls: type) -> type:
    """Typer's argument, shown as NAME (required) or [NAME] in the usage line, without a type."""

    class Argument(cls):  # type: ignore[misc]
        def _usage_display_name(self) -> str:
            name = str(self.display_name_raw)
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        def display_type_rich(self, ctx: Any) -> str | None:
            return None

    return Argument


def first_sentence(text: str) -> str:
    """A command's line in its group's list: its help's first sentence, on one line."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z`])", paragraph)
    return paragraph[: match.start()] if match else paragraph


def conventional_help(command: Any) -> None:
    """Metavars as command-line tools write them, on ``command`` and every subcommand; help
    texts shown as written (Typer reads them as Rich markup, where "[schedule]" would vanish)."""
    classes: dict[type, type] = {}
    if getattr(command, "help", None) and not getattr(command, "short_help", None):
        command.short_help = first_sentence(command.help)
    for attr in ("help", "short_help"):
        if getattr(command, attr, None):
            setattr(command, attr, escape(getattr(command, attr)))
    for param in getattr(command, "params", ()):
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "param_type_name", None) == "argument":
            if param.metavar is None:
                param.metavar = str(param.name).upper()
            cls = type(param)
            if cls not in classes:
                classes[cls] = _argument_class(cls)
            param.__class__ = classes[cls]
        elif _is_option(param) and param.metavar is None:
            if getattr(param, "is_flag", False):
                param.metavar = ""
            else:
                long = next((o for o in param.opts if o.startswith("--")), "")
                param.metavar = _METAVARS.get(long) or _type_metavar(param)
    if hasattr(command, "get_help_option"):
        _flag_help_option(command)
    for sub in (getattr(command, "commands", None) or {}).values():
        conventional_help(sub)


# ------------------------------------------------------------------------- logging


def quiet_noisy_loggers() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_REASON = re.compile(r"""\breason=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")


def _reason_of(record: logging.LogRecord) -> str | None:
    match = _REASON.search(record.getMessage())
    if match is None:
        return None
    raw = match.group(1)
    if raw[:1] in ("'", '"'):
        try:
            return str(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            return raw[1:-1]
    return raw


class _HoldReasons(logging.Filter):
    """Holds back the warnings and errors that carry a reason, for `said_once` to judge."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and _reason_of(record):
            self.held.append(record)
            return False
        return True


def _console_handlers() -> list[logging.Handler]:
    """The handlers that print on this process's stderr (not a test's capture, not a file)."""
    return [
        h
        for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
    ]


@contextmanager
def said_once(enabled: bool) -> Iterator[list[str]]:
    """While a one-shot run or scan is in progress, hold back its log lines that carry a reason:
    the command prints the run's reason itself, once. The caller puts the reasons it printed in
    the yielded list; a held line whose reason is not part of one of them (an endpoint that
    failed while another answered, say) is printed afterwards, in order."""
    printed: list[str] = []
    handlers = _console_handlers() if enabled else []
    holds = [(h, _HoldReasons()) for h in handlers]
    for handler, hold in holds:
        handler.addFilter(hold)
    try:
        yield printed
    finally:
        for handler, hold in holds:
            handler.removeFilter(hold)
            for record in hold.held:
                reason = _reason_of(record) or ""
                if not any(reason in text for text in printed):
                    handler.handle(record)
