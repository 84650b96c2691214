"""Timing, statistics, the methodology block and table printing, shared by every group.

Method (the same for every contestant of a case, ours included):

* Each contestant is a zero-argument callable doing ONE operation. Calibration picks a loop count
  so that one batch takes about ``batch_ms``; a warm-up batch runs first (untimed).
* Rounds are interleaved across a whole group: in round r every contestant of every case runs
  one batch, in an order rotated by r, so drift (frequency scaling, a neighbour's build on this
  shared machine) hits all alike and no case is timed only during a burst of load.
* The clock is ``time.perf_counter_ns``; the garbage collector is off inside a batch (as in
  ``timeit``) and collected between rounds.
* Reported: min (best of N rounds), median and quartiles of the per-operation time. The ratio
  of a case is ``best(peer) / best(ours)``: > 1 means ours is faster (the ratio of medians is
  in the JSON too). Best-of-N because neighbours on a shared machine only ever add time.
  Ratios, not absolute times, are what the baseline check compares, so it works on other
  machines.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OURS = "ours"


@dataclass(frozen=True)
class Config:
    quick: bool = False
    rounds: int = 25
    batch_ms: float = 10.0
    max_group_s: float = 40.0  # fewer rounds if a group's rounds would take longer
    sizes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, rounds=3, batch_ms=0.5, max_group_s=1.0)
        return cls()


def _batch(fn: Callable[[], object], loops: int) -> int:
    it = itertools.repeat(None, loops)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in it:
            fn()
        return time.perf_counter_ns() - t0
    finally:
        if gc_was:
            gc.enable()


def _calibrate(fn: Callable[[], object], target_ns: float) -> tuple[int, float]:
    """Loops per batch so a batch lasts about target_ns; also returns a per-op estimate (ns).

    Grows the loop count until a batch takes a quarter of the target, then times that count
    once more and keeps the faster: one disturbed measurement must not shrink the batch to a
    handful of cold-cache calls.
    """
    loops = 1
    while True:
        dt = _batch(fn, loops)
        if dt >= target_ns / 4 or loops >= 1 << 24:
            break
        loops *= 10 if dt < target_ns / 1000 else 2
    per_op = min(dt, _batch(fn, loops)) / loops
    return max(1, round(target_ns / max(per_op, 1.0))), per_op


def _quantiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _stats(xs: list[float], loops: int) -> dict[str, Any]:
    p25, p75 = _quantiles(xs)
    return {
        "median_ns": statistics.median(xs),
        "min_ns": min(xs),
        "p25_ns": p25,
        "p75_ns": p75,
        "rounds": len(xs),
        "loops": loops,
        "samples_ns": [round(x, 1) for x in xs],
    }


def run_cases(cases: list[dict[str, Any]], cfg: Config) -> list[dict[str, Any]]:
    """Time every contestant of every case of a group, interleaved across the whole group.

    Round r runs one batch of every contestant of every case (case order and contestant order
    rotated by r), so a burst of load from a neighbour spoils some rounds of every case rather
    than every round of one case; best-of-N then picks the quiet rounds. Fills ``results`` and
    ``ratios`` in place and drops the callables.
    """
    target = cfg.batch_ms * 1e6
    slots: list[tuple[dict[str, Any], str, Callable[[], object], int]] = []
    est_round = 0.0
    for c in cases:
        for name, fn in c.pop("_contestants").items():
            fn()  # warm-up: first-call costs (imports, caches) are not the steady state
            loops, per_op = _calibrate(fn, target)
            slots.append((c, name, fn, loops))
            est_round += loops * per_op
    rounds = cfg.rounds
    if est_round * rounds > cfg.max_group_s * 1e9:
        rounds = max(3, int(cfg.max_group_s * 1e9 // max(est_round, 1.0)))
    samples: list[list[float]] = [[] for _ in slots]
    by_case: dict[int, list[int]] = {}
    for i, (c, *_rest) in enumerate(slots):
        by_case.setdefault(id(c), []).append(i)
    groups = list(by_case.values())
    for r in range(rounds):
        k = r % len(groups) if groups else 0
        for idxs in groups[k:] + groups[:k]:
            j = r % len(idxs)
            for i in idxs[j:] + idxs[:j]:
                _, _, fn, loops = slots[i]
                samples[i].append(_batch(fn, loops) / loops)
        gc.collect()
    for (c, name, _, loops), xs in zip(slots, samples, strict=True):
        c.setdefault("results", {})[name] = _stats(xs, loops)
    for c in cases:
        c.setdefault("results", {})
        add_ratios(c)
    return cases


def add_ratios(case: dict[str, Any], ours: str = OURS) -> dict[str, Any]:
    """ratio[peer] = best(peer) / best(ours): how many times faster ours is (> 1: ours faster).

    Best-of-N is the primary estimate: on a shared machine, neighbours only ever add time, so
    the fastest of N interleaved rounds is the least disturbed (the ``timeit`` rule). The ratio
    of medians is kept too (``ratios_median``); when the two disagree a lot the run was noisy.
    """
    res = case["results"]
    case["ratios"], case["ratios_median"], case["ratios_paired"] = {}, {}, {}
    if ours in res:
        o = res[ours]
        for n, r in res.items():
            if n == ours or o["min_ns"] <= 0:
                continue
            case["ratios"][n] = r["min_ns"] / o["min_ns"]
            case["ratios_median"][n] = r["median_ns"] / o["median_ns"]
            pairs = [p / q for p, q in zip(r["samples_ns"], o["samples_ns"], strict=True) if q > 0]
            case["ratios_paired"][n] = statistics.median(pairs)
    return case


def case(
    case_id: str,
    title: str,
    contestants: Mapping[str, Callable[[], object]],
    *,
    work: str,
    check: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Declare a case: id (stable key for the baseline), title, what one op does, how outputs
    were checked equal, and the contestants (timed later, all together, by :func:`run_cases`)."""
    c: dict[str, Any] = {
        "id": case_id,
        "title": title,
        "op": work,
        "check": check,
        "_contestants": dict(contestants),
    }
    if extra:
        c.update(extra)
    return c


