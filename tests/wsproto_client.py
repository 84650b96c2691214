"""A WebSocket test client on wsproto (an independent, pure-Python implementation) over Trio.

It does nothing automatically (no auto-pong), so tests can play a sidecar that never answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
import wsproto
import wsproto.events as ev
from wsproto.frame_protocol import CloseReason


@dataclass
class Closed:
    code: int
    reason: str


@dataclass
class WsClient:
    stream: trio.SocketStream
    ws: wsproto.WSConnection
    pending: list[ev.Event] = field(default_factory=list)
    eof: bool = False

    async def _write(self, event: ev.Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def send(self, data: str | bytes) -> None:
        msg = ev.TextMessage(data) if isinstance(data, str) else ev.BytesMessage(data)
        await self._write(msg)

    async def send_fragment(self, data: str | bytes, *, final: bool) -> None:
        if isinstance(data, str):
            await self._write(ev.TextMessage(data, message_finished=final))
        else:
            await self._write(ev.BytesMessage(data, message_finished=final))

    async def ping(self, payload: bytes) -> None:
        await self._write(ev.Ping(payload))

    async def pong(self, payload: bytes) -> None:
        await self._write(ev.Pong(payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._write(ev.CloseConnection(code, reason))

    async def next_event(self) -> ev.Event | None:
        """The next wsproto event; None once the server dropped TCP."""
        while not self.pending:
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(1 << 20)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                self.ws.receive_data(None)
            else:
                self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def receive(self) -> str | bytes | Closed:
        """The next whole message (reassembling fragments), or how the connection closed."""
        parts: list[str | bytes] = []
        while True:
            event = await self.next_event()
            if event is None:
                return Closed(1006, "TCP closed without a Close frame")
            if isinstance(event, ev.Message):
                parts.append(event.data)
                if event.message_finished:
                    return "".join(parts) if isinstance(event.data, str) else b"".join(parts)  # type: ignore[arg-type]
            elif isinstance(event, ev.CloseConnection):
                if self.ws.state is wsproto.ConnectionState.REMOTE_CLOSING:
                    await self._write(event.response())
                return Closed(event.code, event.reason or "")

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect(port: int, target: str = "/invocations-bidirectional-stream") -> WsClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(ev.Request(host=f"127.0.0.1:{port}", target=target)))
    client = WsClient(stream, ws)
    event = await client.next_event()
    if not isinstance(event, ev.AcceptConnection):
        raise ConnectionError(f"upgrade refused: {event!r}")
    return client


__all__ = ["CloseReason", "Closed", "WsClient", "connect"]
