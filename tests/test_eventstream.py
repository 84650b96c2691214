"""The event-stream codec: official vectors, protocol captures, the Python API, the incremental
decoder, limits, and property tests (round trips and hostile input)."""

from __future__ import annotations

import base64
import binascii
import collections
import concurrent.futures
import datetime
import json
import pickle
import struct
import sys
import types
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagebidi_perf.errors import (
    ChecksumError,
    EventStreamError,
    InvalidArgumentError,
    MalformedMessageError,
    MessageTooLargeError,
    TruncatedMessageError,
)
from sagebidi_perf.eventstream import (
    MAX_HEADER_VALUE_LENGTH,
    MAX_HEADERS_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    HeaderType,
    Message,
    decode_message,
    encode_message,
)

UTC = datetime.UTC


def frame(header_block: bytes, payload: bytes = b"") -> bytes:
    """A message with valid CRCs around an arbitrary header block (a test's own encoder)."""
    prelude = struct.pack(">II", 16 + len(header_block) + len(payload), len(header_block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + header_block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_all(data: bytes) -> list[Message]:
    """Decodes a whole stream with the incremental decoder and closes it."""
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    decoder.close()
    return messages


def caught(call: Any, *args: Any) -> EventStreamError | None:
    """The EventStreamError ``call(*args)`` raises, or None (anything else propagates)."""
    try:
        call(*args)
    except EventStreamError as e:
        return e
    return None


def reencode(message: Message) -> bytes:
    """Encodes a decoded message again through the public typed form."""
    return encode_message([(n, (t, v)) for n, t, v in message.header_items()], message.payload)


# --------------------------------------------------------------------------------------------
# Official vectors
# --------------------------------------------------------------------------------------------

GO_POSITIVE = ["all_headers", "empty_message", "int32_header", "payload_no_headers",
               "payload_one_str_header"]  # fmt: skip
BOTOCORE_POSITIVE = ["all_header_types", "empty_message", "error_event_message", "int16_header",
                     "int32_header", "int64_header", "int8_header", "payload_no_headers",
                     "payload_one_str_header"]  # fmt: skip


def check_frame_fields(raw: bytes, total: int, headers_len: int, prelude_crc: int, msg_crc: int):
    assert len(raw) == total
    t, h, p = struct.unpack(">III", raw[:12])
    assert (t, h) == (total, headers_len)
    # aws-sdk-go stores CRCs as signed int32: compare modulo 2**32.
    assert p == prelude_crc % 2**32
    assert struct.unpack(">I", raw[-4:])[0] == msg_crc % 2**32


@pytest.mark.parametrize("case", GO_POSITIVE)
def test_aws_sdk_go_positive(vectors_dir: Path, case: str) -> None:
    base = vectors_dir / "eventstream" / "aws-sdk-go"
    raw = (base / "encoded" / "positive" / case).read_bytes()
    want = json.loads((base / "decoded" / "positive" / case).read_text())
    check_frame_fields(
        raw, want["total_length"], want["headers_length"], want["prelude_crc"], want["message_crc"]
    )

    message = decode_message(raw)
    assert message.payload == base64.b64decode(want["payload"])
    expected_items = []
    typed_headers = []
    for h in want["headers"]:
        t, v = h["type"], h["value"]
        if t in (HeaderType.BYTE_ARRAY, HeaderType.STRING, HeaderType.UUID):
            v = base64.b64decode(v)
        if t == HeaderType.STRING:
            v = v.decode()
        if t == HeaderType.UUID:
            v = uuid.UUID(bytes=v)
        expected_items.append((h["name"], t, v))
        typed_headers.append((h["name"], (HeaderType(t), v)))
    assert message.header_items() == expected_items
    for (_, t, v), (_, t2, v2) in zip(message.header_items(), expected_items, strict=True):
        assert type(v) is type(v2), (t, t2)

    # The encoder, fed the JSON's fields, produces the file byte for byte.
    assert encode_message(typed_headers, base64.b64decode(want["payload"])) == raw
    assert message.encode() == raw
    assert reencode(message) == raw
    assert decode_all(raw) == [message]


def botocore_expected(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


@pytest.mark.parametrize("case", BOTOCORE_POSITIVE)
def test_botocore_positive(vectors_dir: Path, case: str) -> None:
    base = vectors_dir / "eventstream" / "botocore"
    want = json.loads((base / "manifest.json").read_text())["positive"][case]
    raw = (base / "positive" / case).read_bytes()
    check_frame_fields(
        raw, want["total_length"], want["headers_length"], want["prelude_crc"], want["message_crc"]
    )
    message = decode_message(raw)
    assert message.payload == base64.b64decode(want["payload_b64"])
    items = message.header_items()
    assert [n for n, _, _ in items] == list(want["headers"])
    for name, t, value in items:
        expected = botocore_expected(want["headers"][name])
        if t == HeaderType.UUID:
            assert value.bytes == expected
        else:
            assert value == expected
            assert isinstance(value, bool) == isinstance(expected, bool)
    assert message.encode() == raw
    assert reencode(message) == raw


def test_botocore_all_header_types_natural_values(vectors_dir: Path) -> None:
    raw = (vectors_dir / "eventstream" / "botocore" / "positive" / "all_header_types").read_bytes()
    message = decode_message(raw)
    assert [t for _, t, _ in message.header_items()] == list(range(10))
    assert message.headers == {
        "0": True,
        "1": False,
        "2": 2,
        "3": 3,
        "4": 4,
        "5": 5,
        "6": b"bytes",
        "7": "utf8",
        "8": datetime.datetime(1970, 1, 1, 0, 0, 0, 8000, tzinfo=UTC),
        "9": uuid.UUID(bytes=b"0123456789abcdef"),
    }


def test_smithy_valid(vectors_dir: Path) -> None:
    base = vectors_dir / "eventstream" / "smithy-rs"
    for name in ("valid_empty_payload", "valid_no_headers", "valid_with_all_headers_and_payload"):
        raw = (base / name).read_bytes()
        message = decode_message(raw)
        assert message.encode() == raw
        assert reencode(message) == raw
        assert decode_all(raw) == [message]
    message = decode_message((base / "valid_with_all_headers_and_payload").read_bytes())
    assert message.payload == b"some payload"
    assert message.header_items() == [
        ("true", 0, True),
        ("false", 1, False),
        ("byte", 2, 50),
        ("short", 3, 20000),
        ("int", 4, 500000),
        ("long", 5, 50000000000),
        ("bytes", 6, b"some bytes"),
        ("str", 7, "some str"),
        ("time", 8, 5_000_000 * 1000),
        ("uuid", 9, uuid.UUID("b79bc914-de21-4e13-b8b2-bc47e85b7f0b")),
    ]
    assert message.header("time") == datetime.datetime.fromtimestamp(5_000_000, UTC)


def expect_error(raw: bytes, error: type[EventStreamError]) -> EventStreamError:
    """Both decoders reject ``raw`` with ``error``; returns the one-shot decoder's exception."""
    with pytest.raises(error) as one:
        decode_message(raw)
    with pytest.raises(error) as inc:
        decode_all(raw)
    assert str(one.value) == str(inc.value)
    assert one.value.offset == inc.value.offset
    return one.value


NEGATIVE = [
    # (path under vectors/eventstream, error class, text in the message, offset)
    ("aws-sdk-go/encoded/negative/corrupted_header_len", ChecksumError, "Prelude checksum", 0),
    ("aws-sdk-go/encoded/negative/corrupted_length", ChecksumError, "Prelude checksum", 0),
    ("aws-sdk-go/encoded/negative/corrupted_headers", ChecksumError, "Message checksum", 0),
    ("aws-sdk-go/encoded/negative/corrupted_payload", ChecksumError, "Message checksum", 0),
    # botocore checks lengths before the prelude CRC and so do we (its stated reasons).
    ("botocore/negative/corrupted_header_length", MessageTooLargeError, "headers too large", 0),
    ("botocore/negative/corrupted_length", MessageTooLargeError, "payload too large", 0),
    ("botocore/negative/corrupted_headers", ChecksumError, "Message checksum", 0),
    ("botocore/negative/corrupted_payload", ChecksumError, "Message checksum", 0),
    # Our policy: duplicate names are malformed (protocol reference §3.1); offset of the 2nd.
    ("botocore/negative/duplicate_header", MalformedMessageError, 'duplicate header name "test"',
     22),
    ("smithy-rs/invalid_prelude_checksum", ChecksumError,
     "expected 0xDEADBEEF, computed 0x8BB495FB", 0),
    ("smithy-rs/invalid_message_checksum", ChecksumError,
     "expected 0xDEADBEEF, computed 0x01A05860", 0),
    # The header-level smithy-rs files carry stale message CRCs: the CRC is checked first.
    ("smithy-rs/invalid_header_name_length", ChecksumError, "Message checksum", 0),
    ("smithy-rs/invalid_header_name_length_too_long", ChecksumError, "Message checksum", 0),
    ("smithy-rs/invalid_header_string_length_cut_off", ChecksumError, "Message checksum", 0),
    ("smithy-rs/invalid_header_string_value_length", ChecksumError, "Message checksum", 0),
    ("smithy-rs/invalid_header_value_type", ChecksumError, "Message checksum", 0),
    ("smithy-rs/invalid_headers_length", MalformedMessageError, "does not fit", 4),
    # Same faults with valid CRCs: the header parser's own errors, at the faulty field.
    ("derived-recrc/invalid_header_name_length", MalformedMessageError, "runs past", 25),
    ("derived-recrc/invalid_header_name_length_too_long", MalformedMessageError, "runs past", 18),
    ("derived-recrc/invalid_header_string_length_cut_off", MalformedMessageError, "cut off", 88),
    ("derived-recrc/invalid_header_string_value_length", MalformedMessageError,
     "declares 65535 bytes", 88),
    ("derived-recrc/invalid_header_value_type", MalformedMessageError,
     "unknown value type 0x60", 30),
    ("derived-recrc/invalid_headers_length", MalformedMessageError, "does not fit", 4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "error", "text", "offset"), NEGATIVE, ids=[n[0] for n in NEGATIVE]
)
def test_negative_vectors(
    vectors_dir: Path, path: str, error: type[EventStreamError], text: str, offset: int
) -> None:
    raw = (vectors_dir / "eventstream" / path).read_bytes()
    err = expect_error(raw, error)
    assert text in str(err)
    assert err.offset == offset
    assert isinstance(err, ValueError)


def test_aws_sdk_go_negative_texts_match(vectors_dir: Path) -> None:
    base = vectors_dir / "eventstream" / "aws-sdk-go"
    for path in sorted((base / "encoded" / "negative").iterdir()):
        want = (base / "decoded" / "negative" / path.name).read_text().strip()
        with pytest.raises(ChecksumError, match=want):
            decode_message(path.read_bytes())


def test_every_vector_file_is_covered(vectors_dir: Path) -> None:
    """No vector file is left out of the tests above (a new one must be classified)."""
    base = vectors_dir / "eventstream"
    covered = {n[0] for n in NEGATIVE}
    covered |= {f"aws-sdk-go/encoded/positive/{c}" for c in GO_POSITIVE}
    covered |= {f"botocore/positive/{c}" for c in BOTOCORE_POSITIVE}
    covered |= {f"smithy-rs/{c}" for c in ("valid_empty_payload", "valid_no_headers",
                                           "valid_with_all_headers_and_payload")}  # fmt: skip
    frames = {
        str(p.relative_to(base))
        for p in base.rglob("*")
        if p.is_file()
        and "decoded" not in p.parts
        and p.suffix not in (".md", ".json", ".txt")
        and p.name != "LICENSE"
    }
    assert frames == covered


# --------------------------------------------------------------------------------------------
# Captures from the protocol reference (sagemaker-bidi-protocol.md §4.3 and §9)
# --------------------------------------------------------------------------------------------

FRAME_4_3 = (
    "0000010600000043ceebe946053a6461746508000001a212047518103a6368756e6b2d7369676e61747572650600"
    "204f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545000000b300000084d890ea940d"
    "3a6d6573736167652d747970650700056576656e740b3a6576656e742d7479706507000b5061796c6f6164506172"
    "74084461746154797065070004555446380f436f6d706c6574696f6e5374617465070008434f4d504c4554450d3a"
    "636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d73747265616d7b227479706522"
    "3a2268656c6c6f222c2274657874223a226669727374227d979aaf57e61ec341"
)
FINAL_4_2 = (
    "0000005300000043f5447a58053a6461746508000001a212047a95103a6368756e6b2d7369676e61747572650600"
    "20678bfdd904ef8d1ad11feb2e3864207d706629993ebaf922b5759c0ef5d3d6c1bb9be841"
)
INTERNAL_FAILURE_9 = (
    "00000092000000631a5f9bfb0d3a6d6573736167652d74797065070009657863657074696f6e0f3a657863657074"
    "696f6e2d74797065070015496e7465726e616c53747265616d4661696c7572650d3a636f6e74656e742d74797065"
    "0700106170706c69636174696f6e2f6a736f6e7b224d657373616765223a2022696e7465726e616c206661696c75"
    "7265227d601685ab"
)
ERROR_EVENT_9 = (
    "000000630000005349d2d2ba0d3a6d6573736167652d747970650700056572726f720b3a6572726f722d636f6465"
    "0700135468726f74746c696e67457863657074696f6e0e3a6572726f722d6d657373616765070009736c6f772064"
    "6f776e532634c1"
)


def test_captured_signed_frame_4_3() -> None:
    raw = bytes.fromhex(FRAME_4_3)
    outer = decode_message(raw)
    assert len(raw) == 262
    assert outer.header_items() == [
        (":date", 8, 1795598611736),
        (":chunk-signature", 6, bytes.fromhex(
            "4f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545")),
    ]  # fmt: skip
    assert outer.header(":date") == datetime.datetime(2026, 11, 25, 9, 23, 31, 736000, UTC)
    inner = decode_message(outer.payload)
    assert inner.headers == {
        ":message-type": "event",
        ":event-type": "PayloadPart",
        "DataType": "UTF8",
        "CompletionState": "COMPLETE",
        ":content-type": "application/octet-stream",
    }
    assert inner.payload == b'{"type":"hello","text":"first"}'
    # Rebuilt from natural Python values (a dict keeps the order) + an aware datetime.
    assert encode_message(inner.headers, inner.payload) == outer.payload
    date = datetime.datetime(2026, 11, 25, 9, 23, 31, 736000, UTC)
    signature = outer.header(":chunk-signature")
    assert encode_message({":date": date, ":chunk-signature": signature}, outer.payload) == raw


def test_captured_final_empty_frame_4_2() -> None:
    raw = bytes.fromhex(FINAL_4_2)
    message = decode_message(raw)
    assert len(raw) == 83
    assert message.payload == b""
    assert message.header(":date") == datetime.datetime(2026, 11, 25, 9, 23, 33, 141000, UTC)
    assert reencode(message) == raw


def test_captured_response_frames_9() -> None:
    failure = decode_message(bytes.fromhex(INTERNAL_FAILURE_9))
    assert failure.headers == {
        ":message-type": "exception",
        ":exception-type": "InternalStreamFailure",
        ":content-type": "application/json",
    }
    assert json.loads(failure.payload) == {"Message": "internal failure"}
    error = decode_message(bytes.fromhex(ERROR_EVENT_9))
    assert error.headers == {
        ":message-type": "error",
        ":error-code": "ThrottlingException",
        ":error-message": "slow down",
    }
    assert error.payload == b""
    both = bytes.fromhex(INTERNAL_FAILURE_9 + ERROR_EVENT_9)
    assert decode_all(both) == [failure, error]
    for m, h in ((failure, INTERNAL_FAILURE_9), (error, ERROR_EVENT_9)):
        assert encode_message(m.headers, m.payload).hex() == h


def test_annotated_response_frames_9() -> None:
    """§9 gives the echo and ModelStreamError frames annotated (prelude + CRC); rebuild them."""
    echo = encode_message(
        {
            ":message-type": "event",
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
            "DataType": "UTF8",
            "CompletionState": "COMPLETE",
        },
        b'echo: {"type":"hello","text":"first"}',
    )
    assert echo[:12].hex() == "000000b9000000849220f235"
    assert echo[-4:].hex() == "08de9859"
    error = encode_message(
        [
            (":message-type", "exception"),
            (":exception-type", "ModelStreamError"),
            (":content-type", "application/json"),
        ],
        b'{"Message": "Model container closed the WebSocket (code 1011)", '
        b'"ErrorCode": "ModelStreamError"}',
    )
    assert error[:12].hex() == "000000ce0000005ebfd4f520"
    assert error[-4:].hex() == "c96e6f83"


# --------------------------------------------------------------------------------------------
# Python API: value mapping
# --------------------------------------------------------------------------------------------


def test_natural_value_mapping() -> None:
    when = datetime.datetime(2026, 11, 25, 9, 23, 31, 736000, UTC)
    u = uuid.UUID("b79bc914-de21-4e13-b8b2-bc47e85b7f0b")
    raw = encode_message(
        {
            "t": True,
            "f": False,
            "i32": -(2**31),
            "i64": 2**31,
            "s": "héllo",
            "b": b"\x00\x01",
            "ba": bytearray(b"ba"),
            "mv": memoryview(b"xmvx")[1:3],
            "when": when,
            "u": u,
        },
        b"p",
    )
    m = decode_message(raw)
    assert [(n, t) for n, t, _ in m.header_items()] == [
        ("t", 0), ("f", 1), ("i32", 4), ("i64", 5), ("s", 7), ("b", 6), ("ba", 6), ("mv", 6),
        ("when", 8), ("u", 9),
    ]  # fmt: skip
    assert m.headers == {
        "t": True,
        "f": False,
        "i32": -(2**31),
        "i64": 2**31,
        "s": "héllo",
        "b": b"\x00\x01",
        "ba": b"ba",
        "mv": b"mv",
        "when": when,
        "u": u,
    }


def test_typed_values_and_ranges() -> None:
    typed = [
        ("a", (HeaderType.BOOL_TRUE, True)),
        ("b", (HeaderType.BOOL_FALSE, False)),
        ("c", (HeaderType.BYTE, -128)),
        ("d", (HeaderType.SHORT, 32767)),
        ("e", (HeaderType.INTEGER, 1)),
        ("f", (HeaderType.LONG, 1)),
        ("g", (HeaderType.BYTE_ARRAY, b"x")),
        ("h", (HeaderType.STRING, "x")),
        ("i", (HeaderType.TIMESTAMP, -1)),
        ("j", (HeaderType.UUID, b"0123456789abcdef")),
        ("k", (8, datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, UTC))),
        ("l", (9, uuid.UUID(int=1))),
    ]
    m = Message(typed)
    assert [t for _, t, _ in m.header_items()] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 9]
    assert m.header("i") == datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, UTC)
    assert m.header_items()[10] == ("k", 8, -1)
    assert m.header("j") == uuid.UUID(bytes=b"0123456789abcdef")
    assert m.header("f") == 1
    bad = [
        (HeaderType.BYTE, 128),
        (HeaderType.BYTE, -129),
        (HeaderType.SHORT, 32768),
        (HeaderType.INTEGER, 2**31),
        (HeaderType.LONG, 2**63),
        (HeaderType.BOOL_TRUE, False),
        (HeaderType.UUID, b"short"),
        (10, 1),
        (-1, 1),
    ]
    for value in bad:
        with pytest.raises(InvalidArgumentError):
            encode_message({"x": value})
    for value in [
        (HeaderType.STRING, b"bytes"),
        (HeaderType.BYTE_ARRAY, "str"),
        (HeaderType.INTEGER, 1.0),
        (HeaderType.INTEGER, True),
        (HeaderType.BOOL_TRUE, 1),
        (HeaderType.UUID, 5),
        (1, 2, 3),
        ("7", "x"),
    ]:
        with pytest.raises(TypeError):
            encode_message({"x": value})
    with pytest.raises(InvalidArgumentError, match="does not fit in int64"):
        encode_message({"x": 2**63})
    with pytest.raises(InvalidArgumentError, match="naive datetime"):
        encode_message({"x": datetime.datetime(2020, 1, 1)})
    for value in (1.5, None, object(), [1], {"a": 1}):
        with pytest.raises(TypeError):
            encode_message({"x": value})


