"""Revision 0016 (the views a sharded run's units read the ledger through): a populated 0015
ledger with a sharded run's units upgrades with every unit intact and viewless (a daemon reads
those through views of its own, as before); units published since carry the run's views, and
a daemon that claims one reads the books as the run began, not as they are when it joins."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import sqlalchemy
from alembic import command

from reconciler.app.units import unit_inputs, views_to_json
from reconciler.domain import AccountRow, BlockRef, BookRow, EntryKind, SegClass
from reconciler.ledger import schema, units_store
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import new_address

_RUN = (
    "INSERT INTO run (id, started_at, status, exit_code, host, pid, proc_start, trigger, job, scheduled_for, "
    "heartbeat_at) VALUES ('{id}', '2026-12-01 10:00:01', 'running', NULL, 'h', 4242, '1', 'schedule', 'run', "
    "'2026-12-01 10:00:00', '2026-12-01 10:00:05')"
)


def test_a_populated_0015_ledger_upgrades_and_its_units_read_the_runs_views(cli: Any, scenario: Scenario) -> None:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_wallet("w1", "eth", new_address())
    config = scenario.write()
    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0015")
        conn.execute(sqlalchemy.text(_RUN.format(id="r-old")))
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO run_unit (run_id, chain, shard, shards, block_number, block_hash, wallets, "
                "wallets_digest, status, attempts, result) VALUES ('r-old', 'eth', 0, 1, 7, :h, 1, :d, 'done', 1, "
                "'{\"positions\": []}')"
            ),
            {"h": "0x" + "ab" * 32, "d": "d" * 64},
        )
    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["previous_version"] == 15
    with engine.connect() as conn:
        kept = conn.execute(sqlalchemy.text("SELECT run_id, status, attempts, result, views FROM run_unit")).all()
    assert [tuple(k) for k in kept] == [("r-old", "done", 1, '{"positions": []}', None)]

    ledger = Ledger(scenario.db_url)
    try:
        ledger.import_accounts([AccountRow(2, "C1", SegClass.FUTURES, "One")], "accounts.csv", "0" * 64)
        first = [BookRow(2, "E1", date(2026, 11, 24), "C1", "w1", "USDC", 5, EntryKind.DEPOSIT, "", None)]
        ledger.import_books(first, "a.csv", "1" * 64)
        from reconciler.inputs.config import load_settings

        settings = load_settings(config)
        at_start = unit_inputs(settings, ledger)  # the coordinator's, when the run began
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(_RUN.format(id="r-new")))
        block = BlockRef(9, "0x" + "cd" * 32)
        units_store.publish(ledger, "r-new", "eth", block, [(0, 1, "e" * 64)], views_to_json(at_start))
        later = [BookRow(2, "E2", date(2026, 11, 25), "C1", "w1", "USDC", 100, EntryKind.DEPOSIT, "", None)]
        ledger.import_books(later, "b.csv", "2" * 64)  # committed while the run's units are read

        unit = units_store.claim(ledger, "r-new")  # a daemon that joins now
        assert unit is not None and unit.views == views_to_json(at_start)
        joined = unit_inputs(settings, ledger, unit.views)
        wallet = settings.wallets["w1"]
        assert joined.book_of([wallet]) == {("w1", "USDC"): 5}, "the run's books, not the joiner's"
        assert unit_inputs(settings, ledger).book_of([wallet]) == {("w1", "USDC"): 105}
    finally:
        ledger.close()
        engine.dispose()
