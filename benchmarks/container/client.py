"""The load client of the container benchmark: one process, plain non-blocking sockets, epoll.

Built so that it is not the bottleneck (its CPU share is measured and reported with every run):

* Outgoing frames are prebuilt: for each message size, ``VARIANTS`` random payloads, each framed
  and masked once by our Rust core (``WebSocketConnection(client=True)``, a fresh random masking
  key per frame, as RFC 6455 asks). Sending one costs a ``sendmsg`` (several frames in one
  scatter/gather call, no join); the server still has to unmask every byte.
* Incoming bytes are read with ``recv_into`` into one preallocated buffer and parsed by our Rust
  core (``deliver="messages"``; each payload comes back as a ``bytes``).
* Every echo is checked byte-exact: the k-th message received on a connection must equal the
  k-th message sent on it (same variant, so same length and content, in order). A mismatch, a
  non-binary message or a dropped connection fails the run; nothing is skipped.
* Round-trip times are ``time.perf_counter_ns`` from the moment a frame is handed to the send
  path (queued for ``sendmsg``) to the ``recv_into`` that returned its last byte.

Two workloads:

``pipelined``: every connection keeps ``window`` messages in flight (a new one goes out as each
echo comes back); throughput, server CPU per message and the (window-inflated) RTT.

``realtime``: every connection sends one message every ``period`` seconds at a random phase
(3.2 KB every 100 ms is 100 ms of 16 kHz int16 audio); RTT percentiles are the real latency.
"""

from __future__ import annotations

import array
import base64
import contextlib
import os
import random
import resource
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sagebidi_perf.websocket import BINARY, CLOSE, WebSocketConnection, accept_key

VARIANTS = 4
RECV_BUFFER = 1 << 20
IOV_MAX = 512  # frames per sendmsg call (the kernel allows 1024)
HANDSHAKE_BATCH = 64
PATH = "/invocations-bidirectional-stream"


class BenchError(RuntimeError):
    """A server misbehaved (wrong echo, dropped connection, failed handshake) or hung."""


