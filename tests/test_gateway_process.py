"""The gateway as a real process (``sagebidi gateway``): SIGTERM with a grace period, --workers.

The container is the frame-level test container in this process, so the test sees the exact
Close the gateway sends it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gateway_helpers import (
    KEY,
    SECRET,
    FrameContainer,
    H2Client,
    part_of,
    payload_part,
    start_container,
)
from sagebidi_perf.gateway import ensure_certificates

pytestmark = pytest.mark.timeout(90)

STEP = 30  # seconds for any one wait (generous: the machine is shared)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def start_gateway_process(
    procs: list[subprocess.Popen[str]], cert_dir: Path, upstream: int, *args: str
) -> tuple[subprocess.Popen[str], int]:
    """Start ``sagebidi gateway``; return it and its port once it printed its two lines."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cmd = [sys.executable, "-m", "sagebidi_perf.cli", "gateway"]
    cmd += ["--upstream", f"ws://127.0.0.1:{upstream}", "--port", str(port)]
    cmd += ["--cert-dir", str(cert_dir), "--access-key-id", KEY, "--secret-access-key", SECRET]
    cmd += ["--log-level", "WARNING", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"https://localhost:{port}"
    assert proc.stdout.readline().strip() == f"SSL_CERT_FILE={cert_dir / 'ca.pem'}"
    return proc, port


async def echo(client: H2Client, sid: int, signer: object, text: bytes, n: int) -> None:
    await client.send(sid, signer.sign(payload_part(text)))  # type: ignore[attr-defined]
    messages = await client.messages(sid, n)
    assert len(messages) == n
    assert part_of(messages[-1]) == ("UTF8", "COMPLETE", text)


async def refused(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_sigterm_lets_sessions_run_for_the_grace_period_then_ends_them(
    nursery: trio.Nursery, tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    container = FrameContainer()
    upstream = await start_container(nursery, container)
    proc, port = start_gateway_process(spawn, tmp_path, upstream, "--shutdown-grace", "2")
    with trio.fail_after(STEP):
        client = await H2Client.connect(nursery, port, tmp_path / "ca.pem")
        sid, signer = await client.open_signed("my-endpoint")
        await echo(client, sid, signer, b"before", 1)
        started = trio.current_time()
        proc.send_signal(signal.SIGTERM)
        await trio.sleep(0.5)
        # Inside the grace period the open session is still relayed...
        await echo(client, sid, signer, b"during grace", 2)
        # ...but the port no longer accepts connections.
        assert await refused(port)
        # At the end of the grace period: the stream ends cleanly (END_STREAM, no reset, no
        # exception event) and the container gets Close 1001.
        state = await client.finished(sid)
        assert trio.current_time() - started >= 2.0
    assert state.ended
    assert state.reset is None
    assert [part_of(m)[2] for m in state.messages] == [b"before", b"during grace"]
    [conn] = container.connections
    assert conn.close == (1001, "gateway shutting down")
    assert await trio.to_thread.run_sync(proc.wait, STEP) == 0
    await client.aclose()


async def test_sigterm_exits_as_soon_as_the_last_session_ends(
    nursery: trio.Nursery, tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    container = FrameContainer()
    upstream = await start_container(nursery, container)
    # A grace period far longer than the test may take: the exit must come from the session.
    proc, port = start_gateway_process(spawn, tmp_path, upstream, "--shutdown-grace", "600")
    with trio.fail_after(STEP):
        client = await H2Client.connect(nursery, port, tmp_path / "ca.pem")
        sid, signer = await client.open_signed("my-endpoint")
        await echo(client, sid, signer, b"hello", 1)
        proc.send_signal(signal.SIGTERM)
        await trio.sleep(0.3)
        assert proc.poll() is None  # still serving the open session
        # A new stream on the open connection is refused with 503 (not reset).
        late = await client.open(client.request_headers(), end_stream=True)
        late_state = await client.finished(late)
        assert late_state.status == 503
        assert late_state.reset is None
        await client.send(sid, signer.sign_end(), end_stream=True)
        state = await client.finished(sid)
        assert await trio.to_thread.run_sync(proc.wait, STEP) == 0
    assert state.ended
    assert [part_of(m)[2] for m in state.messages] == [b"hello"]
    [conn] = container.connections
    assert conn.close == (1000, "client closed input stream")
    await client.aclose()


async def test_a_second_signal_ends_the_grace_period_at_once(
    nursery: trio.Nursery, tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    container = FrameContainer()
    upstream = await start_container(nursery, container)
    proc, port = start_gateway_process(spawn, tmp_path, upstream, "--shutdown-grace", "600")
    with trio.fail_after(STEP):
        client = await H2Client.connect(nursery, port, tmp_path / "ca.pem")
        sid, signer = await client.open_signed("my-endpoint")
        await echo(client, sid, signer, b"hello", 1)
        proc.send_signal(signal.SIGTERM)
        await trio.sleep(0.3)
        assert proc.poll() is None  # waiting for the open session
        proc.send_signal(signal.SIGINT)
        assert await trio.to_thread.run_sync(proc.wait, STEP) == 0
    await client.aclose()


async def test_bad_grace_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cmd = [sys.executable, "-m", "sagebidi_perf.cli", "gateway", "--upstream", "ws://h:1"]
    cmd += ["--no-auth", "--cert-dir", str(tmp_path), "--shutdown-grace", "-1"]
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    )
    assert result.returncode == 2
    assert "shutdown_grace" in result.stderr


async def test_workers_share_one_port_and_one_ca(
    nursery: trio.Nursery, tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    container = FrameContainer()
    upstream = await start_container(nursery, container)
    proc, port = start_gateway_process(spawn, tmp_path, upstream, "--workers", "2")
    children = child_pids(proc.pid)
    assert len(children) == 2
    ca = (tmp_path / "ca.pem").read_bytes()
    results: list[bytes] = []

    async def one(i: int) -> None:
        client = await H2Client.connect(nursery, port, tmp_path / "ca.pem")
        try:
            sid, signer = await client.open_signed("my-endpoint")
            await echo(client, sid, signer, f"worker test {i}".encode(), 1)
            await client.send(sid, signer.sign_end(), end_stream=True)
            state = await client.finished(sid)
            results.append(part_of(state.messages[0])[2])
        finally:
            await client.aclose()

    with trio.fail_after(STEP):
        async with trio.open_nursery() as inner:
            for i in range(20):
                inner.start_soon(one, i)
    assert sorted(results) == sorted(f"worker test {i}".encode() for i in range(20))
    assert (tmp_path / "ca.pem").read_bytes() == ca  # made once, by the parent
    proc.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(proc.wait, STEP) == 0
    assert not any(alive(child) for child in children)


def child_pids(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def alive(pid: str) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cmd = [sys.executable, "-m", "sagebidi_perf.cli", "gateway", "--upstream", "ws://h:1"]
    cmd += ["--no-auth", "--cert-dir", str(tmp_path), "--port", "0", "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "fixed --port" in result.stderr
