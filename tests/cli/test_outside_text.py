"""Text from outside never drives the terminal and is never read as markup.

The attacker: a node (or whoever sits between us and it) answering an error whose message
clears the screen and paints "all positions agree", a colleague's note, a name in a CSV file.
Each carries ESC sequences, a one-character C1 CSI, a bidi override and Rich markup. Every
command that shows such text is run in a real pseudo-terminal: the bytes the terminal gets hold
no control character but Rich's own colours, the brackets print as written, and --json keeps
the text exact. Real Anvil behind a tampering proxy, a real SQLite ledger, the console script."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from reconciler.cli.tables import Col, Row, SafeConsole, fit_table, shown
from reconciler.redaction import neutralise
from tests.cli.terminal import C1, Screen, run_in_terminal
from tests.conftest import Scenario
from tests.integration.helpers import ACCOUNTS_HEADER, BOOKS_HEADER, make_custody
from tests.integration.rpcproxy import RpcProxy

# What a hostile node, note or file carries: clear the screen, home the cursor, paint a verdict;
# markup that would vanish ([chains.eth]) or crash Rich ([/v1]); an emoji code; C1 CSI; bidi.
PAINT = "\x1b[2J\x1b[H run 0000: complete: all positions agree"
MARKUP = "[/v1] [chains.eth] [bold red]boom[/bold red] :warning:"
HOSTILE = f"{PAINT} {MARKUP} \x9b31m \u202eevil <b>"
# What a CSV file can still carry: the imports refuse C0 control characters (ESC among them),
# not C1 ones, bidi overrides or markup.
CSV_HOSTILE = f"{MARKUP} \x9b31m \u202eevil <b>"
OUTSIDER = "0x000000000000000000000000000000000000dEaD"


def test_neutralise_shows_every_control_character_as_an_escape() -> None:
    assert neutralise("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert neutralise("\x9b31m\x07\x7f\x00") == "\\x9b31m\\x07\\x7f\\x00"
    assert neutralise("line\nnext\r\tend") == "line\\nnext\\r\\tend"
    assert neutralise("line\nnext", keep_newlines=True) == "line\nnext"
    assert neutralise("\u202eevil\u2066\u2028") == "\\u202eevil\\u2066\\u2028"
    for kept in ("[/v1] [chains.eth]", "é ü — ✓ 中文", "back\\slash"):
        assert neutralise(kept) == kept


def _rendered(*objects: Any, width: int = 400, style: str | None = None) -> str:
    import io

    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=width, force_terminal=True, color_system="standard")
    console.print(*objects, style=style)
    return buffer.getvalue()


def test_the_consoles_and_tables_print_outside_text_as_written_never_as_markup_or_control() -> None:
    printed = _rendered(f"reason: {HOSTILE}")
    assert MARKUP in printed and "\\x1b[2J" in printed and "\\x9b31m" in printed and "\\u202e" in printed
    assert "\x1b[2J" not in printed and "\x9b" not in printed and "\u202e" not in printed

    styled = _rendered(f"reason: {HOSTILE}", style="red")  # our colour, their text
    assert "\x1b[31m" in styled and MARKUP in styled and "\x1b[2J" not in styled

    columns = (Col("id", whole=True), Col("note", wrap=True))
    rows = [Row(("abcd1234", f"first\n{HOSTILE}")), Row(("ef567890", ("one", "two\x1b[K")))]
    table = fit_table(80, columns, rows)
    drawn = _rendered(table)
    assert "first\\n" in drawn, "a newline inside a value is shown, not followed"
    assert "two\\x1b[K" in drawn and "\x1b[K" not in drawn and "\x1b[2J" not in drawn
    assert "[/v1]" in drawn and "[bold red]boom[/bold red]" in drawn
    assert shown("a\nb") == "a\\nb"


# ---------------------------------------------------------------------------- the whole walk


@pytest.fixture
def planted(devnet: Devnet, tmp_path: Path) -> Iterator[tuple[Path, RpcProxy, dict[str, str]]]:
    """A ledger with hostile text planted everywhere outside text is kept: an account's name, a
    book entry's memo, an off-chain depository, an acknowledgement note; the latest run's reason
    is a hostile node's error message."""
    with RpcProxy(devnet.url) as proxy:
        scenario = Scenario(folder=tmp_path, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
        custody = make_custody(devnet, scenario, proxy.url)
        for asset, price in (("USDC", "1.00"), ("TMMF", "1.00"), ("ETH", "3000.00")):
            scenario.assets[asset]["price_usd"] = price
        scenario.extra = '\n[schedule]\nrun = "1h"\n\n[segregation]\ntimezone = "America/Chicago"\n'
        config = scenario.write()
        with (tmp_path / "accounts.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerows([ACCOUNTS_HEADER.split(","), ["C1", "futures", "One"], ["H1", "house", "House"]])
            writer.writerow(["C9", "futures", CSV_HOSTILE])
        with (tmp_path / "memo.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(BOOKS_HEADER.split(","))
            writer.writerow(["M1", "2026-11-24", "C9", "seg-1", "USDC", "0", "adjustment", CSV_HOSTILE])
        with (tmp_path / "bad.csv").open("w", newline="") as f:  # an error quotes the value
            writer = csv.writer(f)
            writer.writerow(BOOKS_HEADER.split(","))
            short = "[/v1] [chains.eth] :warning: \x9b31m \u202eevil"  # quoted whole in the error
            writer.writerow(["B1", "2026-11-24", "C9", "seg-1", "USDC", short, "adjustment", ""])
        with (tmp_path / "offchain.csv").open("w", newline="") as f:
            rows = [["date", "class", "depository", "amount_usd"], ["2026-01-02", "futures", CSV_HOSTILE, "100.00"]]
            csv.writer(f).writerows(rows)
        equity = "date,account,cash_usd,open_trade_equity_usd\n2026-01-02,C1,1000000.00,0\n"
        (tmp_path / "equity.csv").write_text(equity)
        for args in (
            ["init"],
            ["accounts", "import", "accounts.csv"],
            ["books", "import", "books.csv"],
            ["books", "import", "memo.csv"],
            ["equity", "import", "equity.csv"],
            ["offchain", "import", "offchain.csv"],
        ):
            done = run_in_terminal(["--config", str(config), *args], cwd=tmp_path)
            assert done.code == 0, (args, done.text)
        first = run_in_terminal(["--config", str(config), "run"])  # surveillance starts at its pin
        assert first.code == 0, first.text
        devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 250_000)
        found = run_in_terminal(["--config", str(config), "run", "--json"])
        assert found.code == 1, found.text
        doc = json.loads(found.text[found.text.index("{") :])
        theft = next(b for b in doc["breaks"] if b["kind"] == "unauthorized_transfer")
        acked = run_in_terminal(["--config", str(config), "breaks", "ack", theft["id"][:8], "--note", HOSTILE])
        assert acked.code == 0, acked.text

        def lie(request: dict[str, Any], _response: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32000, "message": HOSTILE}}

        proxy.on("eth_getBlockByNumber", lie)
        lied = run_in_terminal(["--config", str(config), "run", "--json"])
        assert lied.code == 2, lied.text
        latest = json.loads(lied.text[lied.text.index("{") : lied.text.rindex("}") + 1])["run_id"]
        yield config, proxy, {"theft": theft["id"], "run": doc["run_id"], "latest": latest}


def _clean(screen: Screen, strict: bool) -> None:
    """No control character reached the terminal except Rich's own colours (none at all with
    TERM=dumb); the hostile text shows as visible escapes."""
    text = screen.text if strict else screen.plain
    assert "\x1b" not in text, repr(text[max(0, text.find("\x1b") - 80) : text.find("\x1b") + 40])
    assert not C1.search(text) and "\u202e" not in text, repr(text)


# What of the hostile text a command shows: all of it, its start (an error quotes 40 characters
# of a bad value), or nothing (the command shows no outside text).
ALL = ("\\x1b[2J\\x1b[H", "[/v1]", "[chains.eth]", ":warning:", "\\x9b31m", "\\u202eevil")
START = ("[/v1]", "[chains.eth]", ":warning:", "\\x9b31m")
CSV = ("[/v1]", "[chains.eth]", ":warning:", "\\x9b31m", "\\u202eevil")
NOTHING: tuple[str, ...] = ()
WALK: list[tuple[list[str], tuple[str, ...], int]] = [
    (["runs", "show", "{latest}"], ALL, 0),
    (["run"], ALL, 2),
    (["scan"], ALL, 2),
    (["runs", "list"], ALL, 0),
    (["health"], ALL, 1),
    (["breaks", "list"], NOTHING, 0),
    (["breaks", "show", "{theft}"], ALL, 0),
    (["accounts", "list"], CSV, 0),
    (["books", "list", "--limit", "0"], NOTHING, 0),
    (["segregation", "statement"], ALL, 2),
    (["transfers", "list"], NOTHING, 0),
    (["wallets", "show"], ALL, 2),
    (["config", "check", "--online"], ALL, 2),
    (["books", "import", "{bad}"], START, 2),
]


def test_every_command_shows_outside_text_inert_in_a_terminal(planted: tuple[Path, RpcProxy, dict[str, str]]) -> None:
    config, _proxy, ids = planted
    for args, expected, code in WALK:
        given = {"theft": ids["theft"][:8], "latest": ids["latest"][:8], "bad": str(config.parent / "bad.csv")}
        argv = [a.format(**given) for a in args]
        for term, strict in (("dumb", True), ("xterm-256color", False)):
            screen = run_in_terminal(["--config", str(config), *argv], term=term)
            assert screen.code == code, (argv, term, screen.text)
            _clean(screen, strict)
            for written in expected:
                assert written in screen.plain, (argv, written, screen.text)


def test_json_keeps_outside_text_exact_and_the_html_report_escapes_it(
    planted: tuple[Path, RpcProxy, dict[str, str]], tmp_path: Path
) -> None:
    config, _proxy, ids = planted
    ran = run_in_terminal(["--config", str(config), "run", "--json"])
    doc = json.loads(ran.text[ran.text.index("{") : ran.text.rindex("}") + 1])
    assert HOSTILE in doc["reason"], "the document keeps the node's message exact"
    shown_break = run_in_terminal(["--config", str(config), "breaks", "show", ids["theft"][:8], "--json"])
    events = json.loads(shown_break.text)["events"]
    assert [e["note"] for e in events if e["event"] == "acknowledged"] == [HOSTILE]
    accounts = json.loads(run_in_terminal(["--config", str(config), "accounts", "list", "--json"]).text)
    assert {"account": "C9", "class": "futures", "name": CSV_HOSTILE} in accounts["accounts"]

    page = tmp_path / "run.html"
    wrote = run_in_terminal(["--config", str(config), "report", "html", ids["run"][:8], "--out", str(page)])
    assert wrote.code == 0, wrote.text
    html = page.read_text()
    assert "evil &lt;b&gt;" in html and "evil <b>" not in html, "the note is escaped"
