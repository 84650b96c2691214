"""The ``sagemaker`` client transport.

Sans-IO core first, against an in-memory ``h2`` server: the request and the first DATA frame
must match the captures of the official client byte for byte (protocol reference §2.2, §4.3,
§4.4); responses, in-stream exceptions, HTTP errors and every way a stream can break. Then the
credentials chain, then the blocking and Trio drivers over real TLS sockets (end to end against
the gateway, and against a scripted TLS HTTP/2 peer for faults the gateway never produces).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hyperframe.frame
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from client_helpers import Client
from container_helpers import start_server
from gateway_helpers import KEY, SECRET, ScriptedModel, start_gateway
from sagebidi_perf.client import (
    ClientError,
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    Credentials,
    InputValidationError,
    InternalServerError,
    InternalStreamFailure,
    Message,
    ModelError,
    ModelStreamError,
    NoCredentialsError,
    NoRegionError,
    ProtocolError,
    ServiceError,
    ServiceUnavailableError,
    Session,
    SessionStateError,
    StreamEventError,
    StreamResetError,
    TLSError,
    TrioSession,
    UnmodeledEventError,
    connect_sagemaker,
    open_sagemaker,
    resolve_credentials,
    resolve_region,
)
from sagebidi_perf.client.sagemaker import (
    SageMakerCore,
    build_request,
    default_endpoint_url,
    payload_part_headers,
    resolve_endpoint_url,
    split_endpoint_url,
)
from sagebidi_perf.eventstream import decode_message, encode_message
from sagebidi_perf.gateway import GatewayServer, parse_upstream
from sagebidi_perf.gateway.certs import CertificatePaths, ensure_certificates
from sagebidi_perf.sigv4 import EventVerifier, verify_request

REGION = "us-west-2"
CREDS = Credentials(KEY, SECRET)
AMZ_DATE = "20261125T092331Z"
NOW = 1795598611.0  # 2026-11-25T09:23:31Z

# Protocol reference §2.2: the captured request of aws-sdk-sagemaker-runtime-http2 0.12.0.
CAPTURE_KWARGS: dict[str, Any] = {
    "authority": "localhost:18530",
    "endpoint_name": "my-endpoint",
    "credentials": CREDS,
    "region": REGION,
    "amz_date": AMZ_DATE,
    "target_variant": "AllTraffic",
    "model_invocation_path": "v1/listen",
    "model_query_string": "model=nova-3&language=en",
}
SEED = "e353b15e1ddd1e349c2cdfcac05f48a5d0eb7ae79e7e3581cca2f15966f26cfe"
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-west-2/sagemaker/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
    "x-amzn-sagemaker-model-invocation-path;x-amzn-sagemaker-model-query-string;"
    "x-amzn-sagemaker-target-variant, Signature=" + SEED
)
CAPTURED_HEADERS = [
    (":method", "POST"),
    (":scheme", "https"),
    (":authority", "localhost:18530"),
    (":path", "/endpoints/my-endpoint/invocations-bidirectional-stream?"),
    ("x-amzn-sagemaker-target-variant", "AllTraffic"),
    ("x-amzn-sagemaker-model-invocation-path", "v1/listen"),
    ("x-amzn-sagemaker-model-query-string", "model=nova-3&language=en"),
    ("content-type", "application/vnd.amazon.eventstream"),
    ("user-agent", None),  # ours differs
    ("x-amz-date", AMZ_DATE),
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-EVENTS"),
    ("authorization", AUTHORIZATION),
    ("accept", "*/*"),
]
CANONICAL_REQUEST = """POST
/endpoints/my-endpoint/invocations-bidirectional-stream

content-type:application/vnd.amazon.eventstream
host:localhost:18530
x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-EVENTS
x-amz-date:20261125T092331Z
x-amzn-sagemaker-model-invocation-path:v1/listen
x-amzn-sagemaker-model-query-string:model=nova-3&language=en
x-amzn-sagemaker-target-variant:AllTraffic

content-type;host;x-amz-content-sha256;x-amz-date;x-amzn-sagemaker-model-invocation-path;\
x-amzn-sagemaker-model-query-string;x-amzn-sagemaker-target-variant
STREAMING-AWS4-HMAC-SHA256-EVENTS"""
STRING_TO_SIGN_HASH = "eb76b7be01ea14194125147d706fdca0a8f41241065418d8f748b7320b788d75"
# §4.3: the first DATA frame (262 bytes) and §4.4's dates and chain.
FRAME1_HEX = (
    "0000010600000043ceebe946053a6461746508000001a212047518103a6368756e6b2d7369676e61747572"
    "650600204f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545000000b30000"
    "0084d890ea940d3a6d6573736167652d747970650700056576656e740b3a6576656e742d747970650700"
    "0b5061796c6f616450617274084461746154797065070004555446380f436f6d706c6574696f6e537461"
    "7465070008434f4d504c4554450d3a636f6e74656e742d747970650700186170706c69636174696f6e2f"
    "6f637465742d73747265616d7b2274797065223a2268656c6c6f222c2274657874223a22666972737422"
    "7d979aaf57e61ec341"
)
FINAL_HEX = (
    "0000005300000043f5447a58053a6461746508000001a212047a95103a6368756e6b2d7369676e61747572"
    "65060020678bfdd904ef8d1ad11feb2e3864207d706629993ebaf922b5759c0ef5d3d6c1bb9be841"
)
DATES = [1795598611736, 1795598612038, 1795598612339, 1795598613141]
SIGS = [
    "4f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545",
    "31e8c65b583d0326d1a79f17b61380a8e68b5a494410ca8169ef34819638fb52",
    "919aff438ff2e033ee4873841338127cd4d2e64f43d5bbd701228f8cec5c827d",
    "678bfdd904ef8d1ad11feb2e3864207d706629993ebaf922b5759c0ef5d3d6c1",
]
FIRST_EVENT = '{"type":"hello","text":"first"}'
# §9: response-side captures.
MODEL_STREAM_ERROR_HEADERS = [
    (":message-type", "exception"),
    (":exception-type", "ModelStreamError"),
    (":content-type", "application/json"),
]
MODEL_STREAM_ERROR_PAYLOAD = (
    b'{"Message": "Model container closed the WebSocket (code 1011)", '
    b'"ErrorCode": "ModelStreamError"}'
)
INTERNAL_FAILURE_HEX = (
    "00000092000000631a5f9bfb0d3a6d6573736167652d74797065070009657863657074696f6e0f3a6578"
    "63657074696f6e2d74797065070015496e7465726e616c53747265616d4661696c7572650d3a636f6e74"
    "656e742d747970650700106170706c69636174696f6e2f6a736f6e7b224d657373616765223a2022696e"
    "7465726e616c206661696c757265227d601685ab"
)
UNMODELED_ERROR_HEX = (
    "000000630000005349d2d2ba0d3a6d6573736167652d747970650700056572726f720b3a6572726f722d"
    "636f64650700135468726f74746c696e67457863657074696f6e0e3a6572726f722d6d65737361676507"
    "0009736c6f7720646f776e532634c1"
)
CT = b"application/vnd.amazon.eventstream"


# -- an in-memory HTTP/2 server ----------------------------------------------------------------


class Peer:
    """The server side of one HTTP/2 connection (the ``h2`` library), fed by hand."""

    def __init__(self, initial_window: int | None = None, max_frame_size: int | None = None):
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        values: dict[h2.settings.SettingCodes, int] = {}
        if initial_window is not None:
            values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = initial_window
        if max_frame_size is not None:
            values[h2.settings.SettingCodes.MAX_FRAME_SIZE] = max_frame_size
        if values:
            self.conn.local_settings = h2.settings.Settings(client=False, initial_values=values)
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.body = bytearray()
        self.data_frames: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.ended = False
        self.auto_ack = True

    def feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, h2.events.RequestReceived):
                self.headers = event.headers
            elif isinstance(event, h2.events.DataReceived):
                self.body += event.data
                self.data_frames.append(event.data)
                if self.auto_ack:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True

    def respond(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if headers is None:
            headers = [
                (b"content-type", CT),
                (b"x-amzn-requestid", b"11111111-2222-3333-4444-555555555555"),
                (b"x-amzn-invoked-production-variant", b"AllTraffic"),
            ]
        self.conn.send_headers(1, [(b":status", str(status).encode()), *headers])

    def send(self, data: bytes, end: bool = False) -> None:
        """DATA frames of at most the client's max frame size (windows are the test's job)."""
        size = self.conn.max_outbound_frame_size
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for i, chunk in enumerate(chunks):
            self.conn.send_data(1, chunk, end_stream=end and i == len(chunks) - 1)

    def out(self) -> bytes:
        return self.conn.data_to_send()


def core(**overrides: Any) -> SageMakerCore:
    kwargs = dict(CAPTURE_KWARGS)
    kwargs.update(overrides)
    return SageMakerCore(**kwargs)


def exchange(client: SageMakerCore, peer: Peer, now: float = 1.0) -> None:
    """Client bytes to the server, then server bytes to the client, until both are quiet."""
    for _ in range(20):
        out = client.data_to_send()
        if out:
            peer.feed(out)
        back = peer.out()
        if back:
            client.receive_data(back, now)
        if not out and not back:
            return
    raise AssertionError("the two sides did not go quiet")


def part(data: bytes, *, text: bool | None = True, state: str | None = "COMPLETE") -> bytes:
    return encode_message(
        payload_part_headers(text=text, completion=state, nonempty=bool(data)), data
    )


def drain(client: SageMakerCore) -> list[Message]:
    out = []
    while (message := client.next_message()) is not None:
        out.append(message)
    return out


def established(**overrides: Any) -> tuple[SageMakerCore, Peer]:
    client, peer = core(**overrides), Peer()
    exchange(client, peer)
    peer.respond()
    exchange(client, peer)
    assert client.ready
    return client, peer


def frames_of(wire: bytes) -> list[hyperframe.frame.Frame]:
    """The HTTP/2 frames of a client byte stream (after the preface)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert wire.startswith(preface)
    view, frames = memoryview(wire)[len(preface) :], []
    while view:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


