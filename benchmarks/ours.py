"""Adapters from our public API (``sagebidi_perf.*``) to the shapes the benchmark groups use.

This is the one file to touch when a kernel's API changes. Each adapter hands out the *native
callables themselves* for the timed operation wherever the shapes allow (no Python wrapper
around our calls, so our number is the cost a user pays); anything needed only to compare
outputs lives in a separate ``normalize`` function that is never timed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OURS_NAME = "ours"


class Unavailable(Exception):
    """Our kernel (or the piece of it this benchmark needs) is not built or not importable."""


@dataclass(frozen=True)
class Codec:
    encode: Callable[[Any, bytes], bytes]
    decode: Callable[[bytes], Any]
    headers: Callable[[dict[str, Any]], Any]  # peer-style dict -> the encoder's header argument
    normalize: Callable[[Any], tuple[dict[str, Any], bytes]]  # decoded -> (headers, payload)
    detail: str


def eventstream_codec() -> Codec:
    try:
        from sagebidi_perf.eventstream import decode_message, encode_message
    except ImportError as exc:
        raise Unavailable(f"sagebidi_perf.eventstream: {exc}") from exc

    # Message.headers is built lazily (and copied on access); a decode that hands the caller
    # headers + payload, as every peer does, must pay for it: so the timed decode reads both.
    def decode(data: bytes) -> tuple[dict[str, Any], bytes]:
        m = decode_message(data)
        return m.headers, m.payload

    def normalize(d: tuple[dict[str, Any], bytes]) -> tuple[dict[str, Any], bytes]:
        return dict(d[0]), bytes(d[1])

    return Codec(
        encode=encode_message,
        decode=decode,
        headers=lambda h: h,
        normalize=normalize,
        detail="encode_message(dict, bytes) -> bytes; decode_message(bytes) then .headers and "
        ".payload",
    )


def event_signer(*, secret_key: str, region: str, service: str, seed_signature: str) -> Any:
    """Our ``EventSigner``: ``sign(inner, date_ms) -> bytes`` (the envelope), ``sign_end(date_ms)``
    for the final empty frame (``sign(b"")`` is refused)."""
    try:
        from sagebidi_perf.sigv4 import EventSigner
    except ImportError as exc:
        raise Unavailable(f"sagebidi_perf.sigv4: {exc}") from exc
    return EventSigner(
        secret_access_key=secret_key, region=region, service=service, seed_signature=seed_signature
    )


def event_verifier(*, secret_key: str, region: str, service: str, seed_signature: str) -> Any:
    """Our ``EventVerifier``: ``verify(outer) -> inner bytes``, in chain order."""
    try:
        from sagebidi_perf.sigv4 import EventVerifier
    except ImportError as exc:
        raise Unavailable(f"sagebidi_perf.sigv4: {exc}") from exc
    return EventVerifier(
        secret_access_key=secret_key, region=region, service=service, seed_signature=seed_signature
    )


def resampler(in_rate: int, out_rate: int, quality: str | None = None) -> Any:
    """A ``peers.audio.Resampler`` for ours: ``resample`` (whole buffer) and ``Resampler``
    streams (``process``/``flush``), float32 mono in and out; ``quality=None`` is our default
    ("hq"), named "ours"; another quality is named "ours <quality>"."""
    try:
        from sagebidi_perf.audio import Resampler, resample
    except ImportError as exc:
        raise Unavailable(f"sagebidi_perf.audio: {exc}") from exc
    from peers.audio import Resampler as Adapter

    kw: dict[str, Any] = {} if quality is None else {"quality": quality}
    name = OURS_NAME if quality is None else f"{OURS_NAME} {quality}"

    def whole(x: Any) -> Any:
        return resample(x, in_rate, out_rate, **kw)

    return Adapter(
        name,
        in_rate,
        out_rate,
        whole,
        lambda: Resampler(in_rate, out_rate, **kw),
        f"resample(x, in, out{', quality=' + repr(quality) if quality else ''}) and "
        f"Resampler(in, out).process/flush, float32",
    )


def chunker(frame_bytes: int) -> Callable[[Any], Any]:
    """Returns ``split(buffer) -> sequence of frames`` for fixed ``frame_bytes`` frames."""
    try:
        from sagebidi_perf.chunking import chunk_bytes
    except ImportError as exc:
        raise Unavailable(f"sagebidi_perf.chunking: {exc}") from exc
    return functools.partial(chunk_bytes, frame_bytes=frame_bytes)
