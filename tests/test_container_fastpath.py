"""The container session's socket fast path (session.py: one read buffer shared by every session,
``os.readv``/``os.write`` without a scheduling pass, a forced yield every ``WRITES_PER_YIELD``
writes). Real sockets on loopback, a hard timeout on every wait, no timing assertions."""

from __future__ import annotations

import random

import trio
import wsproto.events as ev

from container_helpers import start_server
from sagebidi_perf.container import FunctionModel, Session
from sagebidi_perf.container.session import READ_BUFFER_SIZE, WRITES_PER_YIELD
from sagebidi_perf.models.echo import EchoModel
from wsproto_client import Closed, connect

SIZES = [0, 1, 125, 126, 65535, 65536, 200_000, READ_BUFFER_SIZE + 12_345]


async def test_sessions_sharing_the_read_buffer_each_get_their_own_bytes(
    nursery: trio.Nursery,
) -> None:
    """Twelve sessions stream distinct payloads at once (some larger than the shared read
    buffer, so they arrive over several reads interleaved with other sessions' reads); every
    echo must be that session's own bytes, whole and in order."""
    server = await start_server(nursery, EchoModel())
    rng = random.Random(7)

    async def one(index: int) -> None:
        plan: list[str | bytes] = []
        for size in rng.sample(SIZES, len(SIZES)):
            plan.append(rng.randbytes(size))
            plan.append(f"text {index} " + "é" * (size % 1000))
        client = await connect(server.port)
        async with trio.open_nursery() as inner:

            async def sender() -> None:
                for message in plan:
                    await client.send(message)

            inner.start_soon(sender)
            for expected in plan:
                got = await client.receive()
                assert got == expected, (index, len(expected))
        await client.close()
        assert await client.receive() == Closed(1000, "")
        await client.aclose()

    with trio.fail_after(60):
        async with trio.open_nursery() as group:
            for i in range(12):
                group.start_soon(one, i)


async def test_a_model_that_only_sends_still_lets_other_tasks_run(nursery: trio.Nursery) -> None:
    """Writes the kernel accepts at once do not yield; a burst of them must still yield every
    WRITES_PER_YIELD writes, or a send-only model would starve the reader (and the pongs) and
    every other session."""
    burst = WRITES_PER_YIELD * 5
    ticks = 0
    seen: list[tuple[int, int]] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.lowlevel.checkpoint()
            ticks += 1

    async def flood(session: Session) -> None:
        before = ticks
        for i in range(burst):  # small frames: all fit in the socket buffer, no blocking
            await session.send(i.to_bytes(4, "big"))
        seen.append((before, ticks))
        await session.receive()  # until the client closes

    server = await start_server(nursery, FunctionModel(flood))
    nursery.start_soon(ticker)
    client = await connect(server.port)
    with trio.fail_after(30):
        for i in range(burst):
            assert await client.receive() == i.to_bytes(4, "big")
        await client.close()
        assert await client.receive() == Closed(1000, "")
    await client.aclose()
    ((before, after),) = seen
    assert after > before, "the model never yielded during its burst of writes"


async def test_a_ping_during_a_send_burst_is_answered(nursery: trio.Nursery) -> None:
    """The reader answers pings while the model floods the socket (the client reads slowly,
    so some writes fall back to the blocking path and some do not)."""

    async def flood(session: Session) -> None:
        while True:
            await session.send(b"x" * 1000)

    server = await start_server(nursery, FunctionModel(flood))
    client = await connect(server.port)
    with trio.fail_after(30):
        await client.ping(b"are you there")
        while True:
            event = await client.next_event()
            assert event is not None
            if isinstance(event, ev.Pong):
                assert event.payload == b"are you there"
                break
    await client.aclose()
