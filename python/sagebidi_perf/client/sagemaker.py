"""The ``sagemaker`` transport's sans-IO core: HTTP/2 + AWS event-stream + SigV4.

What ``aws-sdk-sagemaker-runtime-http2`` puts on the wire for
``InvokeEndpointWithBidirectionalStream`` (see the protocol reference, §2-§5):

* one HTTP/2 request ``POST /endpoints/{name}/invocations-bidirectional-stream?`` with the
  ``x-amzn-sagemaker-*`` headers that are set, ``content-type:
  application/vnd.amazon.eventstream``, signed with SigV4 (payload hash
  ``STREAMING-AWS4-HMAC-SHA256-EVENTS``);
* every message a ``PayloadPart`` event (``DataType`` UTF8/BINARY, ``CompletionState``
  PARTIAL/COMPLETE) wrapped in a signed envelope chained from the request signature
  (the Rust :class:`~sagebidi_perf.sigv4.EventSigner`);
* closing the input: the final signed empty frame, then ``END_STREAM``;
* responses: unsigned event-stream messages. ``PayloadPart`` → :class:`Message`;
  ``:message-type=exception`` → :class:`ModelStreamError` / :class:`InternalStreamFailure`;
  ``:message-type=error`` → :class:`UnmodeledEventError`; an HTTP error status →
  :class:`ServiceError` subclasses with the JSON body's ``Message``/``ErrorCode``.

HTTP/2 is the ``h2`` sans-IO library; flow control is respected both ways (a send larger than
the peer's window waits in :attr:`SageMakerCore.send_blocked` until a WINDOW_UPDATE).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterable, Mapping
from typing import NoReturn
from urllib.parse import quote, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from sagebidi_perf import __version__
from sagebidi_perf.client._core import Message, SessionCore
from sagebidi_perf.client.credentials import Credentials
from sagebidi_perf.client.errors import (
    ClientError,
    ConnectionClosedError,
    ProtocolError,
    SessionStateError,
    StreamResetError,
    UnmodeledEventError,
    service_error_from_response,
    stream_event_error,
)
from sagebidi_perf.errors import EventStreamError
from sagebidi_perf.eventstream import EventStreamDecoder, encode_message
from sagebidi_perf.eventstream import Message as EventMessage
from sagebidi_perf.sigv4 import STREAMING_EVENTS_PAYLOAD, SignedRequest, sign_request

__all__ = [
    "CONTENT_TYPE",
    "SageMakerCore",
    "build_request",
    "default_endpoint_url",
    "payload_part_headers",
    "resolve_endpoint_url",
    "split_endpoint_url",
]

CONTENT_TYPE = "application/vnd.amazon.eventstream"
SERVICE = "sagemaker"
USER_AGENT = f"sagebidi-perf/{__version__} (sagemaker bidi client)"
#: Bytes of an HTTP error body kept.
MAX_ERROR_BODY = 64 * 1024
#: The largest HTTP/2 flow-control window.
MAX_WINDOW = 2**31 - 1
_OCTET = (":content-type", "application/octet-stream")


def default_endpoint_url(region: str) -> str:
    """The SageMaker runtime endpoint for bidirectional streams (note the port, 8443)."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com:8443"


def resolve_endpoint_url(
    endpoint_url: str | None, region: str, environ: Mapping[str, str] | None = None
) -> str:
    """The endpoint URL as the AWS SDK resolves it: the argument, else
    ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME_HTTP2``, else ``AWS_ENDPOINT_URL``, else
    :func:`default_endpoint_url` of ``region``."""
    if endpoint_url:
        return endpoint_url
    env = os.environ if environ is None else environ
    return (
        env.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME_HTTP2")
        or env.get("AWS_ENDPOINT_URL")
        or default_endpoint_url(region)
    )


def split_endpoint_url(url: str) -> tuple[str, int, str]:
    """``(host, port, authority)`` of an ``https://host[:port]`` endpoint URL.

    ``authority`` is the ``:authority``/``host`` value: the port is left out when it is 443 (as
    the AWS signer does).
    """
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(
            f"endpoint URL {url!r}: bidirectional streaming needs HTTP/2 over TLS (https://)"
        )
    if not parts.hostname:
        raise ValueError(f"no host in endpoint URL {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint URL {url!r} must have no path or query")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ValueError(f"bad port in endpoint URL {url!r}") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return host, port, shown if port == 443 else f"{shown}:{port}"