# -- the request, byte-exact against the capture -----------------------------------------------


def test_request_headers_and_signature_match_the_capture() -> None:
    headers, signed = build_request(**CAPTURE_KWARGS)
    assert signed.canonical_request == CANONICAL_REQUEST
    assert hashlib.sha256(CANONICAL_REQUEST.encode()).hexdigest() == STRING_TO_SIGN_HASH
    assert signed.string_to_sign.endswith(STRING_TO_SIGN_HASH)
    assert signed.signature == SEED
    decoded = [(n.decode(), v.decode()) for n, v in headers]
    assert [n for n, _ in decoded] == [n for n, _ in CAPTURED_HEADERS]
    for (name, value), (_, expected) in zip(decoded, CAPTURED_HEADERS, strict=True):
        if expected is not None:
            assert value == expected, name


def test_connection_opens_like_the_sdk() -> None:
    client = core()
    wire = client.data_to_send()
    frames = frames_of(wire)
    kinds = [type(f).__name__ for f in frames]
    assert kinds == ["SettingsFrame", "WindowUpdateFrame", "HeadersFrame"]
    assert isinstance(frames[1], hyperframe.frame.WindowUpdateFrame)
    assert frames[1].stream_id == 0
    assert frames[1].window_increment == 2147418112
    assert "END_STREAM" not in frames[2].flags
    assert "END_HEADERS" in frames[2].flags
    # The server sees exactly the captured headers, and the request verifies.
    peer = Peer()
    peer.feed(wire)
    assert peer.headers is not None
    assert not peer.ended
    got = [(n.decode(), v.decode()) for n, v in peer.headers]
    assert [n for n, _ in got] == [n for n, _ in CAPTURED_HEADERS]
    verified = verify_request(
        method="POST",
        path=dict(got)[":path"],
        headers=got,
        credentials={KEY: SECRET},
        region=REGION,
        service="sagemaker",
        now=NOW,
    )
    assert verified.signature == SEED


def test_first_data_frame_is_the_262_byte_capture() -> None:
    client = core()
    client.data_to_send()
    client.send(FIRST_EVENT, date_ms=DATES[0])
    frames = frames_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + client.data_to_send())
    assert len(frames) == 1
    assert isinstance(frames[0], hyperframe.frame.DataFrame)
    assert frames[0].stream_id == 1
    assert "END_STREAM" not in frames[0].flags
    assert bytes(frames[0].data) == bytes.fromhex(FRAME1_HEX)
    assert client.events_signed == 1


def test_the_captured_chain_and_close() -> None:
    """All four captured envelopes (§4.4): events 2 and 3 carry headers our send() never
    chooses (padding, no DataType), so they go through send_event."""
    client = core()
    peer = Peer()
    peer.feed(client.data_to_send())
    client.send(FIRST_EVENT, date_ms=DATES[0])
    client.send_event(
        [
            (":message-type", "event"),
            (":event-type", "PayloadPart"),
            ("DataType", "BINARY"),
            ("CompletionState", "PARTIAL"),
            ("P", "pad"),
            (":content-type", "application/octet-stream"),
        ],
        bytes(range(8)),
        date_ms=DATES[1],
    )
    client.send_event(
        [
            (":message-type", "event"),
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
        ],
        b"third chunk, no DataType/CompletionState headers",
        date_ms=DATES[2],
    )
    client.end_input(date_ms=DATES[3])
    peer.feed(client.data_to_send())
    assert [len(f) for f in peer.data_frames] == [262, 248, 236, 83, 0]
    assert peer.data_frames[0] == bytes.fromhex(FRAME1_HEX)
    assert peer.data_frames[3] == bytes.fromhex(FINAL_HEX)
    assert peer.ended
    verifier = EventVerifier(
        secret_access_key=SECRET, region=REGION, service="sagemaker", seed_signature=SEED
    )
    inner = verifier.feed(bytes(peer.body))
    assert len(inner) == 3
    assert verifier.finish() is True
    assert verifier.prior_signature == SIGS[3]
    with pytest.raises(SessionStateError, match="input already ended"):
        client.send("late")
    client.end_input()  # idempotent


