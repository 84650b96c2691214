"""Audio samples: int16 <-> float32, downmix, channel selection and streaming resampling.

Everything is implemented in the native core and runs with the interpreter released.

Input audio is 16-bit little-endian PCM bytes (``bytes``, ``bytearray``, ``memoryview``) or a
numpy array of int16 (scaled by 1/32768), float32 or float64, either 1-D (interleaved
channels) or 2-D ``(frames, channels)``. Results are new numpy arrays: 1-D for mono,
``(frames, channels)`` for more channels.

Resampling qualities, measured at 16 kHz out (tone sweeps through the resampler):

=========  =================  ===========  ========  ========  =========================
quality    delay 48/44.1 kHz  delay 8 kHz  flat to   -3 dB     rejected from 8 kHz on
=========  =================  ===========  ========  ========  =========================
``fast``   0.94 ms            1.8 ms       6.28 kHz  7.5 kHz   >= 100 dB from 9.6 kHz
``hq``     2.4 / 2.5 ms       4.9 ms       6.74 kHz  7.21 kHz  >= 100 dB (102 by design)
``vhq``    4.25 / 4.3 ms      8.5 ms       7.14 kHz  7.45 kHz  >= 125 dB
=========  =================  ===========  ========  ========  =========================

"flat" is within 0.01 dB; "rejected" covers aliases of every input tone above the output
Nyquist and, for 8 kHz input, the images of every tone. ``hq`` (the default) has soxr HQ's
stopband (from the output Nyquist on) at a tenth of its latency. ``fast`` lets tones between
8 and 9.6 kHz alias into the roll-off band above 6.4 kHz.

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
