"""Per request stream: the router's checks (route, SigV4, validation, endpoint), the sidecar's
WebSocket to the container, and the relay between the two.

Request side: DATA -> :class:`~sagebidi_perf.sigv4.EventVerifier` (every ``:chunk-signature``,
the final empty frame included; an old client's bare END_STREAM is accepted) -> inner message ->
``PayloadPart`` -> one WebSocket frame (UTF8 -> text, BINARY/absent -> binary, PARTIAL...COMPLETE ->
fragments). Response side: each WebSocket frame -> one ``PayloadPart`` event. Endings:

===========================================  ==================================================
what happened                                what the client gets
===========================================  ==================================================
client ended its input (final frame/EOS)     Close 1000 to the container; its frames until the
                                             Close echo, then END_STREAM
container closed                             its frames, ``ModelStreamError`` (ErrorCode = the
                                             close code, Message has the reason), END_STREAM
container vanished (no Close)                ``ModelStreamError`` ErrorCode ``1006``
bad chunk signature / malformed event        ``InternalStreamFailure``; Close 1008 to container
keepalive: N pings unanswered                ``ModelStreamError`` ``StreamBroken``; Close 1001
max session duration                         ``ModelStreamError`` ``ModelInvocationTimeExceeded``
gateway bug                                  ``InternalStreamFailure``; Close 1011
client reset / connection lost               Close 1001 to the container, TCP closed
===========================================  ==================================================

The stream is never reset; after END_STREAM the client's DATA is acknowledged and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import trio

from sagebidi_perf.errors import EventStreamError, SignatureMismatchError
from sagebidi_perf.eventstream import EventStreamDecoder
from sagebidi_perf.gateway.aws import (
    CORAL_ERROR_NAMESPACE,
    EVENTSTREAM_CONTENT_TYPE,
    INVOCATION_PATH,
    QUERY_STRING,
    TARGET_VARIANT,
    ErrorResponse,
    PayloadPart,
    RequestEventError,
    http_date,
    input_validation_error,
    internal_stream_failure,
    model_stream_error,
    parse_request_event,
    payload_part_event,
    request_id,
    validate_request_headers,
)
from sagebidi_perf.gateway.h2conn import WRITE_LOW_WATER, RequestStream, StreamGone
from sagebidi_perf.gateway.settings import GatewaySettings, Upstream
from sagebidi_perf.gateway.upstream import UpstreamConnection, UpstreamError, open_upstream
from sagebidi_perf.keepalive import Keepalive
from sagebidi_perf.sigv4 import STREAMING_EVENTS_PAYLOAD, EventVerifier, verify_request
from sagebidi_perf.websocket import BINARY, CLOSE, PONG, TEXT

__all__ = ["Gateway", "SessionRecord"]

log = logging.getLogger("sagebidi.gateway")

_ROUTE = re.compile(r"^/endpoints/([^/]+)/invocations-bidirectional-stream$")
DEFAULT_VARIANT = "AllTraffic"
FORWARDED_HEADERS = (TARGET_VARIANT, INVOCATION_PATH, QUERY_STRING)
MAX_REASON_BYTES = 123


def _reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore")


class _ClientError(Exception):
    """The request stream broke the protocol (signature, framing, event shape)."""


class SessionRecord:
    """What happened in one session (kept by :class:`Gateway` for logs and tests)."""

    def __init__(self, endpoint: str, target: str) -> None:
        self.endpoint = endpoint
        self.target = target
        self.parts_in = 0
        self.parts_out = 0
        #: How the session ended, e.g. "input-ended", "container-closed 1011", "client-gone".
        self.outcome = "open"
        #: Whether the client ended its input with the final signed empty frame.
        self.final_frame: bool | None = None


class Gateway:
    """The request handler of the gateway (one per server)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        #: Sessions that reached the container (newest last; bounded).
        self.sessions: deque[SessionRecord] = deque(maxlen=1000)
        self.active_sessions = 0
        self.requests = 0
        self._sessions_changed = trio.Event()
        self._relays: set[_Relay] = set()
        #: After SIGTERM: new requests get 503; :meth:`end_sessions` ends the open ones.
        self.shutting_down = False
        self._ending = False

    def end_sessions(self) -> None:
        """End every open session now (the end of the shutdown grace period): END_STREAM to the
        client after what is queued, Close 1001 to the container."""
        self._ending = True
        for relay in list(self._relays):
            relay.shutdown()

    async def wait_idle(self) -> None:
        """Return once no session is open."""
        while self.active_sessions:
            await self._sessions_changed.wait()

    # -- checks ------------------------------------------------------------------------------

    def _route(self, stream: RequestStream) -> tuple[str, str]:
        method = stream.header(b":method")
        raw_path = (stream.header(b":path") or b"").decode("latin-1")
        path, _, _query = raw_path.partition("?")
        match = _ROUTE.match(path)
        if match is None or method != b"POST":
            raise ErrorResponse(
                404,
                "UnknownOperationException",
                f"No operation matches {(method or b'?').decode('latin-1')} {path}: use "
                "POST /endpoints/{EndpointName}/invocations-bidirectional-stream",
                "UnknownOperationException",
                namespace=CORAL_ERROR_NAMESPACE,
            )
        try:
            endpoint = unquote(match.group(1), errors="strict")
        except UnicodeDecodeError:
            raise input_validation_error("EndpointName is not valid UTF-8") from None
        return endpoint, raw_path

    def _authenticate(self, stream: RequestStream, raw_path: str) -> EventVerifier | None:
        if self.settings.no_auth:
            return None
        if stream.header(b"authorization") is None:
            raise ErrorResponse(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
                "MissingAuthenticationTokenException",
                namespace=CORAL_ERROR_NAMESPACE,
            )
        try:
            verified = verify_request(
                method="POST",
                path=raw_path,
                headers=stream.headers,
                credentials=self.settings.credentials,
                region=self.settings.region,
                service="sagemaker",
                max_skew_seconds=self.settings.max_clock_skew,
            )
        except SignatureMismatchError as exc:
            detail = str(exc)
            if "unknown access key id" in detail:
                error_type = "UnrecognizedClientException"
                message = f"The security token included in the request is invalid. ({detail})"
            elif "server clock" in detail:
                error_type = "InvalidSignatureException"
                message = f"Signature expired: {detail}"
            else:
                error_type = "InvalidSignatureException"
                message = (
                    "The request signature we calculated does not match the signature you "
                    f"provided. Check your AWS Secret Access Key and signing method. ({detail})"
                )
            raise ErrorResponse(
                403, error_type, message, error_type, namespace=CORAL_ERROR_NAMESPACE
            ) from None
        if verified.payload_hash != STREAMING_EVENTS_PAYLOAD:
            raise ErrorResponse(
                403,
                "InvalidSignatureException",
                f"x-amz-content-sha256 must be {STREAMING_EVENTS_PAYLOAD} for this operation "
                f"(got {verified.payload_hash})",
                "InvalidSignatureException",
                namespace=CORAL_ERROR_NAMESPACE,
            )
        return verified.event_verifier()

    def _target(self, upstream: Upstream, headers: dict[str, str]) -> str:
        path = headers.get(INVOCATION_PATH)
        target = "/" + path if path else upstream.default_path
        query = headers.get(QUERY_STRING)
        return f"{target}?{query}" if query else target

    # -- the handler -------------------------------------------------------------------------

    async def __call__(self, stream: RequestStream) -> None:
        self.requests += 1
        req_id = request_id()
        settings = self.settings
        try:
            if self.shutting_down:
                raise ErrorResponse(
                    503,
                    "ServiceUnavailable",
                    "The gateway is shutting down; retry on a new connection.",
                    "ServiceUnavailable",
                )
            endpoint, raw_path = self._route(stream)
            verifier = self._authenticate(stream, raw_path)
            headers = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in stream.headers
                if k.decode("latin-1") in FORWARDED_HEADERS
            }
            validate_request_headers(headers)
            upstream = settings.upstream_for(endpoint)
            if upstream is None:
                raise input_validation_error(
                    f"Endpoint {endpoint} of account {settings.account_id} not found.",
                    "Client.ValidationError",
                )
        except ErrorResponse as err:
            log.info("stream %d: %s", stream.stream_id, err)
            await _send_error(stream, err, req_id)
            return

        target = self._target(upstream, headers)
        extra = [(k.encode(), v.encode()) for k, v in headers.items()]
        try:
            with trio.fail_after(settings.upstream_connect_timeout):
                up = await open_upstream(
                    upstream, target, extra_headers=extra, max_frame_size=settings.max_frame_size
                )
        except (UpstreamError, trio.TooSlowError) as exc:
            status = exc.status if isinstance(exc, UpstreamError) else None
            detail = str(exc) or f"no answer within {settings.upstream_connect_timeout:g} s"
            log.warning("endpoint %s: %s", endpoint, detail)
            await _send_error(
                stream,
                ErrorResponse(
                    424,
                    "ModelError",
                    "Failed to establish WebSocket connection",
                    "ModelError",
                    original_status_code=status,
                    original_message=detail,
                    log_stream_arn=(
                        f"arn:aws:logs:{settings.region}:{settings.account_id}:log-group:"
                        f"/aws/sagemaker/Endpoints/{endpoint}"
                    ),
                ),
                req_id,
            )
            return

        record = SessionRecord(endpoint, target)
        self.sessions.append(record)
        self.active_sessions += 1
        variant = headers.get(TARGET_VARIANT, DEFAULT_VARIANT)
        log.info("stream %d: session %s -> %s%s", stream.stream_id, endpoint, upstream.base, target)
        relay = _Relay(settings, stream, up, verifier, record)
        self._relays.add(relay)
        if self._ending:
            relay.shutdown()
        try:
            await relay.run(req_id, variant)
        finally:
            self._relays.discard(relay)
            self.active_sessions -= 1
            changed, self._sessions_changed = self._sessions_changed, trio.Event()
            changed.set()
            log.info(
                "stream %d: session %s ended (%s; %d parts in, %d out)",
                stream.stream_id,
                endpoint,
                record.outcome,
                record.parts_in,
                record.parts_out,
            )


