"""The load tester's fast path (one pacer for every session's sends, echoes read in hub
callbacks) against peers that misbehave: a server that stops answering, one that ends the
session midway, one that does not read for a while (sends pile up in the socket and a writer
greenlet finishes them). Every Locust run is a subprocess; the checks are on what the report
says, never on timings."""

from __future__ import annotations

from pathlib import Path

import trio
from test_loadtest import run_locust

from container_helpers import start_server
from sagebidi_perf.container import Model, Session


class StallingEcho(Model):
    """Echoes ``after`` messages, then reads on but answers nothing."""

    def __init__(self, after: int) -> None:
        self.after = after

    async def session(self, session: Session) -> None:
        n = 0
        async for message in session:
            n += 1
            if n <= self.after:
                await session.send(message)


class QuittingEcho(Model):
    """Echoes ``after`` messages, then closes the session with 1011."""

    def __init__(self, after: int) -> None:
        self.after = after

    async def session(self, session: Session) -> None:
        n = 0
        async for message in session:
            await session.send(message)
            n += 1
            if n >= self.after:
                await session.close(1011, "model gave up")
                return


class LateReader(Model):
    """Reads nothing for ``pause`` seconds (the client's sends fill the socket buffers), then
    echoes everything."""

    def __init__(self, pause: float) -> None:
        self.pause = pause

    async def session(self, session: Session) -> None:
        await trio.sleep(self.pause)
        async for message in session:
            await session.send(message)


async def test_silent_server_times_out(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, StallingEcho(after=3))
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--session-seconds",
        "30",
        "--frame-rate",
        "20",
        "--receive-timeout",
        "0.7",
        "EchoSessions",
        seconds=4,
    )
    report = run.report
    assert report is not None, run.explain()
    assert run.returncode == 1, run.explain()
    # Each session got its 3 echoes, then no bytes for the receive timeout: a timeout failure.
    assert set(report["errors"]) == {"timeout"}, run.explain()
    assert report["sessions"]["failed"] >= 2
    assert report["sessions"]["ok"] == 0
    # (a session cut short by the end of the run may have fewer)
    counts = report["histogram_counts"]
    assert 3 * report["sessions"]["failed"] <= counts["round_trip"] <= 3 * counts["ttft"]


async def test_server_quitting_midway_fails_the_session(
    nursery: trio.Nursery,
    tmp_path: Path,
) -> None:
    server = await start_server(nursery, QuittingEcho(after=5))
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--session-seconds",
        "30",
        "--frame-rate",
        "20",
        "EchoSessions",
        seconds=3,
    )
    report = run.report
    assert report is not None, run.explain()
    assert run.returncode == 1, run.explain()
    errors = report["errors"]
    assert errors, run.explain()
    # The Close (1011) ends the stream before the session's 600 echoes.
    assert all(k in ("close_1011", "closed_early") for k in errors), errors
    assert sum(errors.values()) == report["sessions"]["failed"] >= 2
    assert report["sessions"]["ok"] == 0
    counts = report["histogram_counts"]
    # 5 echoes per failed session (a session cut short by the end of the run may have fewer)
    assert 5 * report["sessions"]["failed"] <= counts["round_trip"] <= 5 * counts["ttft"]


async def test_backpressure_keeps_every_byte(nursery: trio.Nursery, tmp_path: Path) -> None:
    # 8 MB frames at 20/s against a server that starts reading after 1.5 s: a frame does not fit
    # in the socket at once, writer greenlets finish the sends (and the reader's writes queue
    # behind them), and every echo still comes back byte for byte.
    server = await start_server(nursery, LateReader(pause=1.5))
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--session-seconds",
        "1",
        "--frame-rate",
        "20",
        "--frame-bytes",
        str(8 * 2**20),
        "EchoSessions",
        seconds=8,
    )
    report = run.report
    assert report is not None, run.explain()
    assert run.returncode == 0, run.explain()
    assert report["errors"] == {}
    assert report["sessions"]["ok"] >= 2
    t = report["throughput"]
    counts = report["histogram_counts"]
    assert t["frames_received"] >= 20 * report["sessions"]["ok"]
    assert counts["round_trip"] == t["frames_received"]
    assert t["bytes_received"] == 8 * 2**20 * t["frames_received"]
    assert counts["jitter"] == t["frames_sent"]
