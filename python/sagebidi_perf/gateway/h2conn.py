"""One HTTP/2 server connection (the ``h2`` sans-IO library) over a :class:`TLSStream`.

The relay runs *in place* (profiled: task hand-offs and per-frame awaits were most of the
gateway's CPU). Per connection there is one reader task (socket -> h2 events) and a writer task
that only runs when the kernel's send buffer is full; per request stream a handler task.

* Request DATA goes straight from the reader to the stream's *sink* (the relay: decode, verify,
  write the WebSocket frame to the container) in the same task; every sink touched in one
  receive gets ``after_pass()`` once, then h2's output is written once (one ``os.write``).
* Response DATA is *pushed* synchronously (:meth:`RequestStream.push`): sent within the peer's
  flow-control windows, the rest queued on the stream until WINDOW_UPDATEs come.

Rules kept here, whatever a handler does:

* A stream is never reset by us: a handler that returns or fails leaves the stream with
  END_STREAM (the official client hangs in ``input_stream.close()`` after a RST_STREAM).
* Request DATA is acknowledged (WINDOW_UPDATE) only once the sink has consumed it (the relay
  defers its acks while the container does not read), so a slow container slows the client
  down instead of filling memory; after the handler is done, DATA is acknowledged and dropped
  on arrival (drain).
* Response DATA is sent within the peer's flow-control windows.
"""

from __future__ import annotations

import binascii
import contextlib
import logging
import math
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import trio

from sagebidi_perf.gateway.tls import TLSStream

__all__ = ["H2Connection", "RequestStream", "Sink", "StreamGone"]

log = logging.getLogger("sagebidi.gateway")

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


