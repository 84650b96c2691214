"""The sans-IO WebSocket core: wire examples of RFC 6455, in-memory client/server pairs, every
protocol violation, limits, random splits and garbage, and interoperability with wsproto."""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagebidi_perf.errors import InvalidArgumentError
from sagebidi_perf.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    CloseCode,
    WebSocketConnection,
    WebSocketEvent,
    accept_key,
    generate_key,
)

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(
    b0: int, payload: bytes = b"", *, key: bytes | None = KEY, length: int | None = None
) -> bytes:
    """A raw frame built independently of the code under test. `b0` is the whole first byte."""
    n = len(payload) if length is None else length
    m = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def parse_frames(data: bytes) -> list[tuple[int, bytes, bool]]:
    """Test oracle: (first byte, unmasked payload, masked) of each frame in `data`."""
    frames = []
    at = 0
    while at < len(data):
        b0, b1 = data[at], data[at + 1]
        n, at = b1 & 0x7F, at + 2
        if n == 126:
            (n,) = struct.unpack_from(">H", data, at)
            at += 2
        elif n == 127:
            (n,) = struct.unpack_from(">Q", data, at)
            at += 8
        masked = bool(b1 & 0x80)
        if masked:
            key, at = data[at : at + 4], at + 4
            payload = mask(data[at : at + n], key)
        else:
            payload = data[at : at + n]
        assert len(payload) == n, "truncated frame"
        frames.append((b0, payload, masked))
        at += n
    return frames


def feed(conn: WebSocketConnection, data: bytes, step: int | None = None) -> list[WebSocketEvent]:
    if step is None:
        return conn.receive(data)
    events: list[WebSocketEvent] = []
    for i in range(0, len(data), step):
        events += conn.receive(data[i : i + step])
    return events


def pump(src: WebSocketConnection, dst: WebSocketConnection) -> list[WebSocketEvent]:
    return dst.receive(src.outgoing())


def assert_failed(conn: WebSocketConnection, events: list[WebSocketEvent], code: int) -> None:
    assert events, "expected a close event"
    kind, payload, fin = events[-1]
    assert kind == CLOSE
    assert fin is True
    assert isinstance(payload, tuple)
    assert payload[0] == code, payload
    assert sum(1 for e in events if e[0] == CLOSE) == 1
    assert conn.failed
    assert conn.closed
    assert conn.state == "closed"
    assert conn.close_code == code
    assert conn.close_reason == payload[1]
    closes = [f for f in parse_frames(conn.outgoing()) if f[0] == 0x88]
    assert len(closes) == 1
    assert closes[0][1][:2] == struct.pack(">H", code)
    assert closes[0][1][2:].decode() == payload[1]
    # Nothing more is accepted or sent.
    assert conn.receive(frame(0x81, b"late")) == []
    assert conn.outgoing() == b""


