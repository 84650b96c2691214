"""Speech engines behind the ``transcribe`` model: a small interface and the pocketsphinx engine.

An :class:`Engine` makes :class:`RecognizerStream` objects (each holds a loaded decoder, slow to
make: pool them). A stream takes 16 kHz mono int16 bytes and returns :data:`EngineEvent` values on
the stream's own audio clock (seconds since :meth:`RecognizerStream.reset`):

* :class:`VadStart` when the voice activity detector hears speech start;
* :class:`Hypothesis` with ``final=False`` (a partial, when partials are on) or ``final=True``
  when an utterance ends: ``cause`` is ``"vad"`` (silence), ``"flush"`` (the client's Finalize or
  the end of the stream) or ``"limit"`` (an utterance longer than ``MAX_UTTERANCE_SECONDS``).

Deepgram's policies (endpointing delays, ``speech_final``, UtteranceEnd, result windows) live in
``channel.py``, so another engine only has to produce these events.

pocketsphinx (the measured recipe of the reference, Part B): ``Decoder(samprate=16000,
fwdflat=False)``, ``Endpointer(window=0.3, ratio=0.9, vad_mode=Vad.LOOSE)``, CMN reset at every
stream start (live CMN otherwise carries over and degrades every following stream; the feature
front end is rebuilt too), words from ``seg()`` without pronunciation variants and fillers,
``Segment.prob`` (a posterior, 0..1) as the word confidence (pocketsphinx computes posteriors
only when an utterance ends: partial words carry the best path so far, with confidence 1.0).
The endpointer hands speech on with a delay of its ``window`` (its queue) and ends an utterance
once the whole window is non-speech (WebRTC's VAD itself adds a hangover of up to ~0.2 s of
speech after the last sound); a flush drains it with ``end_stream`` (never with an empty frame,
which raises) and starts a fresh one.

The window is the biggest part of a final's latency, so the stream picks it per stream from the
silence the client wants (``reset(endpointing=...)``, Deepgram's ``endpointing``): the longest of
the valid settings in :data:`VAD_SETTINGS` not longer than that silence (the shortest for
Deepgram's default 10 ms), the default 0.3 s window with no preference. Measured through this
model's pipeline: WER 0.159 on the klatt6 fixtures with all four; LibriVox 0.352 with the 0.3 and
0.15 s windows, 0.338 with 0.12 and 0.09 s (they cut utterances at the reader's pauses). A
stricter VAD mode (less hangover) made klatt6 worse (0.18-0.23), so the mode stays ``LOOSE``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pocketsphinx  # type: ignore[import-untyped]

__all__ = [
    "ENGINE_RATE",
    "MAX_UTTERANCE_SECONDS",
    "VAD_SETTINGS",
    "Engine",
    "EngineEvent",
    "EngineInfo",
    "Hypothesis",
    "PocketsphinxEngine",
    "RecognizerStream",
    "VadStart",
    "Word",
    "vad_setting",
]

ENGINE_RATE = 16_000
_BYTES_PER_SECOND = ENGINE_RATE * 2
#: An utterance still open after this many seconds of speech is finalized (is_final without
#: speech_final), bounding the decoder's memory on endless speech or noise.
MAX_UTTERANCE_SECONDS = 30.0
VAD_WINDOW = 0.3
VAD_RATIO = 0.9
#: Valid ``Endpointer`` (window seconds, ratio) pairs, shortest first (reference B6; a window of
#: 0.09 s or less with ratio 0.9 is refused). Each ends an utterance after a full window of
#: non-speech frames (30 ms each).
VAD_SETTINGS: tuple[tuple[float, float], ...] = (
    (0.09, 0.67),
    (0.12, 0.75),
    (0.15, 0.8),
    (0.3, 0.9),
)
#: One sample of silence: ``Endpointer.end_stream(b"")`` raises, so an empty flush sends this.
_PAD = b"\x00\x00"


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True, slots=True)
class VadStart:
    timestamp: float


@dataclass(frozen=True, slots=True)
class Hypothesis:
    text: str
    words: tuple[Word, ...]
    #: Audio clock of the utterance's first and last decoded sample.
    start: float
    end: float
    final: bool
    cause: Literal["partial", "vad", "flush", "limit"]

    @property
    def confidence(self) -> float:
        if not self.words:
            return 0.0
        return sum(w.confidence for w in self.words) / len(self.words)


EngineEvent = VadStart | Hypothesis


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What ``Results.metadata.model_info`` and ``Metadata.model_info`` report."""

    name: str
    version: str
    arch: str
    uuid: str