def _short_data_repr(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr`` with the same output, hexlifying only the 11 bytes it
    shows. h2 builds ``repr(frame)`` of every received frame for a trace log call even when
    nothing logs; the original hexlified the whole payload (3 % of the relay's CPU)."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:11]).decode("ascii")
    if len(r) > 20:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


hyperframe.frame._raw_data_repr = _short_data_repr


class StreamGone(Exception):
    """The client reset the stream or the connection is gone: stop sending on it."""


class Sink(Protocol):
    """Consumes a stream's request DATA in the connection's reader task (never awaits)."""

    def on_data(self, data: bytes, flow_length: int) -> None:
        """A DATA payload; give the window back with :meth:`RequestStream.ack` when consumed."""

    def on_end(self) -> None:
        """END_STREAM from the client."""

    def after_pass(self) -> None:
        """Once per received batch in which this sink got anything (flush here)."""


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
        self._sink: Sink | None = None
        #: Response DATA waiting for the flow-control window (then END_STREAM if finishing).
        self._out: deque[bytes | memoryview] = deque()
        #: Bytes in ``_out``.
        self.out_pending = 0
        self._finishing = False
        self._progress = trio.Event()

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
        sink = self._sink
        if sink is not None:
            self.conn._touch(sink)
            sink.on_data(data, flow_length)
            return
        self._chunks.append((data, flow_length))
        self._readable.set()

    def _on_end(self) -> None:
        self.input_ended = True
        self._readable.set()
        sink = self._sink
        if sink is not None and not self._draining:
            self.conn._touch(sink)
            sink.on_end()

    def _on_gone(self) -> None:
        self.gone = True
        self._readable.set()
        self._progress.set()
        self.cancel_scope.cancel()

    def set_sink(self, sink: Sink) -> None:
        """From now on request DATA goes to ``sink`` in the reader task (what arrived before is
        handed over now, in order)."""
        self._sink = sink
        while self._chunks and not self._draining and not self.gone:
            data, length = self._chunks.popleft()
            sink.on_data(data, length)
        if self.input_ended and not self._draining and not self.gone:
            sink.on_end()
        sink.after_pass()
        self.conn.kick()

    async def receive(self) -> tuple[bytes, int] | None:
        """The next DATA payload and its flow-controlled length (pass that to :meth:`ack`
        once consumed), or None at END_STREAM. Raises :class:`StreamGone` on reset.
        (Not with a sink.)"""
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

    def push(self, data: bytes) -> None:
        """Send ``data`` as DATA within the flow-control windows now; the rest waits on this
        stream for WINDOW_UPDATEs. Never awaits; nothing is written until ``conn.kick()``."""
        if self.gone or self.conn._broken:
            raise StreamGone
        if self._finishing or self.response_ended or not data:
            return
        self._out.append(data)
        self.out_pending += len(data)
        self.conn._pump(self)

    def finish(self, data: bytes | None = None) -> None:
        """END_STREAM after everything pushed (``data`` last). Never awaits."""
        if self._finishing or self.response_ended or self.gone or self.conn._broken:
            return
        if data:
            self._out.append(data)
            self.out_pending += len(data)
        self._finishing = True
        self.conn._pump(self)

    async def wait_room(self, limit: int) -> None:
        """Wait while more than ``limit`` bytes wait for the client's window, then while the
        connection's output backlog is large. Raises :class:`StreamGone`."""
        while self.out_pending > limit:
            if self.gone or self.conn._broken:
                raise StreamGone
            self._progress = trio.Event()
            await self._progress.wait()
        if self.gone or self.conn._broken:
            raise StreamGone
        await self.conn.writable()

    async def wait_sent(self) -> None:
        """Wait until END_STREAM (requested with :meth:`finish`) went to h2, then for a
        bounded output backlog. Raises :class:`StreamGone`."""
        while not self.response_ended:
            if self.gone or self.conn._broken:
                raise StreamGone
            self._progress = trio.Event()
            await self._progress.wait()
        await self.conn.writable()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as DATA frames within the flow-control windows (waits for
        WINDOW_UPDATEs, and while the connection's output backlog is large)."""
        if self.gone or self.conn._broken:
            raise StreamGone
        if end_stream:
            self.finish(data)
            self.conn.kick()
            await self.wait_sent()
            return
        self.push(data)
        self.conn.kick()
        await self.wait_room(0)

    async def end(self) -> None:
        """END_STREAM (idempotent; nothing if the stream is gone)."""
        if self.response_ended or self.gone:
            return
        self.finish()
        self.conn.kick()
        await self.conn.writable()


Handler = Callable[[RequestStream], Awaitable[None]]


class H2Connection:
    """Serves one HTTP/2 connection; ``handler(stream)`` runs per request stream."""

    def __init__(
        self,
        stream: TLSStream,
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
        self._drained = trio.Event()
        self._broken = False
        self._closing = False
        #: Inside the reader's pass: writes wait for its end (one write per pass).
        self._batching = False
        self._touched: list[Sink] = []
        #: Streams with response DATA waiting for the flow-control window.
        self._blocked: set[RequestStream] = set()
        self._client_resets: deque[float] = deque()
        self._idle_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: Request streams started on this connection (for tests and logs).
        self.streams_started = 0

    # -- writing ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Write what h2 has queued (now, or at the end of the reader's pass); what the kernel
        does not take goes to the writer task."""
        if self._batching:
            return
        data = self.h2.data_to_send()
        tls = self.stream
        if (data and not tls.write_nowait(data)) or tls.pending:
            self._want_write.set()
        if tls.broken:
            self._connection_lost()

    @property
    def pending_output(self) -> int:
        """Bytes queued for the socket."""
        return len(self.stream.pending)

    async def flush(self) -> None:
        """Write everything queued so far (waits for the socket)."""
        if self._broken:
            raise StreamGone
        self.kick()
        while self.stream.pending and not self._broken:
            drained = self._drained
            self._want_write.set()
            await drained.wait()
        if self._broken:
            raise StreamGone

    async def writable(self) -> None:
        """Write what h2 has and wait only while the output backlog is over the low-water mark
        (the back-pressure on response producers: a client that does not read stalls them)."""
        self.kick()
        while self.pending_output > WRITE_LOW_WATER and not self._broken:
            await self.flush()

    async def _writer(self) -> None:
        tls = self.stream
        while True:
            await self._want_write.wait()
            self._want_write = trio.Event()
            await tls.drain()
            drained, self._drained = self._drained, trio.Event()
            drained.set()
            if tls.broken:
                self._connection_lost()
                return

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
        except h2.exceptions.ProtocolError:
            return
        self.kick()

    def _pump(self, stream: RequestStream) -> None:
        """Move the stream's queued response DATA into h2 as far as the windows allow."""
        out = stream._out
        h2conn = self.h2
        sid = stream.stream_id
        sent = False
        try:
            while out:
                window = h2conn.local_flow_control_window(sid)
                size = min(window, h2conn.max_outbound_frame_size)
                if size <= 0:
                    break
                data = out[0]
                n = len(data)
                last = stream._finishing and len(out) == 1
                if n <= size:
                    out.popleft()
                    h2conn.send_data(
                        sid, data if isinstance(data, bytes) else bytes(data), end_stream=last
                    )
                    stream.out_pending -= n
                    if last:
                        stream.response_ended = True
                else:
                    view = memoryview(data)
                    h2conn.send_data(sid, bytes(view[:size]))
                    out[0] = view[size:]
                    stream.out_pending -= size
                sent = True
            if not out and stream._finishing and not stream.response_ended:
                stream.response_ended = True
                h2conn.end_stream(sid)
                sent = True
        except h2.exceptions.ProtocolError:  # closed by the client meanwhile
            out.clear()
            stream.out_pending = 0
            stream._on_gone()
            return
        if out:
            self._blocked.add(stream)
        else:
            self._blocked.discard(stream)
        if sent:
            stream._progress.set()

    def _touch(self, sink: Sink) -> None:
        if sink not in self._touched:
            self._touched.append(sink)

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
                # Let the GOAWAY (or whatever is queued) out, briefly, then a lingering close:
                # our FIN, and the client's unread bytes read and dropped until its EOF (closing
                # with unread input sends an RST, which can destroy the GOAWAY in its buffer).
                # (The client may be gone already: StreamGone raised here would leave the
                # nursery wrapped in an ExceptionGroup that the handler below cannot catch.)
                with trio.move_on_after(1), contextlib.suppress(StreamGone):
                    await self.flush()
                    if self._closing:
                        await self._linger()
                self._connection_lost()
        except StreamGone:
            pass
        finally:
            self._connection_lost()
            await trio.aclose_forcefully(self.stream)

    async def _linger(self) -> None:
        sock = self.stream.socket
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await self.stream.receive_some():
                pass

    def _refresh_idle_deadline(self) -> None:
        if self._idle_scope is not None:
            self._idle_scope.deadline = (
                trio.current_time() + self.idle_timeout if not self.streams else math.inf
            )

    def _process(self, data: bytes) -> bool:
        """One pass over received bytes; False if the connection must close."""
        self._batching = True
        try:
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                log.info("%s: HTTP/2 protocol error, closing: %s", self.peer, exc)
                self._closing = True
                return False  # h2 queued a GOAWAY
            for event in events:
                self._dispatch(event)
            touched = self._touched
            while touched:
                self._touched = []
                for sink in touched:
                    sink.after_pass()
                touched = self._touched
        finally:
            self._batching = False
        return not self._closing

    async def _reader(self) -> None:
        # One cancel scope for the whole loop (not one per receive: profiled, 7 % of the relay's
        # CPU): its deadline is the idle timeout while no stream is open, else infinite.
        closed = False
        with trio.CancelScope() as scope:
            self._idle_scope = scope
            self._refresh_idle_deadline()
            closed = await self._read_loop()
        self._idle_scope = None
        if scope.cancelled_caught and not closed:
            log.debug("%s: idle for %.0f s, closing", self.peer, self.idle_timeout)
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)

    async def _read_loop(self) -> bool:
        """Read and process until EOF (False) or until we decided to close (True)."""
        data: bytes = self._initial
        self._initial = b""
        stream = self.stream
        while not self._broken:
            if data:
                ok = self._process(data)
                self.kick()
                if not ok:
                    return True
                # Keep reading while we write (a client may block its reads on its writes), but
                # not while our output backlog is large: a client that sends (PINGs, SETTINGS)
                # and never reads gets TCP back-pressure instead of a growing buffer.
                if self.pending_output > WRITE_HIGH_WATER:
                    try:
                        await self.flush()
                    except StreamGone:
                        return True
                if not self.streams:
                    self._refresh_idle_deadline()
            try:
                data = await stream.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return False
        return False

    def _goaway(self, code: h2.errors.ErrorCodes, debug: bytes = b"") -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(error_code=code, additional_data=debug or None)
        self._closing = True
        self.kick()

    def close_idle(self) -> None:
        """GOAWAY now if no stream is open (shutdown); the reader then ends."""
        if not self.streams and not self._closing and not self._broken:
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)
            if self._idle_scope is not None:
                self._idle_scope.cancel()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length or 0
            if stream is None:
                self.ack(event.stream_id or 0, length)
            else:
                stream._on_data(event.data or b"", length)
        elif isinstance(event, h2.events.RequestReceived):
            self._start_stream(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_end()
        elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
            stream = self.streams.get(event.stream_id)
            log.debug("%s: client reset stream %d", self.peer, event.stream_id)
            if stream is not None:
                self._blocked.discard(stream)
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
            for stream in list(self._blocked):
                self._pump(stream)
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
            self._blocked.discard(stream)
            if not stream.gone and not self._broken:
                if not stream.response_started:
                    self._emergency_response(stream)
                elif not stream.response_ended:
                    stream._out.clear()
                    stream.out_pending = 0
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
        self._blocked.clear()
        self._drained.set()
        self._want_write.set()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


def _only(exc: BaseException, cls: type[BaseException]) -> bool:
    """Whether ``exc`` is ``cls`` or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(e, cls) for e in exc.exceptions)
    return isinstance(exc, cls)
