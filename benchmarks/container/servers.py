"""Starting, pinning, watching and stopping the echo servers of the container benchmark."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .client import BenchError, Engine, make_frames, open_connections

HERE = Path(__file__).resolve().parent
OURS = "ours"
#: peer name -> the module it needs
PEERS = {
    "trio-websocket": "trio_websocket",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    "picows": "picows",
}
#: Run only when named in --servers: the floor of any Trio server on our core (peer_servers.py).
OPTIONAL = {"trio-floor": "trio"}


#: Every benchmark process (servers and client alike) runs at this nice value when allowed, so
#: that neighbours on a shared machine disturb the measurement less.
NICE = -20


def raise_priority() -> bool:
    """Lower this process's nice value to NICE if permitted (root / CAP_SYS_NICE)."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current > NICE:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
        return True
    except OSError:
        return False


def set_fifo(pid: int, on: bool) -> bool:
    """Make ``pid``'s main thread (the event loop's) a SCHED_FIFO task (priority 1), or a normal
    one again. A FIFO task preempts its neighbours the moment it wakes: on a shared machine that
    is what keeps their bursts out of a latency measurement (nice alone does not: measured p99
    1 s with nice -20 vs 0.9 ms as FIFO, next to four busy processes). The kernel's real-time
    throttling still leaves others 5 % of the core. Returns False if not permitted."""
    try:
        if on:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(1))
        else:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available_peers() -> tuple[list[str], dict[str, str]]:
    """Peers whose library is installed, and why the others are skipped."""
    ok, skipped = [], {}
    for name, module in PEERS.items():
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"{module} is not installed (pip install -e '.[bench]')"
        else:
            ok.append(name)
    return ok, skipped


def command(name: str, port: int) -> list[str]:
    if name == OURS:
        return [
            sys.executable,
            "-m",
            "sagebidi_perf.container",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            "echo",
            "--log-level",
            "WARNING",
        ]
    return [sys.executable, str(HERE / "peer_servers.py"), name, str(port)]


@dataclass
class Server:
    """One echo server process, pinned to ``core`` (None: not pinned)."""

    name: str
    core: int | None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    restarts: int = 0
    _log: object = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float = 30.0) -> None:
        self.port = free_port()
        fd, path = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        core = self.core
        env = dict(os.environ, PYTHONUNBUFFERED="1")

        def pin() -> None:
            if core is not None:
                os.sched_setaffinity(0, {core})
            raise_priority()

        self.proc = subprocess.Popen(
            command(self.name, self.port),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            env=env,
            preexec_fn=pin,  # the parent is single-threaded; sets the CPU affinity
        )
        os.close(fd)
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until one WebSocket echo round trip succeeds."""
        deadline = time.monotonic() + timeout
        payloads, frames = make_frames(16, 0)
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                conns = open_connections(self.port, 1, timeout=2.0)
            except (OSError, BenchError) as exc:
                last = exc
                time.sleep(0.1)
                continue
            engine = Engine(conns, payloads, frames)
            try:
                engine.start()
                engine.queue(conns[0], 1, time.perf_counter_ns())
                engine.drain(timeout=5.0)
                return
            except BenchError as exc:
                last = exc
            finally:
                engine.close_all(timeout=2.0)
        raise BenchError(f"{self.name} did not become ready in {timeout:g}s: {last}\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")

    def tail(self, n: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None
