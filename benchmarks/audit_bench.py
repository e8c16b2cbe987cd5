"""`python -m benchmarks.audit_bench` (part of `make bench`): `breaks verify-audit` on a ledger of
N audit records, on SQLite and PostgreSQL, as a whole process: seconds, records per second and
peak RSS, at N and N/10 (verification must stay linear and streaming).

The ledger is written directly, in bulk, in the trail's own format (reconciler.ledger.trail's
state functions and hashing): per unit a run begun and finished, a break opened in it and then
acknowledged — 4 records, a run row, a break row and 2 event rows. The process verifies the
chain and replays it against the tables, as an examiner's command does. Prints a table, then one
JSON line of every figure. Not a test: nothing is asserted but that the trail verifies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert  # noqa: TID251 - bulk-writes the benchmark's ledger, as the ledger does

from benchmarks.bench import _pg_schema, _proc
from reconciler.ledger import audit, trail
from reconciler.ledger.daemon_models import AuditRow
from reconciler.ledger.models import BreakEvent, BreakRow, Run
from reconciler.ledger.store import Ledger

BATCH = 5_000


def _config(folder: Path, url: str) -> Path:
    path = folder / "reconciler.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n\n'
        '[chains.eth]\nkind = "evm"\nrpc_urls = ["http://127.0.0.1:9"]\nchain_id = 31337\n\n'
        '[assets.USDC]\nchain = "eth"\naddress = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"\ndecimals = 6\n'
        'kind = "stablecoin"\n\n'
        '[wallets.w1]\nchain = "eth"\naddress = "0x000000000000000000000000000000000000dEaD"\nclass = "futures"\n'
    )
    return path


def _columns(obj: Any, table: Any) -> dict[str, Any]:
    return {c.name: getattr(obj, c.name) for c in table.__table__.columns if c.name != "id" or obj.id is not None}


def build(url: str, records: int) -> None:
    """A ledger whose trail has ``records`` records (rounded down to whole units of 4)."""
    ledger = Ledger(url)
    ledger.init()
    units = records // 4
    start = datetime(2026, 11, 24, tzinfo=UTC)
    prev, seq = trail.GENESIS, 0
    runs: list[dict[str, Any]] = []
    breaks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []

    def record(kind: str, body: dict[str, Any], at: datetime) -> int:
        nonlocal prev, seq
        seq += 1
        text = trail.canonical({**body, "kind": kind, "seq": seq, "at": trail.instant(at), "v": trail.FORMAT})
        digest = trail.chain_hash(prev, text)
        audit.append({"seq": seq, "at": at, "kind": kind, "record": text, "prev_hash": prev, "hash": digest})
        prev = digest
        return seq

    def flush(s: Any) -> None:
        for table, rows in ((Run, runs), (BreakRow, breaks), (BreakEvent, events), (AuditRow, audit)):
            if rows:
                s.execute(insert(table), rows)
                rows.clear()

    with ledger._session() as s:
        for u in range(units):
            at = start + timedelta(seconds=u)
            run = Run(
                id=str(uuid.uuid4()), started_at=at, status="running", host="bench", pid=1, trigger="cli", job="run"
            )
            record("run.started", {"run": trail.run_state(run)}, at)
            brk = BreakRow(
                id=str(uuid.uuid4()),
                key=f"balance_mismatch|eth|w{u}|USDC|",
                kind="balance_mismatch",
                severity="error",
                status="open",
                chain="eth",
                wallet=f"w{u}",
                asset="USDC",
                amount=-(10**30) - u,
                detail="bench",
                block_number=u,
                block_hash="0x" + "ab" * 32,
                first_run_id=run.id,
                last_run_id=run.id,
                opened_at=at,
                last_seen_at=at,
                times_seen=1,
                decimals=6,
            )
            opened = BreakEvent(
                id=2 * u + 1,
                break_id=brk.id,
                run_id=run.id,
                event="opened",
                at=at,
                amount=brk.amount,
                block_number=u,
                block_hash=brk.block_hash,
                note="bench",
            )
            opened.audit_seq = record(
                "break.opened", {"break": trail.break_state(brk), "event": trail.event_state(opened)}, at
            )
            run.status, run.finished_at, run.exit_code = "complete", at, 1
            run.audit_seq = record("run.finished", {"run": trail.run_state(run)}, at)
            run.audit_hash = prev
            brk.status = "acknowledged"
            acked = BreakEvent(
                id=2 * u + 2,
                break_id=brk.id,
                run_id=None,
                event="acknowledged",
                at=at,
                amount=brk.amount,
                block_number=u,
                block_hash=brk.block_hash,
                note="ops",
            )
            acked.audit_seq = record(
                "break.acknowledged", {"break": trail.break_state(brk), "event": trail.event_state(acked)}, at
            )
            runs.append(_columns(run, Run))
            breaks.append(_columns(brk, BreakRow))
            events += [_columns(opened, BreakEvent), _columns(acked, BreakEvent)]
            if len(audit) >= BATCH:
                flush(s)
        flush(s)
    ledger.close()


def measure(url: str, records: int, folder: Path, log: Callable[[str], None]) -> dict[str, float]:
    t0 = time.perf_counter()
    build(url, records)
    built = time.perf_counter() - t0
    ledger = Ledger(url)
    try:
        t0 = time.perf_counter()
        with ledger._session() as s:
            inside = audit.verify(s)
        inside_s = time.perf_counter() - t0
    finally:
        ledger.close()
    config = _config(folder, url)
    out = folder / "verify.json"
    command = [sys.executable, "-m", "reconciler", "--config", str(config), "breaks", "verify-audit", "--json"]
    seconds, rss, code, tail = _proc(command, folder, out)
    doc = json.loads(out.read_text())
    if code != 0 or not doc["ok"] or not inside.ok:
        raise RuntimeError(f"verify-audit failed (exit {code}): {doc.get('problem')} {tail}")
    n = doc["records"]
    log(
        f"  {n:>9,} records: built in {built:6.1f} s; verified in {inside_s:6.2f} s ({n / inside_s:,.0f} records/s), "
        f"the whole command {seconds:6.2f} s, peak RSS {rss:,.0f} MB"
    )
    return {"records": n, "verify_s": inside_s, "records_per_s": n / inside_s, "command_s": seconds, "peak_rss_mb": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audit_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="audit records of the large ledger")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    figures: dict[str, Any] = {}
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
    for backend in backends:
        for n in (args.records // 10, args.records):
            with tempfile.TemporaryDirectory(prefix="reconciler-audit-bench-") as tmp:
                folder = Path(tmp)
                log(f"{backend}, {n:,} records:")
                if backend == "sqlite":
                    figures[f"{backend}_{n}"] = measure(f"sqlite:///{folder / 'ledger.db'}", n, folder, log)
                else:
                    url, drop = _pg_schema()
                    try:
                        figures[f"{backend}_{n}"] = measure(url, n, folder, log)
                    finally:
                        drop()
        small, large = figures[f"{backend}_{args.records // 10}"], figures[f"{backend}_{args.records}"]
        figures[f"{backend}_linear_ratio"] = large["verify_s"] / small["verify_s"]
        ratio = figures[f"{backend}_linear_ratio"]
        log(f"  {backend}: {args.records:,} vs {args.records // 10:,} records took {ratio:.1f}x as long")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
