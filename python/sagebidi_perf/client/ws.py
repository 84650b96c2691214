"""The ``ws`` transport's sans-IO core: what the SageMaker sidecar does, straight to a container.

An HTTP/1.1 upgrade (h11) then RFC 6455 frames (the Rust :class:`WebSocketConnection`, client
side: frames are masked). One message = one WebSocket message; ``send_fragment`` streams one
message as fragments, as the sidecar does for ``CompletionState=PARTIAL`` parts.

Ends of a session, as :meth:`WsCore.next_message` reports them:

* the peer's Close 1000 (or an empty Close, 1005): a clean end (None);
* any other Close code: :class:`ConnectionClosedError` with ``code``/``reason``;
* TCP closed without a Close frame: :class:`ConnectionClosedError` with code 1006;
* a protocol violation by the server: :class:`ProtocolError` (we send Close 1002/1007/1009).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from sagebidi_perf import __version__
from sagebidi_perf.client._core import Message, SessionCore
from sagebidi_perf.client.errors import (
    ConnectionClosedError,
    HandshakeError,
    ProtocolError,
    SessionStateError,
)
from sagebidi_perf.websocket import (
    BINARY,
    CLOSE,
    TEXT,
    WebSocketConnection,
    accept_key,
    generate_key,
)

__all__ = ["DEFAULT_PATH", "WsCore", "WsTarget", "parse_ws_url"]

#: The sidecar's path when no ``ModelInvocationPath`` is given.
DEFAULT_PATH = "/invocations-bidirectional-stream"
USER_AGENT = f"sagebidi-perf/{__version__}"
#: Bytes of a refused upgrade's body kept for the error.
MAX_ERROR_BODY = 64 * 1024
#: Largest upgrade response head accepted.
MAX_RESPONSE_HEAD = 64 * 1024
_CLEAN_CLOSE = (1000, 1005)


@dataclass(frozen=True, slots=True)
class WsTarget:
    """Where a ``ws://`` / ``wss://`` URL points."""

    secure: bool
    host: str
    port: int
    #: The request target: path plus ``?query`` if any.
    target: str

    @property
    def authority(self) -> str:
        """The ``Host`` header value (the port is left out when it is the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_ws_url(
    url: str,
    *,
    model_invocation_path: str | None = None,
    model_query_string: str | None = None,
) -> WsTarget:
    """Split a ``ws://host:port/path?query`` URL.

    As the sidecar does, ``model_invocation_path`` replaces the path (a URL without a path means
    :data:`DEFAULT_PATH`) and ``model_query_string`` becomes the query: ``ws://h:8080`` with
    ``v1/listen`` and ``model=nova-3`` gives ``/v1/listen?model=nova-3``. Giving both a URL path
    (or query) and the matching argument is an error.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in a ws:// URL are not supported; pass headers")
    secure = parts.scheme == "wss"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    path = parts.path
    if model_invocation_path is not None:
        if path not in ("", "/"):
            raise ValueError("give the path in the URL or as model_invocation_path, not both")
        path = "/" + model_invocation_path.lstrip("/")
    elif path in ("", "/"):
        path = DEFAULT_PATH
    query = parts.query
    if model_query_string is not None:
        if query:
            raise ValueError("give the query in the URL or as model_query_string, not both")
        query = model_query_string
    for name, value in (("path", path), ("query", query)):
        if any(c in value for c in " \r\n\t#") or not value.isprintable():
            raise ValueError(f"the {name} {value!r} has characters a request line cannot carry")
    return WsTarget(secure, parts.hostname, port, f"{path}?{query}" if query else path)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class WsCore(SessionCore):
    """Sans-IO client session over one WebSocket.

    ``host`` is the ``Host`` header, ``target`` the request target (see :func:`parse_ws_url`),
    ``headers`` extra request headers. ``fragments=True`` reports each data frame as a
    :class:`Message` part (``final`` = FIN, data always ``bytes``) instead of whole messages.
    ``key`` fixes the ``Sec-WebSocket-Key`` (tests).
    """

    transport = "ws"

    def __init__(
        self,
        host: str,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        fragments: bool = False,
        max_message_size: int = 16 * 1024 * 1024,
        user_agent: str = USER_AGENT,
        key: str | None = None,
    ) -> None:
        super().__init__()
        self._key = key or generate_key()
        self._fragments = fragments
        self._max_message_size = max_message_size
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", host),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self._key),
                ("Sec-WebSocket-Version", "13"),
                ("User-Agent", user_agent),
                *headers,
            ],
        )
        self._out = bytearray(self._http.send(request) or b"")
        self._out += self._http.send(h11.EndOfMessage()) or b""
        self._ws: WebSocketConnection | None = None
        self._status: int | None = None
        self._response_headers: dict[str, str] = {}
        self._error_body = bytearray()

    # -- state --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ws is not None

    @property
    def status(self) -> int | None:
        """The upgrade response's status (101 on success); None before it arrived."""
        return self._status

    @property
    def response_headers(self) -> dict[str, str]:
        """The upgrade response's headers (lowercase names; a repeated header keeps the last)."""
        return self._response_headers

    @property
    def close_code(self) -> int | None:
        """The Close code received (or ours, if we failed the connection); None before."""
        return self._ws.close_code if self._ws is not None else None

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason if self._ws is not None else None

    @property
    def closed(self) -> bool:
        """Both Close frames were exchanged (or the connection failed)."""
        return self._ws is not None and self._ws.closed

    # -- sending ------------------------------------------------------------------------------

    def _open_ws(self) -> WebSocketConnection:
        self._check_send()
        if self._ws is None:
            raise SessionStateError("the WebSocket handshake has not completed")
        return self._ws

    def send(self, data: str | bytes | bytearray | memoryview, date_ms: int | None = None) -> None:
        """Queues one whole message: ``str`` → text frame, bytes-like → binary frame.
        (``date_ms`` is unused: the signature matches the SageMaker core's.)"""
        self._open_ws().send(data)

    def send_fragment(
        self,
        data: str | bytes | bytearray | memoryview,
        final: bool,
        date_ms: int | None = None,
    ) -> None:
        """Queues one fragment of a message; the first fragment's type (``str`` → text) sets the
        message's kind, ``final=True`` ends it."""
        self._open_ws().send_fragment(data, final)

    def ping(self, payload: bytes = b"") -> None:
        """Queues a ping (the pong is not reported)."""
        self._open_ws().ping(payload)

    def end_input(self, code: int = 1000, reason: str = "", date_ms: int | None = None) -> None:
        """Starts the close handshake (Close ``code``/``reason``). Messages the server sends
        before its Close are still delivered; then the stream ends."""
        if self._input_ended:
            return
        self._input_ended = True
        ws = self._ws
        if ws is None or self._error is not None:
            return
        if ws.state == "open":
            ws.close(code, reason)

    def data_to_send(self) -> bytes:
        if self._out:
            out = bytes(self._out)
            self._out.clear()
            if self._ws is not None:
                out += self._ws.outgoing()
            return out
        if self._ws is not None:
            return self._ws.outgoing()
        return b""

    # -- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feeds bytes read from the socket (``b""`` = the peer closed TCP) read at ``now``."""
        if self._error is not None:
            return
        if self._ws is None:
            self._receive_handshake(data, now)
        else:
            self._receive_frames(data, now)

    def _receive_handshake(self, data: bytes, now: float) -> None:
        http = self._http
        if not data and self._status is None:
            self.fail(
                ConnectionClosedError(
                    "the server closed the connection during the WebSocket handshake", 1006
                )
            )
            return
        try:
            http.receive_data(data)
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        self._switch(event, now)
                        return
                    continue  # 100 Continue and the like
                if isinstance(event, h11.Response):
                    self._status = event.status_code
                    self._response_headers = self._decode_headers(event.headers)
                elif isinstance(event, h11.Data):
                    room = MAX_ERROR_BODY - len(self._error_body)
                    self._error_body += event.data[:room]
                    if room <= len(event.data):
                        self._fail_upgrade()
                        return
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    if self._status is None:
                        self.fail(
                            ConnectionClosedError(
                                "the server closed the connection during the WebSocket handshake",
                                1006,
                            )
                        )
                    else:
                        self._fail_upgrade()
                    return
                else:  # pragma: no cover - h11 has no other client-side events here
                    return
        except h11.RemoteProtocolError as exc:
            if self._status is not None:  # a refusal whose body was cut off
                self._fail_upgrade()
            else:
                self.fail(ProtocolError(f"bad HTTP response to the WebSocket upgrade: {exc}"))

    @staticmethod
    def _decode_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}

    def _fail_upgrade(self) -> None:
        status = self._status or 0
        self.fail(HandshakeError(status, bytes(self._error_body), self._response_headers))

    def _switch(self, response: h11.InformationalResponse, now: float) -> None:
        self._status = 101
        headers = list(response.headers)
        self._response_headers = self._decode_headers(headers)
        upgrade = _header(headers, b"upgrade")
        connection = _header(headers, b"connection") or b""
        accept = _header(headers, b"sec-websocket-accept")
        problem = None
        if upgrade is None or upgrade.lower() != b"websocket":
            problem = f"Upgrade header is {upgrade!r}, not 'websocket'"
        elif b"upgrade" not in [t.strip().lower() for t in connection.split(b",")]:
            problem = f"Connection header {connection!r} lacks 'upgrade'"
        elif accept is None or accept.decode("latin-1") != accept_key(self._key):
            problem = f"Sec-WebSocket-Accept {accept!r} does not match the key"
        elif _header(headers, b"sec-websocket-extensions") is not None:
            problem = "the server chose an extension we did not offer"
        if problem is not None:
            self.fail(ProtocolError(f"bad WebSocket upgrade response: {problem}"))
            return
        self._ws = WebSocketConnection(
            client=True,
            deliver="frames" if self._fragments else "messages",
            max_message_size=self._max_message_size,
        )
        leftover, closed = self._http.trailing_data
        if leftover:
            self._receive_frames(bytes(leftover), now)
        if closed:
            self._receive_frames(b"", now)

    def _receive_frames(self, data: bytes, now: float) -> None:
        ws = self._ws
        assert ws is not None
        if not data:
            if not ws.closed:
                self.fail(
                    ConnectionClosedError(
                        "the server closed TCP without a WebSocket Close frame (1006)", 1006
                    )
                )
            return
        append = self._messages.append
        for kind, payload, fin in ws.receive(data):
            if kind == TEXT:
                append(Message(payload, True, fin, now))
            elif kind == BINARY:
                append(Message(payload, False, fin, now))
            elif kind == CLOSE:
                self._on_close(ws, payload)
            # PING (already answered) and PONG need nothing.

    def _on_close(self, ws: WebSocketConnection, payload: tuple[int, str]) -> None:
        code, reason = payload
        self._input_ended = True
        if ws.failed:
            self.fail(
                ProtocolError(
                    f"the server broke the WebSocket protocol: {reason} (we closed {code})"
                )
            )
        elif code in _CLEAN_CLOSE:
            self._receive_closed = True
        else:
            self.fail(
                ConnectionClosedError(
                    f"the server closed the WebSocket with {code}"
                    + (f": {reason}" if reason else ""),
                    code,
                    reason,
                )
            )
