"""Shared helpers for the gateway tests: a TLS HTTP/2 client on the ``h2`` library (it trusts the
gateway's generated CA and signs like the official client), a raw frame-level WebSocket
container, a scripted container model, and a gateway on 127.0.0.1:0."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import trio

from sagebidi_perf.container import Model, RejectUpgrade, Session, UpgradeRequest
from sagebidi_perf.eventstream import EventStreamDecoder, Message, encode_message
from sagebidi_perf.gateway import GatewayServer, GatewaySettings, parse_upstream
from sagebidi_perf.sigv4 import STREAMING_EVENTS_PAYLOAD, EventSigner, amz_date, sign_request
from sagebidi_perf.websocket import BINARY, CLOSE, TEXT, WebSocketConnection, accept_key

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-west-2"


# -- the gateway -------------------------------------------------------------------------------


def gateway_settings(
    cert_dir: Path, upstream_port: int | None, **overrides: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "cert_dir": cert_dir,
        "credentials": {KEY: SECRET},
        "region": REGION,
        "handshake_timeout": 5.0,
        "upstream_connect_timeout": 5.0,
        "close_timeout": 2.0,
    }
    if upstream_port is not None:
        values["default_upstream"] = parse_upstream(f"ws://127.0.0.1:{upstream_port}")
    values.update(overrides)
    return GatewaySettings(**values)


async def start_gateway(
    nursery: trio.Nursery, cert_dir: Path, upstream_port: int | None, **overrides: Any
) -> GatewayServer:
    server = GatewayServer(gateway_settings(cert_dir, upstream_port, **overrides))
    await nursery.start(server.serve)
    return server


# -- request events ----------------------------------------------------------------------------


def payload_part(
    data: bytes,
    data_type: str | None = "UTF8",
    state: str | None = "COMPLETE",
    pad: str | None = None,
) -> bytes:
    """An inner PayloadPart event, headers in the official client's order."""
    headers: list[tuple[str, Any]] = [(":message-type", "event"), (":event-type", "PayloadPart")]
    if data_type is not None:
        headers.append(("DataType", data_type))
    if state is not None:
        headers.append(("CompletionState", state))
    if pad is not None:
        headers.append(("P", pad))
    if data:
        headers.append((":content-type", "application/octet-stream"))
    return encode_message(headers, data)


# -- the HTTP/2 client -------------------------------------------------------------------------


@dataclass
class StreamState:
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytearray = field(default_factory=bytearray)
    messages: list[Message] = field(default_factory=list)
    decoder: EventStreamDecoder = field(default_factory=EventStreamDecoder)
    ended: bool = False
    reset: int | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        changed, self.changed = self.changed, trio.Event()
        changed.set()

    @property
    def status(self) -> int | None:
        if self.headers is None:
            return None
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers or []).get(name, None)

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(bytes(self.body))
        return doc


