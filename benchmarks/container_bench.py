"""End-to-end container benchmark: our echo server beside its peers, in one run.

    .venv/bin/python benchmarks/container_bench.py           # everything (make bench-container)
    .venv/bin/python benchmarks/container_bench.py --quick   # tiny sizes, seconds (smoke test)
    .venv/bin/python benchmarks/container_bench.py --only throughput --servers ours,picows
    .venv/bin/python benchmarks/container_bench.py --profile benchmarks/results/profiles

Servers (each its own process, pinned to one core; the load client on the other core):
ours (``python -m sagebidi_perf.container serve --model echo``), plain trio-websocket,
websockets (asyncio API), aiohttp and picows echo servers (benchmarks/container/peer_servers.py).

Throughput: 640 B, 3.2 KB, 64 KB and 512 KB binary messages over 1 and 100 connections, a fixed
window of messages in flight per connection; msgs/s and the server's CPU per message
(utime+stime from /proc/<pid>/stat over the measured window). Rounds are interleaved across
servers; best of the rounds is reported (medians in the JSON). Ratio = peer / ours for CPU per
message, ours / peer for msgs/s: > 1 means ours is better.

Real time: N connections each sending 3.2 KB every 100 ms (100 ms of 16 kHz int16 audio) at a
random phase; round-trip p50/p99 and server CPU; the capacity is the largest N with p99 <= 10 ms
and the server within one core.

Results: a table on stdout and benchmarks/results/container-<UTC timestamp>.json (methodology
block as in benchmarks/harness.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import harness
from container.client import BenchError, raise_nofile_limit, run_pipelined, run_realtime
from container.servers import (
    NICE,
    OPTIONAL,
    OURS,
    PEERS,
    Server,
    available_peers,
    raise_priority,
    set_fifo,
)

HERE = Path(__file__).resolve().parent
SCHEMA = 1
SIZES = (640, 3200, 65536, 524288)
CONNECTIONS = (1, 100)
RT_SIZE = 3200
RT_PERIOD = 0.1
RT_STEPS = (250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000)
RT_P99_MS = 10.0
#: A server whose CPU share over the window exceeds this is saturated (it is pinned to a core).
RT_MAX_CPU = 1.0
#: ... and one that echoes less than this share of the offered rate is falling behind.
RT_MIN_DELIVERED = 0.95
#: Tries per real-time step before it counts as failed.
RT_ATTEMPTS = 2
BASELINE_PEER = "trio-websocket"
USABLE_CORES = frozenset(os.sched_getaffinity(0))  # before this process pins itself


def window_for(size: int, connections: int) -> int:
    """Messages in flight per connection in the throughput runs (fixed, so every server gets
    the same load): 8 on a single connection; 2 per connection with many (1 for 512 KB, so
    100 x 512 KB = 50 MB are in flight at most)."""
    if connections == 1:
        return 8
    return 2 if size < 256 * 1024 else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, short windows (smoke test)")
    p.add_argument(
        "--only", choices=("throughput", "realtime"), action="append", help="one workload"
    )
    p.add_argument(
        "--servers",
        help=f"comma-separated subset of {OURS},{','.join(PEERS)} "
        f"(optional extras: {','.join(OPTIONAL)})",
    )
    p.add_argument("--sizes", help="comma-separated message sizes in bytes")
    p.add_argument("--connections", help="comma-separated connection counts")
    p.add_argument("--rounds", type=int, help="interleaved rounds per case [2]")
    p.add_argument("--duration", type=float, help="measured seconds per round [2.0]")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each window [0.3]")
    p.add_argument("--rt-steps", help=f"comma-separated stream counts [{RT_STEPS}]")
    p.add_argument("--rt-duration", type=float, help="measured seconds per step [4.0]")
    p.add_argument(
        "--rt-refine", type=int, help="bisection probes after a server's first failing step [2]"
    )
    p.add_argument(
        "--sched",
        choices=("auto", "fifo", "nice"),
        default="auto",
        help="auto: servers and client are SCHED_FIFO during the real-time steps (latency) and "
        f"nice {NICE} otherwise; fifo: always; nice: never FIFO [auto]",
    )
    p.add_argument("--json", type=Path, help="write the report here instead of results/")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="instead of benchmarking: profile our server (py-spy) under the 3.2 KB and 512 KB "
        "loads and write the raw stacks and a breakdown to DIR",
    )
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    q = args.quick

    def ints(text: str | None, default: tuple[int, ...]) -> list[int]:
        return [int(x) for x in text.split(",")] if text else list(default)

    s = {
        "sizes": ints(args.sizes, (640, 65536) if q else SIZES),
        "connections": ints(args.connections, (1, 3) if q else CONNECTIONS),
        "rounds": args.rounds or (1 if q else 2),
        "duration_s": args.duration or (0.3 if q else 2.0),
        "warmup_s": args.warmup if args.warmup is not None else (0.1 if q else 0.3),
        "rt_steps": ints(args.rt_steps, (10, 20) if q else RT_STEPS),
        "rt_duration_s": args.rt_duration or (0.5 if q else 4.0),
        "rt_warmup_s": 0.2 if q else 1.0,
        "rt_refine": args.rt_refine if args.rt_refine is not None else (0 if q else 2),
        "rt_attempts": 1 if q else RT_ATTEMPTS,
        "rt_size": RT_SIZE,
        "rt_period_s": RT_PERIOD,
        "rt_p99_limit_ms": RT_P99_MS,
    }
    return s


# ----------------------------------------------------------------------------- pinning


def pin_cores() -> tuple[int | None, int | None, str]:
    """Server core, client core (this process), and a note."""
    cores = sorted(USABLE_CORES)
    if len(cores) < 2:
        return None, None, f"only {len(cores)} usable core: server and client share it"
    server_core, client_core = cores[0], cores[1]
    os.sched_setaffinity(0, {client_core})
    return server_core, client_core, f"server on core {server_core}, client on core {client_core}"


# ----------------------------------------------------------------------------- throughput


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if "error" not in r and r.get("echoes")]
    if not ok:
        return {"error": rounds[-1].get("error", "no echoes") if rounds else "not run"}
    cpu = [r["server_cpu_us_per_msg"] for r in ok]
    rate = [r["msgs_per_s"] for r in ok]
    best_cpu = min(ok, key=lambda r: r["server_cpu_us_per_msg"])
    return {
        "cpu_us_per_msg": min(cpu),
        "cpu_us_per_msg_median": statistics.median(cpu),
        "msgs_per_s": max(rate),
        "msgs_per_s_median": statistics.median(rate),
        "server_cpu_share": best_cpu["server_cpu_share"],
        "client_cpu_share": max(r["client_cpu_share"] for r in ok),
        "rtt": best_cpu["rtt"],
        "rounds": len(ok),
        "failed_rounds": len(rounds) - len(ok),
        "samples": rounds,
    }


def add_ratios(case: dict[str, Any]) -> None:
    """ratios[peer] = cpu/msg(peer) / cpu/msg(ours); ratios_msgs_per_s[peer] = msgs/s(ours) /
    msgs/s(peer). Both > 1 when ours is better."""
    res = case["results"]
    case["ratios"], case["ratios_msgs_per_s"], case["ratios_median"] = {}, {}, {}
    ours = res.get(OURS, {})
    if "cpu_us_per_msg" not in ours:
        return
    for name, r in res.items():
        if name == OURS or "cpu_us_per_msg" not in r:
            continue
        case["ratios"][name] = r["cpu_us_per_msg"] / ours["cpu_us_per_msg"]
        case["ratios_median"][name] = r["cpu_us_per_msg_median"] / ours["cpu_us_per_msg_median"]
        case["ratios_msgs_per_s"][name] = ours["msgs_per_s"] / r["msgs_per_s"]


#: Whether servers (and this client) currently run as SCHED_FIFO tasks; see set_fifo.
FIFO = {"on": False}


def fifo(servers: list[Server], on: bool) -> bool:
    """Switch the servers and this process to (or back from) SCHED_FIFO; False if refused."""
    ok = all([set_fifo(os.getpid(), on), *(set_fifo(srv.pid, on) for srv in servers)])
    FIFO["on"] = on and ok
    if on and not ok:  # all or nothing: no server may get an edge over another
        fifo(servers, False)
    return FIFO["on"] == on


def ensure_alive(server: Server, log: Any) -> None:
    if not server.alive():
        print(f"[bench] {server.name} died; restarting\n{server.tail()}", file=log, flush=True)
        server.restart()
        if FIFO["on"]:
            set_fifo(server.pid, True)


def run_throughput(servers: list[Server], s: dict[str, Any], log: Any) -> dict[str, Any]:
    cases = []
    for size in s["sizes"]:
        for conns in s["connections"]:
            window = window_for(size, conns)
            case: dict[str, Any] = {
                "id": f"throughput/{size}/{conns}",
                "title": f"{_fmt_size(size)} x {conns} conn",
                "size": size,
                "connections": conns,
                "window": window,
                "op": "one echoed message (sent, echoed, received, checked byte-exact)",
                "check": "every echo equals the message sent (content, length, order)",
            }
            samples: dict[str, list[dict[str, Any]]] = {srv.name: [] for srv in servers}
            for r in range(s["rounds"]):
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                for srv in order:
                    print(
                        f"[bench] {case['id']} round {r + 1}/{s['rounds']} {srv.name}",
                        file=log,
                        flush=True,
                    )
                    try:
                        ensure_alive(srv, log)
                        res = run_pipelined(
                            srv.port,
                            srv.pid,
                            size=size,
                            connections=conns,
                            window=window,
                            warmup=s["warmup_s"],
                            duration=s["duration_s"],
                            seed=r + 1,
                        )
                    except (BenchError, OSError) as exc:
                        res = {"error": f"{type(exc).__name__}: {exc}"}
                        print(f"[bench]   {srv.name} FAILED: {res['error']}", file=log)
                    samples[srv.name].append(res)
            case["results"] = {name: _best(rs) for name, rs in samples.items()}
            add_ratios(case)
            cases.append(case)
    return {"cases": cases}


# ----------------------------------------------------------------------------- real time


def _rt_pass(r: dict[str, Any], limit_ms: float) -> bool:
    """p99 within the limit, the server within one core, and (nearly) every message offered in
    the window echoed within it."""
    p99 = r.get("rtt", {}).get("p99_ms")
    return (
        "error" not in r
        and p99 is not None
        and p99 <= limit_ms
        and r["server_cpu_share"] <= RT_MAX_CPU
        and r["msgs_per_s"] >= RT_MIN_DELIVERED * r["offered_msgs_per_s"]
    )


def run_realtime_group(servers: list[Server], s: dict[str, Any], log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "size": s["rt_size"],
        "period_s": s["rt_period_s"],
        "p99_limit_ms": s["rt_p99_limit_ms"],
        "steps": s["rt_steps"],
        "servers": {},
    }
    for srv in servers:
        runs: list[dict[str, Any]] = []

        def probe(n: int, srv: Server = srv, runs: list[dict[str, Any]] = runs) -> bool:
            """One step; a failing step is tried again (up to RT_ATTEMPTS): on a shared machine
            a neighbour's burst can spoil one window, a real limit fails every time."""
            for attempt in range(1, s["rt_attempts"] + 1):
                print(f"[bench] realtime {srv.name} {n} streams", file=log, flush=True)
                try:
                    ensure_alive(srv, log)
                    r = run_realtime(
                        srv.port,
                        srv.pid,
                        size=s["rt_size"],
                        connections=n,
                        period=s["rt_period_s"],
                        warmup=s["rt_warmup_s"],
                        duration=s["rt_duration_s"],
                        seed=attempt,
                    )
                except (BenchError, OSError) as exc:
                    r = {"connections": n, "error": f"{type(exc).__name__}: {exc}"}
                    print(f"[bench]   {srv.name} FAILED: {r['error']}", file=log)
                r["attempt"] = attempt
                r["pass"] = _rt_pass(r, s["rt_p99_limit_ms"])
                runs.append(r)
                if "rtt" in r:
                    print(
                        f"[bench]   p50 {r['rtt']['p50_ms']:.2f} ms p99 {r['rtt']['p99_ms']:.2f} "
                        f"ms server cpu {r['server_cpu_share']:.2f} (others on its core "
                        f"{r['server_core_others_share'] or 0:.2f}) -> "
                        f"{'pass' if r['pass'] else 'FAIL'}",
                        file=log,
                        flush=True,
                    )
                if r["pass"]:
                    return True
            return False

        best = 0
        first_fail = None
        for n in s["rt_steps"]:
            if probe(n):
                best = n
            else:
                first_fail = n
                break
        if first_fail is not None:
            lo, hi = best, first_fail
            for _ in range(s["rt_refine"]):
                mid = (lo + hi) // 2
                if mid <= lo or mid >= hi:
                    break
                if probe(mid):
                    lo = best = mid
                else:
                    hi = first_fail = mid
        # CPU per message at real-time pacing (runs that kept up), and the streams one fully
        # busy core would carry at that cost: the capacity with latency set aside, which does
        # not depend on neighbours the way p99 does on a shared machine.
        costs = [
            r["server_cpu_us_per_msg"]
            for r in runs
            if r.get("server_cpu_us_per_msg")
            and r["msgs_per_s"] >= RT_MIN_DELIVERED * r["offered_msgs_per_s"]
        ]
        cost = statistics.median(costs) if costs else None
        out["servers"][srv.name] = {
            "capacity": best,
            "capacity_is_lower_bound": first_fail is None,
            "first_failing": first_fail,
            "cpu_us_per_msg": cost,
            "streams_per_core_by_cpu": None if cost is None else 1e6 / cost * s["rt_period_s"],
            "runs": runs,
        }
    return out


