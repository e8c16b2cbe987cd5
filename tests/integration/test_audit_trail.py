"""The audit trail vouches for the tables, tried as an insider with SQL would: on SQLite and
PostgreSQL, through the CLI, each tampering of the issue is named by `breaks verify-audit`
(exit 1, the table, row and field), and undoing it verifies again. A chain recomputed without
the key fails once a key is configured; deleting the newest records fails against a head kept
elsewhere (`--head`, from `runs show`, `verify-audit --json` or the run.finished webhook)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from chains.evm.devnet import Devnet
from reconciler.bootstrap import open_ledger
from reconciler.inputs.config import load_settings
from tests.conftest import Scenario
from tests.integration.helpers import load, make_custody, run_json
from tests.integration.test_alerts import receiver  # noqa: F401 - the webhook receiver fixture

OUTSIDER = "0x000000000000000000000000000000000000dEaD"
KEY_ENV = "TEST_RECONCILER_AUDIT_KEY"
KEY = "audit-key-0123456789-never-shown"
GENESIS = "0" * 64

# A run begun by a process that then dies without recording an outcome (as SIGKILL leaves it).
_DIES_MID_RUN = (
    "import os, sys\n"
    "from reconciler.bootstrap import open_ledger\n"
    "from reconciler.inputs.config import load_settings\n"
    "ledger = open_ledger(load_settings(sys.argv[1]))\n"
    "run, _lock = ledger.begin_run()\n"
    "print(run.id, flush=True)\n"
    "os._exit(0)\n"
)


@dataclass
class History:
    """A ledger after many runs, acknowledgements, resolutions, an interrupted and a reaped run."""

    cli: Any
    config: Path
    url: str
    theft: str  # an open critical unauthorized_transfer
    mismatch: str  # an acknowledged balance_mismatch
    resolved: str  # a theft resolved by hand
    reaped: str  # a run whose process died
    interrupted: str
    runs: list[str]

    def verify(self, *args: str) -> tuple[int, dict[str, Any], str]:
        result = self.cli("--config", str(self.config), "breaks", "verify-audit", "--json", *args)
        return result.code, json.loads(result.stdout), result.stderr

    def verify_human(self, *args: str) -> Any:
        return self.cli("--config", str(self.config), "breaks", "verify-audit", *args)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = sqlalchemy.create_engine(self.url)
        try:
            with engine.begin() as conn:
                result = conn.execute(sqlalchemy.text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()


def build_history(cli: Any, devnet: Devnet, scenario: Scenario, extra: str = "") -> History:
    custody = make_custody(devnet, scenario, devnet.url)
    scenario.extra = extra
    config = scenario.write()
    load(cli, config)
    runs = [run_json(cli, config)[1]["run_id"]]  # surveillance starts at this pin
    seg = custody.wallets["seg-1"]
    devnet.transfer_as(custody.usdc, seg, OUTSIDER, 250_000 * 10**6)
    devnet.transfer_as(custody.tmmf, seg, OUTSIDER, 10 * 10**18)
    code, doc, _ = run_json(cli, config)
    assert code == 1
    runs.append(doc["run_id"])
    runs.append(run_json(cli, config)[1]["run_id"])  # everything seen again
    kinds = {(b["kind"], b["asset"]): b["id"] for b in doc["breaks"]}
    theft, other = kinds[("unauthorized_transfer", "USDC")], kinds[("unauthorized_transfer", "TMMF")]
    mismatch = kinds[("balance_mismatch", "USDC")]
    assert cli("--config", str(config), "breaks", "ack", mismatch, "--note", "ops: investigating").code == 0
    assert cli("--config", str(config), "breaks", "resolve", other, "--note", "reviewed: a test").code == 0
    # A run interrupted (as SIGTERM records it) and one whose process died (closed by the next command).
    ledger = open_ledger(load_settings(str(config)))
    try:
        run, lock = ledger.begin_run()
        ledger.abandon_run(run.id, "interrupted by SIGTERM before the run finished; nothing it saw was saved")
        lock.release()
    finally:
        ledger.close()
    died = subprocess.run(
        [sys.executable, "-c", _DIES_MID_RUN, str(config)], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert died.returncode == 0, died.stderr
    reaped = died.stdout.strip()
    listed = json.loads(cli("--config", str(config), "runs", "list", "--json").stdout)["runs"]
    statuses = {r["id"]: r["status"] for r in listed}
    assert statuses[reaped] == "incomplete" and statuses[run.id] == "incomplete"
    runs.append(run_json(cli, config)[1]["run_id"])
    return History(cli, config, scenario.db_url, theft, mismatch, other, reaped, run.id, runs)


def rewrite_chain(history: History, first_seq: int, key: str | None = None) -> None:
    """What an insider without the key can do after deleting records: renumber and rehash every
    record from ``first_seq`` on, so that the SHA-256 chain holds again, and make the later
    records of the mismatch say what the tables now say (status open). With ``key`` given, that
    (wrong) key's HMACs are written; otherwise the HMACs are dropped."""
    rows = history.sql("SELECT id, seq, record, prev_hash, hash FROM audit_log ORDER BY seq")
    prev = GENESIS
    for n, (row_id, seq, record, _prev, digest) in enumerate(rows, start=1):
        if seq < first_seq:
            prev = digest
            continue
        doc = json.loads(record)
        doc["seq"] = n
        brk = doc.get("break")
        if isinstance(brk, dict) and brk.get("id") == history.mismatch and brk.get("status") == "acknowledged":
            brk["status"] = "open"
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256((prev + body).encode()).hexdigest()
        mac = hmac.new(key.encode(), (prev + body).encode(), hashlib.sha256).hexdigest() if key else None
        history.sql(
            "UPDATE audit_log SET seq = :n, record = :r, prev_hash = :p, hash = :h, hmac = :m WHERE id = :i",
            n=-n, r=body, p=prev, h=digest, m=mac, i=row_id,
        )
        # the rows that name a record by its number follow it
        history.sql("UPDATE break_event SET audit_seq = :n WHERE audit_seq = :s", n=-n, s=seq)
        history.sql("UPDATE run SET audit_seq = :n, audit_hash = :h WHERE audit_seq = :s", n=-n, h=digest, s=seq)
        prev = digest
    for table, column in (("audit_log", "seq"), ("break_event", "audit_seq"), ("run", "audit_seq")):
        history.sql(f"UPDATE {table} SET {column} = -{column} WHERE {column} < 0")


