"""What the SageMaker runtime puts on the wire: error responses, response events, request
validation (the service model's patterns) and the mapping of PayloadParts to WebSocket frames.

Shapes follow ``shared/reference/sagemaker-bidi-protocol.md`` §3, §5 and §9: error bodies carry
capitalised ``Message``/``ErrorCode`` (a lowercase ``message`` leaves the client's ``.message``
empty) and the type in ``x-amzn-errortype``; in-stream errors are ``:message-type=exception``
events with a JSON payload, which the official client raises from ``receive()``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate

from sagebidi_perf.eventstream import Message, decode_message, encode_message

__all__ = [
    "ErrorResponse",
    "PayloadPart",
    "RequestEventError",
    "exception_event",
    "internal_stream_failure",
    "model_stream_error",
    "parse_request_event",
    "payload_part_event",
    "request_id",
    "validate_request_headers",
]

EVENTSTREAM_CONTENT_TYPE = b"application/vnd.amazon.eventstream"
SAGEMAKER_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.sagemaker/"
CORAL_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"

TARGET_VARIANT = "x-amzn-sagemaker-target-variant"
INVOCATION_PATH = "x-amzn-sagemaker-model-invocation-path"
QUERY_STRING = "x-amzn-sagemaker-model-query-string"

_QS_PAIR = r"[a-zA-Z0-9][A-Za-z0-9_-]*=(?:[A-Za-z0-9._~\-]|%[0-9A-Fa-f]{2})+"
#: (header, member name in messages, max length, pattern) from the service model.
HEADER_RULES: tuple[tuple[str, str, int, str], ...] = (
    (TARGET_VARIANT, "targetVariant", 63, r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"),
    (INVOCATION_PATH, "modelInvocationPath", 100, r"^[A-Za-z0-9\-._]+(?:/[A-Za-z0-9\-._]+)*$"),
    (QUERY_STRING, "modelQueryString", 2048, rf"^{_QS_PAIR}(?:&{_QS_PAIR})*$"),
)
_COMPILED = tuple((h, m, n, p, re.compile(p)) for h, m, n, p in HEADER_RULES)


def request_id() -> str:
    return str(uuid.uuid4())


def http_date() -> bytes:
    return formatdate(usegmt=True).encode()


class ErrorResponse(Exception):
    """An HTTP error answer, in the shape the official client parses (``raise`` it)."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        error_code: str | None = None,
        *,
        namespace: str = SAGEMAKER_ERROR_NAMESPACE,
        original_status_code: int | None = None,
        original_message: str | None = None,
        log_stream_arn: str | None = None,
    ) -> None:
        super().__init__(status, error_type, message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.error_code = error_code
        self.namespace = namespace
        self.original_status_code = original_status_code
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"

    def body(self) -> bytes:
        doc: dict[str, object] = {"Message": self.message}
        if self.error_code is not None:
            doc["ErrorCode"] = self.error_code
        if self.original_status_code is not None:
            doc["OriginalStatusCode"] = self.original_status_code
        if self.original_message is not None:
            doc["OriginalMessage"] = self.original_message
        if self.log_stream_arn is not None:
            doc["LogStreamArn"] = self.log_stream_arn
        return json.dumps(doc).encode()

    def headers(self, req_id: str) -> list[tuple[bytes, bytes]]:
        body = self.body()
        return [
            (b":status", str(self.status).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-amzn-requestid", req_id.encode()),
            (b"x-amzn-errortype", f"{self.error_type}:{self.namespace}".encode()),
            (b"date", http_date()),
        ]


def input_validation_error(message: str, code: str = "ValidationError") -> ErrorResponse:
    return ErrorResponse(400, "InputValidationError", message, code)


def validate_request_headers(headers: dict[str, str]) -> None:
    """Check the optional SageMaker headers against the service model (raises ErrorResponse 400
    ``InputValidationError`` with an AWS-style "validation error detected" message)."""
    problems: list[str] = []
    for header, member, max_len, pattern, compiled in _COMPILED:
        value = headers.get(header)
        if value is None:
            continue
        if len(value) > max_len:
            problems.append(
                f"Value at '{member}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {max_len}"
            )
        elif not compiled.fullmatch(value):  # `$` alone would accept a trailing newline
            problems.append(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise input_validation_error(
            f"{count} validation {noun} detected: " + "; ".join(problems),
            "Client.ValidationError",
        )


# -- response events ---------------------------------------------------------------------------


def payload_part_event(payload: bytes, *, text: bool, final: bool) -> bytes:
    """A ``PayloadPart`` response event (header order as the real service)."""
    return encode_message(
        [
            (":message-type", "event"),
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
            ("DataType", "UTF8" if text else "BINARY"),
            ("CompletionState", "COMPLETE" if final else "PARTIAL"),
        ],
        payload,
    )


def exception_event(exception_type: str, doc: dict[str, str]) -> bytes:
    return encode_message(
        [
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", "application/json"),
        ],
        json.dumps(doc).encode(),
    )


def model_stream_error(message: str, error_code: str) -> bytes:
    """Raised by the client's ``receive()`` as ``ModelStreamError(message, error_code)``."""
    return exception_event("ModelStreamError", {"Message": message, "ErrorCode": error_code})


def internal_stream_failure(message: str) -> bytes:
    """Raised by the client's ``receive()`` as ``InternalStreamFailure(message)``."""
    return exception_event("InternalStreamFailure", {"Message": message})


# -- request events ----------------------------------------------------------------------------


class RequestEventError(ValueError):
    """A request event is not a valid ``PayloadPart``."""


@dataclass(frozen=True, slots=True)
class PayloadPart:
    payload: bytes
    #: ``DataType == "UTF8"`` (a text frame); BINARY or absent is binary.
    text: bool
    #: ``CompletionState != "PARTIAL"`` (absent means COMPLETE).
    final: bool


def _string_header(headers: Mapping[str, object], name: str) -> str | None:
    value = headers.get(name)
    if value is None or isinstance(value, str):
        return value
    raise RequestEventError(f"header {name} must be a string, got {type(value).__name__}")


def parse_request_event(inner: bytes | Message) -> PayloadPart:
    """Decode one (inner, already verified) request event into a :class:`PayloadPart`.

    Raises :class:`RequestEventError` (or an ``EventStreamError``) for anything else.
    """
    message = inner if isinstance(inner, Message) else decode_message(inner)
    headers: Mapping[str, object] = message.headers
    message_type = _string_header(headers, ":message-type")
    event_type = _string_header(headers, ":event-type")
    if message_type != "event" or event_type != "PayloadPart":
        raise RequestEventError(
            f"expected a PayloadPart event, got :message-type={message_type!r} "
            f":event-type={event_type!r}"
        )
    data_type = _string_header(headers, "DataType")
    if data_type not in (None, "UTF8", "BINARY"):
        raise RequestEventError(f"DataType must be UTF8 or BINARY, got {data_type!r}")
    completion = _string_header(headers, "CompletionState")
    if completion not in (None, "PARTIAL", "COMPLETE"):
        raise RequestEventError(f"CompletionState must be PARTIAL or COMPLETE, got {completion!r}")
    _string_header(headers, "P")  # padding: accepted and ignored
    return PayloadPart(message.payload, data_type == "UTF8", completion != "PARTIAL")