# ----------------------------------------------------------------------------- profiling


def _category(frame: str) -> str:
    if "trio/_core" in frame or "outcome" in frame:
        return "trio scheduler (run loop, epoll, cancel scopes)"
    if "trio/_socket" in frame or "trio/_highlevel_socket" in frame:
        return "trio socket wrappers"
    if "trio/_channel" in frame:
        return "trio memory channel"
    if "trio/" in frame:
        return "trio (other)"
    if "container/session.py" in frame:
        return "our session.py (incl. syscalls and Rust calls made from it)"
    if "models/" in frame:
        return "echo model"
    if "wsproto/" in frame:
        return "wsproto (framing, masking, UTF-8)"
    if "trio_websocket/" in frame:
        return "trio-websocket"
    if "h11/" in frame:
        return "h11"
    return "other"


def profile(dir_: Path, s: dict[str, Any], server_core: int | None, log: Any) -> int:
    """py-spy record of our server (and trio-websocket) under the 3.2 KB and 512 KB loads."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print("py-spy is not installed (pip install py-spy)", file=log)
        return 1
    dir_.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    names = [OURS, BASELINE_PEER] if BASELINE_PEER in available_peers()[0] else [OURS]
    for name in names:
        srv = Server(name, server_core)
        srv.start()
        try:
            for size, conns in ((3200, 100), (524288, 1)):
                raw = dir_ / f"{name}-{size}-{conns}.txt"
                seconds = max(2, int(s["duration_s"] * 2))
                spy = subprocess.Popen(
                    [
                        *(str(exe), "record", "--pid", str(srv.pid), "--duration", str(seconds)),
                        *("--rate", "250", "--format", "raw", "-o", str(raw)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                res = run_pipelined(
                    srv.port,
                    srv.pid,
                    size=size,
                    connections=conns,
                    window=window_for(size, conns),
                    warmup=0.2,
                    duration=seconds + 0.5,
                )
                _, err = spy.communicate(timeout=60)
                if spy.returncode != 0 or not raw.exists():
                    print(f"py-spy failed: {err.decode()[-500:]}", file=log)
                    return 1
                leaf: Counter[str] = Counter()
                frames: Counter[str] = Counter()
                total = 0
                for line in raw.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if not stack:
                        continue
                    n = int(count)
                    total += n
                    top = stack.split(";")[-1]
                    leaf[_category(top)] += n
                    frames[top] += n
                key = f"{name} {size} B x {conns}"
                summary[key] = {
                    "cpu_us_per_msg_while_sampled": res["server_cpu_us_per_msg"],
                    "samples": total,
                    "self_time_by_category": {k: v / total for k, v in leaf.most_common()},
                    "top_lines": {k: v / total for k, v in frames.most_common(15)},
                }
                print(f"\n== {key}: {total} samples (self time, py-spy)")
                for k, v in leaf.most_common():
                    print(f"   {100 * v / total:5.1f} %  {k}")
                for k, v in frames.most_common(8):
                    print(f"   {100 * v / total:5.1f} %    {k}")
        finally:
            srv.stop()
    (dir_ / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nraw stacks and summary.json in {dir_}")
    return 0


# ----------------------------------------------------------------------------- report


def _fmt_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 2**20:g} MiB"
    if n >= 1024:
        return f"{n / 1024:g} KiB" if n % 1024 == 0 else f"{n / 1000:g} KB"
    return f"{n} B"


def _peer_versions() -> dict[str, str | None]:
    return {d: harness._dist_version(d) for d in ("trio", *PEERS, "wsproto", "h11")}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    tp = report["groups"].get("container/throughput", {})
    for c in tp.get("cases", []):
        if c["size"] in (3200, 524288) and BASELINE_PEER in c.get("ratios", {}):
            limit = 3.0 if c["size"] == 3200 else 8.0
            out.append(
                harness_target(
                    f"CPU/msg vs trio-websocket, {c['title']} (x)",
                    c["ratios"][BASELINE_PEER],
                    ">=",
                    limit,
                )
            )
            out.append(
                harness_target(
                    f"msgs/s vs trio-websocket, {c['title']} (x)",
                    c["ratios_msgs_per_s"][BASELINE_PEER],
                    ">=",
                    limit,
                )
            )
    rt = report["groups"].get("container/realtime", {}).get("servers", {})
    if OURS in rt and not report["methodology"]["quick"]:
        out.append(
            harness_target(
                "real-time 3.2 KB/100 ms streams per server core, p99 <= 10 ms",
                rt[OURS]["capacity"],
                ">=",
                3000,
            )
        )
        out.append(
            harness_target(
                "real-time streams one core carries at the measured CPU per message",
                rt[OURS]["streams_per_core_by_cpu"],
                ">=",
                3000,
            )
        )
    return out


def harness_target(name: str, value: float | None, op: str, limit: float) -> dict[str, Any]:
    ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"name": name, "value": value, "op": op, "limit": limit, "pass": ok}


def print_report(report: dict[str, Any]) -> None:
    m = report["methodology"]
    print(
        f"# sagebidi-perf container benchmark — {m['cpu']}, {m['usable_cores']} cores "
        f"({m['pinning']}; scheduling {m.get('scheduling')}), Python {m['python']}, "
        f"load {m['loadavg_start'][0]:.2f}→{m['loadavg_end'][0]:.2f}, {m['duration_s']} s"
    )
    tp = report["groups"].get("container/throughput")
    if tp:
        names = list(tp["cases"][0]["results"]) if tp["cases"] else []
        print("\n== throughput (echo; best of rounds)  msgs/s | server CPU µs/msg | ratio")
        w0 = max(len(c["title"]) for c in tp["cases"]) + 2
        print(f"{'case':<{w0}}" + "".join(f"{n:^30}" for n in names))
        for c in tp["cases"]:
            row = f"{c['title']:<{w0}}"
            for n in names:
                r = c["results"][n]
                if "cpu_us_per_msg" not in r:
                    row += f"{'FAILED':^30}"
                    continue
                ratio = c["ratios"].get(n)
                rtxt = f"{ratio:.1f}x" if ratio is not None else "—"
                flag = "*" if r["client_cpu_share"] > 0.9 else " "
                row += f"{r['msgs_per_s']:>9.0f}{flag}{r['cpu_us_per_msg']:>9.1f} µs{rtxt:>8} "
            print(row)
        print(
            "   (ratio = peer CPU per message / ours: > 1 means ours is cheaper; msgs/s ratios and"
            " medians in the JSON;\n    * = the client was busy > 90 % of its core: msgs/s is a"
            " lower bound. Window in flight per connection: 8 on 1 conn, 2 (512 KB: 1) on many)"
        )
    rt = report["groups"].get("container/realtime")
    if rt:
        print(
            f"\n== real time: {_fmt_size(rt['size'])} every {rt['period_s'] * 1000:g} ms per "
            f"stream, random phase; pass = p99 <= {rt['p99_limit_ms']:g} ms within one core"
        )
        for name, r in rt["servers"].items():
            cap = f"{r['capacity']}{'+' if r['capacity_is_lower_bound'] else ''}"
            steps = ", ".join(
                f"{x['connections']}:"
                + (
                    f"p99 {x['rtt']['p99_ms']:.1f}ms/cpu {x['server_cpu_share']:.2f}"
                    if "rtt" in x
                    else "error"
                )
                + ("" if x["pass"] else " FAIL")
                for x in r["runs"]
            )
            est = r.get("streams_per_core_by_cpu")
            cpu = (
                f"{r['cpu_us_per_msg']:.0f} µs/msg -> {est:.0f} streams at 100 % CPU"
                if est
                else "—"
            )
            print(f"   {name:<15} capacity {cap:>6} streams  ({cpu})\n      [{steps}]")
    if report["targets"]:
        print("\n== targets (the issue's)")
        for t in report["targets"]:
            mark = {True: "PASS", False: "MISS", None: "n/a "}[t["pass"]]
            val = "—" if t["value"] is None else f"{t['value']:.3g}"
            print(f"   {mark}  {t['name']}: {val} (target {t['op']} {t['limit']:g})")
    for name, why in report["methodology"]["skipped_peers"].items():
        print(f"   note: {name} skipped: {why}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings(args)
    log = sys.stderr
    server_core, client_core, pin_note = pin_cores()
    if raise_priority():
        pin_note += f"; every benchmark process at nice {NICE}"
    raise_nofile_limit(max(s["rt_steps"]) + 1024)
    if args.profile:
        return profile(args.profile, s, server_core, log)

    peers, skipped = available_peers()
    names = [OURS, *peers]
    if args.servers:
        wanted = args.servers.split(",")
        unknown = set(wanted) - {OURS, *PEERS, *OPTIONAL}
        if unknown:
            print(f"unknown servers: {sorted(unknown)}", file=log)
            return 2
        names = [n for n in wanted if n in names or n in OPTIONAL]
    workloads = args.only or ["throughput", "realtime"]
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    cfg = harness.Config(quick=args.quick, rounds=s["rounds"])
    methodology = harness.methodology(cfg)
    for key in ("batch_ms", "max_group_s", "threads_env"):  # kernel-harness settings only
        methodology.pop(key, None)
    methodology["usable_cores"] = len(USABLE_CORES)
    methodology.update(
        {
            "pinning": pin_note,
            "server_core": server_core,
            "client_core": client_core,
            "peer_versions": _peer_versions(),
            "skipped_peers": skipped,
            "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "settings": s,
            "concurrency": "one server process per library (single-threaded event loop), pinned "
            "to one core; one client process (epoll, our Rust WebSocket core) on the other",
            "method": (__doc__ or "").strip() + "\n\n" + _client_doc(),
            "windows": {
                f"{size}/{conns}": window_for(size, conns)
                for size in s["sizes"]
                for conns in s["connections"]
            },
        }
    )
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "methodology": methodology,
        "groups": {},
    }
    servers = [Server(n, server_core) for n in names]
    code = 0
    try:
        for srv in servers:
            print(f"[bench] starting {srv.name} ...", file=log, flush=True)
            srv.start()
        policy: dict[str, str] = {}
        if "throughput" in workloads:
            on = args.sched == "fifo" and fifo(servers, True)
            policy["throughput"] = "SCHED_FIFO" if on else f"nice {NICE}"
            report["groups"]["container/throughput"] = run_throughput(servers, s, log)
        if "realtime" in workloads:
            on = args.sched in ("fifo", "auto") and fifo(servers, True)
            policy["realtime"] = "SCHED_FIFO" if on else f"nice {NICE}"
            report["groups"]["container/realtime"] = run_realtime_group(servers, s, log)
        methodology["scheduling"] = policy
    except Exception as exc:  # report what we have
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        print(f"[bench] FAILED: {report['error']}", file=log)
        code = 1
    finally:
        if FIFO["on"]:
            fifo(servers, False)
        for srv in servers:
            methodology.setdefault("restarts", {})[srv.name] = srv.restarts
            srv.stop()
    methodology["loadavg_end"] = os.getloadavg()
    methodology["duration_s"] = round(time.perf_counter() - t0, 1)
    report["targets"] = targets(report)
    path = args.json or HERE / "results" / f"container-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    harness.dump(path, report)
    print_report(report)
    print(f"\nreport: {path}")
    tp = report["groups"].get("container/throughput", {})
    if any("error" in r for c in tp.get("cases", []) for r in c["results"].values()):
        code = code or 1
    return code


def _client_doc() -> str:
    from container import client

    return (client.__doc__ or "").strip()


if __name__ == "__main__":
    sys.exit(main())