def test_session_token_is_sent_and_signed() -> None:
    headers, signed = build_request(
        **{**CAPTURE_KWARGS, "credentials": Credentials(KEY, SECRET, "TOKEN/+=")}
    )
    names = [n for n, _ in headers]
    assert (b"x-amz-security-token", b"TOKEN/+=") in headers
    assert names.index(b"x-amz-security-token") < names.index(b"authorization")
    assert "x-amz-security-token" in signed.signed_headers
    got = [(n.decode(), v.decode()) for n, v in headers]
    verified = verify_request(
        method="POST",
        path=dict(got)[":path"],
        headers=got,
        credentials={KEY: SECRET},
        region=REGION,
        service="sagemaker",
        now=NOW,
    )
    assert verified.session_token == "TOKEN/+="


def test_only_set_headers_are_sent_and_names_are_encoded() -> None:
    headers, signed = build_request(
        authority="runtime.sagemaker.us-west-2.amazonaws.com:8443",
        endpoint_name="my endpoint/ü",
        credentials=CREDS,
        region=REGION,
        amz_date=AMZ_DATE,
    )
    got = dict((n.decode(), v.decode()) for n, v in headers)
    assert got[":path"] == "/endpoints/my%20endpoint%2F%C3%BC/invocations-bidirectional-stream?"
    assert not any(n.startswith("x-amzn-sagemaker") for n in got)
    assert signed.signed_headers == "content-type;host;x-amz-content-sha256;x-amz-date"
    # The signer double-encodes the path (non-S3 SigV4), as the SDK's signer does.
    assert signed.canonical_request.splitlines()[1] == (
        "/endpoints/my%2520endpoint%252F%25C3%25BC/invocations-bidirectional-stream"
    )
    verify_request(
        method="POST",
        path=got[":path"],
        headers=list(got.items()),
        credentials={KEY: SECRET},
        region=REGION,
        service="sagemaker",
        now=NOW,
    )
    with pytest.raises(ValueError, match="empty"):
        build_request(**{**CAPTURE_KWARGS, "endpoint_name": ""})


def test_endpoint_urls() -> None:
    assert split_endpoint_url("https://localhost:8443") == ("localhost", 8443, "localhost:8443")
    assert split_endpoint_url("https://example.com/") == ("example.com", 443, "example.com")
    assert split_endpoint_url("https://[::1]:9000") == ("::1", 9000, "[::1]:9000")
    assert default_endpoint_url("eu-west-1") == (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com:8443"
    )
    env = {"AWS_ENDPOINT_URL": "https://generic:1"}
    assert resolve_endpoint_url("https://given:2", "r", env) == "https://given:2"
    assert resolve_endpoint_url(None, "r", env) == "https://generic:1"
    env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME_HTTP2"] = "https://specific:3"
    assert resolve_endpoint_url(None, "r", env) == "https://specific:3"
    assert resolve_endpoint_url(None, "ap-east-1", {}) == default_endpoint_url("ap-east-1")
    for bad, message in [
        ("http://localhost:8443", "HTTP/2 over TLS"),
        ("https://", "no host"),
        ("https://h/path", "no path"),
        ("https://h?x=1", "no path"),
        ("https://h:99999", "bad port"),
    ]:
        with pytest.raises(ValueError, match=message):
            split_endpoint_url(bad)


@pytest.mark.parametrize(
    ("data", "final", "expected"),
    [
        ("hi", None, [("DataType", "UTF8"), ("CompletionState", "COMPLETE")]),
        (b"\x00", None, [("DataType", "BINARY"), ("CompletionState", "COMPLETE")]),
        ("p", False, [("DataType", "UTF8"), ("CompletionState", "PARTIAL")]),
        (b"q", True, [("DataType", "BINARY"), ("CompletionState", "COMPLETE")]),
        (b"", True, [("DataType", "BINARY"), ("CompletionState", "COMPLETE")]),
    ],
)
def test_payload_part_headers_in_sdk_order(
    data: str | bytes, final: bool | None, expected: list[tuple[str, str]]
) -> None:
    client = core()
    peer = Peer()
    peer.feed(client.data_to_send())
    if final is None:
        client.send(data)
    else:
        client.send_fragment(data, final)
    peer.feed(client.data_to_send())
    verifier = EventVerifier(
        secret_access_key=SECRET, region=REGION, service="sagemaker", seed_signature=SEED
    )
    (inner,) = verifier.feed(bytes(peer.body))
    message = decode_message(inner)
    names = [(n, v) for n, _, v in message.header_items()]
    tail = [(":content-type", "application/octet-stream")] if data else []
    assert names == [(":message-type", "event"), (":event-type", "PayloadPart"), *expected, *tail]
    assert message.payload == (data.encode() if isinstance(data, str) else data)


# -- flow control on send ----------------------------------------------------------------------


def test_send_waits_for_flow_control_credit() -> None:
    client = core()
    peer = Peer(initial_window=1000)
    peer.auto_ack = False
    exchange(client, peer)  # the client learns the 1000-byte window
    payload = bytes(random.Random(1).randbytes(5000))
    client.send(payload)
    client.end_input()
    peer.feed(client.data_to_send())
    assert client.send_blocked
    assert client.pending_send_bytes > 0
    assert len(peer.body) == 1000
    assert not peer.ended
    assert not client.request_ended
    with pytest.raises(SessionStateError):
        client.send(b"more")  # input already ended
    # Credit arrives in steps; the rest (and only then END_STREAM) follows.
    while not peer.ended:
        peer.conn.increment_flow_control_window(700, stream_id=1)
        peer.conn.increment_flow_control_window(700)
        client.receive_data(peer.out(), 1.0)
        peer.feed(client.data_to_send())
    assert not client.send_blocked
    assert client.pending_send_bytes == 0
    assert client.request_ended
    verifier = EventVerifier(
        secret_access_key=SECRET, region=REGION, service="sagemaker", seed_signature=SEED
    )
    (inner,) = verifier.feed(bytes(peer.body))
    assert decode_message(inner).payload == payload
    assert verifier.finish() is True


def test_large_event_spans_data_frames_within_max_frame_size() -> None:
    client = core()
    peer = Peer()
    exchange(client, peer)
    payload = bytes(200_000)
    client.send(payload)
    while client.send_blocked or not peer.body:
        exchange(client, peer)
    exchange(client, peer)
    assert all(len(f) <= 16384 for f in peer.data_frames)
    assert len(peer.data_frames) > 10
    verifier = EventVerifier(
        secret_access_key=SECRET, region=REGION, service="sagemaker", seed_signature=SEED
    )
    (inner,) = verifier.feed(bytes(peer.body))
    assert decode_message(inner).payload == payload


# -- responses ---------------------------------------------------------------------------------


