"""Schema migrations: a populated ledger of an older revision upgrades with every row intact, on
SQLite and PostgreSQL; the models and the migrations describe the same schema; a ledger newer
than the code, or none at all, is refused with the command that fixes it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from reconciler.ledger import schema
from reconciler.ledger.models import MovementRow
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import new_address

BIG = 2**64 + 12345  # above 64 bits: only exact storage keeps it
HUGE = 2**256 - 1


def _config(scenario: Scenario) -> Path:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_token("USDC", "eth", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6)
    scenario.add_wallet("w1", "eth", new_address())
    return scenario.write()


def _at_first_release(url: str, *, without_alembic: bool = False) -> None:
    """A ledger at revision 0001 holding books, a finished run, its snapshots and breaks (with
    amounts far above 2^64) and their audit trail — as the first release left them."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        cfg = schema._config(conn)
        command.upgrade(cfg, schema.FIRST_RELEASE)
        amount = "'" + str(BIG) + "'" if conn.dialect.name == "sqlite" else str(BIG)
        huge = "'" + str(-HUGE) + "'" if conn.dialect.name == "sqlite" else str(-HUGE)
        for sql in (
            "INSERT INTO import_batch VALUES ('b1', 'books', 'books.csv', 'ab', 2, '2026-11-24 10:00:00')",
            "INSERT INTO account VALUES ('C1', 'futures', 'Customer One', 'b1')",
            f"INSERT INTO book_entry VALUES ('E1', '2026-11-24', 'C1', 'w1', 'USDC', {amount}, 'deposit', 'm', "
            "NULL, 'b1')",
            f"INSERT INTO book_entry VALUES ('E2', '2026-11-24', 'C1', 'w1', 'USDC', {huge}, 'adjustment', '', "
            f"'0x{'ab' * 32}', 'b1')",
            "INSERT INTO run VALUES ('r1', '2026-11-24 10:00:00', '2026-11-24 10:00:05', 'complete', NULL, 1)",
            "INSERT INTO run VALUES ('r2', '2026-11-24 11:00:00', NULL, 'running', NULL, NULL)",
            "INSERT INTO run_chain VALUES ('r1', 'eth', 31337, 123, '0x" + "cd" * 32 + "', 'multicall', NULL)",
            f"INSERT INTO balance_snapshot VALUES ('r1', 'eth', 'w1', 'USDC', 123, {amount}, {huge})",
            f"INSERT INTO break VALUES ('k1', 'balance_mismatch|eth|w1|USDC|', 'balance_mismatch', 'error', "
            f"'open', 'eth', 'w1', 'USDC', NULL, {huge}, 'detail', 123, '0x{'cd' * 32}', 'r1', 'r1', NULL, "
            "'2026-11-24 10:00:05', '2026-11-24 10:00:05', NULL, 1)",
            f"INSERT INTO break_event (break_id, run_id, event, at, amount, block_number, block_hash, note) "
            f"VALUES ('k1', 'r1', 'opened', '2026-11-24 10:00:05', {huge}, 123, '0x{'cd' * 32}', 'detail')",
        ):
            conn.execute(sqlalchemy.text(sql))
        if without_alembic:
            conn.execute(sqlalchemy.text("DROP TABLE alembic_version"))
    engine.dispose()


