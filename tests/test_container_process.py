"""The container as SageMaker runs it: the image's entrypoint run bare, SIGTERM, --workers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from container_helpers import http_request
from wsproto_client import Closed, connect

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT + CMD, with this interpreter for `python`."""
    text = (ROOT / "container" / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entry, "ENTRYPOINT must be in exec form"
    assert cmd, "CMD must be in exec form"
    argv: list[str] = [*eval(entry.group(1)), *eval(cmd.group(1))]
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def start(
    procs: list[subprocess.Popen[bytes]], *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*entrypoint(), "--host", "127.0.0.1", "--log-level", "WARNING", *args],
        env={**os.environ, **(env or {})},
    )
    procs.append(proc)
    return proc


def child_pids(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def alive(pid: str) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


async def wait_ping(port: int) -> None:
    with trio.fail_after(30):
        while True:
            try:
                if (await http_request(port, "GET", "/ping")).status == 200:
                    return
            except OSError:
                pass
            await trio.sleep(0.05)


def test_dockerfile_declares_the_contract() -> None:
    text = (ROOT / "container" / "Dockerfile").read_text()
    assert "LABEL com.amazonaws.sagemaker.capabilities.bidirectional-streaming=true" in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert entrypoint()[1:] == ["-m", "sagebidi_perf.container", "serve"]


async def test_entrypoint_runs_bare_and_exits_on_sigterm(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    # SageMaker passes the port through the environment.
    proc = start(spawn, env={"SAGEMAKER_BIND_TO_PORT": str(port)})
    await wait_ping(port)
    r = await http_request(port, "POST", "/invocations", body=b"payload")
    assert (r.status, r.body) == (200, b"payload")
    proc.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(proc.wait, 30) == 0


async def test_sigterm_drains_sessions_then_closes_1001(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    proc = start(spawn, "--port", str(port), "--shutdown-grace", "2")
    await wait_ping(port)
    client = await connect(port)
    try:
        await client.send("before")
        assert await client.receive() == "before"
        started = trio.current_time()
        proc.send_signal(signal.SIGTERM)
        await trio.sleep(0.5)
        # Inside the grace period the open session is still served...
        await client.send("during grace")
        assert await client.receive() == "during grace"
        # ...but new connections are refused.
        with pytest.raises(OSError, match="all attempts to connect"):
            await http_request(port, "GET", "/ping")
        # At the end of the grace period the session is closed with 1001.
        closed = await client.receive()
        assert isinstance(closed, Closed)
        assert closed.code == 1001
        assert trio.current_time() - started >= 2.0
    finally:
        await client.aclose()
    assert await trio.to_thread.run_sync(proc.wait, 30) == 0


async def test_workers_share_one_port(spawn: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    proc = start(spawn, "--port", str(port), "--workers", "2")
    await wait_ping(port)
    children = child_pids(proc.pid)
    assert len(children) == 2
    # Many connections, all served (the kernel spreads them over both workers).
    async with trio.open_nursery() as nursery:
        for i in range(40):

            async def one(i: int = i) -> None:
                client = await connect(port)
                try:
                    await client.send(f"worker test {i}")
                    assert await client.receive() == f"worker test {i}"
                finally:
                    await client.aclose()

            nursery.start_soon(one)
    proc.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(proc.wait, 30) == 0
    assert not any(alive(child) for child in children)


WHOAMI = """
import os
from sagebidi_perf.container import Model, Session


class WhoAmI(Model):
    async def session(self, session: Session) -> None:
        async for _ in session:
            await session.send(str(os.getpid()))
"""


async def _until_both_workers_answer(port: int) -> None:
    """Hold sessions open until two different workers have answered (both are accepting)."""
    clients = []
    try:
        with trio.fail_after(30):
            seen: set[str] = set()
            while len(seen) < 2:
                client = await connect(port)
                clients.append(client)
                await client.send("who?")
                seen.add(str(await client.receive()))
    finally:
        for client in clients:
            await client.aclose()


async def test_workers_share_the_load(spawn: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """One accept queue shared by the workers: the less busy worker takes the next connection
    (with SO_REUSEPORT's hashing, 8 held sessions split 8/0 or 7/1 29 % of the time)."""
    (tmp_path / "whoami.py").write_text(WHOAMI)
    port = free_port()
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = start(spawn, "--port", str(port), "--workers", "2", "--model", "whoami:WhoAmI", env=env)
    await wait_ping(port)
    assert len(child_pids(proc.pid)) == 2
    await _until_both_workers_answer(port)
    clients = []
    served_by: list[str] = []
    try:
        for _ in range(8):  # held open, one after another
            client = await connect(port)
            clients.append(client)
            await client.send("who?")
            served_by.append(str(await client.receive()))
    finally:
        for client in clients:
            await client.aclose()
    counts = sorted(served_by.count(pid) for pid in set(served_by))
    assert len(counts) == 2, served_by
    assert counts[0] >= 3, served_by
    proc.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(proc.wait, 30) == 0


def test_bad_settings_fail_fast_with_a_message() -> None:
    result = subprocess.run(
        [*entrypoint(), "--model", "no_such_module:Model"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot import model module" in result.stderr
    result = subprocess.run(
        [*entrypoint()],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SAGEMAKER_BIND_TO_PORT": "http"},
    )
    assert result.returncode == 2
    assert "SAGEMAKER_BIND_TO_PORT must be an integer" in result.stderr
