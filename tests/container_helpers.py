"""Shared helpers for the container tests: a server on 127.0.0.1:0 and a raw HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

import h11
import trio

from sagebidi_perf.container import ContainerServer, Model, ServerSettings


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def settings(**overrides: object) -> ServerSettings:
    values: dict[str, object] = {"host": "127.0.0.1", "port": 0, "handshake_timeout": 2.0}
    values.update(overrides)
    return ServerSettings(**values)  # type: ignore[arg-type]


async def start_server(nursery: trio.Nursery, model: Model, **overrides: object) -> ContainerServer:
    server = ContainerServer(model, settings(**overrides))
    await nursery.start(server.serve)
    with trio.fail_after(5):
        await server.ready_event.wait()
    return server


async def http_request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """One HTTP/1.1 request over a fresh connection, parsed by h11's client side."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("host", f"127.0.0.1:{port}"), *(headers or [])]
        if body or method == "POST":
            hdrs.append(("content-length", str(len(body))))
        await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=hdrs)))
        if body:
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        status = 0
        resp_headers: dict[bytes, bytes] = {}
        chunks: list[bytes] = []
        with trio.fail_after(5):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response | h11.InformationalResponse):
                    status = event.status_code
                    resp_headers = dict(event.headers)
                    if status == 101:
                        break
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        return Response(status, resp_headers, b"".join(chunks))
