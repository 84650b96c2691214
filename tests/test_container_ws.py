"""The container's WebSocket sessions over real sockets, driven by an independent wsproto client."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import wsproto.events as ev

from container_helpers import start_server
from sagebidi_perf.container import Model, Session, UpgradeRequest
from sagebidi_perf.container.session import FAILURE_DRAIN
from sagebidi_perf.models.echo import EchoModel
from wsproto_client import Closed, WsClient, connect

pytestmark = pytest.mark.timeout(60)

Connect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def ws() -> AsyncIterator[Connect]:
    """``await ws(port, target)`` opens a client that is closed when the test ends."""
    clients: list[WsClient] = []

    async def open_client(port: int, target: str = "/invocations-bidirectional-stream") -> WsClient:
        client = await connect(port, target)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.aclose()


class Recorder(Model):
    """Records what it received; replies per message with what the test asks."""

    paths = ("/invocations-bidirectional-stream", "/v1/listen")

    def __init__(self) -> None:
        self.requests: list[UpgradeRequest] = []
        self.received: list[str | bytes] = []
        self.got_message = trio.Event()
        self.release = trio.Event()
        self.finished = trio.Event()
        self.cancelled = False

    async def session(self, session: Session) -> None:
        self.requests.append(session.request)
        try:
            async for message in session:
                self.received.append(message)
                self.got_message.set()
                if message == "stall":
                    await self.release.wait()
                elif message == "crash":
                    raise RuntimeError("model crashed on purpose")
                elif message == "fragments":
                    await session.send_fragment("one ", final=False)
                    await session.send_fragment("two ", final=False)
                    await session.send_fragment("three", final=True)
                elif message == "bye":
                    await session.close(4000, "model said bye")
                    return
                else:
                    await session.send(message)
        except trio.Cancelled:
            self.cancelled = True
            raise
        finally:
            self.finished.set()


async def test_echo_text_stays_text_binary_stays_binary(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, EchoModel())
    client = await ws(server.port)
    for message in [
        "hello",
        "ünïcødé ✓",
        "",
        b"\x00\x01\x02",
        b"",
        os.urandom(70_000),
        "x" * 200_000,
    ]:
        await client.send(message)
        assert await client.receive() == message
    await client.close()
    assert await client.receive() == Closed(1000, "")


async def test_fragmented_message_arrives_whole(nursery: trio.Nursery, ws: Connect) -> None:
    model = Recorder()
    server = await start_server(nursery, model)
    client = await ws(server.port)
    await client.send_fragment("PART-", final=False)
    await client.send_fragment("IAL-", final=False)
    await client.send_fragment("COMPLETE", final=True)
    assert await client.receive() == "PART-IAL-COMPLETE"
    await client.send_fragment(b"\x01", final=False)
    await client.send_fragment(b"\x02", final=True)
    assert await client.receive() == b"\x01\x02"
    assert model.received == ["PART-IAL-COMPLETE", b"\x01\x02"]


async def test_model_streams_a_reply_as_fragments(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, Recorder())
    client = await ws(server.port)
    await client.send("fragments")
    frames = []
    while True:
        event = await client.next_event()
        assert isinstance(event, ev.TextMessage)
        frames.append((event.data, event.message_finished))
        if event.message_finished:
            break
    assert frames == [("one ", False), ("two ", False), ("three", True)]


async def test_path_and_query_reach_the_model(nursery: trio.Nursery, ws: Connect) -> None:
    model = Recorder()
    server = await start_server(nursery, model)
    client = await ws(server.port, "/v1/listen?model=nova-3&language=en&keyword=a%20b")
    await client.send("hi")
    assert await client.receive() == "hi"
    request = model.requests[0]
    assert request.path == "/v1/listen"
    assert request.query == (("model", "nova-3"), ("language", "en"), ("keyword", "a b"))
    assert ("host", f"127.0.0.1:{server.port}") in request.headers


async def test_model_exception_closes_1011_with_reason(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, Recorder())
    client = await ws(server.port)
    await client.send("crash")
    closed = await client.receive()
    assert closed == Closed(1011, "RuntimeError: model crashed on purpose")


async def test_model_closes_with_its_own_code(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, Recorder())
    client = await ws(server.port)
    await client.send("bye")
    assert await client.receive() == Closed(4000, "model said bye")


async def test_model_returning_closes_1000(nursery: trio.Nursery, ws: Connect) -> None:
    class OneShot(Model):
        async def session(self, session: Session) -> None:
            await session.send("only reply")

    server = await start_server(nursery, OneShot())
    client = await ws(server.port)
    assert await client.receive() == "only reply"
    assert await client.receive() == Closed(1000, "")


def masked_frame(b0: int, payload: bytes) -> bytes:
    """A raw client frame (`b0` is the whole first byte: FIN, RSV bits, opcode), masked, for
    frames wsproto refuses to build."""
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        bytes([b0, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def test_reply_precedes_the_protocol_error_close(nursery: trio.Nursery, ws: Connect) -> None:
    """Autobahn 3.2: a text message, a frame with RSV2 set and a ping, in one TCP write. The
    connection fails with 1002, but only after the echo of the message that came first; the ping
    after the bad frame is never answered."""
    server = await start_server(nursery, EchoModel())
    client = await ws(server.port)
    flight = client.ws.send(ev.TextMessage("Hello, world!"))
    flight += masked_frame(0xA1, b"Hello, world!")  # FIN + RSV2 + text
    flight += client.ws.send(ev.Ping(b""))
    await client.stream.send_all(flight)
    events = []
    while not isinstance(event := await client.next_event(), ev.CloseConnection | None):
        events.append(event)
    assert events == [ev.TextMessage("Hello, world!")]  # the echo first, no pong
    assert isinstance(event, ev.CloseConnection)
    assert event.code == 1002
    assert "reserved bits" in (event.reason or "")
    with trio.fail_after(10):
        await server.wait_idle()


async def test_every_reply_before_a_violation_goes_out_first(
    nursery: trio.Nursery, ws: Connect
) -> None:
    """Several messages (one fragmented) before invalid UTF-8: all echoed in order, then 1007."""
    server = await start_server(nursery, EchoModel())
    client = await ws(server.port)
    flight = b"".join(client.ws.send(ev.BytesMessage(b"%d" % i)) for i in range(20))
    flight += client.ws.send(ev.TextMessage("frag", message_finished=False))
    flight += client.ws.send(ev.TextMessage("mented", message_finished=True))
    flight += masked_frame(0x81, b"\xce\xba\xed\xa0\x80")
    flight += client.ws.send(ev.TextMessage("never delivered"))
    await client.stream.send_all(flight)
    for i in range(20):
        assert await client.receive() == b"%d" % i
    assert await client.receive() == "fragmented"
    closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1007


async def test_a_busy_model_delays_the_protocol_error_close_a_bounded_time(
    nursery: trio.Nursery, ws: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    """A model that never comes back to receive() cannot hold the failing connection open:
    the Close goes out after FAILURE_DRAIN, and the model is then cancelled."""
    model = Recorder()
    server = await start_server(nursery, model, close_grace=5.0)
    client = await ws(server.port)
    flight = client.ws.send(ev.TextMessage("stall")) + masked_frame(0x83, b"")  # opcode 3
    start = trio.current_time()
    await client.stream.send_all(flight)
    closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1002
    assert trio.current_time() - start >= FAILURE_DRAIN
    assert model.received == ["stall"]
    with trio.fail_after(10):
        await model.finished.wait()
    assert model.cancelled


async def test_invalid_utf8_closes_1007(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, EchoModel())
    client = await ws(server.port)
    # A text frame with invalid UTF-8, masked, written raw (wsproto refuses to send it).
    payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await client.stream.send_all(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1007


async def test_oversized_message_closes_1009(nursery: trio.Nursery, ws: Connect) -> None:
    server = await start_server(nursery, EchoModel(), max_message_size=64 * 1024)
    client = await ws(server.port)
    await client.send(b"x" * (64 * 1024))
    assert await client.receive() == b"x" * (64 * 1024)
    await client.send(b"x" * (64 * 1024 + 1))
    closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1009


async def test_peer_vanishing_cancels_the_model(nursery: trio.Nursery, ws: Connect) -> None:
    model = Recorder()
    server = await start_server(nursery, model)
    client = await ws(server.port)
    await client.send("stall")
    with trio.fail_after(10):
        await model.got_message.wait()
    await client.aclose()  # TCP gone, no Close frame
    with trio.fail_after(10):
        await model.finished.wait()
    assert model.cancelled
    with trio.fail_after(10):
        await server.wait_idle()


async def test_pongs_never_wait_for_a_stalled_model(nursery: trio.Nursery, ws: Connect) -> None:
    """The model is stuck (it never reads); the reader still answers every ping at once."""
    model = Recorder()
    server = await start_server(nursery, model, queue_size=64)
    client = await ws(server.port)
    await client.send("stall")
    for i in range(5):
        for _ in range(10):
            await client.send(b"audio" * 640)
        await client.ping(b"sidecar-%d" % i)
        with trio.fail_after(10):  # a starved reader would hang here until the model is released
            while True:
                event = await client.next_event()
                if isinstance(event, ev.Pong):
                    assert event.payload == b"sidecar-%d" % i
                    break
    model.release.set()
    for _ in range(50):
        assert await client.receive() == b"audio" * 640


async def test_full_queue_closes_1013_after_the_timeout(
    nursery: trio.Nursery, ws: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    model = Recorder()
    server = await start_server(nursery, model, queue_size=4, queue_full_timeout=30.0)
    client = await ws(server.port)
    await client.send("stall")
    start = trio.current_time()
    for _ in range(20):
        await client.send(b"x" * 100)
    closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1013
    assert "queue full for 30s" in closed.reason
    assert trio.current_time() - start >= 30.0


async def test_server_pings_close_after_five_misses(
    nursery: trio.Nursery, ws: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start_server(nursery, EchoModel(), ping_interval=60.0, ping_misses=5)
    client = await ws(server.port)
    start = trio.current_time()
    pings = 0
    while True:
        event = await client.next_event()
        if isinstance(event, ev.Ping):
            pings += 1  # never answered
        elif isinstance(event, ev.CloseConnection):
            break
    assert pings == 5
    assert event.code == 1011
    assert 360.0 <= trio.current_time() - start < 361.0


async def test_answered_server_pings_keep_the_session(
    nursery: trio.Nursery, ws: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start_server(nursery, EchoModel(), ping_interval=60.0, ping_misses=5)
    client = await ws(server.port)
    for _ in range(10):  # ten minutes of virtual time, every ping answered
        event = await client.next_event()
        assert isinstance(event, ev.Ping)
        await client.pong(event.payload)
    await client.send("still here")
    assert await client.receive() == "still here"


async def test_echo_accounting_many_concurrent_sessions(nursery: trio.Nursery, ws: Connect) -> None:
    """Every frame of every session comes back, in order, byte-exact."""
    server = await start_server(nursery, EchoModel())
    rng = random.Random(1234)
    plans = [
        [
            rng.randbytes(rng.choice([1, 100, 3200, 20_000])) if rng.random() < 0.7 else f"t{s}-{i}"
            for i in range(40)
        ]
        for s in range(100)
    ]

    async def run(plan: list[str | bytes]) -> None:
        client = await ws(server.port)
        async with trio.open_nursery() as inner:

            async def sender() -> None:
                for message in plan:
                    await client.send(message)

            inner.start_soon(sender)
            for expected in plan:
                assert await client.receive() == expected
        await client.close()
        assert await client.receive() == Closed(1000, "")

    with trio.fail_after(50):
        async with trio.open_nursery() as group:
            for plan in plans:
                group.start_soon(run, plan)


async def test_new_connections_are_served_while_1000_sessions_are_open(
    nursery: trio.Nursery, ws: Connect
) -> None:
    """SageMaker's contract: accept socket connections within 250 ms. 250 ms is the contract's
    number (an upgrade takes ~1 ms here), not a tuned performance threshold."""
    server = await start_server(nursery, EchoModel())
    clients = []
    for i in range(1000):
        client = await ws(server.port)
        # A round trip proves the server has registered the session (the 101 goes out first).
        await client.send(f"session {i}")
        assert await client.receive() == f"session {i}"
        clients.append(client)
    # The client may see the 101 before the server task that sent it has registered the
    # session (Trio runs both in the same batch, in random order): let the server settle.
    await trio.testing.wait_all_tasks_blocked()
    assert len(server.sessions) == 1000
    latencies = []
    for _ in range(20):
        started = trio.current_time()
        client = await ws(server.port)
        latencies.append(trio.current_time() - started)
        await client.send("late")
        assert await client.receive() == "late"
    assert max(latencies) < 0.250, latencies
    for client in clients[::97]:  # the old sessions still work
        await client.send(b"still open")
        assert await client.receive() == b"still open"
