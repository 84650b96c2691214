"""Load-generator benchmark: how many real-time echo sessions one Locust worker core keeps on
time, ours (``loadtest/echo.py``: our sans-IO client) vs the same user on websocket-client
(``benchmarks/loadtest_baseline.py``), side by side in one run.

    .venv/bin/python benchmarks/loadtest_bench.py                 # make bench-loadtest (~4 min)
    .venv/bin/python benchmarks/loadtest_bench.py --quick         # seconds (smoke test)
    .venv/bin/python benchmarks/loadtest_bench.py --steps 200,1000 --seconds 8

Each session sends 3.2 KB every 100 ms (real time, 10 frames/s) to the echo container and
checks every echo. For each N in ``--steps`` and each client (alternating which goes first),
one headless Locust process (one worker core: pinned to the first usable core, nice -10 if
allowed) runs N users: ramp-up at N/3 per second, ``--warmup-seconds`` discarded, then
``--seconds`` measured. The container (``sagebidi serve --model echo``) runs pinned to the
other core. A step passes when the send jitter p99 (how late the pacer sent each frame against
its schedule) is <= 2 ms, >= 99 % of the scheduled frames went out, every session connected and
nothing failed. A client's capacity is the largest passing N; the result is the ratio of the two
capacities, plus per step the ratio of jitter p99 and of load-generator CPU per session-second
(process CPU time / (N x measured seconds): robust to other load on the machine; 1 / that
value is the sessions one fully busy core would carry). Each step also runs the floor: N bare
gevent pacers with no I/O in one process on the same core, the jitter the machine itself adds
(a shared VM preempts; when the floor's p99 is high, so is everyone's).

Results: a table on stdout and benchmarks/results/loadtest-<UTC timestamp>.json (methodology
block from benchmarks/harness.py). Absolute numbers move with the machine's other load; the
ratios, measured in the same run, move much less.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import harness

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
CLIENTS = {
    "ours": (str(ROOT / "loadtest" / "echo.py"), "EchoSessions"),
    "websocket-client": (str(HERE / "loadtest_baseline.py"), "WebsocketClientEcho"),
}
STEPS = (200, 500, 1000, 1500)
FRAME_BYTES = 3200
FRAME_RATE = 10.0
JITTER_P99_LIMIT_MS = 2.0
DELIVERED_MIN = 0.99
NICE = -10


def _cores() -> tuple[int | None, int | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


def _preexec(core: int | None) -> Any:
    def setup() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, NICE)

    return setup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_container(core: int | None) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "sagebidi"),
            "serve",
            "--model",
            "echo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            "--queue-size",
            "1024",
        ],
        preexec_fn=_preexec(core),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the echo container did not start")


def run_step(
    client: str, n: int, port: int, core: int | None, seconds: float, warmup: float
) -> dict[str, Any]:
    locustfile, user = CLIENTS[client]
    rate = max(n / 3.0, 1.0)
    ramp = n / rate
    run_time = round(ramp + warmup + seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [
            str(BIN / "locust"),
            "-f",
            locustfile,
            "--headless",
            "--only-summary",
            "--host",
            f"ws://127.0.0.1:{port}",
            "-u",
            str(n),
            "-r",
            f"{rate:g}",
            "-t",
            f"{run_time}s",
            "--stop-timeout",
            "0",
            "--session-seconds",
            "3600",
            "--frame-bytes",
            str(FRAME_BYTES),
            "--frame-rate",
            f"{FRAME_RATE:g}",
            "--warmup-seconds",
            f"{warmup:g}",
            "--connect-timeout",
            "30",
            "--receive-timeout",
            "30",
            "--report-json",
            str(out),
            "--report-html",
            "",
            user,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        try:
            proc = subprocess.run(
                cmd,
                preexec_fn=_preexec(core),
                capture_output=True,
                timeout=run_time + 120,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"client": client, "sessions": n, "error": "locust did not exit in time"}
        if not out.exists():
            return {"client": client, "sessions": n, "error": proc.stderr.decode()[-2000:]}
        report = json.loads(out.read_text())
    meta = report["meta"]
    measured = max(meta["stopped_at"] - meta["measured_from"], 1e-9)
    lat = report["latency_ms"]
    jitter = lat.get("jitter", {})
    rtt = lat.get("round_trip", {})
    sent = report["throughput"]["frames_sent"]
    scheduled = n * FRAME_RATE * measured
    delivered = sent / scheduled if scheduled else 0.0
    # Sessions connected by the end (the timeline's running count of started - ended).
    errors = report["errors"]
    cpu = meta.get("process_cpu_s") or 0.0
    row = {
        "client": client,
        "sessions": n,
        "measured_s": round(measured, 2),
        "jitter_p50_ms": jitter.get("p50_ms"),
        "jitter_p99_ms": jitter.get("p99_ms"),
        "jitter_p99_9_ms": jitter.get("p99.9_ms"),
        "round_trip_p50_ms": rtt.get("p50_ms"),
        "round_trip_p99_ms": rtt.get("p99_ms"),
        "frames_sent": sent,
        "frames_per_s": round(sent / measured, 1),
        "delivered": round(delivered, 4),
        "errors": errors,
        "cpu_s": cpu,
        "cpu_ms_per_session_s": round(1000 * cpu / (n * measured), 4) if cpu else None,
        "exit_code": proc.returncode,
    }
    row["passed"] = bool(
        row["jitter_p99_ms"] is not None
        and row["jitter_p99_ms"] <= JITTER_P99_LIMIT_MS
        and delivered >= DELIVERED_MIN
        and not errors
    )
    return row


_FLOOR = """
import gevent, sys, time
n, seconds = int(sys.argv[1]), float(sys.argv[2])
late = []
def run(i):
    start = time.perf_counter() + 0.1 * i / n
    for k in range(int(seconds * 10)):
        due = start + k * 0.1
        while due - time.perf_counter() > 0.0002:
            gevent.sleep(due - time.perf_counter())
        late.append(time.perf_counter() - due)
