"""What the two sans-IO session cores share: the message type and the receive-side bookkeeping.

A core does no I/O and reads no clock. A driver writes :meth:`SessionCore.data_to_send` to the
socket after every call, feeds what it reads to :meth:`SessionCore.receive_data` together with
the time it read it, and takes messages out with :meth:`SessionCore.next_message`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from sagebidi_perf.client.errors import ClientError, SessionStateError

if TYPE_CHECKING:
    from sagebidi_perf.client.sagemaker import SageMakerCore
    from sagebidi_perf.client.ws import WsCore

__all__ = ["DriverSession", "Message", "SessionCore"]


class Message(NamedTuple):
    """One received message (or, with ``fragments=True``, one part of one).

    ``data`` is ``str`` for a whole text message and ``bytes`` otherwise (parts are always
    ``bytes``: a part may end inside a UTF-8 character). ``text`` says whether the message is
    text (WebSocket text frame / ``DataType=UTF8``). ``final`` is False for every part of a
    fragmented message but the last (``CompletionState=PARTIAL``). ``received_at`` is the
    ``time.perf_counter()`` reading taken when the bytes that completed it came off the socket.
    """

    data: str | bytes
    text: bool
    final: bool = True
    received_at: float = 0.0


class SessionCore:
    """Receive-side state common to the WebSocket and SageMaker cores.

    ``next_message()`` returns queued messages first; once they are drained it raises the error
    that ended the session, if any, and otherwise returns None. ``receive_closed`` is True once
    no more messages can arrive.
    """

    #: "ws" or "sagemaker".
    transport = ""

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._error: ClientError | None = None
        self._send_error: ClientError | None = None
        self._receive_closed = False
        self._input_ended = False
        #: True when the core queued bytes outside a send call (flow-control credit released by
        #: :meth:`next_message`); the driver then flushes.
        self.wants_flush = False

    # -- receive side -----------------------------------------------------------------------

    def next_message(self) -> Message | None:
        """The next message, or None if none is queued. Raises the session's error (once the
        messages before it are taken)."""
        if self._messages:
            return self._messages.popleft()
        if self._error is not None:
            raise self._error.with_traceback(None)
        return None

    @property
    def receive_closed(self) -> bool:
        """No more messages will arrive (the peer ended the stream, or the session failed)."""
        return self._receive_closed or self._error is not None

    @property
    def error(self) -> ClientError | None:
        """The error that ended the session, if one did."""
        return self._error

    @property
    def queued(self) -> int:
        """Messages received and not yet taken."""
        return len(self._messages)

    def fail(self, error: ClientError) -> None:
        """Ends the session with ``error`` (the first error wins). Drivers call it for socket
        errors; queued messages are still delivered first."""
        if self._error is not None or self._send_error is not None:
            return
        if self._receive_closed:
            # The stream had already ended cleanly: receivers still see a clean end, and the
            # error only stops further sends.
            self._send_error = error
        else:
            self._error = error

    @property
    def input_ended(self) -> bool:
        """:meth:`end_input` was called (or the session failed): nothing more can be sent."""
        return self._input_ended

    def _check_send(self) -> None:
        error = self._error or self._send_error
        if error is not None:
            raise error.with_traceback(None)
        if self._input_ended:
            raise SessionStateError("input already ended: nothing more can be sent")

    # -- the interface drivers use (implemented by the transports) ---------------------------

    def data_to_send(self) -> bytes:
        raise NotImplementedError

    def receive_data(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """The handshake finished (WebSocket 101 / HTTP 200 response headers)."""
        raise NotImplementedError

    @property
    def send_blocked(self) -> bool:
        """Data waits for flow-control credit (the driver must read to get it)."""
        return False


class DriverSession:
    """What the blocking and the Trio session share: state read off the sans-IO core, no I/O."""

    _core: WsCore | SageMakerCore
    _closed: bool

    @property
    def transport(self) -> str:
        """``"ws"`` or ``"sagemaker"``."""
        return self._core.transport

    @property
    def core(self) -> WsCore | SageMakerCore:
        """The sans-IO core (status, headers, close code...). Do not drive it directly."""
        return self._core

    @property
    def closed(self) -> bool:
        """:meth:`close` or :meth:`abort` was called."""
        return self._closed

    @property
    def input_ended(self) -> bool:
        return self._core.input_ended

    def _closed_error(self) -> SessionStateError:
        error = self._core.error
        if error is None or isinstance(error, SessionStateError):
            return error or SessionStateError("the session is closed")
        closed = SessionStateError(f"the session is closed ({error})")
        closed.__cause__ = error
        return closed
