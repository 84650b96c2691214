"""The ``ws`` client transport against the real container runtime (in-process), with both drivers:
the blocking driver in a worker thread and the Trio driver natively; raw servers for faults the
container never makes; and the blocking driver under gevent in subprocesses."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from client_helpers import Client
from container_helpers import start_server
from sagebidi_perf.client import (
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    Message,
    ProtocolError,
    Session,
    SessionStateError,
    TrioSession,
    WsCore,
    connect_ws,
    open_ws,
)
from sagebidi_perf.client.ws import parse_ws_url
from sagebidi_perf.container import Model, RejectUpgrade, UpgradeRequest
from sagebidi_perf.container import Session as ModelSession
from sagebidi_perf.models.echo import EchoModel
from sagebidi_perf.websocket import CLOSE, WebSocketConnection, accept_key

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


class Recorder(Model):
    """Echo, plus commands; records the upgrade requests and what it received."""

    paths = ("/invocations-bidirectional-stream", "/v1/listen")

    def __init__(self) -> None:
        self.requests: list[UpgradeRequest] = []
        self.received: list[str | bytes] = []
        self.release = trio.Event()

    def check_upgrade(self, request: UpgradeRequest) -> None:
        if "reject" in request.query_dict():
            raise RejectUpgrade("rejected: bad query parameter", status=400)

    async def session(self, session: ModelSession) -> None:
        self.requests.append(session.request)
        async for message in session:
            self.received.append(message)
            if message == "stall":
                await self.release.wait()
                await session.send("released")
            elif message == "crash":
                raise RuntimeError("model crashed on purpose")
            elif message == "fragments":
                await session.send_fragment("one ", final=False)
                await session.send_fragment("twö ", final=False)
                await session.send_fragment("three", final=True)
            elif message == "bye":
                await session.close(4000, "model said bye")
                return
            elif message == "done":
                await session.send("last words")
                return
            else:
                await session.send(message)


Open = Callable[..., Awaitable[Client]]


@pytest.fixture(params=["blocking", "trio"])
async def open_client(request: pytest.FixtureRequest) -> AsyncIterator[Open]:
    """``await open_client(url, **kwargs)`` with the driver under test; closed at the end."""
    clients: list[Client] = []

    async def opener(url: str, **kwargs: Any) -> Client:
        if request.param == "blocking":
            session: Session | TrioSession = await trio.to_thread.run_sync(
                lambda: connect_ws(url, connect_timeout=10, **kwargs)
            )
        else:
            with trio.fail_after(10):
                session = await open_ws(url, **kwargs)
        client = Client(session)
        clients.append(client)
        return client

    yield opener
    for client in clients:
        await client.close()


def url_of(port: int | None, path: str = "") -> str:
    assert port is not None
    return f"ws://127.0.0.1:{port}{path}"


# -- against the container ----------------------------------------------------------------------


async def test_echo_keeps_types(nursery: trio.Nursery, open_client: Open) -> None:
    server = await start_server(nursery, EchoModel())
    client = await open_client(url_of(server.port))
    messages: list[str | bytes] = [
        "hello",
        "ünïcødé ✓",
        "",
        b"\x00\x01\x02",
        b"",
        os.urandom(70_000),
        "x" * 300_000,
    ]
    for message in messages:
        before = time.perf_counter()
        await client.send(message)
        reply = await client.receive()
        assert reply is not None
        assert reply.data == message
        assert reply.text is isinstance(message, str)
        assert reply.final is True
        assert before <= reply.received_at <= time.perf_counter()
    await client.end_input()
    assert await client.receive() is None
    assert client.core.close_code == 1000


async def test_sending_fragments(nursery: trio.Nursery, open_client: Open) -> None:
    model = Recorder()
    server = await start_server(nursery, model)
    client = await open_client(url_of(server.port))
    await client.send_fragment("PART-", False)
    await client.send_fragment("IAL-", False)
    await client.send_fragment("COMPLETE", True)
    await client.send_fragment(b"\x01", False)
    await client.send_fragment(b"\x02", True)
    replies = [await client.receive(), await client.receive()]
    assert [(m.data, m.text, m.final) for m in replies if m is not None] == [
        ("PART-IAL-COMPLETE", True, True),
        (b"\x01\x02", False, True),
    ]
    assert model.received == ["PART-IAL-COMPLETE", b"\x01\x02"]


async def test_receiving_fragments_whole_or_as_parts(
    nursery: trio.Nursery, open_client: Open
) -> None:
    server = await start_server(nursery, Recorder())
    whole = await open_client(url_of(server.port))
    await whole.send("fragments")
    reply = await whole.receive()
    assert reply is not None
    assert (reply.data, reply.text, reply.final) == (
        "one twö three",
        True,
        True,
    )
    parts = await open_client(url_of(server.port), fragments=True)
    await parts.send("fragments")
    got = []
    for _ in range(3):
        message = await parts.receive()
        assert message is not None
        got.append((message.data, message.text, message.final))
    assert got == [(b"one ", True, False), ("twö ".encode(), True, False), (b"three", True, True)]


async def test_invocation_path_and_query_reach_the_model(
    nursery: trio.Nursery, open_client: Open
) -> None:
    model = Recorder()
    server = await start_server(nursery, model)
    client = await open_client(
        url_of(server.port),
        model_invocation_path="v1/listen",
        model_query_string="model=nova-3&language=en",
        headers=[("X-Test", "1")],
    )
    await client.send("hi")
    assert (await client.receive()) is not None
    default = await open_client(url_of(server.port))
    await default.send("hi")
    assert (await default.receive()) is not None
    first, second = model.requests
    assert (first.path, first.raw_query) == ("/v1/listen", "model=nova-3&language=en")
    assert ("x-test", "1") in first.headers
    assert (second.path, second.raw_query) == ("/invocations-bidirectional-stream", "")


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [("/v1/listen?reject=1", 400, "rejected: bad query parameter"), ("/nope", 404, "")],
)
async def test_refused_upgrade(
    nursery: trio.Nursery, open_client: Open, path: str, status: int, text: str
) -> None:
    server = await start_server(nursery, Recorder())
    with pytest.raises(HandshakeError) as info:
        await open_client(url_of(server.port, path))
    assert info.value.status == status
    assert text.encode() in info.value.body
    assert f"HTTP {status}" in str(info.value)


async def test_model_close_codes(nursery: trio.Nursery, open_client: Open) -> None:
    server = await start_server(nursery, Recorder())
    client = await open_client(url_of(server.port))
    await client.send("bye")
    with pytest.raises(ConnectionClosedError, match="4000: model said bye") as info:
        await client.receive()
    assert (info.value.code, info.value.reason) == (4000, "model said bye")
    with pytest.raises(ConnectionClosedError):  # stays raised
        await client.receive()
    with pytest.raises(ConnectionClosedError):
        await client.send("after")
    crash = await open_client(url_of(server.port))
    await crash.send("crash")
    with pytest.raises(ConnectionClosedError) as info:
        await crash.receive()
    assert info.value.code == 1011
    assert "model crashed on purpose" in info.value.reason
    # A model that returns closes with 1000: a clean end after its last message.
    done = await open_client(url_of(server.port))
    await done.send("done")
    last = await done.receive()
    assert last is not None
    assert last.data == "last words"
    assert await done.receive() is None
    with pytest.raises(SessionStateError):
        await done.send("after the end")


@pytest.mark.parametrize(("n", "size"), [(300, 100), (40, 300_000)])
async def test_concurrent_sender_and_receiver(
    nursery: trio.Nursery, open_client: Open, n: int, size: int
) -> None:
    """One task sends while another receives on the same session (the load tester's shape).
    With large messages both directions fill their TCP buffers at once: the reader must keep
    reading while a write is blocked, or the two sides deadlock."""
    server = await start_server(nursery, EchoModel())
    client = await open_client(url_of(server.port))
    received: list[str | bytes] = []

    async def receiver() -> None:
        for _ in range(n):
            message = await client.receive()
            assert message is not None
            received.append(message.data)

    async with trio.open_nursery() as inner:
        inner.start_soon(receiver)
        for i in range(n):
            await client.send(f"message {i}" * size if i % 2 else bytes([i % 256]) * size)
    expected = [f"message {i}" * size if i % 2 else bytes([i % 256]) * size for i in range(n)]
    assert received == expected


async def test_pings_are_answered_while_receiving(nursery: trio.Nursery, open_client: Open) -> None:
    """The container pings every 100 ms and closes after 5 misses; a client waiting in receive()
    answers them (pings are read, and answered, only while someone receives)."""
    model = Recorder()
    server = await start_server(nursery, model, ping_interval=0.1, ping_misses=5)
    client = await open_client(url_of(server.port))
    await client.send("stall")

    async def release_later() -> None:
        await trio.sleep(1.2)  # 12 ping intervals while the model is blocked
        model.release.set()

    nursery.start_soon(release_later)
    reply = await client.receive()
    assert reply is not None
    assert reply.data == "released"
    await client.send("still open")
    reply = await client.receive()
    assert reply is not None
    assert reply.data == "still open"


async def test_large_messages_both_ways(nursery: trio.Nursery, open_client: Open) -> None:
    server = await start_server(nursery, EchoModel())
    client = await open_client(url_of(server.port))
    big = os.urandom(4 * 1024 * 1024)
    await client.send(big)
    reply = await client.receive()
    assert reply is not None
    assert reply.data == big


# -- raw servers for faults ----------------------------------------------------------------------


async def raw_server(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    nursery.start_soon(trio.serve_listeners, guarded, listeners)
    return port


async def read_request(stream: trio.SocketStream) -> tuple[h11.Connection, h11.Request]:
    http = h11.Connection(h11.SERVER)
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await stream.receive_some(65536))
            continue
        assert isinstance(event, h11.Request)
        return http, event


def upgrade_response(request: h11.Request, accept: str | None = None) -> bytes:
    key = dict(request.headers)[b"sec-websocket-key"]
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + (accept or accept_key(key)).encode() + b"\r\n\r\n"
    )


def server_frames(*messages: str | bytes) -> bytes:
    ws = WebSocketConnection(client=False)
    for message in messages:
        ws.send(message)
    return ws.outgoing()


async def test_tcp_drop_mid_stream(nursery: trio.Nursery, open_client: Open) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        _, request = await read_request(stream)
        # The 101 and a first message in one write; then TCP closes without a Close frame.
        await stream.send_all(upgrade_response(request) + server_frames("greeting"))

    port = await raw_server(nursery, handler)
    client = await open_client(url_of(port))
    first = await client.receive()
    assert first is not None
    assert first.data == "greeting"
    with pytest.raises(ConnectionClosedError, match="without a WebSocket Close") as info:
        await client.receive()
    assert info.value.code == 1006


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        ("bad-accept", ProtocolError, "Sec-WebSocket-Accept"),
        ("no-upgrade", ProtocolError, "Upgrade header"),
        ("extension", ProtocolError, "extension"),
        ("garbage", ProtocolError, "bad HTTP response"),
        ("close-at-once", ConnectionClosedError, "during the WebSocket handshake"),
        ("masked-frame", ProtocolError, "broke the WebSocket protocol"),
        ("refuse-then-close", HandshakeError, "HTTP 503: busy"),
    ],
)
async def test_hostile_servers(
    nursery: trio.Nursery, open_client: Open, reply: str, error: type[Exception], match: str
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        _, request = await read_request(stream)
        if reply == "bad-accept":
            await stream.send_all(upgrade_response(request, accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        elif reply == "no-upgrade":
            key = dict(request.headers)[b"sec-websocket-key"]
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
            )
        elif reply == "extension":
            head = upgrade_response(request)[:-2]
            await stream.send_all(head + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
        elif reply == "garbage":
            await stream.send_all(b"\x16\x03\x01\x00garbage that is not HTTP\r\n\r\n")
        elif reply == "close-at-once":
            return
        elif reply == "masked-frame":
            # A masked frame from a server is a protocol violation (RFC 6455 §5.1).
            masked = bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2])
            await stream.send_all(upgrade_response(request) + masked)
            await trio.sleep(5)
            return
        elif reply == "refuse-then-close":
            await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy")
            return
        await trio.sleep(5)

    port = await raw_server(nursery, handler)

    async def open_and_receive() -> None:
        client = await open_client(url_of(port))
        await client.receive()

    with pytest.raises(error, match=match):
        await open_and_receive()


async def test_oversized_message_fails_the_connection(
    nursery: trio.Nursery, open_client: Open
) -> None:
    closes: list[bytes | bytearray] = []
    got_close = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        _, request = await read_request(stream)
        # "ok", then only the head of a 300 kB frame: the client must refuse it from its header.
        frames = server_frames("ok", b"x" * 300_000)[: 4 + 10 + 100]
        await stream.send_all(upgrade_response(request) + frames)
        with trio.move_on_after(5):
            closes.append(await stream.receive_some(1024))
        got_close.set()

    port = await raw_server(nursery, handler)
    client = await open_client(url_of(port), max_message_size=100_000)
    first = await client.receive()
    assert first is not None
    assert first.data == "ok"
    with pytest.raises(ProtocolError, match="we closed 1009"):
        await client.receive()
    with trio.fail_after(10):
        await got_close.wait()
    ws = WebSocketConnection(client=False)
    events = ws.receive(closes[0])
    assert events[0][0] == CLOSE
    assert events[0][1][0] == 1009


async def test_connection_refused(open_client: Open) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(ConnectError, match="cannot connect"):
            await open_client(url_of(port))


async def test_blocking_waits_are_bounded(nursery: trio.Nursery) -> None:
    """A server that accepts and never answers: the connect fails with ClientTimeoutError, and
    a receive on a quiet session times out and leaves it usable."""

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await raw_server(nursery, silent)
    with pytest.raises(ClientTimeoutError, match=r"handshake response timed out after 0\.2 s"):
        await trio.to_thread.run_sync(lambda: connect_ws(url_of(port), connect_timeout=0.2))
    model = Recorder()
    server = await start_server(nursery, model)
    session = await trio.to_thread.run_sync(lambda: connect_ws(url_of(server.port), timeout=5))
    try:
        await trio.to_thread.run_sync(session.send, "stall")
        with pytest.raises(ClientTimeoutError, match="receive timed out"):
            await trio.to_thread.run_sync(session.receive, 0.1)
        model.release.set()
        reply = await trio.to_thread.run_sync(session.receive, 5.0)
        assert reply is not None
        assert reply.data == "released"
    finally:
        await trio.to_thread.run_sync(session.close)
    assert session.closed
    with pytest.raises(SessionStateError, match="closed"):
        session.send("after close")


async def test_trio_timeouts_belong_to_the_caller(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await raw_server(nursery, silent)
    with pytest.raises(trio.TooSlowError), trio.fail_after(0.2):
        await open_ws(url_of(port))
    server = await start_server(nursery, EchoModel())
    async with await open_ws(url_of(server.port)) as session:
        with trio.move_on_after(0.1):
            await session.receive()
        await session.send("still fine")
        reply = await session.receive()
        assert reply is not None
        assert reply.data == "still fine"
    assert session.closed


async def test_blocking_context_manager_aborts_on_error(nursery: trio.Nursery) -> None:
    model = Recorder()
    server = await start_server(nursery, model)

    def run() -> Session:
        opened: list[Session] = []

        def app() -> None:
            with connect_ws(url_of(server.port)) as s:
                opened.append(s)
                s.send("x")
                raise RuntimeError("app failed")

        with pytest.raises(RuntimeError, match="app failed"):
            app()
        return opened[0]

    session = await trio.to_thread.run_sync(run)
    assert session.closed
    with pytest.raises(SessionStateError, match="aborted"):
        session.receive(0.1)


async def test_blocking_threads_share_a_session(nursery: trio.Nursery) -> None:
    """A sender thread and a receiver thread on one blocking session."""
    server = await start_server(nursery, EchoModel())
    session = await trio.to_thread.run_sync(lambda: connect_ws(url_of(server.port), timeout=10))
    n = 500
    received: list[str | bytes] = []

    def receiver() -> None:
        for _ in range(n):
            message = session.receive()
            assert message is not None
            received.append(message.data)

    def sender() -> None:
        for i in range(n):
            session.send(str(i) if i % 3 else bytes([i % 256]) * 1000)

    async with trio.open_nursery() as inner:
        inner.start_soon(trio.to_thread.run_sync, receiver)
        inner.start_soon(trio.to_thread.run_sync, sender)
    assert received == [str(i) if i % 3 else bytes([i % 256]) * 1000 for i in range(n)]
    await trio.to_thread.run_sync(session.close)


# -- the sans-IO core and URL handling ---------------------------------------------------------


def test_parse_ws_url() -> None:
    t = parse_ws_url("ws://127.0.0.1:8080")
    assert (t.secure, t.host, t.port, t.target, t.authority) == (
        False,
        "127.0.0.1",
        8080,
        "/invocations-bidirectional-stream",
        "127.0.0.1:8080",
    )
    t = parse_ws_url(
        "ws://h:8080/", model_invocation_path="/v1/listen", model_query_string="model=nova-3"
    )
    assert t.target == "/v1/listen?model=nova-3"
    assert parse_ws_url("wss://h/x?y=1").target == "/x?y=1"
    assert parse_ws_url("wss://h/x").authority == "h"
    assert parse_ws_url("ws://[::1]:9/").authority == "[::1]:9"
    for url, kwargs, message in [
        ("http://h/", {}, "not a ws://"),
        ("ws:///x", {}, "no host"),
        ("ws://u:p@h/", {}, "credentials"),
        ("ws://h:70000/", {}, "bad port"),
        ("ws://h/a", {"model_invocation_path": "b"}, "not both"),
        ("ws://h/?a=1", {"model_query_string": "b=2"}, "not both"),
        ("ws://h/", {"model_invocation_path": "a b"}, "cannot carry"),
        ("ws://h/", {"model_query_string": "a\r\nX: y"}, "cannot carry"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_ws_url(url, **kwargs)


def test_core_handshake_byte_by_byte_and_leftover_frames() -> None:
    core = WsCore("h:1", "/p?q=1", key="dGhlIHNhbXBsZSBub25jZQ==")
    request = core.data_to_send()
    assert request.startswith(b"GET /p?q=1 HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" in request
    assert b"Sec-WebSocket-Version: 13" in request
    with pytest.raises(SessionStateError, match="handshake"):
        core.send("too early")
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade"
        b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    frames = server_frames("first", b"second")  # 7 + 8 bytes
    response = head + frames
    for i in range(len(response)):
        core.receive_data(response[i : i + 1], float(i))
    assert core.ready
    assert core.status == 101
    assert core.next_message() == Message("first", True, True, float(len(head) + 6))
    assert core.next_message() == Message(b"second", False, True, float(len(response) - 1))
    assert core.next_message() is None
    assert not core.receive_closed
    # All in one read: the frames after the 101 come out of h11's trailing data.
    whole = WsCore("h:1", "/p?q=1", key="dGhlIHNhbXBsZSBub25jZQ==")
    whole.data_to_send()
    whole.receive_data(response, 5.0)
    assert [whole.next_message(), whole.next_message()] == [
        Message("first", True, True, 5.0),
        Message(b"second", False, True, 5.0),
    ]


def test_core_refusal_body_is_bounded() -> None:
    core = WsCore("h", "/")
    core.data_to_send()
    core.receive_data(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 100000\r\n\r\n", 1.0)
    core.receive_data(b"e" * 100_000, 2.0)
    with pytest.raises(HandshakeError) as info:
        core.next_message()
    assert info.value.status == 400
    assert len(info.value.body) == 64 * 1024


def test_core_oversized_response_head() -> None:
    core = WsCore("h", "/")
    core.data_to_send()
    core.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"a" * 70_000, 1.0)
    with pytest.raises(ProtocolError, match="bad HTTP response"):
        core.next_message()


# -- gevent (the load tester's world), in subprocesses -------------------------------------------

GEVENT_CLIENT = textwrap.dedent(
    """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json, sys
    import gevent, gevent.event
    from sagebidi_perf.client import connect_sagemaker, connect_ws

    assert "trio" not in sys.modules, "the blocking client must not import trio"
    ws_url, gateway_url, ca_file = sys.argv[1:4]
    sessions, messages = int(sys.argv[4]), int(sys.argv[5])
    all_open = gevent.event.Event()
    opened = []
    results = {"ws": 0, "sagemaker": 0}

    def connect(i):
        if i % 2 == 0:
            return "ws", connect_ws(ws_url, timeout=20, connect_timeout=20)
        return "sagemaker", connect_sagemaker(
            gateway_url, "my-endpoint", region="us-west-2",
            credentials=("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ca_file=ca_file, timeout=20, connect_timeout=20,
        )

    def user(i):
        transport, session = connect(i)
        with session:
            opened.append(i)
            if len(opened) == sessions:
                all_open.set()
            # Every session holds its connection until all are open: only possible if the
            # driver yields to the hub while it waits.
            assert all_open.wait(30), "sessions did not open concurrently"
            expected = [f"{i}:{j}" if j % 2 else f"{i}:{j}".encode() * 50 for j in range(messages)]
            got = []

            def receive():
                for _ in range(messages):
                    got.append(session.receive().data)

            receiver = gevent.spawn(receive)
            for message in expected:
                session.send(message)
            receiver.get(timeout=30)
            session.end_input()
            assert session.receive() is None
            results[transport] += got == expected

    greenlets = [gevent.spawn(user, i) for i in range(sessions)]
    gevent.joinall(greenlets, timeout=60, raise_error=True)
    print(json.dumps({
        **results,
        "patched": gevent.monkey.is_module_patched("socket"),
        "trio": "trio" in sys.modules,
    }))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the container on port {port} did not answer /ping")


def read_lines(
    proc: subprocess.Popen[bytes], n: int, stderr: Path, timeout: float = 60.0
) -> list[str]:
    """The first ``n`` lines of a child's stdout, waiting at most ``timeout`` (raw reads: a
    buffered readline could hold the next line where select() cannot see it)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while data.count(b"\n") < n:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(
                f"the child printed {data!r}, then nothing; its stderr:\n{stderr.read_text()}"
            )
        data += chunk
    return [line.strip() for line in data.decode().splitlines()[:n]]


@pytest.mark.timeout(180)
def test_blocking_driver_under_gevent(tmp_path: Path) -> None:
    """A container process, a gateway process in front of it, and a gevent-patched client
    process running 20 concurrent sessions (10 ws straight to the container, 10 sagemaker
    through the gateway), each with a sender and a receiver greenlet. No process imports both
    trio and gevent."""
    pytest.importorskip("gevent")
    port = free_port()
    cli = [sys.executable, "-c", "import sys; from sagebidi_perf.cli import main; sys.exit(main())"]
    procs = [
        subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        )
    ]
    gateway_log = (tmp_path / "gateway.log").open("wb")
    try:
        wait_ping(port)
        gateway = subprocess.Popen(
            [
                *cli,
                "gateway",
                "--upstream",
                f"ws://127.0.0.1:{port}",
                "--port",
                "0",
                "--cert-dir",
                str(tmp_path / "certs"),
                "--access-key-id",
                "AKIDEXAMPLE",
                "--secret-access-key",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "--region",
                "us-west-2",
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.PIPE,
            stderr=gateway_log,
        )
        procs.append(gateway)
        gateway_url, ca_line = read_lines(gateway, 2, tmp_path / "gateway.log")
        ca_file = ca_line.removeprefix("SSL_CERT_FILE=")
        assert gateway_url.startswith("https://localhost:")
        script = tmp_path / "gevent_client.py"
        script.write_text(GEVENT_CLIENT)
        result = subprocess.run(
            [
                sys.executable,
                str(script),
                f"ws://127.0.0.1:{port}",
                gateway_url,
                ca_file,
                "20",
                "40",
            ],
            capture_output=True,
            check=False,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr.decode()
        report = json.loads(result.stdout.decode().strip().splitlines()[-1])
        assert report == {"ws": 10, "sagemaker": 10, "patched": True, "trio": False}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        gateway_log.close()