def _plain(value: Any) -> Any:
    """Amounts come back as text (SQLite) or Decimal (PostgreSQL): compare them as ints."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) > 12:
        return int(value)
    return value


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sqlalchemy.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table, cols in (
            ("account", "account, seg_class, name"),
            ("book_entry", "entry_id, amount, tx_hash"),
            ("run_chain", "run_id, chain, block_number, block_hash"),
            ("balance_snapshot", "run_id, book, onchain"),
            ("break", "id, key, status, amount, times_seen"),
            ("break_event", "break_id, event, amount"),
        ):
            rows = conn.execute(sqlalchemy.text(f'SELECT {cols} FROM "{table}" ORDER BY 1, 2')).all()
            out[table] = [tuple(_plain(v) for v in r) for r in rows]
    engine.dispose()
    return out


@pytest.mark.parametrize("first_release_shape", [False, True], ids=["alembic-0001", "pre-alembic"])
def test_a_populated_first_release_ledger_upgrades_with_every_row_intact(
    cli: Any, scenario: Scenario, first_release_shape: bool
) -> None:
    config = _config(scenario)
    _at_first_release(scenario.db_url, without_alembic=first_release_shape)
    before = _rows(scenario.db_url)

    refused = cli("--config", str(config), "breaks", "list", "--json")
    assert refused.code == 2 and "run `reconciler init` to upgrade" in refused.stderr and refused.stdout == ""

    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["previous_version"], doc["schema_version"]) == (1, schema.version_number(schema.head()))
    after = _rows(scenario.db_url)
    assert after == before
    assert [r[1] for r in after["book_entry"]] == [BIG, -HUGE]

    listed = cli("--config", str(config), "breaks", "list", "--json")
    assert listed.code == 0, listed.stderr
    [brk] = json.loads(listed.stdout)["breaks"]
    shown = f"-{HUGE // 10**6}.{HUGE % 10**6:06d}"
    assert (brk["id"], brk["amount"], brk["amount_display"]) == ("k1", str(-HUGE), shown)
    listed_runs = cli("--config", str(config), "runs", "list", "--json")
    runs = {r["id"]: r for r in json.loads(listed_runs.stdout)["runs"]}
    assert runs["r1"]["status"] == "complete" and runs["r1"]["exit_code"] == 1
    # a run recorded before positions were stored by change still shows all of its own rows
    shown = cli("--config", str(config), "runs", "show", "r1", "--json")
    assert shown.code == 0, shown.stderr
    [pos] = json.loads(shown.stdout)["positions"]
    assert (pos["wallet"], pos["asset"], pos["book"], pos["onchain"]) == ("w1", "USDC", str(BIG), str(-HUGE))
    # a run the first release left `running` can never finish now
    assert runs["r2"]["status"] == "incomplete" and "earlier version" in runs["r2"]["reason"]

    again = cli("--config", str(config), "init", "--json")
    assert again.code == 0 and json.loads(again.stdout)["previous_version"] == schema.version_number(schema.head())
    # rows older than the audit trail itself are carried into it by the upgrade, and vouched for
    verified = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert verified.code == 0, verified.stdout
    assert json.loads(verified.stdout)["records"] == 2 + 1 + 1  # two runs, one break, one event


def _legacy_record(kind: str, seq: int, record: dict[str, Any]) -> str:
    """A record as revisions 0007 and 0008 wrote it: no time, no state beyond these fields."""
    return json.dumps({"kind": kind, "seq": seq, **record}, sort_keys=True, separators=(",", ":"))


def _at_0008_with_a_trail(url: str) -> list[tuple[int, str]]:
    """A ledger at revision 0008: two runs, two breaks (one acknowledged) with their events, and
    the audit trail those versions wrote. Returns each record's (seq, hash)."""
    engine = sqlalchemy.create_engine(url)
    heads: list[tuple[int, str]] = []
    with engine.begin() as conn:
        cfg = schema._config(conn)
        command.upgrade(cfg, "0008")
        amount = "'-5000000'" if conn.dialect.name == "sqlite" else "-5000000"
        for sql in (
            "INSERT INTO run (id, started_at, finished_at, status, reason, exit_code, host, pid, proc_start, trigger, "
            "job, scheduled_for, document) VALUES ('r1', '2026-11-24 10:00:00', '2026-11-24 10:00:05.250000', "
            "'complete', NULL, 1, 'h', 11, NULL, 'cli', 'run', NULL, NULL)",
            "INSERT INTO run (id, started_at, finished_at, status, reason, exit_code, host, pid, proc_start, trigger, "
            "job, scheduled_for, document) VALUES ('r2', '2026-11-24 11:00:00', '2026-11-24 11:00:01', 'incomplete', "
            "'chain eth: down', 2, 'h', 12, NULL, 'schedule', 'scan', '2026-11-24 11:00:00', NULL)",
        ):
            conn.execute(sqlalchemy.text(sql))
        for brk, status in (("k1", "open"), ("k2", "acknowledged")):
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO break VALUES (:id, :key, 'balance_mismatch', 'error', :status, 'eth', :w, 'USDC', "
                    f"NULL, {amount}, 'detail', 123, '0x{'cd' * 32}', 'r1', 'r1', NULL, '2026-11-24 10:00:05', "
                    "'2026-11-24 10:00:05', NULL, 1, 6)"
                ),
                {"id": brk, "key": f"balance_mismatch|eth|{brk}|USDC|", "status": status, "w": brk},
            )
        events = [("k1", "r1", "opened", "detail"), ("k2", "r1", "opened", "detail")]
        for brk, run, event, note in [*events, ("k2", None, "acknowledged", "on it")]:
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO break_event (break_id, run_id, event, at, amount, block_number, block_hash, note) "
                    f"VALUES (:b, :r, :e, '2026-11-24 10:00:05', {amount}, 123, '0x{'cd' * 32}', :n)"
                ),
                {"b": brk, "r": run, "e": event, "n": note},
            )
        records = [
            ("break.opened", {"event": "opened", "break_id": "k1", "status": "open", "note": "detail"}),
            ("break.opened", {"event": "opened", "break_id": "k2", "status": "open", "note": "detail"}),
            ("run.finished", {"run_id": "r1", "job": "run", "status": "complete", "reason": None, "exit_code": 1}),
            ("break.acknowledged", {"event": "acknowledged", "break_id": "k2", "status": "acknowledged"}),
            ("run.finished", {"run_id": "r2", "job": "scan", "status": "incomplete", "reason": "x", "exit_code": 2}),
        ]
        prev = "0" * 64
        for seq, (kind, record) in enumerate(records, start=1):
            body = _legacy_record(kind, seq, record)
            digest = hashlib.sha256((prev + body).encode()).hexdigest()
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO audit_log (at, kind, record, prev_hash, hash) "
                    "VALUES ('2026-11-24 10:00:05', :k, :r, :p, :h)"
                ),
                {"k": kind, "r": body, "p": prev, "h": digest},
            )
            heads.append((seq, digest))
            prev = digest
    engine.dispose()
    return heads


