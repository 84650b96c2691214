"""AWS Signature Version 4 for SageMaker bidirectional streams (implemented in Rust).

Requests
    :func:`sign_request` signs an HTTP request (``Authorization`` header) and returns the
    canonical request, string to sign and signature; :func:`presign_request` signs it in the query
    string instead. :func:`verify_request` checks what a server received (``:authority`` stands in
    for ``host``) against a credentials lookup, the expected region and service and a clock skew
    bound, and raises :class:`~sagebidi_perf.errors.SignatureMismatchError` with a message that
    says what is wrong (never the expected signature).

Events
    A request body of ``x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-EVENTS`` is a chain of
    signed envelopes, seeded with the request signature. :class:`EventSigner` wraps each encoded
    inner event-stream message into an outer message with ``:date`` and ``:chunk-signature``
    headers and ends the stream with :meth:`EventSigner.sign_end` (an 83-byte empty frame).
    :class:`EventVerifier` checks the chain from whole messages (:meth:`EventVerifier.verify`)
    or raw HTTP/2 DATA bytes (:meth:`EventVerifier.feed`); :meth:`EventVerifier.finish` reports
    whether the final frame came (clients before 0.12 send none, which is not an error).

Example::

    signed = sign_request(method="POST", path="/endpoints/e/invocations-bidirectional-stream",
                          headers=[("host", "localhost:8443"), ...],
                          payload_hash=STREAMING_EVENTS_PAYLOAD, content_sha256_header=True,
                          access_key_id=key, secret_access_key=secret, region="us-west-2",
                          service="sagemaker", amz_date=amz_date())
    signer = signed.event_signer()
    frame = signer.sign(encode_message(headers, payload))      # outer message bytes
    # server side
    verified = verify_request(method=..., path=..., headers=received, credentials={key: secret},
                              region="us-west-2", service="sagemaker")
    verifier = verified.event_verifier()
    for inner in verifier.feed(data_frame_bytes): ...
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from sagebidi_perf._native import (
    SIGV4_DEFAULT_MAX_SKEW_SECONDS,
    SIGV4_EMPTY_SHA256,
    SIGV4_ENVELOPE_OVERHEAD,
    SIGV4_STREAMING_EVENTS_PAYLOAD,
    SIGV4_UNSIGNED_PAYLOAD,
    EventSigner,
    EventVerifier,
    PresignedRequest,
    SignedRequest,
    VerifiedRequest,
    date_header_bytes,
    derive_signing_key,
    event_string_to_sign,
    presign_request,
    sign_event_raw,
    sign_request,
    verify_request,
)

__all__ = [
    "DEFAULT_MAX_SKEW_SECONDS",
    "EMPTY_SHA256",
    "ENVELOPE_OVERHEAD",
    "STREAMING_EVENTS_PAYLOAD",
    "UNSIGNED_PAYLOAD",
    "EventSigner",
    "EventVerifier",
    "PresignedRequest",
    "SignedRequest",
    "VerifiedRequest",
    "amz_date",
    "date_header_bytes",
    "derive_signing_key",
    "event_string_to_sign",
    "payload_sha256",
    "presign_request",
    "sign_event_raw",
    "sign_request",
    "verify_request",
]

#: ``x-amz-content-sha256`` of a request whose body is a signed event stream.
STREAMING_EVENTS_PAYLOAD: str = SIGV4_STREAMING_EVENTS_PAYLOAD
#: ``x-amz-content-sha256`` of a request whose body is not signed.
UNSIGNED_PAYLOAD: str = SIGV4_UNSIGNED_PAYLOAD
#: Hex SHA-256 of the empty body.
EMPTY_SHA256: str = SIGV4_EMPTY_SHA256
#: Default bound on ``|x-amz-date - now|`` in :func:`verify_request` (AWS: five minutes).
DEFAULT_MAX_SKEW_SECONDS: float = SIGV4_DEFAULT_MAX_SKEW_SECONDS
#: Bytes an outer (signed) message adds around its inner message.
ENVELOPE_OVERHEAD: int = SIGV4_ENVELOPE_OVERHEAD


def amz_date(when: datetime | float | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``when`` (an aware ``datetime`` or seconds since the epoch;
    default now), the form of ``x-amz-date``."""
    if when is None:
        seconds = time.time()
    elif isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("naive datetime; give it a timezone (e.g. datetime.timezone.utc)")
        seconds = when.timestamp()
    else:
        seconds = float(when)
    d = datetime.fromtimestamp(int(seconds // 1), tz=UTC)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}T{d.hour:02d}{d.minute:02d}{d.second:02d}Z"


def payload_sha256(body: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of a request body: the ``payload_hash`` of a signed (non-streaming) body."""
    return hashlib.sha256(body).hexdigest()
