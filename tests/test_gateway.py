"""The gateway over real sockets: a TLS HTTP/2 client on the ``h2`` library (trusting the
generated CA, signing like the official client) against the gateway and a frame-level container."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import h2.errors
import pytest
import trio

from gateway_helpers import (
    KEY,
    SECRET,
    FrameContainer,
    H2Client,
    StreamState,
    exception_of,
    part_of,
    payload_part,
    start_container,
    start_gateway,
)
from sagebidi_perf.eventstream import encode_message
from sagebidi_perf.gateway import GatewayServer, ensure_certificates, parse_upstream
from sagebidi_perf.sigv4 import EventSigner
from sagebidi_perf.websocket import BINARY, TEXT

pytestmark = pytest.mark.timeout(60)

STEP = 15  # seconds for any one wait in a test (generous: the machine is shared)


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway-certs")
    ensure_certificates(path)
    return path


@dataclass
class Setup:
    gateway: GatewayServer
    container: FrameContainer
    client: H2Client
    nursery: trio.Nursery
    clients: list[H2Client]

    async def signed(self, endpoint: str = "my-endpoint", **kw: object) -> tuple[int, EventSigner]:
        return await self.client.open_signed(endpoint, **kw)  # type: ignore[arg-type]

    async def new_client(self) -> H2Client:
        assert self.gateway.port is not None
        assert self.gateway.certs is not None
        client = await H2Client.connect(self.nursery, self.gateway.port, self.gateway.certs.ca)
        self.clients.append(client)
        return client


@pytest.fixture
async def make(nursery: trio.Nursery, cert_dir: Path) -> AsyncIterator[object]:
    clients: list[H2Client] = []

    async def factory(container: FrameContainer | None = None, **gateway: object) -> Setup:
        container = container or FrameContainer()
        port = await start_container(nursery, container)
        server = await start_gateway(nursery, cert_dir, port, **gateway)
        assert server.port is not None
        client = await H2Client.connect(nursery, server.port, cert_dir / "ca.pem")
        clients.append(client)
        return Setup(server, container, client, nursery, clients)

    yield factory
    for client in clients:
        await client.aclose()


async def send_event(
    setup: Setup,
    sid: int,
    signer: EventSigner,
    data: bytes,
    data_type: str | None = "UTF8",
    state: str | None = "COMPLETE",
    **kw: object,
) -> None:
    await setup.client.send(sid, signer.sign(payload_part(data, data_type, state, **kw)))  # type: ignore[arg-type]


async def close_input(setup: Setup, sid: int, signer: EventSigner | None) -> None:
    if signer is not None:
        await setup.client.send(sid, signer.sign_end())
    await setup.client.end(sid)


# -- TLS, routing, response headers ------------------------------------------------------------


async def test_echo_session_headers_and_clean_close(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid, signer = await setup.signed(extra=[("x-amzn-sagemaker-target-variant", "Blue-1")])
        # The first event goes out before any response headers (as the official client does).
        await send_event(setup, sid, signer, b'{"type":"hello","text":"first"}')
        state = await client.response(sid)
        assert state.status == 200
        assert state.header(b"content-type") == b"application/vnd.amazon.eventstream"
        assert state.header(b"x-amzn-invoked-production-variant") == b"Blue-1"
        uuid.UUID(state.header(b"x-amzn-requestid").decode())  # type: ignore[union-attr]
        [echo] = await client.messages(sid, 1)
        assert part_of(echo) == ("UTF8", "COMPLETE", b'{"type":"hello","text":"first"}')
        await close_input(setup, sid, signer)
        state = await client.finished(sid)
    assert state.ended
    assert state.reset is None
    assert len(state.messages) == 1  # no exception event on a clean close
    [conn] = setup.container.connections
    await conn.wait(lambda c: c.done.is_set())
    assert conn.close == (1000, "client closed input stream")
    assert conn.target == "/invocations-bidirectional-stream"
    [record] = setup.gateway.gateway.sessions
    assert record.final_frame is True
    assert (record.parts_in, record.parts_out, record.outcome) == (1, 1, "input-ended")


async def test_default_variant_and_path_without_question_mark(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    headers = client.request_headers(path="/endpoints/my-endpoint/invocations-bidirectional-stream")
    with trio.fail_after(STEP):
        # Unsigned (no Authorization) -> 403 proves the route matched before auth.
        sid = await client.open(headers, end_stream=True)
        state = await client.finished(sid)
    assert state.status == 403
    setup2: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup2.signed()
        await close_input(setup2, sid, signer)
        state = await setup2.client.finished(sid)
    assert state.status == 200
    assert state.header(b"x-amzn-invoked-production-variant") == b"AllTraffic"


async def test_old_client_without_final_frame(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"x")
        await setup.client.messages(sid, 1)
        await close_input(setup, sid, None)  # 0.1.0 client: bare END_STREAM
        state = await setup.client.finished(sid)
    assert state.ended
    assert len(state.messages) == 1
    [record] = setup.gateway.gateway.sessions
    assert record.final_frame is False
    await setup.container.connections[0].wait(lambda c: c.done.is_set())
    assert setup.container.connections[0].close == (1000, "client closed input stream")


# -- the PayloadPart <-> frame mapping -----------------------------------------------------------


async def test_payload_parts_map_to_frames_both_ways(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    plan: list[tuple[bytes, str | None, str | None]] = [
        (b"text", "UTF8", "COMPLETE"),
        (b"\x00\x01bin", "BINARY", "COMPLETE"),
        (b"no headers", None, None),  # absent DataType -> binary, absent state -> COMPLETE
        (b"a", "UTF8", "PARTIAL"),
        (b"b", "BINARY", "PARTIAL"),  # a continuation keeps the message's kind
        (b"c", None, "COMPLETE"),
        (b"", "UTF8", "COMPLETE"),  # empty part -> empty frame
        ("é".encode()[:1], "UTF8", "PARTIAL"),  # a character split across fragments
        ("é".encode()[1:], "UTF8", "COMPLETE"),
    ]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        for data, data_type, state in plan:
            await send_event(setup, sid, signer, data, data_type, state, pad="pppp")
        messages = await client.messages(sid, len(plan))
        await close_input(setup, sid, signer)
        await client.finished(sid)
    conn = setup.container.connections[0]
    assert conn.frames == [
        (TEXT, b"text", True),
        (BINARY, b"\x00\x01bin", True),
        (BINARY, b"no headers", True),
        (TEXT, b"a", False),
        (TEXT, b"b", False),
        (TEXT, b"c", True),
        (TEXT, b"", True),
        (TEXT, b"\xc3", False),
        (TEXT, b"\xa9", True),
    ]
    # The mirror sent each frame back as the same fragment: one frame = one PayloadPart.
    assert [part_of(m) for m in messages] == [
        ("UTF8", "COMPLETE", b"text"),
        ("BINARY", "COMPLETE", b"\x00\x01bin"),
        ("BINARY", "COMPLETE", b"no headers"),
        ("UTF8", "PARTIAL", b"a"),
        ("UTF8", "PARTIAL", b"b"),
        ("UTF8", "COMPLETE", b"c"),
        ("UTF8", "COMPLETE", b""),
        ("UTF8", "PARTIAL", b"\xc3"),
        ("UTF8", "COMPLETE", b"\xa9"),
    ]


async def test_path_and_query_override_and_forwarded_headers(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    extra = [
        ("x-amzn-sagemaker-model-invocation-path", "v1/listen"),
        ("x-amzn-sagemaker-model-query-string", "model=nova-3&language=en"),
    ]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed(extra=extra)
        await close_input(setup, sid, signer)
        state = await setup.client.finished(sid)
    assert state.status == 200
    [conn] = setup.container.connections
    assert conn.target == "/v1/listen?model=nova-3&language=en"
    assert conn.headers[b"x-amzn-sagemaker-model-invocation-path"] == b"v1/listen"
    assert conn.headers[b"upgrade"] == b"websocket"


async def test_greeting_arrives_before_any_client_event(make: object) -> None:
    setup: Setup = await make(FrameContainer(greeting=b'{"type":"session.created"}'))  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        [greeting] = await setup.client.messages(sid, 1)
        await close_input(setup, sid, signer)
    assert part_of(greeting) == ("UTF8", "COMPLETE", b'{"type":"session.created"}')


# -- authentication and validation: nothing reaches the container --------------------------------


def assert_error(state: StreamState, status: int, error_type: str) -> dict[str, object]:
    assert state.status == status, bytes(state.body)
    assert state.ended
    assert state.reset is None
    errortype = state.header(b"x-amzn-errortype")
    assert errortype is not None
    assert errortype.decode().split(":", 1)[0] == error_type
    assert state.header(b"content-type") == b"application/json"
    assert state.header(b"x-amzn-requestid")
    doc = state.json()
    assert isinstance(doc["Message"], str)
    assert doc["Message"]
    assert "message" not in doc  # capitalised keys only
    return doc


@pytest.mark.parametrize(
    ("how", "error_type"),
    [
        ("unsigned", "MissingAuthenticationTokenException"),
        ("wrong-secret", "InvalidSignatureException"),
        ("unknown-key", "UnrecognizedClientException"),
        ("wrong-region", "InvalidSignatureException"),
        ("tampered-header", "InvalidSignatureException"),
    ],
)
async def test_bad_request_signature_is_403_and_reaches_nothing(
    make: object, how: str, error_type: str
) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        if how == "unsigned":
            sid = await client.open(client.request_headers())
        elif how == "tampered-header":
            headers = client.request_headers(extra=[("x-amzn-sagemaker-target-variant", "A")])
            from sagebidi_perf.sigv4 import STREAMING_EVENTS_PAYLOAD, amz_date, sign_request

            signed = sign_request(
                method="POST",
                path=dict(headers)[":path"],
                headers=headers,
                payload_hash=STREAMING_EVENTS_PAYLOAD,
                access_key_id=KEY,
                secret_access_key=SECRET,
                region="us-west-2",
                service="sagemaker",
                amz_date=amz_date(),
                content_sha256_header=True,
            )
            changed = [
                (k, "B" if k == "x-amzn-sagemaker-target-variant" else v) for k, v in headers
            ]
            sid = await client.open(changed + signed.added_headers)
        else:
            kw = {
                "wrong-secret": {"secret": "not-the-secret"},
                "unknown-key": {"key": "AKIDOTHER"},
                "wrong-region": {"region": "eu-west-1"},
            }[how]
            sid, _signer = await client.open_signed(**kw)  # type: ignore[arg-type]
        # The client keeps sending after the error (more than a window's worth): drained.
        await client.send(sid, b"\x00" * (3 * 2**20))
        await client.end(sid)
        state = await client.finished(sid)
    doc = assert_error(state, 403, error_type)
    assert doc["ErrorCode"] == error_type
    assert SECRET not in json.dumps(doc)
    assert setup.container.tcp_connections == 0
    # The connection is still good.
    with trio.fail_after(STEP):
        sid, signer = await client.open_signed()
        await close_input(setup, sid, signer)
        assert (await client.finished(sid)).status == 200


@pytest.mark.parametrize(
    ("header", "value", "member"),
    [
        ("x-amzn-sagemaker-target-variant", "-bad", "targetVariant"),
        ("x-amzn-sagemaker-target-variant", "a" * 64, "targetVariant"),
        ("x-amzn-sagemaker-model-invocation-path", "/v1/listen", "modelInvocationPath"),
        ("x-amzn-sagemaker-model-invocation-path", "v1//listen", "modelInvocationPath"),
        ("x-amzn-sagemaker-model-invocation-path", "v1/" + "a" * 100, "modelInvocationPath"),
        ("x-amzn-sagemaker-model-query-string", "model=", "modelQueryString"),
        ("x-amzn-sagemaker-model-query-string", "a=1&&b=2", "modelQueryString"),
        ("x-amzn-sagemaker-model-query-string", "a=b c", "modelQueryString"),
        ("x-amzn-sagemaker-model-query-string", "a=%zz", "modelQueryString"),
        ("x-amzn-sagemaker-model-query-string", "a=" + "b" * 2047, "modelQueryString"),
    ],
)
async def test_invalid_sagemaker_headers_are_400(
    make: object, header: str, value: str, member: str
) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed(extra=[(header, value)])
        await close_input(setup, sid, signer)
        state = await setup.client.finished(sid)
    doc = assert_error(state, 400, "InputValidationError")
    assert member in str(doc["Message"])
    assert str(doc["Message"]).startswith("1 validation error detected")
    assert setup.container.tcp_connections == 0


async def test_valid_header_values_at_the_limits_pass(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    extra = [
        ("x-amzn-sagemaker-target-variant", "a" + "-b" * 31),
        ("x-amzn-sagemaker-model-invocation-path", "v1/a-b_c.d"),
        ("x-amzn-sagemaker-model-query-string", "k=%2Fx~y&k_2-b=1"),
    ]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed(extra=extra)
        await close_input(setup, sid, signer)
        state = await setup.client.finished(sid)
    assert state.status == 200
    assert setup.container.connections[0].target == "/v1/a-b_c.d?k=%2Fx~y&k_2-b=1"


async def test_endpoints_map_to_their_containers_and_unknown_is_400(
    nursery: trio.Nursery, cert_dir: Path
) -> None:
    first, second = FrameContainer(), FrameContainer()
    p1 = await start_container(nursery, first)
    p2 = await start_container(nursery, second)
    endpoints = {
        "alpha": parse_upstream(f"ws://127.0.0.1:{p1}"),
        "beta": parse_upstream(f"ws://127.0.0.1:{p2}"),
    }
    server = await start_gateway(nursery, cert_dir, None, endpoints=endpoints)
    assert server.port is not None
    client = await H2Client.connect(nursery, server.port, cert_dir / "ca.pem")
    try:
        with trio.fail_after(STEP):
            for name in ("alpha", "beta", "beta"):
                sid, signer = await client.open_signed(name)
                await client.send(sid, signer.sign(payload_part(name.encode())))
                await client.send(sid, signer.sign_end(), end_stream=True)
                assert (await client.finished(sid)).status == 200
            sid, signer = await client.open_signed("gamma")
            await client.end(sid)
            state = await client.finished(sid)
    finally:
        await client.aclose()
    doc = assert_error(state, 400, "InputValidationError")
    assert doc["Message"] == "Endpoint gamma of account 123456789012 not found."
    assert doc["ErrorCode"] == "Client.ValidationError"
    assert [c.frames for c in first.connections] == [[(TEXT, b"alpha", True)]]
    assert [c.frames for c in second.connections] == [[(TEXT, b"beta", True)]] * 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/endpoints/my-endpoint/invocations-bidirectional-stream"),
        ("POST", "/endpoints/my-endpoint/invocations"),
        ("POST", "/endpoints//invocations-bidirectional-stream"),
        ("POST", "/"),
    ],
)
async def test_unknown_operation_is_404(make: object, method: str, path: str) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid = await setup.client.open(
            setup.client.request_headers(path=path, method=method), end_stream=True
        )
        state = await setup.client.finished(sid)
    assert_error(state, 404, "UnknownOperationException")


# -- the container's side -----------------------------------------------------------------------


async def test_refused_upgrade_is_424_model_error(make: object) -> None:
    setup: Setup = await make(FrameContainer("refuse", refuse_status=400))  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed(extra=[("x-amzn-sagemaker-model-query-string", "bad=1")])
        await send_event(setup, sid, signer, b"never relayed")
        await close_input(setup, sid, signer)
        state = await setup.client.finished(sid)
    doc = assert_error(state, 424, "ModelError")
    assert doc["Message"] == "Failed to establish WebSocket connection"
    assert doc["ErrorCode"] == "ModelError"
    assert doc["OriginalStatusCode"] == 400
    assert str(doc["LogStreamArn"]).endswith("/aws/sagemaker/Endpoints/my-endpoint")
    assert setup.container.connections[0].target == "/invocations-bidirectional-stream?bad=1"


async def test_no_container_listening_is_424(nursery: trio.Nursery, cert_dir: Path) -> None:
    # A port that was just free: nothing listens there.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    server = await start_gateway(nursery, cert_dir, port)
    assert server.port is not None
    client = await H2Client.connect(nursery, server.port, cert_dir / "ca.pem")
    with trio.fail_after(STEP):
        sid, signer = await client.open_signed()
        await client.send(sid, signer.sign_end(), end_stream=True)
        state = await client.finished(sid)
    await client.aclose()
    doc = assert_error(state, 424, "ModelError")
    assert "OriginalStatusCode" not in doc
    assert "cannot connect" in str(doc["OriginalMessage"])


async def test_container_close_becomes_model_stream_error(make: object) -> None:
    setup: Setup = await make(
        FrameContainer("close", close_after=2, close_code=1011, close_reason="model crashed")
    )  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"one")
        await send_event(setup, sid, signer, b"two")
        state = await setup.client.finished(sid)
        assert state.ended
        assert state.reset is None
        [error] = state.messages
        # The client may go on sending after the end of the response: drained, no reset.
        await send_event(setup, sid, signer, b"three")
        await close_input(setup, sid, signer)
    kind, doc = exception_of(error)
    assert kind == "ModelStreamError"
    assert doc == {"Message": "WebSocket closed by model: 1011 model crashed", "ErrorCode": "1011"}
    assert setup.gateway.gateway.sessions[0].outcome == "container-closed 1011"


async def test_container_normal_close_can_end_quietly(make: object) -> None:
    setup: Setup = await make(
        FrameContainer("close", close_after=1, close_code=1000, close_reason=""),
        normal_close_error=False,
    )  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"one")
        state = await setup.client.finished(sid)
    assert state.ended
    assert state.messages == []


async def test_container_vanishing_becomes_model_stream_error_1006(make: object) -> None:
    setup: Setup = await make(FrameContainer("vanish", close_after=1))  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"one")
        state = await setup.client.finished(sid)
    [error] = state.messages
    kind, doc = exception_of(error)
    assert (kind, doc["ErrorCode"]) == ("ModelStreamError", "1006")
    assert state.reset is None


# -- hostile request streams --------------------------------------------------------------------


async def test_tampered_chunk_signature_mid_stream(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"good")
        await client.messages(sid, 1)
        bad = bytearray(signer.sign(payload_part(b"evil")))
        # Flip one bit of the :chunk-signature value (offset: prelude 12 + ':date' header 15 +
        # name length 1 + ':chunk-signature' 16 + type 1 + length 2).
        bad[12 + 15 + 1 + 16 + 1 + 2] ^= 0x01
        # A fixed CRC would be needed for the envelope to parse; recompute it.
        bad = bytearray(_fix_crc(bytes(bad)))
        await client.send(sid, bytes(bad))
        state = await client.finished(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
    assert [part_of(m)[2] for m in state.messages[:1]] == [b"good"]
    kind, doc = exception_of(state.messages[-1])
    assert kind == "InternalStreamFailure"
    assert "signature" in doc["Message"]
    assert conn.frames == [(TEXT, b"good", True)]  # the tampered event never reached it
    assert conn.close is not None
    assert conn.close[0] == 1008
    assert setup.gateway.gateway.sessions[0].outcome == "bad-signature"


def _fix_crc(frame: bytes) -> bytes:
    import zlib

    body = frame[:-4]
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 64,  # zero lengths: malformed prelude
        b"\x7f\xff\xff\xff" + b"\x00" * 60,  # a 2 GiB message announced: refused, not buffered
        bytes(range(256)) * 4,
        encode_message({":date": 1}, b"not signed"),  # a well-formed message, not an envelope
    ],
    ids=["zeros", "huge-length", "noise", "unsigned-message"],
)
async def test_garbage_event_stream_is_internal_stream_failure(
    make: object, garbage: bytes
) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, _signer = await setup.signed()
        await setup.client.send(sid, garbage)
        state = await setup.client.finished(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
    assert state.status == 200
    assert state.reset is None
    kind, _doc = exception_of(state.messages[-1])
    assert kind == "InternalStreamFailure"
    assert conn.frames == []
    assert conn.close is not None
    assert conn.close[0] == 1008


@pytest.mark.parametrize(
    "inner",
    [
        encode_message({":message-type": "event", ":event-type": "Other"}, b"x"),
        encode_message(
            {":message-type": "event", ":event-type": "PayloadPart", "DataType": "JSON"}, b"x"
        ),
        encode_message(
            {":message-type": "event", ":event-type": "PayloadPart", "CompletionState": "DONE"},
            b"x",
        ),
        encode_message(
            {":message-type": "event", ":event-type": "PayloadPart", "DataType": 1}, b"x"
        ),
        b"not an event-stream message at all",
    ],
    ids=["event-type", "data-type", "completion-state", "header-type", "inner-garbage"],
)
async def test_invalid_signed_events_are_rejected(make: object, inner: bytes) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await setup.client.send(sid, signer.sign(inner))
        state = await setup.client.finished(sid)
    kind, _doc = exception_of(state.messages[-1])
    assert kind == "InternalStreamFailure"
    assert setup.container.connections[0].frames == []


async def test_end_of_stream_inside_a_message_is_rejected(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        frame = signer.sign(payload_part(b"cut short"))
        await setup.client.send(sid, frame[:-10], end_stream=True)
        state = await setup.client.finished(sid)
    kind, _doc = exception_of(state.messages[-1])
    assert kind == "InternalStreamFailure"
    assert setup.container.connections[0].frames == []


# -- the client going away ------------------------------------------------------------------------


async def test_client_reset_closes_the_container_websocket(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"hi")
        await client.messages(sid, 1)
        await client.reset(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
        # The connection and other streams go on.
        sid2, signer2 = await setup.signed()
        await send_event(setup, sid2, signer2, b"again")
        [echo] = await client.messages(sid2, 1)
        await close_input(setup, sid2, signer2)
        await client.finished(sid2)
    assert conn.close == (1001, "client disconnected")
    assert part_of(echo)[2] == b"again"
    assert setup.gateway.gateway.sessions[0].outcome == "client-gone"


async def test_client_vanishing_closes_the_container_websocket(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"hi")
        await setup.client.messages(sid, 1)
        await setup.client.aclose()  # TCP gone, no GOAWAY
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
        await setup.gateway.gateway.wait_idle()
    assert conn.close == (1001, "client disconnected")


# -- flow control and concurrency -----------------------------------------------------------------


async def test_one_megabyte_each_way_within_flow_control(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    payload = bytes((i * 7 + 3) % 251 for i in range(1_000_000))
    client.auto_ack = False  # we give window back only when told: the gateway must wait
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, payload, "BINARY")
        state = client.streams[sid]
        await client.wait(sid, lambda s: len(s.body) >= 65535)
        await trio.sleep(0.2)
        # The default initial window is 65,535 bytes: not one byte more until we ack.
        assert len(state.body) == 65535
        await client.ack_all()
        [echo] = await client.messages(sid, 1)
        await close_input(setup, sid, signer)
        await client.finished(sid)
    assert part_of(echo) == ("BINARY", "COMPLETE", payload)
    assert setup.container.connections[0].frames == [(BINARY, payload, True)]


async def test_a_container_that_does_not_read_slows_the_client_down(make: object) -> None:
    container = FrameContainer("silent")
    container.hold = trio.Event()
    setup: Setup = await make(container, initial_window_size=65535)  # type: ignore[operator]
    total = 48
    event = b"\x5a" * (1 << 20)
    sent = 0

    async def sender(sid: int, signer: EventSigner) -> None:
        nonlocal sent
        for _ in range(total):
            await send_event(setup, sid, signer, event, "BINARY")
            sent += 1

    with trio.fail_after(STEP * 3):
        sid, signer = await setup.signed()
        async with trio.open_nursery() as inner:
            inner.start_soon(sender, sid, signer)
            await trio.sleep(1.5)
            stalled_at = sent
            await trio.sleep(1.0)
            # Request DATA is acknowledged only once written to the container: the client is
            # held back (loopback socket buffers hold a few MiB), nothing piles up in between.
            assert sent == stalled_at
            assert sent < total
            container.hold.set()
        conn = setup.container.connections[0]
        await conn.wait(lambda c: len(c.frames) == total)
        await close_input(setup, sid, signer)
        await setup.client.finished(sid)
    assert all(frame == (BINARY, event, True) for frame in conn.frames)


async def test_a_batch_of_events_in_one_write_is_relayed_frame_by_frame(make: object) -> None:
    # The relay processes every complete event of a receive in one pass: the frames must still
    # reach the container one per event, in order, with the Close after the last one.
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        batch = b"".join(signer.sign(payload_part(f"m{i}".encode())) for i in range(50))
        await client.send(sid, batch + signer.sign_end(), end_stream=True)
        state = await client.finished(sid)
        [conn] = setup.container.connections
        await conn.wait(lambda c: c.close is not None)
    assert state.status == 200
    assert conn.frames == [(TEXT, f"m{i}".encode(), True) for i in range(50)]
    assert conn.close == (1000, "client closed input stream")
    [record] = setup.gateway.gateway.sessions
    assert (record.parts_in, record.outcome, record.final_frame) == (50, "input-ended", True)


async def test_concurrent_streams_on_one_connection(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = setup.client
    results: dict[int, list[bytes]] = {}

    async def session(n: int) -> None:
        sid, signer = await setup.signed()
        sent = [f"stream {n} message {i}".encode() * (n + 1) for i in range(5)]
        for data in sent:
            await send_event(setup, sid, signer, data, "BINARY")
        messages = await client.messages(sid, len(sent))
        await close_input(setup, sid, signer)
        await client.finished(sid)
        results[n] = [part_of(m)[2] for m in messages]
        assert results[n] == sent

    with trio.fail_after(STEP * 2):
        async with trio.open_nursery() as inner:
            for n in range(12):
                inner.start_soon(session, n)
    assert len(results) == 12
    assert len(setup.container.connections) == 12


async def test_rapid_reset_gets_goaway(make: object) -> None:
    setup: Setup = await make(max_client_resets=5)  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        for _ in range(8):
            if client.terminated is not None or client.eof.is_set():
                break
            sid = await client.open(client.request_headers())
            await client.reset(sid)
            await trio.sleep(0.02)
        await client.eof.wait()  # GOAWAY, then the gateway closes the connection
    assert client.terminated is not None
    assert client.terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


# -- keepalive and limits -------------------------------------------------------------------------


async def test_keepalive_closes_a_container_that_never_answers(make: object) -> None:
    setup: Setup = await make(FrameContainer("stall"), ping_interval=0.1, ping_misses=2)  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, _signer = await setup.signed()
        state = await setup.client.finished(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
    kind, doc = exception_of(state.messages[-1])
    assert (kind, doc["ErrorCode"]) == ("ModelStreamError", "StreamBroken")
    assert "2 consecutive" in doc["Message"]
    assert conn.eof


async def test_keepalive_pings_a_live_container(make: object) -> None:
    setup: Setup = await make(ping_interval=0.05, ping_misses=2)  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        conn = await _first_connection(setup.container)
        await conn.wait(lambda c: c.pings >= 4)
        await send_event(setup, sid, signer, b"still here")
        [echo] = await setup.client.messages(sid, 1)
        await close_input(setup, sid, signer)
        state = await setup.client.finished(sid)
    assert part_of(echo)[2] == b"still here"
    assert len(state.messages) == 1


async def _first_connection(container: FrameContainer) -> object:
    await container.connected.wait()
    return container.connections[0]


async def test_max_session_duration(make: object) -> None:
    setup: Setup = await make(max_session_seconds=0.3)  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, _signer = await setup.signed()
        state = await setup.client.finished(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
    kind, doc = exception_of(state.messages[-1])
    assert (kind, doc["ErrorCode"]) == ("ModelStreamError", "ModelInvocationTimeExceeded")
    assert conn.close == (1001, "maximum session duration reached")


# -- no auth ------------------------------------------------------------------------------------


async def test_no_auth_accepts_unsigned_and_signed_events(make: object) -> None:
    setup: Setup = await make(no_auth=True, credentials={})  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid = await client.open(client.request_headers())
        await client.send(sid, payload_part(b"plain"))
        [echo] = await client.messages(sid, 1)
        await client.end(sid)
        await client.finished(sid)
        sid2, signer = await client.open_signed(secret="anything")
        await send_event(setup, sid2, signer, b"enveloped")
        [echo2] = await client.messages(sid2, 1)
        await client.send(sid2, signer.sign_end())
        state = await client.finished(sid2)
    assert part_of(echo)[2] == b"plain"
    assert part_of(echo2)[2] == b"enveloped"
    assert state.ended
    assert len(state.messages) == 1


# -- not HTTP/2 over TLS -------------------------------------------------------------------------


async def _raw_exchange(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_plaintext_http1_is_answered_clearly(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    assert setup.gateway.port is not None
    with trio.fail_after(STEP):
        reply = await _raw_exchange(
            setup.gateway.port,
            b"POST /endpoints/e/invocations-bidirectional-stream? HTTP/1.1\r\nHost: x\r\n\r\n",
        )
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"HTTP/2 over TLS only" in reply
    assert b"SSL_CERT_FILE=" in reply


async def test_h2c_preface_gets_goaway(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    assert setup.gateway.port is not None
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with trio.fail_after(STEP):
        reply = await _raw_exchange(setup.gateway.port, conn.data_to_send())
    events = conn.receive_data(reply)
    [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert b"HTTP/2 over TLS only" in (goaway.additional_data or b"")


async def test_tls_without_h2_gets_505(make: object, cert_dir: Path) -> None:
    import ssl

    setup: Setup = await make()  # type: ignore[operator]
    assert setup.gateway.port is not None
    ctx = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    with trio.fail_after(STEP):
        tcp = await trio.open_tcp_stream("127.0.0.1", setup.gateway.port)
        tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() is None  # the server offers h2 only
        await tls.send_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        chunks = []
        try:
            while chunk := await tls.receive_some(65536):
                chunks.append(chunk)
        except trio.BrokenResourceError:
            pass
        await trio.aclose_forcefully(tls)
    reply = b"".join(chunks)
    assert reply.startswith(b"HTTP/1.1 505 ")
    assert re.search(rb"HTTP/2", reply)


# -- failures inside the gateway and idle connections ---------------------------------------------


async def test_internal_failure_becomes_internal_stream_failure(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sagebidi_perf.gateway.relay as relay

    real = relay.payload_part_event

    def broken(payload: bytes, *, text: bool, final: bool) -> bytes:
        if payload == b"boom":
            raise RuntimeError("injected")
        return real(payload, text=text, final=final)

    monkeypatch.setattr(relay, "payload_part_event", broken)
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await send_event(setup, sid, signer, b"fine")
        await send_event(setup, sid, signer, b"boom")
        state = await setup.client.finished(sid)
        conn = setup.container.connections[0]
        await conn.wait(lambda c: c.done.is_set())
    assert part_of(state.messages[0])[2] == b"fine"
    kind, doc = exception_of(state.messages[-1])
    assert kind == "InternalStreamFailure"
    assert doc["Message"] == "Internal failure in the gateway: RuntimeError"
    assert state.reset is None
    assert conn.close == (1011, "gateway internal error")


async def test_idle_connection_gets_goaway(make: object) -> None:
    setup: Setup = await make(idle_timeout=0.3)  # type: ignore[operator]
    client = setup.client
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await close_input(setup, sid, signer)
        await client.finished(sid)
        await client.eof.wait()
    assert client.terminated is not None
    assert client.terminated.error_code == h2.errors.ErrorCodes.NO_ERROR


async def test_silent_connection_is_dropped_after_the_handshake_timeout(
    make: object,
) -> None:
    setup: Setup = await make(handshake_timeout=0.3)  # type: ignore[operator]
    assert setup.gateway.port is not None
    with trio.fail_after(STEP):
        stream = await trio.open_tcp_stream("127.0.0.1", setup.gateway.port)
        assert await stream.receive_some(100) == b""  # closed by the gateway, nothing sent
        await stream.aclose()


async def test_untrusting_client_fails_and_the_gateway_goes_on(make: object) -> None:
    import ssl

    setup: Setup = await make()  # type: ignore[operator]
    assert setup.gateway.port is not None
    ctx = ssl.create_default_context()  # system CAs only: our CA is unknown
    ctx.set_alpn_protocols(["h2"])
    with trio.fail_after(STEP):
        tcp = await trio.open_tcp_stream("127.0.0.1", setup.gateway.port)
        tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        with pytest.raises(trio.BrokenResourceError):
            await tls.do_handshake()
        await trio.aclose_forcefully(tls)
        # The trusted client on its connection is unaffected.
        sid, signer = await setup.signed()
        await close_input(setup, sid, signer)
        assert (await setup.client.finished(sid)).status == 200


async def test_session_token_is_accepted(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    with trio.fail_after(STEP):
        sid, signer = await setup.client.open_signed(session_token="FQoGZXIvYXdzEXAMPLE")
        await send_event(setup, sid, signer, b"with a token")
        [echo] = await setup.client.messages(sid, 1)
        await close_input(setup, sid, signer)
    assert part_of(echo)[2] == b"with a token"


# -- hostile HTTP/2 (raw frames) -----------------------------------------------------------------


async def _raw_frames_then_wait(setup: Setup, frames: list[bytes]) -> H2Client:
    """A fresh TLS connection (preface + SETTINGS done) that then writes raw frames."""
    client = await setup.new_client()
    with contextlib.suppress(trio.BrokenResourceError):  # the gateway may hang up mid-flood
        for frame in frames:
            await client.send_raw(frame)
    with trio.fail_after(STEP):
        await client.eof.wait()
    return client


async def test_continuation_flood_is_a_connection_error(make: object) -> None:
    from hyperframe.frame import ContinuationFrame, HeadersFrame

    setup: Setup = await make()  # type: ignore[operator]
    headers = HeadersFrame(1, data=b"\x82")  # :method GET, no END_HEADERS
    flood = [ContinuationFrame(1, data=b"\x84").serialize() for _ in range(200)]
    client = await _raw_frames_then_wait(setup, [headers.serialize(), *flood])
    assert client.terminated is not None
    assert client.terminated.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert setup.gateway.gateway.requests == 0
    # The gateway goes on serving other connections.
    with trio.fail_after(STEP):
        sid, signer = await setup.signed()
        await close_input(setup, sid, signer)
        assert (await setup.client.finished(sid)).status == 200


async def test_oversized_header_block_is_refused(make: object) -> None:
    setup: Setup = await make()  # type: ignore[operator]
    client = await setup.new_client()
    headers = client.request_headers(extra=[(f"x-big-{i}", "v" * 1000) for i in range(100)])
    with trio.fail_after(STEP):
        await client.open(headers, end_stream=True)
        await client.eof.wait()
    # h2 refuses a header list over our 64 KiB SETTINGS_MAX_HEADER_LIST_SIZE for the connection.
    assert client.terminated is not None
    assert client.terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert setup.gateway.gateway.requests == 0  # never handed to the router
    assert setup.container.tcp_connections == 0


async def test_window_update_overflow_is_a_flow_control_error(make: object) -> None:
    from hyperframe.frame import WindowUpdateFrame

    setup: Setup = await make()  # type: ignore[operator]
    frames = [WindowUpdateFrame(0, window_increment=2**31 - 1).serialize()] * 2
    client = await _raw_frames_then_wait(setup, frames)
    assert client.terminated is not None
    assert client.terminated.error_code == h2.errors.ErrorCodes.FLOW_CONTROL_ERROR
