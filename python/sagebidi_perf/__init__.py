"""sagebidi-perf: build, emulate and load-test SageMaker AI bidirectional-streaming endpoints.

The per-frame kernels (Rust) are importable from here; each has its own module with the rest
of its API: :mod:`sagebidi_perf.eventstream`, :mod:`sagebidi_perf.sigv4`,
:mod:`sagebidi_perf.chunking`, :mod:`sagebidi_perf.audio`, :mod:`sagebidi_perf.keepalive`,
:mod:`sagebidi_perf.websocket`. The container runtime is :mod:`sagebidi_perf.container` (Trio).
This package imports neither Trio nor Locust.
"""

from __future__ import annotations

from sagebidi_perf._native import __version__
from sagebidi_perf.chunking import chunk_audio, chunk_bytes, pacing_schedule
from sagebidi_perf.errors import (
    ChecksumError,
    EventStreamError,
    InvalidArgumentError,
    MalformedMessageError,
    MessageTooLargeError,
    SageBidiError,
    SignatureMismatchError,
    TruncatedMessageError,
)
from sagebidi_perf.eventstream import (
    EventStreamDecoder,
    HeaderType,
    decode_message,
    encode_message,
)
from sagebidi_perf.keepalive import Keepalive, KeepaliveAction
from sagebidi_perf.sigv4 import (
    EventSigner,
    EventVerifier,
    SignedRequest,
    VerifiedRequest,
    sign_request,
    verify_request,
)

__all__ = [
    "ChecksumError",
    "EventSigner",
    "EventStreamDecoder",
    "EventStreamError",
    "EventVerifier",
    "HeaderType",
    "InvalidArgumentError",
    "Keepalive",
    "KeepaliveAction",
    "MalformedMessageError",
    "MessageTooLargeError",
    "SageBidiError",
    "SignatureMismatchError",
    "SignedRequest",
    "TruncatedMessageError",
    "VerifiedRequest",
    "__version__",
    "chunk_audio",
    "chunk_bytes",
    "decode_message",
    "encode_message",
    "pacing_schedule",
    "sign_request",
    "verify_request",
]