def test_response_headers_and_messages() -> None:
    client, peer = established()
    assert client.status == 200
    assert client.invoked_production_variant == "AllTraffic"
    assert client.request_id == "11111111-2222-3333-4444-555555555555"
    peer.send(part(b'echo: {"type":"hello"}') + part(b"\x00\x01", text=False))
    client.receive_data(peer.out(), 42.5)
    assert drain(client) == [
        Message('echo: {"type":"hello"}', True, True, 42.5),
        Message(b"\x00\x01", False, True, 42.5),
    ]
    assert not client.receive_closed
    peer.send(b"", end=True)
    client.receive_data(peer.out(), 43.0)
    assert client.receive_closed
    assert client.next_message() is None
    assert client.error is None


def test_messages_without_data_type_are_binary() -> None:
    client, peer = established()
    peer.send(part(b"raw", text=None, state=None))
    client.receive_data(peer.out(), 1.0)
    assert drain(client) == [Message(b"raw", False, True, 1.0)]


def test_fragments_reassemble_by_default() -> None:
    client, peer = established()
    text = "héllo wörld"
    raw = text.encode()
    # Split inside the two-byte 'é' on purpose.
    peer.send(part(raw[:2], state="PARTIAL") + part(raw[2:7], state="PARTIAL"))
    client.receive_data(peer.out(), 1.0)
    assert client.next_message() is None
    peer.send(part(raw[7:], state="COMPLETE"))
    client.receive_data(peer.out(), 2.0)
    assert drain(client) == [Message(text, True, True, 2.0)]


def test_fragments_reported_as_parts_when_asked() -> None:
    client, peer = established(fragments=True)
    peer.send(part(b"ab", state="PARTIAL") + part(b"cd", state="COMPLETE") + part(b"ef"))
    client.receive_data(peer.out(), 1.0)
    assert drain(client) == [
        Message(b"ab", True, False, 1.0),
        Message(b"cd", True, True, 1.0),
        Message(b"ef", True, True, 1.0),
    ]


def test_unknown_events_are_skipped() -> None:
    client, peer = established()
    peer.send(
        encode_message([(":message-type", "event"), (":event-type", "Future")], b"x")
        + encode_message([(":message-type", "telemetry")], b"y")
        + part(b"kept")
    )
    client.receive_data(peer.out(), 1.0)
    assert drain(client) == [Message("kept", True, True, 1.0)]
    assert client.unknown_events == 2


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(
        st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=12
    ),
    seed=st.integers(0, 2**32),
)
def test_any_messages_any_split(messages: list[str | bytes], seed: int) -> None:
    """Server messages, each cut into random parts, arriving in random chunk sizes."""
    rng = random.Random(seed)
    client, peer = established()
    stream = bytearray()
    for message in messages:
        raw = message.encode() if isinstance(message, str) else message
        cuts = sorted(rng.sample(range(1, len(raw)), min(rng.randint(0, 3), max(len(raw) - 1, 0))))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            stream += part(
                piece,
                text=isinstance(message, str),
                state=None if last and rng.random() < 0.3 else ("COMPLETE" if last else "PARTIAL"),
            )
    for i in range(0, len(stream), 1000):
        peer.send(bytes(stream[i : i + 1000]))
    peer.send(b"", end=True)
    wire = peer.out()
    at = 0
    while at < len(wire):
        step = rng.randint(1, 700)
        client.receive_data(wire[at : at + step], float(at))
        at += step
        exchange(client, peer)
    assert [m.data for m in drain(client)] == messages
    assert client.receive_closed
    assert client.error is None


def test_received_window_is_returned_as_messages_are_taken() -> None:
    client, peer = established(max_queued=2)
    start = peer.conn.local_flow_control_window(1)
    assert start == 1024 * 1024  # our advertised stream window
    for _ in range(5):
        peer.send(part(bytes(150_000), text=False))
    exchange(client, peer)
    # Five messages queued (> max_queued): no credit went back.
    assert client.queued == 5
    consumed = start - peer.conn.local_flow_control_window(1)
    assert consumed > 5 * 150_000
    taken = drain(client)
    assert len(taken) == 5
    assert client.wants_flush
    exchange(client, peer)
    assert peer.conn.local_flow_control_window(1) == start


# -- in-stream errors ---------------------------------------------------------------------------


def test_model_stream_error_is_raised_after_earlier_messages() -> None:
    client, peer = established()
    error_event = encode_message(MODEL_STREAM_ERROR_HEADERS, MODEL_STREAM_ERROR_PAYLOAD)
    assert len(error_event) == 206  # §9
    peer.send(part(b"before") + error_event, end=True)
    client.receive_data(peer.out(), 1.0)
    assert client.next_message() == Message("before", True, True, 1.0)
    with pytest.raises(ModelStreamError) as info:
        client.next_message()
    assert info.value.message == "Model container closed the WebSocket (code 1011)"
    assert info.value.error_code == "ModelStreamError"
    assert info.value.fault == "client"
    with pytest.raises(ModelStreamError):  # stays raised
        client.next_message()
    with pytest.raises(ModelStreamError):
        client.send("after")
    assert client.receive_closed


def test_internal_stream_failure_capture() -> None:
    client, peer = established()
    peer.send(bytes.fromhex(INTERNAL_FAILURE_HEX), end=True)
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(InternalStreamFailure) as info:
        client.next_message()
    assert (info.value.message, info.value.error_code, info.value.fault) == (
        "internal failure",
        None,
        "server",
    )


def test_unmodeled_error_event_capture() -> None:
    client, peer = established()
    peer.send(bytes.fromhex(UNMODELED_ERROR_HEX), end=True)
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(UnmodeledEventError, match="ThrottlingException - slow down"):
        client.next_message()


def test_unknown_exception_type_and_garbage_payload() -> None:
    client, peer = established()
    peer.send(
        encode_message(
            [(":message-type", "exception"), (":exception-type", "NewError")], b"\xff not json"
        )
    )
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(StreamEventError) as info:
        client.next_message()
    assert type(info.value) is StreamEventError
    assert info.value.exception_type == "NewError"
    assert info.value.message == ""


# -- HTTP errors (§5) ---------------------------------------------------------------------------

ERRORTYPE = b":http://internal.amazon.com/coral/com.amazonaws.sagemaker/"


