"""Incremental RIFF/WAVE header parsing for containerized audio on ``/v1/listen``.

Deepgram's rule: without ``encoding`` the first binary frame(s) carry a container header. We accept
RIFF/WAVE as streaming writers produce it:

* ``fmt `` anywhere before ``data`` (not necessarily right after ``WAVE``); ``LIST``, ``fact``,
  ``bext``, ``JUNK`` and any other chunk are skipped (RIFF pads odd chunk sizes to even);
* a ``data`` size of 0 or 0xFFFFFFFF means "until the end of the stream" (live writers); any other
  size is respected and bytes after the data chunk (trailing ``LIST`` chunks) are not audio;
* PCM 8-bit unsigned, 16/24/32-bit signed little-endian, IEEE float32, G.711 mu-law and A-law,
  also behind ``WAVE_FORMAT_EXTENSIBLE``; 1 to ``AUDIO_MAX_CHANNELS`` channels;
* the header may be split across any number of frames, at any byte.

Anything else raises :class:`WavError` with a reason (the session closes with a DATA-0000 style
close). The parser never buffers more than the ``fmt `` chunk and refuses a header (everything
before the samples) longer than :data:`MAX_HEADER_BYTES`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sagebidi_perf.audio import AUDIO_MAX_CHANNELS, AUDIO_MAX_RATE, AUDIO_MIN_RATE
from sagebidi_perf.models.transcribe.frontend import SampleFormat

__all__ = ["MAX_HEADER_BYTES", "WavError", "WavFormat", "WavHeaderParser", "parse_wav"]

#: Everything before the first sample (chunks to skip included) must fit in this many bytes.
MAX_HEADER_BYTES = 1 << 20
_MAX_FMT_BYTES = 1024
_UNBOUNDED_SIZES = (0, 0xFFFFFFFF)
_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavError(ValueError):
    """The stream is not a WAV we can decode (the message says why)."""


@dataclass(frozen=True, slots=True)
class WavFormat:
    sample_format: SampleFormat
    sample_rate: int
    channels: int
    #: Bytes of samples in the ``data`` chunk; None when the writer left it open (0/0xFFFFFFFF).
    data_size: int | None
    #: Bytes before the first sample (RIFF header and every chunk header up to ``data``).
    header_size: int


def _sample_format(tag: int, bits: int) -> SampleFormat:
    if tag == _PCM:
        formats: dict[int, SampleFormat] = {8: "u8", 16: "s16", 24: "s24", 32: "s32"}
        if bits in formats:
            return formats[bits]
        raise WavError(f"unsupported PCM sample width: {bits} bits")
    if tag == _FLOAT:
        if bits == 32:
            return "f32"
        raise WavError(f"unsupported float sample width: {bits} bits (float32 only)")
    if tag in (_MULAW, _ALAW):
        if bits == 8:
            return "mulaw" if tag == _MULAW else "alaw"
        raise WavError(f"G.711 samples must be 8 bits, got {bits}")
    raise WavError(f"unsupported WAV format tag 0x{tag:04x} (PCM, float32, mu-law, A-law only)")


def _parse_fmt(body: bytes) -> tuple[SampleFormat, int, int]:
    if len(body) < 16:
        raise WavError(f"fmt chunk too short: {len(body)} bytes")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of the subformat GUID
    fmt = _sample_format(tag, bits)
    if not 1 <= channels <= AUDIO_MAX_CHANNELS:
        raise WavError(f"unsupported channel count {channels} (1..{AUDIO_MAX_CHANNELS})")
    if not AUDIO_MIN_RATE <= rate <= AUDIO_MAX_RATE:
        raise WavError(f"unsupported sample rate {rate} Hz ({AUDIO_MIN_RATE}..{AUDIO_MAX_RATE})")
    if block_align != channels * bits // 8:
        raise WavError(
            f"inconsistent fmt chunk: block_align {block_align} for {channels} x {bits} bits"
        )
    return fmt, rate, channels


class WavHeaderParser:
    """Feed the stream's first bytes until :meth:`feed` returns the format and the first samples."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._consumed = 0  # bytes of the stream dropped from _buf (skipped chunks)
        self._skip = 0  # bytes of a skipped chunk still to come
        self._riff = False
        self._fmt: tuple[SampleFormat, int, int] | None = None
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[WavFormat, bytes] | None:
        """The format and the sample bytes after the header, once the header is complete."""
        if self.done:
            raise RuntimeError("the WAV header is already parsed")
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            self._consumed += n
            data = memoryview(data)[n:]
        self._buf += data
        if not self._riff:
            head = bytes(self._buf[:12])
            if not b"RIFF".startswith(head[:4]):
                raise WavError("not a WAV stream (no RIFF header) and no encoding given")
            if len(head) >= 12 and head[8:12] != b"WAVE":
                raise WavError(f"RIFF stream of type {head[8:12]!r}, not WAVE")
            if len(head) < 12:
                return None
            self._riff = True
            self._drop(12)
        while True:
            if len(self._buf) < 8:
                return None
            chunk_id = bytes(self._buf[:4])
            (size,) = struct.unpack_from("<I", self._buf, 4)
            if chunk_id == b"data":
                if self._fmt is None:
                    raise WavError("WAV data chunk before the fmt chunk")
                fmt, rate, channels = self._fmt
                header_size = self._consumed + 8
                data_size = None if size in _UNBOUNDED_SIZES else size
                rest = bytes(self._buf[8:])
                if data_size is not None:
                    rest = rest[:data_size]
                self._buf = bytearray()
                self.done = True
                return WavFormat(fmt, rate, channels, data_size, header_size), rest
            if chunk_id == b"fmt ":
                if self._fmt is not None:
                    raise WavError("more than one fmt chunk")
                if size > _MAX_FMT_BYTES:
                    raise WavError(f"fmt chunk of {size} bytes")
                if len(self._buf) < 8 + size:
                    return None
                self._fmt = _parse_fmt(bytes(self._buf[8 : 8 + size]))
                self._drop(8 + size + (size & 1))
                continue
            if not all(0x20 <= b < 0x7F for b in chunk_id):
                raise WavError(f"corrupt WAV header: chunk id {chunk_id!r}")
            total = 8 + size + (size & 1)
            if self._consumed + total > MAX_HEADER_BYTES:
                raise WavError(
                    f"WAV chunk {chunk_id.decode('ascii')!r} of {size} bytes before the data chunk"
                )
            if len(self._buf) >= total:
                self._drop(total)
            else:
                self._skip = total - len(self._buf)
                self._consumed += len(self._buf)
                self._buf = bytearray()
                return None

    def _drop(self, n: int) -> None:
        n = min(n, len(self._buf))
        del self._buf[:n]
        self._consumed += n


def parse_wav(data: bytes) -> tuple[WavFormat, bytes]:
    """A whole WAV file: its format and sample bytes (``POST /invocations``)."""
    parser = WavHeaderParser()
    result = parser.feed(data)
    if result is None:
        raise WavError("truncated WAV header")
    return result
