"""Cut audio or bytes into frames without copying, and pace their sending.

Frames are :class:`memoryview` slices of the caller's buffer (``frame.obj is buf``): chunking
copies nothing, writes to a mutable source show through its frames, and a ``bytearray`` cannot
be resized while frames are alive. A numpy array is viewed as its raw bytes and must be
C-contiguous. Only a zero-padded last frame (``pad=True``) is a copy.

Pacing: frame ``i`` is sent at ``start + (duration of frames 0..i-1) / speed``; ``speed=1.0`` is
real time and ``speed=math.inf`` means as fast as possible (every frame at ``start``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sagebidi_perf._native import (
    FrameIterator,
    chunk_audio,
    chunk_bytes,
    frame_bytes_for,
    iter_chunks,
    pacing_schedule,
    uniform_pacing_schedule,
)

__all__ = [
    "FrameIterator",
    "audio_pacing_schedule",
    "chunk_audio",
    "chunk_bytes",
    "frame_bytes_for",
    "frame_seconds",
    "iter_chunks",
    "pacing_schedule",
    "uniform_pacing_schedule",
]


def frame_seconds(
    n_bytes: int, *, sample_rate: int, channels: int = 1, sample_width: int = 2
) -> float:
    """Duration in seconds of ``n_bytes`` of interleaved PCM audio in the given format."""
    bytes_per_second = sample_rate * channels * sample_width
    if bytes_per_second <= 0 or n_bytes < 0:
        raise ValueError(
            "frame_seconds needs n_bytes >= 0 and a positive sample_rate, channels, sample_width"
        )
    return n_bytes / bytes_per_second


def audio_pacing_schedule(
    frames: Sequence[memoryview],
    *,
    sample_rate: int,
    channels: int = 1,
    sample_width: int = 2,
    speed: float = 1.0,
    start: float = 0.0,
) -> list[float]:
    """Send times of audio ``frames`` (as returned by :func:`chunk_audio`) for real time (or
    ``speed`` times real time): each frame's duration is its byte length in the given format."""
    return pacing_schedule(
        [
            frame_seconds(
                f.nbytes, sample_rate=sample_rate, channels=channels, sample_width=sample_width
            )
            for f in frames
        ],
        speed=speed,
        start=start,
    )
