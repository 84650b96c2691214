"""Audio samples: int16 <-> float32, downmix, channel selection and streaming resampling.

Everything is implemented in the native core and runs with the interpreter released.

Input audio is 16-bit little-endian PCM bytes (``bytes``, ``bytearray``, ``memoryview``) or a
numpy array of int16 (scaled by 1/32768), float32 or float64, either 1-D (interleaved
channels) or 2-D ``(frames, channels)``. Results are new numpy arrays: 1-D for mono,
``(frames, channels)`` for more channels.

>>> import numpy as np
>>> from sagebidi_perf.audio import Resampler
>>> r = Resampler(48_000, 16_000)
>>> chunk = np.zeros(960, dtype=np.int16).tobytes()  # 20 ms of 48 kHz PCM
>>> out = r.process(chunk)  # float32 at 16 kHz; lags the input by r.delay frames
>>> tail = r.flush()
>>> len(out) + len(tail)
320
"""

from __future__ import annotations

from sagebidi_perf._native import (
    AUDIO_MAX_CHANNELS,
    AUDIO_MAX_RATE,
    AUDIO_MIN_RATE,
    Resampler,
    downmix,
    float32_to_int16,
    int16_to_float32,
    resample,
    select_channel,
)

__all__ = [
    "AUDIO_MAX_CHANNELS",
    "AUDIO_MAX_RATE",
    "AUDIO_MIN_RATE",
    "QUALITIES",
    "Resampler",
    "downmix",
    "float32_to_int16",
    "int16_to_float32",
    "resample",
    "select_channel",
]

#: The accepted ``quality`` names, fastest first.
QUALITIES: tuple[str, ...] = ("fast", "hq", "vhq")
