"""One HTTP/2 server connection (the ``h2`` sans-IO library) over a Trio stream.

Tasks per connection: a reader (socket -> h2 events; it never waits for a stream handler, only
for our own writes to drain, which is TCP back-pressure on a client that does not read), a
writer (h2's output buffer -> socket) and one handler task per request stream.

Rules kept here, whatever a handler does:

* A stream is never reset by us: a handler that returns or fails leaves the stream with
  END_STREAM (the official client hangs in ``input_stream.close()`` after a RST_STREAM).
* Request DATA is acknowledged (WINDOW_UPDATE) only once the handler has consumed it, so a slow
  container slows the client down instead of filling memory; after the handler is done, DATA is
  acknowledged and dropped on arrival (drain).
* Response DATA is sent within the peer's flow-control windows, waiting for WINDOW_UPDATEs.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

__all__ = ["H2Connection", "RequestStream", "StreamGone"]

log = logging.getLogger("sagebidi.gateway")

RECEIVE_SIZE = 256 * 1024
MAX_HEADER_LIST_SIZE = 64 * 1024
#: Our connection-level receive window (per-stream windows bound each stream).
CONNECTION_WINDOW = 16 * 2**20
#: Response DATA producers wait while more than this is queued for the socket.
WRITE_LOW_WATER = 256 * 1024
#: Client stream resets are counted over this many seconds (rapid-reset guard).
RESET_WINDOW = 10.0
#: The reader stops reading while more than this is queued for the socket.
WRITE_HIGH_WATER = 4 * 2**20

Headers = list[tuple[bytes, bytes]]


class StreamGone(Exception):
    """The client reset the stream or the connection is gone: stop sending on it."""


class RequestStream:
    """One request stream as its handler sees it: the request headers, the DATA that arrives
    (in order, with its flow-controlled length) and the sending side (through the connection)."""

    def __init__(self, conn: H2Connection, stream_id: int, headers: Headers) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.headers = headers
        #: Set once when the request headers came with END_STREAM or the DATA ended.
        self.input_ended = False
        #: The client reset the stream, or the connection went away.
        self.gone = False
        #: Headers of our response sent (200 or an error).
        self.response_started = False
        #: END_STREAM sent.
        self.response_ended = False
        self.cancel_scope = trio.CancelScope()
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._readable = trio.Event()
        self._draining = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    # -- receiving -------------------------------------------------------------------------

    def _on_data(self, data: bytes, flow_length: int) -> None:
        if self._draining:
            self.conn.ack(self.stream_id, flow_length)
            return
        self._chunks.append((data, flow_length))
        self._readable.set()

    def _on_end(self) -> None:
        self.input_ended = True
        self._readable.set()

    def _on_gone(self) -> None:
        self.gone = True
        self._readable.set()
        self.cancel_scope.cancel()

    async def receive(self) -> tuple[bytes, int] | None:
        """The next DATA payload and its flow-controlled length (pass that to :meth:`ack`
        once consumed), or None at END_STREAM. Raises :class:`StreamGone` on reset."""
        while True:
            if self._chunks:
                return self._chunks.popleft()
            if self.gone:
                raise StreamGone
            if self.input_ended:
                return None
            self._readable = trio.Event()
            await self._readable.wait()

    def ack(self, flow_length: int) -> None:
        """Give ``flow_length`` bytes of receive window back to the client."""
        self.conn.ack(self.stream_id, flow_length)

    def drain(self) -> None:
        """Acknowledge and drop everything received and all DATA still to come."""
        self._draining = True
        while self._chunks:
            _data, length = self._chunks.popleft()
            self.conn.ack(self.stream_id, length)

    # -- sending ---------------------------------------------------------------------------

    async def send_headers(self, headers: Headers, *, end_stream: bool = False) -> None:
        if self.gone:
            raise StreamGone
        self.response_started = True
        self.response_ended = end_stream
        self.conn.send_headers(self.stream_id, headers, end_stream=end_stream)
        await self.conn.writable()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as DATA frames within the flow-control windows (waits for
        WINDOW_UPDATEs, and while the connection's output backlog is large)."""
        await self.conn.send_data(self, data, end_stream=end_stream)
        if end_stream:
            self.response_ended = True

    async def end(self) -> None:
        """END_STREAM (idempotent; nothing if the stream is gone)."""
        if self.response_ended or self.gone:
            return
        self.response_ended = True
        self.conn.end_stream(self.stream_id)
        await self.conn.writable()


