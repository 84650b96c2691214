"""What the users send: speech clips (WAV → mono linear16 frames), text prompts, echo frames.

Loaded once per process and shared by every session (frames are zero-copy memoryviews of one
buffer per clip). Imports neither Locust nor gevent.
"""

from __future__ import annotations

import json
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sagebidi_perf.audio import downmix, float32_to_int16
from sagebidi_perf.chunking import chunk_audio

__all__ = [
    "DEFAULT_PROMPTS",
    "Clip",
    "EchoPattern",
    "load_clip",
    "load_clips",
    "load_prompts",
    "word_errors",
]

DEFAULT_PROMPTS = (
    "Tell me a short story about a lighthouse keeper.",
    "Explain how a streaming speech recognizer finalizes an utterance.",
    "List three ways to cut the latency of a realtime model endpoint.",
    "What is the capital of France, and why is it famous?",
)


@dataclass(frozen=True)
class Clip:
    """One speech clip as mono 16-bit PCM, cut into frames of ``frame_ms``."""

    name: str
    pcm: bytes
    sample_rate: int
    frames: tuple[memoryview, ...]
    #: Seconds of audio per full frame.
    frame_seconds: float
    #: Reference transcript (the ``.txt`` beside the WAV), if any.
    reference: str | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / (2 * self.sample_rate)


def load_clip(path: Path, frame_ms: float) -> Clip:
    """Read a PCM WAV (8/16-bit, any rate, any channel count: downmixed to mono)."""
    try:
        with wave.open(str(path), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    if width == 1:  # unsigned 8-bit
        raw = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).tobytes()
    elif width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; use 8- or 16-bit PCM")
    if channels > 1:
        raw = float32_to_int16(downmix(raw, channels=channels)).tobytes()
    if not raw:
        raise ValueError(f"{path}: no audio")
    frames = tuple(chunk_audio(raw, sample_rate=rate, frame_ms=frame_ms))
    reference = None
    txt = path.with_suffix(".txt")
    if txt.is_file():
        reference = txt.read_text(encoding="utf-8").strip() or None
    return Clip(path.name, raw, rate, frames, frames[0].nbytes / (2 * rate), reference)


def load_clips(paths: list[Path], frame_ms: float) -> list[Clip]:
    if not paths:
        raise ValueError("--audio matched no WAV file")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError("--audio: no such file: " + ", ".join(missing))
    return [load_clip(p, frame_ms) for p in paths]


def load_prompts(path: str) -> list[str]:
    """Prompts from a JSON-lines file: each line a JSON string (sent as ``{"prompt": ...}``) or
    a JSON object (sent as is); blank lines and ``#`` comments are skipped. Returned as the text
    messages to send."""
    if not path:
        return [json.dumps({"prompt": p}) for p in DEFAULT_PROMPTS]
    out: list[str] = []
    text = Path(path).read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from exc
        if isinstance(doc, str):
            out.append(json.dumps({"prompt": doc}))
        elif isinstance(doc, dict):
            out.append(json.dumps(doc))
        else:
            raise ValueError(f"{path}:{lineno}: a prompt is a JSON string or object")
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out


class EchoPattern:
    """Echo frames: a 16-byte header (session number, frame number) then a fixed body, so an
    echo can be checked byte for byte with two comparisons and no per-frame allocation but the
    frame itself."""

    HEADER = struct.Struct("<QQ")

    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        body_len = max(frame_bytes - self.HEADER.size, 0)
        self.body = bytes((i * 131 + 7) & 0xFF for i in range(body_len))

    def frame(self, session: int, seq: int) -> bytes:
        header = self.HEADER.pack(session, seq)
        if self.frame_bytes < self.HEADER.size:
            return header[: self.frame_bytes]
        return header + self.body

    def check(self, data: bytes | str, session: int, seq: int) -> str | None:
        """None if ``data`` is exactly frame ``seq`` of ``session``, else what differs."""
        if isinstance(data, str):
            return f"frame {seq}: a text message came back for a binary frame"
        expected_len = self.frame_bytes
        if len(data) != expected_len:
            return f"frame {seq}: {len(data)} bytes back, {expected_len} sent"
        header = self.HEADER.pack(session, seq)[: min(self.HEADER.size, expected_len)]
        if not data.startswith(header):
            got = data[: len(header)]
            return f"frame {seq}: header {got.hex()} back, {header.hex()} sent"
        if not data.endswith(self.body):  # one memcmp, no copy
            return f"frame {seq}: payload bytes differ"
        return None


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, reference words), case- and punctuation-insensitive."""

    def words(text: str) -> list[str]:
        cleaned = "".join(ch.lower() if ch.isalnum() or ch == "'" else " " for ch in text)
        return cleaned.split()

    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


def frames_for_seconds(clip_seconds: list[float], want: float) -> int:
    """How many clips (cycling through ``clip_seconds``) reach ``want`` seconds (at least 1)."""
    if want <= 0 or not clip_seconds:
        return 1
    total, n = 0.0, 0
    while total < want:
        total += clip_seconds[n % len(clip_seconds)]
        n += 1
        if n > 10_000:
            break
    return max(n, 1)
