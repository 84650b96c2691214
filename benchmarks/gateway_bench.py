"""Relay benchmark: the gateway's added latency and CPU, direct ws vs through the gateway.

    .venv/bin/python benchmarks/gateway_bench.py            # everything (make bench-gateway)
    .venv/bin/python benchmarks/gateway_bench.py --quick    # tiny, seconds (smoke test)
    .venv/bin/python benchmarks/gateway_bench.py --rt-steps 50,100,200
    .venv/bin/python benchmarks/gateway_bench.py --gateway-workers 2 --server-cores 0

Processes: the container (``python -m sagebidi_perf.container serve --model echo``) and the
gateway (this file with ``--serve-gateway``: ``sagebidi_perf.gateway.serve``, TLS HTTP/2, SigV4
on) are separate processes, pinned to the server cores (default: the first usable core, which
they share: the relay path is gateway + container on one core, the load client alone on the
other core; ``--server-cores 0,1`` lets them float over both, sharing with the client).
``--gateway-workers N`` runs N gateway processes on one port (SO_REUSEPORT, like
``sagebidi gateway --workers N``); their CPU is summed. With one usable core nothing is pinned
(noted in the JSON).

Round trip: one session per path (``connect_ws`` straight to the container; ``connect_sagemaker``
through the gateway), blocking client, send one binary message, wait for its echo; peers
interleaved in rounds. p50/p99 per path and size (3.2 KB, 512 KB); added latency =
gateway - direct (per percentile). Gateway CPU (utime+stime from /proc/<pid>/stat) over the
gateway rounds divided by relayed frames (2 per round trip: request PayloadPart -> ws frame,
ws frame -> response PayloadPart).

Real time: N sessions (threads, one blocking session each) sending 3.2 KB every 100 ms at a
random phase; both paths at each N; p50/p99 round trip, added p99, gateway CPU share, and the
client's pacing lag (actual send - scheduled send: when it grows, the client process, not the
relay, is the limit). A step passes if added p99 <= 5 ms and the gateway path delivered >= 95 %.

Results: table on stdout and benchmarks/results/gateway-<UTC timestamp>.json (methodology block
from benchmarks/harness.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import harness

HERE = Path(__file__).resolve().parent
KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-west-2"
SIZES = (3200, 524288)
RT_STEPS = (50, 100, 200, 500, 1000)
RT_SIZE = 3200
RT_PERIOD = 0.1
ADDED_P99_LIMIT_MS = 5.0
NICE = -10
RT_ATTEMPTS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
USABLE_CORES = sorted(os.sched_getaffinity(0))


# ----------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all threads), seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_priority() -> bool:
    """nice -10 if allowed (other benchmarks on a shared machine may run at raised priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except OSError:
        return False
    return True


def _pin(core: int | set[int] | None) -> Any:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core} if isinstance(core, int) else core)
        raise_priority()

    return pin


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not ready after {timeout}s")