async def _send_error(stream: RequestStream, err: ErrorResponse, req_id: str) -> None:
    body = err.body()
    await stream.send_headers(err.headers(req_id))
    await stream.send_data(body, end_stream=True)


class _Relay:
    """One session: client stream <-> container WebSocket, relayed in place.

    Client -> container runs in the HTTP/2 connection's reader task (this is the stream's
    :class:`~sagebidi_perf.gateway.h2conn.Sink`): decode, verify, write the WebSocket frames, one
    write per received batch; the client's window is given back once the container's socket
    took the bytes. Container -> client runs in this session's reader task: every frame of a
    receive becomes a response event pushed into h2, written once per batch. No queue, event or
    lock between the two sides per frame.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        stream: RequestStream,
        up: UpstreamConnection,
        verifier: EventVerifier | None,
        record: SessionRecord,
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.up = up
        self.verifier = verifier
        self.decoder = EventStreamDecoder() if verifier is None else None
        self.record = record
        #: The end of the response is decided (``final_event``: an exception event or None).
        self.finished = False
        self.final_event: bytes | None = None
        self._done = trio.Event()
        self.ws_closed = trio.Event()
        #: We sent a Close to the container (ours, not the echo of theirs).
        self.we_closed = False
        #: Close code/reason to send once the response is over (for failures).
        self.pending_close: tuple[int, str] = (1000, "")
        self.keepalive: Keepalive | None = None
        if settings.ping_interval is not None:
            self.keepalive = Keepalive(settings.ping_interval, settings.ping_misses)
        self._in_message = False
        self._message_text = False
        self._nursery: trio.Nursery | None = None
        self._gave_up_waiting = False
        #: The client's input is over (ended, failed): later DATA is acknowledged and dropped.
        self._input_done = False
        #: Flow-controlled bytes consumed in this pass / waiting for the container's socket.
        self._pass_length = 0
        self._unacked = 0
        self._close_after_pass = False
        up.on_drained = self._ack_deferred

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, req_id: str, variant: str) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self.stream.send_headers(
                        [
                            (b":status", b"200"),
                            (b"content-type", EVENTSTREAM_CONTENT_TYPE),
                            (b"x-amzn-requestid", req_id.encode()),
                            (b"x-amzn-invoked-production-variant", variant.encode()),
                            (b"date", http_date()),
                        ]
                    )
                    nursery.start_soon(self._guard, self._container_reader)
                    if self.keepalive is not None:
                        nursery.start_soon(self._guard, self._pinger)
                    if self.settings.max_session_seconds is not None:
                        nursery.start_soon(self._guard, self._session_timer)
                    self.stream.set_sink(self)
                    await self._done.wait()
                    await self._send_final()
                    await self._close_upstream()
                except StreamGone:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            self.stream.drain()
            # (A client that leaves after our END_STREAM did not vanish mid-session.)
            stream = self.stream
            if (
                stream.gone
                and not stream.response_ended
                and self.record.outcome in ("open", "input-ended")
            ):
                self.record.outcome = "client-gone"
            with trio.CancelScope(shield=True):
                await self._abandon_upstream()

    async def _guard(self, task: Callable[[], Awaitable[None]]) -> None:
        """Child tasks: a vanished client ends quietly, a bug becomes InternalStreamFailure."""
        try:
            await task()
        except StreamGone:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
        except Exception as exc:
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        log.error(
            "stream %d: relay task failed",
            self.stream.stream_id,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        self._fail(
            internal_stream_failure(f"Internal failure in the gateway: {type(exc).__name__}"),
            (1011, "gateway internal error"),
            "internal-error",
        )

    def _end_response(self, final_event: bytes | None) -> bool:
        """Decide the end of the response (first call wins; returns whether this call did)."""
        if self.finished:
            return False
        self.finished = True
        self.final_event = final_event
        self._done.set()
        return True

    def _fail(self, event: bytes | None, close: tuple[int, str], outcome: str) -> None:
        if self._end_response(event):
            self.pending_close = close
            self.record.outcome = outcome

    def shutdown(self) -> None:
        """The gateway is stopping: END_STREAM after what is queued, Close 1001 to the
        container."""
        self._fail(None, (1001, "gateway shutting down"), "gateway-shutdown")

    async def _send_final(self) -> None:
        stream = self.stream
        stream.finish(self.final_event)
        stream.conn.kick()
        await stream.wait_sent()
        # From here on the client's DATA is acknowledged and dropped.
        stream.drain()

    async def _close_upstream(self) -> None:
        """The response is over: close the WebSocket (bounded wait for the container's echo)."""
        proto = self.up.proto
        if proto.state == "open" and not self.up.broken:
            code, reason = self.pending_close
            proto.close(code, _reason(reason))
            self.we_closed = True
            await self.up.flush()
        if not self.ws_closed.is_set() and not self.up.broken and not self._gave_up_waiting:
            with trio.move_on_after(self.settings.close_timeout):
                await self.ws_closed.wait()

    async def _abandon_upstream(self) -> None:
        """Last resort (client gone, cancellation): a Close 1001 if still open, then TCP."""
        proto = self.up.proto
        if proto.state == "open" and not self.up.broken:
            reason = "client disconnected" if self.stream.gone else "gateway closing the session"
            proto.close(1001, reason)
            with trio.move_on_after(self.settings.close_timeout):
                await self.up.flush()
        await self.up.aclose()

    # -- client -> container (the Sink, called in the HTTP/2 reader task; never raises) ----

    def on_data(self, data: bytes, flow_length: int) -> None:
        self._pass_length += flow_length
        if self._input_done:
            return
        try:
            parts, ended = self._decode(data)
            for part in parts:
                self._forward(part)
            if self.verifier is not None and self.verifier.failed:
                self.verifier.finish()  # raises the error that stopped the chain
            if ended:
                self.record.final_frame = True
                self._input_ended()
        except (_ClientError, SignatureMismatchError, EventStreamError) as exc:
            self._client_failed(exc)
        except Exception as exc:
            self._input_done = True
            self.stream.drain()
            self._internal_error(exc)

    def on_end(self) -> None:
        if self._input_done:
            return
        try:
            self._end_of_stream()
        except (_ClientError, SignatureMismatchError, EventStreamError) as exc:
            self._client_failed(exc)
            return
        except Exception as exc:
            self._input_done = True
            self._internal_error(exc)
            return
        self._input_ended()

    def after_pass(self) -> None:
        """Write this pass's frames (one write); give the window back once written."""
        length, self._pass_length = self._pass_length, 0
        up = self.up
        if self._close_after_pass:
            self._close_after_pass = False
            up.write_nowait()
            if up.proto.state == "open" and not up.broken:
                up.proto.close(1000, "client closed input stream")
                self.we_closed = True
        if up.write_nowait():
            length += self._unacked
            self._unacked = 0
            if length:
                self.stream.ack(length)
            return
        # The container's socket is full: its window waits for the drain (back-pressure).
        self._unacked += length
        if not up.draining and self._nursery is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the session is ending
                self._nursery.start_soon(self._guard, up.flush)

    def _ack_deferred(self) -> None:
        if self._unacked:
            length, self._unacked = self._unacked, 0
            self.stream.ack(length)

    def _decode(self, data: bytes) -> tuple[list[PayloadPart], bool]:
        try:
            if self.verifier is not None:
                inners = self.verifier.feed(data)
                return [parse_request_event(i) for i in inners], self.verifier.ended
            assert self.decoder is not None
            parts: list[PayloadPart] = []
            for message in self.decoder.feed(data):
                if ":chunk-signature" in message.headers:  # a signed envelope, not checked
                    if not message.payload:
                        return parts, True
                    parts.append(parse_request_event(message.payload))
                else:
                    parts.append(parse_request_event(message))
            return parts, False
        except RequestEventError as exc:
            raise _ClientError(str(exc)) from exc

    def _end_of_stream(self) -> None:
        """END_STREAM without the final signed frame (clients before 0.12): fine, unless it
        cut a message in half."""
        if self.verifier is not None:
            self.record.final_frame = self.verifier.finish()
        else:
            assert self.decoder is not None
            self.decoder.close()
            self.record.final_frame = False

    def _forward(self, part: PayloadPart) -> None:
        proto = self.up.proto
        if proto.state != "open":
            return  # the container closed: its error is on the way; drop the rest
        text = self._message_text if self._in_message else part.text
        proto.send_fragment(part.payload, part.final, text=text)
        self._message_text = text
        self._in_message = not part.final
        self.record.parts_in += 1

    def _input_ended(self) -> None:
        self._input_done = True
        self.stream.drain()
        if self.record.outcome == "open":
            self.record.outcome = "input-ended"
        # The Close 1000 follows the frames of this pass in its own write (after_pass).
        self._close_after_pass = True
        if self._nursery is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the session is ending
                self._nursery.start_soon(self._guard, self._await_container_close)

    async def _await_container_close(self) -> None:
        with trio.move_on_after(self.settings.close_timeout):
            await self.ws_closed.wait()
            return
        log.info("stream %d: no Close from the container, ending", self.stream.stream_id)
        self._gave_up_waiting = True
        self._end_response(None)

    def _client_failed(self, exc: Exception) -> None:
        self._input_done = True
        if isinstance(exc, SignatureMismatchError):
            message = f"Event signature verification failed: {exc}"
            outcome = "bad-signature"
        else:
            message = f"Invalid request event stream: {exc}"
            outcome = "bad-event"
        log.info("stream %d: %s", self.stream.stream_id, message)
        self.stream.drain()
        self._fail(internal_stream_failure(message), (1008, "invalid request stream"), outcome)

    # -- container -> client -----------------------------------------------------------------

    async def _container_reader(self) -> None:
        events: list[Any] | None = self.up.initial_events
        stream = self.stream
        conn = stream.conn
        up = self.up
        limit = self.settings.response_buffer
        while events is not None:
            for kind, payload, fin in events:
                if kind in (TEXT, BINARY):
                    if not self.finished:
                        stream.push(payload_part_event(payload, text=kind == TEXT, final=fin))
                        self.record.parts_out += 1
                elif kind == PONG and self.keepalive is not None:
                    self.keepalive.pong(payload, trio.current_time())
                elif kind == CLOSE:
                    self._container_closed(*payload)
            conn.kick()  # this batch's events: one write
            await up.flush()  # pongs, the echo of a Close
            if up.proto.closed:
                break
            if stream.out_pending > limit or conn.pending_output > WRITE_LOW_WATER:
                await stream.wait_room(limit)  # the client's window, the socket
            events = await up.receive()
        if not up.proto.closed:  # TCP ended without a Close handshake
            if self.we_closed:
                self._fail(None, (1000, ""), self.record.outcome)
            else:
                self._fail(
                    model_stream_error(
                        "WebSocket connection to the model was lost (1006, no Close frame)", "1006"
                    ),
                    (1000, ""),
                    "container-lost",
                )
        self.ws_closed.set()

    def _container_closed(self, code: int, reason: str) -> None:
        if self.up.proto.failed:
            self._fail(
                model_stream_error(
                    f"Model sent an invalid WebSocket frame: {code} {reason}", str(code)
                ),
                (code, reason),
                f"container-protocol-error {code}",
            )
        elif self.we_closed:
            self._fail(None, (1000, ""), self.record.outcome)
        elif code == 1000 and not self.settings.normal_close_error:
            self._fail(None, (1000, ""), "container-closed 1000")
        else:
            message = f"WebSocket closed by model: {code} {reason}".rstrip()
            self._fail(
                model_stream_error(message, str(code)), (1000, ""), f"container-closed {code}"
            )

    # -- timers ------------------------------------------------------------------------------

    async def _pinger(self) -> None:
        keepalive = self.keepalive
        assert keepalive is not None
        keepalive.start(trio.current_time())
        while (deadline := keepalive.next_deadline) is not None:
            await trio.sleep_until(deadline)
            action = keepalive.tick(trio.current_time())
            if action is None:
                continue
            if self.up.proto.state != "open":
                return
            if action.kind == "close":
                self._fail(
                    model_stream_error(
                        f"Model did not answer {keepalive.max_missed} consecutive WebSocket pings",
                        "StreamBroken",
                    ),
                    (1001, "keepalive: pings unanswered"),
                    "keepalive-timeout",
                )
                return
            self.up.proto.ping(action.payload or b"")
            await self.up.flush()

    async def _session_timer(self) -> None:
        limit = self.settings.max_session_seconds
        assert limit is not None
        await trio.sleep(limit)
        self._fail(
            model_stream_error(
                f"Session exceeded the maximum duration of {limit:g} s",
                "ModelInvocationTimeExceeded",
            ),
            (1001, "maximum session duration reached"),
            "max-duration",
        )