Handler = Callable[[RequestStream], Awaitable[None]]


class H2Connection:
    """Serves one HTTP/2 connection; ``handler(stream)`` runs per request stream."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        handler: Handler,
        *,
        initial_data: bytes = b"",
        max_concurrent_streams: int = 100,
        initial_window_size: int = 1 << 20,
        idle_timeout: float = 300.0,
        max_client_resets: int = 200,
        peer: str = "?",
    ) -> None:
        self.stream = stream
        self.handler = handler
        self.peer = peer
        self.idle_timeout = idle_timeout
        self.max_client_resets = max_client_resets
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._initial = initial_data
        self.streams: dict[int, RequestStream] = {}
        self._want_write = trio.Event()
        self._idle = trio.Event()
        self._outbuf = bytearray()
        self._inflight = 0
        self._window_changed = trio.Event()
        self._broken = False
        self._closing = False
        self._client_resets: deque[float] = deque()
        self._idle_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: Request streams started on this connection (for tests and logs).
        self.streams_started = 0

    # -- writing ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Move what h2 has queued into our output buffer and wake the writer."""
        data = self.h2.data_to_send()
        if data:
            self._outbuf += data
        self._want_write.set()

    @property
    def pending_output(self) -> int:
        """Bytes queued or being written to the socket."""
        return len(self._outbuf) + self._inflight

    async def flush(self) -> None:
        """Wake the writer and wait until everything queued so far is written."""
        if self._broken:
            raise StreamGone
        idle = self._idle
        self.kick()
        await idle.wait()
        if self._broken:
            raise StreamGone

    async def writable(self) -> None:
        """Queue what h2 has and wait only while the output backlog is over the low-water mark
        (the back-pressure on response producers: a client that does not read stalls them)."""
        self.kick()
        while self.pending_output > WRITE_LOW_WATER:
            await self.flush()

    async def _writer(self) -> None:
        try:
            while True:
                await self._want_write.wait()
                self._want_write = trio.Event()
                self._outbuf += self.h2.data_to_send()
                while self._outbuf:
                    chunk = bytes(self._outbuf)
                    self._outbuf.clear()
                    self._inflight = len(chunk)
                    await self.stream.send_all(chunk)
                    self._inflight = 0
                    self._outbuf += self.h2.data_to_send()
                idle, self._idle = self._idle, trio.Event()
                idle.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._connection_lost()

    def ack(self, stream_id: int, flow_length: int) -> None:
        if flow_length <= 0 or self._broken:
            return
        try:
            self.h2.acknowledge_received_data(flow_length, stream_id)
        except h2.exceptions.ProtocolError:  # connection already closed (GOAWAY)
            return
        self.kick()

    def send_headers(self, stream_id: int, headers: Headers, *, end_stream: bool) -> None:
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.kick()

    def end_stream(self, stream_id: int) -> None:
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            return
        self.kick()

    async def send_data(self, stream: RequestStream, data: bytes, *, end_stream: bool) -> None:
        view = memoryview(data)
        sid = stream.stream_id
        if not view:
            if stream.gone or self._broken:
                raise StreamGone
            if end_stream:
                self.h2.send_data(sid, b"", end_stream=True)
                await self.writable()
            return
        while view:
            if stream.gone or self._broken:
                raise StreamGone
            try:
                window = self.h2.local_flow_control_window(sid)
            except h2.exceptions.StreamClosedError:
                raise StreamGone from None
            size = min(window, self.h2.max_outbound_frame_size, len(view))
            if size <= 0:
                changed = self._window_changed
                await changed.wait()
                continue
            chunk, view = view[:size], view[size:]
            self.h2.send_data(sid, chunk.tobytes(), end_stream=end_stream and not view)
            # The back-pressure on the response producer: a bounded output backlog.
            await self.writable()

    # -- reading ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the client closes, the connection breaks or we go idle."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                self.kick()
                await self._reader()
                # Let the GOAWAY (or whatever is queued) out, briefly.
                with trio.move_on_after(1):
                    await self.flush()
                self._connection_lost()
        except StreamGone:
            pass
        finally:
            self._connection_lost()
            await trio.aclose_forcefully(self.stream)

    def _refresh_idle_deadline(self) -> None:
        if self._idle_scope is not None:
            self._idle_scope.deadline = (
                trio.current_time() + self.idle_timeout if not self.streams else math.inf
            )

    async def _reader(self) -> None:
        data: bytes | bytearray = self._initial
        self._initial = b""
        while not self._broken:
            if data:
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.info("%s: HTTP/2 protocol error, closing: %s", self.peer, exc)
                    return  # h2 queued a GOAWAY
                for event in events:
                    self._dispatch(event)
                if self._closing:
                    return
                # Keep reading while we write (a client may block its reads on its writes), but
                # not while our output backlog is large: a client that sends (PINGs, SETTINGS)
                # and never reads gets TCP back-pressure instead of a growing buffer.
                self.kick()
                if self.pending_output > WRITE_HIGH_WATER:
                    try:
                        await self.flush()
                    except StreamGone:
                        return
            with trio.CancelScope() as scope:
                self._idle_scope = scope
                self._refresh_idle_deadline()
                try:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            self._idle_scope = None
            if scope.cancelled_caught:
                log.debug("%s: idle for %.0f s, closing", self.peer, self.idle_timeout)
                self._goaway(h2.errors.ErrorCodes.NO_ERROR)
                return
            if not data:
                return

    def _goaway(self, code: h2.errors.ErrorCodes, debug: bytes = b"") -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(error_code=code, additional_data=debug or None)
        self._closing = True
        self.kick()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._start_stream(event)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length or 0
            if stream is None:
                self.ack(event.stream_id or 0, length)
            else:
                stream._on_data(event.data or b"", length)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_end()
        elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
            stream = self.streams.get(event.stream_id)
            log.debug("%s: client reset stream %d", self.peer, event.stream_id)
            if stream is not None:
                stream._on_gone()
            # Rapid reset (CVE-2023-44487): too many resets within RESET_WINDOW seconds.
            now = trio.current_time()
            self._client_resets.append(now)
            while self._client_resets and self._client_resets[0] < now - RESET_WINDOW:
                self._client_resets.popleft()
            if len(self._client_resets) > self.max_client_resets:
                log.warning(
                    "%s: %d stream resets within %.0f s: GOAWAY ENHANCE_YOUR_CALM (rapid reset)",
                    self.peer,
                    len(self._client_resets),
                    RESET_WINDOW,
                )
                self._goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too many stream resets")
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            changed, self._window_changed = self._window_changed, trio.Event()
            changed.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            log.debug("%s: client GOAWAY (%s)", self.peer, event.error_code)
            self._closing = True

    def _start_stream(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None
        headers: Headers = [(bytes(k), bytes(v)) for k, v in (event.headers or [])]
        stream = RequestStream(self, sid, headers)
        self.streams[sid] = stream
        self.streams_started += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, stream)

    async def _run_stream(self, stream: RequestStream) -> None:
        try:
            with stream.cancel_scope:
                await self.handler(stream)
        except Exception as exc:
            if not _only(exc, StreamGone):
                log.exception("%s: stream %d handler failed", self.peer, stream.stream_id)
        finally:
            stream.drain()
            if not stream.gone and not self._broken:
                if not stream.response_started:
                    self._emergency_response(stream)
                elif not stream.response_ended:
                    stream.response_ended = True
                    self.end_stream(stream.stream_id)
            del self.streams[stream.stream_id]
            self._refresh_idle_deadline()
            if self._closing and not self.streams:
                self.kick()

    def _emergency_response(self, stream: RequestStream) -> None:
        """A handler died before answering: 500 InternalServerError (never a reset)."""
        stream.response_started = stream.response_ended = True
        body = b'{"Message": "internal error in the gateway", "ErrorCode": "InternalServerError"}'
        headers: Headers = [
            (b":status", b"500"),
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", b"InternalServerError"),
            (b"content-length", str(len(body)).encode()),
        ]
        try:
            self.h2.send_headers(stream.stream_id, headers)
            if len(body) <= self.h2.local_flow_control_window(stream.stream_id):
                self.h2.send_data(stream.stream_id, body, end_stream=True)
            else:
                self.h2.end_stream(stream.stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.kick()

    def _connection_lost(self) -> None:
        if self._broken:
            return
        self._broken = True
        for stream in list(self.streams.values()):
            stream._on_gone()
        self._idle.set()
        self._window_changed.set()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


def _only(exc: BaseException, cls: type[BaseException]) -> bool:
    """Whether ``exc`` is ``cls`` or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(e, cls) for e in exc.exceptions)
    return isinstance(exc, cls)
