"""Name the kind of a failed session: the key of the error counters and of Locust's failures."""

from __future__ import annotations

from sagebidi_perf.client.errors import (
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    NoCredentialsError,
    NoRegionError,
    ProtocolError,
    ServiceError,
    SessionStateError,
    StreamEventError,
    StreamResetError,
    TLSError,
    UnmodeledEventError,
)

__all__ = ["MismatchError", "ScenarioError", "error_kind"]


class ScenarioError(Exception):
    """A scenario-level failure (the server answered, but not what the scenario expects).

    ``kind`` is the error counter it goes to.
    """

    def __init__(self, kind: str, message: str, *, counted: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        #: Already counted in the error counters where it happened (per frame).
        self.counted = counted


class MismatchError(ScenarioError):
    """An echoed frame differs from the frame sent (byte-exact check)."""

    def __init__(self, message: str, *, counted: bool = False) -> None:
        super().__init__("mismatch", message, counted=counted)


def error_kind(exc: BaseException) -> str:
    """A short, stable name for an error.

    ``http_<status>`` (refused WebSocket upgrade, or a SageMaker HTTP error: 424 ModelError,
    403 bad signature, 400 InputValidationError), ``<ExceptionType>:<ErrorCode>`` for in-stream
    SageMaker exceptions (``ModelStreamError:1011``), ``close_<code>`` for a WebSocket closed
    with an error code (1006: dropped without a Close), ``reset_<h2 code>``, ``timeout``,
    ``tls``, ``connect`` (refused, unreachable), ``protocol``, ``credentials``, a
    :class:`ScenarioError`'s kind (``mismatch``, ``no_metadata``...), else the exception type.
    """
    if isinstance(exc, ScenarioError):
        return exc.kind
    if isinstance(exc, ServiceError | HandshakeError):
        return f"http_{exc.status}"
    if isinstance(exc, StreamEventError):
        code = exc.error_code
        return f"{exc.exception_type or 'StreamError'}" + (f":{code}" if code else "")
    if isinstance(exc, UnmodeledEventError):
        return f"event_error:{exc.error_code}"
    if isinstance(exc, StreamResetError):
        return f"reset_{exc.error_code}"
    if isinstance(exc, ConnectionClosedError):
        return f"close_{exc.code}" if exc.code is not None else "connection_lost"
    if isinstance(exc, TLSError):
        return "tls"
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, ClientTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, NoCredentialsError | NoRegionError):
        return "credentials"
    if isinstance(exc, SessionStateError):
        return "session_state"
    if isinstance(exc, ConnectionError | OSError):
        return "connect"
    return type(exc).__name__