class Stack:
    """Container + gateway processes."""

    def __init__(self, core: int | set[int] | None, cert_dir: Path, workers: int = 1) -> None:
        self.core = core
        self.workers = workers
        self.gateways: list[subprocess.Popen[bytes]] = []
        self.cert_dir = cert_dir
        self.container_port = free_port()
        self.gateway_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd_c = [sys.executable, "-m", "sagebidi_perf.container", "serve"]
        cmd_c += ["--host", "127.0.0.1", "--port", str(self.container_port)]
        cmd_c += ["--model", "echo", "--log-level", "WARNING"]
        cmd_g = [sys.executable, str(Path(__file__).resolve()), "--serve-gateway"]
        cmd_g += ["--gateway-port", str(self.gateway_port)]
        cmd_g += ["--upstream-port", str(self.container_port), "--cert-dir", str(self.cert_dir)]
        if self.workers > 1:
            cmd_g += ["--reuse-port"]
        self.container = subprocess.Popen(
            cmd_c, stdin=subprocess.DEVNULL, env=env, preexec_fn=_pin(self.core)
        )
        self.procs.append(self.container)
        _wait_port(self.container_port, self.container)
        for _ in range(self.workers):  # the first makes the CA; the others reuse it
            gateway = subprocess.Popen(
                cmd_g,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env=env,
                preexec_fn=_pin(self.core),
            )
            self.procs.append(gateway)
            self.gateways.append(gateway)
            assert gateway.stdout is not None
            # Each process says when it listens (a second worker must not still be starting
            # while CPU is measured: the port answers as soon as the first one listens).
            if gateway.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"gateway exited with {gateway.wait(10)}")
            _wait_port(self.gateway_port, gateway)
        self.gateway = self.gateways[0]

    def gateway_cpu(self) -> float:
        """CPU seconds of all gateway processes."""
        return sum(cpu_seconds(p.pid) for p in self.gateways)

    @property
    def ca_file(self) -> str:
        return str(self.cert_dir / "ca.pem")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        self.procs.clear()

    def connect(self, path: str, timeout: float = 30.0) -> Any:
        from sagebidi_perf.client import connect_sagemaker, connect_ws

        if path == "direct":
            return connect_ws(
                f"ws://127.0.0.1:{self.container_port}", timeout=timeout, connect_timeout=timeout
            )
        return connect_sagemaker(
            f"https://localhost:{self.gateway_port}",
            "bench",
            region=REGION,
            credentials=(KEY, SECRET),
            ca_file=self.ca_file,
            timeout=timeout,
            connect_timeout=timeout,
        )


def serve_gateway(args: argparse.Namespace) -> int:
    import trio

    from sagebidi_perf.gateway import GatewaySettings, parse_upstream, serve

    settings = GatewaySettings(
        host="127.0.0.1",
        port=args.gateway_port,
        cert_dir=Path(args.cert_dir),
        credentials={KEY: SECRET},
        region=REGION,
        default_upstream=parse_upstream(f"ws://127.0.0.1:{args.upstream_port}"),
        max_concurrent_streams=100,
        ping_interval=None,
        reuse_port=args.reuse_port,
        shutdown_grace=1.0,
    )

    def ready(_server: object) -> None:
        print("ready", flush=True)

    prof_path = os.environ.get("GWBENCH_CPROFILE")  # profile the gateway (see --hold)
    if not prof_path:
        trio.run(lambda: serve(settings, handle_signals=True, on_ready=ready))
        return 0
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        trio.run(lambda: serve(settings, handle_signals=True, on_ready=ready))
    finally:
        prof.disable()
        prof.dump_stats(prof_path)
    return 0