def forget_acknowledgement(history: History, break_id: str) -> int:
    """Delete an acknowledgement everywhere: its record, its event row, and the status it set.
    Returns the number of the record deleted."""
    [(seq,)] = history.sql(
        "SELECT audit_seq FROM break_event WHERE break_id = :b AND event = 'acknowledged'", b=break_id
    )
    history.sql("DELETE FROM break_event WHERE audit_seq = :s", s=seq)
    history.sql("DELETE FROM audit_log WHERE seq = :s", s=seq)
    history.sql("UPDATE break SET status = 'open' WHERE id = :b", b=break_id)
    return int(seq)


# ------------------------------------------------------------------------------ tests


def test_a_clean_history_verifies_and_every_tampering_of_the_issue_is_named(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    h = build_history(cli, devnet, scenario)
    code, doc, _ = h.verify()
    assert code == 0, doc
    assert doc["ok"] is True and doc["problem"] is None and doc["first_bad"] is None
    assert doc["hmac"] == "not configured" and doc["records"] >= 20
    head = doc["head"]
    assert set(head) == {"seq", "hash"} and head["seq"] == doc["records"] and len(head["hash"]) == 64
    human = h.verify_human()
    assert human.code == 0 and f"head {head['seq']}:{head['hash']}" in human.stdout
    # every run's head (runs show) is in the trail
    for run_id in h.runs + [h.reaped, h.interrupted]:
        shown = json.loads(cli("--config", str(h.config), "runs", "show", run_id, "--json").stdout)
        pinned = f"{shown['audit_head']['seq']}:{shown['audit_head']['hash']}"
        assert h.verify("--head", pinned)[0] == 0, run_id

    # 1. A critical theft made to vanish: its status set to resolved.
    h.sql("UPDATE break SET status = 'resolved' WHERE id = :b", b=h.theft)
    code, doc, _ = h.verify()
    assert code == 1 and doc["ok"] is False
    bad = doc["first_bad"]
    assert (bad["table"], bad["id"], bad["field"], bad["stored"], bad["trail"]) == (
        "break", h.theft, "status", "resolved", "open"
    )
    human = h.verify_human()
    assert human.code == 1 and h.theft in human.stderr and "status" in human.stderr
    h.sql("UPDATE break SET status = 'open' WHERE id = :b", b=h.theft)
    assert h.verify()[0] == 0, "undone, it verifies again"

    # 2. A forged acknowledgement in the history `breaks show` prints.
    h.sql(
        "INSERT INTO break_event (break_id, run_id, event, at, amount, block_number, block_hash, note) "
        "VALUES (:b, NULL, 'acknowledged', :at, NULL, NULL, NULL, 'approved by CFO')",
        b=h.theft, at=datetime.now(UTC).replace(tzinfo=None),
    )
    shown = json.loads(cli("--config", str(h.config), "breaks", "show", h.theft, "--json").stdout)
    assert "approved by CFO" in [e["note"] for e in shown["events"]], "the forgery is what a reader would see"
    code, doc, _ = h.verify()
    assert code == 1 and doc["first_bad"]["table"] == "break_event"
    assert "not in the audit trail" in doc["problem"] and h.theft in doc["problem"]
    h.sql("DELETE FROM break_event WHERE note = 'approved by CFO'")
    assert h.verify()[0] == 0

    # 3. An edited note.
    [(event_id, note)] = h.sql(
        "SELECT id, note FROM break_event WHERE break_id = :b AND event = 'acknowledged'", b=h.mismatch
    )
    h.sql("UPDATE break_event SET note = 'approved by CFO' WHERE id = :i", i=event_id)
    code, doc, _ = h.verify()
    bad = doc["first_bad"]
    assert code == 1 and (bad["table"], bad["id"], bad["field"]) == ("break_event", str(event_id), "note")
    assert (bad["stored"], bad["trail"]) == ("approved by CFO", note)
    h.sql("UPDATE break_event SET note = :n WHERE id = :i", n=note, i=event_id)
    assert h.verify()[0] == 0

    # 4. A deleted run (the reaped one: nothing else refers to it).
    [row] = h.sql("SELECT * FROM run WHERE id = :r", r=h.reaped)
    h.sql("DELETE FROM run WHERE id = :r", r=h.reaped)
    code, doc, _ = h.verify()
    bad = doc["first_bad"]
    assert code == 1 and (bad["table"], bad["id"]) == ("run", h.reaped) and "not in the table" in doc["problem"]
    columns = list(row._mapping)
    h.sql(
        f"INSERT INTO run ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})", **row._mapping
    )
    assert h.verify()[0] == 0

    # 5. An edited record time (outside the hash before this release).
    [(seq, at)] = h.sql("SELECT seq, at FROM audit_log WHERE kind = 'break.acknowledged'")
    h.sql("UPDATE audit_log SET at = :t WHERE seq = :s", t=datetime(2020, 1, 2, 3, 4, 5), s=seq)
    code, doc, _ = h.verify()
    assert code == 1 and doc["first_bad"]["field"] == "at" and doc["first_bad"]["seq"] == seq
    h.sql("UPDATE audit_log SET at = :t WHERE seq = :s", t=at, s=seq)
    assert h.verify()[0] == 0

    # 6. A changed severity and amount are named too (the first difference, then a count).
    h.sql("UPDATE break SET severity = 'info', amount = '1' WHERE id = :b", b=h.theft)
    code, doc, _ = h.verify()
    assert code == 1 and doc["first_bad"]["field"] == "severity" and doc["difference_count"] == 1
    assert doc["differences"][0]["id"] == h.theft


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "key"])
def test_a_chain_recomputed_after_deleting_records_fails_with_a_key_and_against_an_earlier_head(
    cli: Any, devnet: Devnet, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    extra = ""
    if keyed:
        monkeypatch.setenv(KEY_ENV, KEY)
        extra = f'\n[audit]\nkey_env = "{KEY_ENV}"\n'
    h = build_history(cli, devnet, scenario, extra)
    code, before, _ = h.verify()
    assert code == 0 and before["hmac"] == ("verified" if keyed else "not configured")
    earlier = f"{before['head']['seq']}:{before['head']['hash']}"

    seq = forget_acknowledgement(h, h.mismatch)
    code, doc, _ = h.verify()
    assert code == 1 and doc["first_bad"]["field"] == "prev_hash", "a gap in the chain"
    rewrite_chain(h, seq)  # the SHA-256 chain recomputed
    code, doc, _ = h.verify()
    if keyed:
        assert code == 1 and doc["first_bad"]["field"] == "hmac" and doc["first_bad"]["seq"] == seq
        assert "without the key" in doc["problem"]
        rewrite_chain(h, seq, key="a guessed key")
        code, doc, _ = h.verify()
        assert code == 1 and doc["first_bad"]["field"] == "hmac" and "does not verify" in doc["problem"]
        # nor does removing every HMAC help: the newest record must carry one
        h.sql("UPDATE audit_log SET hmac = NULL")
        code, doc, _ = h.verify()
        assert code == 1 and "newest record" in doc["problem"]
    else:
        # Without a key nothing in the database can tell: documented, and why heads are kept outside.
        assert code == 0, doc["problem"]
    code, doc, _ = h.verify("--head", earlier)
    assert code == 1
    if not keyed:
        assert "truncated or rewritten" in doc["problem"], doc["problem"]


def test_deleting_the_newest_records_fails_against_an_earlier_head(
    cli: Any, devnet: Devnet, scenario: Scenario
) -> None:
    h = build_history(cli, devnet, scenario)
    assert cli("--config", str(h.config), "breaks", "ack", h.theft, "--note", "CFO informed").code == 0
    code, doc, _ = h.verify()
    assert code == 0
    head = doc["head"]
    # The newest record goes, with the event row it carries and the status it set: a consistent
    # story that nothing inside the database contradicts.
    assert forget_acknowledgement(h, h.theft) == head["seq"]
    assert h.verify()[0] == 0, "truncation is invisible from inside the database"
    code, doc, _ = h.verify("--head", f"{head['seq']}:{head['hash']}")
    assert code == 1 and f"truncated or rewritten after record {head['seq'] - 1}" in doc["problem"]
    human = h.verify_human("--head", f"{head['seq']}:{head['hash'].upper()}")
    assert human.code == 1 and "truncated or rewritten" in human.stderr
    # an earlier run's head (runs show) is still in the trail
    shown = json.loads(cli("--config", str(h.config), "runs", "show", h.runs[-1], "--json").stdout)
    assert h.verify("--head", f"{shown['audit_head']['seq']}:{shown['audit_head']['hash']}")[0] == 0

    for bad in ("12", "x:y", f"0:{head['hash']}", f"{head['seq']}:{head['hash'][:20]}"):
        refused = h.verify_human("--head", bad)
        assert refused.code == 2 and "SEQ:HASH" in refused.stderr, bad


def test_the_key_is_required_once_configured_and_init_seals_an_older_trail(
    cli: Any, devnet: Devnet, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = build_history(cli, devnet, scenario)
    scenario.extra = f'\n[audit]\nkey_env = "{KEY_ENV}"\n'
    scenario.write()
    monkeypatch.delenv(KEY_ENV, raising=False)
    for args in (("breaks", "verify-audit"), ("run",), ("breaks", "list"), ("init",)):
        refused = cli("--config", str(h.config), *args)
        assert refused.code == 2 and KEY_ENV in refused.stderr and "not set" in refused.stderr, args
    monkeypatch.setenv(KEY_ENV, "")
    assert cli("--config", str(h.config), "breaks", "verify-audit").code == 2
    monkeypatch.setenv(KEY_ENV, KEY)
    code, doc, _ = h.verify()
    assert code == 1 and "newest record" in doc["problem"] and KEY not in json.dumps(doc)
    sealed = cli("--config", str(h.config), "init")
    assert sealed.code == 0 and "written with [audit] key_env's key" in sealed.stderr
    code, doc, _ = h.verify()
    assert code == 0 and doc["hmac"] == "verified", doc
    [(mac,)] = h.sql("SELECT hmac FROM audit_log WHERE seq = :s", s=doc["head"]["seq"])
    assert mac is not None and KEY not in mac
    run_json(cli, h.config)
    assert h.verify()[0] == 0
    # a record after the first keyed one, without an HMAC: rewritten without the key
    h.sql("UPDATE audit_log SET hmac = NULL WHERE seq = :s", s=doc["head"]["seq"] + 1)
    code, doc, _ = h.verify()
    assert code == 1 and "carries no HMAC" in doc["problem"]
    # the wrong key fails every keyed record
    monkeypatch.setenv(KEY_ENV, "another key")
    code, doc, _ = h.verify()
    assert code == 1 and doc["first_bad"]["field"] == "hmac"


def test_the_run_finished_webhook_carries_the_head_to_every_webhook(
    cli: Any, devnet: Devnet, scenario: Scenario, receiver: Any  # noqa: F811 - the imported fixture
) -> None:
    make_custody(devnet, scenario, devnet.url)
    scenario.extra = f'\n[[alerts.webhooks]]\nurl = "{receiver.url("/critical-only")}"\nmin_severity = "critical"\n'
    config = scenario.write()
    load(cli, config)
    code, doc, _ = run_json(cli, config)
    assert code == 0 and doc["breaks"] == []
    sent = cli("--config", str(config), "alerts", "deliver", "--json")
    assert sent.code == 0, sent.stderr
    [request] = receiver.finished
    assert request.headers["X-Reconciler-Event"] == "run.finished"
    body = json.loads(request.body)
    shown = json.loads(cli("--config", str(config), "runs", "show", doc["run_id"], "--json").stdout)
    assert body == {
        "event": "run.finished",
        "run_id": doc["run_id"],
        "job": "run",
        "status": "complete",
        "exit_code": 0,
        "head": shown["audit_head"],
    }
    assert receiver.requests == [], "nothing else for a critical-only webhook"
    head = body["head"]
    verified = cli("--config", str(config), "breaks", "verify-audit", "--head", f"{head['seq']}:{head['hash']}")
    assert verified.code == 0, verified.stderr
