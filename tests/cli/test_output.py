"""Human output as a person reads it in an 80-column terminal: whole amounts with separators,
one short id form that every command accepts, a run summary instead of every position, a
break's history in a few lines. Real Anvil, real ledgers (SQLite and PostgreSQL), the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from rich.cells import cell_len

from chains.evm.devnet import Devnet
from reconciler.cli.tables import Col, Row, fit_table, group_digits
from reconciler.domain import abbreviate_ids
from reconciler.inputs.config import load_settings
from reconciler.ledger.store import Ledger
from tests.conftest import CliResult, Scenario
from tests.integration.helpers import BOOKS_HEADER, closed_port_url, load, make_custody, new_address, run_json

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
RECONCILER = str(Path(sys.executable).parent / "reconciler")
MILLION_USDC = 1_000_000 * 10**6


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """An 80-column terminal, as Rich learns it from COLUMNS."""
    monkeypatch.setenv("COLUMNS", "80")


def _fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not wide, f"lines wider than {width} columns: {wide}"


def _whole(token: str, text: str) -> bool:
    """``token`` appears with no other id or digit character glued to either side."""
    return re.search(rf"(?<![0-9a-f,.\-]){re.escape(token)}(?![0-9a-f,.\-])", text) is not None


def _cli(cli: Any, config: Path, *args: str) -> CliResult:
    result: CliResult = cli("--config", str(config), *args)
    return result


# ---------------------------------------------------------------------- run


def test_run_prints_per_chain_pins_a_summary_and_breaks_with_whole_amounts_at_80_columns(
    cli: Any, devnet: Devnet, scenario: Scenario, narrow: None
) -> None:
    custody = make_custody(devnet, scenario, devnet.url, confirmations=2)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, MILLION_USDC)
    devnet.mine(2)  # the transfer is 2 blocks deep: the pin sees it

    shown = _cli(cli, config, "run")

    assert shown.code == 1, shown.stderr
    _fits(shown.stdout)
    [brk] = json.loads(_cli(cli, config, "breaks", "list", "--json").stdout)["breaks"]
    assert brk["amount_display"] == "-1000000.000000"
    assert _whole("-1,000,000.000000", shown.stdout), shown.stdout
    assert _whole(brk["id"][:8], shown.stdout) and brk["id"] not in shown.stdout
    line = r"^eth  block ([\d,]+) \(head ([\d,]+), 2 confirmations\)  (multicall|batch)$"
    pinned = re.search(line, shown.stdout, re.M)
    assert pinned, shown.stdout
    block, head = (int(g.replace(",", "")) for g in pinned.groups()[:2])
    assert head - block == 2 and head <= devnet.head()
    assert "positions: 5 agree, 1 differ (--positions lists them)" in shown.stdout
    assert "breaks open: 1 new, 0 seen again, 0 acknowledged; resolved this run: 0" in shown.stdout
    assert "Positions" not in shown.stdout and "house-1" not in shown.stdout, "no position table by default"
    assert re.search(rf"^run {brk['last_run_id'][:8]}: complete: breaks open$", shown.stdout, re.M)

    # The head is kept in the run's document, so `runs show` reproduces it.
    code, doc, _ = run_json(cli, config)
    eth = doc["chains"]["eth"]
    assert eth["head"] - eth["block_number"] == 2
    again = json.loads(_cli(cli, config, "runs", "show", doc["run_id"][:8], "--json").stdout)
    assert again["chains"]["eth"]["head"] == eth["head"]
    assert again["chains"]["eth"]["block_number"] == eth["block_number"]
    replay = _cli(cli, config, "runs", "show", doc["run_id"][:8])
    assert replay.code == 0, replay.stderr
    _fits(replay.stdout)
    assert f"eth  block {eth['block_number']:,} (head {eth['head']:,})" in replay.stdout
    assert "breaks open: 0 new, 1 seen again, 0 acknowledged; resolved this run: 0" in replay.stdout
    assert _whole("-1,000,000.000000", replay.stdout) and _whole(brk["id"][:8], replay.stdout)
    assert "None" not in replay.stdout


def test_run_positions_lists_differing_then_non_zero_then_zero_rows(
    cli: Any, devnet: Devnet, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, 250_000)

    monkeypatch.setenv("COLUMNS", "200")
    wide = _cli(cli, config, "run", "--positions")
    assert wide.code == 1, wide.stderr
    table = wide.stdout.split("Positions (difference = on-chain - book)", 1)[1]
    rows = re.findall(r"^eth +(\S+) +(\S+) +(\S+) +(\S+) +(\S+)$", table, re.M)
    assert [(w, a) for w, a, *_ in rows] == [
        ("seg-1", "USDC"),  # differs
        ("seg-1", "TMMF"),  # non-zero, in the configured order
        ("house-1", "ETH"),
        ("seg-1", "ETH"),  # zero rows last
        ("house-1", "USDC"),
        ("house-1", "TMMF"),
    ]
    assert rows[0][2:] == ("1,000,000.500000", "1,000,000.250000", "-0.250000")
    assert rows[1][2:] == ("2,500.000000000000000000",) * 2 + ("0.000000000000000000",)

    # At 80 columns three 18-decimal amounts side by side do not fit: every one stays whole.
    monkeypatch.setenv("COLUMNS", "80")
    narrow = _cli(cli, config, "run", "--positions")
    _fits(narrow.stdout)
    assert _whole("2,500.000000000000000000", narrow.stdout) and _whole("7.000000000000000000", narrow.stdout)
    assert _whole("-0.250000", narrow.stdout)


def test_scan_prints_the_blocks_it_observed_and_runs_show_replays_them(
    cli: Any, devnet: Devnet, scenario: Scenario, narrow: None
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    assert run_json(cli, config)[0] == 0  # the checkpoint: later blocks are new to the scan
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, MILLION_USDC)

    shown = _cli(cli, config, "scan")

    assert shown.code == 1, shown.stderr
    _fits(shown.stdout)
    line = r"^eth  blocks ([\d,]+)\.\.([\d,]+): 1 movement observed, 0 reorged \(head ([\d,]+), 0 confirmations\)$"
    observed = re.search(line, shown.stdout, re.M)
    assert observed, shown.stdout
    assert "breaks open: 1 new, 0 seen again, 0 acknowledged; resolved this run: 0" in shown.stdout
    assert "positions:" not in shown.stdout, "a scan compares no balances"
    assert _whole("-1,000,000.000000", shown.stdout)
    scan_id = re.search(r"^scan ([0-9a-f]{8}): complete: breaks open$", shown.stdout, re.M)
    assert scan_id, shown.stdout
    replay = _cli(cli, config, "runs", "show", scan_id.group(1))
    assert replay.code == 0, replay.stderr
    assert f"eth  blocks {observed.group(1)}..{observed.group(2)}: 1 movement observed" in replay.stdout
    assert "None" not in replay.stdout


def test_the_console_script_honours_columns_through_a_pipe(devnet: Devnet, scenario: Scenario) -> None:
    """The installed script, its stdout a pipe (as under a pager or a log): COLUMNS=80 is obeyed,
    and without COLUMNS rows are not squeezed."""
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_") and k != "COLUMNS"}
    for args in (["init"], ["accounts", "import", "accounts.csv"], ["books", "import", "books.csv"]):
        done = subprocess.run(
            [RECONCILER, "--config", str(config), *args],
            env=env, cwd=scenario.folder, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
    devnet.transfer_as(custody.tmmf, custody.wallets["seg-1"], OUTSIDER, 1_234_567 * 10**15)  # 1,234.567 TMMF
    done = subprocess.run(
        [RECONCILER, "--config", str(config), "run"], env={**env, "COLUMNS": "80"}, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    _fits(done.stdout)
    assert _whole("-1,234.567000000000000000", done.stdout), done.stdout
    listed = subprocess.run(
        [RECONCILER, "--config", str(config), "breaks", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert max(cell_len(line) for line in listed.stdout.splitlines()) > 80, "off a terminal, rows keep their width"
    row = r"error +balance_mismatch +open +eth +seg-1 +-1,234\.567000000000000000 TMMF +1$"
    assert re.search(row, listed.stdout, re.M), listed.stdout


def test_an_incomplete_run_names_the_chain_it_could_not_read(cli: Any, scenario: Scenario, narrow: None) -> None:
    scenario.add_chain("eth", closed_port_url(), 31337, rpc_retries=0)
    scenario.add_native("ETH", "eth")
    scenario.add_wallet("seg-1", "eth", new_address())
    config = scenario.write()
    assert _cli(cli, config, "init").code == 0

    shown = _cli(cli, config, "run")

    assert shown.code == 2
    assert re.search(r"^eth  not read \(see the reason below\)$", shown.stdout, re.M), shown.stdout
    assert "positions: 0 agree, 0 differ; none of eth: not read" in shown.stdout
    assert "INCOMPLETE" in shown.stdout and "None" not in shown.stdout
    assert shown.stderr.count("reason: chain eth:") == 1


# ---------------------------------------------------------------------- ids


def test_breaks_show_takes_a_short_id_and_prints_a_readable_history(
    cli: Any, devnet: Devnet, scenario: Scenario, narrow: None
) -> None:
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, MILLION_USDC // 2)
    runs = [run_json(cli, config)[1]["run_id"] for _ in range(3)]  # opened, then seen twice
    [brk] = json.loads(_cli(cli, config, "breaks", "list", "--json").stdout)["breaks"]
    short = brk["id"][:8]
    note = "booked late by the back office; ops desk (J. Doe) on it"
    acked = _cli(cli, config, "breaks", "ack", short, "--note", note)
    assert acked.code == 0, acked.stderr
    assert f"break {short} acknowledged" in acked.stderr
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, MILLION_USDC // 4)
    runs += [run_json(cli, config)[1]["run_id"] for _ in range(2)]  # the amount changes, seen twice more

    shown = _cli(cli, config, "breaks", "show", short)

    assert shown.code == 0, shown.stderr
    _fits(shown.stdout)
    assert "None" not in shown.stdout
    assert re.search(rf"^break +{brk['id']}$", shown.stdout, re.M)
    assert re.search(r"^status +acknowledged$", shown.stdout, re.M)
    assert _whole("-750,000.000000", shown.stdout)
    assert re.search(r"^acknowledged +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: booked late", shown.stdout, re.M)
    assert "J. Doe" in shown.stdout
    history = shown.stdout.split("history (UTC):", 1)[1].splitlines()
    events = [m.group(1) for line in history if (m := re.match(r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  (\w+)", line))]
    assert events == ["opened", "seen", "acknowledged", "seen"], shown.stdout
    text = " ".join(" ".join(history).split())  # wrapped lines joined
    assert re.search(rf"seen +2 times, .* → .*\(runs {runs[1][:8]} … {runs[2][:8]}\)", text), text
    changed = rf"\(runs {runs[3][:8]} … {runs[4][:8]}\).*amount -750,000\.000000 \(was -500,000\.000000\)"
    assert re.search(changed, text), text
    assert f"note: {note}" in text

    as_json = json.loads(_cli(cli, config, "breaks", "show", short, "--json").stdout)
    assert [e["event"] for e in as_json["events"]] == ["opened", "seen", "seen", "acknowledged", "seen", "seen"]
    assert as_json["break"]["amount_display"] == "-750000.000000", "JSON keeps plain decimals"


def test_a_prefix_shorter_than_4_characters_is_refused_and_an_ambiguous_one_names_the_matches(
    cli: Any, devnet: Devnet, scenario: Scenario, narrow: None
) -> None:
    """17 breaks: two of them always share a first hex digit, so one digit was once a way to
    acknowledge the wrong (critical) break. At least 4 characters, as git asks."""
    usdc = devnet.deploy_token("Test USD", "USDC", 6)
    scenario.add_chain("eth", devnet.url, 31337)
    scenario.add_token("USDC", "eth", usdc.address, 6)
    names = [f"w{i:02d}" for i in range(17)]
    for name in names:
        scenario.add_wallet(name, "eth", new_address())
    config = scenario.write()
    scenario.write_csv("accounts.csv", "account,class,name", ["C1,futures,One"])
    scenario.write_csv(
        "books.csv", BOOKS_HEADER, [f"E{i},2026-11-24,C1,{n},USDC,1000000,deposit," for i, n in enumerate(names)]
    )
    load(cli, config)
    assert run_json(cli, config)[0] == 1
    ids = sorted(b["id"] for b in json.loads(_cli(cli, config, "breaks", "list", "--json").stdout)["breaks"])
    assert len(ids) == 17
    first, count = Counter(i[0] for i in ids).most_common(1)[0]
    assert count >= 2
    matching = [i for i in ids if i.startswith(first)]

    unique = next((i for i in ids if sum(j.startswith(i[0]) for j in ids) == 1), ids[0])

    refused = _cli(cli, config, "breaks", "show", first)

    assert refused.code == 2 and refused.stdout == ""
    too_short = f"break id prefix '{first}' is too short: give at least 4 characters of the id"
    assert too_short in refused.stderr
    for prefix in (first, unique[0], unique[:3]):  # even a prefix only one break starts with
        for command in (("breaks", "ack", prefix, "--note", "x"), ("breaks", "resolve", prefix, "--note", "x")):
            said = _cli(cli, config, *command)
            assert said.code == 2 and "is too short: give at least 4 characters" in said.stderr
    still = json.loads(_cli(cli, config, "breaks", "list", "--json").stdout)["breaks"]
    assert len(still) == 17 and {b["status"] for b in still} == {"open"}, "nothing was acknowledged or resolved"
    assert _cli(cli, config, "breaks", "show", unique[:4]).code == 0
    # Any unique prefix works, upper case too, and the listing prints the same short form.
    upper = _cli(cli, config, "breaks", "show", matching[0][:8].upper(), "--json")
    assert json.loads(upper.stdout)["break"]["id"] == matching[0]
    table = _cli(cli, config, "breaks", "list")
    _fits(table.stdout)
    assert all(_whole(i[:8], table.stdout) for i in ids)
    assert _whole("-1,000,000.000000", table.stdout)
    missing = _cli(cli, config, "breaks", "show", "zzzz")
    assert missing.code == 2 and "no break with id 'zzzz'" in missing.stderr


def test_ids_sharing_eight_characters_print_longer_everywhere(
    cli: Any, devnet: Devnet, scenario: Scenario, narrow: None
) -> None:
    """A collision of the first 8 characters (rare with uuid4, so planted in the ledger): the
    table prints as many characters as tell them apart, and the prefix lookup says which."""
    custody = make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    load(cli, config)
    devnet.transfer_as(custody.usdc, custody.wallets["seg-1"], OUTSIDER, MILLION_USDC)
    _, doc, _ = run_json(cli, config)
    [real] = doc["breaks"]
    twins = ["deadbeef-0aaa-4000-8000-000000000001", "deadbeef-0bbb-4000-8000-000000000002"]
    engine = sqlalchemy.create_engine(scenario.db_url)
    now = datetime.now(UTC).replace(tzinfo=None)  # stored times are naive UTC
    with engine.begin() as conn:
        for n, twin in enumerate(twins):
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO break (id, key, kind, severity, status, chain, wallet, asset, detail, "
                    "first_run_id, last_run_id, opened_at, last_seen_at, times_seen) VALUES (:id, :key, "
                    "'asset_frozen', 'error', 'open', 'eth', 'house-1', 'USDC', 'planted', :run, :run, :now, :now, 1)"
                ),
                {"id": twin, "key": f"asset_frozen|eth|house-1|USDC|{n}", "run": doc["run_id"], "now": now},
            )
    engine.dispose()

    table = _cli(cli, config, "breaks", "list")

    _fits(table.stdout)
    assert _whole("deadbeef-0a", table.stdout) and _whole("deadbeef-0b", table.stdout), table.stdout
    assert _whole(real["id"][:8], table.stdout)
    refused = _cli(cli, config, "breaks", "show", "deadbeef")
    assert refused.code == 2
    said = "break id prefix deadbeef matches 2 breaks (deadbeef-0a, deadbeef-0b); give more characters"
    assert said in refused.stderr
    shown = _cli(cli, config, "breaks", "show", "deadbeef-0b", "--json")
    assert json.loads(shown.stdout)["break"]["id"] == twins[1]


def test_runs_list_and_show_use_the_short_id_and_refuse_a_too_short_prefix(
    cli: Any, scenario: Scenario, narrow: None
) -> None:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)  # never read: the runs are recorded directly
    config = scenario.write()
    assert _cli(cli, config, "init").code == 0
    ledger = Ledger(load_settings(str(config)).database_url)
    try:
        ids = []
        for _ in range(17):
            run, lock = ledger.begin_run()
            lock.release()
            ledger.abandon_run(run.id, "recorded by a test, " + "with a reason long enough to wrap " * 3)
            ids.append(run.id)
    finally:
        ledger.close()
    first, _count = Counter(i[0] for i in ids).most_common(1)[0]

    listed = _cli(cli, config, "runs", "list", "--limit", "50")

    assert listed.code == 0, listed.stderr
    _fits(listed.stdout)
    short = abbreviate_ids(ids)
    assert all(_whole(short[i], listed.stdout) for i in ids)
    assert "None" not in listed.stdout
    refused = _cli(cli, config, "runs", "show", first)
    assert refused.code == 2 and f"run id prefix '{first}' is too short: give at least 4" in refused.stderr
    shown = _cli(cli, config, "runs", "show", ids[0][:8])
    assert shown.code == 0, shown.stderr
    assert re.search(rf"^run +{ids[0]}$", shown.stdout, re.M) and "None" not in shown.stdout


# ---------------------------------------------------------------------- books


def test_a_run_against_a_ledger_without_book_entries_warns_on_stderr(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    make_custody(devnet, scenario, devnet.url)
    config = scenario.write()
    for args in (("init",), ("accounts", "import", str(scenario.folder / "accounts.csv"))):
        assert _cli(cli, config, *args).code == 0
    warning = (
        "warning: the ledger has no book entries; every on-chain balance will show as a difference — "
        "import books with: reconciler books import FILE"
    )

    human = _cli(cli, config, "run")
    as_json = _cli(cli, config, "run", "--json")

    assert human.code == 1 and warning in " ".join(human.stderr.split())
    assert as_json.code == 1 and warning in " ".join(as_json.stderr.split())
    assert json.loads(as_json.stdout)["status"] == "complete", "stdout keeps the one JSON document"
    assert _cli(cli, config, "books", "import", str(scenario.folder / "books.csv")).code == 0
    booked = _cli(cli, config, "run")
    assert booked.code == 0 and "no book entries" not in booked.stderr


# ---------------------------------------------------------------------- the pieces


def test_short_ids_grow_only_where_they_collide() -> None:
    ids = ["85bf12aa-1", "85bfad51-2", "85bfe001-3", "deadbeef-0aaa", "deadbeef-0bbb", "deadbeef1"]
    assert abbreviate_ids(ids) == {
        "85bf12aa-1": "85bf12aa",
        "85bfad51-2": "85bfad51",
        "85bfe001-3": "85bfe001",
        "deadbeef-0aaa": "deadbeef-0a",
        "deadbeef-0bbb": "deadbeef-0b",
        "deadbeef1": "deadbeef1",
    }


@pytest.mark.parametrize(
    ("plain", "grouped"),
    [
        ("-1000000.000000", "-1,000,000.000000"),
        ("999.5", "999.5"),
        ("1234", "1,234"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("n/a", "n/a"),
    ],
)
def test_thousands_separators_only_in_the_whole_part(plain: str, grouped: str) -> None:
    assert group_digits(plain) == grouped


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_a_table_never_cuts_a_whole_column_at_any_width(width: int) -> None:
    from rich.console import Console

    columns = (
        Col("id", whole=True),
        Col("kind"),
        Col("note", wrap=True, drop=2),
        Col("seen", drop=1),
        Col("amount", justify="right", whole=True),
    )
    amounts = ["-1,000,000.000000", "2,500.000000000000000000"]
    rows = [Row(("85bfad51", "balance_mismatch", "a note " * 8, "3", a)) for a in amounts]
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(fit_table(width, columns, rows, "Breaks"))
    text = console.export_text()
    _fits(text, width)
    assert all(_whole(a, text) for a in amounts) and _whole("85bfad51", text)
    if "not shown at this width" in text:  # the least important column goes first
        assert re.search(r"not shown at this width: seen(, note)? \(", " ".join(text.split())), text
