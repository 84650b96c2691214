"""Resampler peers (soxr HQ, scipy ``resample_poly``) and the quality measurements applied, the
same way, to every resampler (ours included).

A resampler adapter has ``whole(x) -> y`` (one buffer, float32 mono) and optionally
``stream() -> obj`` where ``obj.process(chunk) -> y`` and ``obj.flush() -> y``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Resampler",
    "Stream",
    "alias_rejection_db",
    "alias_sweep",
    "aligned_error_db",
    "passband_error_db",
    "scipy_poly",
    "soxr_hq",
    "stream_all",
    "streaming_delay",
    "test_signal",
    "tone",
]


class Stream(Protocol):
    def process(self, chunk: np.ndarray) -> Any: ...
    def flush(self) -> Any: ...


@dataclass(frozen=True)
class Resampler:
    name: str
    in_rate: int
    out_rate: int
    whole: Callable[[np.ndarray], Any]
    stream: Callable[[], Stream] | None = None
    detail: str = ""


class _SoxrStream:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        import soxr

        self._rs = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        self._empty = np.zeros(0, dtype=np.float32)

    def process(self, chunk: np.ndarray) -> Any:
        return self._rs.resample_chunk(chunk)

    def flush(self) -> Any:
        return self._rs.resample_chunk(self._empty, last=True)


def soxr_hq(in_rate: int, out_rate: int) -> Resampler:
    import soxr

    def whole(x: np.ndarray) -> Any:
        return soxr.resample(x, in_rate, out_rate, quality="HQ")

    return Resampler(
        "soxr HQ",
        in_rate,
        out_rate,
        whole,
        lambda: _SoxrStream(in_rate, out_rate),
        f"soxr {soxr.__version__} quality='HQ' float32",
    )


def scipy_poly(in_rate: int, out_rate: int) -> Resampler:
    from scipy.signal import resample_poly

    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g

    def whole(x: np.ndarray) -> Any:
        return resample_poly(x, up, down)

    return Resampler(
        "scipy poly",
        in_rate,
        out_rate,
        whole,
        None,
        f"scipy.signal.resample_poly(x, {up}, {down}) default window ('kaiser', 5.0); "
        "whole buffer only",
    )


def stream_all(r: Resampler, x: np.ndarray, chunk: int) -> np.ndarray:
    assert r.stream is not None
    s = r.stream()
    parts = [s.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(s.flush())
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- quality


def tone(rate: int, freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _steady(y: np.ndarray, rate: int, trim_s: float = 0.2) -> np.ndarray:
    k = int(trim_s * rate)
    return np.asarray(y[k : len(y) - k], dtype=np.float64)


def alias_rejection_db(r: Resampler, freq: float = 10_000.0, seconds: float = 2.0) -> float:
    """Input tone above the output Nyquist: rejection = 20 log10(input rms / output rms), over
    the steady part (0.2 s trimmed at both ends). Everything left in the output counts (alias,
    leakage, noise), which makes this a conservative figure."""
    amp = 0.5
    y = _steady(r.whole(tone(r.in_rate, freq, seconds, amp)), r.out_rate)
    rms = float(np.sqrt(np.mean(y * y)))
    return 20 * math.log10((amp / math.sqrt(2)) / max(rms, 1e-30))


def alias_sweep(r: Resampler, seconds: float = 1.0) -> dict[str, Any]:
    """Rejection of tones between the output Nyquist and the input Nyquist: the worst one, where
    it is, and the lowest frequency from which every swept tone is rejected by >= 100 dB.
    (Catches a transition band that runs past the output Nyquist: what aliases back into the
    top of the passband.)"""
    nyq_out, nyq_in = r.out_rate / 2, r.in_rate / 2
    freqs = [nyq_out * f for f in (1.01, 1.03, 1.06, 1.1, 1.15, 1.2, 1.3, 1.5, 2.0)]
    freqs += [nyq_in * f for f in (0.8, 0.95)]
    freqs = sorted(f for f in freqs if nyq_out < f < nyq_in)
    rej = [alias_rejection_db(r, f, seconds) for f in freqs]
    worst = min(range(len(rej)), key=rej.__getitem__)
    edge = next((f for i, f in enumerate(freqs) if all(x >= 100.0 for x in rej[i:])), None)
    return {
        "alias_rej_worst_dB": rej[worst],
        "alias_rej_worst_Hz": freqs[worst],
        "stopband_100dB_from_Hz": edge,
    }


def passband_error_db(r: Resampler, freq: float = 1_000.0, seconds: float = 1.0) -> float:
    """Gain at ``freq`` (least-squares sine fit over the steady part) in dB; 0 is perfect."""
    amp = 0.5
    y = r.whole(tone(r.in_rate, freq, seconds, amp))
    k = int(0.2 * r.out_rate)
    seg = np.asarray(y[k : len(y) - k], dtype=np.float64)
    t = (np.arange(len(seg)) + k) / r.out_rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    return 20 * math.log10(math.hypot(*coef) / amp)


def _peak(y: np.ndarray) -> float:
    """Sub-sample position of the largest |y| (parabolic interpolation)."""
    a = np.abs(np.asarray(y, dtype=np.float64))
    i = int(np.argmax(a))
    if 0 < i < len(a) - 1:
        lo, c, hi = a[i - 1], a[i], a[i + 1]
        den = lo - 2 * c + hi
        if den != 0:
            return float(i + 0.5 * (lo - hi) / den)
    return float(i)


def streaming_delay(r: Resampler, chunk_s: float = 0.02, seconds: float = 0.5) -> dict[str, Any]:
    """Delay from an input sample arriving to its output being emitted, measured identically for
    every streaming resampler: feed an impulse at t0 in ``chunk_s`` chunks; after every chunk,
    ``withheld = inputs_fed * out/in - outputs_emitted`` (samples the resampler still holds) and
    ``offset = output peak position - t0 * out_rate`` (filter delay left in the output, 0 for a
    delay-compensated resampler). delay = (withheld + offset) / out_rate, mean and max over chunk
    boundaries."""
    assert r.stream is not None
    n = round(seconds * r.in_rate)
    i0 = n // 2
    x = np.zeros(n, dtype=np.float32)
    x[i0] = 1.0
    chunk = round(chunk_s * r.in_rate)
    s = r.stream()
    ratio = r.out_rate / r.in_rate
    parts = []
    withheld = []
    fed = emitted = 0
    for i in range(0, n, chunk):
        y = s.process(x[i : i + chunk])
        parts.append(y)
        fed += len(x[i : i + chunk])
        emitted += len(y)
        withheld.append(fed * ratio - emitted)
    parts.append(s.flush())
    out = np.concatenate(parts)
    offset = float(_peak(out) - i0 * ratio)
    lat = [(w + offset) / r.out_rate * 1e3 for w in withheld]
    return {
        "chunk_ms": chunk_s * 1e3,
        "delay_mean_ms": float(np.mean(lat)),
        "delay_max_ms": float(np.max(lat)),
        "peak_offset_ms": offset / r.out_rate * 1e3,
        "withheld_max_samples": float(np.max(withheld)),
        "total_out": len(out),
        "expected_out": n * ratio,
    }


def test_signal(rate: int, seconds: float) -> np.ndarray:
    """Band-limited multi-tone (all partials well inside a 16 kHz output's passband)."""
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate
    x = sum(0.2 * np.sin(2 * np.pi * f * t + f) for f in (311.0, 1000.0, 2750.0, 4999.0))
    return np.asarray(x, dtype=np.float32)


def aligned_error_db(ref: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """rms(y - ref) / rms(ref) in dB after the best (fractional) time alignment, over the middle
    60 %. Returns (error_db, lag_samples). Two resamplers doing the same job agree to < -40 dB."""
    n = min(len(ref), len(y))
    a = np.asarray(ref[:n], dtype=np.float64)
    b = np.asarray(y[:n], dtype=np.float64)
    m = 1 << (2 * n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(b, m) * np.conj(np.fft.rfft(a, m)), m)
    lag_i = int(np.argmax(xc))
    if lag_i > m // 2:
        lag_i -= m
    lo, c, hi = xc[(lag_i - 1) % m], xc[lag_i % m], xc[(lag_i + 1) % m]
    den = lo - 2 * c + hi
    lag = lag_i + (0.5 * (lo - hi) / den if den != 0 else 0.0)
    freqs = np.fft.rfftfreq(n)
    shifted = np.fft.irfft(np.fft.rfft(b) * np.exp(2j * np.pi * freqs * lag), n)
    lo, hi = int(0.2 * n), int(0.8 * n)
    err = shifted[lo:hi] - a[lo:hi]
    rel = math.sqrt(float(np.mean(err * err)) / float(np.mean(a[lo:hi] ** 2)))
    return 20 * math.log10(max(rel, 1e-30)), lag