# ----------------------------------------------------------------------------- measurements


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def round_trips(stack: Stack, size: int, count: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of ``count`` echo round trips per path; one session per path."""
    payload = os.urandom(size)
    sessions = {p: stack.connect(p) for p in ("direct", "gateway")}
    lat: dict[str, list[float]] = {p: [] for p in sessions}
    gw_cpu = 0.0
    gw_frames = 0
    gw_wall = 0.0
    try:
        for s in sessions.values():  # warm-up
            for _ in range(min(count, 20)):
                s.send(payload)
                s.receive(timeout=30)
        for r in range(rounds):
            order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
            for path in order:
                s = sessions[path]
                c0, w0 = stack.gateway_cpu(), time.perf_counter()
                for _ in range(count):
                    t0 = time.perf_counter_ns()
                    s.send(payload)
                    m = s.receive(timeout=30)
                    t1 = time.perf_counter_ns()
                    if m is None or len(m.data) != size:
                        raise RuntimeError(f"{path}: bad echo ({m!r:.80})")
                    lat[path].append((t1 - t0) / 1e3)
                if path == "gateway":
                    gw_cpu += stack.gateway_cpu() - c0
                    gw_wall += time.perf_counter() - w0
                    gw_frames += 2 * count
    finally:
        for s in sessions.values():
            s.close()
    out: dict[str, Any] = {"size": size, "round_trips_per_path": count * rounds}
    for path, xs in lat.items():
        out[path] = {
            "p50_us": _pct(xs, 0.5),
            "p99_us": _pct(xs, 0.99),
            "mean_us": statistics.fmean(xs),
        }
    out["added_p50_us"] = out["gateway"]["p50_us"] - out["direct"]["p50_us"]
    out["added_p99_us"] = out["gateway"]["p99_us"] - out["direct"]["p99_us"]
    out["gateway_cpu_per_frame_us"] = gw_cpu / gw_frames * 1e6 if gw_frames else None
    out["gateway_cpu_share"] = gw_cpu / gw_wall if gw_wall else None
    out["cpu_note"] = f"/proc stat ticks are {1000 / CLK_TCK:g} ms: per-frame CPU is approximate"
    return out


def realtime(stack: Stack, path: str, n: int, duration: float, warmup: float) -> dict[str, Any]:
    """``n`` threads, each one session sending 3.2 KB every 100 ms at a random phase."""
    payload = os.urandom(RT_SIZE)
    sessions: list[Any] = []
    errors: list[str] = []
    try:
        for _ in range(n):
            sessions.append(stack.connect(path, timeout=10.0))
    except Exception as exc:
        for s in sessions:
            s.abort()
        return {"n": n, "path": path, "error": f"connect {len(sessions)}/{n}: {exc!r}"}
    start = time.perf_counter() + 0.2
    measure_from = start + warmup
    end = measure_from + duration
    lat: list[list[float]] = [[] for _ in range(n)]
    lag: list[list[float]] = [[] for _ in range(n)]
    sent = [0] * n

    def run(i: int) -> None:
        s = sessions[i]
        t = start + random.random() * RT_PERIOD
        try:
            while t < end:
                now = time.perf_counter()
                if t > now:
                    time.sleep(t - now)
                t0 = time.perf_counter()
                s.send(payload)
                m = s.receive(timeout=5)
                t1 = time.perf_counter()
                if m is None:
                    raise RuntimeError("stream ended")
                if t >= measure_from:
                    sent[i] += 1
                    lat[i].append((t1 - t0) * 1e3)
                    lag[i].append((t0 - t) * 1e3)
                t += RT_PERIOD
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    c0 = stack.gateway_cpu()
    cc0 = cpu_seconds(stack.container.pid)
    me0 = cpu_seconds(os.getpid())
    w0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=duration + warmup + 30)
    wall = time.perf_counter() - w0
    gw_cpu = stack.gateway_cpu() - c0
    c_cpu = cpu_seconds(stack.container.pid) - cc0
    me_cpu = cpu_seconds(os.getpid()) - me0
    for s in sessions:
        try:
            s.close()
        except Exception:
            s.abort()
    all_lat = [x for xs in lat for x in xs]
    all_lag = [x for xs in lag for x in xs]
    expected = n * duration / RT_PERIOD
    return {
        "n": n,
        "path": path,
        "p50_ms": _pct(all_lat, 0.5),
        "p99_ms": _pct(all_lat, 0.99),
        "lag_p99_ms": _pct(all_lag, 0.99),
        "delivered": sum(sent) / expected if expected else None,
        "gateway_cpu_share": gw_cpu / wall,
        "container_cpu_share": c_cpu / wall,
        # The load client alone on its core: near 1.0 means the client, not the relay, limits.
        "client_cpu_share": me_cpu / wall,
        "errors": errors[:5],
        "error_count": len(errors),
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", choices=("roundtrip", "realtime"), action="append")
    p.add_argument("--sizes")
    p.add_argument("--rt-steps")
    p.add_argument("--rt-duration", type=float)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--hold",
        type=float,
        help="only keep one 3.2 KB echo session busy through the gateway this long (to profile "
        "it: py-spy on the printed pid, or GWBENCH_CPROFILE=/tmp/gw.prof for cProfile)",
    )
    p.add_argument(
        "--gateway-workers", type=int, default=1, help="gateway processes on one port (default 1)"
    )
    p.add_argument(
        "--server-cores",
        help="cores for container + gateway, e.g. 0 or 0,1 (default: the first usable core)",
    )
    p.add_argument("--hold-size", type=int, default=3200, help="message size for --hold")
    p.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gateway-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cert-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_gateway:
        return serve_gateway(args)
    q = args.quick
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([3200, 65536] if q else list(SIZES))
    )
    steps = (
        [int(x) for x in args.rt_steps.split(",")]
        if args.rt_steps
        else ([3] if q else list(RT_STEPS))
    )
    rt_duration = args.rt_duration or (0.5 if q else 5.0)
    only = set(args.only or ("roundtrip", "realtime"))
    server_core: int | set[int] | None
    if len(USABLE_CORES) >= 2:
        server_core, client_core = USABLE_CORES[0], USABLE_CORES[1]
        if args.server_cores:
            server_core = {int(c) for c in args.server_cores.split(",")}
        os.sched_setaffinity(0, {client_core})
        pin_note = f"container + gateway on core(s) {server_core}, client on core {client_core}"
    else:
        server_core = None
        pin_note = "one usable core: nothing pinned"
    pin_note += f"; {args.gateway_workers} gateway process(es)"
    pin_note += f"; nice {NICE}" if raise_priority() else "; default priority"
    cfg = harness.Config.make(q)
    meth = harness.methodology(cfg)
    meth["method"] = (__doc__ or "").strip()
    meth["pinning"] = pin_note
    meth["concurrency"] = "3 processes: container, gateway, load client (threads, blocking client)"
    report: dict[str, Any] = {"kind": "gateway", "methodology": meth}
    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        stack = Stack(server_core, Path(tmp), args.gateway_workers)
        try:
            stack.start()
            if args.hold:
                s = stack.connect("gateway")
                payload = os.urandom(args.hold_size)
                end = time.monotonic() + args.hold
                print(f"gateway pid {stack.gateway.pid}", flush=True)
                while time.monotonic() < end:
                    s.send(payload)
                    s.receive(timeout=30)
                s.close()
                return 0
            if "roundtrip" in only:
                report["roundtrip"] = []
                for size in sizes:
                    count = (20 if q else 200) if size < 65536 else (5 if q else 40)
                    r = round_trips(stack, size, count, 2 if q else 5)
                    report["roundtrip"].append(r)
                    print(
                        f"{size:>7} B  direct p50 {r['direct']['p50_us']:8.0f} us p99 "
                        f"{r['direct']['p99_us']:8.0f} | gateway p50 {r['gateway']['p50_us']:8.0f}"
                        f" p99 {r['gateway']['p99_us']:8.0f} | added p50 {r['added_p50_us']:7.0f}"
                        f" p99 {r['added_p99_us']:7.0f} us | gw CPU/frame "
                        f"{r['gateway_cpu_per_frame_us']:.0f} us",
                        flush=True,
                    )
            if "realtime" in only:
                report["realtime"] = []
                best = 0
                for n in steps:
                    # A failing step is tried again (RT_ATTEMPTS): neighbours on a shared
                    # machine cause stalls that are not the relay's; every try is recorded.
                    for attempt in range(1 if q else RT_ATTEMPTS):
                        step: dict[str, Any] = {"n": n, "attempt": attempt + 1}
                        for path in ("direct", "gateway"):
                            step[path] = realtime(stack, path, n, rt_duration, 0.2 if q else 1.0)
                        d, g = step["direct"], step["gateway"]
                        ok = "error" not in d and "error" not in g and g["p99_ms"] is not None
                        if ok:
                            step["added_p99_ms"] = g["p99_ms"] - d["p99_ms"]
                            step["pass"] = (
                                step["added_p99_ms"] <= ADDED_P99_LIMIT_MS
                                and g["delivered"] >= 0.95
                            )
                        else:
                            step["pass"] = False
                        report["realtime"].append(step)
                        print(f"rt N={n}: {step}", flush=True)
                        if step["pass"]:
                            break
                    if step["pass"]:
                        best = n
                    else:
                        break
                report["max_realtime_sessions"] = best
        finally:
            stack.stop()
    meth["loadavg_end"] = os.getloadavg()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.json or HERE / "results" / f"gateway-{stamp}.json"
    harness.dump(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