# ----------------------------------------------------------------------------- methodology


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def clock_info() -> dict[str, Any]:
    info = time.get_clock_info("perf_counter")
    deltas = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        t1 = time.perf_counter_ns()
        while t1 == t0:
            t1 = time.perf_counter_ns()
        deltas.append(t1 - t0)

    def noop() -> None:
        return None

    loops = 200_000
    overhead = min(_batch(noop, loops) for _ in range(5)) / loops
    return {
        "clock": "time.perf_counter_ns",
        "implementation": info.implementation,
        "declared_resolution_s": info.resolution,
        "measured_min_tick_ns": min(deltas),
        "measured_median_tick_ns": statistics.median(deltas),
        "python_call_overhead_ns": round(overhead, 1),
        "note": "every contestant pays the same per-call overhead; it is not subtracted",
    }


def our_build() -> dict[str, Any]:
    out: dict[str, Any] = {"version": None}
    try:
        from sagebidi_perf import _native

        out["version"] = _native.__version__
        so = Path(_native.__file__ or "")
        out["extension"] = str(so)
        out["extension_bytes"] = so.stat().st_size
        out["debug_info"] = _has_debug_info(so)
    except Exception as exc:  # report, don't die: the methodology block must always be written
        out["error"] = repr(exc)
    out["profile"] = "release (make dev: maturin develop --release; lto=fat, codegen-units=1)"
    out["git"] = _git_describe()
    return out


def _has_debug_info(so: Path) -> bool | None:
    try:
        r = subprocess.run(
            ["readelf", "-S", "-W", str(so)], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return ".debug_info" in r.stdout if r.returncode == 0 else None


def _git_describe() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20
        )
        return r.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def methodology(cfg: Config) -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 1
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "cpu_governor": gov.read_text().strip() if gov.exists() else None,
        "loadavg_start": os.getloadavg(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": {
            d: _dist_version(d) for d in ("numpy", "soxr", "scipy", "botocore", "sagebidi-perf")
        },
        "ours": our_build(),
        "timer": clock_info(),
        "rounds": cfg.rounds,
        "batch_ms": cfg.batch_ms,
        "max_group_s": cfg.max_group_s,
        "quick": cfg.quick,
        "concurrency": "single thread, one process per interpreter (3.12 side run separate)",
        "threads_env": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "method": (__doc__ or "").strip(),
    }


# ----------------------------------------------------------------------------- printing


def fmt_ns(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def print_group(name: str, group: dict[str, Any], out: Any = sys.stdout) -> None:
    cases = group.get("cases", [])
    print(f"\n== {name}  ({group.get('python', '')})", file=out)
    for note in group.get("notes", []):
        print(f"   note: {note}", file=out)
    if cases:
        cols: list[str] = []
        for c in cases:
            for n in c["results"]:
                if n not in cols:
                    cols.append(n)
        w0 = max(len(c["title"]) for c in cases) + 2
        header = "".join(f"{n:^20}" for n in cols)
        print(f"{'case':<{w0}}{header}", file=out)
        for c in cases:
            row = f"{c['title']:<{w0}}"
            for n in cols:
                r = c["results"].get(n)
                if r is None:
                    row += f"{'—':^20}"
                    continue
                ratio = c.get("ratios", {}).get(n)
                rtxt = f"{ratio:.1f}x" if ratio is not None else ""
                row += f"{fmt_ns(r['min_ns']):>11}{rtxt:>8} "
            print(row, file=out)
        print(
            "   (best of N rounds, per op; N.Nx = peer time / our time: > 1 means ours is faster;"
            " medians and quartiles in the JSON)",
            file=out,
        )
    for m in group.get("metrics", []):
        vals = "  ".join(f"{k}={_fmt_val(v)}" for k, v in m["values"].items())
        print(f"   {m['title']}: {vals}", file=out)


def _fmt_val(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def dump(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=_json_default, allow_nan=False)
    path.write_text(text + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
