"""One WebSocket session: the reader task, the bounded queue to the model, and the writer.

Rules (SageMaker's sidecar pings every 60 s and drops the stream after 5 missed pongs):

* the reader task always drains the socket; pings are answered by the protocol core the moment they
  are parsed, never behind the model;
* data messages go into a bounded queue; when it stays full for ``queue_full_timeout`` seconds the
  session closes with 1013 (try again later) and a reason: data is never dropped silently;
* a model exception closes with 1011 and the exception as the reason; protocol errors close with
  the code the protocol core chose (1002, 1007 invalid UTF-8, 1009 too big), after the model has
  answered the messages that came before the bad frame (bounded by ``FAILURE_DRAIN``): input
  stops at the bad frame, the Close waits for the replies;
* a peer that vanishes cancels the model task, whose ``finally`` blocks run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

from sagebidi_perf.container.model import Message, Model, SessionClosed, UpgradeRequest
from sagebidi_perf.container.settings import ServerSettings
from sagebidi_perf.keepalive import Keepalive
from sagebidi_perf.websocket import BINARY, CLOSE, PONG, TEXT, WebSocketConnection

__all__ = ["WebSocketSession"]

log = logging.getLogger("sagebidi.container")

RECEIVE_SIZE = 256 * 1024
MAX_REASON_BYTES = 123
#: Socket fast path (benchmarks/container: profiled, Trio's per-call wrappers and the yield in
#: every socket and channel operation were ~80 % of the server's CPU per 3.2 KB message). On a
#: ``trio.SocketStream`` the reader parks in ``wait_readable`` once per batch and reads with
#: ``os.readv`` into one buffer shared by all sessions of the process (no allocation per read;
#: up to 1 MiB at once, so a 512 KB frame needs fewer reads); writes try ``os.write`` first and
#: fall back to ``send_all`` only when the kernel buffer is full.
READ_BUFFER_SIZE = 1024 * 1024
_read_buffer = bytearray(READ_BUFFER_SIZE)
_read_view = memoryview(_read_buffer)
#: A task writing without ever blocking still yields to the scheduler every this many writes
#: (a model that only sends must not starve the reader, and so the pongs).
WRITES_PER_YIELD = 64
#: Longest wait, after a peer's protocol violation, for the model to answer the messages that
#: preceded it before the failure's Close is sent (also bounded by ``close_grace``).
FAILURE_DRAIN = 1.0


def _close_reason(text: str) -> str:
    """A Close reason fits in 123 UTF-8 bytes; cut at a character boundary."""
    data = text.encode("utf-8")[:MAX_REASON_BYTES]
    return data.decode("utf-8", "ignore")


class WebSocketSession:
    """The :class:`~sagebidi_perf.container.model.Session` a model is handed."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        request: UpgradeRequest,
        settings: ServerSettings,
        trailing_data: bytes = b"",
    ) -> None:
        self._stream = stream
        self._request = request
        self._settings = settings
        self._proto = WebSocketConnection(
            client=False,
            deliver="messages",
            max_message_size=settings.max_message_size,
            defer_failure_close=True,
        )
        self._trailing = trailing_data
        # The socket fast path (see READ_BUFFER_SIZE) needs the socket; other streams (TLS, test
        # memory streams) go through the Stream API.
        self._socket: trio.socket.SocketType | None = None
        if isinstance(stream, trio.SocketStream):
            self._socket = stream.socket
        self._writes_since_yield = 0
        self._to_model, self._from_reader = trio.open_memory_channel[Message](settings.queue_size)
        self._flushing = False
        self._flushed = trio.Event()
        self._close_code: int | None = None
        self._close_reason = ""
        self._peer_gone = False
        self._cancel_scope = trio.CancelScope()
        self._model_done = trio.Event()
        self._handshake_done = trio.Event()  # both Close frames exchanged, or the peer vanished
        self._model_idle: trio.Event | None = None  # set during a failure drain, see _fail
        self._keepalive: Keepalive | None = None
        if settings.ping_interval is not None:
            self._keepalive = Keepalive(
                interval=settings.ping_interval, max_missed=settings.ping_misses
            )
        self.messages_in = 0
        self.messages_out = 0

    # -- the Session API ---------------------------------------------------------------------

    @property
    def request(self) -> UpgradeRequest:
        return self._request

    @property
    def closed(self) -> bool:
        return self._close_code is not None or self._peer_gone

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def receive(self) -> Message | None:
        if self._model_idle is not None and self._from_reader.statistics().current_buffer_used == 0:
            self._model_idle.set()  # the model answered everything queued before the failure
        try:
            # A queued message is taken without a trip through the scheduler (the yield inside
            # MemoryReceiveChannel.receive cost a full scheduling pass per message); cancellation
            # is still honoured. The queue is bounded and only the reader fills it, so the model
            # cannot run on without yielding for more than ``queue_size`` messages.
            await trio.lowlevel.checkpoint_if_cancelled()
            return self._from_reader.receive_nowait()
        except trio.WouldBlock:
            pass
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        try:
            return await self._from_reader.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    def __aiter__(self) -> WebSocketSession:
        return self

    async def __anext__(self) -> Message:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send(self, message: Message) -> None:
        self._check_open()
        self._proto.send(message)
        self.messages_out += 1
        await self._flush()

    async def send_fragment(self, data: Message, *, final: bool) -> None:
        self._check_open()
        self._proto.send_fragment(data, final)
        if final:
            self.messages_out += 1
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self._close_code = code
        self._close_reason = reason
        self._proto.close(code, _close_reason(reason))
        if self._proto.failed:  # a failing connection sends the failure's code instead
            self._close_code = self._proto.close_code
            self._close_reason = self._proto.close_reason or ""
        await self._flush()

    # -- running -----------------------------------------------------------------------------

    async def run(self, model: Model, on_shutdown: Callable[[], None] | None = None) -> None:
        """Serve the session until both sides are done, then close the TCP stream."""
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, nursery.cancel_scope)
                    nursery.start_soon(self._run_model, model, nursery.cancel_scope)
                    if self._settings.ping_interval is not None:
                        nursery.start_soon(self._pinger)
        finally:
            await trio.aclose_forcefully(self._stream)
            if on_shutdown is not None:
                on_shutdown()

    async def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Close with ``code`` (SIGTERM after the grace period), then stop the session."""
        try:
            await self.close(code, reason)
        finally:
            self._cancel_scope.cancel()

    def _check_open(self) -> None:
        if self.closed:
            raise SessionClosed(self._close_code, self._close_reason)

    async def _flush(self) -> None:
        """Write whatever the protocol core has queued. Concurrent callers coalesce: one task
        writes, the others wait for it (this is the back-pressure on the model)."""
        if self._flushing:
            await self._flushed.wait()
            return
        rest: bytes | memoryview = b""
        if self._socket is not None:
            # Fast path: one os.write, no scheduling pass, when the kernel takes it all (the
            # usual case). Same checkpoint rules as send_all: cancellation is checked before
            # anything is taken from the core or written, never after.
            if not self._proto.outgoing_size:
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self._proto.outgoing()
            fd = self._socket.fileno()  # -1 once closed: never write to a recycled fd number
            try:
                if fd < 0:
                    raise BrokenPipeError
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._vanished()
                return
            if sent == len(data):
                self._writes_since_yield += 1
                if self._writes_since_yield >= WRITES_PER_YIELD:
                    self._writes_since_yield = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            rest = memoryview(data)[sent:]  # the kernel buffer is full: wait in send_all
        self._flushing = True
        try:
            if rest:
                await self._stream.send_all(rest)
            while data := self._proto.outgoing():
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._vanished()
        finally:
            self._flushing = False
            self._flushed.set()
            self._flushed = trio.Event()

    def _vanished(self) -> None:
        if not self._peer_gone:
            self._peer_gone = True
            if self._close_code is None:
                self._close_code = 1006
            self._handshake_done.set()
            self._cancel_scope.cancel()

    async def _reader(self, nursery_scope: trio.CancelScope) -> None:
        data: bytes | bytearray | memoryview = self._trailing
        self._trailing = b""
        try:
            while True:
                if data:
                    for kind, payload, _fin in self._proto.receive(data):
                        if kind in (TEXT, BINARY):
                            self.messages_in += 1
                            await self._enqueue(payload)
                        elif kind == CLOSE:
                            self._on_close(payload)
                        elif kind == PONG and self._keepalive is not None:
                            self._keepalive.pong(payload, trio.current_time())
                        # PING: the protocol core has already queued the pong.
                    await self._flush()
                    if self._proto.state == "failing":
                        await self._fail()
                    if self._proto.closed:
                        self._handshake_done.set()
                        break
                data = await self._receive()  # no await between this and receive(data) above
                if not data:
                    self._vanished()
                    return
        finally:
            self._to_model.close()
        # Close handshake done: the model may finish what it has within close_grace.
        with trio.move_on_after(self._settings.close_grace):
            await self._model_done.wait()
        nursery_scope.cancel()

    async def _receive(self) -> bytes | bytearray | memoryview:
        """The next bytes from the peer; empty at EOF or when the connection broke.

        On a socket the result is a view of the process-wide read buffer, valid until the next
        ``await`` (every session's reader reuses it): the reader hands it to the protocol core,
        which copies what it keeps, before it awaits anything.
        """
        if self._socket is None:
            try:
                return await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            try:
                # One park per batch of data (receive_some yields once per call even when data
                # is waiting, then parks again in wait_readable when it is not).
                await trio.lowlevel.wait_readable(self._socket)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            fd = self._socket.fileno()
            if fd < 0:
                return b""
            try:
                n = os.readv(fd, (_read_buffer,))
            except BlockingIOError:
                continue
            except OSError:  # reset by the peer
                return b""
            return _read_view[:n]

    async def _enqueue(self, message: Message) -> None:
        try:
            self._to_model.send_nowait(message)
            return
        except trio.WouldBlock:
            pass
        timeout = self._settings.queue_full_timeout
        with trio.move_on_after(timeout):
            await self._to_model.send(message)
            return
        log.warning(
            "session %s: model queue full for %.0fs, closing 1013", self._request.path, timeout
        )
        await self.close(1013, f"model fell behind: input queue full for {timeout:g}s")

    async def _fail(self) -> None:
        """The peer violated the protocol (the core stopped reading at the bad frame). Let the
        model answer the messages already queued -- until it waits on ``receive()`` with the
        queue empty, or returns, bounded by ``FAILURE_DRAIN`` -- then send the failure's Close."""
        stats = self._from_reader.statistics()
        drained = stats.current_buffer_used == 0 and stats.tasks_waiting_receive > 0
        if not drained and not self._model_done.is_set():
            self._model_idle = trio.Event()  # set by receive() or when the model returns
            with trio.move_on_after(min(self._settings.close_grace, FAILURE_DRAIN)):
                await self._model_idle.wait()
        if self._proto.state == "failing":  # not closed meanwhile by the model or a shutdown
            await self.close()

    def _on_close(self, payload: tuple[int | None, str]) -> None:
        code, reason = payload
        if self._proto.state == "failing":
            return  # reported by close() once the model has answered what came before
        if self._close_code is None:
            self._close_code = code if code is not None else 1005
            self._close_reason = reason

    async def _run_model(self, model: Model, nursery_scope: trio.CancelScope) -> None:
        try:
            await model.session(self)
        except SessionClosed:
            pass
        except Exception as exc:
            log.exception("model session failed")
            if not self.closed:
                await self.close(1011, f"{type(exc).__name__}: {exc}")
        else:
            if not self.closed:
                await self.close(1000, "")
        finally:
            self._model_done.set()
            if self._model_idle is not None:
                self._model_idle.set()
        # Wait (bounded) for the peer to answer our Close, then end the session.
        with trio.move_on_after(self._settings.close_grace):
            await self._handshake_done.wait()
        nursery_scope.cancel()

    async def _pinger(self) -> None:
        """Our own pings (optional; the SageMaker sidecar pings anyway), on the Rust machine."""
        keepalive = self._keepalive
        assert keepalive is not None
        keepalive.start(trio.current_time())
        while not self.closed and (deadline := keepalive.next_deadline) is not None:
            await trio.sleep_until(deadline)
            action = keepalive.tick(trio.current_time())
            if action is None or self.closed:
                continue
            if action.kind == "close":
                await self.close(1011, f"keepalive: {keepalive.max_missed} pings unanswered")
                return
            self._proto.ping(action.payload or b"")
            await self._flush()
