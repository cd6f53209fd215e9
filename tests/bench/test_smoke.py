"""``python -m bench --smoke``: the whole harness at tiny sizes, so it cannot rot.

Asserts that every part ran and that the worker's commands were exactly the generated
expected set; speed is not asserted here (see docs/benchmarks.md for the real run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(out),
         "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["errors"] == {}

    e2e = r["e2e"]["sqlite"]
    thr = e2e["throughput"]
    assert thr["expected_commands"] > 0
    assert (thr["missing"], thr["extra"], thr["duplicate_commands"]) == (0, 0, 0)
    assert thr["commands"] == thr["expected_commands"]
    assert thr["dlq_records"] == thr["malformed"] > 0
    assert thr["records_per_s"] > 0
    lat = e2e["latency"]
    assert lat["exact"] and lat["commands_measured"] == lat["expected_commands"] > 0
    assert 0 < lat["p50_ms"] <= lat["p99_ms"]

    pipe = r["pipe"]  # the latency floor: every record copied, timed like the worker's
    assert pipe["complete"] and pipe["copied"] == pipe["records"] > 0, pipe
    assert 0 < pipe["p50_ms"] <= pipe["p99_ms"]
    assert "| pass-through pipe (broker floor) |" in proc.stdout

    for name in ("raw", "faust"):
        assert r["baselines"][name]["complete"], r["baselines"][name]
    assert [m["triggers"] for m in r["matcher_scale"]] == [100, 1000]
    assert all(m["us_per_signal"] > 0 for m in r["matcher_scale"])
    fp = r["footprint"][0]
    assert fp["triggers"] == 300
    assert fp["restart"]["ready_s"] > 0 and fp["restart"]["rss_assigned_mib"] > 0
    assert "| end to end | sqlite |" in proc.stdout
    assert r["meta"]["machine"]["python_loop_ms"] > 0
    assert "plain Python loop" in proc.stdout