def payload_part_headers(
    *, text: bool | None, completion: str | None, nonempty: bool
) -> list[tuple[str, str]]:
    """The inner ``PayloadPart`` event's headers in the SDK's order (§3.2): ``:message-type``,
    ``:event-type``, ``DataType`` (if ``text`` is not None), ``CompletionState`` (if given),
    ``:content-type`` (only when the payload is not empty)."""
    headers = [(":message-type", "event"), (":event-type", "PayloadPart")]
    if text is not None:
        headers.append(("DataType", "UTF8" if text else "BINARY"))
    if completion is not None:
        headers.append(("CompletionState", completion))
    if nonempty:
        headers.append(_OCTET)
    return headers


# (text, completion, nonempty) -> headers, built once.
_PART_HEADERS = {
    (text, completion, nonempty): payload_part_headers(
        text=text, completion=completion, nonempty=nonempty
    )
    for text in (True, False)
    for completion in ("PARTIAL", "COMPLETE")
    for nonempty in (True, False)
}


def build_request(
    *,
    authority: str,
    endpoint_name: str,
    credentials: Credentials,
    region: str,
    amz_date: str,
    model_invocation_path: str | None = None,
    model_query_string: str | None = None,
    target_variant: str | None = None,
    user_agent: str = USER_AGENT,
) -> tuple[list[tuple[bytes, bytes]], SignedRequest]:
    """The signed request's HTTP/2 header list (in the SDK's order, §2.2) and its signature.

    The endpoint name is percent-encoded into the path (the signer encodes it once more for the
    canonical request); the path keeps the SDK's trailing ``?``.
    """
    if not endpoint_name:
        raise ValueError("endpoint_name is empty")
    path = f"/endpoints/{quote(endpoint_name, safe='')}/invocations-bidirectional-stream?"
    optional = [
        ("x-amzn-sagemaker-target-variant", target_variant),
        ("x-amzn-sagemaker-model-invocation-path", model_invocation_path),
        ("x-amzn-sagemaker-model-query-string", model_query_string),
    ]
    amzn = [(name, value) for name, value in optional if value is not None]
    signed = sign_request(
        method="POST",
        path=path,
        headers=[("host", authority), *amzn, ("content-type", CONTENT_TYPE)],
        payload_hash=STREAMING_EVENTS_PAYLOAD,
        content_sha256_header=True,
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        region=region,
        service=SERVICE,
        amz_date=amz_date,
    )
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
        *amzn,
        ("content-type", CONTENT_TYPE),
        ("user-agent", user_agent),
        *signed.added_headers,
        ("accept", "*/*"),
    ]
    return [(n.encode(), v.encode()) for n, v in headers], signed


