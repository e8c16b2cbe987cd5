"""Command-line conventions: options after the command, --quiet, help that says how, shell
completion, `config init`, errors said once in plain words, `config check --online` saying
what it verified, and the demo's kept folder. Real processes, real Anvil, real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from chains.evm.devnet import Devnet
from reconciler.cli.conventions import arrange
from reconciler.cli.main import app
from reconciler.templates.starter import starter_config
from tests.conftest import Scenario
from tests.integration.helpers import closed_port_url, load, make_custody

ROOT = Path(__file__).resolve().parents[2]
RECONCILER = str(Path(sys.executable).parent / "reconciler")


@pytest.fixture(autouse=True)
def _no_outside_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "_RECONCILER"))}
    return {**env, **extra}


def _console(*args: str, cwd: Path | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a person or a scheduler runs it."""
    return subprocess.run(
        [RECONCILER, *args], capture_output=True, text=True, cwd=cwd, env=_env(**env), timeout=timeout, check=False
    )


def _starter(folder: Path, cli: Any) -> Path:
    result = cli("config", "init", str(folder / "reconciler.toml"))
    assert result.code == 0, result.stderr
    return folder / "reconciler.toml"


# ------------------------------------------------------------------ where options go


def test_global_options_work_after_the_command_too(cli: Any, tmp_path: Path) -> None:
    config = _starter(tmp_path, cli)
    before = cli("--config", str(config), "config", "check", "--json")
    assert before.code == 0, before.stderr
    for args in (
        ("config", "check", "--json", "--config", str(config)),
        ("config", "check", f"--config={config}", "--json"),
        ("config", "--config", str(config), "check", "--json", "--debug"),
    ):
        after = cli(*args)
        assert after.code == 0, (args, after.stderr)
        assert json.loads(after.stdout) == json.loads(before.stdout)
    assert cli("init", "--config", str(config), "-q").code == 0
    listed = cli("runs", "list", "--json", "--config", str(config), "--debug")
    assert listed.code == 0 and json.loads(listed.stdout) == {"runs": []}


def test_only_exact_global_option_tokens_move_never_an_option_value_or_after_a_double_dash() -> None:
    command = typer.main.get_command(app)
    # "--debug" is the note's text here, and "--config" after "--" is an argument: both stay.
    for unchanged in (
        ["breaks", "ack", "abc", "--note", "--debug"],
        ["breaks", "ack", "abc", "--note", "x", "--", "--config"],
        ["--config", "x.toml", "run"],
    ):
        assert arrange(command, unchanged) == unchanged
    moved = arrange(command, ["run", "--json", "--config", "x.toml", "-q"])
    assert moved == ["--config", "x.toml", "-q", "run", "--json"]
    assert arrange(command, ["runs", "list", "--config=x.toml"]) == ["--config=x.toml", "runs", "list"]
    # A command that parses its own arguments is left alone.
    assert arrange(command, ["bench", "--n", "10", "--debug"]) == ["bench", "--n", "10", "--debug"]


def test_json_before_the_command_says_where_it_goes(cli: Any) -> None:
    result = cli("--json", "run")
    assert result.code == 2
    assert "--json goes after the command: reconciler run --json" in result.stderr
    assert "--version" not in result.stderr  # not Click's "did you mean"


# ------------------------------------------------------------------ --quiet


def test_quiet_silences_information_never_errors_stdout_or_exit_codes(cli: Any, tmp_path: Path) -> None:
    config = _starter(tmp_path, cli)
    loud = cli("--config", str(config), "init")
    assert loud.code == 0 and "database ready" in loud.stderr
    quiet = cli("--config", str(config), "init", "--quiet")
    assert quiet.code == 0 and quiet.stderr == "" and quiet.stdout == loud.stdout
    short = cli("-q", "--config", str(config), "config", "check", "--json")
    assert short.code == 0 and json.loads(short.stdout)["ok"] is True
    missing = cli("-q", "--config", str(tmp_path / "nope.toml"), "run")
    assert missing.code == 2 and "does not exist" in missing.stderr, "errors are never silenced"


# ------------------------------------------------------------------ help and completion


