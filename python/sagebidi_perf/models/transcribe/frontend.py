"""The audio front end: raw sample bytes in any supported format -> 16 kHz int16 mono streams.

Bytes arrive in frames of any size (a sample, or a multi-channel sample frame, may be split across
WebSocket messages); :class:`Frontend` keeps the remainder. Samples are converted to float32,
downmixed (or split per channel for ``multichannel``) and resampled to the engine's 16 kHz with the
native streaming resampler (``hq``, delay-compensated, so word times stay on the input's clock).
16-bit mono audio already at 16 kHz passes through untouched.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sagebidi_perf.audio import Resampler, downmix, float32_to_int16, select_channel

__all__ = ["ENGINE_RATE", "SAMPLE_BYTES", "Frontend", "SampleFormat", "decode_samples"]

SampleFormat = Literal["u8", "s16", "s24", "s32", "f32", "mulaw", "alaw"]
SAMPLE_BYTES: dict[SampleFormat, int] = {
    "u8": 1,
    "s16": 2,
    "s24": 3,
    "s32": 4,
    "f32": 4,
    "mulaw": 1,
    "alaw": 1,
}
ENGINE_RATE = 16_000


def _g711_tables() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """ITU-T G.711 mu-law and A-law expansion tables (as int16 values / 32768)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)
    mulaw = np.where(u & 0x80, 0x84 - mag, mag - 0x84)
    a = codes ^ 0x55
    exponent = (a >> 4) & 7
    mantissa = a & 0x0F
    amag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    alaw = np.where(a & 0x80, amag, -amag)
    return (mulaw / 32768.0).astype(np.float32), (alaw / 32768.0).astype(np.float32)


_MULAW, _ALAW = _g711_tables()


def decode_samples(data: bytes | bytearray | memoryview, fmt: SampleFormat) -> npt.NDArray[Any]:
    """Whole samples (``len(data)`` a multiple of the sample size) as float32 in [-1, 1), or int16
    for ``s16`` (the native audio functions scale it)."""
    if fmt == "s16":
        return np.frombuffer(data, dtype="<i2")
    if fmt == "f32":
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    if fmt == "s32":
        return (np.frombuffer(data, dtype="<i4") / 2147483648.0).astype(np.float32)
    if fmt == "u8":
        return ((np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0).astype(
            np.float32
        )
    if fmt == "mulaw":
        return _MULAW[np.frombuffer(data, dtype=np.uint8)]
    if fmt == "alaw":
        return _ALAW[np.frombuffer(data, dtype=np.uint8)]
    # s24: little-endian 3-byte samples, sign-extended through the top byte of an int32.
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = (raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)
    return (value / 2147483648.0).astype(np.float32)


class Frontend:
    """Sample bytes -> one (downmixed) or ``channels`` (``split``) streams of 16 kHz int16 bytes."""

    def __init__(self, fmt: SampleFormat, rate: int, channels: int, *, split: bool) -> None:
        self.format = fmt
        self.rate = rate
        self.channels = channels
        self.split = split and channels > 1
        self.outputs = channels if self.split else 1
        self._frame_bytes = SAMPLE_BYTES[fmt] * channels
        self._rest = b""
        self._passthrough = fmt == "s16" and rate == ENGINE_RATE and channels == 1
        self._resamplers = (
            [Resampler(rate, ENGINE_RATE, 1, dtype="int16") for _ in range(self.outputs)]
            if rate != ENGINE_RATE
            else []
        )
        #: Sample frames (one sample per channel) received so far.
        self.frames_in = 0

    @property
    def duration(self) -> float:
        """Seconds of audio received (whole sample frames)."""
        return self.frames_in / self.rate

    def process(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Engine-ready bytes per output stream for ``data`` (may be empty while resampling)."""
        if self._rest:
            data = self._rest + bytes(data)
            self._rest = b""
        whole = len(data) - len(data) % self._frame_bytes
        if whole < len(data):
            self._rest = bytes(data[whole:])
            data = memoryview(data)[:whole]
        if not whole:
            return [b""] * self.outputs
        self.frames_in += whole // self._frame_bytes
        if self._passthrough:
            return [bytes(data)]
        samples = decode_samples(data, self.format)
        if self.split:
            streams = [select_channel(samples, i, self.channels) for i in range(self.channels)]
        elif self.channels > 1:
            streams = [downmix(samples, self.channels)]
        else:
            streams = [samples]
        return [self._finish(i, s) for i, s in enumerate(streams)]

    def flush(self) -> list[bytes]:
        """The resamplers' tails (a partial sample frame left over is dropped)."""
        self._rest = b""
        if not self._resamplers:
            return [b""] * self.outputs
        return [r.flush().astype("<i2").tobytes() for r in self._resamplers]

    def _finish(self, index: int, samples: npt.NDArray[Any]) -> bytes:
        if self._resamplers:
            out = self._resamplers[index].process(samples)
            return out.astype("<i2", copy=False).tobytes()
        if samples.dtype == np.int16:
            return samples.astype("<i2", copy=False).tobytes()
        return float32_to_int16(samples.astype(np.float32, copy=False)).astype("<i2").tobytes()
