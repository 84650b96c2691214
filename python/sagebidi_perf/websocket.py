"""A sans-IO WebSocket protocol core (RFC 6455, no extensions) in Rust.

The HTTP upgrade is done by the caller (h11); :func:`accept_key` computes the
``Sec-WebSocket-Accept`` header. After it, one :class:`WebSocketConnection` per socket::

    ws = WebSocketConnection()                      # server; client=True for a client
    while not ws.closed:
        data = await stream.receive_some(65536)
        if not data:
            break                                   # peer dropped TCP (no close frame)
        for kind, payload, fin in ws.receive(data):
            if kind == TEXT or kind == BINARY:
                ws.send(payload)                    # echo: str -> text, bytes -> binary
            elif kind == CLOSE:
                code, reason = payload              # the echo/our close is already queued
        if out := ws.outgoing():                    # pongs, replies, closes: one write
            await stream.send_all(out)

Events are plain tuples ``(kind, payload, fin)``:

* ``(TEXT, str, True)`` / ``(BINARY, bytes, True)``: one whole message (``deliver="messages"``).
  With ``deliver="frames"`` each data frame is reported as it completes, ``fin`` is the frame's
  FIN bit and text frames are UTF-8 ``bytes`` (validated; a frame may end inside a character).
* ``(PING, bytes, True)``: the pong is already queued. ``(PONG, bytes, True)``.
* ``(CLOSE, (code, reason), True)``: the peer's close (code 1005 if it had none; the echo is
  queued), or our failure of the connection on a protocol violation (``failed`` is then True and
  a Close frame with 1002, 1007 or 1009 is queued). Nothing follows a CLOSE event.

A peer often sends valid messages and a protocol violation in one flight, so they arrive in one
``receive()`` batch, after which the failure's Close is already queued and replies can no longer
precede it. ``WebSocketConnection(defer_failure_close=True)`` keeps it back: on a violation the
state becomes ``"failing"`` (input is dead, sending still works) until the owner has answered
what it already received and calls ``close()``, which sends the failure's code and reason::

    for kind, payload, fin in ws.receive(data):
        ...                                         # enqueue messages as usual
    if ws.state == "failing":
        ...                                         # let replies to those messages go out
        ws.close()                                  # then the failure's Close (e.g. 1002)

Misuse (sending after a close, a bad close code, a control payload over 125 bytes, a new message
inside an unfinished fragmented one) raises :class:`~sagebidi_perf.errors.InvalidArgumentError`.
"""

from __future__ import annotations

import base64
import os
from enum import IntEnum
from typing import Any, Final, TypeAlias

from sagebidi_perf._native import (
    WS_BINARY,
    WS_CLOSE,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    WebSocketConnection,
    websocket_accept_key,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "CloseCode",
    "WebSocketConnection",
    "WebSocketEvent",
    "accept_key",
    "generate_key",
]

TEXT: Final = WS_TEXT
BINARY: Final = WS_BINARY
CLOSE: Final = WS_CLOSE
PING: Final = WS_PING
PONG: Final = WS_PONG

#: ``(kind, payload, fin)`` as returned by :meth:`WebSocketConnection.receive`. The payload's
#: type follows ``kind`` (``str``/``bytes``, ``bytes``, or ``(code, reason)`` for CLOSE), so it
#: is typed ``Any``: mypy cannot narrow it from a comparison of the unpacked ``kind``.
WebSocketEvent: TypeAlias = tuple[int, Any, bool]


class CloseCode(IntEnum):
    """Close codes with a name (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RECEIVED = 1005  # reported for an empty close; never sent
    ABNORMAL_CLOSURE = 1006  # never sent: TCP closed without a close frame
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


def accept_key(key: str | bytes) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``.

    Raises :class:`~sagebidi_perf.errors.InvalidArgumentError` unless the key is the base64
    encoding of 16 bytes (RFC 6455 §4.1), so a server can answer 400 to a bad handshake.
    """
    return websocket_accept_key(key)


def generate_key() -> str:
    """A fresh random ``Sec-WebSocket-Key`` for a client handshake."""
    return base64.b64encode(os.urandom(16)).decode("ascii")