def test_header_containers_and_names() -> None:
    pairs = [("z", 1), ("a", 2), ("m", 3)]
    expected = encode_message(pairs)
    assert encode_message(dict(pairs)) == expected
    assert encode_message(tuple(pairs)) == expected
    assert encode_message(collections.OrderedDict(pairs)) == expected
    assert encode_message(types.MappingProxyType(dict(pairs))) == expected
    assert encode_message(iter(pairs)) == expected
    assert [n for n, _, _ in decode_message(expected).header_items()] == ["z", "a", "m"]
    assert (
        encode_message([])
        == encode_message({})
        == bytes.fromhex("000000100000000005c248eb7d98c8ff")
    )
    for bad_headers in ("ab", b"ab", 5, [("a",)], [("a", 1, 2)], [1]):
        with pytest.raises(TypeError):
            encode_message(bad_headers)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="names must be str"):
        encode_message({b"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="1 to 255 bytes"):
        encode_message({"": 1})
    with pytest.raises(InvalidArgumentError, match="1 to 255 bytes"):
        encode_message({"é" * 128: 1})  # 256 bytes of UTF-8
    assert decode_message(encode_message({"é" * 127 + "x": 1})).header("é" * 127 + "x") == 1
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        encode_message([("a", 1), ("a", 1)])
    with pytest.raises(UnicodeEncodeError):
        encode_message({"\udc80": 1})


def test_payload_buffers() -> None:
    want = encode_message({}, b"\x01\x00\x02\x00")
    assert encode_message({}, bytearray(b"\x01\x00\x02\x00")) == want
    assert encode_message({}, memoryview(b"..\x01\x00\x02\x00")[2:]) == want
    samples = np.array([1, 2], dtype="<i2")
    assert encode_message({}, memoryview(samples).cast("B")) == want
    with pytest.raises(BufferError):  # items must be bytes: cast first (copies nothing)
        encode_message({}, samples)
    assert encode_message({}) == encode_message({}, b"")
    with pytest.raises(BufferError):
        encode_message({}, memoryview(b"abcdef")[::2])
    with pytest.raises(TypeError):
        encode_message({}, "text")  # type: ignore[arg-type]


def test_message_object() -> None:
    payload = b"x" * 100
    m = Message({"a": 1, "b": "two"}, payload)
    assert m.payload is payload  # a bytes payload is kept, not copied
    assert m.payload is m.payload
    assert Message({"a": 1}, bytearray(b"q")).payload == b"q"
    assert m.headers == {"a": 1, "b": "two"}
    h = m.headers
    h["c"] = 3  # a copy: the message is unchanged
    assert m.headers == {"a": 1, "b": "two"}
    assert m.header("b") == "two"
    assert m.header("c") is None
    assert m.header("c", 0) == 0
    assert m == decode_message(m.encode())
    assert m != Message({"a": 1, "b": "two"}, payload + b"!")
    assert m != Message({"b": "two", "a": 1}, payload)  # header order is part of the message
    assert m != "not a message"
    assert hash(m) == hash(decode_message(m.encode()))
    assert len({m, decode_message(m.encode())}) == 1
    assert pickle.loads(pickle.dumps(m)) == m
    assert repr(m).startswith("Message(headers={'a': 1, 'b': 'two'}, payload=<100 bytes: b'xxx")
    assert repr(Message()) == "Message(headers={}, payload=b'')"
    with pytest.raises(AttributeError):
        m.payload = b""  # type: ignore[misc]
    with pytest.raises(TypeError):
        type("Sub", (Message,), {})


# --------------------------------------------------------------------------------------------
# Shared strings and the header caches (repeated blocks, repeated header dicts)
# --------------------------------------------------------------------------------------------

PAYLOAD_PART = {
    ":message-type": "event",
    ":event-type": "PayloadPart",
    "DataType": "BINARY",
    "CompletionState": "PARTIAL",
    ":content-type": "application/octet-stream",
}


def str_block(headers: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """The header block of string headers (a test's own encoder)."""
    items = headers.items() if isinstance(headers, dict) else headers
    out = b""
    for name, value in items:
        n, v = name.encode(), value.encode()
        out += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    return out


def test_headers_is_a_new_dict_on_every_access() -> None:
    # The same block many times over (the case the header cache serves), through both decoders:
    # every access gives a new dict, and changing one changes nothing else.
    wire = [encode_message(PAYLOAD_PART, bytes([i]) * i) for i in range(6)]
    messages = [decode_message(w) for w in wire] + decode_all(b"".join(wire))
    for m in messages:
        h = m.headers
        assert h == PAYLOAD_PART
        assert m.headers is not h
        h["DataType"] = "UTF8"
        del h[":event-type"]
        assert m.headers == PAYLOAD_PART
        assert m.header("DataType") == "BINARY"
        assert m.header("absent", 5) == 5
        assert m.header("absent") is None
    typed = {"flag": True, "n": (HeaderType.SHORT, 7), "big": 2**40, "s": "x"}
    for m in [decode_message(encode_message(typed)) for _ in range(4)]:
        h = m.headers
        h["n"] = 8
        assert m.headers == {"flag": True, "n": 7, "big": 2**40, "s": "x"}
        assert [t for _, t, _ in m.header_items()] == [0, 3, 5, 7]


def test_known_names_and_values_are_shared_interned_strings() -> None:
    a = decode_message(encode_message(PAYLOAD_PART, b"a")).headers
    b = decode_all(encode_message(PAYLOAD_PART, b"bb"))[0].headers
    for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
        assert ka is kb
        assert va is vb
        assert ka is sys.intern(ka)
        assert va is sys.intern(va)
    # Other strings come through as sent.
    for _ in range(4):
        assert decode_message(encode_message({"x-name": "vé"})).headers == {"x-name": "vé"}


def test_a_cached_block_vouches_for_identical_blocks_only() -> None:
    good = str_block({"DataType": "BINARY", "CompletionState": "PARTIAL"})
    for _ in range(4):  # seen, cached, then served from the cache
        assert decode_message(frame(good, b"p")).headers["DataType"] == "BINARY"
        assert decode_all(frame(good, b"p"))[0].header("CompletionState") == "PARTIAL"
    # Blocks of the same length: invalid UTF-8 one byte apart, then a duplicate name. Both are
    # checked as usual.
    bad_utf8 = good.replace(b"BINARY", b"BIN\xffRY")
    duplicate = str_block([("DataType", "BINARY"), ("DataType", "X" * 14)])
    assert len(bad_utf8) == len(duplicate) == len(good)
    for block, text in ((bad_utf8, "not valid UTF-8"), (duplicate, "duplicate header name")):
        with pytest.raises(MalformedMessageError, match=text):
            decode_message(frame(block, b"p"))
        with pytest.raises(MalformedMessageError, match=text):
            decode_all(frame(block, b"p"))


def test_encoding_repeated_header_dicts() -> None:
    # The same dict (the case the encode cache serves) encodes the same bytes every time, and
    # changes to it, or another dict with equal text, are encoded as they are.
    payload = b"\x01" * 100
    headers = dict(PAYLOAD_PART)
    for _ in range(4):
        assert encode_message(headers, payload) == frame(str_block(headers), payload)
        assert Message(headers, payload).encode() == frame(str_block(headers), payload)
    headers["DataType"] = "UTF8"
    for _ in range(3):
        assert encode_message(headers, payload) == frame(str_block(headers), payload)
    fresh = {"".join([k]): "".join([v]) for k, v in headers.items()}  # equal text, new objects
    assert fresh == headers
    assert encode_message(fresh, payload) == encode_message(headers, payload)
    reordered = dict(reversed(list(headers.items())))
    assert encode_message(reordered, payload) == frame(str_block(reordered), payload)

    class S(str):
        pass

    sub = {S(k): S(v) for k, v in headers.items()}
    for _ in range(3):
        assert encode_message(sub, payload) == encode_message(headers, payload)
    # Many dicts of fresh strings, each encoded a few times: old strings are freed and their
    # addresses reused by new ones with other text; every result must still be exact.
    for i in range(300):
        h = {"n": f"v{i}", f"k{i % 7}": str(i) * (i % 5)}
        for _ in range(2 + i % 2):
            assert encode_message(h, b"") == frame(str_block(h))


def test_codec_from_many_threads() -> None:
    # The caches are shared by all threads: results stay exact under concurrent use.
    def work(n: int) -> None:
        for i in range(400):
            h = dict(PAYLOAD_PART, DataType="UTF8" if (i + n) % 3 else "BINARY", P="x" * (i % 4))
            wire = encode_message(h, bytes([n]) * i)
            m = decode_message(wire)
            assert (m.headers, m.payload) == (h, bytes([n]) * i)
            assert wire == frame(str_block(h), bytes([n]) * i)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(work, n) for n in range(8)]:
            f.result()


def test_zero_length_everything() -> None:
    raw = encode_message({"s": "", "b": b"", "t": True}, b"")
    assert len(raw) == 16 + (1 + 1 + 1 + 2) * 2 + (1 + 1 + 1)
    m = decode_message(raw)
    assert m.header_items() == [("s", 7, ""), ("b", 6, b""), ("t", 0, True)]
    assert m.payload == b""
    assert decode_all(b"") == []
    assert decode_all(encode_message({}) * 3) == [Message()] * 3
    with pytest.raises(TruncatedMessageError):
        decode_message(b"")


def test_timestamps_outside_datetime_range() -> None:
    for ms in (-(2**63), 2**63 - 1, -62135596800001, 253402300800000):
        m = Message({"t": (HeaderType.TIMESTAMP, ms)})
        assert m.header("t") == ms  # int: datetime cannot hold it
        assert m.header_items() == [("t", 8, ms)]
    for ms in (-62135596800000, 253402300799999):
        dt = Message({"t": (HeaderType.TIMESTAMP, ms)}).header("t")
        assert isinstance(dt, datetime.datetime)
        assert encode_message({"t": dt}) == encode_message({"t": (8, ms)})


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_datetime_round_trip(when: datetime.datetime) -> None:
    ms = (when - datetime.datetime(1970, 1, 1, tzinfo=UTC)) // datetime.timedelta(milliseconds=1)
    m = decode_message(encode_message({"t": when}))
    assert m.header_items() == [("t", 8, ms)]
    assert m.header("t") == when.replace(microsecond=when.microsecond // 1000 * 1000)


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------


def test_limits() -> None:
    assert MAX_PAYLOAD_LENGTH == 16 * 1024 * 1024
    assert MAX_HEADERS_LENGTH == 128 * 1024
    assert MAX_HEADER_VALUE_LENGTH == 32767
    assert MAX_MESSAGE_LENGTH == 16 + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH
    big = bytes(MAX_PAYLOAD_LENGTH)
    raw = encode_message({"a": 1}, big)
    assert decode_message(raw).payload == big
    with pytest.raises(MessageTooLargeError, match="payload too large"):
        encode_message({}, big + b"!")
    assert decode_message(encode_message({"v": "x" * MAX_HEADER_VALUE_LENGTH})).header("v")
    with pytest.raises(MessageTooLargeError, match="header value too large"):
        encode_message({"v": "x" * (MAX_HEADER_VALUE_LENGTH + 1)})
    with pytest.raises(MessageTooLargeError, match="header value too large"):
        encode_message({"v": bytes(MAX_HEADER_VALUE_LENGTH + 1)})
    many = {f"h{i}": "x" * 30000 for i in range(5)}
    with pytest.raises(MessageTooLargeError, match="headers too large"):
        encode_message(many)


def test_decoder_limits_on_the_wire() -> None:
    # A value longer than 32767 bytes that fits in the header block.
    block = b"\x01v\x06\x80\x00" + bytes(0x8000)
    err = expect_error(frame(block), MessageTooLargeError)
    assert err.offset == 15
    # Header block over 128 KiB, payload over 16 MiB, message over the maximum: prelude only.
    for total, headers, what in (
        (MAX_HEADERS_LENGTH + 17, MAX_HEADERS_LENGTH + 1, "headers"),
        (MAX_PAYLOAD_LENGTH + 17, 0, "payload"),
        (2**32 - 1, 0, "message"),
    ):
        prelude = struct.pack(">II", total, headers)
        prelude += struct.pack(">I", zlib.crc32(prelude))
        decoder = EventStreamDecoder()
        with pytest.raises(MessageTooLargeError, match=f"{what} too large"):
            decoder.feed(prelude)
        assert decoder.buffered == 0  # refused before buffering the body


def test_header_faults_with_valid_crcs() -> None:
    cases = [
        (b"\x00", "name length is 0", 12),
        (b"\x01a", "no value type", 14),
        (b"\x01a\x0a", "unknown value type 0x0A", 14),
        (b"\x01a\x04\x00\x00", "cut off", 15),
        (b"\x01a\x09" + bytes(15), "cut off", 15),
        (b"\x01a\x07\x00", "cut off", 15),
        (b"\x01a\x07\x00\x02\xff\xfe", "not valid UTF-8", 17),
        (b"\x01\xff\x00", "name is not valid UTF-8", 13),
        (b"\x05ab", "runs past", 12),
        (b"\x01a\x00\x01b\x00\x01a\x01", 'duplicate header name "a"', 18),
    ]
    for block, text, offset in cases:
        err = expect_error(frame(block, b"payload"), MalformedMessageError)
        assert text in str(err), block
        assert err.offset == offset, block


def test_prelude_faults() -> None:
    def prelude(total: int, headers: int) -> bytes:
        p = struct.pack(">II", total, headers)
        return p + struct.pack(">I", zlib.crc32(p))

    err = expect_error(prelude(15, 0) + b"\x00" * 3, MalformedMessageError)
    assert "below the minimum" in str(err)
    err = expect_error(prelude(20, 5) + b"\x00" * 8, MalformedMessageError)
    assert err.offset == 4


def test_decode_message_wants_exactly_one() -> None:
    raw = encode_message({"a": "b"}, b"payload")
    for cut in range(len(raw)):
        with pytest.raises(TruncatedMessageError) as info:
            decode_message(raw[:cut])
        assert info.value.offset == 0
    with pytest.raises(MalformedMessageError, match="after the end") as info:
        decode_message(raw + raw)
    assert info.value.offset == len(raw)
    with pytest.raises(TypeError):
        decode_message("text")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Incremental decoder
# --------------------------------------------------------------------------------------------


def sample_stream(n: int) -> tuple[bytes, list[Message]]:
    messages = [
        Message({":event-type": f"E{i}", "n": (HeaderType.SHORT, i)}, bytes([i % 256]) * (i * 7))
        for i in range(n)
    ]
    return b"".join(m.encode() for m in messages), messages


def test_decoder_one_byte_pieces() -> None:
    data, messages = sample_stream(30)
    decoder = EventStreamDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
        assert decoder.offset + decoder.buffered == i + 1
    decoder.close()
    assert got == messages
    assert decoder.offset == len(data)
    assert decoder.buffered == 0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decoder_accepts_buffers(kind: Any) -> None:
    data, messages = sample_stream(5)
    decoder = EventStreamDecoder()
    assert decoder.feed(kind(data[:50])) + decoder.feed(kind(data[50:])) == messages
    decoder.close()


def test_decoder_truncation() -> None:
    data, _ = sample_stream(3)
    last = len(sample_stream(2)[0])
    for cut in (last + 1, last + 11, last + 12, last + 13, len(data) - 1):
        decoder = EventStreamDecoder()
        assert len(decoder.feed(data[:cut])) == 2
        assert decoder.buffered == cut - last
        with pytest.raises(TruncatedMessageError) as info:
            decoder.close()
        assert info.value.offset == last
    decoder = EventStreamDecoder()
    assert decoder.feed(b"") == []
    decoder.close()  # nothing fed, nothing missing


def test_decoder_error_after_good_messages_is_deferred() -> None:
    data, messages = sample_stream(3)
    corrupt = bytearray(data + messages[0].encode())
    corrupt[-1] ^= 0xFF
    decoder = EventStreamDecoder()
    assert decoder.feed(corrupt) == messages  # nothing lost
    with pytest.raises(ChecksumError) as first:
        decoder.feed(b"")
    assert first.value.offset == len(data)
    with pytest.raises(ChecksumError) as again:  # errors are final
        decoder.feed(messages[0].encode())
    assert again.value.offset == len(data)
    with pytest.raises(ChecksumError):
        decoder.close()
    assert "failed" in repr(decoder)


def test_error_offsets_count_from_first_byte_fed() -> None:
    data, _ = sample_stream(4)
    bad = bytearray(frame(b"\x01a\x0a"))
    decoder = EventStreamDecoder()
    decoder.feed(data[:7])
    decoder.feed(data[7:])
    assert decoder.feed(bytes(bad[:5])) == []
    with pytest.raises(MalformedMessageError) as info:
        decoder.feed(bytes(bad[5:]))
    assert info.value.offset == len(data) + 14


def test_many_messages_in_one_feed() -> None:
    one = [encode_message({"i": i}, i.to_bytes(4, "big")) for i in range(20_000)]
    data = b"".join(one)
    decoder = EventStreamDecoder()
    got = decoder.feed(data)
    decoder.close()
    assert len(got) == 20_000
    assert all(m.header("i") == i and m.payload == i.to_bytes(4, "big") for i, m in enumerate(got))
    # Same input with a partial message carried between two large feeds (the path that releases
    # the interpreter), split inside a message.
    cut = len(data) // 2 + 5
    decoder = EventStreamDecoder()
    got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    assert [m.header("i") for m in got] == list(range(20_000))


def test_large_messages_across_feeds() -> None:
    payloads = [bytes([n]) * size for n, size in enumerate((300_000, 5, 1_000_000, 200_000))]
    data = b"".join(encode_message({"n": n}, p) for n, p in enumerate(payloads))
    for step in (16_384, 250_000, 1_000_003, len(data)):
        decoder = EventStreamDecoder()
        got = []
        for i in range(0, len(data), step):
            got += decoder.feed(memoryview(data)[i : i + step])
        decoder.close()
        assert [m.payload for m in got] == payloads
        assert [m.header("n") for m in got] == [0, 1, 2, 3]
    assert decode_message(encode_message({}, payloads[2])).payload == payloads[2]


# --------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
typed_values = st.one_of(
    st.booleans().map(lambda b: (HeaderType.BOOL_TRUE if b else HeaderType.BOOL_FALSE, b)),
    st.integers(-(2**7), 2**7 - 1).map(lambda i: (HeaderType.BYTE, i)),
    st.integers(-(2**15), 2**15 - 1).map(lambda i: (HeaderType.SHORT, i)),
    st.integers(-(2**31), 2**31 - 1).map(lambda i: (HeaderType.INTEGER, i)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: (HeaderType.LONG, i)),
    st.binary(max_size=64).map(lambda b: (HeaderType.BYTE_ARRAY, b)),
    st.text(max_size=64).map(lambda s: (HeaderType.STRING, s)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: (HeaderType.TIMESTAMP, i)),
    st.uuids().map(lambda u: (HeaderType.UUID, u)),
)
header_lists = st.dictionaries(names, typed_values, max_size=12).map(lambda d: list(d.items()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(header_lists, st.binary(max_size=300)), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_round_trip_any_split(
    messages: list[tuple[list[tuple[str, tuple[HeaderType, Any]]], bytes]], cuts: list[int]
) -> None:
    wire = [encode_message(h, p) for h, p in messages]
    data = b"".join(wire)
    points = sorted({c % (len(data) + 1) for c in cuts})
    decoder = EventStreamDecoder()
    got: list[Message] = []
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        got += decoder.feed(data[a:b])
    decoder.close()
    assert len(got) == len(messages)
    for m, (headers, payload), raw in zip(got, messages, wire, strict=True):
        assert m.payload == payload
        items = m.header_items()
        assert [(n, t) for n, t, _ in items] == [(n, int(t)) for n, (t, _) in headers]
        for (_, t, v), (_, (_, want)) in zip(items, headers, strict=True):
            assert v == want
            assert isinstance(v, bool) == (t in (0, 1))
        assert m.encode() == raw
        assert reencode(m) == raw
        assert m == decode_message(raw)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_eventstream_errors(data: bytes) -> None:
    for call in (decode_message, decode_all):
        err = caught(call, data)
        if err is not None:
            assert err.offset is not None
            assert 0 <= err.offset <= len(data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=32))
def test_crc_fixed_garbage_header_blocks(block: bytes, payload: bytes) -> None:
    raw = frame(block, payload)
    err = caught(decode_message, raw)
    if err is None:
        m = decode_message(raw)
        assert m.encode() == raw
        assert reencode(m) == raw
    else:
        assert isinstance(err, MalformedMessageError | MessageTooLargeError)
        assert err.offset is not None
        assert 12 <= err.offset <= 12 + len(block)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_hostile_preludes(rest: bytes, total: int, headers: int) -> None:
    """Any declared lengths with a valid prelude CRC: a typed error or a wait for more bytes,
    never more buffering than was fed."""
    prelude = struct.pack(">II", total, headers)
    data = prelude + struct.pack(">I", zlib.crc32(prelude)) + rest
    decoder = EventStreamDecoder()
    err = caught(decoder.feed, data) or caught(decoder.close)
    if err is None:
        assert decoder.offset == len(data)
        assert decode_message(data).encode() == data
    assert decoder.buffered <= len(data)


def test_crc_error_reports_both_values() -> None:
    raw = bytearray(encode_message({"a": 1}, b"x"))
    raw[-4:] = b"\x00\x00\x00\x00"
    err = expect_error(bytes(raw), ChecksumError)
    computed = binascii.crc32(bytes(raw[:-4]))
    assert f"computed 0x{computed:08X}" in str(err)
    assert "expected 0x00000000" in str(err)
