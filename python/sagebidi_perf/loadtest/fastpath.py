"""The load tester's data path: a session's sans-IO core driven straight on its gevent socket.

:func:`sagebidi_perf.client.connect_ws`/``connect_sagemaker`` open the session (TCP, TLS, the
WebSocket upgrade or the HTTP/2 request, every error mapped); :class:`GeventStream` then carries
the frames with one sender and one receiver greenlet and nothing else per frame: the receiver
blocks in ``sock.recv`` (gevent waits on the fd; the socket timeout bounds it), the sender
writes with ``sock.sendall``. The blocking driver's poll objects, condition variables and
locks, needed for real threads, cost more CPU than the frame itself at thousands of sessions.

Writes never interleave: one greenlet writes at a time (``_writing``); bytes the receiver
queues meanwhile (pongs, HTTP/2 window updates) are written by the writer before it lets go,
so the receiver never waits for a write and never stops reading (gevent is cooperative: the
check and the hand-over cannot race). :meth:`GeventStream.detach` hands the socket back to the
blocking session for its close handshake.

Paced sends go through one :class:`Pacer` per process instead of a sleeping greenlet per session:
a single greenlet keeps every session's next send time in a heap, wakes at the earliest and runs
every step due by then. A step writes with :meth:`GeventStream.send_nowait`: straight to the
non-blocking OS socket, so a frame costs one ``send`` syscall and no greenlet switch, timer or
gevent ``sendall`` bookkeeping; only when the socket takes part of it (or HTTP/2 flow control
holds it) does a writer greenlet finish the send (:meth:`GeventStream.finish_send`), and that
session's next step waits for it, as a blocking send would have made it wait.

Replies can be read the same way (:meth:`GeventStream.dispatch`, plain TCP only): a read watcher
that stays started calls back from the hub for each readable socket, one ``recv_into`` a
shared buffer, every complete message handed to the scenario's callback, and a timer per
receive timeout (not per read) ends a silent session. The greenlet path (:meth:`receive`) waits
for readability before reading again after a short read (no EAGAIN ``recv`` per message) with
one reusable timeout. The echo scenario uses the pacer and dispatch; speech and text users (and
TLS) use the greenlet paths.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import gevent.socket  # type: ignore[import-untyped]
import gevent.ssl  # type: ignore[import-untyped]

from sagebidi_perf.client import Message, Session
from sagebidi_perf.client.errors import (
    ClientTimeoutError,
    ConnectionClosedError,
    SessionStateError,
)

__all__ = ["PACER", "GeventStream", "MessageStream", "Pacer", "PacerStep"]

RECV_SIZE = 256 * 1024
#: A step runs when its due time is at most this far ahead (a timer cannot wake more exactly).
EARLY = 0.0002
#: The pacer yields to the other greenlets after running steps for this long without a pause.
YIELD_AFTER = 0.002
_perf = time.perf_counter
_RECV_BUFFER = bytearray(RECV_SIZE)
_RECV_VIEW = memoryview(_RECV_BUFFER)

#: ``step(due, now)`` -> the step's next due time, or None (done, or it re-adds itself later).
PacerStep = Callable[[float, float], float | None]


class Pacer:
    """Runs steps at their due times (``time.perf_counter``) from one greenlet.

    :meth:`add` schedules a step; the greenlet sleeps until the earliest due time, runs every
    step due (each with its due time and the clock read just before it), and re-schedules a step
    at the time it returns. Steps must not block; they handle their own errors (an exception
    escaping a step drops it). When the heap empties the greenlet ends; :meth:`add` starts it.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, PacerStep]] = []
        self._order = itertools.count()
        self._greenlet: Any = None
        self._wake = gevent.event.Event()
        self._until = math.inf

    def add(self, due: float, step: PacerStep) -> None:
        heapq.heappush(self._heap, (due, next(self._order), step))
        greenlet = self._greenlet
        if greenlet is None or greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        elif due < self._until:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._heap)

    def _run(self) -> None:
        heap = self._heap
        wake = self._wake
        order = self._order
        pop, push = heapq.heappop, heapq.heappush
        busy_since = _perf()
        try:
            while heap:
                due = heap[0][0]
                now = _perf()
                if due - now > EARLY:
                    self._until = due
                    wake.clear()
                    wake.wait(due - now)
                    self._until = math.inf
                    busy_since = _perf()
                    continue
                if now - busy_since > YIELD_AFTER:
                    gevent.sleep(0)  # let receivers and Locust run when we are behind
                    busy_since = _perf()
                    continue
                step = pop(heap)[2]
                try:
                    nxt = step(due, now)
                except Exception:  # a broken step must not stop the others
                    nxt = None
                if nxt is not None:
                    push(heap, (nxt, next(order), step))
        finally:
            self._until = math.inf
            self._greenlet = None


