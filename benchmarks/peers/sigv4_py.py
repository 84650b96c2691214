"""Chained SigV4 event signing (``AWS4-HMAC-SHA256-PAYLOAD``) in pure Python: hashlib + hmac.

The algorithm of /work/shared/reference/sagemaker-bidi-protocol.md section 4.1: for each event,
string to sign = algorithm, amz-date, scope, prior signature (hex), hex(sha256(encoded ``:date``
header)), hex(sha256(inner message)); signature = HMAC-SHA256(signing key, string to sign); the
outer message carries ``:date`` (type 8) and ``:chunk-signature`` (type 6, 32 raw bytes) and the
inner message as payload. Written as the strongest simple peer: ``hmac.digest`` (the one-shot C
path), the derived signing key cached per day (as every SDK does), no other caching.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import time
from pathlib import Path

from peers import eventstream_struct as es

__all__ = ["PyEventSigner", "PyEventVerifier", "check_reference_vectors"]

_DATE_HEADER = struct.Struct("!B5sBq")
_SIG_HEADER_PREFIX = b"\x10:chunk-signature\x06\x00\x20"


def _signing_key(secret: str, date8: str, region: str, service: str) -> bytes:
    k = hmac.digest(b"AWS4" + secret.encode(), date8.encode(), "sha256")
    k = hmac.digest(k, region.encode(), "sha256")
    k = hmac.digest(k, service.encode(), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


class PyEventSigner:
    """Signs a stream of inner messages, chaining each signature into the next."""

    def __init__(self, *, secret_key: str, region: str, service: str, seed_signature: str) -> None:
        self._secret = secret_key
        self._region = region
        self._service = service
        self.prior_signature = seed_signature
        self._keys: dict[str, bytes] = {}

    def signature(self, payload: bytes, date_ms: int) -> tuple[bytes, bytes]:
        """Sign one event; return (raw 32-byte signature, encoded ``:date`` header) and chain."""
        date_header = _DATE_HEADER.pack(5, b":date", 8, date_ms)
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(date_ms // 1000))
        date8 = amz_date[:8]
        key = self._keys.get(date8)
        if key is None:
            key = self._keys[date8] = _signing_key(self._secret, date8, self._region, self._service)
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                amz_date,
                f"{date8}/{self._region}/{self._service}/aws4_request",
                self.prior_signature,
                hashlib.sha256(date_header).hexdigest(),
                hashlib.sha256(payload).hexdigest(),
            )
        ).encode()
        sig = hmac.digest(key, string_to_sign, "sha256")
        self.prior_signature = sig.hex()
        return sig, date_header

    def sign(self, payload: bytes, date_ms: int) -> bytes:
        """Sign one event and return the outer (envelope) message; copies ``payload`` once."""
        sig, date_header = self.signature(payload, date_ms)
        return es.encode_raw(date_header + _SIG_HEADER_PREFIX + sig, payload)


def _amz_to_ms(amz: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(amz, "%Y%m%dT%H%M%SZ")) * 1000


# The SageMaker capture of section 4.3/4.4: the first DATA frame, byte for byte.
SAGEMAKER_SEED = "e353b15e1ddd1e349c2cdfcac05f48a5d0eb7ae79e7e3581cca2f15966f26cfe"
SAGEMAKER_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SAGEMAKER_FRAME1 = bytes.fromhex(
    "0000010600000043ceebe946053a6461746508000001a212047518103a6368756e6b2d7369676e6174757265"
    "0600204f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545000000b300000084d8"
    "90ea940d3a6d6573736167652d747970650700056576656e740b3a6576656e742d7479706507000b5061796c"
    "6f616450617274084461746154797065070004555446380f436f6d706c6574696f6e5374617465070008434f"
    "4d504c4554450d3a636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d737472"
    "65616d7b2274797065223a2268656c6c6f222c2274657874223a226669727374227d979aaf57e61ec341"
)
SAGEMAKER_FRAME1_DATE_MS = 1795598611736


def check_reference_vectors(vectors_dir: Path | None) -> list[str]:
    """Re-derive the reference signatures with this peer; return the names of the checks passed.

    Raises AssertionError on any mismatch: a peer that signs differently is not a peer.
    """
    passed = []
    signer = PyEventSigner(
        secret_key=SAGEMAKER_SECRET,
        region="us-west-2",
        service="sagemaker",
        seed_signature=SAGEMAKER_SEED,
    )
    inner = SAGEMAKER_FRAME1[79:-4]
    assert signer.sign(inner, SAGEMAKER_FRAME1_DATE_MS) == SAGEMAKER_FRAME1, "sagemaker frame 1"
    passed.append("sagemaker-capture-frame-1")
    if vectors_dir is not None and (vectors_dir / "sigv4/event-stream-signing.json").is_file():
        data = json.loads((vectors_dir / "sigv4/event-stream-signing.json").read_text())
        for vec in data["vectors"]:
            if "events" not in vec:
                continue
            s = PyEventSigner(
                secret_key=vec["credentials"]["secret_access_key"],
                region=vec["region"],
                service=vec["service"],
                seed_signature=vec["request"]["seed_signature"],
            )
            for i, ev in enumerate(vec["events"]):
                sig, _ = s.signature(ev["payload"].encode(), _amz_to_ms(ev["date"]))
                assert sig.hex() == ev["signature"], f"{vec['source']} event {i}"
            passed.append(vec["source"].split()[0])
    return passed


class PyEventVerifier:
    """Verifies a chain of signed envelopes in order (the gateway side); returns the inner message
    (a zero-copy view). Any mismatch raises ValueError and leaves the chain where it was."""

    def __init__(self, *, secret_key: str, region: str, service: str, seed_signature: str) -> None:
        self._signer = PyEventSigner(
            secret_key=secret_key, region=region, service=service, seed_signature=seed_signature
        )

    def verify(self, outer: bytes) -> memoryview:
        headers, payload = es.decode(outer)
        date_ms = headers.get(":date")
        sig = headers.get(":chunk-signature")
        if len(headers) != 2 or type(date_ms) is not es.Timestamp or type(sig) is not bytes:
            raise ValueError("not a signed envelope (:date, :chunk-signature)")
        prior = self._signer.prior_signature
        expected, _ = self._signer.signature(payload, date_ms)  # type: ignore[arg-type]
        if not hmac.compare_digest(expected, sig):
            self._signer.prior_signature = prior
            raise ValueError("event signature mismatch")
        return payload
