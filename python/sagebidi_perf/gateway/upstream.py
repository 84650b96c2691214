"""The sidecar's WebSocket client to the model container: the upgrade on h11, then the Rust
protocol core in frames mode (one event per frame, with its FIN bit: exactly what the
PayloadPart mapping needs)."""

from __future__ import annotations

import base64
import binascii

import h11
import trio

from sagebidi_perf.gateway.settings import Upstream
from sagebidi_perf.websocket import WebSocketConnection, WebSocketEvent, accept_key, generate_key

__all__ = ["UpstreamConnection", "UpstreamError", "open_upstream"]

RECEIVE_SIZE = 256 * 1024
MAX_RESPONSE_HEAD = 16 * 1024
MAX_ERROR_BODY = 4096
USER_AGENT = b"sagebidi-gateway"


class UpstreamError(Exception):
    """The WebSocket to the container could not be opened. ``status`` is the container's HTTP
    status when it answered the upgrade with something else than 101 (None: no answer)."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class UpstreamConnection:
    """An open WebSocket to the container. Writes are serialised by :meth:`flush`."""

    def __init__(
        self,
        stream: trio.SocketStream,
        proto: WebSocketConnection,
        target: str,
        initial_events: list[WebSocketEvent],
    ) -> None:
        self.stream = stream
        self.proto = proto
        self.target = target
        #: Events carried by the bytes that followed the 101 (a greeting from the container).
        self.initial_events = initial_events
        self._write_lock = trio.Lock()
        #: The TCP connection broke or was closed under us.
        self.broken = False

    async def flush(self) -> None:
        """Write whatever the protocol core has queued (sets :attr:`broken` on failure)."""
        async with self._write_lock:
            try:
                while data := self.proto.outgoing():
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.broken = True

    async def receive(self) -> list[WebSocketEvent] | None:
        """The events of the next bytes received; None once TCP is closed."""
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.broken = True
            return None
        return self.proto.receive(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _valid_accept(value: bytes | None, key: str) -> bool:
    if value is None:
        return False
    try:
        return bool(base64.b64decode(value, validate=True)) and value.decode() == accept_key(key)
    except (binascii.Error, ValueError):
        return False


async def open_upstream(
    upstream: Upstream,
    target: str,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    max_frame_size: int,
) -> UpstreamConnection:
    """Connect to ``upstream`` and upgrade ``target`` (path and query) to a WebSocket.

    Raises :class:`UpstreamError`. The caller bounds the time (``trio.fail_after``).
    """
    try:
        stream = await trio.open_tcp_stream(upstream.host, upstream.port)
    except OSError as exc:
        raise UpstreamError(f"cannot connect to {upstream.host}:{upstream.port}: {exc}") from exc
    try:
        return await _handshake(stream, upstream, target, extra_headers or [], max_frame_size)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _handshake(
    stream: trio.SocketStream,
    upstream: Upstream,
    target: str,
    extra_headers: list[tuple[bytes, bytes]],
    max_frame_size: int,
) -> UpstreamConnection:
    key = generate_key()
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
    request = h11.Request(
        method="GET",
        target=target.encode("ascii"),
        headers=[
            (b"host", f"{host}:{upstream.port}".encode()),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", key.encode()),
            (b"sec-websocket-version", b"13"),
            (b"user-agent", USER_AGENT),
            *extra_headers,
        ],
    )
    try:
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                headers = list(event.headers)
                if not _valid_accept(_header(headers, b"sec-websocket-accept"), key):
                    raise UpstreamError("the container's 101 has a wrong Sec-WebSocket-Accept")
                trailing, _closed = conn.trailing_data
                proto = WebSocketConnection(
                    client=True, deliver="frames", max_message_size=max_frame_size
                )
                initial = proto.receive(bytes(trailing)) if trailing else []
                return UpstreamConnection(stream, proto, target, initial)
            if isinstance(event, h11.Response):
                body = await _read_body(conn, stream)
                raise UpstreamError(
                    f"the container refused the WebSocket upgrade of {target}: "
                    f"{event.status_code} {event.reason.decode('latin-1', 'replace')}",
                    status=event.status_code,
                    body=body,
                )
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("the container closed the connection during the upgrade")
            # Other informational responses (100, 103): keep waiting for the real answer.
    except h11.RemoteProtocolError as exc:
        raise UpstreamError(f"the container's upgrade response is not valid HTTP: {exc}") from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise UpstreamError(
            f"the connection to the container broke during the upgrade: {exc}"
        ) from exc


async def _read_body(conn: h11.Connection, stream: trio.SocketStream) -> bytes:
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(1):
        while size < MAX_ERROR_BODY:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
                size += len(event.data)
            else:
                break
    return b"".join(chunks)[:MAX_ERROR_BODY]