def test_a_populated_ledger_with_an_audit_trail_upgrades_and_its_rows_are_vouched_for(
    cli: Any, scenario: Scenario
) -> None:
    config = _config(scenario)
    legacy = _at_0008_with_a_trail(scenario.db_url)
    assert cli("--config", str(config), "init").code == 0
    verified = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert verified.code == 0, verified.stdout
    doc = json.loads(verified.stdout)
    assert doc["records"] == len(legacy) + 2 + 2 + 3, "the old records, then one per run, break and event"
    # the old records verify as they were: an earlier head is still there
    seq, digest = legacy[-1]
    assert cli("--config", str(config), "breaks", "verify-audit", "--head", f"{seq}:{digest}").code == 0
    # a run's head is its outcome record's, also for runs from before the upgrade
    shown = json.loads(cli("--config", str(config), "runs", "show", "r1", "--json").stdout)
    assert shown["audit_head"] == {"seq": legacy[2][0], "hash": legacy[2][1]}
    # new records after the upgrade carry the new fields and verify with the old ones
    ran = cli("--config", str(config), "run", "--json")
    assert ran.code == 2, "the chain in the config is unreachable: an incomplete run, recorded"
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.connect() as conn:
        kinds = [k for (k,) in conn.execute(sqlalchemy.text("SELECT kind FROM audit_log ORDER BY seq"))]
        newest = json.loads(conn.execute(sqlalchemy.text("SELECT record FROM audit_log ORDER BY seq DESC")).first()[0])
    assert kinds[-2:] == ["run.started", "run.finished"] and "at" in newest and newest["run"]["status"] == "incomplete"
    after = json.loads(cli("--config", str(config), "breaks", "verify-audit", "--json").stdout)
    assert after["ok"] and after["records"] == doc["records"] + 2
    # a break from before the upgrade is vouched for: changing it is found
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE break SET status = 'resolved' WHERE id = 'k2'"))
    tampered = cli("--config", str(config), "breaks", "verify-audit", "--json")
    bad = json.loads(tampered.stdout)["first_bad"]
    assert tampered.code == 1 and (bad["table"], bad["id"], bad["field"]) == ("break", "k2", "status")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE break SET status = 'acknowledged' WHERE id = 'k2'"))
        # and an old record edited is found by its hash, as before
        conn.execute(sqlalchemy.text("UPDATE audit_log SET record = record || ' ' WHERE seq = 2"))
    edited = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert edited.code == 1 and json.loads(edited.stdout)["first_bad"]["seq"] == 2
    engine.dispose()


