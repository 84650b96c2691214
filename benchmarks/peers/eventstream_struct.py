"""A minimal but complete AWS event-stream codec in pure Python: ``struct`` + ``zlib.crc32``.

Written as the strongest *simple* Python peer: precompiled ``struct.Struct`` objects, one
``bytes.join`` per message, chained CRCs instead of re-hashing, ``memoryview`` for the CRC over the
received bytes and a zero-copy payload view on decode. It is still honest work: every length is
bounded, both CRCs are checked, every header type (0-9) is decoded, duplicate names are rejected.
No per-message caching of any kind (a benchmark that skips work measures nothing).

Wire format: ``total u32be | headers_len u32be | prelude_crc u32be | headers | payload |
message_crc u32be`` (/work/shared/reference/sagemaker-bidi-protocol.md section 3.1).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "PeerCodecError",
    "Timestamp",
    "check_vectors",
    "decode",
    "encode",
    "encode_headers",
    "encode_raw",
]

MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 16 * 1024 * 1024
MAX_HEADER_VALUE_LENGTH = 32 * 1024 - 1

_PRELUDE = struct.Struct("!II")
_PRELUDE3 = struct.Struct("!III")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_I64 = struct.Struct("!q")
_TYPE_I32 = struct.Struct("!Bi")
_TYPE_I64 = struct.Struct("!Bq")


class PeerCodecError(ValueError):
    """Malformed, truncated, oversized or corrupted event-stream bytes."""


class Timestamp(int):
    """Header value of type 8 (int64 milliseconds since the epoch)."""


HeaderValue = bool | int | bytes | str


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """Encode a header block. ``int`` is int32, :class:`Timestamp` is type 8."""
    parts = []
    for name, value in headers.items():
        n = name.encode()
        ln = len(n)
        if not 0 < ln < 256:
            raise PeerCodecError(f"header name length {ln} out of range")
        tp = type(value)
        if tp is str:
            v = value.encode()  # type: ignore[union-attr]
            if len(v) > MAX_HEADER_VALUE_LENGTH:
                raise PeerCodecError("header value too long")
            parts.append(b"%c%b\x07%b%b" % (ln, n, _U16.pack(len(v)), v))
        elif tp is bytes:
            if len(value) > MAX_HEADER_VALUE_LENGTH:  # type: ignore[arg-type]
                raise PeerCodecError("header value too long")
            parts.append(b"%c%b\x06%b%b" % (ln, n, _U16.pack(len(value)), value))  # type: ignore[arg-type,str-format]
        elif tp is bool:
            parts.append(b"%c%b%c" % (ln, n, 0 if value else 1))
        elif tp is Timestamp:
            parts.append(b"%c%b%b" % (ln, n, _TYPE_I64.pack(8, value)))
        elif tp is int:
            parts.append(b"%c%b%b" % (ln, n, _TYPE_I32.pack(4, value)))
        else:
            raise PeerCodecError(f"unsupported header value type {tp.__name__}")
    out = b"".join(parts)
    if len(out) > MAX_HEADERS_LENGTH:
        raise PeerCodecError("headers too long")
    return out


def encode_raw(header_bytes: bytes, payload: bytes) -> bytes:
    """Frame an already encoded header block and a payload into one message (copies both)."""
    hlen = len(header_bytes)
    if hlen > MAX_HEADERS_LENGTH:
        raise PeerCodecError("headers too long")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise PeerCodecError("payload too long")
    prelude = _PRELUDE.pack(16 + hlen + len(payload), hlen)
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(header_bytes, zlib.crc32(head)))
    return b"".join((head, header_bytes, payload, _U32.pack(crc)))


def encode(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """Encode one message (copies the payload once, into the result)."""
    return encode_raw(encode_headers(headers), payload)


def _decode_headers(buf: bytes, pos: int, end: int) -> dict[str, HeaderValue]:
    out: dict[str, HeaderValue] = {}
    while pos < end:
        nlen = buf[pos]
        pos += 1
        if nlen == 0 or pos + nlen >= end:
            raise PeerCodecError(f"bad header name length at {pos - 1}")
        try:
            name = buf[pos : pos + nlen].decode()
        except UnicodeDecodeError as exc:
            raise PeerCodecError(f"header name not UTF-8 at {pos}") from exc
        pos += nlen
        t = buf[pos]
        pos += 1
        value: HeaderValue
        if t == 7 or t == 6:
            if pos + 2 > end:
                raise PeerCodecError(f"truncated header value length at {pos}")
            (vlen,) = _U16.unpack_from(buf, pos)
            pos += 2
            if pos + vlen > end:
                raise PeerCodecError(f"header value overruns the header block at {pos}")
            raw = buf[pos : pos + vlen]
            pos += vlen
            if t == 7:
                try:
                    value = raw.decode()
                except UnicodeDecodeError as exc:
                    raise PeerCodecError(f"header value not UTF-8 at {pos - vlen}") from exc
            else:
                value = raw
        elif t == 0:
            value = True
        elif t == 1:
            value = False
        else:
            size = (0, 0, 1, 2, 4, 8, 0, 0, 8, 16)[t] if t < 10 else 0
            if size == 0:
                raise PeerCodecError(f"unknown header type {t} at {pos - 1}")
            if pos + size > end:
                raise PeerCodecError(f"truncated header value at {pos}")
            if t == 2:
                value = _I8.unpack_from(buf, pos)[0]
            elif t == 3:
                value = _I16.unpack_from(buf, pos)[0]
            elif t == 4:
                value = _I32.unpack_from(buf, pos)[0]
            elif t == 5:
                value = _I64.unpack_from(buf, pos)[0]
            elif t == 8:
                value = Timestamp(_I64.unpack_from(buf, pos)[0])
            else:
                value = buf[pos : pos + 16]
            pos += size
        if name in out:
            raise PeerCodecError(f"duplicate header {name!r}")
        out[name] = value
    return out


def decode(data: bytes) -> tuple[dict[str, HeaderValue], memoryview]:
    """Decode exactly one message. The payload is a zero-copy view of ``data``."""
    n = len(data)
    if n < 16:
        raise PeerCodecError(f"truncated: {n} bytes, a message has at least 16")
    total, hlen, pcrc = _PRELUDE3.unpack_from(data, 0)
    mv = memoryview(data)
    if zlib.crc32(mv[:8]) != pcrc:
        raise PeerCodecError("prelude checksum mismatch")
    if total < 16 or hlen > total - 16:
        raise PeerCodecError("inconsistent lengths in the prelude")
    if hlen > MAX_HEADERS_LENGTH or total - 16 - hlen > MAX_PAYLOAD_LENGTH:
        raise PeerCodecError("message too large")
    if total != n:
        raise PeerCodecError(f"prelude says {total} bytes, got {n}")
    (mcrc,) = _U32.unpack_from(data, total - 4)
    if zlib.crc32(mv[: total - 4]) != mcrc:
        raise PeerCodecError("message checksum mismatch")
    headers = _decode_headers(data, 12, 12 + hlen)
    return headers, mv[12 + hlen : total - 4]


def check_vectors(vectors_dir: Path) -> dict[str, int]:
    """Run this peer over the official event-stream vectors: every positive decodes to the
    recorded headers/payload (and re-encodes to the same bytes where all header types are ones
    this encoder writes), every negative raises PeerCodecError. Raises AssertionError otherwise.
    """
    root = vectors_dir / "eventstream"
    counts = {"positive": 0, "negative": 0}
    go = root / "aws-sdk-go"
    for f in sorted((go / "encoded/positive").iterdir()):
        data = f.read_bytes()
        want = json.loads((go / "decoded/positive" / f.name).read_text())
        headers, payload = decode(data)
        assert bytes(payload) == base64.b64decode(want["payload"]), f.name
        assert len(headers) == len(want["headers"]), f.name
        for h in want["headers"]:
            got, t, v = headers[h["name"]], h["type"], h["value"]
            if t in (6, 9):
                v = base64.b64decode(v)
            elif t == 7:
                v = base64.b64decode(v).decode()
            assert got == v, f"{f.name}: {h['name']}"
        if all(h["type"] in (0, 1, 4, 6, 7, 8) for h in want["headers"]):
            assert encode(headers, bytes(payload)) == data, f"{f.name} re-encode"
        counts["positive"] += 1
    negatives = [*(go / "encoded/negative").iterdir(), *(root / "derived-recrc").iterdir()]
    negatives += [p for p in (root / "smithy-rs").iterdir() if p.name.startswith("invalid_")]
    negatives += list((root / "botocore/negative").iterdir())
    for f in (root / "smithy-rs").iterdir():
        if f.name.startswith("valid_"):
            decode(f.read_bytes())
            counts["positive"] += 1
    for f in sorted(negatives):
        if f.name in ("LICENSE", "NOTICE.txt"):
            continue
        try:
            decode(f.read_bytes())
        except PeerCodecError:
            counts["negative"] += 1
        else:
            raise AssertionError(f"{f} decoded but must be rejected")
    return counts
