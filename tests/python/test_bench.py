"""The benchmarks run: bench/memory.py fully, bench/bridges_gpu.py as a dry run
on the CPU (tiny sizes; it only checks the script works)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_memory_bench_prints_the_table_and_the_band(tmp_path):
    out = run("bench/memory.py", "--seed", "0", "--trials", "20", "--json", str(tmp_path / "m.json"))
    assert "| median len | sigma | B=8 |" in out
    assert "configurations" in out and "save 70-85%" in out
    results = json.loads((tmp_path / "m.json").read_text())["results"]
    assert len(results) == 100
    assert all(0.0 < r["mean"] < 1.0 for r in results)


def test_bridges_gpu_bench_dry_run(tmp_path):
    out_json = tmp_path / "bridges.json"
    out = run("bench/bridges_gpu.py", "--dry-run", "--reps", "1", "--out", str(out_json))
    assert "scree to_hf_padded" in out
    data = json.loads(out_json.read_text())
    assert len(data["results"]) == 2
    assert out_json.with_suffix(".md").exists()
    assert not any("error" in r for res in data["results"] for r in res["rows"]
                   if r["method"].startswith("scree"))
