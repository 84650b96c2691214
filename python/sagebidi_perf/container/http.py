"""The HTTP/1.1 side of the container's one port, on h11: ``/ping``, ``/invocations`` and the
WebSocket upgrade handshake (answered or refused before any WebSocket frame is exchanged)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import h11
import trio

from sagebidi_perf.container.model import InvokeResponse, Model, RejectUpgrade, UpgradeRequest
from sagebidi_perf.websocket import accept_key

__all__ = ["Upgrade", "serve_http"]

log = logging.getLogger("sagebidi.container")

RECEIVE_SIZE = 65536
MAX_HEAD_SIZE = 16 * 1024
SERVER_HEADER = (b"server", b"sagebidi-perf")

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An accepted upgrade: the request, and bytes the client sent after its handshake."""

    request: UpgradeRequest
    trailing_data: bytes


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _has_token(headers: Headers, name: bytes, token: bytes) -> bool:
    return any(
        key == name and token in (part.strip().lower() for part in value.split(b","))
        for key, value in headers
    )


def parse_target(target: bytes) -> tuple[str, str]:
    """Split a request target into a percent-decoded path and the raw query string."""
    raw_path, _, raw_query = target.partition(b"?")
    path = unquote(raw_path.decode("ascii", "replace"), errors="strict")
    return path, raw_query.decode("ascii", "replace")


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """``a=1&b=x%20y`` -> ``[("a", "1"), ("b", "x y")]``; raises ValueError on malformed input."""
    if not raw_query:
        return []
    return parse_qsl(raw_query, keep_blank_values=True, strict_parsing=True, errors="strict")


