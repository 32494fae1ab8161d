"""``benchmarks/bench_sense.py`` runs: a smoke run that measures both sides (figures not asserted)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_launch_benchmark_measures_ours_and_bare_kernels(tmp_path):
    out = tmp_path / "sense.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench_sense.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert len(data["summary"]["ours"]["times_s"]) == len(data["summary"]["bare"]["times_s"]) == 2
    assert data["ours_over_bare"] > 0
    assert "ours / bare" in result.stdout
