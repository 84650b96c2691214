"""The peer echo servers of the container benchmark, one library per process.

    python benchmarks/container/peer_servers.py KIND PORT

KIND is one of ``trio-websocket``, ``websockets``, ``aiohttp``, ``picows``. Each is the plain
echo server its library's documentation shows (every data message sent back as it came: text
as text, binary as binary), bound to 127.0.0.1:PORT, with no compression (permessage-deflate is
off in websockets and aiohttp, as it is in ours) and a message size limit of 16 MiB (ours: 16 MiB
by default). Default event loops (no uvloop), as the docs' examples run them. Logging is left at
the libraries' defaults (nothing per message). The parent (container_bench.py) waits until a
WebSocket handshake succeeds, then measures.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

MAX_SIZE = 16 * 2**20
PATH = "/invocations-bidirectional-stream"


def trio_websocket(port: int) -> None:
    """trio-websocket 'serve_websocket' echo (as conformance/trio_websocket_echo.py)."""
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        while True:
            try:
                await ws.send_message(await ws.get_message())
            except ConnectionClosed:
                break

    async def main() -> None:
        await serve_websocket(
            handler, "127.0.0.1", port, ssl_context=None, max_message_size=MAX_SIZE
        )

    trio.run(main)


def websockets_asyncio(port: int) -> None:
    """websockets' new asyncio API (websockets.asyncio.server.serve), compression off."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, compression=None, max_size=MAX_SIZE) as server:
            await server.serve_forever()

    asyncio.run(main())


def aiohttp_server(port: int) -> None:
    """aiohttp.web WebSocketResponse echo, compression off."""
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE, compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get(PATH, handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def picows_server(port: int) -> None:
    """picows listener echo (its README's server example), on the default asyncio loop."""
    import asyncio

    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    def factory(_request: WSUpgradeRequest) -> Echo:
        return Echo()

    async def main() -> None:
        server = await ws_create_server(factory, "127.0.0.1", port, max_frame_size=MAX_SIZE)
        await server.serve_forever()

    asyncio.run(main())


def trio_floor(port: int) -> None:
    """Not a peer: the floor of any Trio server on our Rust core. One task per connection that
    parks in wait_readable, reads with os.readv, parses and frames in Rust and writes with
    os.write; no HTTP routing, no model task, no queue, no keepalive. (Only with --servers.)"""
    import os

    import trio

    from sagebidi_perf.websocket import BINARY, TEXT, WebSocketConnection, accept_key

    buf = bytearray(1 << 20)
    view = memoryview(buf)

    async def handler(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            head += chunk
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        ws = WebSocketConnection(client=False, max_message_size=MAX_SIZE)
        sock = stream.socket
        try:
            while not ws.closed:
                await trio.lowlevel.wait_readable(sock)
                try:
                    n = os.readv(sock.fileno(), (buf,))
                except BlockingIOError:
                    continue
                if not n:
                    return
                for kind, payload, _fin in ws.receive(view[:n]):
                    if kind in (TEXT, BINARY):
                        ws.send(payload)
                out = ws.outgoing()
                if out:
                    sent = os.write(sock.fileno(), out)
                    if sent < len(out):
                        await stream.send_all(memoryview(out)[sent:])
        except OSError:
            return
        finally:
            await trio.aclose_forcefully(stream)

    trio.run(trio.serve_tcp, handler, port)


SERVERS: dict[str, Callable[[int], None]] = {
    "trio-websocket": trio_websocket,
    "websockets": websockets_asyncio,
    "aiohttp": aiohttp_server,
    "picows": picows_server,
    "trio-floor": trio_floor,
}

if __name__ == "__main__":
    kind, port_arg = sys.argv[1], sys.argv[2]
    with contextlib.suppress(KeyboardInterrupt):
        SERVERS[kind](int(port_arg))
