"""The container's HTTP side over real sockets: /ping, /invocations, upgrade refusals, limits."""

from __future__ import annotations

import pytest
import trio

from container_helpers import http_request, settings, start_server
from sagebidi_perf.container import (
    ContainerServer,
    InvokeResponse,
    Model,
    RejectUpgrade,
    ServerSettings,
    Session,
    UpgradeRequest,
    load_model,
)
from sagebidi_perf.container.http import parse_query
from sagebidi_perf.models.echo import EchoModel

UPGRADE = [
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
]


class SlowLoading(Model):
    def __init__(self) -> None:
        self.release = trio.Event()

    async def load(self) -> None:
        await self.release.wait()

    async def session(self, session: Session) -> None:  # pragma: no cover - never reached
        pass


class Picky(Model):
    paths = ("/invocations-bidirectional-stream", "/v1/listen")

    def check_upgrade(self, request: UpgradeRequest) -> None:
        if request.query_dict().get("model") not in (None, "nova-3"):
            raise RejectUpgrade("unknown model")

    async def session(self, session: Session) -> None:  # pragma: no cover - not exercised here
        pass


def test_parse_query() -> None:
    assert parse_query("model=nova-3&language=en") == [("model", "nova-3"), ("language", "en")]
    assert parse_query("a=x%20y&a=2") == [("a", "x y"), ("a", "2")]
    assert parse_query("") == []
    with pytest.raises(ValueError, match="bad query field"):
        parse_query("novalue")


def test_settings_from_env_and_overrides() -> None:
    env = {"SAGEMAKER_BIND_TO_PORT": "9090", "SAGEMAKER_MODEL_SERVER_WORKERS": "3"}
    s = ServerSettings.from_env(env)
    assert (s.port, s.workers) == (9090, 3)
    s = ServerSettings.from_env(env, port=7000, workers=None)
    assert (s.port, s.workers) == (7000, 3)
    with pytest.raises(ValueError, match="SAGEMAKER_BIND_TO_PORT"):
        ServerSettings.from_env({"SAGEMAKER_BIND_TO_PORT": "eighty"})
    with pytest.raises(ValueError, match="port"):
        ServerSettings(port=70000)
    with pytest.raises(ValueError, match="workers"):
        ServerSettings(workers=0)
    with pytest.raises(ValueError, match="queue_full_timeout"):
        ServerSettings(queue_full_timeout=float("nan"))


def test_load_model_specs() -> None:
    assert isinstance(load_model("echo"), EchoModel)
    assert isinstance(load_model("sagebidi_perf.models.echo:EchoModel"), EchoModel)
    with pytest.raises(ValueError, match="neither a built-in"):
        load_model("nonsense")
    with pytest.raises(ValueError, match="cannot import"):
        load_model("no_such_module_xyz:Model")
    with pytest.raises(ValueError, match="has no attribute"):
        load_model("sagebidi_perf.models.echo:Missing")
    with pytest.raises(ValueError, match="not a Model"):
        load_model("sagebidi_perf.models.echo:__doc__")


