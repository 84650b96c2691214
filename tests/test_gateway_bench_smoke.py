"""Smoke run of the relay benchmark (benchmarks/gateway_bench.py), tiny sizes, no timing
assertions: the container and gateway processes start, both paths echo, and the report is
well-formed JSON with a methodology block, both paths per size and the real-time step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "gateway_bench.py"


def test_quick_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "gw.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "3200", "--json", str(out)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["kind"] == "gateway"
    meth = report["methodology"]
    assert meth["pinning"]
    assert meth["method"]
    assert "python" in meth
    (rt,) = report["roundtrip"]
    assert rt["size"] == 3200
    assert rt["round_trips_per_path"] > 0
    for path in ("direct", "gateway"):
        assert 0 < rt[path]["p50_us"] <= rt[path]["p99_us"]
    assert rt["added_p50_us"] == rt["gateway"]["p50_us"] - rt["direct"]["p50_us"]
    assert rt["gateway_cpu_per_frame_us"] is not None
    assert rt["gateway_cpu_per_frame_us"] >= 0
    (step,) = report["realtime"]
    assert step["n"] == 3
    for path in ("direct", "gateway"):
        res = step[path]
        assert "error" not in res, res
        assert res["error_count"] == 0, res["errors"]
        assert res["delivered"] > 0
    assert isinstance(step["pass"], bool)
    assert report["max_realtime_sessions"] in (0, 3)
