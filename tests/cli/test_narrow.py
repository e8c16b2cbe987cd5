"""An operator's day at 80 columns, in a real pseudo-terminal: the demo's closing text, the
breaks list (severity kept), the run's summary, the audit head and a wallet that is an EOA all
fit without a line wider than the terminal and without an id or an amount cut; a one-shot run
prints no log line before its summary; a run with only a warning open does not say "no open
breaks". Real Anvil, a real SQLite ledger, the console script."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chains.evm.devnet import Devnet
from tests.cli.terminal import Screen, run_in_terminal
from tests.conftest import Scenario
from tests.integration.helpers import Custody, make_custody

OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def _fits(screen: Screen, width: int = 80) -> None:
    assert not screen.wider_than(width), f"wider than {width}: {screen.wider_than(width)}"


def _json(screen: Screen) -> dict[str, Any]:
    text = screen.plain
    doc: dict[str, Any] = json.loads(text[text.index("{") : text.rindex("}") + 1])
    return doc


def test_the_demo_and_the_ledger_commands_fit_80_columns(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    demo = run_in_terminal(["demo", "--keep", str(kept)])
    assert demo.code == 0, demo.text
    _fits(demo)
    pasted = re.sub(r" \\\n +", " ", demo.plain)  # as a shell reads a line continued with a backslash
    assert "ran as designed" in demo.plain and f"cd {kept}" in pasted
    # The commands it suggests paste as they are: short ids, long lines continued with a backslash.
    ack = re.search(r"breaks ack ([0-9a-f]{8}) \\\n +--note \"who is on it, and why\"", demo.plain)
    assert ack, demo.plain

    listed = run_in_terminal(["breaks", "list"], cwd=kept)
    assert listed.code == 0, listed.text
    _fits(listed)
    header = listed.lines[0].split()
    assert header[:3] == ["id", "severity", "kind"], listed.plain
    caption = next(line for line in listed.lines if line.startswith("not shown at this width"))
    assert "severity" not in caption and "seen" in caption, "times seen goes first, severity never"
    docs = _json(run_in_terminal(["breaks", "list", "--json"], cwd=kept))["breaks"]
    for b in docs:  # every id and every amount whole, with its severity on the same line
        row = next(line for line in listed.lines if line.startswith(b["id"][:8]))
        assert f" {b['severity']} " in row
        if b["amount_display"] is not None:
            whole, _, frac = b["amount_display"].lstrip("-").partition(".")
            assert f"{int(whole):,}.{frac} {b['asset']}" in row, row

    for args in (["runs", "list"], ["runs", "show", docs[0]["last_run_id"][:8]], ["breaks", "show", docs[0]["id"][:8]]):
        shown = run_in_terminal(args, cwd=kept)
        assert shown.code == 0, (args, shown.text)
        _fits(shown)
    audit = run_in_terminal(["breaks", "verify-audit"], cwd=kept)
    assert audit.code == 0, audit.text
    _fits(audit)
    pinned = _json(run_in_terminal(["breaks", "verify-audit", "--json"], cwd=kept))["head"]
    head = f"{pinned['seq']}:{pinned['hash']}"
    assert any(line.strip() == head or line.endswith(f" {head}") for line in audit.lines), "the head is whole"
    run_id = docs[0]["last_run_id"][:8]
    kept_head = _json(run_in_terminal(["runs", "show", run_id, "--json"], cwd=kept))["audit_head"]
    run_head = f"{kept_head['seq']}:{kept_head['hash']}"
    replay = run_in_terminal(["runs", "show", run_id], cwd=kept)
    assert any(line.strip() == run_head or line.endswith(f" {run_head}") for line in replay.lines), (
        "runs show's audit head (the one after that run), whole on one line"
    )


def _custody(devnet: Devnet, tmp_path: Path) -> tuple[Path, dict[str, str], Custody]:
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    for args in (["init"], ["accounts", "import", "accounts.csv"], ["books", "import", "books.csv"]):
        done = run_in_terminal(["--config", str(config), *args], cwd=tmp_path)
        assert done.code == 0, done.text
    return config, custody.wallets, custody


def test_a_run_its_summary_and_an_eoa_wallet_fit_80_columns_without_log_lines(
    devnet: Devnet, tmp_path: Path
) -> None:
    config, wallets, custody = _custody(devnet, tmp_path)
    first = run_in_terminal(["--config", str(config), "run"])
    assert first.code == 0, first.text
    devnet.transfer_as(custody.usdc, wallets["seg-1"], OUTSIDER, 1_000_000)
    found = run_in_terminal(["--config", str(config), "run"])
    assert found.code == 1, found.text
    _fits(found)
    assert "level=" not in found.plain and "event=" not in found.plain, "no log line for each new break"
    assert found.lines[0].startswith("eth  block"), "the summary comes first"
    assert re.search(r"^run [0-9a-f]{8}: complete: breaks open$", found.plain, re.M), found.plain
    # The theft stays open, not looked at again; the mismatch is seen again: the summary that
    # was 97 characters on one line.
    again = run_in_terminal(["--config", str(config), "run"])
    _fits(again)
    summary = " ".join(again.plain.split())
    said = "breaks open: 0 new, 1 seen again, 0 acknowledged, 1 not checked by this run; resolved this run: 0"
    assert said in summary, again.plain

    wallet = run_in_terminal(["--config", str(config), "wallets", "show", "--wallet", "seg-1"])
    assert wallet.code == 0, wallet.text
    _fits(wallet)
    lines = [line for line in wallet.lines if line.strip()]
    assert len(lines) <= 4, wallet.plain  # was ~45 lines of dashes
    assert lines[0].startswith("seg-1 on eth: eoa at block") and "code_hash" in wallet.plain
    assert "—" not in wallet.plain and "None" not in wallet.plain


def test_a_run_with_only_a_warning_open_says_so(devnet: Devnet, tmp_path: Path) -> None:
    """A freeze view the token does not have: every run opens an asset_frozen warning that it
    could not tell — exit 0, but not 'no open breaks'."""
    scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.assets["USDC"]["freeze_check"] = "isNotAFunction"
    config = scenario.write()
    for args in (["init"], ["accounts", "import", "accounts.csv"], ["books", "import", "books.csv"]):
        assert run_in_terminal(["--config", str(config), *args], cwd=tmp_path).code == 0
    ran = run_in_terminal(["--config", str(config), "run"])
    assert ran.code == 0, ran.text
    _fits(ran)
    verdict = re.search(r"^run [0-9a-f]{8}: (.*)$", ran.plain, re.M)
    assert verdict and verdict.group(1) == "complete: 2 warnings open, none of severity error or critical", ran.plain
    assert "no open breaks" not in ran.plain
    assert len(custody.wallets) == 2