@pytest.mark.parametrize(
    ("status", "errortype", "body", "cls", "message", "code"),
    [
        (
            400,
            b"InputValidationError" + ERRORTYPE,
            {
                "Message": "Endpoint my-endpoint of account 123 not found.",
                "ErrorCode": "Client.ValidationError",
            },
            InputValidationError,
            "Endpoint my-endpoint of account 123 not found.",
            "Client.ValidationError",
        ),
        (
            400,
            b"InputValidationError" + ERRORTYPE,
            {"message": "lowercase message key", "errorCode": "x"},
            InputValidationError,
            "",
            None,
        ),
        (
            400,
            None,
            {"__type": "InputValidationError", "Message": "typed via __type only"},
            InputValidationError,
            "typed via __type only",
            None,
        ),
        (
            500,
            None,
            {"__type": "com.amazonaws.sagemaker#InternalServerError", "Message": "boom"},
            InternalServerError,
            "boom",
            None,
        ),
        (
            503,
            b"ServiceUnavailableError" + ERRORTYPE,
            {"Message": "unavailable", "ErrorCode": "x"},
            ServiceUnavailableError,
            "unavailable",
            "x",
        ),
        (403, b"AccessDeniedException", {"Message": "no"}, ServiceError, "no", None),
        (418, None, "not json at all", ServiceError, "", None),
    ],
)
def test_http_errors(
    status: int,
    errortype: bytes | None,
    body: Any,
    cls: type[ServiceError],
    message: str,
    code: str | None,
) -> None:
    client = core()
    peer = Peer()
    exchange(client, peer)
    raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    headers = [(b"content-type", b"application/json"), (b"x-amzn-requestid", b"rid")]
    if errortype is not None:
        headers.append((b"x-amzn-errortype", errortype))
    peer.respond(status, headers)
    client.send("sent before the answer")  # as with the SDK, sends before the answer buffer
    exchange(client, peer)
    assert client.status == status
    assert not client.ready
    assert not client.receive_closed
    peer.send(raw, end=True)
    exchange(client, peer)
    with pytest.raises(cls) as info:
        client.next_message()
    error = info.value
    assert type(error) is cls
    assert (error.status, error.message, error.error_code) == (status, message, code)
    assert error.body == raw
    assert error.request_id == "rid"
    assert str(status) in str(error)
    with pytest.raises(cls):
        client.send("after the error")


def test_model_error_fields() -> None:
    client = core()
    peer = Peer()
    exchange(client, peer)
    body = {
        "Message": "Received server error (500) from primary",
        "OriginalStatusCode": 500,
        "OriginalMessage": "boom",
        "LogStreamArn": "arn:aws:logs:us-west-2:1:log-group:/aws/sagemaker/Endpoints/x",
        "ErrorCode": "ModelError",
    }
    peer.respond(424, [(b"x-amzn-errortype", b"ModelError" + ERRORTYPE)])
    peer.send(json.dumps(body).encode(), end=True)
    exchange(client, peer)
    with pytest.raises(ModelError) as info:
        client.next_message()
    error = info.value
    assert error.original_status_code == 500
    assert error.original_message == "boom"
    assert error.log_stream_arn == body["LogStreamArn"]
    assert error.error_code == "ModelError"


def test_error_body_is_bounded() -> None:
    client = core()
    peer = Peer()
    exchange(client, peer)
    peer.respond(400, [(b"x-amzn-errortype", b"InputValidationError")])
    for _ in range(10):
        peer.send(b"x" * 16000)
        exchange(client, peer)
    peer.send(b"", end=True)
    exchange(client, peer)
    with pytest.raises(InputValidationError) as info:
        client.next_message()
    assert len(info.value.body) == 64 * 1024


# -- broken streams ------------------------------------------------------------------------------


def test_stream_ending_inside_a_message_is_truncation() -> None:
    client, peer = established()
    whole = part(b"complete") + part(b"cut short")
    peer.send(whole[:-5], end=True)
    client.receive_data(peer.out(), 1.0)
    assert client.next_message() == Message("complete", True, True, 1.0)
    with pytest.raises(ProtocolError, match="ended inside a message"):
        client.next_message()
    # The client tells the server the connection is done (GOAWAY PROTOCOL_ERROR).
    frames = frames_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + client.data_to_send())
    assert any(
        isinstance(f, hyperframe.frame.GoAwayFrame)
        and f.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        for f in frames
    )


def test_stream_ending_inside_a_fragmented_message() -> None:
    client, peer = established()
    peer.send(part(b"a", state="PARTIAL"), end=True)
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(ProtocolError, match="no COMPLETE"):
        client.next_message()


@pytest.mark.parametrize("cut", [1, 11, 40])
def test_connection_closing_mid_message(cut: int) -> None:
    client, peer = established()
    peer.send(part(b"0123456789" * 10)[:cut])
    client.receive_data(peer.out(), 1.0)
    client.receive_data(b"", 2.0)
    with pytest.raises(ProtocolError, match="inside an event-stream message"):
        client.next_message()


def test_connection_closing_between_messages_and_before_the_response() -> None:
    client, peer = established()
    peer.send(part(b"one"))
    client.receive_data(peer.out(), 1.0)
    client.receive_data(b"", 2.0)
    assert client.next_message() == Message("one", True, True, 1.0)
    with pytest.raises(ConnectionClosedError, match="before the response ended"):
        client.next_message()
    fresh = core()
    fresh.data_to_send()
    fresh.receive_data(b"", 1.0)
    with pytest.raises(ConnectionClosedError, match="before responding"):
        fresh.next_message()


def test_close_after_a_clean_end_is_not_an_error_for_receivers() -> None:
    client, peer = established()
    peer.send(part(b"done"), end=True)
    client.receive_data(peer.out(), 1.0)
    client.receive_data(b"", 2.0)
    assert drain(client) == [Message("done", True, True, 1.0)]
    assert client.receive_closed
    assert client.error is None
    with pytest.raises(ConnectionClosedError):
        client.send("to a closed connection")


@pytest.mark.parametrize("corrupt", ["prelude_crc", "message_crc", "length"])
def test_corrupt_event_stream(corrupt: str) -> None:
    client, peer = established()
    bad = bytearray(part(b"payload"))
    if corrupt == "prelude_crc":
        bad[9] ^= 1
    elif corrupt == "message_crc":
        bad[-1] ^= 1
    else:
        bad[0:4] = (10).to_bytes(4, "big")
    peer.send(part(b"good") + bytes(bad))
    client.receive_data(peer.out(), 1.0)
    assert client.next_message() == Message("good", True, True, 1.0)
    with pytest.raises(ProtocolError, match="corrupt event stream"):
        client.next_message()


def test_oversized_fragmented_message() -> None:
    client, peer = established(max_message_size=1000)
    peer.send(part(b"x" * 600, state="PARTIAL") + part(b"y" * 600, state="COMPLETE"))
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(ProtocolError, match="max_message_size"):
        client.next_message()


@pytest.mark.parametrize("fragmented", [False, True])
def test_text_part_that_is_not_utf8(fragmented: bool) -> None:
    client, peer = established()
    if fragmented:
        peer.send(part(b"\xc3", state="PARTIAL") + part(b"\x28", state="COMPLETE"))
    else:
        peer.send(part(b"\xff\xfe"))
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(ProtocolError, match="not UTF-8"):
        client.next_message()


def test_rst_stream_mid_stream() -> None:
    client, peer = established()
    peer.send(part(b"first"))
    peer.conn.reset_stream(1, h2.errors.ErrorCodes.INTERNAL_ERROR)
    client.receive_data(peer.out(), 1.0)
    assert client.next_message() == Message("first", True, True, 1.0)
    with pytest.raises(StreamResetError, match="INTERNAL_ERROR") as info:
        client.next_message()
    assert info.value.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    with pytest.raises(StreamResetError):
        client.send("after the reset")
    client.end_input()  # does nothing, does not raise
    assert not client.send_blocked