def _at_0008(url: str, dead_pid: int, host: str) -> None:
    """A ledger at revision 0008 as a daemon left it: a scheduled firing that completed, one
    whose process died mid-run (still ``running``), a run from the command line, their firings
    and an alert waiting in the outbox."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0008")
        insert_run = (
            "INSERT INTO run (id, started_at, finished_at, status, reason, exit_code, host, pid, proc_start, "
            "trigger, job, scheduled_for, document) VALUES "
        )
        for sql in (
            insert_run + "('r-done', '2026-11-27 23:00:01', '2026-11-27 23:00:09', 'complete', NULL, 0, "
            f"'{host}', 4242, '1', 'schedule', 'segregation_statement', '2026-11-27 23:00:00', NULL)",
            insert_run + "('r-dead', '2026-11-30 23:00:01', NULL, 'running', NULL, NULL, "
            f"'{host}', {dead_pid}, '1', 'schedule', 'segregation_statement', '2026-11-30 23:00:00', NULL)",
            insert_run + "('r-cli', '2026-11-30 10:00:00', '2026-11-30 10:00:02', 'incomplete', 'chain eth: down', 2, "
            f"'{host}', 4343, '1', 'cli', 'run', NULL, '{{\"run_id\": \"r-cli\"}}')",
            "INSERT INTO job_firing (job, scheduled_for, run_id, instance, claimed_at) VALUES "
            f"('segregation_statement', '2026-11-27 23:00:00', 'r-done', '{host}:4242', '2026-11-27 23:00:01')",
            "INSERT INTO job_firing (job, scheduled_for, run_id, instance, claimed_at) VALUES "
            f"('segregation_statement', '2026-11-30 23:00:00', 'r-dead', '{host}:{dead_pid}', '2026-11-30 23:00:01')",
            "INSERT INTO alert_outbox (event_id, event, destination, body, created_at, attempts, next_attempt_at) "
            f"VALUES ('e-1', 'run.incomplete', '{'d' * 64}', '{{}}', '2026-11-30 10:00:02', 3, '2026-11-30 10:05:00')",
        ):
            conn.execute(sqlalchemy.text(sql))
    engine.dispose()


def test_a_populated_0008_ledger_upgrades_with_its_firings_kept_and_none_rerun_that_did_not_die(
    cli: Any, scenario: Scenario
) -> None:
    from reconciler.ledger import daemon_store
    from reconciler.ledger.locks import host_name

    config = _config(scenario)
    proc = subprocess.Popen(["true"])
    proc.wait()  # its pid names a process that is gone: the run it left `running` died
    _at_0008(scenario.db_url, proc.pid, host_name())
    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["previous_version"] == 8

    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.connect() as conn:
        firings = conn.execute(
            sqlalchemy.text("SELECT run_id, attempts, lost_at FROM job_firing ORDER BY scheduled_for")
        ).all()
        runs = conn.execute(sqlalchemy.text("SELECT id, heartbeat_at, rerun_of FROM run ORDER BY id")).all()
        outbox = conn.execute(sqlalchemy.text("SELECT event_id, attempts FROM alert_outbox")).all()
    assert [tuple(f) for f in firings] == [("r-done", 1, None), ("r-dead", 1, None)], "one attempt each, none lost"
    assert [tuple(r) for r in runs] == [("r-cli", None, None), ("r-dead", None, None), ("r-done", None, None)]
    assert [tuple(o) for o in outbox] == [("e-1", 3)]

    # The first command after the upgrade closes the run whose process died; its firing is lost
    # and a daemon runs it again; the others are untouched.
    listed = cli("--config", str(config), "runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    by_id = {r["id"]: r for r in json.loads(listed.stdout)["runs"]}
    assert {i: (r["status"], r["rerun_of"]) for i, r in by_id.items()} == {
        "r-done": ("complete", None),
        "r-dead": ("incomplete", None),
        "r-cli": ("incomplete", None),
    }
    assert "runs its firing again, once" in by_id["r-dead"]["reason"]
    assert by_id["r-cli"]["reason"] == "chain eth: down"
    ledger = Ledger(scenario.db_url)
    try:
        [lost] = daemon_store.lost_firings(ledger, ["segregation_statement"])
    finally:
        ledger.close()
    assert lost.run_id == "r-dead" and lost.scheduled_for.isoformat() == "2026-11-30T23:00:00+00:00"
    engine.dispose()


def test_the_models_and_the_migrations_describe_the_same_schema(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.init()
    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ledger.close()
    # ExactInt is TEXT on SQLite and NUMERIC(78,0) on PostgreSQL in both; only real drift remains.
    drift = [d for d in diff if not (isinstance(d, list) and d and d[0][0] == "modify_type")]
    assert drift == []


def test_a_ledger_newer_than_the_code_is_refused_and_left_alone(cli: Any, scenario: Scenario) -> None:
    config = _config(scenario)
    assert cli("--config", str(config), "init").code == 0
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '9999'"))
    for args in (("init",), ("breaks", "list"), ("run",)):
        result = cli("--config", str(config), *args)
        assert result.code == 2, args
        assert "newer than this reconciler" in result.stderr and "upgrade the reconciler" in result.stderr
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar_one() == "9999"
    engine.dispose()


def test_commands_refuse_a_ledger_that_was_never_initialized(cli: Any, scenario: Scenario, tmp_path: Path) -> None:
    config = _config(scenario)
    accounts = scenario.write_csv("accounts.csv", "account,class,name", ["C1,futures,One"])
    for args in (("breaks", "list"), ("run", "--json"), ("runs", "list"), ("accounts", "import", str(accounts))):
        result = cli("--config", str(config), *args)
        assert result.code == 2, (args, result.stderr)
        assert "run `reconciler init`" in result.stderr
        assert result.stdout == ""
    if scenario.db_url.startswith("sqlite"):
        # a mistyped path must not quietly become an empty, clean-looking ledger
        assert not (tmp_path / "ledger.db").exists()


def test_the_revisions_read_from_file_names_are_alembics() -> None:
    """Commands check a ledger's version without importing Alembic, from the migrations' file
    names: they must name exactly the revisions Alembic reads from the scripts, head included."""
    script = schema._script()
    assert schema.known_revisions() == {rev.revision for rev in script.walk_revisions()}
    assert [schema.head()] == script.get_heads()
    # One line of revisions in increasing order, each revising the one before it (numbers may
    # skip: a branch's revision is renumbered when it is merged).
    ordered = sorted(schema.known_revisions())
    for rev in script.walk_revisions():
        previous = ordered.index(rev.revision) - 1
        assert rev.down_revision == (ordered[previous] if previous >= 0 else None)


def test_a_ledger_of_observed_movements_upgrades_to_initiators_with_every_movement_intact(
    cli: Any, scenario: Scenario
) -> None:
    """Revision 0010 adds who moved each token transfer (initiator, function): a ledger at the
    revision before it, holding movements (one far above 2^64), keeps every row, and those rows
    say nothing about who moved them (NULL), which `transfers list` shows as null."""
    config = _config(scenario)
    engine = sqlalchemy.create_engine(scenario.db_url)
    wallet = scenario.wallets["w1"]["address"]
    base = {
        "chain": "eth",
        "block_number": 7,
        "block_hash": "0x" + "cd" * 32,
        "block_time": 1_800_000_000,
        "kind": "token",
        "wallet": "w1",
        "asset": "USDC",
        "token": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "status": "observed",
        "observed_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
    }
    rows = [
        {**base, "tx_hash": "0x" + "01" * 32, "position": "log:0", "log_index": 0, "direction": "out",
         "from_address": wallet, "to_address": "0x000000000000000000000000000000000000dEaD", "amount": BIG,
         "instruction_id": "wd-1"},
        {**base, "tx_hash": "0x" + "02" * 32, "position": "log:1", "log_index": 1, "direction": "in",
         "from_address": "0x000000000000000000000000000000000000dEaD", "to_address": wallet, "amount": 5},
    ]
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0008")
        table = MovementRow.__table__  # type: ignore[attr-defined]
        for row in rows:
            conn.execute(sqlalchemy.insert(table).values(**row))
    engine.dispose()

    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    listed = cli("--config", str(config), "transfers", "list", "--json")
    assert listed.code == 0, listed.stderr
    got = [
        (t["tx_hash"], t["direction"], t["amount"], t["instruction_id"], t["initiator"], t["function"])
        for t in json.loads(listed.stdout)["transfers"]
    ]
    assert got == [
        ("0x" + "01" * 32, "out", str(BIG), "wd-1", None, None),
        ("0x" + "02" * 32, "in", "5", None, None, None),
    ]
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.connect() as conn:
        nulls = conn.execute(
            sqlalchemy.text("SELECT COUNT(*) FROM movement WHERE initiator IS NULL AND function IS NULL")
        ).scalar_one()
    engine.dispose()
    assert nulls == 2


def test_a_populated_0012_ledger_upgrades_to_imported_wallets_with_every_row_intact(
    cli: Any, scenario: Scenario
) -> None:
    """Revision 0013 adds the imported wallets: a ledger of 0012 with books, runs and breaks
    keeps every row, has no imported wallet (its runs see the configured ones, as before), and
    takes a wallets import at once."""
    config = _config(scenario)
    _at_first_release(scenario.db_url)
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0012")
    engine.dispose()
    before = _rows(scenario.db_url)
    refused = cli("--config", str(config), "wallets", "list", "--json")
    assert refused.code == 2 and "run `reconciler init` to upgrade" in refused.stderr

    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["previous_version"] == 12
    assert _rows(scenario.db_url) == before
    listed = cli("--config", str(config), "wallets", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert [(w["name"], w["source"]) for w in json.loads(listed.stdout)["wallets"]] == [("w1", "config")]

    address = new_address()
    path = scenario.write_csv("wallets.csv", "name,chain,address,class", [f"dep-1,eth,{address},futures"])
    imported = cli("--config", str(config), "wallets", "import", str(path), "--json")
    assert imported.code == 0 and json.loads(imported.stdout)["imported"] == 1, imported.stderr
    listed = cli("--config", str(config), "wallets", "list", "--json")
    assert [(w["name"], w["address"], w["source"]) for w in json.loads(listed.stdout)["wallets"]] == [
        ("w1", scenario.wallets["w1"]["address"], "config"),
        ("dep-1", address, "ledger"),
    ]
    assert _rows(scenario.db_url) == before
    verified = cli("--config", str(config), "breaks", "verify-audit", "--json")
    assert verified.code == 0, verified.stdout
def test_a_populated_0012_ledger_upgrades_to_tentative_breaks_and_its_trail_still_verifies(
    cli: Any, scenario: Scenario
) -> None:
    config = _config(scenario)
    _at_0008_with_a_trail(scenario.db_url)
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0012")  # its breaks carried into the trail by 0011
    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["previous_version"] == 12
    with engine.connect() as conn:
        columns = conn.execute(
            sqlalchemy.text("SELECT id, tentative, evidence_block_number, evidence_block_hash FROM break ORDER BY id")
        ).all()
        watched = conn.execute(sqlalchemy.text("SELECT count(*) FROM watch_head")).scalar_one()
    engine.dispose()
    assert [tuple(c) for c in columns] == [("k1", None, None, None), ("k2", None, None, None)]
    assert watched == 0
    verified = cli("--config", str(config), "breaks", "verify-audit")
    assert verified.code == 0, verified.stdout + verified.stderr
    listed = json.loads(cli("--config", str(config), "breaks", "list", "--all", "--json").stdout)
    assert [b["tentative"] for b in listed["breaks"]] == [False, False], "a break from before was never tentative"