def test_help_shows_examples_exit_codes_environment_and_plain_metavars(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    top = cli("-h")
    assert top.code == 0
    for text in ("Examples:", "Exit codes:", "RECONCILER_CONFIG", "RECONCILER_DATABASE_URL", "--quiet", "FILE"):
        assert text in top.stdout, text
    assert "0  complete" in top.stdout and "1  breaks" in top.stdout and "2  could not complete" in top.stdout
    ack = cli("breaks", "ack", "-h")
    assert "Usage: reconciler breaks ack [OPTIONS] BREAK_ID" in ack.stdout
    assert "--note" in ack.stdout and "TEXT" in ack.stdout
    books = cli("books", "import", "-h").stdout
    assert "[OPTIONS] FILE" in books
    for page in (top.stdout, ack.stdout, books):
        assert "<bool>" not in page and "<str>" not in page and "{" not in page


def test_shell_completion_is_available_and_completes_commands() -> None:
    helped = _console("-h", COLUMNS="120")
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
    completed = _console(_RECONCILER_COMPLETE="complete_bash", COMP_WORDS="reconciler bre", COMP_CWORD="1")
    assert completed.returncode == 0 and completed.stdout.split() == ["breaks"]
    script = _console("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert script.returncode == 0 and "_RECONCILER_COMPLETE=complete_bash" in script.stdout, script.stderr


# ------------------------------------------------------------------ config init


def test_config_init_writes_a_starter_that_passes_config_check_and_never_overwrites(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    wrote = cli("config", "init")
    written = tmp_path / "reconciler.toml"
    assert wrote.code == 0 and written.read_text() == starter_config()
    assert "config check --online" in wrote.stderr, "it says what to do next"
    checked = cli("config", "check", "--json")  # ./reconciler.toml is the default
    assert checked.code == 0, checked.stderr
    assert json.loads(checked.stdout)["chains"] and json.loads(checked.stdout)["wallets"]

    written.write_text("# mine\n" + starter_config())
    refused = cli("config", "init")
    assert refused.code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert written.read_text().startswith("# mine"), "an existing file is never overwritten"
    forced = cli("config", "init", "--force")
    assert forced.code == 0 and written.read_text() == starter_config()

    (tmp_path / "elsewhere").mkdir()
    into = cli("config", "init", "elsewhere")
    assert into.code == 0 and (tmp_path / "elsewhere" / "reconciler.toml").exists()
    assert cli("--config", "elsewhere/reconciler.toml", "config", "check").code == 0


def test_the_packaged_template_is_the_shipped_example_under_its_own_header() -> None:
    template = starter_config()  # importlib.resources: what an installed wheel holds
    example = (ROOT / "reconciler.example.toml").read_text()
    assert template.startswith("# reconciler.toml: a starter configuration, written by `reconciler config init`")
    assert template[template.index("\n[database]\n") :] == example[example.index("\n[database]\n") :], (
        "keep reconciler/templates/reconciler.toml in step with reconciler.example.toml"
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"reconciler.templates" = ["*.toml"]' in pyproject, "the template is package data"


# ------------------------------------------------------------------ errors, once and plain


def test_a_dead_node_is_said_once_in_plain_words_without_its_key(tmp_path: Path) -> None:
    dead = closed_port_url()
    key = "k3yTh4tMustN0tShow"
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    scenario.add_chain("local", f"{dead}/v3/{key}", 31337)
    scenario.add_native("ETH", "local")
    scenario.add_wallet("w1", "local", "0x000000000000000000000000000000000000dEaD")
    config = scenario.write()
    assert _console("--config", str(config), "init").returncode == 0

    result = _console("--config", str(config), "run")
    assert result.returncode == 2
    said = f"cannot connect to {dead} (connection refused"
    everything = result.stdout + result.stderr
    assert everything.count(said) == 1, everything
    assert "is the node running? see [chains.local] rpc_urls" in result.stderr
    for raw in ("HTTPConnectionPool", "Max retries", "NewConnectionError", "Errno", key):
        assert raw not in everything, raw

    as_json = _console("--config", str(config), "run", "--json")
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "incomplete" and said in doc["chains"]["local"]["error"]
    assert as_json.stderr.count(said) == 1, as_json.stderr
    # the reason is text, not Rich markup: "[chains.local]" survives in the runs table
    listed = _console("--config", str(config), "runs", "list")
    assert listed.returncode == 0 and "[chains.local]" in listed.stdout, listed.stdout


def test_an_unsupported_database_url_names_the_supported_schemes(cli: Any, tmp_path: Path) -> None:
    config = _starter(tmp_path, cli)
    config.write_text(config.read_text().replace('url = "sqlite:///reconciler.db"', 'url = "mysql://app:pw@db/x"'))
    result = cli("--config", str(config), "config", "check")
    assert result.code == 2
    assert "unsupported scheme" in result.stderr
    assert "sqlite:///PATH" in result.stderr and "postgresql+psycopg://" in result.stderr
    assert ":pw@" not in result.stderr


def test_debug_keeps_the_reconcilers_own_lines_without_library_chatter(
    cli: Any, devnet: Devnet, tmp_path: Path
) -> None:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    result = _console("--config", str(config), "run", "--debug")
    assert result.returncode == 0, result.stderr
    assert "logger=reconciler.app.run event=run_started" in result.stderr
    for noisy in ("logger=urllib3", "logger=web3", "logger=alembic", "logger=requests"):
        assert noisy not in result.stderr, noisy


# ------------------------------------------------------------------ config check --online


def test_config_check_online_lists_what_it_verified(cli: Any, devnet: Devnet, scenario: Scenario) -> None:
    custody = make_custody(devnet, scenario, devnet.url, confirmations=2)
    config = scenario.write()
    human = cli("--config", str(config), "config", "check", "--online")
    assert human.code == 0, human.stderr
    head = devnet.head()
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"chain eth: {devnet.url} (anvil/")
    assert "  chain id 31337 ✓" in lines
    assert f"  head {head:,}, pinned block {head - 2:,} (2 confirmations)" in lines
    assert any(line.startswith("  read path: multicall (Multicall3 deployed at 0x") for line in lines)
    assert f"  USDC at {custody.usdc.address}: decimals 6 ✓" in lines
    assert f"  TMMF at {custody.tmmf.address}: decimals 18 ✓" in lines

    doc = json.loads(cli("--config", str(config), "config", "check", "--online", "--json").stdout)
    eth = doc["chains"]["eth"]
    assert eth["ok"] is True and eth["block_number"] == head - 2  # the existing fields stay
    assert eth["chain_id"] == 31337 and eth["chain_id_matched"] is True and eth["head"] == head
    assert eth["endpoints"] == [devnet.url] and eth["read_path"] == "multicall"
    assert {"asset": "USDC", "address": custody.usdc.address, "decimals": 6, "decimals_matched": True} in eth["tokens"]


def test_config_check_online_names_a_dead_node_plainly(cli: Any, tmp_path: Path) -> None:
    config = _starter(tmp_path, cli)
    dead = closed_port_url()
    config.write_text(config.read_text().replace('rpc_urls = ["http://127.0.0.1:8545"]', f'rpc_urls = ["{dead}"]'))
    result = cli("--config", str(config), "config", "check", "--online", "--json")
    assert result.code == 2
    error = json.loads(result.stdout)["chains"]["eth"]["error"]
    assert error.startswith(f"cannot connect to {dead} (connection refused")
    assert error.endswith("is the node running? see [chains.eth] rpc_urls")


# ------------------------------------------------------------------ the demo's kept folder


def test_demo_keep_refuses_a_foreign_folder_and_starts_its_own_over(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "reconciler.toml").write_text("# my own configuration\n")
    refused = _console("demo", "--keep", str(foreign))
    assert refused.returncode == 2
    assert "already holds reconciler.toml" in refused.stderr and "will not overwrite" in refused.stderr
    assert (foreign / "reconciler.toml").read_text() == "# my own configuration\n"
    assert "starting" not in refused.stderr, "refused before any chain started"

    kept = tmp_path / "demo"
    for attempt in (1, 2):
        result = _console("demo", "--keep", str(kept), timeout=300)
        assert result.returncode == 0, (attempt, result.stderr)
        assert "ran as designed" in result.stderr
        for planted in ("Theft:", "Unbooked inflow:", "Missing deposit:", "Multisig takeover:"):
            assert planted in result.stderr, planted
        assert f"cd {kept}" in result.stderr and " runs list" in result.stderr
        assert (kept / ".reconciler-demo").exists()
    # Started over, not added to: the ledger holds the second demo's run only.
    runs = _console("runs", "list", "--json", cwd=kept)
    assert runs.returncode == 0, runs.stderr
    assert len(json.loads(runs.stdout)["runs"]) == 1
    breaks = _console("breaks", "list", "--json", cwd=kept)
    assert len(json.loads(breaks.stdout)["breaks"]) == 6  # four planted events; the takeover is two breaks