async def test_ping_get_and_post(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    for method in ("GET", "POST"):
        r = await http_request(server.port, method, "/ping")
        assert r.status == 200, r
    r = await http_request(server.port, "PUT", "/ping")
    assert r.status == 405


async def test_ping_is_503_while_loading(nursery: trio.Nursery) -> None:
    model = SlowLoading()
    server = ContainerServer(model, settings())
    await nursery.start(server.serve)
    r = await http_request(server.port, "GET", "/ping")
    assert r.status == 503
    r = await http_request(server.port, "GET", "/invocations-bidirectional-stream", UPGRADE)
    assert r.status == 503
    model.release.set()
    with trio.fail_after(5):
        await server.ready_event.wait()
    assert (await http_request(server.port, "GET", "/ping")).status == 200


async def test_invocations_echo_body(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    body = bytes(range(256)) * 100
    r = await http_request(
        server.port, "POST", "/invocations", [("content-type", "application/x-test")], body
    )
    assert r.status == 200
    assert r.body == body
    assert r.headers[b"content-type"] == b"application/x-test"
    assert (await http_request(server.port, "GET", "/invocations")).status == 405


async def test_invocations_body_limit(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel(), max_message_size=1000)
    r = await http_request(server.port, "POST", "/invocations", body=b"x" * 1001)
    assert r.status == 413
    r = await http_request(server.port, "POST", "/invocations", body=b"x" * 1000)
    assert r.status == 200


async def test_invoke_error_is_500(nursery: trio.Nursery) -> None:
    class Broken(Model):
        async def invoke(self, body: bytes, content_type: str | None) -> InvokeResponse:
            raise RuntimeError("boom")

    server = await start_server(nursery, Broken())
    r = await http_request(server.port, "POST", "/invocations", body=b"x")
    assert r.status == 500
    assert b"RuntimeError: boom" in r.body


async def test_unknown_path_is_404_before_upgrade(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    r = await http_request(server.port, "GET", "/v1/listen", UPGRADE)
    assert r.status == 404
    assert b"/v1/listen" in r.body
    assert (await http_request(server.port, "GET", "/nothing")).status == 404


async def test_bad_query_is_400(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, Picky())
    r = await http_request(server.port, "GET", "/v1/listen?model", UPGRADE)
    assert r.status == 400
    assert b"malformed query" in r.body
    r = await http_request(server.port, "GET", "/v1/listen?model=whisper", UPGRADE)
    assert r.status == 400
    assert r.body == b"unknown model\n"
    r = await http_request(server.port, "GET", "/v1/listen?model=nova-3", UPGRADE)
    assert r.status == 101


@pytest.mark.parametrize(
    ("drop", "replace"),
    [
        ("sec-websocket-key", None),
        (None, ("sec-websocket-key", "not-base64!")),
        (None, ("sec-websocket-key", "c2hvcnQ=")),
        (None, ("sec-websocket-version", "8")),
        ("connection", None),
    ],
)
async def test_invalid_upgrades_are_400(
    nursery: trio.Nursery, drop: str | None, replace: tuple[str, str] | None
) -> None:
    server = await start_server(nursery, EchoModel())
    headers = [h for h in UPGRADE if h[0] != drop and (replace is None or h[0] != replace[0])]
    if replace is not None:
        headers.append(replace)
    r = await http_request(server.port, "GET", "/invocations-bidirectional-stream", headers)
    assert r.status == 400, r


async def test_plain_get_on_bidi_path_is_426(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    r = await http_request(server.port, "GET", "/invocations-bidirectional-stream")
    assert r.status == 426


async def test_garbage_request_gets_400(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        with trio.fail_after(5):
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 400")


async def test_oversized_request_head_is_rejected(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /ping HTTP/1.1\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n")
        with trio.fail_after(5):
            data = b""
            try:
                while chunk := await stream.receive_some(4096):
                    data += chunk
            except trio.BrokenResourceError:
                pass
    assert data.startswith(b"HTTP/1.1 431") or data == b""


async def test_slowloris_handshake_times_out(nursery: trio.Nursery, autojump_clock: object) -> None:
    server = await start_server(nursery, EchoModel(), handshake_timeout=3.0)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /invocations-bidirectional-stream HTTP/1.1\r\nHost: x\r\n")
        start = trio.current_time()
        with trio.fail_after(60):
            assert await stream.receive_some(4096) == b""
        assert 3.0 <= trio.current_time() - start < 4.0


async def test_keep_alive_serves_several_requests(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, EchoModel())
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        req = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        await stream.send_all(req * 3)
        data = b""
        with trio.fail_after(5):
            while data.count(b"HTTP/1.1 200") < 3:
                data += await stream.receive_some(4096)
