"""Revision 0014 (the units of sharded firings): a populated 0012 ledger upgrades with its runs
and firings intact, and the new table takes a run's units, one per (run, chain, shard)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy
from alembic import command

from reconciler.domain import BlockRef
from reconciler.errors import LedgerError
from reconciler.ledger import schema, units_store
from reconciler.ledger.store import Ledger
from tests.conftest import Scenario
from tests.integration.helpers import new_address


def _at_0012(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0012")
        for sql in (
            "INSERT INTO run (id, started_at, finished_at, status, reason, exit_code, host, pid, proc_start, "
            "trigger, job, scheduled_for, document, heartbeat_at) VALUES ('r-1', '2026-12-01 10:00:01', "
            "'2026-12-01 10:00:09', 'complete', NULL, 0, 'h', 4242, '1', 'schedule', 'run', "
            "'2026-12-01 10:00:00', '{\"run_id\": \"r-1\"}', '2026-12-01 10:00:05')",
            "INSERT INTO job_firing (job, scheduled_for, run_id, instance, claimed_at, attempts) VALUES "
            "('run', '2026-12-01 10:00:00', 'r-1', 'h:4242', '2026-12-01 10:00:01', 1)",
        ):
            conn.execute(sqlalchemy.text(sql))
    engine.dispose()


def test_a_populated_0012_ledger_upgrades_and_takes_a_runs_units(cli: Any, scenario: Scenario) -> None:
    scenario.add_chain("eth", "http://127.0.0.1:9", 31337)
    scenario.add_wallet("w1", "eth", new_address())
    config = scenario.write()
    _at_0012(scenario.db_url)
    result = cli("--config", str(config), "init", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["previous_version"] == 12

    engine = sqlalchemy.create_engine(scenario.db_url)
    with engine.connect() as conn:
        runs = conn.execute(sqlalchemy.text("SELECT id, status, document FROM run")).all()
        firings = conn.execute(sqlalchemy.text("SELECT run_id, attempts FROM job_firing")).all()
        units = conn.execute(sqlalchemy.text("SELECT count(*) FROM run_unit")).scalar()
    engine.dispose()
    assert [tuple(r) for r in runs] == [("r-1", "complete", '{"run_id": "r-1"}')]
    assert [tuple(f) for f in firings] == [("r-1", 1)]
    assert units == 0

    ledger = Ledger(scenario.db_url)
    try:
        block = BlockRef(123, "0x" + "ab" * 32)
        units_store.publish(ledger, "r-1", "eth", block, [(0, 5, "d" * 64), (1, 4, "e" * 64)])
        with pytest.raises(LedgerError, match="published already"):
            units_store.publish(ledger, "r-1", "eth", block, [(0, 5, "d" * 64)])
        states = units_store.states(ledger, "r-1")
        # The run is not running: nobody claims its units.
        assert units_store.claim(ledger, "r-1") is None
    finally:
        ledger.close()
    assert [(u.chain, u.shard, u.status, u.attempts) for u in states] == [
        ("eth", 0, "pending", 0),
        ("eth", 1, "pending", 0),
    ]