class _HttpConnection:
    """h11 over one stream. Every read must complete within ``read_deadline`` seconds."""

    def __init__(self, stream: trio.abc.Stream, read_deadline: float) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self.stream = stream
        self.read_deadline = read_deadline

    async def next_event(self) -> h11.Event:
        with trio.fail_after(self.read_deadline):
            return await _next_event(self.conn, self.stream)

    async def read_body(self, limit: int) -> bytes | None:
        """The request body, or None if it exceeds ``limit`` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError("connection closed inside the request body")

    async def drain_body(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and await self.read_body(MAX_HEAD_SIZE) is None:
            raise h11.RemoteProtocolError("unexpected request body", error_status_hint=413)

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: Headers = (),
        close: bool = False,
    ) -> None:
        headers = [
            SERVER_HEADER,
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        if close:
            headers.append((b"connection", b"close"))
        await self.send(h11.Response(status_code=status, headers=headers))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        data = await stream.receive_some(RECEIVE_SIZE)
        conn.receive_data(bytes(data))  # the HTTP phase is a few hundred bytes


def _websocket_key(headers: Headers) -> str | None:
    key = _header(headers, b"sec-websocket-key")
    if key is None:
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return key.decode("ascii")


async def serve_http(
    stream: trio.abc.Stream,
    model: Model,
    *,
    is_ready: Callable[[], bool],
    handshake_timeout: float,
    max_body_size: int,
) -> Upgrade | None:
    """Serve HTTP requests on ``stream`` until one upgrades to a WebSocket (returned) or the
    connection ends (None). Keep-alive is supported; each request must arrive within
    ``handshake_timeout`` seconds."""
    out = _HttpConnection(stream, handshake_timeout)
    conn = out.conn
    while True:
        try:
            event = await out.next_event()
        except trio.TooSlowError:
            log.debug("request did not arrive within %.1fs: closing", handshake_timeout)
            return None
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                await out.respond(status, f"bad request: {exc}\n".encode(), close=True)
            return None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 guarantees a Request here
            return None
        try:
            upgrade = await _handle_request(out, event, model, is_ready, max_body_size)
        except trio.TooSlowError:
            return None
        if upgrade is not None:
            return upgrade
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return None
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return None


async def _handle_request(
    out: _HttpConnection,
    request: h11.Request,
    model: Model,
    is_ready: Callable[[], bool],
    max_body_size: int,
) -> Upgrade | None:
    conn = out.conn
    method = request.method
    headers = request.headers
    try:
        path, raw_query = parse_target(request.target)
    except UnicodeDecodeError:
        await out.respond(400, b"request path is not valid UTF-8\n", close=True)
        return None

    if path == "/ping":
        if method not in (b"GET", b"POST", b"HEAD"):
            await out.respond(405, b"method not allowed\n", extra=[(b"allow", b"GET, POST")])
            return None
        await out.drain_body()
        if is_ready():
            await out.respond(200, b'{"status":"healthy"}\n', "application/json")
        else:
            await out.respond(503, b'{"status":"loading"}\n', "application/json")
        return None

    if path == "/invocations":
        if method != b"POST":
            await out.respond(405, b"method not allowed\n", extra=[(b"allow", b"POST")])
            return None
        body = await out.read_body(max_body_size)
        if body is None:
            await out.respond(413, b"request body too large\n", close=True)
            return None
        if not is_ready():
            await out.respond(503, b"model is loading\n")
            return None
        content_type = _header(headers, b"content-type")
        try:
            answer = await model.invoke(
                body, content_type.decode("latin-1") if content_type else None
            )
        except RejectUpgrade as exc:
            await out.respond(
                exc.status, exc.message.encode() + b"\n", exc.content_type, _extra(exc.headers)
            )
            return None
        except Exception as exc:
            log.exception("model.invoke failed")
            await out.respond(
                500,
                json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(),
                "application/json",
            )
            return None
        await _send_invoke_response(out, answer)
        return None

    wants_upgrade = _has_token(headers, b"upgrade", b"websocket")
    if path not in model.paths:
        await out.drain_body()
        what = "WebSocket endpoint" if wants_upgrade else "resource"
        await out.respond(404, f"no {what} at {path}\n".encode(), close=wants_upgrade)
        return None
    if not wants_upgrade:
        await out.drain_body()
        await out.respond(
            426,
            b"this path needs a WebSocket upgrade\n",
            extra=[(b"upgrade", b"websocket"), (b"connection", b"Upgrade")],
        )
        return None
    if (
        method != b"GET"
        or not _has_token(headers, b"connection", b"upgrade")
        or _header(headers, b"sec-websocket-version") != b"13"
    ):
        await out.respond(
            400,
            b"invalid WebSocket upgrade request (RFC 6455 section 4.2.1)\n",
            extra=[(b"sec-websocket-version", b"13")],
            close=True,
        )
        return None
    key = _websocket_key(headers)
    if key is None:
        await out.respond(400, b"missing or invalid Sec-WebSocket-Key\n", close=True)
        return None
    try:
        query = parse_query(raw_query)
    except (ValueError, UnicodeDecodeError) as exc:
        await out.respond(400, f"malformed query string: {exc}\n".encode(), close=True)
        return None
    upgrade_request = UpgradeRequest(
        path=path,
        query=tuple(query),
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        raw_query=raw_query,
    )
    if not is_ready():
        await out.respond(503, b"model is loading\n", close=True)
        return None
    try:
        model.check_upgrade(upgrade_request)
    except RejectUpgrade as exc:
        await out.respond(
            exc.status,
            exc.message.encode() + b"\n",
            exc.content_type,
            _extra(exc.headers),
            close=True,
        )
        return None
    # GET with Upgrade: h11 pauses in MIGHT_SWITCH_PROTOCOL once the (empty) body has ended.
    while conn.their_state is h11.SEND_BODY:
        event = await out.next_event()
        if not isinstance(event, h11.Data | h11.EndOfMessage):
            return None
    await out.send(
        h11.InformationalResponse(
            status_code=101,
            headers=[
                SERVER_HEADER,
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept_key(key).encode("ascii")),
            ],
        )
    )
    trailing, _closed = conn.trailing_data
    return Upgrade(upgrade_request, bytes(trailing))


def _extra(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Model-supplied response headers; CR/LF (header injection) are replaced by spaces."""
    return [
        (
            k.encode("latin-1", "replace"),
            v.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace"),
        )
        for k, v in headers
    ]


async def _send_invoke_response(out: _HttpConnection, answer: InvokeResponse | bytes | str) -> None:
    if isinstance(answer, str):
        answer = InvokeResponse(answer.encode(), "text/plain; charset=utf-8")
    elif isinstance(answer, bytes | bytearray | memoryview):
        answer = InvokeResponse(bytes(answer))
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    await out.respond(answer.status, answer.body, answer.content_type, extra=extra)
