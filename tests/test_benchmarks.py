"""The benchmark scripts run: a short smoke run of each, checking they measure and compare.

Figures are never asserted (the machines are shared and noisy); the full runs are documented in
``benchmarks/README.md``.
"""

import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def run_bench(script, *args, timeout=240):
    result = subprocess.run(
        [sys.executable, os.path.join(BENCH, script), "--quick", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_server_benchmark_compares_with_bare_tornado(tmp_path):
    out = tmp_path / "server.json"
    text = run_bench("bench_server.py", "--json", str(out))
    data = json.loads(out.read_text())
    kinds = {(row["kind"], row["connections"]) for row in data["summary"]}
    assert {("http", 16), ("ws", 1)} <= kinds, text
    for row in data["summary"]:
        assert row["ours"]["rps"] > 0 and row["baseline"]["rps"] > 0 and row["ratio_rps"] > 0
    assert all(run["errors"] == 0 for run in data["runs"]), text


def test_dataframe_benchmark_encodes_and_compares(tmp_path):
    pytest.importorskip("pandas")
    out = tmp_path / "df.json"
    text = run_bench("bench_dataframe.py", "--json", str(out))
    assert "orjson" in text and "to_json" in text
    assert json.loads(out.read_text())


def test_kernel_benchmark_serves_from_a_busy_kernel(tmp_path):
    out = tmp_path / "kernel.json"
    text = run_bench("bench_kernel.py", "--json", str(out), timeout=300)
    data = json.loads(out.read_text())
    busy = [row for row in data["rows"] if row.get("kernel") == "busy"]
    assert busy and all(row["errors"] == 0 and row["rps"] > 0 for row in busy), text


def test_sessions_benchmark_measures_warm_cold_and_bare_starts(tmp_path):
    out = tmp_path / "sessions.json"
    text = run_bench("bench_sessions.py", "--json", str(out))
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"baseline", "warm", "cold"}, text
    assert all(summary[kind]["first_call"]["p50"] > 0 for kind in summary)


def test_burst_benchmark_makes_every_session_usable_and_leaves_no_worker(tmp_path):
    out = tmp_path / "burst.json"
    text = run_bench("bench_burst.py", "--json", str(out))
    data = json.loads(out.read_text())
    assert [row["usable"] for row in data["rounds"]] == [data["n"]], text
    assert data["leftover_workers"] == 0, text


def test_reliability_script_runs_its_quick_sizes(tmp_path):
    text = run_bench("reliability.py", timeout=300)
    assert "PASS" in text or "pass" in text, text
