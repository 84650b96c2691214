"""The exceptions the client sessions raise.

Everything is a :class:`ClientError` (a :class:`~sagebidi_perf.errors.SageBidiError`); classes
that stand for a built-in also inherit it (``ConnectionError``, ``TimeoutError``), so generic
handlers keep working. The names of the SageMaker errors are the service's own (the AWS SDK
raises classes of the same names), with the same fields:

* HTTP errors before the stream starts: :class:`ServiceError` and its subclasses
  (:class:`InputValidationError`, :class:`ModelError`, ...), chosen from ``x-amzn-errortype``
  (or the JSON body's ``__type``); ``message``/``error_code`` come from the body's capitalised
  ``Message``/``ErrorCode`` keys, as the SDK reads them.
* In-stream ``:message-type=exception`` events: :class:`ModelStreamError`,
  :class:`InternalStreamFailure` (both :class:`StreamEventError`); ``:message-type=error``:
  :class:`UnmodeledEventError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sagebidi_perf.errors import SageBidiError

__all__ = [
    "ClientError",
    "ClientTimeoutError",
    "ConnectError",
    "ConnectionClosedError",
    "HandshakeError",
    "InputValidationError",
    "InternalServerError",
    "InternalStreamFailure",
    "ModelError",
    "ModelStreamError",
    "NoCredentialsError",
    "NoRegionError",
    "ProtocolError",
    "ServiceError",
    "ServiceUnavailableError",
    "SessionStateError",
    "StreamEventError",
    "StreamResetError",
    "TLSError",
    "UnmodeledEventError",
    "service_error_from_response",
    "stream_event_error",
]


class ClientError(SageBidiError):
    """Base class of every client session error."""


class ConnectError(ClientError, ConnectionError):
    """The TCP connection (or DNS lookup) failed: refused, unreachable, unknown host."""


class TLSError(ConnectError):
    """The TLS handshake failed: untrusted or mismatched certificate, no ``h2`` in ALPN."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A bounded wait expired. ``operation`` names what was waited for.

    A receive timeout leaves the session usable (nothing was lost); a timeout while connecting,
    writing or closing leaves it broken.
    """

    def __init__(self, operation: str, timeout: float) -> None:
        super().__init__(f"{operation} timed out after {timeout:g} s")
        self.operation = operation
        self.timeout = timeout


class SessionStateError(ClientError):
    """The session cannot do that now: sending after :meth:`end_input`, or after it closed."""


class ProtocolError(ClientError):
    """The peer broke the protocol: a bad HTTP/2 frame, a corrupt or truncated event stream, a
    malformed WebSocket frame or handshake response."""


class ConnectionClosedError(ClientError, ConnectionError):
    """The connection ended before the session did.

    ``code``/``reason`` are the WebSocket close code and reason (1006 when TCP dropped without
    a Close frame); ``None`` for the SageMaker transport.
    """

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class StreamResetError(ConnectionClosedError):
    """The server reset the HTTP/2 stream (RST_STREAM) or the connection (GOAWAY with an
    error). ``error_code`` is the HTTP/2 error code."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class HandshakeError(ClientError):
    """The WebSocket upgrade was refused: the server answered ``status`` instead of 101."""

    def __init__(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        text = body[:200].decode("utf-8", "replace").strip()
        super().__init__(
            f"WebSocket upgrade refused with HTTP {status}" + (f": {text}" if text else "")
        )
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class NoCredentialsError(ClientError):
    """No AWS credentials were found (arguments, environment, shared files)."""


class NoRegionError(ClientError):
    """No AWS region was given or configured."""


# --- SageMaker HTTP errors ---------------------------------------------------------------------


class ServiceError(ClientError):
    """An HTTP error answer to the request, before the stream started.

    ``error_type`` is the name from ``x-amzn-errortype`` (text after ``:`` dropped) or the body's
    ``__type``; ``message``/``error_code`` are the JSON body's ``Message``/``ErrorCode`` (empty /
    None when the body uses other keys, as with the AWS SDK); ``body`` is the raw body.
    """

    fault = "client"

    def __init__(
        self,
        status: int,
        *,
        error_type: str = "",
        message: str = "",
        error_code: str | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        detail = message or body[:200].decode("utf-8", "replace").strip()
        name = error_type or "unknown error"
        super().__init__(f"HTTP {status} {name}" + (f": {detail}" if detail else ""))
        self.status = status
        self.error_type = error_type
        self.message = message
        self.error_code = error_code
        self.body = body
        self.headers = dict(headers or {})

    @property
    def request_id(self) -> str | None:
        """The ``x-amzn-requestid`` response header."""
        return self.headers.get("x-amzn-requestid")


class InputValidationError(ServiceError):
    """HTTP 400: the request is invalid (unknown endpoint, bad header)."""


class ModelError(ServiceError):
    """HTTP 424: the model container failed (for example it refused the WebSocket upgrade)."""

    original_status_code: int | None = None
    original_message: str | None = None
    log_stream_arn: str | None = None


class InternalServerError(ServiceError):
    """HTTP 500."""

    fault = "server"


class ServiceUnavailableError(ServiceError):
    """HTTP 503."""

    fault = "server"


_SERVICE_ERRORS: dict[str, type[ServiceError]] = {
    "InputValidationError": InputValidationError,
    "ModelError": ModelError,
    "InternalServerError": InternalServerError,
    "ServiceUnavailableError": ServiceUnavailableError,
}


def _json_object(body: bytes) -> dict[str, object]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def service_error_from_response(
    status: int, headers: Mapping[str, str], body: bytes
) -> ServiceError:
    """The exception for an HTTP error response, decided as the AWS SDK (restJson1) decides it.

    ``headers`` have lowercase names.
    """
    doc = _json_object(body)
    error_type = headers.get("x-amzn-errortype", "").split(":", 1)[0].strip()
    if not error_type:
        raw = doc.get("__type")
        if isinstance(raw, str):
            error_type = raw.rsplit("#", 1)[-1].split(":", 1)[0].strip()
    cls = _SERVICE_ERRORS.get(error_type, ServiceError)
    message = _str_or_none(doc.get("Message")) or ""
    error = cls(
        status,
        error_type=error_type,
        message=message,
        error_code=_str_or_none(doc.get("ErrorCode")),
        body=body,
        headers=headers,
    )
    if isinstance(error, ModelError):
        original = doc.get("OriginalStatusCode")
        error.original_status_code = (
            original if isinstance(original, int) and not isinstance(original, bool) else None
        )
        error.original_message = _str_or_none(doc.get("OriginalMessage"))
        error.log_stream_arn = _str_or_none(doc.get("LogStreamArn"))
    return error


# --- SageMaker in-stream errors ----------------------------------------------------------------


class StreamEventError(ClientError):
    """An ``:message-type=exception`` event ended the response stream.

    ``exception_type`` is its ``:exception-type``; ``message``/``error_code`` come from the JSON
    payload's ``Message``/``ErrorCode``; ``payload`` is the raw payload.
    """

    fault = "client"

    def __init__(
        self,
        exception_type: str,
        *,
        message: str = "",
        error_code: str | None = None,
        payload: bytes = b"",
    ) -> None:
        super().__init__(
            f"{exception_type or 'stream exception'}: {message or payload[:200]!r}"
            + (f" (ErrorCode {error_code})" if error_code else "")
        )
        self.exception_type = exception_type
        self.message = message
        self.error_code = error_code
        self.payload = payload


class ModelStreamError(StreamEventError):
    """The model's stream failed (for example, the container closed the WebSocket)."""


class InternalStreamFailure(StreamEventError):
    """The service's stream failed."""

    fault = "server"


class UnmodeledEventError(ClientError):
    """An ``:message-type=error`` event (``:error-code``, ``:error-message``) ended the stream."""

    def __init__(self, error_code: str, error_message: str) -> None:
        super().__init__(f"Received unmodeled event error: {error_code} - {error_message}")
        self.error_code = error_code
        self.error_message = error_message


_STREAM_ERRORS: dict[str, type[StreamEventError]] = {
    "ModelStreamError": ModelStreamError,
    "InternalStreamFailure": InternalStreamFailure,
}


def stream_event_error(exception_type: str, payload: bytes) -> StreamEventError:
    """The exception for an ``:message-type=exception`` event."""
    doc = _json_object(payload)
    cls = _STREAM_ERRORS.get(exception_type, StreamEventError)
    return cls(
        exception_type,
        message=_str_or_none(doc.get("Message")) or "",
        error_code=_str_or_none(doc.get("ErrorCode")),
        payload=payload,
    )