class H2Client:
    """A TLS + HTTP/2 client for tests. A reader task decodes responses into :class:`StreamState`
    and gives window back as it reads (unless ``auto_ack`` is False)."""

    def __init__(self, stream: trio.abc.Stream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, StreamState] = {}
        self.window_changed = trio.Event()
        self.auto_ack = True
        self.unacked: list[tuple[int, int]] = []
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.eof = trio.Event()
        self._send_lock = trio.Lock()

    @classmethod
    async def connect(cls, nursery: trio.Nursery, port: int, ca: Path) -> H2Client:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2"])
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() == "h2"
        client = cls(tls, port)
        client.conn.initiate_connection()
        await client.flush()
        nursery.start_soon(client._reader)
        return client

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def _reader(self) -> None:
        try:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    break
                for event in self.conn.receive_data(data):
                    self._dispatch(event)
                try:
                    await self.flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
        finally:
            self.eof.set()
            for state in self.streams.values():
                state.notify()
            self.window_changed.set()

    def _dispatch(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        state = self.streams.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and state is not None:
            state.headers = [(bytes(k), bytes(v)) for k, v in event.headers or []]
        elif isinstance(event, h2.events.DataReceived) and state is not None:
            data = event.data or b""
            state.body += data
            if state.status == 200:
                state.messages.extend(state.decoder.feed(data))
            length = event.flow_controlled_length or 0
            if self.auto_ack:
                self.conn.acknowledge_received_data(length, sid)
            else:
                self.unacked.append((sid or 0, length))
        elif isinstance(event, h2.events.StreamEnded) and state is not None:
            state.ended = True
        elif isinstance(event, h2.events.StreamReset) and state is not None:
            state.reset = int(event.error_code or 0)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            changed, self.window_changed = self.window_changed, trio.Event()
            changed.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event
        if state is not None:
            state.notify()

    async def ack_all(self) -> None:
        self.auto_ack = True
        for sid, length in self.unacked:
            self.conn.acknowledge_received_data(length, sid)
        self.unacked.clear()
        await self.flush()

    def request_headers(
        self,
        endpoint: str = "my-endpoint",
        *,
        extra: list[tuple[str, str]] | None = None,
        path: str | None = None,
        method: str = "POST",
    ) -> list[tuple[str, str]]:
        return [
            (":method", method),
            (":scheme", "https"),
            (":authority", f"localhost:{self.port}"),
            (":path", path or f"/endpoints/{endpoint}/invocations-bidirectional-stream?"),
            ("content-type", "application/vnd.amazon.eventstream"),
            *(extra or []),
        ]

    async def open_signed(
        self,
        endpoint: str = "my-endpoint",
        *,
        extra: list[tuple[str, str]] | None = None,
        secret: str = SECRET,
        key: str = KEY,
        region: str = REGION,
        session_token: str | None = None,
    ) -> tuple[int, EventSigner]:
        """Send signed request headers (no END_STREAM); returns the stream id and the signer."""
        headers = self.request_headers(endpoint, extra=extra)
        signed = sign_request(
            method="POST",
            path=dict(headers)[":path"],
            headers=headers,
            payload_hash=STREAMING_EVENTS_PAYLOAD,
            access_key_id=key,
            secret_access_key=secret,
            region=region,
            service="sagemaker",
            amz_date=amz_date(),
            content_sha256_header=True,
            session_token=session_token,
        )
        sid = await self.open(headers + signed.added_headers)
        return sid, signed.event_signer()

    async def open(self, headers: list[tuple[str, str]], *, end_stream: bool = False) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = StreamState()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        await self.flush()
        return sid

    async def send(self, sid: int, data: bytes, *, end_stream: bool = False) -> None:
        """DATA within the flow-control windows."""
        view = memoryview(data)
        while True:
            window = min(
                self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size
            )
            size = min(window, len(view))
            if size == 0 and view:
                if self.eof.is_set():
                    raise ConnectionError("connection closed")
                await self.window_changed.wait()
                continue
            chunk, view = view[:size], view[size:]
            self.conn.send_data(sid, chunk.tobytes(), end_stream=end_stream and not view)
            await self.flush()
            if not view:
                return

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the TLS stream (hand-made frames), bypassing h2."""
        async with self._send_lock:
            await self.stream.send_all(data)

    async def end(self, sid: int) -> None:
        self.conn.end_stream(sid)
        await self.flush()

    async def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        await self.flush()

    async def wait(self, sid: int, predicate: Any) -> StreamState:
        state = self.streams[sid]
        while not predicate(state):
            if self.eof.is_set():
                raise ConnectionError("connection closed while waiting")
            await state.changed.wait()
        return state

    async def response(self, sid: int) -> StreamState:
        return await self.wait(sid, lambda s: s.headers is not None)

    async def finished(self, sid: int) -> StreamState:
        return await self.wait(sid, lambda s: s.ended or s.reset is not None)

    async def messages(self, sid: int, n: int) -> list[Message]:
        state = await self.wait(sid, lambda s: len(s.messages) >= n or s.ended)
        return state.messages[:n]

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def part_of(message: Message) -> tuple[str | None, str | None, bytes]:
    """(DataType, CompletionState, payload) of a response PayloadPart."""
    assert message.headers[":message-type"] == "event", message.headers
    assert message.headers[":event-type"] == "PayloadPart"
    data_type = message.headers.get("DataType")
    state = message.headers.get("CompletionState")
    assert isinstance(data_type, str)
    assert isinstance(state, str)
    return data_type, state, message.payload


def exception_of(message: Message) -> tuple[str, dict[str, Any]]:
    """(exception type, JSON payload) of a response exception event."""
    assert message.headers[":message-type"] == "exception", message.headers
    assert message.headers[":content-type"] == "application/json"
    kind = message.headers[":exception-type"]
    assert isinstance(kind, str)
    doc: dict[str, Any] = json.loads(message.payload)
    return kind, doc


# -- a frame-level container -------------------------------------------------------------------


@dataclass
class Connection:
    target: str = ""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    frames: list[tuple[int, bytes, bool]] = field(default_factory=list)
    close: tuple[int, str] | None = None
    pings: int = 0
    eof: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        changed, self.changed = self.changed, trio.Event()
        changed.set()

    async def wait(self, predicate: Any) -> None:
        while not predicate(self):
            await self.changed.wait()


class FrameContainer:
    """A WebSocket container on the Rust core in frames mode: records every frame (kind,
    payload, FIN), the close and EOF. ``mode``:

    * ``mirror`` -- sends each data frame back as the same fragment (kind and FIN kept);
    * ``stall`` -- after the upgrade, never reads (so never answers pings) until EOF;
    * ``close`` -- after ``close_after`` frames, closes with ``close_code``/``close_reason``;
    * ``vanish`` -- after ``close_after`` frames, drops TCP without a Close;
    * ``silent`` -- reads and records, answers nothing but pings;
    * ``refuse`` -- answers the upgrade with ``refuse_status``.
    """

    def __init__(
        self,
        mode: str = "mirror",
        *,
        close_after: int = 1,
        close_code: int = 1011,
        close_reason: str = "model crashed",
        refuse_status: int = 400,
        greeting: bytes | None = None,
    ) -> None:
        self.mode = mode
        self.close_after = close_after
        self.close_code = close_code
        self.close_reason = close_reason
        self.refuse_status = refuse_status
        self.greeting = greeting
        #: While set to an unset Event, the container does not read after the upgrade.
        self.hold: trio.Event | None = None
        self.tcp_connections = 0
        self.connections: list[Connection] = []
        self.connected = trio.Event()
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.tcp_connections += 1
        conn = Connection()
        try:
            await self._session(stream, conn)
        finally:
            conn.done.set()
            conn.notify()
            await trio.aclose_forcefully(stream)

    async def _session(self, stream: trio.SocketStream, conn: Connection) -> None:
        http = h11.Connection(h11.SERVER)
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(65536))
                continue
            break
        assert isinstance(event, h11.Request), event
        conn.target = event.target.decode()
        conn.headers = dict(event.headers)
        self.connections.append(conn)
        self.connected.set()
        if self.mode == "refuse":
            body = b"bad query parameter"
            await stream.send_all(
                http.send(
                    h11.Response(
                        status_code=self.refuse_status,
                        headers=[("content-length", str(len(body))), ("connection", "close")],
                    )
                )
                + http.send(h11.Data(data=body))
                + http.send(h11.EndOfMessage())
            )
            return
        key = conn.headers[b"sec-websocket-key"]
        await stream.send_all(
            http.send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        ("upgrade", "websocket"),
                        ("connection", "Upgrade"),
                        ("sec-websocket-accept", accept_key(key)),
                    ],
                )
            )
        )
        ws = WebSocketConnection(client=False, deliver="frames", max_message_size=32 * 2**20)
        if self.greeting is not None:
            ws.send_fragment(self.greeting, True, text=True)
            await stream.send_all(ws.outgoing())
        if self.mode == "stall":  # read and drop bytes: pings are never answered
            while True:
                try:
                    if not await stream.receive_some(65536):
                        break
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
            conn.eof = True
            return
        data: bytes | bytearray = http.trailing_data[0]
        if self.hold is not None:
            await self.hold.wait()
        while True:
            if data:
                for kind, payload, fin in ws.receive(data):
                    if kind in (TEXT, BINARY):
                        conn.frames.append((kind, bytes(payload), fin))
                        # A Close read in the same batch was already answered: no more sends.
                        if self.mode == "mirror" and ws.state == "open":
                            ws.send_fragment(payload, fin, text=kind == TEXT)
                        elif self.mode == "close" and len(conn.frames) >= self.close_after:
                            ws.close(self.close_code, self.close_reason)
                        elif self.mode == "vanish" and len(conn.frames) >= self.close_after:
                            conn.notify()
                            return
                    elif kind == CLOSE:
                        conn.close = payload
                    else:
                        conn.pings += 1
                conn.notify()
                out = ws.outgoing()
                if out:
                    try:
                        await stream.send_all(out)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        conn.eof = True
                        return
                if ws.closed:
                    return
            try:
                data = await stream.receive_some(1 << 20)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                conn.eof = True
                return


async def start_container(nursery: trio.Nursery, container: FrameContainer) -> int:
    port: int = await nursery.start(container.serve)
    return port


# -- a container model for the interop tests ---------------------------------------------------


class ScriptedModel(Model):
    """Echo, plus commands: ``close:CODE:REASON`` closes, ``whoami`` answers the upgrade path and
    query, ``fragments:a:b:c`` replies as fragments; path /v1/greet greets first; a query with
    ``reject=...`` refuses the upgrade (so the gateway answers 424)."""

    paths = ("/invocations-bidirectional-stream", "/v1/listen", "/v1/greet")

    def __init__(self) -> None:
        self.requests: list[UpgradeRequest] = []
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.upgrade_attempts = 0

    def check_upgrade(self, request: UpgradeRequest) -> None:
        self.upgrade_attempts += 1
        if "reject" in request.query_dict():
            raise RejectUpgrade("rejected by the test model", status=400)

    async def session(self, session: Session) -> None:
        self.requests.append(session.request)
        if session.request.path == "/v1/greet":
            await session.send('{"type":"session.created"}')
        try:
            async for message in session:
                self.received.append(message)
                if isinstance(message, str) and message.startswith("close:"):
                    _, code, reason = message.split(":", 2)
                    await session.close(int(code), reason)
                    return
                if message == "whoami":
                    request = session.request
                    await session.send(
                        json.dumps({"path": request.path, "query": request.raw_query})
                    )
                elif isinstance(message, str) and message.startswith("fragments:"):
                    pieces = message.split(":")[1:]
                    for i, piece in enumerate(pieces):
                        await session.send_fragment(piece, final=i == len(pieces) - 1)
                else:
                    await session.send(message)
        finally:
            self.close_codes.append(getattr(session, "close_code", None))
