"""The baseline of ``benchmarks/loadtest_bench.py``: the same echo user (same pacer, same
metrics, same byte-exact check) on ``websocket-client`` instead of our sans-IO client.

This is the usual way to load-test WebSockets with Locust (a ``websocket.create_connection``
per user, gevent-patched sockets). Run it like a locustfile:

    locust -f benchmarks/loadtest_baseline.py --host ws://127.0.0.1:8080 --headless ...
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import websocket

from sagebidi_perf.client import Message
from sagebidi_perf.client.errors import ConnectionClosedError
from sagebidi_perf.loadtest.users import EchoUser

_perf = time.perf_counter


class WsClientSession:
    """The few :class:`sagebidi_perf.client.Session` methods the echo user calls."""

    def __init__(self, url: str, timeout: float) -> None:
        self.ws = websocket.create_connection(url, timeout=timeout, enable_multithread=True)

    def send(self, data: Any) -> None:
        if isinstance(data, str):
            self.ws.send(data)
        else:
            self.ws.send_binary(bytes(data))

    def receive(self, timeout: float | None = None) -> Message | None:
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            return None
        now = _perf()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return None
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return Message(data.decode("utf-8"), True, True, now)
        return Message(data, False, True, now)

    def close(self) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.close(timeout=2)

    def abort(self) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.shutdown()


class WebsocketClientEcho(EchoUser):
    """EchoUser on websocket-client."""

    def connect(self, query_vars: dict[str, str] | None = None) -> Any:
        host = (self.host or self.environment.host or "").rstrip("/")
        try:
            return WsClientSession(
                host + "/invocations-bidirectional-stream", self.settings.connect_timeout
            )
        except websocket.WebSocketBadStatusException as exc:
            raise ConnectionClosedError(str(exc)) from exc
