"""Streaming resampler: throughput (x real time) and quality, ours vs soxr HQ and scipy.

Ours twice: the default quality ("hq", named ``ours``), whose stopband starts at the output
Nyquist like soxr HQ's (>= 100 dB), and the stricter "vhq" (``ours vhq``, >= 127 dB).

Throughput: 10 s of float32 mono, 48 kHz -> 16 kHz and 44.1 kHz -> 16 kHz, as one buffer and as
a stream of 100 ms chunks (a fresh stream per run, flushed at the end). Quality, measured the
same way for every resampler (peers/audio.py): alias rejection of a 10 kHz tone, gain error at
1 kHz and 7 kHz, the worst rejection of tones swept between the output and the input Nyquist
(and from where >= 100 dB holds), streaming delay (impulse fed in 20 ms chunks), and agreement
with soxr HQ. Before timing, every output must agree with soxr's to better than -40 dB after time
alignment (same job done).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness
import ours
from harness import OURS, Config
from peers import audio

RATES = ((48_000, 16_000), (44_100, 16_000))
SECONDS = 10.0
QUICK_SECONDS = 0.5
STREAM_CHUNK_S = 0.1
AGREE_DB = -40.0
LIKE_SOXR = f"{OURS} vhq"


def _contestants(in_rate: int, out_rate: int, notes: list[str]) -> dict[str, audio.Resampler]:
    out: dict[str, audio.Resampler] = {}
    try:
        out[OURS] = ours.resampler(in_rate, out_rate)
        # Our strictest quality (>= 127 dB from the output Nyquist on); the default "hq" is the
        # like-for-like contestant for soxr HQ (>= 100 dB from the output Nyquist on).
        out[LIKE_SOXR] = ours.resampler(in_rate, out_rate, "vhq")
    except ours.Unavailable as exc:
        notes.append(f"ours unavailable: {exc}")
    out["soxr HQ"] = audio.soxr_hq(in_rate, out_rate)
    out["scipy poly"] = audio.scipy_poly(in_rate, out_rate)
    return out


def run(cfg: Config) -> dict[str, Any]:
    notes: list[str] = []
    cases: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    seconds = QUICK_SECONDS if cfg.quick else SECONDS
    pending: list[tuple[str, float, dict[str, audio.Resampler], dict[str, Any], Any, Any]] = []
    for in_rate, out_rate in RATES:
        tag = f"{in_rate / 1000:g}k->{out_rate / 1000:g}k"
        rs = _contestants(in_rate, out_rate, notes)
        notes += [f"{r.name}: {r.detail}" for r in rs.values() if r.detail]
        x = audio.test_signal(in_rate, seconds)
        chunk = round(STREAM_CHUNK_S * in_rate)
        ref = rs["soxr HQ"].whole(x)
        agree: dict[str, Any] = {}
        for name, r in rs.items():
            err, _lag = audio.aligned_error_db(ref, r.whole(x))
            agree[name] = round(err, 1)
            if err > AGREE_DB:
                raise AssertionError(f"{name} {tag} output differs from soxr HQ: {err:.1f} dB")
            if r.stream is not None:
                err_s, _ = audio.aligned_error_db(ref, audio.stream_all(r, x, chunk))
                agree[f"{name} stream"] = round(err_s, 1)
                if err_s > AGREE_DB:
                    raise AssertionError(f"{name} {tag} stream differs from soxr: {err_s:.1f} dB")
        whole_ops = {n: _bind_whole(r, x) for n, r in rs.items()}
        stream_ops = {n: _bind_stream(r, x, chunk) for n, r in rs.items() if r.stream}
        c_whole = harness.case(
            f"resample/whole/{in_rate}-{out_rate}",
            f"{tag} whole {seconds:g} s",
            whole_ops,
            work=f"resample {seconds:g} s float32 mono as one buffer",
            check=f"output agrees with soxr HQ (dB): {agree}",
            extra={"audio_seconds": seconds},
        )
        c_stream = harness.case(
            f"resample/stream/{in_rate}-{out_rate}",
            f"{tag} stream 100 ms",
            stream_ops,
            work=f"resample {seconds:g} s in 100 ms chunks (new stream, flush at end)",
            check="streamed output agrees with soxr HQ",
            extra={"audio_seconds": seconds},
        )
        cases += [c_whole, c_stream]
        pending.append((tag, seconds, rs, agree, c_whole, c_stream))
    harness.run_cases(cases, cfg)
    for tag, seconds, rs, agree, c_whole, c_stream in pending:
        for name, r in rs.items():
            vals: dict[str, Any] = {
                "xRT_whole": seconds * 1e9 / c_whole["results"][name]["min_ns"],
            }
            if name in c_stream["results"]:
                vals["xRT_stream"] = seconds * 1e9 / c_stream["results"][name]["min_ns"]
            vals["alias_rej_10k_dB"] = audio.alias_rejection_db(r)
            vals.update(audio.alias_sweep(r, 0.5 if cfg.quick else 1.0))
            vals["gain_1k_dB"] = audio.passband_error_db(r)
            vals["gain_7k_dB"] = audio.passband_error_db(r, 7000.0)
            if r.stream is not None:
                d = audio.streaming_delay(r)
                vals["delay_mean_ms"] = d["delay_mean_ms"]
                vals["delay_max_ms"] = d["delay_max_ms"]
                vals["peak_offset_ms"] = d["peak_offset_ms"]
            vals["vs_soxr_dB"] = agree[name]
            metrics.append(
                {"id": f"resample/quality/{tag}/{name}", "title": f"{tag} {name}", "values": vals}
            )
            if name in (OURS, LIKE_SOXR):
                targets += _targets(name, tag, vals, c_whole, c_stream)
    notes = list(dict.fromkeys(notes))
    return {"cases": cases, "metrics": metrics, "notes": notes, "targets": targets}


def _speedup(case: dict[str, Any], name: str, peer: str) -> float:
    """best(peer) / best(name): > 1 when ``name`` is faster."""
    res = case["results"]
    if name not in res or peer not in res:
        return 0.0
    return float(res[peer]["min_ns"] / res[name]["min_ns"])


def _targets(
    name: str, tag: str, vals: dict[str, Any], c_whole: dict[str, Any], c_stream: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's resampler targets, for our default and for our like-for-like quality."""
    who = f"resampler {tag} ({name})"
    out = [
        _target(f"{who} whole throughput vs soxr HQ", _speedup(c_whole, name, "soxr HQ"), ">=", 1),
        _target(
            f"{who} stream throughput vs soxr HQ", _speedup(c_stream, name, "soxr HQ"), ">=", 1
        ),
        _target(f"{who} alias rejection 10 kHz (dB)", vals["alias_rej_10k_dB"], ">=", 100.0),
        _target(
            f"{who} worst alias rejection above Nyquist (dB)",
            vals["alias_rej_worst_dB"],
            ">=",
            100.0,
        ),
    ]
    if "delay_max_ms" in vals:
        out.append(_target(f"{who} streaming delay max (ms)", vals["delay_max_ms"], "<=", 5.0))
    return out


def _target(name: str, value: float, op: str, limit: float) -> dict[str, Any]:
    ok = value >= limit if op == ">=" else value <= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "pass": bool(ok)}


def _bind_whole(r: audio.Resampler, x: Any) -> Callable[[], object]:
    f = r.whole
    return lambda: f(x)


def _bind_stream(r: audio.Resampler, x: Any, chunk: int) -> Callable[[], object]:
    return lambda: audio.stream_all(r, x, chunk)