class RecognizerStream(Protocol):
    """One decoder, serving one audio stream at a time."""

    def reset(self, *, partial_interval: float | None, endpointing: float | None = None) -> None:
        """Start a new stream (clock at 0, adaptation state reset); partials every
        ``partial_interval`` audio seconds of speech, or none. ``endpointing``: the silence
        (seconds) after which the client wants an utterance ended, so the engine can end it
        that soon (None: the engine's default)."""
        ...

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        """16 kHz mono int16 little-endian bytes (any length)."""
        ...

    def flush(self) -> list[EngineEvent]:
        """Decode everything buffered and end the open utterance (a final, if one was open).
        More audio may follow."""
        ...

    @property
    def time(self) -> float:
        """Seconds of audio fed since :meth:`reset`."""
        ...


class Engine(Protocol):
    @property
    def info(self) -> EngineInfo: ...

    def create(self) -> RecognizerStream:
        """A new stream with its own decoder (slow: pool the result)."""
        ...


def vad_setting(endpointing: float | None) -> tuple[float, float]:
    """The ``Endpointer`` (window, ratio) for a wanted end-of-utterance silence in seconds:
    the longest valid window not longer than it, at least the shortest; None (no preference,
    e.g. ``endpointing=false``) gives the default ``(VAD_WINDOW, VAD_RATIO)``.

    A longer window than asked would delay every final beyond the pause the client asked for; a
    longer pause than the window is the channel's business (it holds the final back)."""
    if endpointing is None:
        return (VAD_WINDOW, VAD_RATIO)
    chosen = VAD_SETTINGS[0]
    for window, ratio in VAD_SETTINGS:
        if window <= endpointing + 1e-9:
            chosen = (window, ratio)
    return chosen


def _clean_word(raw: str) -> str | None:
    """``to(3)`` -> ``to``; fillers (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``) -> None."""
    if not raw or raw[0] in "<[+":
        return None
    paren = raw.find("(")
    return raw[:paren] if paren > 0 else raw


