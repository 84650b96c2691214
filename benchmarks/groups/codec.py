"""Event-stream codec: encode, decode and encode+decode of SageMaker ``PayloadPart`` messages.

Payloads of 640 B (20 ms of 16 kHz int16 audio), 3200 B (100 ms) and 64 KiB, under the five
headers the SageMaker client sends. Peers, each in this same process: a struct+zlib pure-Python
codec (encode and decode), botocore's ``EventStreamBuffer`` (decode only; its encode column is the
struct codec's) and, in the Python 3.12 side run, smithy-aws-event-stream. Before timing, every
encoder's bytes must equal the struct codec's byte for byte and every decoder must give back the
same headers and payload.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import harness
import ours
from harness import OURS, ROOT, Config
from peers import eventstream_others as others
from peers import eventstream_struct as es

SIZES = (640, 3200, 65536)
QUICK_SIZES = (64, 640)

HEADERS: dict[str, Any] = {
    ":message-type": "event",
    ":event-type": "PayloadPart",
    "DataType": "BINARY",
    "CompletionState": "PARTIAL",
    ":content-type": "application/octet-stream",
}


def _plain(headers: Any) -> dict[str, Any]:
    return {k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in dict(headers).items()}


def run(cfg: Config) -> dict[str, Any]:
    notes: list[str] = []
    Enc = Callable[[Any, bytes], bytes]
    Dec = Callable[[bytes], Any]
    # name -> (encode or None, decode or None, header argument builder, normalize decoded)
    impls: dict[str, tuple[Enc | None, Dec | None, Callable[[Any], Any], Callable[[Any], Any]]] = {}
    try:
        c = ours.eventstream_codec()
        impls[OURS] = (c.encode, c.decode, c.headers, c.normalize)
        notes.append(f"ours: {c.detail}")
    except ours.Unavailable as exc:
        notes.append(f"ours unavailable: {exc}")

    def ident(x: Any) -> Any:
        return x

    def tup(d: Any) -> tuple[dict[str, Any], bytes]:
        return _plain(d[0]), bytes(d[1])

    impls["struct+zlib"] = (es.encode, es.decode, ident, tup)
    vectors = ROOT.parent / "shared" / "vectors"
    if vectors.is_dir():
        counts = es.check_vectors(vectors)
        notes.append(f"struct+zlib peer checked on the official vectors: {counts}")
    try:
        _, bdec = others.botocore_codec()
        impls["botocore"] = (None, bdec, ident, tup)
        notes.append("botocore has no encoder: its encode+decode uses the struct+zlib encoder")
    except ImportError as exc:
        notes.append(f"botocore unavailable: {exc}")
    try:
        senc, sdec = others.smithy_codec()
        impls["smithy"] = (senc, sdec, ident, tup)
    except ImportError as exc:
        notes.append(f"smithy-aws-event-stream unavailable here: {exc}")

    cases = []
    for size in QUICK_SIZES if cfg.quick else SIZES:
        payload = os.urandom(size)
        wire = es.encode(HEADERS, payload)
        enc_ops: dict[str, Callable[[], object]] = {}
        dec_ops: dict[str, Callable[[], object]] = {}
        rt_ops: dict[str, Callable[[], object]] = {}
        for name, (enc, dec, mk_headers, norm) in impls.items():
            hdr = mk_headers(HEADERS)
            if enc is not None:
                got = enc(hdr, payload)
                if bytes(got) != wire:
                    raise AssertionError(f"{name} encodes {size} B differently from struct+zlib")
                enc_ops[name] = _bind_enc(enc, hdr, payload)
            if dec is not None:
                h, p = norm(dec(wire))
                if h != HEADERS or p != payload:
                    raise AssertionError(f"{name} decodes {size} B to different headers/payload")
                dec_ops[name] = _bind_dec(dec, wire)
            # encode+decode: a peer without an encoder uses the struct encoder
            e = enc if enc is not None else es.encode
            d = dec if dec is not None else es.decode
            eh = hdr if enc is not None else HEADERS
            h, p = norm(d(e(eh, payload)))
            if h != HEADERS or p != payload:
                raise AssertionError(f"{name} encode+decode of {size} B does not round-trip")
            rt_ops[name] = _bind_rt(e, d, eh, payload)
        msg = f"{size} B payload ({len(wire)} B message)"
        cases.append(
            harness.case(
                f"codec/encode/{size}",
                f"encode {size} B",
                enc_ops,
                work=f"encode one PayloadPart, {msg}, 5 string headers",
                check="encoded bytes identical to struct+zlib",
            )
        )
        cases.append(
            harness.case(
                f"codec/decode/{size}",
                f"decode {size} B",
                dec_ops,
                work=f"decode one {msg} with both CRC checks",
                check="decoded headers and payload equal the input",
            )
        )
        cases.append(
            harness.case(
                f"codec/roundtrip/{size}",
                f"encode+decode {size} B",
                rt_ops,
                work=f"encode then decode one {msg}",
                check="round trip gives back the input",
            )
        )
    harness.run_cases(cases, cfg)
    return {"cases": cases, "notes": notes, "peer_versions": others.versions()}


def _bind_enc(enc: Callable[[Any, bytes], bytes], h: Any, p: bytes) -> Callable[[], object]:
    return lambda: enc(h, p)


def _bind_dec(dec: Callable[[bytes], Any], wire: bytes) -> Callable[[], object]:
    return lambda: dec(wire)


def _bind_rt(
    enc: Callable[[Any, bytes], bytes], dec: Callable[[bytes], Any], h: Any, p: bytes
) -> Callable[[], object]:
    return lambda: dec(enc(h, p))