class SageMakerCore(SessionCore):
    """Sans-IO client session: one ``InvokeEndpointWithBidirectionalStream`` call on its own
    HTTP/2 connection.

    ``amz_date`` (``YYYYMMDDTHHMMSSZ``) dates the request signature; each event is signed at
    the ``date_ms`` given to :meth:`send` (default: the signer reads the clock).
    ``fragments=True`` reports each ``PayloadPart`` as it arrives (``final`` False for
    ``PARTIAL``) instead of reassembling ``PARTIAL``...``COMPLETE`` runs into one message.
    ``receive_window`` is the HTTP/2 stream window we advertise; credit is returned as messages
    are decoded while fewer than ``max_queued`` wait to be taken, else as they are taken.
    """

    transport = "sagemaker"

    def __init__(
        self,
        *,
        authority: str,
        endpoint_name: str,
        credentials: Credentials,
        region: str,
        amz_date: str,
        model_invocation_path: str | None = None,
        model_query_string: str | None = None,
        target_variant: str | None = None,
        fragments: bool = False,
        max_message_size: int = 16 * 1024 * 1024,
        receive_window: int = 1024 * 1024,
        max_queued: int = 1024,
        user_agent: str = USER_AGENT,
    ) -> None:
        super().__init__()
        if not 65535 <= receive_window <= MAX_WINDOW:
            raise ValueError(f"receive_window must be in [65535, {MAX_WINDOW}]")
        self._fragments = fragments
        self._max_message_size = max_message_size
        self._max_queued = max_queued
        self.request_headers, self.signed = build_request(
            authority=authority,
            endpoint_name=endpoint_name,
            credentials=credentials,
            region=region,
            amz_date=amz_date,
            model_invocation_path=model_invocation_path,
            model_query_string=model_query_string,
            target_variant=target_variant,
            user_agent=user_agent,
        )
        self._signer = self.signed.event_signer()
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: receive_window,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        conn.initiate_connection()
        # As the AWS SDK (CRT) does: open the connection window fully at once.
        conn.increment_flow_control_window(MAX_WINDOW - 65535)
        self._stream_id = conn.get_next_available_stream_id()
        conn.send_headers(self._stream_id, self.request_headers, end_stream=False)
        self._h2 = conn
        # Outgoing DATA waiting for flow-control credit; None marks END_STREAM.
        self._outbox: deque[memoryview | None] = deque()
        self._outbox_bytes = 0
        self._decoder = EventStreamDecoder()
        self._status: int | None = None
        self._response_headers: dict[str, str] = {}
        self._error_body: bytearray | None = None
        self._unacked = 0
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._parts_text = False
        self._sent_end_stream = False
        self._goaway_sent = False
        #: Events of a type other than PayloadPart that were skipped.
        self.unknown_events = 0

    # -- state --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The response headers arrived with status 200."""
        return self._status == 200

    @property
    def status(self) -> int | None:
        """The HTTP response status; None before the headers arrived."""
        return self._status

    @property
    def response_headers(self) -> dict[str, str]:
        """Response headers (lowercase names; pseudo-headers left out)."""
        return self._response_headers

    @property
    def invoked_production_variant(self) -> str | None:
        return self._response_headers.get("x-amzn-invoked-production-variant")

    @property
    def request_id(self) -> str | None:
        return self._response_headers.get("x-amzn-requestid")

    @property
    def send_blocked(self) -> bool:
        return self._outbox_bytes > 0 or bool(self._outbox)

    @property
    def request_ended(self) -> bool:
        """``END_STREAM`` was queued (after the final signed frame and any blocked data)."""
        return self._sent_end_stream

    @property
    def pending_send_bytes(self) -> int:
        """Signed bytes waiting for flow-control credit."""
        return self._outbox_bytes

    @property
    def events_signed(self) -> int:
        """Events signed so far (the final empty frame included)."""
        return self._signer.count

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview, date_ms: int | None = None) -> None:
        """Signs and queues one whole message: ``str`` as ``DataType=UTF8``, bytes-like (read
        zero-copy) as ``BINARY``, with ``CompletionState=COMPLETE``."""
        self._send_part(data, "COMPLETE", date_ms)

    def send_fragment(
        self,
        data: str | bytes | bytearray | memoryview,
        final: bool,
        date_ms: int | None = None,
    ) -> None:
        """Signs and queues one part of a message: ``CompletionState=PARTIAL``, or ``COMPLETE``
        when ``final``. ``DataType`` follows the type of ``data`` (``str`` → UTF8)."""
        self._send_part(data, "COMPLETE" if final else "PARTIAL", date_ms)

    def _send_part(
        self, data: str | bytes | bytearray | memoryview, completion: str, date_ms: int | None
    ) -> None:
        self._check_send()
        if isinstance(data, str):
            payload: bytes | bytearray | memoryview = data.encode()
            text = True
        else:
            payload, text = data, False
        headers = _PART_HEADERS[text, completion, len(payload) > 0]
        self._queue(self._signer.sign(encode_message(headers, payload), date_ms))

    def send_event(
        self,
        headers: Iterable[tuple[str, str]],
        payload: bytes = b"",
        date_ms: int | None = None,
    ) -> None:
        """Signs and queues an inner event with exactly these headers (tests, padding ``P``)."""
        self._check_send()
        self._queue(self._signer.sign(encode_message(list(headers), payload), date_ms))

    def end_input(self, code: int = 1000, reason: str = "", date_ms: int | None = None) -> None:
        """Ends the request: the final signed empty frame, then ``END_STREAM``. Messages keep
        arriving until the server ends the response. (``code``/``reason`` are unused: the
        signature matches the WebSocket core's.)"""
        if self._input_ended:
            return
        self._input_ended = True
        if self._error is not None or self._send_error is not None:
            return
        self._queue(self._signer.sign_end(date_ms))
        self._outbox.append(None)
        self._flush_outbox()

    def close_connection(self) -> None:
        """Queues GOAWAY(NO_ERROR): the connection is done."""
        if self._goaway_sent:
            return
        self._goaway_sent = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection()

    def _queue(self, frame: bytes) -> None:
        if self._outbox:
            self._outbox.append(memoryview(frame))
            self._outbox_bytes += len(frame)
            return
        conn = self._h2
        size = len(frame)
        try:
            if size <= conn.max_outbound_frame_size and size <= conn.local_flow_control_window(
                self._stream_id
            ):
                conn.send_data(self._stream_id, frame)
                return
        except h2.exceptions.StreamClosedError:
            self._stream_gone()
        except h2.exceptions.ProtocolError as exc:
            self._send_failed(exc)
        self._outbox.append(memoryview(frame))
        self._outbox_bytes += size
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        conn, sid, outbox = self._h2, self._stream_id, self._outbox
        try:
            while outbox:
                item = outbox[0]
                if item is None:
                    outbox.popleft()
                    conn.end_stream(sid)
                    self._sent_end_stream = True
                    continue
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    return
                if len(item) <= window:
                    outbox.popleft()
                    chunk = item
                else:
                    chunk, outbox[0] = item[:window], item[window:]
                conn.send_data(sid, chunk.tobytes())
                self._outbox_bytes -= len(chunk)
        except h2.exceptions.StreamClosedError:
            self._stream_gone()
        except h2.exceptions.ProtocolError as exc:
            self._send_failed(exc)

    def _stream_gone(self) -> NoReturn:
        self._outbox.clear()
        self._outbox_bytes = 0
        self.fail(SessionStateError("the server closed the request stream: nothing can be sent"))
        raise self._send_error or self._error or SessionStateError("stream closed")

    def _send_failed(self, exc: Exception) -> NoReturn:
        self._outbox.clear()
        self._outbox_bytes = 0
        self.fail(ProtocolError(f"HTTP/2 refused to send: {exc}"))
        raise (self._error or self._send_error or ProtocolError(str(exc))) from exc

    def data_to_send(self) -> bytes:
        self.wants_flush = False
        return self._h2.data_to_send()

    # -- receiving ----------------------------------------------------------------------------

    def next_message(self) -> Message | None:
        message = super().next_message()
        if self._unacked and len(self._messages) < self._max_queued:
            self._ack()
            self.wants_flush = True
        return message

    def _ack(self) -> None:
        unacked, self._unacked = self._unacked, 0
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.acknowledge_received_data(unacked, self._stream_id)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feeds bytes read from the socket (``b""`` = the server closed TCP) read at ``now``."""
        if not data:
            self._on_eof()
            return
        if self._error is not None:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_hard(ProtocolError(f"HTTP/2 protocol error from the server: {exc}"))
            return
        sid = self._stream_id
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                if event.stream_id == sid:
                    self._on_data(event.data, event.flow_controlled_length, now)
            elif isinstance(event, h2.events.ResponseReceived):
                if event.stream_id == sid:
                    self._on_response(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                if event.stream_id == sid:
                    self._on_stream_ended()
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                if self._outbox:
                    with contextlib.suppress(ClientError):  # recorded: the next send raises it
                        self._flush_outbox()
            elif isinstance(event, h2.events.StreamReset):
                if event.stream_id == sid:
                    self._on_reset(event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event.error_code or 0, event.last_stream_id or 0)
            if self._error is not None:
                return
        if self._unacked and len(self._messages) < self._max_queued:
            self._ack()

    def _fail_hard(self, error: ClientError) -> None:
        """A fatal error: record it, reset our stream and say goodbye to the connection."""
        self.fail(error)
        self._input_ended = True
        self._outbox.clear()
        self._outbox_bytes = 0
        try:
            self._h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self._goaway_sent = True
        except h2.exceptions.ProtocolError:
            pass

    def _on_response(self, headers: list[tuple[bytes, bytes]]) -> None:
        status = None
        decoded: dict[str, str] = {}
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif not name.startswith(b":"):
                decoded[name.decode("latin-1")] = value.decode("latin-1")
        self._status = status
        self._response_headers = decoded
        if status != 200:
            self._error_body = bytearray()

    def _on_data(self, data: bytes, flow_length: int, now: float) -> None:
        self._unacked += flow_length
        if self._error_body is not None:
            room = MAX_ERROR_BODY - len(self._error_body)
            self._error_body += data[:room]
            return
        decoder = self._decoder
        try:
            decoded = decoder.feed(data)
        except EventStreamError as exc:
            self._fail_hard(ProtocolError(f"corrupt event stream from the server: {exc}"))
            return
        corrupt = None
        if decoded:
            # The decoder returns the whole messages before a fault and raises it next time.
            try:
                decoder.feed(b"")
            except EventStreamError as exc:
                corrupt = exc
        for event in decoded:
            self._on_event(event, now)
            if self._error is not None:
                return
        if corrupt is not None:
            self._fail_hard(ProtocolError(f"corrupt event stream from the server: {corrupt}"))

    def _on_event(self, event: EventMessage, now: float) -> None:
        headers = event.headers
        message_type = headers.get(":message-type")
        if message_type == "event":
            if headers.get(":event-type") != "PayloadPart":
                self.unknown_events += 1
                return
            payload = event.payload
            text = headers.get("DataType") == "UTF8"
            final = headers.get("CompletionState") != "PARTIAL"
            if self._fragments:
                self._messages.append(Message(payload, text, final, now))
            elif final and not self._parts:
                if text:
                    try:
                        self._messages.append(Message(payload.decode(), True, True, now))
                    except UnicodeDecodeError as exc:
                        self._fail_hard(ProtocolError(f"a UTF8 PayloadPart is not UTF-8: {exc}"))
                else:
                    self._messages.append(Message(payload, False, True, now))
            else:
                self._add_part(payload, text, final, now)
        elif message_type == "exception":
            exception_type = headers.get(":exception-type")
            self.fail(
                stream_event_error(
                    exception_type if isinstance(exception_type, str) else "", event.payload
                )
            )
        elif message_type == "error":
            code, text_ = headers.get(":error-code"), headers.get(":error-message")
            self.fail(
                UnmodeledEventError(
                    code if isinstance(code, str) else "",
                    text_ if isinstance(text_, str) else "",
                )
            )
        else:
            self.unknown_events += 1

    def _add_part(self, payload: bytes, text: bool, final: bool, now: float) -> None:
        if not self._parts:
            self._parts_text = text
        self._parts.append(payload)
        self._parts_size += len(payload)
        if self._parts_size > self._max_message_size:
            self._fail_hard(
                ProtocolError(
                    f"a fragmented message exceeds max_message_size ({self._max_message_size})"
                )
            )
            return
        if not final:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        self._parts_size = 0
        if self._parts_text:
            try:
                self._messages.append(Message(data.decode(), True, True, now))
            except UnicodeDecodeError as exc:
                self._fail_hard(ProtocolError(f"a UTF8 message is not UTF-8: {exc}"))
        else:
            self._messages.append(Message(data, False, True, now))

    def _on_stream_ended(self) -> None:
        if self._error_body is not None:
            self.fail(
                service_error_from_response(
                    self._status or 0, self._response_headers, bytes(self._error_body)
                )
            )
            return
        if self._decoder.buffered:
            self._fail_hard(
                ProtocolError(
                    f"the event stream ended inside a message ({self._decoder.buffered} bytes "
                    "of it received)"
                )
            )
        elif self._parts:
            self._fail_hard(
                ProtocolError(
                    f"the stream ended inside a fragmented message ({len(self._parts)} "
                    "PARTIAL parts, no COMPLETE)"
                )
            )
        else:
            self._receive_closed = True

    def _on_reset(self, error_code: int) -> None:
        self._input_ended = True
        self._outbox.clear()
        self._outbox_bytes = 0
        if self._receive_closed:
            self.fail(StreamResetError("the server reset the stream after ending it", error_code))
            return
        name = _error_name(error_code)
        self.fail(StreamResetError(f"the server reset the stream (RST_STREAM {name})", error_code))

    def _on_goaway(self, error_code: int, last_stream_id: int) -> None:
        self._input_ended = True
        self._outbox.clear()
        self._outbox_bytes = 0
        name = _error_name(error_code)
        ended = "after" if self._receive_closed else "before"
        # After a clean end of the response this only stops sends (see fail()).
        self.fail(
            StreamResetError(
                f"the server closed the connection (GOAWAY {name}, last stream {last_stream_id}) "
                f"{ended} the response ended",
                error_code,
            )
        )

    def _on_eof(self) -> None:
        if self._error is not None:
            return
        self._input_ended = True
        if self._receive_closed:
            self.fail(ConnectionClosedError("the server closed the connection"))
            return
        if self._error_body is not None:
            self.fail(
                service_error_from_response(
                    self._status or 0, self._response_headers, bytes(self._error_body)
                )
            )
        elif self._status is None:
            self.fail(ConnectionClosedError("the server closed the connection before responding"))
        elif self._decoder.buffered:
            self.fail(
                ProtocolError(
                    "the connection closed inside an event-stream message "
                    f"({self._decoder.buffered} bytes of it received)"
                )
            )
        else:
            self.fail(ConnectionClosedError("the connection closed before the response ended"))


def _error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error {code}"