# -- handshake -------------------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(" dGhlIHNhbXBsZSBub25jZQ== ") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    "key",
    ["", "not base64!", "dGhlIHNhbXBsZSBub25j", "dGhlIHNhbXBsZSBub25jZWVl", b"\xff" * 24],
)
def test_accept_key_rejects_bad_keys(key: str | bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        accept_key(key)


def test_generate_key() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(accept_key(key)) == 28


# -- RFC 6455 §5.7 wire examples ----------------------------------------------------------------


def test_rfc_examples_sent_by_a_server() -> None:
    ws = WebSocketConnection()
    assert ws.outgoing() == b""
    ws.send("Hello")
    assert ws.outgoing() == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    ws.send_fragment("Hel", fin=False)
    ws.send_fragment("lo", fin=True)
    assert ws.outgoing() == bytes([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F])
    ws.ping(b"Hello")
    assert ws.outgoing() == bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    ws.pong(b"Hello")
    assert ws.outgoing() == bytes([0x8A, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    ws.send(bytes(256))
    out = ws.outgoing()
    assert out[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
    assert out[4:] == bytes(256)
    ws.send(memoryview(bytearray(b"\x01" * 65536)))
    out = ws.outgoing()
    assert out[:10] == bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
    assert out[10:] == b"\x01" * 65536
    assert ws.bytes_out == 7 + 9 + 7 + 7 + 260 + 65546


def test_rfc_masked_hello_received() -> None:
    wire = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert frame(0x81, b"Hello") == wire
    for step in (None, 1, 2, 5):
        ws = WebSocketConnection()
        assert feed(ws, wire, step) == [(TEXT, "Hello", True)]
        assert ws.bytes_in == len(wire)
    client = WebSocketConnection(client=True)
    assert client.receive(bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])) == [
        (TEXT, "Hello", True)
    ]
    assert client.receive(bytes([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F])) == [
        (TEXT, "Hello", True)
    ]


def test_client_masks_with_fresh_keys() -> None:
    ws = WebSocketConnection(client=True)
    ws.send(bytes(8))
    ws.send(bytes(8))
    out = ws.outgoing()
    frames = parse_frames(out)
    assert [(f[1], f[2]) for f in frames] == [(bytes(8), True), (bytes(8), True)]
    assert out[2:6] != out[16:20]  # two random 32-bit keys (equal once in 2**32)


# -- in-memory pairs ------------------------------------------------------------------------------


SIZES = [0, 1, 125, 126, 127, 3200, 65535, 65536, 65537, 300_000, 2**20 + 3]


@pytest.mark.parametrize("size", SIZES)
def test_pair_round_trip(size: int) -> None:
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    data = os.urandom(size)
    text = ("añ€😀" * (size // 10 + 1))[: size // 4]
    for src, dst in ((client, server), (server, client)):
        src.send(data)
        src.send(text)
        src.send_fragment(data[: size // 3], fin=False)
        src.send_fragment(memoryview(data)[size // 3 :], fin=True)
        src.send_fragment(text[:3], fin=False)
        src.send_fragment("", fin=False)
        src.send_fragment(text[3:], fin=True)
        wire = src.outgoing()
        for step in (None, 4096, 65536):
            assert feed(dst, wire, step) == [
                (BINARY, data, True),
                (TEXT, text, True),
                (BINARY, data, True),
                (TEXT, text, True),
            ]


def test_pair_round_trip_16_mib() -> None:
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    data = os.urandom(16 * 2**20)
    client.send(data)
    events = feed(server, client.outgoing(), 2**16)
    assert events == [(BINARY, data, True)]
    server.send(bytearray(data))
    assert pump(server, client) == [(BINARY, data, True)]
    # One byte more is refused from the header alone (1009), and so is a fragment that takes
    # a message past the limit.
    client = WebSocketConnection(client=True)
    client.send_fragment(bytes(2**20), fin=False)
    client.send_fragment(bytes(15 * 2**20), fin=False)
    client.send_fragment(b"!", fin=True)
    server = WebSocketConnection()
    assert_failed(server, feed(server, client.outgoing()), 1009)


def test_frames_mode_reports_each_frame() -> None:
    wire = (
        frame(0x01, b"Hel")
        + frame(0x89, b"mid")
        + frame(0x00, b"")
        + frame(0x00, "lo w\u00f6".encode())
        + frame(0x80, b"rld")
        + frame(0x02, b"\x00\x01")
        + frame(0x80, b"\x02")
        + frame(0x82, b"")
    )
    expect = [
        (TEXT, b"Hel", False),
        (PING, b"mid", True),
        (TEXT, b"", False),
        (TEXT, "lo w\u00f6".encode(), False),
        (TEXT, b"rld", True),
        (BINARY, b"\x00\x01", False),
        (BINARY, b"\x02", True),
        (BINARY, b"", True),
    ]
    for step in (None, 1, 3, 7):
        ws = WebSocketConnection(deliver="frames")
        assert ws.deliver == "frames"
        assert feed(ws, wire, step) == expect
        assert parse_frames(ws.outgoing()) == [(0x8A, b"mid", False)]
    ws = WebSocketConnection()
    assert ws.receive(wire) == [
        (PING, b"mid", True),
        (TEXT, "Hello w\u00f6rld", True),
        (BINARY, b"\x00\x01\x02", True),
        (BINARY, b"", True),
    ]


def test_frames_mode_text_may_split_characters() -> None:
    euro = "\u20ac".encode()
    wire = frame(0x01, euro[:1]) + frame(0x00, euro[1:2]) + frame(0x80, euro[2:])
    ws = WebSocketConnection(deliver="frames")
    assert ws.receive(wire) == [
        (TEXT, euro[:1], False),
        (TEXT, euro[1:2], False),
        (TEXT, euro[2:], True),
    ]
    for deliver in ("messages", "frames"):
        ws = WebSocketConnection(deliver=deliver)  # type: ignore[arg-type]
        assert_failed(ws, ws.receive(frame(0x01, b"ok") + frame(0x80, euro[:2])), 1007)


def test_gateway_relay_sends_text_bytes_split_inside_a_character() -> None:
    """A relay forwards UTF-8 parts as they come: text fragments given as bytes."""
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    data = "\u20ac\u20ac".encode()
    client.send_fragment(data[:2], False, text=True)
    client.send_fragment(data[2:5], False, text=True)
    client.send_fragment(data[5:], True, text=True)
    assert pump(client, server) == [(TEXT, "\u20ac\u20ac", True)]


# -- control frames and the close handshake -----------------------------------------------------


def test_pings_are_answered_at_once() -> None:
    ws = WebSocketConnection()
    events = ws.receive(frame(0x89, b"one") + frame(0x89) + frame(0x8A, b"pong!"))
    assert events == [(PING, b"one", True), (PING, b"", True), (PONG, b"pong!", True)]
    assert ws.outgoing_size == 7
    assert parse_frames(ws.outgoing()) == [(0x8A, b"one", False), (0x8A, b"", False)]
    # Mid-message, and split across reads.
    wire = frame(0x01, b"a") + frame(0x89, b"p" * 125) + frame(0x80, b"b")
    ws = WebSocketConnection()
    assert feed(ws, wire, 3) == [(PING, b"p" * 125, True), (TEXT, "ab", True)]
    assert parse_frames(ws.outgoing()) == [(0x8A, b"p" * 125, False)]


def test_close_started_by_the_client() -> None:
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    client.close(1001, "going away")
    assert client.state == "closing"
    assert not client.closed
    with pytest.raises(InvalidArgumentError):
        client.send("more")
    with pytest.raises(InvalidArgumentError):
        client.ping()
    assert pump(client, server) == [(CLOSE, (1001, "going away"), True)]
    assert server.closed
    assert not server.failed
    assert (server.close_code, server.close_reason) == (1001, "going away")
    assert parse_frames(server.outgoing()) == [(0x88, b"\x03\xe9", False)]
    with pytest.raises(InvalidArgumentError):
        server.close()
    assert server.receive(frame(0x88, b"\x03\xe9")) == [], "input after the close is ignored"
    assert pump(server, client) == []
    client.receive(server.outgoing())


def test_close_started_by_the_server() -> None:
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    server.close(CloseCode.TRY_AGAIN_LATER, "overloaded")
    client.send(b"in flight")
    client.ping(b"late")
    assert pump(client, server) == [(BINARY, b"in flight", True), (PING, b"late", True)]
    assert pump(server, client) == [(CLOSE, (1013, "overloaded"), True)]
    assert server.outgoing() == b"", "no pong after our close"
    assert pump(client, server) == [(CLOSE, (1013, ""), True)]
    assert client.closed
    assert server.closed
    assert client.outgoing() == b""


def test_empty_close_is_1005_and_echoed_empty() -> None:
    ws = WebSocketConnection()
    assert ws.receive(frame(0x88)) == [(CLOSE, (1005, ""), True)]
    assert parse_frames(ws.outgoing()) == [(0x88, b"", False)]
    assert ws.receive(frame(0x81, b"after")) == []


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(code: int) -> None:
    ws = WebSocketConnection()
    assert ws.receive(frame(0x88, struct.pack(">H", code) + "ök".encode())) == [
        (CLOSE, (code, "ök"), True)
    ]
    WebSocketConnection().close(code, "x" * 123)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes(code: int) -> None:
    ws = WebSocketConnection()
    assert_failed(ws, ws.receive(frame(0x88, struct.pack(">H", code))), 1002)
    with pytest.raises(InvalidArgumentError):
        WebSocketConnection().close(code)


# -- protocol violations ------------------------------------------------------------------------

VIOLATIONS = [
    ("rsv1", frame(0xC1, b"hi"), 1002),
    ("rsv2", frame(0xA1, b"hi"), 1002),
    ("rsv3", frame(0x91, b"hi"), 1002),
    ("opcode 3", frame(0x83), 1002),
    ("opcode 7", frame(0x87), 1002),
    ("opcode 0xB", frame(0x8B), 1002),
    ("opcode 0xF", frame(0x8F), 1002),
    ("fragmented ping", frame(0x09, b"p"), 1002),
    ("fragmented close", frame(0x08, b"\x03\xe8"), 1002),
    ("ping of 126 bytes", frame(0x89, b"x" * 126), 1002),
    ("pong of 126 bytes", frame(0x8A, b"x" * 126), 1002),
    ("unmasked client frame", frame(0x81, b"hello", key=None), 1002),
    ("continuation without a message", frame(0x80, b"x"), 1002),
    ("text inside a fragmented message", frame(0x01, b"a") + frame(0x81, b"b"), 1002),
    ("binary inside a fragmented message", frame(0x02, b"a") + frame(0x82, b"b"), 1002),
    ("64-bit length with the MSB set", frame(0x82, b"abc", length=2**63 + 3), 1002),
    ("64-bit length 2**63-1", frame(0x82, b"abc", length=2**63 - 1), 1009),
    ("non-minimal 16-bit length", bytes([0x82, 0xFE, 0, 5]) + KEY + bytes(5), 1002),
    ("non-minimal 64-bit length", bytes([0x82, 0xFF]) + struct.pack(">Q", 300) + KEY, 1002),
    ("invalid UTF-8", frame(0x81, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80edited"), 1007),
    ("invalid UTF-8 in a fragment", frame(0x01, b"ok") + frame(0x80, b"\xff"), 1007),
    ("UTF-8 cut at the end", frame(0x81, b"\xe2\x82"), 1007),
    ("overlong UTF-8", frame(0x81, b"\xc0\xaf"), 1007),
    ("close with a 1-byte payload", frame(0x88, b"\x03"), 1002),
    ("close reason not UTF-8", frame(0x88, b"\x03\xe8\xff\xfe"), 1007),
    ("2 MiB frame", frame(0x82, b"", length=2 * 2**20 + 1), 1009),
]


@pytest.mark.parametrize(("name", "wire", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
@pytest.mark.parametrize("step", [None, 1])
def test_violation_fails_with_code_and_close_frame(
    name: str, wire: bytes, code: int, step: int | None
) -> None:
    ws = WebSocketConnection(max_message_size=2 * 2**20)
    assert_failed(ws, feed(ws, wire, step), code)


def test_raw_socket_cases_of_trio_websocket_get_a_close_frame() -> None:
    """conformance-and-faults.md §1.6: trio-websocket drops TCP; we send a Close with a code."""
    cases = [
        (frame(0x81, b"hello", key=None), 1002),
        (frame(0x09, b"p"), 1002),
        (frame(0x89, b"x" * 126), 1002),
        (frame(0xC1, b"hi"), 1002),
        (frame(0x81, b"\xff\xfe"), 1007),
        (frame(0x83), 1002),
        (frame(0x82, bytes(2**21)), 1009),
    ]
    for wire, code in cases:
        ws = WebSocketConnection(max_message_size=2**20)
        assert_failed(ws, feed(ws, wire, 65536), code)
    # A header declaring 2**63-1 bytes with 3 sent: refused from the header by the size limit.
    ws = WebSocketConnection()
    assert_failed(ws, ws.receive(frame(0x82, b"abc", length=2**63 - 1)), 1009)


def test_client_rejects_masked_frames() -> None:
    ws = WebSocketConnection(client=True)
    assert_failed(ws, ws.receive(frame(0x81, b"hi")), 1002)


# -- deferred failure close -------------------------------------------------------------------


def assert_failing(ws: WebSocketConnection, events: list[WebSocketEvent], code: int) -> str:
    """`ws` failed with `code`, reported once and last, queued nothing, and ignores input.
    Returns the reason."""
    kind, payload, fin = events[-1]
    assert (kind, payload[0], fin) == (CLOSE, code, True)
    assert sum(1 for e in events if e[0] == CLOSE) == 1
    assert ws.state == "failing"
    assert ws.failed
    assert not ws.closed
    assert (ws.close_code, ws.close_reason) == payload
    assert ws.outgoing_size == 0
    # Input is dead: a ping is not reported or answered, data and closes are not delivered.
    assert ws.receive(frame(0x89, b"ping") + frame(0x81, b"late") + frame(0x88, b"\x03\xe8")) == []
    assert ws.outgoing_size == 0
    assert ws.state == "failing"
    reason: str = payload[1]
    return reason


@pytest.mark.parametrize("step", [None, 1, 5])
def test_deferred_failure_close_lets_the_reply_go_first(step: int | None) -> None:
    """Autobahn 3.2: a text message, a frame with RSV2 set and a ping, in one flight."""
    wire = frame(0x81, b"Hello") + frame(0xA1, b"bad") + frame(0x89)
    ws = WebSocketConnection(defer_failure_close=True)
    assert ws.defer_failure_close
    events = feed(ws, wire, step)
    assert events[0] == (TEXT, "Hello", True)
    assert len(events) == 2
    reason = assert_failing(ws, events, 1002)
    assert "reserved bits" in reason
    ws.send("Hello")  # the reply to the message that came before the bad frame
    ws.send_fragment(b"a", fin=False)
    ws.ping(b"p")  # control frames too (a keepalive task may still be running)
    ws.send_fragment(b"b", fin=True)
    assert not ws.closed
    ws.close(4000, "ignored")  # the failure's code and reason are sent instead
    assert ws.state == "closed"
    assert (ws.close_code, ws.close_reason) == (1002, reason)
    assert parse_frames(ws.outgoing()) == [
        (0x81, b"Hello", False),
        (0x02, b"a", False),
        (0x89, b"p", False),
        (0x80, b"b", False),
        (0x88, struct.pack(">H", 1002) + reason.encode(), False),
    ]
    for call in (lambda: ws.send("x"), lambda: ws.ping(), lambda: ws.close()):
        with pytest.raises(InvalidArgumentError):
            call()
    assert ws.receive(frame(0x81, b"after")) == []
    assert ws.outgoing() == b""


def test_without_the_option_the_failure_close_is_queued_at_once() -> None:
    """The default is unchanged: the Close is queued while parsing, replies are refused."""
    wire = frame(0x81, b"Hello") + frame(0xA1, b"bad") + frame(0x89)
    ws = WebSocketConnection()
    assert not ws.defer_failure_close
    events = ws.receive(wire)
    assert events[0] == (TEXT, "Hello", True)
    with pytest.raises(InvalidArgumentError):
        ws.send("Hello")
    assert_failed(ws, events, 1002)


@pytest.mark.parametrize(("name", "wire", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
@pytest.mark.parametrize("step", [None, 1])
def test_every_violation_can_defer_its_close(
    name: str, wire: bytes, code: int, step: int | None
) -> None:
    ws = WebSocketConnection(max_message_size=2 * 2**20, defer_failure_close=True)
    reason = assert_failing(ws, feed(ws, wire, step), code)
    ws.close()
    assert parse_frames(ws.outgoing()) == [(0x88, struct.pack(">H", code) + reason.encode(), False)]
    assert ws.state == "closed"


def test_deferred_failure_close_after_our_close_is_immediate() -> None:
    """Our Close was already sent: there is nothing to defer, the connection closes at once."""
    ws = WebSocketConnection(defer_failure_close=True)
    ws.close(4000, "bye")
    ws.outgoing()
    events = ws.receive(frame(0x81, b"in flight") + frame(0xC1, b"x"))
    assert events[0] == (TEXT, "in flight", True)
    assert events[1][0] == CLOSE
    assert events[1][1][0] == 1002
    assert ws.state == "closed"
    assert ws.failed
    assert ws.outgoing() == b""


def test_deferred_failure_close_frames_mode_and_client_role() -> None:
    ws = WebSocketConnection(deliver="frames", defer_failure_close=True)
    events = ws.receive(
        frame(0x01, b"one ") + frame(0x00, b"two") + frame(0x80, b"\xff") + frame(0x81, b"never")
    )
    assert events[:2] == [(TEXT, b"one ", False), (TEXT, b"two", False)]
    assert_failing(ws, events, 1007)

    ws = WebSocketConnection(client=True, defer_failure_close=True)
    events = ws.receive(frame(0x82, b"ok", key=None) + frame(0x81, b"masked"))
    assert events[0] == (BINARY, b"ok", True)
    assert_failing(ws, events, 1002)
    ws.close()
    [(b0, payload, masked)] = parse_frames(ws.outgoing())
    assert (b0, payload[:2], masked) == (0x88, struct.pack(">H", 1002), True)


def test_wsproto_sees_the_reply_then_the_deferred_close() -> None:
    ev = pytest.importorskip("wsproto.events")
    peer = _wsproto("client")
    ours = WebSocketConnection(defer_failure_close=True)
    wire = peer.send(ev.TextMessage(data="Hello")) + frame(0xA1, b"bad")
    for kind, payload, _fin in ours.receive(wire):
        if kind == TEXT:
            ours.send(payload)
    assert ours.state == "failing"
    ours.close()
    assert _wsproto_messages(peer, ours.outgoing()) == [
        ("message", "Hello"),
        ("close", (1002, ours.close_reason)),
    ]


@pytest.mark.parametrize("deliver", ["messages", "frames"])
def test_invalid_utf8_fails_before_the_frame_is_complete(deliver: str) -> None:
    """Autobahn 6.4.x: fail at the first invalid byte, not at the end of the frame."""
    payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80hello"
    wire = frame(0x81, payload)
    ws = WebSocketConnection(deliver=deliver)  # type: ignore[arg-type]
    assert ws.receive(wire[: 6 + 12]) == []  # ... \xf4: still a valid prefix
    assert_failed(ws, ws.receive(wire[6 + 12 : 6 + 13]), 1007)  # \xf4\x90 > U+10FFFF


def test_limits() -> None:
    ws = WebSocketConnection(max_fragments=3)
    assert ws.max_fragments == 3
    ok = frame(0x02, b"a") + frame(0x00, b"b") + frame(0x80, b"c")
    assert ws.receive(ok) == [(BINARY, b"abc", True)]
    too_many = frame(0x02, b"a") + frame(0x00) + frame(0x00) + frame(0x80, b"c")
    assert_failed(ws, ws.receive(too_many), 1009)

    ws = WebSocketConnection(max_message_size=10, deliver="frames")
    assert (ws.max_message_size, ws.max_frame_size) == (10, 10)
    assert ws.receive(frame(0x02, b"123456")) == [(BINARY, b"123456", False)]
    assert_failed(ws, ws.receive(frame(0x80, b"12345")[:6]), 1009)  # header only

    ws = WebSocketConnection(max_frame_size=4)
    assert ws.receive(frame(0x82, b"1234")) == [(BINARY, b"1234", True)]
    assert_failed(ws, ws.receive(frame(0x82, b"12345")), 1009)

    for kwargs in (
        {"max_message_size": -1},
        {"max_frame_size": -1},
        {"max_fragments": -1},
        {"max_fragments": 0},
        {"deliver": "bytes"},
    ):
        with pytest.raises(InvalidArgumentError):
            WebSocketConnection(**kwargs)  # type: ignore[arg-type]


def test_many_tiny_fragments_pass() -> None:
    """Autobahn 9.3.1: 4 MiB of text in 64-byte fragments (65,536 frames)."""
    client, server = WebSocketConnection(client=True), WebSocketConnection()
    part = "*" * 64
    client.send_fragment(part, fin=False)
    for _ in range(2**16 - 2):
        client.send_fragment(part, fin=False)
    client.send_fragment(part, fin=True)
    events = feed(server, client.outgoing(), 2**16)
    assert events == [(TEXT, "*" * 2**22, True)]


# -- misuse -----------------------------------------------------------------------------------


def test_misuse_raises() -> None:
    ws = WebSocketConnection()
    with pytest.raises(InvalidArgumentError):
        ws.ping(bytes(126))
    with pytest.raises(InvalidArgumentError):
        ws.pong(bytes(126))
    ws.ping(bytes(125))
    ws.send_fragment("a", fin=False)
    with pytest.raises(InvalidArgumentError):
        ws.send("b")
    with pytest.raises(InvalidArgumentError):
        ws.send_fragment(b"b", fin=True)  # binary inside text
    ws.ping(b"p")  # control frames may interleave
    ws.send_fragment("b", fin=True)
    ws.send(b"c")
    assert [f[0] for f in parse_frames(ws.outgoing())] == [0x89, 0x01, 0x89, 0x80, 0x82]
    with pytest.raises(InvalidArgumentError):
        ws.close(1000, "x" * 124)
    with pytest.raises(InvalidArgumentError):
        ws.close(70000)
    with pytest.raises(TypeError):
        ws.send(12)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.receive("text")  # type: ignore[arg-type]
    ws.close()
    for call in (lambda: ws.send(b"x"), lambda: ws.pong(b""), lambda: ws.close()):
        with pytest.raises(InvalidArgumentError):
            call()


def test_receive_borrows_any_buffer() -> None:
    wire = frame(0x82, b"payload") + frame(0x81, b"text")
    backing = bytearray(b"xx" + wire + b"yy")
    ws = WebSocketConnection()
    assert ws.receive(memoryview(backing)[2:-2]) == [
        (BINARY, b"payload", True),
        (TEXT, "text", True),
    ]
    with pytest.raises(BufferError):
        ws.receive(memoryview(backing)[::2])


def test_repr_and_properties() -> None:
    ws = WebSocketConnection(client=True)
    assert repr(ws) == "<WebSocketConnection client open deliver=messages>"
    assert ws.client
    assert ws.state == "open"
    assert not ws.closed
    assert not ws.failed
    assert ws.close_code is None
    assert ws.close_reason is None
    assert not ws.defer_failure_close
    assert (ws.bytes_in, ws.bytes_out, ws.outgoing_size) == (0, 0, 0)


# -- property tests ---------------------------------------------------------------------------

message = st.one_of(
    st.text(max_size=300).map(lambda t: (TEXT, t)),
    st.binary(max_size=3000).map(lambda b: (BINARY, b)),
)


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        yield data[a:b]


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.tuples(message, st.lists(st.integers(0, 10_000), max_size=4)), max_size=6),
    cuts=st.lists(st.integers(0, 100_000), max_size=30),
    deliver=st.sampled_from(["messages", "frames"]),
    from_client=st.booleans(),
)
def test_random_messages_and_splits_round_trip(
    messages: list[tuple[tuple[int, str | bytes], list[int]]],
    cuts: list[int],
    deliver: str,
    from_client: bool,
) -> None:
    tx = WebSocketConnection(client=from_client)
    rx = WebSocketConnection(client=not from_client, deliver=deliver)  # type: ignore[arg-type]
    expect: list[WebSocketEvent] = []
    for (kind, data), frag_cuts in messages:
        raw = data.encode() if isinstance(data, str) else data
        if not frag_cuts:
            tx.send(data)
            expect.append((kind, data if deliver == "messages" else raw, True))
            continue
        parts = list(chunks(raw, frag_cuts)) or [b""]
        for i, part in enumerate(parts):
            fin = i == len(parts) - 1
            tx.send_fragment(part, fin, text=kind == TEXT)
            if deliver == "frames":
                expect.append((kind, part, fin))
        if deliver == "messages":
            expect.append((kind, data, True))
    tx.ping(b"ping")
    expect.append((PING, b"ping", True))
    tx.close(3000, "done")
    expect.append((CLOSE, (3000, "done"), True))
    got: list[WebSocketEvent] = []
    for piece in chunks(tx.outgoing(), cuts):
        got += rx.receive(piece)
    assert got == expect
    assert pump(rx, tx) == [(PONG, b"ping", True), (CLOSE, (3000, ""), True)]
    assert rx.closed
    assert tx.closed
    assert not rx.failed
    assert not tx.failed


@settings(deadline=None, max_examples=400)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.tuples(
            st.sampled_from([0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8A]),
            st.binary(max_size=400),
        ).map(lambda t: bytes([t[0], 0x80 | (t[1][:1] or b"\0")[0]]) + t[1][1:]),
    ),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    client=st.booleans(),
    deliver=st.sampled_from(["messages", "frames"]),
    defer=st.booleans(),
)
def test_random_garbage_never_raises(
    data: bytes, cuts: list[int], client: bool, deliver: str, defer: bool
) -> None:
    ws = WebSocketConnection(
        client=client,
        deliver=deliver,  # type: ignore[arg-type]
        max_message_size=2**16,
        defer_failure_close=defer,
    )
    events: list[WebSocketEvent] = []
    for piece in chunks(data, cuts):
        events += ws.receive(piece)
    closes = [e for e in events if e[0] == CLOSE]
    assert len(closes) <= 1
    assert not closes or events[-1] == closes[0]
    if ws.state == "failing":
        assert defer
        assert ws.failed
        ws.close()
        assert ws.closed
    for b0, payload, masked in parse_frames(ws.outgoing()):
        assert b0 in (0x88, 0x8A)
        assert masked == client
        assert len(payload) <= 125


# -- interoperability with wsproto ------------------------------------------------------------


@pytest.fixture
def ev() -> Any:
    """wsproto's events module (wsproto is a test-only dependency)."""
    return pytest.importorskip("wsproto.events")


def _wsproto(kind: str) -> Any:
    wsproto_connection = pytest.importorskip("wsproto.connection")
    ctype = wsproto_connection.ConnectionType
    return wsproto_connection.Connection(ctype.CLIENT if kind == "client" else ctype.SERVER)


def _wsproto_messages(conn: Any, data: bytes) -> list[tuple[str, object]]:
    """Feeds wsproto and returns its whole messages, pings, pongs and closes."""
    ev = pytest.importorskip("wsproto.events")
    conn.receive_data(data)
    out: list[tuple[str, object]] = []
    parts: list[str | bytes] = []
    for event in conn.events():
        if isinstance(event, ev.Message):
            parts.append(event.data)
            if event.message_finished:
                joined: object = "".join(map(str, parts))
                if isinstance(event, ev.BytesMessage):
                    joined = b"".join(p for p in parts if isinstance(p, bytes))
                out.append(("message", joined))
                parts = []
        elif isinstance(event, ev.Ping):
            out.append(("ping", event.payload))
        elif isinstance(event, ev.Pong):
            out.append(("pong", event.payload))
        elif isinstance(event, ev.CloseConnection):
            out.append(("close", (event.code, event.reason)))
    return out


INTEROP_SIZES = [0, 1, 125, 126, 3200, 65535, 65536, 70_000, 512 * 1024]


def test_wsproto_client_with_our_server(ev: Any) -> None:
    peer = _wsproto("client")
    ours = WebSocketConnection()
    for size in INTEROP_SIZES:
        data = os.urandom(size)
        text = ("zß水🍌" * (size // 8 + 1))[: size // 4]
        wire = peer.send(ev.BytesMessage(data=data))
        wire += peer.send(ev.TextMessage(data=text))
        wire += peer.send(ev.BytesMessage(data=data[: size // 2], message_finished=False))
        wire += peer.send(ev.BytesMessage(data=data[size // 2 :], message_finished=True))
        wire += peer.send(ev.Ping(payload=b"hi"))
        events = feed(ours, wire, 8192)
        assert events == [
            (BINARY, data, True),
            (TEXT, text, True),
            (BINARY, data, True),
            (PING, b"hi", True),
        ]
        ours.send(data)
        ours.send(text)
        ours.send_fragment(text[:1], fin=False)
        ours.send_fragment(text[1:], fin=True)
        ours.ping(b"p")
        got = _wsproto_messages(peer, ours.outgoing())
        # Our automatic pong came before our own messages in the outgoing buffer.
        assert got == [
            ("pong", b"hi"),
            ("message", data),
            ("message", text),
            ("message", text),
            ("ping", b"p"),
        ]
    wire = peer.send(ev.CloseConnection(code=1000, reason="bye"))
    assert ours.receive(wire) == [(CLOSE, (1000, "bye"), True)]
    assert _wsproto_messages(peer, ours.outgoing()) == [("close", (1000, ""))]


def test_our_client_with_wsproto_server(ev: Any) -> None:
    peer = _wsproto("server")
    ours = WebSocketConnection(client=True)
    for size in INTEROP_SIZES:
        data = os.urandom(size)
        text = ("zß水🍌" * (size // 8 + 1))[: size // 4]
        ours.send(data)
        ours.send_fragment(text[: len(text) // 2], fin=False)
        ours.send_fragment(text[len(text) // 2 :], fin=True)
        ours.ping(b"x" * 125)
        assert _wsproto_messages(peer, ours.outgoing()) == [
            ("message", data),
            ("message", text),
            ("ping", b"x" * 125),
        ]
        wire = peer.send(ev.Pong(payload=b"x" * 125))
        wire += peer.send(ev.TextMessage(data=text, message_finished=False))
        wire += peer.send(ev.TextMessage(data=text, message_finished=True))
        wire += peer.send(ev.BytesMessage(data=data))
        assert feed(ours, wire, 1000) == [
            (PONG, b"x" * 125, True),
            (TEXT, text + text, True),
            (BINARY, data, True),
        ]
    ours.close(1001, "client leaving")
    assert _wsproto_messages(peer, ours.outgoing()) == [("close", (1001, "client leaving"))]
    wire = peer.send(ev.CloseConnection(code=1001))
    assert ours.receive(wire) == [(CLOSE, (1001, ""), True)]
    assert ours.closed


def test_wsproto_sees_our_protocol_error_close(ev: Any) -> None:
    peer = _wsproto("client")
    ours = WebSocketConnection()
    ours.receive(frame(0x81, b"\xff"))
    assert _wsproto_messages(peer, ours.outgoing()) == [
        ("close", (1007, "text is not valid UTF-8"))
    ]
