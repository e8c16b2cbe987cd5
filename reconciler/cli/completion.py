"""Shell completion answered without Typer: each TAB starts a new process, and building the Typer
app costs several times a bare interpreter's start.

The command tree (commands, options, their help) is generated from the Typer app into
`reconciler.cli.completion_tree` (a test keeps it in step with the app). From it, completions of
command names and option names are answered here, for bash, zsh and fish, exactly as Typer
prints them. Anything else — a file or an option's value to complete, a PowerShell request, an
option the tree does not know — returns None, and the caller hands the request to Typer.

Invariant: this module imports only the standard library and the generated tree; it never
imports the command modules, the app or Typer (`build_tree` is given the Click command).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

COMPLETE_VAR = "_RECONCILER_COMPLETE"

# A node: {"options": [[names, takes_value, multiple, help], ...],
#          "commands": {name: [help, node]} or None (a command, not a group)}
# where help is the text as Typer shows it (markup rendered, whitespace runs as one space).


def answer(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """What to print (with its newline) and the exit code for a completion request in
    ``environ``; None when only Typer can answer it."""
    action, _, shell = environ.get(COMPLETE_VAR, "").partition("_")
    if action != "complete" or shell not in ("bash", "zsh", "fish"):
        return None
    words = _args(shell, environ)
    if words is None:
        return None
    args, incomplete = words
    from reconciler.cli.completion_tree import TREE

    items = _complete(TREE, args, incomplete)
    if items is None:
        return None
    if shell == "bash":
        return "\n".join(value for value, _ in items) + "\n", 0
    if shell == "zsh":
        lines = [
            f'"{_zsh_escape(value)}":"{_zsh_escape(text)}"' if text else f'"{_zsh_escape(value)}"'
            for value, text in items
        ]
        return (f"_arguments '*: :(({chr(10).join(lines)}))'" if lines else "_files") + "\n", 0
    shown = [f"{value}\t{text}" if text else value for value, text in items]
    fish_action = environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
    if fish_action == "is-args":
        return "", 0 if shown else 1  # Typer exits 0 to complete these, 1 to let fish list files
    if fish_action != "get-args":
        return "\n", 0
    return "\n".join(shown) + "\n", 0


def _split(text: str) -> list[str]:
    """As Click's split_arg_string: shlex, tolerating an unclosed quote or a trailing escape."""
    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out: list[str] = []
    try:
        out.extend(lex)
    except ValueError:
        out.append(lex.token)
    return out


def _args(shell: str, environ: Mapping[str, str]) -> tuple[list[str], str] | None:
    """The complete words after the program's name, and the word being completed, read from
    the environment as Typer's completion classes read it."""
    if shell == "bash":
        try:
            words = _split(environ["COMP_WORDS"])
            cword = int(environ["COMP_CWORD"])
        except (KeyError, ValueError):
            return None
        incomplete = words[cword] if cword < len(words) else ""
        return words[1:cword], incomplete
    line = environ.get("_TYPER_COMPLETE_ARGS", "")
    args = _split(line)[1:]
    if args and not line.endswith(" "):
        return args[:-1], args[-1]
    return args, ""


def _complete(tree: Mapping[str, Any], args: list[str], incomplete: str) -> list[tuple[str, str]] | None:
    """(value, help) of each completion; None where Typer must answer."""
    if "--" in args or incomplete == "=" or ("=" in incomplete and incomplete.startswith("-")):
        return None
    node = tree
    given: set[int] = set()
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("-") and len(word) > 1:
            found = _option(node, word.split("=", 1)[0])
            if found is None:
                return None  # unknown here: Click's resilient parsing decides
            index, takes_value = found
            given.add(index)
            if takes_value and "=" not in word:
                if i + 1 >= len(args):
                    return None  # the word being completed is this option's value
                i += 1
            i += 1
            continue
        if node["commands"] is None:
            return None  # a command's argument: its value is Typer's to complete
        sub = node["commands"].get(word)
        if sub is None:
            return None
        node, given = sub[1], set()
        i += 1
    items: list[tuple[str, str]] = []
    if node["commands"] is not None:
        commands = node["commands"].items()
        items += [(name, text) for name, (text, _) in commands if name.startswith(incomplete)]
    elif not incomplete.startswith("-"):
        return None  # an argument of a command: a file, a break id
    if incomplete and not incomplete[0].isalnum():
        for index, (names, _takes, multiple, text) in enumerate(node["options"]):
            if index in given and not multiple:
                continue
            items += [(name, text) for name in names if name.startswith(incomplete)]
    return items


def _option(node: Mapping[str, Any], name: str) -> tuple[int, bool] | None:
    for index, (names, takes_value, *_rest) in enumerate(node["options"]):
        if name in names:
            return index, bool(takes_value)
    return None


def _zsh_escape(text: str) -> str:
    return text.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")


# ----------------------------------------------------------------------------- the tree


def build_tree(command: Any, ctx: Any, render_help: Any) -> dict[str, Any]:
    """The node of ``command`` (a Click command or group, as the app built it, in the Click
    context ``ctx``); ``render_help`` turns a help text into what Typer shows (its markup
    rendered as plain text)."""

    import re

    def plain(text: str | None) -> str:
        return render_help(re.sub(r"\s+", " ", text).strip()) if text else ""

    options = []
    help_option = command.get_help_option(ctx)
    for param in command.get_params(ctx):
        if getattr(param, "param_type_name", None) != "option" or getattr(param, "hidden", False):
            continue
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        names = [*param.opts, *param.secondary_opts]
        if param is help_option:  # Click lists its names in a set's order, which changes per process
            names.sort(key=lambda n: (n.startswith("--"), n))
        options.append([names, int(takes_value), int(bool(getattr(param, "multiple", False))), plain(param.help)])
    commands: dict[str, Any] | None = None
    if hasattr(command, "list_commands"):
        commands = {}
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            with sub.make_context(name, [], parent=ctx, resilient_parsing=True) as sub_ctx:
                commands[name] = [plain(sub.get_short_help_str()), build_tree(sub, sub_ctx, render_help)]
    return {"options": options, "commands": commands}


def render_tree(tree: Mapping[str, Any]) -> str:
    """The source of `reconciler.cli.completion_tree`."""
    import pprint

    lines = pprint.pformat(tree, width=115, sort_dicts=False, compact=True).split("\n")
    body = "\n".join("    " + line for line in lines)
    return (
        '"""The command tree shell completion answers from (`reconciler.cli.completion`): generated from\n'
        "the Typer app, never edited by hand. Regenerate it after changing a command or an option:\n\n"
        "    .venv/bin/python -c 'from reconciler.cli.main import completion_tree_source as s; "
        "print(s(), end=\"\")' \\\n"
        "        > reconciler/cli/completion_tree.py\n"
        '"""\n\n'
        "from typing import Any\n\n"
        f"TREE: dict[str, Any] = (\n{body}\n)\n"
    )
