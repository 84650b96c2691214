"""The sidecar's WebSocket client to the model container: the upgrade on h11, then the Rust
protocol core in frames mode (one event per frame, with its FIN bit: exactly what the
PayloadPart mapping needs)."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable

import h11
import trio

from sagebidi_perf.gateway.settings import Upstream
from sagebidi_perf.gateway.sockwrite import DirectSocketWriter
from sagebidi_perf.websocket import WebSocketConnection, WebSocketEvent, accept_key, generate_key

__all__ = ["UpstreamConnection", "UpstreamError", "open_upstream"]

RECEIVE_SIZE = 256 * 1024
MAX_RESPONSE_HEAD = 16 * 1024
MAX_ERROR_BODY = 4096
USER_AGENT = b"sagebidi-gateway"
#: One read buffer for every upstream of the process (see :meth:`UpstreamConnection.receive`).
READ_BUFFER_SIZE = 1024 * 1024
_read_buffer = bytearray(READ_BUFFER_SIZE)
_read_view = memoryview(_read_buffer)


class UpstreamError(Exception):
    """The WebSocket to the container could not be opened. ``status`` is the container's HTTP
    status when it answered the upgrade with something else than 101 (None: no answer)."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class UpstreamConnection(DirectSocketWriter):
    """An open WebSocket to the container.

    Writes: :meth:`write_nowait` hands what the protocol core queued to the kernel without
    awaiting (``os.write``); what the kernel does not take waits in :attr:`pending` for
    :meth:`flush` (one task drains, others wait for it; ``on_drained`` runs when it is empty).
    Reads: :meth:`receive` parks once in ``wait_readable`` and reads up to 1 MiB with
    ``os.read`` (profiled: Trio's stream wrappers yield to the scheduler on every call).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        proto: WebSocketConnection,
        target: str,
        initial_events: list[WebSocketEvent],
    ) -> None:
        self.stream = stream
        self._init_writer(stream.socket)
        self.proto = proto
        self.target = target
        #: Events carried by the bytes that followed the 101 (a greeting from the container).
        self.initial_events = initial_events
        #: Called (synchronously) when :attr:`pending` became empty after a wait.
        self.on_drained: Callable[[], None] | None = None

    def write_nowait(self) -> bool:
        """Write what the protocol core has queued as far as the kernel takes it now; True if
        nothing is left pending (or the connection is broken: the bytes are dropped)."""
        return self._push(self.proto.outgoing())

    async def flush(self) -> None:
        """Write whatever the protocol core has queued, waiting for the socket if needed (sets
        :attr:`broken` on failure)."""
        if self.write_nowait():
            return
        was_draining = self.draining
        await self._drain_pending(refill=self.write_nowait)
        if not was_draining and not self.pending and self.on_drained is not None:
            self.on_drained()

    async def receive(self) -> list[WebSocketEvent] | None:
        """The events of the next bytes received; None once TCP is closed."""
        while True:
            try:
                await trio.lowlevel.wait_readable(self.socket)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                break
            fd = self.socket.fileno()
            if fd < 0:
                break
            try:
                n = os.readv(fd, (_read_buffer,))
            except BlockingIOError:
                continue
            except OSError:  # reset by the peer
                break
            if not n:
                break
            # The core copies what it keeps: the shared buffer is free again after this call.
            return self.proto.receive(_read_view[:n])
        self.broken = True
        return None

    async def aclose(self) -> None:
        self.broken = True
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
