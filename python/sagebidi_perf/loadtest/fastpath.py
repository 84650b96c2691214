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
"""

from __future__ import annotations

import contextlib
import ssl
import time
from typing import Any, Protocol

import gevent.event  # type: ignore[import-untyped]

from sagebidi_perf.client import Message, Session
from sagebidi_perf.client.errors import (
    ClientTimeoutError,
    ConnectionClosedError,
    SessionStateError,
)

__all__ = ["GeventStream", "MessageStream"]

RECV_SIZE = 256 * 1024
_perf = time.perf_counter


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

    # -- writing ---------------------------------------------------------------------------------

    def _write(self) -> None:
        """Write what the core has queued (the caller is the one writer)."""
        self._writing = True
        try:
            while True:
                self._pending = False
                out = self.core.data_to_send()
                if out:
                    try:
                        self.sock.sendall(out)
                    except TimeoutError as exc:
                        error = ClientTimeoutError("sending", self.timeout)
                        self.core.fail(error)
                        raise error from exc
                    except OSError as exc:
                        lost = ConnectionClosedError(
                            f"connection lost while sending: {exc}", self._abnormal
                        )
                        self.core.fail(lost)
                        raise lost from exc
                if not self._pending:
                    return
        finally:
            self._writing = False

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
                data = sock.recv(RECV_SIZE)
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

    def detach(self) -> None:
        """Give the socket back to the blocking session (non-blocking again) for its close."""
        if not self._detached:
            self._detached = True
            with contextlib.suppress(OSError, ValueError):
                self.sock.setblocking(False)
