"""The baseline: plain trio-websocket echo server (as in the conformance reference)."""

import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

PORT = int(sys.argv[1])
MAX = 2**24 + 1024


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    while True:
        try:
            await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            break


async def main() -> None:
    await serve_websocket(handler, "127.0.0.1", PORT, ssl_context=None, max_message_size=MAX)


trio.run(main)