gevent.joinall([gevent.spawn(run, i) for i in range(n)])
late.sort()
pick = lambda p: 1000 * late[min(int(p / 100 * len(late)), len(late) - 1)]
print(pick(50), pick(99), time.process_time())
"""


def run_floor(n: int, core: int | None, seconds: float) -> dict[str, Any]:
    """The floor under the same conditions: N bare gevent pacers (no sockets, no client), each
    waking every 100 ms, in one process on the client core: the jitter the machine itself adds."""
    proc = subprocess.run(
        [sys.executable, "-c", _FLOOR, str(n), f"{seconds:g}"],
        preexec_fn=_preexec(core),
        capture_output=True,
        timeout=seconds + 60,
        check=False,
    )
    try:
        p50, p99, cpu = (float(x) for x in proc.stdout.split())
    except ValueError:
        return {"client": "floor", "sessions": n, "error": proc.stderr.decode()[-500:]}
    return {
        "client": "floor (bare gevent pacer)",
        "sessions": n,
        "jitter_p50_ms": round(p50, 3),
        "jitter_p99_ms": round(p99, 3),
        "cpu_ms_per_session_s": round(1000 * cpu / (n * seconds), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default=",".join(map(str, STEPS)))
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after the ramp-up")
    ap.add_argument("--quick", action="store_true", help="tiny steps (smoke test)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    if args.quick:
        steps, args.seconds, args.warmup = [20], 2.0, 1.0
    client_core, server_core = _cores()
    container, port = start_container(server_core)
    rows: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    try:
        for i, n in enumerate(steps):
            order = list(CLIENTS) if i % 2 == 0 else list(reversed(CLIENTS))
            for client in order:
                row = run_step(client, n, port, client_core, args.seconds, args.warmup)
                rows.append(row)
                _print_row(row)
            floor = run_floor(n, client_core, args.seconds)
            floors.append(floor)
            print(
                f"{'floor':>17} N={n:>5}: bare gevent pacer jitter p50 "
                f"{floor.get('jitter_p50_ms')} p99 {floor.get('jitter_p99_ms')} ms",
                flush=True,
            )
    finally:
        container.terminate()
        try:
            container.wait(timeout=30)
        except subprocess.TimeoutExpired:
            container.kill()
    summary = _summary(rows, steps)
    print()
    for line in summary["lines"]:
        print(line)
    report = {
        "benchmark": "loadtest",
        "methodology": {
            **harness.methodology(harness.Config.make(args.quick)),
            "client_core": client_core,
            "server_core": server_core,
            "session": f"{FRAME_BYTES} B every {1000 / FRAME_RATE:g} ms, echo checked",
            "pass": f"jitter p99 <= {JITTER_P99_LIMIT_MS} ms, >= {DELIVERED_MIN:.0%} of frames "
            "sent on schedule, no errors",
            "measured_seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "method": (__doc__ or "").strip(),
        },
        "steps": rows,
        "floor": floors,
        "summary": {k: v for k, v in summary.items() if k != "lines"},
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out or HERE / "results" / f"loadtest-{stamp}.json"
    harness.dump(path, report)
    print(f"\nwritten {path}")
    return 0


def _print_row(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"{row['client']:>17} N={row['sessions']:>5}: run failed: {row['error'][-300:]}")
        return
    print(
        f"{row['client']:>17} N={row['sessions']:>5}: jitter p50 {row['jitter_p50_ms']} "
        f"p99 {row['jitter_p99_ms']} ms, rtt p99 {row['round_trip_p99_ms']} ms, "
        f"{row['frames_per_s']} frames/s sent ({100 * row['delivered']:.1f}% of schedule), "
        f"CPU {row['cpu_ms_per_session_s']} ms per session-second, "
        f"errors {row['errors'] or 0} -> {'PASS' if row['passed'] else 'fail'}",
        flush=True,
    )


def _summary(rows: list[dict[str, Any]], steps: list[int]) -> dict[str, Any]:
    capacity: dict[str, int] = {}
    for client in CLIENTS:
        passed = [r["sessions"] for r in rows if r["client"] == client and r.get("passed")]
        capacity[client] = max(passed, default=0)
    ours, base = capacity["ours"], capacity["websocket-client"]
    per_step = []
    for n in steps:
        a = next((r for r in rows if r["client"] == "ours" and r["sessions"] == n), None)
        b = next(
            (r for r in rows if r["client"] == "websocket-client" and r["sessions"] == n), None
        )
        if not a or not b or "error" in a or "error" in b:
            continue
        entry: dict[str, Any] = {"sessions": n}
        if a["jitter_p99_ms"] and b["jitter_p99_ms"]:
            entry["jitter_p99_ratio"] = round(b["jitter_p99_ms"] / a["jitter_p99_ms"], 2)
        if a["cpu_ms_per_session_s"] and b["cpu_ms_per_session_s"]:
            entry["cpu_ratio"] = round(b["cpu_ms_per_session_s"] / a["cpu_ms_per_session_s"], 2)
            entry["ours_sessions_per_core"] = round(1000 / a["cpu_ms_per_session_s"])
            entry["baseline_sessions_per_core"] = round(1000 / b["cpu_ms_per_session_s"])
        per_step.append(entry)
    lines = [
        f"capacity (largest N with jitter p99 <= {JITTER_P99_LIMIT_MS} ms, "
        f">= {DELIVERED_MIN:.0%} delivered, no errors): ours {ours}, websocket-client {base}"
        + (f" -> ratio {ours / base:.2f}" if base else " (baseline passed no step)")
    ]
    for e in per_step:
        lines.append(
            f"N={e['sessions']}: websocket-client/ours jitter p99 x{e.get('jitter_p99_ratio')}, "
            f"CPU per session x{e.get('cpu_ratio')} (one busy core: ours "
            f"~{e.get('ours_sessions_per_core')} sessions, websocket-client "
            f"~{e.get('baseline_sessions_per_core')})"
        )
    return {
        "capacity": capacity,
        "capacity_ratio": round(ours / base, 2) if base else None,
        "per_step": per_step,
        "lines": lines,
    }


if __name__ == "__main__":
    sys.exit(main())
