"""SigV4 event signing: wrap one encoded PayloadPart into a signed envelope message (``:date`` +
``:chunk-signature``), chaining the signature, the way the SageMaker client does per event.

Peer: a hashlib/hmac implementation of the same algorithm (peers/sigv4_py.py), itself checked
against the captured SageMaker frame and the aws-c-auth vectors. Before timing, ours and the peer
sign the same chain of events from the same seed and must produce identical bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import harness
import ours
from harness import OURS, ROOT, Config
from peers import eventstream_struct as es
from peers import sigv4_py

from groups.codec import HEADERS

SIZES = (640, 3200, 65536)
QUICK_SIZES = (640,)

CREDS: dict[str, str] = {
    "secret_key": sigv4_py.SAGEMAKER_SECRET,
    "region": "us-west-2",
    "service": "sagemaker",
    "seed_signature": sigv4_py.SAGEMAKER_SEED,
}
DATE_MS = sigv4_py.SAGEMAKER_FRAME1_DATE_MS


def run(cfg: Config) -> dict[str, Any]:
    notes: list[str] = []
    vectors = ROOT.parent / "shared" / "vectors"
    passed = sigv4_py.check_reference_vectors(vectors if vectors.is_dir() else None)
    notes.append(f"peer checked against reference vectors: {', '.join(passed)}")
    factories: dict[str, Callable[[], Any]] = {}
    try:
        ours.event_signer(**CREDS)
        factories[OURS] = lambda: ours.event_signer(**CREDS)
    except ours.Unavailable as exc:
        notes.append(f"ours unavailable: {exc}")
    factories["hashlib+hmac"] = lambda: sigv4_py.PyEventSigner(**CREDS)
    verifiers: dict[str, Callable[[], Any]] = {}
    try:
        ours.event_verifier(**CREDS)
        verifiers[OURS] = lambda: ours.event_verifier(**CREDS)
    except ours.Unavailable as exc:
        notes.append(f"ours (verifier) unavailable: {exc}")
    verifiers["hashlib+hmac"] = lambda: sigv4_py.PyEventVerifier(**CREDS)

    # Same chain, same bytes: 4 events (the last one the empty end-of-stream frame).
    events = [es.encode(HEADERS, os.urandom(n)) for n in (31, 640, 3200)] + [b""]
    chains = {}
    for name, make in factories.items():
        s = make()
        chain = [bytes(s.sign(ev, DATE_MS + 301 * i)) for i, ev in enumerate(events[:-1])]
        end = getattr(s, "sign_end", None)  # ours refuses sign(b""); the end frame has its call
        date_end = DATE_MS + 301 * (len(events) - 1)
        chain.append(bytes(end(date_end) if end else s.sign(b"", date_end)))
        chains[name] = chain
    ref = chains["hashlib+hmac"]
    if ref[0][:4] != len(ref[0]).to_bytes(4, "big"):
        raise AssertionError("peer signer produced a malformed envelope")
    for name, chain in chains.items():
        if chain != ref:
            raise AssertionError(f"{name} signs the chain differently from hashlib+hmac")

    cases = []
    for size in QUICK_SIZES if cfg.quick else SIZES:
        inner = es.encode(HEADERS, os.urandom(size))
        ops = {name: _bind(make(), inner) for name, make in factories.items()}
        what = f"{size} B payload PayloadPart ({len(inner)} B inner message)"
        cases.append(
            harness.case(
                f"signing/sign/{size}",
                f"sign {size} B event",
                ops,
                work=f"sign + build envelope for one {what}, chained",
                check="4-event chain from the same seed identical byte for byte",
            )
        )
    chain_len = 16 if cfg.quick else 1024
    for size in QUICK_SIZES if cfg.quick else SIZES[:2]:
        signer = sigv4_py.PyEventSigner(**CREDS)
        inners = [es.encode(HEADERS, os.urandom(size)) for _ in range(4)]
        envs = [signer.sign(inners[i % 4], DATE_MS + i) for i in range(chain_len)]
        for name, make in verifiers.items():
            v = make()
            got = [bytes(v.verify(e)) for e in envs[:8]]
            if got != [inners[i % 4] for i in range(8)]:
                raise AssertionError(f"{name} verifier returns different inner messages")
            try:
                v.verify(envs[0])  # a replay must fail, or the verifier checks nothing
            except Exception:  # ours: SignatureMismatchError; peer: ValueError
                pass
            else:
                raise AssertionError(f"{name} verifier accepted a replayed event")
        cases.append(
            harness.case(
                f"signing/verify/{size}",
                f"verify {size} B event",
                {name: _bind_verify(make, envs) for name, make in verifiers.items()},
                work=f"verify one envelope of a {size} B PayloadPart in a chain of {chain_len} "
                "(a new verifier every chain_len ops; same cycling code for all)",
                check="same inner messages returned; a replayed event rejected",
            )
        )
    notes.append("the final empty frame (once per stream) is checked in the chain, not timed")
    return {"cases": harness.run_cases(cases, cfg), "notes": notes}


def _bind(signer: Any, inner: bytes) -> Callable[[], object]:
    sign = signer.sign
    return lambda: sign(inner, DATE_MS)


def _bind_verify(make: Callable[[], Any], envs: list[bytes]) -> Callable[[], object]:
    n = len(envs)
    state: list[Any] = [make(), 0]

    def op() -> object:
        i = state[1]
        if i == n:
            state[0], i = make(), 0
        state[1] = i + 1
        return state[0].verify(envs[i])

    return op