def raise_nofile_limit(want: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a whole process (all threads), from /proc/<pid>/stat, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_runtime_ns(pid: int) -> int | None:
    """On-CPU time of all threads of ``pid`` in ns (/proc/<pid>/task/*/schedstat), a
    fine-grained cross-check of :func:`proc_cpu_s` (whose unit is a 10 ms tick)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return None
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_frames(size: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """``VARIANTS`` random payloads of ``size`` bytes and their masked client frames."""
    rng = random.Random(seed)
    payloads = [rng.randbytes(size) for _ in range(VARIANTS)]
    frames = []
    for p in payloads:
        ws = WebSocketConnection(client=True)
        ws.send(p)
        frames.append(ws.outgoing())
    return payloads, frames


def _handshake_request(port: int, key: str) -> bytes:
    return (
        f"GET {PATH} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def _read_response(sock: socket.socket, key: str) -> bytes:
    """Read the HTTP response to our upgrade; return bytes that followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"handshake: connection closed after {data[:200]!r}")
        data += chunk
        if len(data) > 65536:
            raise BenchError("handshake: response head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        raise BenchError(f"handshake refused: {lines[0]!r}")
    want = accept_key(key).encode("ascii")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            if value.strip() != want:
                raise BenchError("handshake: wrong Sec-WebSocket-Accept")
            return rest
    raise BenchError("handshake: no Sec-WebSocket-Accept")


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    ws: WebSocketConnection
    fd: int
    index: int
    leftover: bytes = b""
    #: perf_counter_ns of every message in flight, oldest first (echoes come back in order).
    sent: deque[int] = field(default_factory=deque)
    sent_seq: int = 0
    recv_seq: int = 0
    #: Frames (or their unsent tails) not yet accepted by the kernel.
    outq: list[memoryview] = field(default_factory=list)
    want_write: bool = False
    closed: bool = False


def open_connections(port: int, n: int, timeout: float = 30.0) -> list[Conn]:
    """``n`` WebSocket connections to 127.0.0.1:``port``, handshakes ``HANDSHAKE_BATCH`` at a
    time (blocking), then switched to non-blocking."""
    raise_nofile_limit(n + 256)
    conns: list[Conn] = []
    try:
        while len(conns) < n:
            batch: list[tuple[socket.socket, str]] = []
            for _ in range(min(HANDSHAKE_BATCH, n - len(conns))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(timeout)
                try:
                    s.connect(("127.0.0.1", port))
                    key = base64.b64encode(os.urandom(16)).decode("ascii")
                    s.sendall(_handshake_request(port, key))
                except OSError:
                    s.close()
                    raise
                batch.append((s, key))
            for s, key in batch:
                try:
                    rest = _read_response(s, key)
                except (OSError, BenchError):
                    for t, _ in batch:
                        t.close()
                    raise
                s.setblocking(False)
                ws = WebSocketConnection(client=True, max_message_size=64 * 2**20)
                conns.append(Conn(s, ws, s.fileno(), len(conns), rest))
    except BaseException:
        for c in conns:
            c.sock.close()
        raise
    return conns


@dataclass
class Totals:
    echoes: int = 0
    bytes: int = 0


class Engine:
    """The epoll loop shared by both workloads."""

    def __init__(self, conns: list[Conn], payloads: list[bytes], frames: list[bytes]) -> None:
        self.conns = conns
        self.by_fd = {c.fd: c for c in conns}
        self.payloads = payloads
        self.frames = [memoryview(f) for f in frames]
        self.ep = select.epoll(sizehint=len(conns) + 1)
        for c in conns:
            self.ep.register(c.fd, select.EPOLLIN)
        self.buf = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buf)
        self.totals = Totals()
        self.rtts = array.array("q")
        self.record = False
        #: called with (conn, number of echoes just received) in pipelined mode
        self.on_echo: Callable[[Conn, int], None] | None = None

    def close(self) -> None:
        self.ep.close()

    # -- sending -------------------------------------------------------------------------

    def queue(self, c: Conn, count: int, now: int) -> None:
        frames = self.frames
        for _ in range(count):
            c.outq.append(frames[c.sent_seq % VARIANTS])
            c.sent.append(now)
            c.sent_seq += 1
        self.flush(c)

    def flush(self, c: Conn) -> None:
        outq = c.outq
        while outq:
            batch = outq[:IOV_MAX]
            try:
                sent = c.sock.sendmsg(batch)
            except BlockingIOError:
                break
            except OSError as exc:
                raise BenchError(f"connection {c.index}: send failed: {exc}") from exc
            done = 0  # frames the kernel took whole
            while done < len(batch) and sent >= len(batch[done]):
                sent -= len(batch[done])
                done += 1
            del outq[:done]
            if done < len(batch):  # the kernel buffer is full: wait for EPOLLOUT
                if sent:
                    outq[0] = outq[0][sent:]
                break
        want = bool(outq)
        if want != c.want_write:
            c.want_write = want
            self.ep.modify(c.fd, select.EPOLLIN | (select.EPOLLOUT if want else 0))

    # -- receiving -----------------------------------------------------------------------

    def on_readable(self, c: Conn) -> None:
        try:
            n = c.sock.recv_into(self.buf)
        except BlockingIOError:
            return
        except OSError as exc:
            raise BenchError(f"connection {c.index}: recv failed: {exc}") from exc
        now = time.perf_counter_ns()
        if n == 0:
            if c.ws.closed:
                c.closed = True
                self.ep.unregister(c.fd)
                return
            raise BenchError(f"connection {c.index}: server closed the TCP connection")
        self.process(c, c.ws.receive(self.view[:n]), now)

    def process(self, c: Conn, events: list[tuple[int, Any, bool]], now: int) -> None:
        got = 0
        payloads = self.payloads
        for kind, payload, _fin in events:
            if kind == BINARY:
                if payload != payloads[c.recv_seq % VARIANTS]:
                    raise BenchError(
                        f"connection {c.index}: echo #{c.recv_seq} differs from what was sent "
                        f"({len(payload)} bytes back, {len(payloads[0])} sent)"
                    )
                c.recv_seq += 1
                sent_at = c.sent.popleft()
                if self.record:
                    self.rtts.append(now - sent_at)
                    self.totals.echoes += 1
                    self.totals.bytes += len(payload)
                got += 1
            elif kind == CLOSE:
                if c.sent and not c.ws.closed:
                    raise BenchError(f"connection {c.index}: server closed early: {payload}")
                c.closed = c.ws.closed
            else:
                raise BenchError(f"connection {c.index}: unexpected frame kind {kind}")
        if c.ws.outgoing_size:  # pongs, the echo of a close
            c.outq.append(memoryview(c.ws.outgoing()))
            self.flush(c)
        if got and self.on_echo is not None:
            self.on_echo(c, got)

    def poll(self, timeout: float) -> None:
        by_fd = self.by_fd
        for fd, ev in self.ep.poll(timeout):
            c = by_fd[fd]
            if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                self.on_readable(c)
            if ev & select.EPOLLOUT and c.outq:
                self.flush(c)

    def start(self) -> None:
        for c in self.conns:
            if c.leftover:
                self.process(c, c.ws.receive(c.leftover), time.perf_counter_ns())
                c.leftover = b""

    # -- ending --------------------------------------------------------------------------

    def drain(self, timeout: float) -> None:
        """Wait until every message in flight has been echoed."""
        deadline = time.perf_counter() + timeout
        while any(c.sent for c in self.conns):
            left = deadline - time.perf_counter()
            if left <= 0:
                missing = sum(len(c.sent) for c in self.conns)
                raise BenchError(f"{missing} echoes missing after {timeout:g}s")
            self.poll(min(left, 0.05))

    def close_all(self, timeout: float = 10.0) -> int:
        """Close handshake on every connection (1000); returns how many the server answered."""
        self.on_echo = None
        for c in self.conns:
            if not c.ws.closed and c.ws.state == "open":
                c.ws.close(1000)
                c.outq.append(memoryview(c.ws.outgoing()))
                with contextlib.suppress(BenchError):
                    self.flush(c)
        deadline = time.perf_counter() + timeout
        pending = [c for c in self.conns if not c.closed]
        while pending and time.perf_counter() < deadline:
            with contextlib.suppress(BenchError):
                self.poll(0.05)
            pending = [c for c in pending if not (c.closed or c.ws.closed)]
        answered = sum(1 for c in self.conns if c.ws.closed)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.sock.close()
        self.close()
        return answered


def percentiles(xs: array.array[int]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max of nanosecond samples, in milliseconds (nearest rank)."""
    if not xs:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    s = sorted(xs)
    n = len(s)

    def q(p: float) -> float:
        return s[min(n - 1, max(0, int(p * n + 0.5) - 1))] / 1e6

    return {
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": s[-1] / 1e6,
    }


def core_times(core: int) -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]  # idle + iowait
                steal = v[7] if len(v) > 7 else 0
                total = sum(v[:8])
                return total - idle - steal, steal, total
    raise BenchError(f"cpu{core} not in /proc/stat")


class CpuWindow:
    """Server and client CPU over a measured window, and how busy the server's core was with
    other work (neighbours on a shared machine, the hypervisor's steal)."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        cores = os.sched_getaffinity(server_pid)
        self.core = next(iter(cores)) if len(cores) == 1 else None
        self.core0 = core_times(self.core) if self.core is not None else None
        self.t = time.perf_counter()
        self.server = proc_cpu_s(server_pid)
        self.server_ns = proc_runtime_ns(server_pid)
        self.client = time.process_time()

    def end(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.t
        server = proc_cpu_s(self.pid) - self.server
        ns = proc_runtime_ns(self.pid)
        client = time.process_time() - self.client
        out: dict[str, float | None] = {
            "wall_s": wall,
            "server_cpu_s": server,
            "server_cpu_s_schedstat": None
            if ns is None or self.server_ns is None
            else (ns - self.server_ns) / 1e9,
            "client_cpu_s": client,
            "server_core_others_share": None,
            "server_core_steal_share": None,
            "server_core_unaccounted_share": None,
        }
        if self.core is not None and self.core0 is not None:
            busy, steal, total = (
                b - a for a, b in zip(self.core0, core_times(self.core), strict=True)
            )
            if total > 0:
                # Busy time of the core not spent in the server (other processes, and interrupt
                # work such as the loopback TCP of the client's sends when it lands there).
                out["server_core_others_share"] = max(0.0, (busy / CLK_TCK - server) / wall)
                out["server_core_steal_share"] = steal / total
                # Wall time the kernel did not account at all: a vCPU the hypervisor descheduled
                # without reporting steal (seen on this project's VMs: up to ~20 %).
                out["server_core_unaccounted_share"] = max(0.0, 1 - total / CLK_TCK / wall)
        return out


def _result(engine: Engine, cpu: dict[str, float | None], extra: dict[str, Any]) -> dict[str, Any]:
    wall = cpu["wall_s"] or 1e-9
    echoes = engine.totals.echoes
    server = cpu["server_cpu_s"] or 0.0
    sched = cpu["server_cpu_s_schedstat"]
    out: dict[str, Any] = {
        "echoes": echoes,
        "bytes_echoed": engine.totals.bytes,
        **cpu,
        "msgs_per_s": echoes / wall,
        "server_cpu_us_per_msg": server / echoes * 1e6 if echoes else None,
        "server_cpu_us_per_msg_schedstat": sched / echoes * 1e6 if echoes and sched else None,
        "server_cpu_share": server / wall,
        "client_cpu_share": (cpu["client_cpu_s"] or 0.0) / wall,
        "rtt": percentiles(engine.rtts),
        "rtt_samples": len(engine.rtts),
        **extra,
    }
    return out


def run_pipelined(
    port: int,
    server_pid: int,
    *,
    size: int,
    connections: int,
    window: int,
    warmup: float,
    duration: float,
    seed: int = 1,
) -> dict[str, Any]:
    """Saturating load: ``window`` messages in flight per connection."""
    payloads, frames = make_frames(size, seed)
    conns = open_connections(port, connections)
    engine = Engine(conns, payloads, frames)
    sending = True

    def refill(c: Conn, got: int) -> None:
        if sending:
            engine.queue(c, got, time.perf_counter_ns())

    engine.on_echo = refill
    try:
        engine.start()
        now = time.perf_counter_ns()
        for c in conns:
            engine.queue(c, window, now)
        t_end_warm = time.perf_counter() + warmup
        while time.perf_counter() < t_end_warm:
            engine.poll(0.05)
        engine.record = True
        cpu = CpuWindow(server_pid)
        t_end = time.perf_counter() + duration
        while time.perf_counter() < t_end:
            engine.poll(0.05)
        usage = cpu.end()
        engine.record = False
        sending = False
        engine.drain(timeout=30.0)
    finally:
        answered = engine.close_all()
    return _result(
        engine,
        usage,
        {"window": window, "connections": connections, "size": size, "closes_answered": answered},
    )


def run_realtime(
    port: int,
    server_pid: int,
    *,
    size: int,
    connections: int,
    period: float,
    warmup: float,
    duration: float,
    seed: int = 1,
) -> dict[str, Any]:
    """Paced load: each connection sends one message every ``period`` s at a random phase."""
    payloads, frames = make_frames(size, seed)
    conns = open_connections(port, connections)
    engine = Engine(conns, payloads, frames)
    rng = random.Random(seed)
    period_ns = int(period * 1e9)
    order = sorted(((rng.randrange(period_ns), c) for c in conns), key=lambda pc: pc[0])
    phases = [p for p, _ in order]
    seq = [c for _, c in order]
    n = len(seq)
    lags = array.array("q")
    try:
        engine.start()
        base = time.perf_counter_ns() + 20_000_000
        t_warm = base + int(warmup * 1e9)
        t_end = t_warm + int(duration * 1e9)
        cpu: CpuWindow | None = None
        i = 0
        cycle = 0
        due = base + phases[0]
        while True:
            now = time.perf_counter_ns()
            if cpu is None and now >= t_warm:
                engine.record = True
                cpu = CpuWindow(server_pid)
            if now >= t_end:
                break
            # Send everything that is due.
            while due <= now:
                c = seq[i]
                if engine.record:
                    lags.append(now - due)
                engine.queue(c, 1, now)
                i += 1
                if i == n:
                    i = 0
                    cycle += 1
                due = base + cycle * period_ns + phases[i]
                now = time.perf_counter_ns()
            engine.poll(max(0.0, (due - time.perf_counter_ns()) / 1e9))
        assert cpu is not None
        usage = cpu.end()
        engine.record = False
        engine.drain(timeout=30.0)
    finally:
        answered = engine.close_all()
    return _result(
        engine,
        usage,
        {
            "connections": connections,
            "size": size,
            "period_s": period,
            "offered_msgs_per_s": connections / period,
            "client_send_lag": percentiles(lags),
            "closes_answered": answered,
        },
    )
