"""`make bench` (sharded firings): one scheduled firing of `run` with `[schedule] shards`, done by
one daemon and by two daemons sharing it, on PostgreSQL and one local Anvil (benchmarks.bench's
setup: N wallets x 3 tokens + ETH, books that match).

For each daemon count: a fresh ledger, the daemons started together (their catch-up firing of
an hourly schedule is the one measured), the firing's wall time (its run's start to its end, as
the ledger recorded them) and each unit's own time and daemon. Printed as a table, then one
JSON line. Not a test: nothing is asserted beyond the run being complete.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench import Chain, _cli, _pg_schema, _proc, _table

RECONCILER = str(Path(sys.executable).parent / "reconciler")


def _rows(db_url: str, sql: str) -> list[dict[str, Any]]:
    import sqlalchemy  # noqa: TID251 - reads the benchmark's own throw-away ledger

    engine = sqlalchemy.create_engine(db_url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sqlalchemy.text(sql)).mappings()]
    engine.dispose()
    return rows


def firing(chain: Chain, work: Path, daemons: int, shards: int, log: Callable[[str], None]) -> dict[str, float]:
    db_url, drop = _pg_schema()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        folder = work / f"daemons{daemons}"
        config = chain.write_inputs(db_url, folder)
        with config.open("a") as fh:
            fh.write(f'\n[schedule]\ntimezone = "UTC"\nrun = "1h"\nshards = {shards}\n')
        for args in (("init",), ("accounts", "import", str(folder / "accounts.csv")),
                     ("books", "import", str(folder / "books.csv"))):
            _, _, code, err = _proc(_cli(config, *args), folder)
            if code:
                raise RuntimeError(f"{' '.join(args)} failed: {err}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        env["RECONCILER_CONFIG"] = str(config)
        for i in range(daemons):
            log_path = folder / f"daemon{i}.log"
            procs.append(subprocess.Popen([RECONCILER, "daemon"], env=env, cwd=folder, stdout=subprocess.DEVNULL,
                                          stderr=log_path.open("wb")))
        deadline = time.monotonic() + 1800
        while True:
            runs = _rows(db_url, "SELECT id, status, reason, started_at, finished_at FROM run "
                                 "WHERE trigger = 'schedule' AND status <> 'running'")
            if runs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the firing did not finish in 30 minutes")
            time.sleep(0.2)
        [run] = runs
        if run["status"] != "complete":
            raise RuntimeError(f"the firing's run is {run['status']}: {run['reason']}")
        units = _rows(db_url, f"SELECT shard, wallets, pid, elapsed_ms FROM run_unit WHERE run_id = '{run['id']}' "
                              "ORDER BY shard")
        wall = (run["finished_at"] - run["started_at"]).total_seconds()
        fig: dict[str, float] = {"wall_s": wall, "units": len(units)}
        fig["daemons_that_did_units"] = len({u["pid"] for u in units})
        for u in units:
            fig[f"unit{u['shard']}_s"] = u["elapsed_ms"] / 1000.0
        log(f"  {daemons} daemon(s), {shards} shards: firing {wall:.2f} s; units "
            + ", ".join(f"{u['shard']}: {u['elapsed_ms'] / 1000:.2f} s (pid {u['pid']})" for u in units))
        return fig
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        drop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shards_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="wallets (default 10,000)")
    parser.add_argument("--shards", type=int, default=4, help="[schedule] shards (default 4)")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="reconciler-shards-bench-"))
    chain = Chain(args.n, work, log)
    results: dict[int, dict[str, float]] = {}
    try:
        chain.build(random.Random(args.n), sparse_blocks=10)
        log(f"sharded firing: N={args.n} ({4 * args.n} positions), {args.shards} shards, PostgreSQL")
        for daemons in (1, 2):
            results[daemons] = firing(chain, work, daemons, args.shards, log)
    finally:
        chain.close()
        shutil.rmtree(work, ignore_errors=True)
    results[2]["speedup_vs_1_daemon"] = results[1]["wall_s"] / results[2]["wall_s"]
    _table(dict(results), {}, f"sharded firing, N={args.n:,}: columns are daemons")
    print(json.dumps({"n": args.n, "shards": args.shards, "by_daemons": {str(d): f for d, f in results.items()}}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
