"""Start-up: `--version` and each TAB of shell completion start a process of their own, and
used to import SQLAlchemy, SQLModel, web3 and more (1.25-2.3 s). They import none of them now,
nor does `-h`; completion is answered from a generated command tree that a test keeps equal to
the app, and gives exactly what Typer gives. What is measured here is what is imported, not
how long it takes (make bench prints the timings)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer import rich_utils
from typer._completion_classes import BashComplete, FishComplete, ZshComplete

from reconciler.cli.completion import answer
from reconciler.cli.main import build_command, completion_tree_source

ROOT = Path(__file__).resolve().parents[2]
RECONCILER = str(Path(sys.executable).parent / "reconciler")
HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "web3",
    "eth_account",
    "eth_abi",
    "requests",
    "apscheduler",
    "prometheus_client",
    "alembic",
    "psycopg",
)
# Typer and Rich are what a person's command needs; completion and --version need neither.
NOT_FOR_A_TAB = (*HEAVY, "typer", "rich", "reconciler.cli.common", "reconciler.cli.runs")


def _imported(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the console script under -X importtime; the top-level names of what it imported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", RECONCILER, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    modules = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules |= {name, name.split(".")[0]}
    assert modules, done.stderr[-2000:]
    return done, modules


def test_version_imports_nothing_heavy_not_even_typer() -> None:
    done, modules = _imported(["--version"])
    assert done.returncode == 0 and done.stdout.strip() == "0.1.0"
    assert not modules & set(NOT_FOR_A_TAB), sorted(modules & set(NOT_FOR_A_TAB))
    moved, modules = _imported(["--config", "x.toml", "--version"])
    assert moved.returncode == 0 and moved.stdout.strip() == "0.1.0" and not modules & set(NOT_FOR_A_TAB)


@pytest.mark.parametrize(
    "env",
    [
        {"_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": "reconciler bre", "COMP_CWORD": "1"},
        {"_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": "reconciler breaks ", "COMP_CWORD": "2"},
        {"_RECONCILER_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "reconciler books dr"},
        {
            "_RECONCILER_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_ARGS": "reconciler run --",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        },
    ],
    ids=["bash-command", "bash-group", "zsh", "fish"],
)
def test_a_tab_imports_nothing_heavy_not_even_typer(env: dict[str, str]) -> None:
    done, modules = _imported([], **env)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    assert not modules & set(NOT_FOR_A_TAB), sorted(modules & set(NOT_FOR_A_TAB))


@pytest.mark.parametrize("args", [["-h"], ["breaks", "list", "-h"], ["books", "draft", "--help"], ["run", "-h"]])
def test_help_imports_no_database_chain_or_scheduler_library(args: list[str]) -> None:
    done, modules = _imported(args, COLUMNS="100")
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_the_completion_tree_is_generated_from_the_app() -> None:
    committed = (ROOT / "reconciler" / "cli" / "completion_tree.py").read_text()
    assert committed == completion_tree_source(), (
        "the commands or options changed: regenerate with\n"
        "  .venv/bin/python -c 'from reconciler.cli.main import completion_tree_source as s; print(s(), end=\"\")'"
        " > reconciler/cli/completion_tree.py"
    )


# ------------------------------------------------------------------ the same answers as Typer

LINES = [
    "reconciler ",
    "reconciler b",
    "reconciler bre",
    "reconciler breaks ",
    "reconciler breaks l",
    "reconciler breaks list --",
    "reconciler breaks list --status open --",
    "reconciler breaks list --json --",
    "reconciler --config x.toml ",
    "reconciler --config=x.toml ru",
    "reconciler -q --debug books ",
    "reconciler books draft --",
    "reconciler books draft --fees --",
    "reconciler run --json --positions -",
    "reconciler -",
    "reconciler --",
    "reconciler config ",
    "reconciler report html --",
    "reconciler nosuchcommand ",
    "reconciler segregation statement --class ",
]
TYPERS = {"reconciler nosuchcommand ", "reconciler segregation statement --class "}  # left to Typer


@pytest.fixture
def wide_help() -> Iterator[None]:
    """Typer renders help texts at the terminal's width; the tree keeps them on one line."""
    width, rich_utils.MAX_WIDTH = rich_utils.MAX_WIDTH, 100_000
    try:
        yield
    finally:
        rich_utils.MAX_WIDTH = width