def test_rst_stream_after_end_stream() -> None:
    """§8 'serverreset': END_STREAM then RST_STREAM(NO_ERROR). Receivers see a clean end;
    sends fail at once instead of hanging as the SDK does."""
    client, peer = established()
    peer.send(part(b"bye"), end=True)
    peer.conn.reset_stream(1, h2.errors.ErrorCodes.NO_ERROR)
    client.receive_data(peer.out(), 1.0)
    assert drain(client) == [Message("bye", True, True, 1.0)]
    assert client.receive_closed
    assert client.error is None
    with pytest.raises(StreamResetError):
        client.send("queued event")


def test_goaway_mid_stream() -> None:
    client, peer = established()
    peer.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=1)
    client.receive_data(peer.out(), 1.0)
    with pytest.raises(StreamResetError, match="GOAWAY"):
        client.next_message()


def test_http2_garbage_from_the_server() -> None:
    client = core()
    client.data_to_send()
    client.receive_data(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00abcde", 1.0)  # SETTINGS of 5 bytes
    with pytest.raises(ProtocolError, match="HTTP/2 protocol error"):
        client.next_message()
    # DATA on stream 0, after a valid response start.
    client, _peer = established()
    client.receive_data(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", 1.0)
    with pytest.raises(ProtocolError, match="Stream ID must be non-zero"):
        client.next_message()


def test_core_argument_checks() -> None:
    with pytest.raises(ValueError, match="receive_window"):
        core(receive_window=10)


# -- credentials and region -----------------------------------------------------------------------


def test_credentials_precedence(tmp_path: Path) -> None:
    creds_file = tmp_path / "credentials"
    creds_file.write_text(
        "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = file%secret\n"
        "[other]\naws_access_key_id = OTHERKEY\naws_secret_access_key = s2\n"
        "aws_session_token = tok\n"
    )
    config_file = tmp_path / "config"
    config_file.write_text(
        "[default]\nregion = eu-central-1\n"
        "[profile cfg]\naws_access_key_id = CFGKEY\naws_secret_access_key = s3\n"
        "region = ap-south-1\n"
    )
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(creds_file),
        "AWS_CONFIG_FILE": str(config_file),
        "HOME": str(tmp_path),
    }
    explicit = resolve_credentials(("K", "S"), environ=env)
    assert (explicit.access_key_id, explicit.secret_access_key) == ("K", "S")
    assert resolve_credentials(CREDS, environ=env) is CREDS
    from_env = resolve_credentials(
        environ={
            **env,
            "AWS_ACCESS_KEY_ID": "EK",
            "AWS_SECRET_ACCESS_KEY": "ES",
            "AWS_SESSION_TOKEN": "ET",
        }
    )
    assert (from_env.access_key_id, from_env.session_token, from_env.source) == (
        "EK",
        "ET",
        "environment",
    )
    default = resolve_credentials(environ=env)
    assert (default.access_key_id, default.secret_access_key) == ("FILEKEY", "file%secret")
    assert default.source == str(creds_file)
    other = resolve_credentials(environ={**env, "AWS_PROFILE": "other"})
    assert (other.access_key_id, other.session_token) == ("OTHERKEY", "tok")
    assert resolve_credentials(profile="other", environ=env).access_key_id == "OTHERKEY"
    cfg = resolve_credentials(profile="cfg", environ=env)
    assert (cfg.access_key_id, cfg.source) == ("CFGKEY", str(config_file))
    with pytest.raises(NoCredentialsError, match=r"\[missing\].*\[profile missing\]"):
        resolve_credentials(profile="missing", environ=env)
    # Region: argument, environment, then the profile's config section.
    assert resolve_region("us-east-2", environ=env) == "us-east-2"
    assert resolve_region(environ={**env, "AWS_DEFAULT_REGION": "x-1"}) == "x-1"
    assert (
        resolve_region(environ={**env, "AWS_REGION": "y-1", "AWS_DEFAULT_REGION": "x-1"}) == "y-1"
    )
    assert resolve_region(environ=env) == "eu-central-1"
    assert resolve_region(profile="cfg", environ=env) == "ap-south-1"
    with pytest.raises(NoRegionError, match="AWS_REGION"):
        resolve_region(profile="other", environ=env)


def test_credentials_without_files_and_with_bad_files(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(NoCredentialsError, match="no AWS credentials found"):
        resolve_credentials(environ=env)
    with pytest.raises(NoRegionError):
        resolve_region(environ=env)
    (tmp_path / "bad").write_text("no section header\nkey = value\n")
    with pytest.raises(NoCredentialsError, match="cannot read"):
        resolve_credentials(environ={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "bad")})
    half = tmp_path / "half"
    half.write_text("[default]\naws_access_key_id = ONLYKEY\n")
    with pytest.raises(NoCredentialsError):
        resolve_credentials(
            environ={"AWS_SHARED_CREDENTIALS_FILE": str(half), "HOME": str(tmp_path)}
        )
    with pytest.raises(TypeError):
        resolve_credentials(["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        Credentials("", "secret")


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials(KEY, SECRET, "SESSIONTOKEN"))
    assert KEY in text
    assert SECRET not in text
    assert "SESSIONTOKEN" not in text


def test_errors_are_client_errors() -> None:
    for cls in (ServiceError, StreamEventError, UnmodeledEventError, ProtocolError):
        assert issubclass(cls, ClientError)
    assert issubclass(ConnectionClosedError, ConnectionError)


# -- end to end: the drivers against the gateway ------------------------------------------------


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-certs")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificatePaths:
    """A second local CA: the gateway's certificate is untrusted under it."""
    return ensure_certificates(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture(params=["blocking", "trio"])
async def open_sm(request: pytest.FixtureRequest) -> AsyncIterator[Open]:
    """``await open_sm(url, name, **kwargs)`` with the driver under test (dummy credentials and
    region unless given); sessions are closed at the end."""
    clients: list[Client] = []

    async def opener(url: str | None, name: str = "my-endpoint", **kwargs: Any) -> Client:
        kwargs.setdefault("region", REGION)
        kwargs.setdefault("credentials", (KEY, SECRET))
        if request.param == "blocking":
            session: Session | TrioSession = await trio.to_thread.run_sync(
                lambda: connect_sagemaker(url, name, connect_timeout=10, timeout=10, **kwargs)
            )
        else:
            with trio.fail_after(10):
                session = await open_sagemaker(url, name, **kwargs)
        client = Client(session)
        clients.append(client)
        return client

    opener.driver = request.param  # type: ignore[attr-defined]
    yield opener
    for client in clients:
        await client.close()


Open = Callable[..., Awaitable[Client]]


@dataclass
class Stack:
    model: ScriptedModel
    container_port: int
    gateway: GatewayServer

    @property
    def url(self) -> str:
        return f"https://localhost:{self.gateway.port}"

    @property
    def ca(self) -> str:
        return self.gateway.ca_file


async def stack(nursery: trio.Nursery, cert_dir: Path, **overrides: Any) -> Stack:
    model = ScriptedModel()
    container = await start_server(nursery, model)
    assert container.port is not None
    gateway = await start_gateway(nursery, cert_dir, container.port, **overrides)
    return Stack(model, container.port, gateway)


async def test_gateway_echo(nursery: trio.Nursery, cert_dir: Path, open_sm: Open) -> None:
    s = await stack(nursery, cert_dir)
    client = await open_sm(s.url, ca_file=s.ca)
    assert client.core.status == 200
    assert client.core.invoked_production_variant == "AllTraffic"
    assert client.core.request_id
    big = random.Random(7).randbytes(1_500_000)
    messages: list[str | bytes] = ["hello", "ünïcødé ✓", b"\x00\x01", b"", big, "x" * 200_000]
    for message in messages:
        before = time.perf_counter()
        await client.send(message)
        reply = await client.receive()
        assert reply is not None
        assert reply.data == message
        assert reply.text is isinstance(message, str)
        assert before <= reply.received_at <= time.perf_counter()
    await client.send_fragment("PART-", False)
    await client.send_fragment("COMPLETE", True)
    reply = await client.receive()
    assert reply is not None
    assert reply.data == "PART-COMPLETE"
    await client.send("fragments:one :two :three")
    reply = await client.receive()
    assert reply is not None
    assert (reply.data, reply.final) == ("one two three", True)
    await client.end_input()
    assert await client.receive() is None
    assert s.model.received == [
        "hello",
        "ünïcødé ✓",
        b"\x00\x01",
        b"",
        big,
        "x" * 200_000,
        "PART-COMPLETE",
        "fragments:one :two :three",
    ]


async def test_gateway_parts_and_forwarded_headers(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open
) -> None:
    s = await stack(nursery, cert_dir)
    client = await open_sm(
        s.url,
        ca_file=s.ca,
        fragments=True,
        model_invocation_path="v1/listen",
        model_query_string="model=nova-3&language=en",
        target_variant="AllTraffic",
        credentials=(KEY, SECRET, "SESSION-TOKEN"),
    )
    await client.send("whoami")
    reply = await client.receive()
    assert reply is not None
    assert json.loads(reply.data) == {"path": "/v1/listen", "query": "model=nova-3&language=en"}
    await client.send("fragments:a:b")
    parts = [await client.receive(), await client.receive()]
    assert [(p.data, p.text, p.final) for p in parts if p is not None] == [
        (b"a", True, False),
        (b"b", True, True),
    ]


async def test_gateway_server_speaks_first(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open
) -> None:
    s = await stack(nursery, cert_dir)
    client = await open_sm(s.url, ca_file=s.ca, model_invocation_path="v1/greet")
    greeting = await client.receive()
    assert greeting is not None
    assert greeting.data == '{"type":"session.created"}'


async def test_gateway_model_close_is_a_model_stream_error(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open
) -> None:
    s = await stack(nursery, cert_dir)
    client = await open_sm(s.url, ca_file=s.ca)
    await client.send("before")
    await client.send("close:1011:model crashed")
    reply = await client.receive()
    assert reply is not None
    assert reply.data == "before"
    with pytest.raises(ModelStreamError, match="model crashed") as info:
        await client.receive()
    assert info.value.error_code == "1011"
    with pytest.raises(ModelStreamError):
        await client.receive()


@pytest.mark.parametrize(("n", "size"), [(200, 3000), (30, 600_000)])
async def test_gateway_concurrent_sender_and_receiver(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open, n: int, size: int
) -> None:
    """A sending and a receiving task on one session; large messages fill the flow-control
    windows and TCP buffers both ways at once."""
    s = await stack(nursery, cert_dir)
    client = await open_sm(s.url, ca_file=s.ca)
    expected = [f"m{i}" * (size // 4) if i % 2 else bytes([i % 256]) * size for i in range(n)]
    received: list[str | bytes] = []

    async def receiver() -> None:
        for _ in range(n):
            message = await client.receive()
            assert message is not None
            received.append(message.data)

    async with trio.open_nursery() as inner:
        inner.start_soon(receiver)
        for message in expected:
            await client.send(message)
    assert received == expected


@pytest.mark.parametrize("await_response", [True, False])
async def test_gateway_http_errors(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open, await_response: bool
) -> None:
    s = await stack(
        nursery,
        cert_dir,
        default_upstream=None,
        endpoints={"known": parse_upstream("ws://127.0.0.1:1")},  # nothing listens there
    )

    async def call(name: str, **kwargs: Any) -> None:
        client = await open_sm(s.url, name, ca_file=s.ca, await_response=await_response, **kwargs)
        await client.send("hello")
        await client.receive()

    with pytest.raises(InputValidationError, match="not found") as info:
        await call("my-endpoint")
    assert info.value.error_code == "Client.ValidationError"
    assert info.value.request_id
    with pytest.raises(ServiceError) as info2:
        await call("known", credentials=(KEY, "wrong secret"))
    assert (info2.value.status, info2.value.error_type) == (403, "InvalidSignatureException")
    assert "signature" in info2.value.message
    with pytest.raises(ServiceError) as info3:
        await call("known", credentials=("AKIDUNKNOWN", SECRET))
    assert info3.value.error_type == "UnrecognizedClientException"
    # The container refuses the upgrade: 424 ModelError, with the container's status.
    with pytest.raises(ModelError, match="Failed to establish WebSocket connection") as info4:
        await call("known")
    assert info4.value.status == 424
    assert info4.value.log_stream_arn is not None


async def test_gateway_rejected_upgrade(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open
) -> None:
    s = await stack(nursery, cert_dir)
    with pytest.raises(ModelError) as info:
        await open_sm(s.url, ca_file=s.ca, model_query_string="reject=1")
    assert info.value.original_status_code == 400
    assert s.model.upgrade_attempts == 1


async def test_gateway_certificate_trust(
    nursery: trio.Nursery,
    cert_dir: Path,
    other_ca: CertificatePaths,
    open_sm: Open,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An untrusted certificate fails at once with a clear error (no hang); SSL_CERT_FILE is
    honoured when no ca_file is given."""
    s = await stack(nursery, cert_dir)
    with pytest.raises(TLSError, match=r"not trusted.*ca_file"):
        await open_sm(s.url, ca_file=str(other_ca.ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca))
    with pytest.raises(TLSError, match="not trusted"):
        await open_sm(s.url)
    monkeypatch.setenv("SSL_CERT_FILE", s.ca)
    client = await open_sm(s.url)
    await client.send("trusted via SSL_CERT_FILE")
    reply = await client.receive()
    assert reply is not None
    assert reply.data == "trusted via SSL_CERT_FILE"


async def test_gateway_endpoint_credentials_and_region_from_the_environment(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await stack(nursery, cert_dir)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-env")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME_HTTP2", s.url)
    client = await open_sm(None, ca_file=s.ca, credentials=None, region=None)
    await client.send("signed from the environment")
    reply = await client.receive()
    assert reply is not None
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the gateway verifies us-west-2
    with pytest.raises(ServiceError) as info:
        await open_sm(s.url, ca_file=s.ca, credentials=None, region=None)
    assert info.value.status == 403


async def test_connection_refused_and_bad_urls(open_sm: Open) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ConnectError, match="cannot connect"):
            await open_sm(f"https://127.0.0.1:{port}")
    with pytest.raises(ValueError, match="HTTP/2 over TLS"):
        await open_sm("http://127.0.0.1:1")


# -- faults the gateway never makes: a scripted TLS HTTP/2 peer ----------------------------------


class PeerConn:
    """The server side of one TLS connection, driven by a test script."""

    def __init__(self, stream: trio.abc.Stream, peer: Peer) -> None:
        self.stream = stream
        self.peer = peer

    async def flush(self) -> None:
        out = self.peer.out()
        if out:
            await self.stream.send_all(out)

    async def read_until(self, done: Callable[[Peer], bool]) -> None:
        while not done(self.peer):
            data = await self.stream.receive_some(65536)
            if not data:
                return
            self.peer.feed(bytes(data))
            await self.flush()


Script = Callable[[PeerConn], Awaitable[None]]


async def scripted_peer(
    nursery: trio.Nursery,
    certs: CertificatePaths,
    script: Script,
    *,
    alpn: tuple[str, ...] = ("h2",),
    initial_window: int | None = None,
) -> str:
    """Serve ``script`` over TLS on 127.0.0.1; returns the endpoint URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server, certs.server_key)
    context.set_alpn_protocols(list(alpn))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, context, server_side=True)
        try:
            await stream.do_handshake()
            conn = PeerConn(stream, Peer(initial_window=initial_window))
            await conn.flush()
            await script(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return f"https://localhost:{port}"


async def respond_then(conn: PeerConn) -> None:
    """Read the request and its first event, answer 200."""
    await conn.read_until(lambda p: p.headers is not None and len(p.body) > 0)
    conn.peer.respond()
    conn.peer.send(part(b"first"))
    await conn.flush()


async def test_peer_resets_the_stream(nursery: trio.Nursery, cert_dir: Path, open_sm: Open) -> None:
    certs = ensure_certificates(cert_dir)

    async def script(conn: PeerConn) -> None:
        await respond_then(conn)
        conn.peer.conn.reset_stream(1, h2.errors.ErrorCodes.INTERNAL_ERROR)
        await conn.flush()
        await trio.sleep(5)

    url = await scripted_peer(nursery, certs, script)
    client = await open_sm(url, ca_file=str(certs.ca), await_response=False)
    await client.send("go")
    first = await client.receive()
    assert first is not None
    assert first.data == "first"
    with pytest.raises(StreamResetError, match="RST_STREAM INTERNAL_ERROR"):
        await client.receive()
    with pytest.raises(StreamResetError):
        await client.send("after the reset")


@pytest.mark.parametrize("fault", ["truncated", "tcp-drop", "goaway", "fragment-cut"])
async def test_peer_breaks_the_stream(
    nursery: trio.Nursery, cert_dir: Path, open_sm: Open, fault: str
) -> None:
    certs = ensure_certificates(cert_dir)

    async def script(conn: PeerConn) -> None:
        await respond_then(conn)
        if fault == "truncated":
            conn.peer.send(part(b"cut in the middle")[:20], end=True)
        elif fault == "goaway":
            conn.peer.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=1)
        elif fault == "fragment-cut":
            conn.peer.send(part(b"half", state="PARTIAL"), end=True)
        await conn.flush()
        if fault == "tcp-drop":
            return
        await trio.sleep(5)

    url = await scripted_peer(nursery, certs, script)
    client = await open_sm(url, ca_file=str(certs.ca), await_response=False)
    await client.send("go")
    first = await client.receive()
    assert first is not None
    assert first.data == "first"
    expected: dict[str, tuple[type[Exception], str]] = {
        "truncated": (ProtocolError, "ended inside a message"),
        # FIN or RST, depending on whether the peer had unread bytes when it closed.
        "tcp-drop": (ConnectionClosedError, "before the response ended|connection lost"),
        "goaway": (StreamResetError, "GOAWAY"),
        "fragment-cut": (ProtocolError, "no COMPLETE"),
    }
    error, match = expected[fault]
    with pytest.raises(error, match=match):
        await client.receive()


async def test_peer_without_h2_alpn(nursery: trio.Nursery, cert_dir: Path, open_sm: Open) -> None:
    certs = ensure_certificates(cert_dir)

    async def script(conn: PeerConn) -> None:
        await trio.sleep(5)

    url = await scripted_peer(nursery, certs, script, alpn=("http/1.1",))
    with pytest.raises(TLSError, match="did not negotiate 'h2'"):
        await open_sm(url, ca_file=str(certs.ca))


async def test_blocking_waits_are_bounded(nursery: trio.Nursery, cert_dir: Path) -> None:
    """A TLS server that never completes the handshake, one that never answers, one that never
    opens its window: each blocking wait ends with ClientTimeoutError."""
    certs = ensure_certificates(cert_dir)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    tls_port = listeners[0].socket.getsockname()[1]

    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, mute, listeners)

    def connect(url: str, **kwargs: Any) -> Session:
        return connect_sagemaker(
            url, "e", region=REGION, credentials=(KEY, SECRET), ca_file=str(certs.ca), **kwargs
        )

    with pytest.raises(ClientTimeoutError, match="TLS handshake"):
        await trio.to_thread.run_sync(
            lambda: connect(f"https://localhost:{tls_port}", connect_timeout=0.3)
        )

    async def silent(conn: PeerConn) -> None:
        await conn.read_until(lambda p: False)

    url = await scripted_peer(nursery, certs, silent)
    with pytest.raises(ClientTimeoutError, match="handshake response"):
        await trio.to_thread.run_sync(lambda: connect(url, connect_timeout=0.3))

    async def closed_window(conn: PeerConn) -> None:
        await conn.read_until(lambda p: p.headers is not None)
        conn.peer.auto_ack = False
        conn.peer.respond()
        await conn.flush()
        await conn.read_until(lambda p: False)

    url = await scripted_peer(nursery, certs, closed_window, initial_window=100)
    session = await trio.to_thread.run_sync(lambda: connect(url, timeout=0.3))
    try:
        with pytest.raises(ClientTimeoutError, match="flow-control credit"):
            await trio.to_thread.run_sync(session.send, b"x" * 1000)
        with pytest.raises(SessionStateError, match=r"closed \(waiting for flow-control"):
            session.send("more")  # the session is broken now
    finally:
        await trio.to_thread.run_sync(session.close)


async def test_trio_waits_belong_to_the_caller(nursery: trio.Nursery, cert_dir: Path) -> None:
    certs = ensure_certificates(cert_dir)

    async def silent(conn: PeerConn) -> None:
        await conn.read_until(lambda p: False)

    url = await scripted_peer(nursery, certs, silent)
    with pytest.raises(trio.TooSlowError), trio.fail_after(0.3):
        await open_sagemaker(
            url, "e", region=REGION, credentials=(KEY, SECRET), ca_file=str(certs.ca)
        )
    with trio.fail_after(5):
        session = await open_sagemaker(
            url,
            "e",
            region=REGION,
            credentials=(KEY, SECRET),
            ca_file=str(certs.ca),
            await_response=False,
        )
    with trio.move_on_after(0.2) as scope:
        await session.receive()
    assert scope.cancelled_caught
    with trio.fail_after(10):
        await session.aclose()  # bounded by close_timeout
    assert session.closed
