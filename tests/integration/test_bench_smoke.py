"""The benchmark (benchmarks/bench.py, `make bench`) runs end to end at tiny N and reports every
figure: a smoke test, not a timed one — the targets live in the benchmark."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Figures the issue names, plus the per-backend ones the ratios are built from.
REQUIRED = (
    "floor_batch_s", "floor_multicall_s", "floor_s", "naive_s_extrapolated", "reads_batch_s", "reads_multicall_s",
    "reads_s", "run_s_sqlite", "run_unchanged_s_sqlite", "run_s_postgres", "run_unchanged_s_postgres",
    "books_import_s_sqlite", "books_import_s_postgres", "scan_events_per_s", "scan_blocks_per_s", "peak_rss_mb",
    "reads_vs_floor", "naive_vs_reads", "run_vs_floor", "run_unchanged_vs_floor", "books_import_big_rss_mb",
)


@pytest.mark.postgres
def test_bench_reports_every_figure_at_tiny_n() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--n", "20", "--sample", "20", "--reps", "1",
         "--sparse-blocks", "500", "--books-rows", "2000", "--executions", "3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    doc = json.loads(last)  # the last line is the one JSON document
    assert set(doc) == {"by_n", "executions", "startup", "children_peak_rss_mb", "targets"}
    executions = doc["executions"]
    assert executions["exec_n"] == 3 and executions["exec_sparse_blocks_per_s"] > 0
    assert 0 < executions["presign_in_process_s"] <= executions["presign_online_s"]
    figures = doc["by_n"]["20"]
    missing = [k for k in REQUIRED if k not in figures]
    assert not missing, missing
    # counts of rows may be zero; every other figure is a positive measurement
    bad = {k: v for k, v in figures.items()
           if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or k.startswith("ledger_rows_")))}
    assert not bad, bad
    started = doc["startup"]
    for key in ("python_pass_s", "version_s", "complete_s", "help_s", "version_vs_pass", "complete_vs_pass"):
        assert isinstance(started[key], float) and started[key] > 0, (key, started)
    # an unchanged run adds the run and its pins, never a row per position (80 at N=20)
    assert figures["ledger_rows_per_unchanged_run"] < 20, figures


@pytest.mark.postgres
def test_audit_bench_verifies_a_bulk_written_trail_on_both_engines() -> None:
    """The audit benchmark's ledger (written in bulk in the trail's format) verifies as a whole
    `breaks verify-audit` process, on SQLite and PostgreSQL."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.audit_bench", "--records", "2000"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for backend in ("sqlite", "postgres"):
        assert figures[f"{backend}_2000"]["records"] == 2000
        assert figures[f"{backend}_2000"]["records_per_s"] > 0


def test_bench_huge_reports_the_fleet_figures_at_tiny_sizes() -> None:
    """`--huge` at two tiny sizes: every size measured, the issue-23 figures computed, each
    target printed (the real sizes take ~25 minutes: make bench BENCH_ARGS=--huge). About 20 s:
    a dozen whole CLI processes per size (init, three imports, loads, two runs) is the point."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--huge", "--huge-n", "40", "--huge-n", "200", "--reps", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(doc) == {"huge", "summary", "targets"}
    for n in ("40", "200"):
        fig = doc["huge"][n]
        assert "failed" not in fig, proc.stderr[-3000:]
        assert fig["positions"] == 4 * int(n)
        for key in ("floor_multicall_s", "wallets_import_s", "books_import_s", "run_s", "run_unchanged_s",
                    "run_rss_mb", "run_unchanged_rss_mb"):  # fmt: skip
            assert math.isfinite(fig[key]) and fig[key] > 0, (key, fig)
    summary = doc["summary"]
    for key in ("marginal_vs_floor", "run_rss_mb_200", "run_unchanged_vs_floor_200", "wallets_import_s_200"):
        assert math.isfinite(summary[key]), (key, summary)
    assert "marginal_vs_floor (target 2.0)" in proc.stderr