#: The process's pacer (Locust runs every user of a process on one gevent hub).
PACER = Pacer()


class MessageStream(Protocol):
    """What a scenario uses: a :class:`GeventStream`, or any session-like object."""

    def send(self, data: str | bytes | bytearray | memoryview) -> None: ...

    def receive(self) -> Message | None: ...


class GeventStream:
    """``send``/``receive`` of a :class:`~sagebidi_perf.client.Session` on gevent sockets."""

    def __init__(self, session: Session, timeout: float) -> None:
        self.session = session
        self.core = session.core
        self.sock: Any = session._sock  # the blocking session's socket (gevent's, patched)
        self.timeout = timeout
        self.sock.settimeout(timeout)  # gevent: recv/sendall wait cooperatively, bounded
        self._abnormal = 1006 if self.core.transport == "ws" else None
        self._writing = False
        self._pending = False
        self._credit = gevent.event.Event()
        self._detached = False
        # The OS socket under a plain gevent socket (non-blocking); None for TLS.
        plain = type(self.sock) is gevent.socket.socket
        self._raw: Any = getattr(self.sock, "_sock", None) if plain else None
        self._rest: bytes | memoryview = b""
        self._after_writer = False
        self._idle = gevent.event.Event()  # set when a _write ends
        self._drained = False  # the last read came back short: wait before the next one
        self._read_timer: Any = None  # one reusable receive timeout (not one per wait)
        # dispatch(): the read watcher, the idle timer and the callbacks
        self._watcher: Any = None
        self._timer: Any = None
        self._on_message: Callable[[Message], None] | None = None
        self._on_end: Callable[[BaseException | None], None] | None = None
        self._last_read = 0.0

    # -- writing ---------------------------------------------------------------------------------

    def _lost(self, exc: OSError) -> ConnectionClosedError:
        lost = ConnectionClosedError(f"connection lost while sending: {exc}", self._abnormal)
        self.core.fail(lost)
        return lost

    def _sendall(self, out: bytes | memoryview) -> None:
        try:
            self.sock.sendall(out)
        except TimeoutError as exc:
            error = ClientTimeoutError("sending", self.timeout)
            self.core.fail(error)
            raise error from exc
        except OSError as exc:
            raise self._lost(exc) from exc

    def _write(self, first: bytes | memoryview = b"") -> None:
        """Write ``first``, then what the core has queued (the caller is the one writer)."""
        self._writing = True
        try:
            if first:
                self._sendall(first)
            while True:
                self._pending = False
                out = self.core.data_to_send()
                if out:
                    self._sendall(out)
                if not self._pending:
                    return
        finally:
            self._writing = False
            self._idle.set()

    def _flush_from_reader(self) -> None:
        if self._writing:
            self._pending = True  # the writer takes these bytes along before it stops
            return
        # A failure is recorded in the core: the next receive raises it.
        with contextlib.suppress(ClientTimeoutError, ConnectionClosedError):
            self._write()

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """One whole message (``str`` as text); waits only for HTTP/2 flow-control credit."""
        if self._detached:
            raise SessionStateError("the stream was handed back to its session")
        core = self.core
        core.send(data)
        self._write()
        while core.send_blocked:
            self._credit.clear()
            if not self._credit.wait(self.timeout):
                raise ClientTimeoutError("waiting for flow-control credit", self.timeout)
            error = core.error
            if error is not None and core.send_blocked:
                raise error
            self._write()

    def send_nowait(self, data: str | bytes | bytearray | memoryview) -> bool:
        """Like :meth:`send` but never waits: True when the message is written. False when it
        is not (yet): then the caller must run :meth:`finish_send` (in a greenlet of its own)
        before anything else is sent on this stream. Raises as :meth:`send` does."""
        if self._detached:
            raise SessionStateError("the stream was handed back to its session")
        core = self.core
        core.send(data)
        if self._writing:  # the reader is writing: it takes these bytes along
            self._pending = True
            self._after_writer = True
            return False
        raw = self._raw
        if raw is None:  # TLS: the gevent socket writes it
            self._rest = b""
            self._writing = True
            return False
        out = core.data_to_send()
        sent = 0
        if out:
            try:
                sent = raw.send(out)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._lost(exc) from exc
        if sent < len(out):
            self._rest = memoryview(out)[sent:]
            self._writing = True  # the reader queues behind the rest (see _flush_from_reader)
            return False
        if core.send_blocked:
            self._rest = b""
            self._writing = True
            return False
        return True

    def finish_send(self) -> None:
        """Complete a :meth:`send_nowait` that returned False (may wait: its own greenlet)."""
        if self._after_writer:
            self._after_writer = False
            while self._writing:
                self._idle.clear()
                if not self._idle.wait(self.timeout):
                    raise ClientTimeoutError("sending", self.timeout)
            self._write()
        else:
            rest, self._rest = self._rest, b""
            self._write(rest)  # also clears _writing
        core = self.core
        while core.send_blocked:
            self._credit.clear()
            if not self._credit.wait(self.timeout):
                raise ClientTimeoutError("waiting for flow-control credit", self.timeout)
            error = core.error
            if error is not None and core.send_blocked:
                raise error
            self._write()

    # -- reading ---------------------------------------------------------------------------------

    def receive(self) -> Message | None:
        """The next message; None once the server ended the stream; raises the session's error.
        Waits at most the timeout for bytes (then :class:`ClientTimeoutError`)."""
        core = self.core
        sock = self.sock
        while True:
            message = core.next_message()
            if message is not None:
                if core.wants_flush:
                    self._flush_from_reader()
                return message
            if core.receive_closed:
                return None
            try:
                data = sock.recv(RECV_SIZE) if self._raw is None else self._read()
            except TimeoutError:
                raise ClientTimeoutError("receive", self.timeout) from None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except OSError as exc:
                core.fail(ConnectionClosedError(f"connection lost: {exc}", self._abnormal))
                self._credit.set()
                continue
            core.receive_data(data, _perf())
            self._credit.set()
            self._flush_from_reader()

    def _read(self) -> bytes:
        """Bytes from the OS socket (``b""``: the peer closed), waiting at most the timeout.

        After a read that did not fill the buffer the socket is most likely drained: wait for
        readability first instead of a ``recv`` that would fail with EAGAIN. Reads go into one
        preallocated buffer per process (greenlets do not interleave between the read and the
        copy), not a fresh 256 KiB allocation per read."""
        raw = self._raw
        while True:
            if self._drained:
                self._wait_readable()
            try:
                n = raw.recv_into(_RECV_BUFFER)
            except BlockingIOError:
                self._drained = True
                continue
            self._drained = n < RECV_SIZE
            return _RECV_VIEW[:n].tobytes()

    def _wait_readable(self) -> None:
        timer = self._read_timer
        if timer is None:
            timer = self._read_timer = gevent.Timeout(self.timeout)
        timer.start()
        try:
            self.sock.hub.wait(self.sock._read_event)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise TimeoutError("receive") from None
        finally:
            timer.cancel()
        self._drained = False

    # -- reading in callbacks -------------------------------------------------------------------

    @property
    def can_dispatch(self) -> bool:
        """:meth:`dispatch` works here (a plain TCP socket; TLS reads go through gevent)."""
        return self._raw is not None

    def dispatch(
        self,
        on_message: Callable[[Message], None],
        on_end: Callable[[BaseException | None], None],
    ) -> None:
        """Read without a greenlet: the hub calls ``on_message(message)`` for every message as
        its bytes arrive (one ``recv`` per readable socket: no greenlet switch, no watcher
        start/stop, no timer per read), then ``on_end(None)`` once the server ended the stream,
        or ``on_end(error)`` on failure, on no bytes for the timeout
        (:class:`ClientTimeoutError` ``receive``) or when ``on_message`` raises. The callbacks
        run in the hub: they must not block. :meth:`detach` stops it."""
        if self._raw is None:
            raise SessionStateError("dispatch needs a plain TCP socket")
        if self._watcher is not None:
            raise SessionStateError("already dispatching")
        self._on_message = on_message
        self._on_end = on_end
        loop = self.sock.hub.loop
        self._last_read = _perf()
        self._watcher = loop.io(self._raw.fileno(), 1)
        self._watcher.start(self._readable)
        self._arm_timer(self.timeout)
        # Messages that arrived with the handshake are delivered from the hub, like the rest.
        if self.core.queued or self.core.receive_closed:
            loop.run_callback(self._deliver)

    def _arm_timer(self, seconds: float) -> None:
        timer = self.sock.hub.loop.timer(max(seconds, 0.001))
        self._timer = timer
        timer.start(self._check_idle)

    def _check_idle(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self._watcher is None:
            return
        left = self._last_read + self.timeout - _perf()
        if left > 0:
            self._arm_timer(left)
            return
        self._end(ClientTimeoutError("receive", self.timeout))

    def _readable(self) -> None:
        core = self.core
        try:
            n = self._raw.recv_into(_RECV_BUFFER)
        except BlockingIOError:
            return
        except OSError as exc:
            core.fail(ConnectionClosedError(f"connection lost: {exc}", self._abnormal))
        else:
            now = _perf()
            self._last_read = now
            core.receive_data(_RECV_VIEW[:n].tobytes(), now)
        self._credit.set()
        self._deliver()

    def _deliver(self) -> None:
        if self._watcher is None:
            return
        core = self.core
        on_message = self._on_message
        assert on_message is not None
        while True:
            try:
                message = core.next_message()
            except Exception as exc:
                self._end(exc)
                return
            if message is None:
                break
            try:
                on_message(message)
            except Exception as exc:
                self._end(exc)
                return
            if self._watcher is None:  # on_message detached the stream
                return
        self._flush_nowait()
        if core.receive_closed:
            self._end(None)

    def _flush_nowait(self) -> None:
        """Write what the core queued while reading (pongs, window updates, the Close reply)
        without waiting: the rest, if any, goes to a writer greenlet."""
        if self._writing:
            self._pending = True  # the writer takes these bytes along before it stops
            return
        out = self.core.data_to_send()
        if not out:
            return
        try:
            sent = self._raw.send(out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(exc)  # recorded in the core: the next delivery ends with it
            return
        if sent < len(out):
            self._writing = True
            gevent.spawn(self._write_quietly, memoryview(out)[sent:])

    def _write_quietly(self, rest: memoryview) -> None:
        with contextlib.suppress(ClientTimeoutError, ConnectionClosedError):
            self._write(rest)

    def _end(self, error: BaseException | None) -> None:
        on_end = self._on_end
        self._stop_dispatch()
        if on_end is not None:
            on_end(error)

    def _stop_dispatch(self) -> None:
        self._on_end = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def detach(self) -> None:
        """Give the socket back to the blocking session (non-blocking again) for its close."""
        self._stop_dispatch()
        if not self._detached:
            self._detached = True
            with contextlib.suppress(OSError, ValueError):
                self.sock.setblocking(False)