def _typer_answer(shell: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    classes = {"bash": BashComplete, "zsh": ZshComplete, "fish": FishComplete}
    comp = classes[shell](build_command(), {}, "reconciler", "_RECONCILER_COMPLETE")
    try:
        return comp.complete() + "\n", 0
    except SystemExit as exc:  # fish is-args
        return "", int(exc.code or 0)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
@pytest.mark.parametrize("line", LINES)
def test_completion_from_the_tree_is_what_typer_answers(
    shell: str, line: str, wide_help: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shell == "bash":
        words = line.split(" ")
        environ = {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    else:
        environ = {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    fast = answer({**environ, "_RECONCILER_COMPLETE": f"complete_{shell}"})
    typer_said, typer_code = _typer_answer(shell, environ, monkeypatch)
    if fast is None:
        assert line in TYPERS, f"{line!r} should be answered from the tree"
        return  # handed to Typer: the same answer by construction
    text, code = fast
    assert code == typer_code
    # Click lists the help option's names in a set's order (it changes per process): compare
    # the entries, then the order of everything else.
    ours, theirs = _entries(text), _entries(typer_said)
    assert sorted(ours) == sorted(theirs), (text, typer_said)
    helpless = [entry for entry in theirs if _value(entry) not in ("-h", "--help")]
    assert [entry for entry in ours if entry in helpless] == helpless
    if shell == "zsh":
        assert text.startswith("_arguments '*: :((") == typer_said.startswith("_arguments '*: :((")


def _value(entry: str) -> str:
    """What a completion entry completes to: bash `VALUE`, fish `VALUE<tab>help`, zsh `"VALUE":"help"`."""
    value = entry.split("\t", 1)[0]
    return value[1:].split('"', 1)[0] if value.startswith('"') else value


def _entries(answer: str) -> list[str]:
    """The completions of one answer, one per line, without zsh's `_arguments` wrapper."""
    prefix, suffix = "_arguments '*: :((", "))'"
    body = answer.rstrip("\n")
    if body.startswith(prefix) and body.endswith(suffix):
        body = body[len(prefix) : -len(suffix)]
    return body.split("\n")


def test_completion_answers_commands_and_options_itself_and_hands_files_to_typer() -> None:
    bash = {"_RECONCILER_COMPLETE": "complete_bash"}
    assert answer({**bash, "COMP_WORDS": "reconciler bre", "COMP_CWORD": "1"}) == ("breaks\n", 0)
    draft = answer({**bash, "COMP_WORDS": "reconciler books draft --f", "COMP_CWORD": "3"})
    assert draft == ("--fees\n--force\n", 0)
    assert answer({**bash, "COMP_WORDS": "reconciler books import bo", "COMP_CWORD": "3"}) is None, "a file"
    assert answer({**bash, "COMP_WORDS": "reconciler --config ", "COMP_CWORD": "2"}) is None, "an option's value"
    assert answer({"_RECONCILER_COMPLETE": "complete_powershell"}) is None
    assert answer({"_RECONCILER_COMPLETE": "source_bash"}) is None, "the script itself comes from Typer"
    # Through the console script, a file argument gets Typer's answer: none, so that the shell
    # completes file names itself (`complete -o default`).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER"))}
    done = subprocess.run(
        [RECONCILER],
        env={**clean, **bash, "COMP_WORDS": "reconciler books import boo", "COMP_CWORD": "3"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "\n", (done.stdout, done.stderr)
