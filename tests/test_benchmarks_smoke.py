"""Smoke run of the benchmark harness (benchmarks/run.py) with tiny sizes, so it cannot rot.

Checks that it runs, checks outputs equal before timing, and writes well-formed JSON with a
methodology block and ratios. No timing assertions: machines are noisy, numbers belong in
benchmarks/results/, not in tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
GROUPS = ("codec", "signing", "resample", "chunker")


def _run(tmp_path: Path, *args: str, name: str = "report.json") -> tuple[Any, dict[str, Any]]:
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert out.exists(), proc.stderr
    return proc, json.loads(out.read_text(), parse_constant=_not_json)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    return _run(tmp_path_factory.mktemp("bench"), "--py312", "off")


def test_quick_run_succeeds_and_prints_a_table_per_group(quick: tuple[Any, dict[str, Any]]) -> None:
    proc, report = quick
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for g in GROUPS:
        assert f"== {g}" in proc.stdout
        assert "error" not in report["groups"][g], report["groups"][g].get("traceback")


def test_methodology_block(quick: tuple[Any, dict[str, Any]]) -> None:
    m = quick[1]["methodology"]
    for key in (
        "cpu",
        "logical_cores",
        "python",
        "versions",
        "ours",
        "timer",
        "rounds",
        "duration_s",
        "loadavg_start",
        "loadavg_end",
    ):
        assert key in m, key
    assert m["quick"] is True
    assert m["timer"]["declared_resolution_s"] > 0
    assert m["timer"]["measured_min_tick_ns"] > 0
    assert {"numpy", "soxr", "scipy", "botocore"} <= set(m["versions"])
    assert m["ours"]["version"], m["ours"]


def _stats_ok(s: dict[str, Any]) -> bool:
    return bool(
        0 < s["min_ns"] <= s["p25_ns"] <= s["median_ns"] <= s["p75_ns"]
        and s["rounds"] >= 3
        and s["loops"] >= 1
        and len(s["samples_ns"]) == s["rounds"]
    )


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_cases_with_ours_and_ratios(
    quick: tuple[Any, dict[str, Any]], group: str
) -> None:
    g = quick[1]["groups"][group]
    assert g["cases"], g.get("notes")
    seen_ids = set()
    for case in g["cases"]:
        assert case["id"].startswith(f"{group}/")
        assert case["id"] not in seen_ids
        seen_ids.add(case["id"])
        assert case["check"], "every case states how outputs were checked equal"
        assert "ours" in case["results"], g.get("notes")
        assert all(_stats_ok(s) for s in case["results"].values()), case
        peers = set(case["results"]) - {"ours"}
        assert peers
        assert set(case["ratios"]) == peers
        assert all(math.isfinite(r) and r > 0 for r in case["ratios"].values())


def test_resample_quality_metrics_are_reported(quick: tuple[Any, dict[str, Any]]) -> None:
    g = quick[1]["groups"]["resample"]
    names = {m["title"] for m in g["metrics"]}
    assert any("ours" in n for n in names)
    assert any("soxr" in n for n in names)
    for m in g["metrics"]:
        assert {
            "alias_rej_10k_dB",
            "alias_rej_worst_dB",
            "stopband_100dB_from_Hz",
            "gain_1k_dB",
            "xRT_whole",
        } <= set(m["values"])
        if "soxr" in m["title"] or "ours" in m["title"]:
            assert {"delay_mean_ms", "delay_max_ms"} <= set(m["values"])


def test_baseline_comparison_flags_a_regression(tmp_path: Path) -> None:
    """A baseline whose ratios are 10x better than now must make --check-baseline fail (exit
    2); the same report as its own baseline must pass."""
    proc, report = _run(tmp_path, "--only", "chunker", "--py312", "off", name="now.json")
    assert proc.returncode == 0, proc.stderr
    same = tmp_path / "same.json"
    same.write_text(json.dumps(report))
    better = json.loads(json.dumps(report))
    for case in better["groups"]["chunker"]["cases"]:
        case["ratios"] = {k: v * 10 for k, v in case["ratios"].items()}
    inflated = tmp_path / "better.json"
    inflated.write_text(json.dumps(better))

    bad, rep = _run(
        tmp_path,
        "--only",
        "chunker",
        "--py312",
        "off",
        "--check-baseline",
        "--baseline",
        str(inflated),
        name="bad.json",
    )
    assert bad.returncode == 2, bad.stdout
    assert rep["baseline"]["regressions"]
    assert all(r["rerun"] is not None for r in rep["baseline"]["regressions"]), "confirmed"
    assert "REGRESSION" in bad.stdout

    # Self-comparison cannot regress by 10x; only noise separates the two runs.
    ok, rep = _run(
        tmp_path, "--only", "chunker", "--py312", "off", "--baseline", str(same), name="ok.json"
    )
    assert ok.returncode == 0, ok.stdout
    assert rep["baseline"]["found"]
    assert rep["baseline"]["compared"] > 0


def test_side_interpreter_run_is_merged(tmp_path: Path) -> None:
    """The smithy side run (a subprocess under another interpreter) merges as codec@py3.12.
    Run here with this interpreter, where smithy may be missing: the merge path is what counts.
    """
    proc, report = _run(tmp_path, "--only", "codec", "--py312", sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    side = report["groups"]["codec@py3.12"]
    assert "error" not in side, side
    assert side["side_methodology"]["interpreter"] == sys.executable
    assert {c["id"] for c in side["cases"]} == {c["id"] for c in report["groups"]["codec"]["cases"]}


def test_baseline_flags_a_resampler_quality_regression(tmp_path: Path) -> None:
    """Quality metrics of ours are compared too: a baseline whose streaming delay was 10 ms
    shorter than now must fail --check-baseline."""
    proc, report = _run(tmp_path, "--only", "resample", "--py312", "off", name="now.json")
    assert proc.returncode == 0, proc.stderr
    base = json.loads(json.dumps(report))
    touched = 0
    for m in base["groups"]["resample"]["metrics"]:
        if m["id"].endswith("/ours"):
            m["values"]["delay_max_ms"] -= 10.0
            touched += 1
    assert touched
    path = tmp_path / "base.json"
    path.write_text(json.dumps(base))
    bad, rep = _run(
        tmp_path,
        "--only",
        "resample",
        "--py312",
        "off",
        "--check-baseline",
        "--baseline",
        str(path),
        name="bad.json",
    )
    assert bad.returncode == 2, bad.stdout
    keys = [r["key"] for r in rep["baseline"]["regressions"]]
    assert any(k.endswith(":delay_max_ms") for k in keys), keys
