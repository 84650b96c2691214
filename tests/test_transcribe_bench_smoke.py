"""Smoke run of the speech-to-text benchmark (benchmarks/transcribe_bench.py --quick), no timing
assertions: the engine child and the two-worker server run, one real-time stream gets its
finals back, and the report is well-formed JSON with a methodology block."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "transcribe_bench.py"

pytestmark = pytest.mark.timeout(120)


def test_quick_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "stt.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["kind"] == "transcribe"
    meth = report["methodology"]
    assert meth["method"]
    assert meth["audio"]["seconds"] == pytest.approx(5.0, abs=0.01)
    engine = report["engine"]
    for name in ("bare", "engine"):
        assert engine[name]["rtf"] > 0
        # The same audio through the same recipe: both loops hear the first sentence.
        assert engine[name]["words"] >= 5
    assert engine["realtime_final_latency_ms"]["p50"] is not None
    (level,) = report["levels"]
    assert level["streams"] == 1
    assert level["errors"] == []
    assert level["finals_per_stream"] == [1]
    assert level["final_latency_ms"]["count"] == 1
    assert level["server_rtf"] > 0
    # The overhead is against the engine passes run just before and after the level.
    assert level["overhead_vs_engine"] == pytest.approx(
        level["server_rtf"] / level["engine_rtf_adjacent"]["engine"] - 1
    )
    assert len(engine["engine"]["cpu_seconds"]) == 3  # 1 first, then 1 before + 1 after
    pressure = level["cpu_pressure_pct"]  # None where the kernel has no PSI
    assert pressure is None or 0 <= pressure <= 110
