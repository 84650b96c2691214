"""One ``/v1/listen`` stream: audio in (raw or WAV), control messages, Deepgram messages out.

Decoding runs in a worker thread (``trio.to_thread``), :data:`SLICE_SECONDS` of audio per call.
pocketsphinx holds the GIL inside each C call, so threads add no throughput (run one worker
process per core), but the engine's Python loop between 30 ms frames gives the GIL back to the
Trio thread at every switch interval (5 ms): the loop stalls only for the longest single C call
(``end_utt`` on a long utterance, ~40-100 ms). Measured with 2 streams decoding flat out and a
third connection pinging every 10 ms (a harness like the benchmark's): ping RTT p50 0.6 ms
/ p99 180 ms in a thread, against p50 57-220 ms / p99 380-790 ms when the Trio thread decoded
30-100 ms slices with a checkpoint between them (Trio polls I/O only between task batches), and
seconds when it decoded whole messages. A slice is never cancelled half-way (the decoder stays
consistent); a cancelled session waits for its current slice, then returns the decoders. A
thread call returns as soon as a final is out (``feed(until_final=True)``): the final is sent
first, the rest of the slice is decoded in the next call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from sagebidi_perf.models.transcribe.channel import ChannelTranscriber
from sagebidi_perf.models.transcribe.engine import ENGINE_RATE, RecognizerStream
from sagebidi_perf.models.transcribe.frontend import Frontend, SampleFormat
from sagebidi_perf.models.transcribe.messages import MessageBuilder, iso_now
from sagebidi_perf.models.transcribe.options import ListenOptions
from sagebidi_perf.models.transcribe.pool import DecoderPool
from sagebidi_perf.models.transcribe.wav import WavError, WavHeaderParser

__all__ = [
    "SLICE_SECONDS",
    "AudioError",
    "CapacityError",
    "ListenStream",
    "RequestError",
]

log = logging.getLogger("sagebidi.transcribe")

#: Audio decoded per worker-thread call (at RTF ~0.25: ~50 ms of CPU per slice); results of a
#: slice go out when it is done.
SLICE_SECONDS = 0.2
_SLICE_BYTES = int(ENGINE_RATE * SLICE_SECONDS) * 2
_ENCODING_FORMATS: dict[str, SampleFormat] = {
    "linear16": "s16",
    "linear32": "s32",
    "float32": "f32",
    "mulaw": "mulaw",
    "alaw": "alaw",
}

Send = Callable[[dict[str, Any]], Awaitable[None]]


class AudioError(ValueError):
    """The audio cannot be decoded (Deepgram's DATA-0000)."""


class RequestError(ValueError):
    """The stream asks for more than this server can do (e.g. too many channels)."""


class CapacityError(RuntimeError):
    """No decoder became free in time."""


class ListenStream:
    """The state of one stream; the model feeds it messages and sends what it produces."""

    def __init__(
        self,
        options: ListenOptions,
        builder: MessageBuilder,
        pool: DecoderPool,
        send: Send,
        *,
        pool_wait: float,
    ) -> None:
        self.options = options
        self.builder = builder
        self._pool = pool
        self._send = send
        self._pool_wait = pool_wait
        self.created = iso_now()
        self._sha = hashlib.sha256()
        self._wav: WavHeaderParser | None = None if options.encoding else WavHeaderParser()
        self._wav_left: int | None = None  # bytes of the WAV data chunk still expected
        self.frontend: Frontend | None = None
        self._channels: list[ChannelTranscriber] = []
        self._streams: list[RecognizerStream] = []
        self.finished = False

    # -- audio -----------------------------------------------------------------------------

    async def audio(self, data: bytes) -> None:
        """A binary frame of audio (raises :class:`AudioError`, :class:`RequestError`,
        :class:`CapacityError`)."""
        self._sha.update(data)
        if self._wav is not None and not self._wav.done:
            try:
                parsed = self._wav.feed(data)
            except WavError as exc:
                raise AudioError(str(exc)) from None
            if parsed is None:
                return
            fmt, data = parsed
            self._wav_left = fmt.data_size
            await self._start(fmt.sample_format, fmt.sample_rate, fmt.channels)
        elif self.frontend is None:
            encoding = self.options.encoding
            assert encoding is not None
            assert self.options.sample_rate is not None
            await self._start(
                _ENCODING_FORMATS[encoding], self.options.sample_rate, self.options.channels
            )
        if self._wav_left is not None:
            data = data[: self._wav_left]
            self._wav_left -= len(data)
        assert self.frontend is not None
        await self._decode(self.frontend.process(data))

    async def _start(self, fmt: SampleFormat, rate: int, channels: int) -> None:
        split = self.options.multichannel and channels > 1
        needed = channels if split else 1
        if needed > self._pool.size:
            raise RequestError(
                f"multichannel audio with {channels} channels needs {channels} decoders; "
                f"this worker has {self._pool.size}"
            )
        self.frontend = Frontend(fmt, rate, channels, split=split)
        with trio.move_on_after(self._pool_wait):
            self._streams = await self._pool.acquire(needed)
        if not self._streams:
            raise CapacityError(
                f"no free decoder within {self._pool_wait:g}s "
                f"(this worker serves {self._pool.size} streams at once)"
            )
        count = len(self._streams)
        self._channels = [
            ChannelTranscriber(stream, self.builder, self.options, (i, count))
            for i, stream in enumerate(self._streams)
        ]

    async def _decode(self, per_channel: list[bytes]) -> None:
        for transcriber, pcm in zip(self._channels, per_channel, strict=True):
            for offset in range(0, len(pcm), _SLICE_BYTES):
                piece = pcm[offset : offset + _SLICE_BYTES]
                while True:
                    feed = functools.partial(transcriber.feed, piece, until_final=True)
                    for message in await trio.to_thread.run_sync(feed):
                        await self._send(message)
                    if not transcriber.pending:
                        break
                    piece = b""

    # -- control ---------------------------------------------------------------------------

    async def finalize(self, channel: int | None = None) -> None:
        for transcriber in self._channels:
            if channel is None or transcriber.channel[0] == channel:
                for message in await trio.to_thread.run_sync(transcriber.finalize):
                    await self._send(message)

    async def finish(self) -> None:
        """CloseStream (or an empty binary frame): the rest of the results, then Metadata."""
        if self.finished:
            return
        self.finished = True
        if self.frontend is not None and self._channels:
            await self._decode(self.frontend.flush())
        for transcriber in self._channels:
            for message in await trio.to_thread.run_sync(transcriber.end):
                await self._send(message)
        await self._send(self.metadata())

    def metadata(self) -> dict[str, Any]:
        frontend = self.frontend
        return self.builder.metadata(
            sha256=self._sha.hexdigest(),
            created=self.created,
            duration=frontend.duration if frontend is not None else 0.0,
            channels=frontend.channels if frontend is not None else 0,
        )

    def release(self) -> None:
        """Give the decoders back (always, however the stream ended)."""
        streams, self._streams = self._streams, []
        self._channels = []
        self._pool.release(streams)


def parse_control(message: str | bytes) -> dict[str, Any] | None:
    """A control message (``{"type": ...}``) or None when ``message`` is not one."""
    try:
        value = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value
    return None