class PocketsphinxStream:
    """A pocketsphinx decoder and endpointer implementing :class:`RecognizerStream`."""

    def __init__(self, decoder_options: dict[str, object]) -> None:
        self._decoder = pocketsphinx.Decoder(**decoder_options)
        self._cmn0: str = self._decoder.get_cmn()
        self._partial_interval: float | None = None
        self._vad: tuple[float, float] = (VAD_WINDOW, VAD_RATIO)
        self._reset_state()

    def _reset_state(self) -> None:
        self._endpointer = self._new_endpointer()
        self._frame_bytes: int = self._endpointer.frame_bytes
        self._buf = bytearray()
        self._bytes_in = 0  # bytes fed since reset
        self._ep_base = 0.0  # audio clock when the current endpointer started
        self._out_clock = 0.0  # audio clock of the next speech byte the endpointer hands on
        self._in_vad_speech = False
        self._utt_open = False
        self._utt_start = 0.0
        self._utt_bytes = 0
        self._last_partial = 0.0
        self._last_partial_text = ""

    def _new_endpointer(self) -> pocketsphinx.Endpointer:
        window, ratio = self._vad
        return pocketsphinx.Endpointer(
            window=window,
            ratio=ratio,
            vad_mode=pocketsphinx.Vad.LOOSE,
            sample_rate=ENGINE_RATE,
        )

    @property
    def vad(self) -> tuple[float, float]:
        """The endpointer's (window, ratio) for the current stream."""
        return self._vad

    @property
    def time(self) -> float:
        return self._bytes_in / _BYTES_PER_SECOND

    def reset(self, *, partial_interval: float | None, endpointing: float | None = None) -> None:
        if self._utt_open:
            self._decoder.end_utt()
        # CMN alone is not all: the feature front end keeps more state across streams (the same
        # audio scored different word posteriors on a reused decoder). Rebuilding it costs
        # ~0.1 ms and makes a reused decoder give exactly what a fresh one gives.
        self._decoder.reinit_feat()
        self._decoder.set_cmn(self._cmn0)
        self._partial_interval = partial_interval
        self._vad = vad_setting(endpointing)
        self._reset_state()

    def feed(self, pcm: bytes) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        self._buf += pcm
        self._bytes_in += len(pcm)
        fb = self._frame_bytes
        offset = 0
        while len(self._buf) - offset >= fb:
            frame = bytes(self._buf[offset : offset + fb])
            offset += fb
            speech = self._endpointer.process(frame)
            self._on_speech(speech, events)
        del self._buf[:offset]
        return events

    def flush(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        tail = bytes(self._buf) or _PAD
        self._buf.clear()
        speech = self._endpointer.end_stream(tail)
        self._on_speech(speech, events, ending=True)
        if self._utt_open:
            events.append(self._end_utterance("flush"))
        # A fresh endpointer for what follows, on the same clock.
        self._endpointer = self._new_endpointer()
        self._ep_base = self.time
        self._out_clock = self.time
        self._in_vad_speech = False
        return events

    def _on_speech(
        self, speech: bytes | None, events: list[EngineEvent], ending: bool = False
    ) -> None:
        ep = self._endpointer
        if not speech:
            if self._in_vad_speech and not ep.in_speech:
                self._in_vad_speech = False
            return
        if not self._in_vad_speech:
            self._in_vad_speech = True
            self._out_clock = self._ep_base + ep.speech_start
            events.append(VadStart(self._out_clock))
        if not self._utt_open:
            self._decoder.start_utt()
            self._utt_open = True
            self._utt_start = self._out_clock
            self._utt_bytes = 0
            self._last_partial = self._out_clock
            self._last_partial_text = ""
        self._decoder.process_raw(speech, False, False)
        self._utt_bytes += len(speech)
        self._out_clock += len(speech) / _BYTES_PER_SECOND
        if ending:
            return
        if not ep.in_speech:
            self._in_vad_speech = False
            events.append(self._end_utterance("vad"))
        elif self._utt_bytes / _BYTES_PER_SECOND >= MAX_UTTERANCE_SECONDS:
            events.append(self._end_utterance("limit"))
        elif (
            self._partial_interval is not None
            and self._out_clock - self._last_partial >= self._partial_interval
        ):
            self._last_partial = self._out_clock
            partial = self._partial()
            if partial is not None:
                events.append(partial)

    def _words(self) -> tuple[Word, ...]:
        t0 = self._utt_start
        words = []
        for seg in self._decoder.seg():
            word = _clean_word(seg.word)
            if word is None:
                continue
            words.append(
                Word(
                    word=word,
                    start=round(t0 + seg.start_frame / 100, 3),
                    end=round(t0 + (seg.end_frame + 1) / 100, 3),
                    confidence=round(min(max(float(seg.prob), 0.0), 1.0), 4),
                )
            )
        return tuple(words)

    def _partial(self) -> Hypothesis | None:
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self._last_partial_text:
            return None
        self._last_partial_text = text
        return Hypothesis(text, self._words(), self._utt_start, self._out_clock, False, "partial")

    def _end_utterance(self, cause: Literal["vad", "flush", "limit"]) -> Hypothesis:
        self._decoder.end_utt()
        self._utt_open = False
        hyp = self._decoder.hyp()
        words = self._words() if hyp is not None else ()
        text = " ".join(w.word for w in words)
        return Hypothesis(text, words, self._utt_start, self._out_clock, True, cause)


@dataclass(frozen=True, slots=True)
class PocketsphinxEngine:
    """The bundled US English pocketsphinx model, or a domain LM and dictionary.

    ``lm`` is an ARPA (``.arpa``/``.lm``) or binary (``.lm.bin``) language model; ``dict`` a
    pronunciation dictionary. Pass a dictionary holding only the LM's words with a small LM: the
    full 134k-word dictionary makes a small LM load in about 12 s.
    """

    lm: str | None = None
    dictionary: str | None = None
    extra_options: tuple[tuple[str, object], ...] = ()

    @property
    def info(self) -> EngineInfo:
        version = getattr(pocketsphinx, "__version__", None) or _package_version()
        name = "pocketsphinx-en-us" if self.lm is None else f"pocketsphinx-{Path(self.lm).stem}"
        key = f"{name}|{version}|{self.lm}|{self.dictionary}".encode()
        model_uuid = str(uuid.UUID(bytes=hashlib.sha256(key).digest()[:16], version=4))
        return EngineInfo(name=name, version=version, arch="pocketsphinx", uuid=model_uuid)

    def decoder_options(self) -> dict[str, object]:
        options: dict[str, object] = {"samprate": ENGINE_RATE, "fwdflat": False}
        if self.lm is not None:
            options["lm"] = self.lm
        if self.dictionary is not None:
            options["dict"] = self.dictionary
        options.update(self.extra_options)
        return options

    def create(self) -> PocketsphinxStream:
        return PocketsphinxStream(self.decoder_options())


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pocketsphinx")
    except PackageNotFoundError:
        return "unknown"


def quiet_logs() -> None:
    """pocketsphinx logs every decoder's configuration to stderr; keep errors only."""
    pocketsphinx.set_loglevel("ERROR")
