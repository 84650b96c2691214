"""Deepgram's result policy for one audio channel, on top of an engine stream.

* Result windows are contiguous: every ``Results`` starts where the last final ended (``start``)
  and covers the audio up to its hypothesis (``duration``), interims included.
* ``speech_final`` needs a pause of ``endpointing`` ms after the speech (measured on the audio
  clock from the end of the utterance). The engine is asked to end utterances after that much
  silence (``reset(endpointing=...)``: pocketsphinx's voice activity detector then waits 0.09 s
  for Deepgram's default 10 ms, up to 0.3 s); for a longer ``endpointing`` the final is held back
  until the pause is long enough (then ``speech_final: true``) or new speech starts (then
  ``speech_final: false``). With ``endpointing=false`` every final has ``speech_final: false``
  (and the engine keeps its default, longest, silence).
* ``feed(..., until_final=True)`` returns as soon as a final is out, the rest of the audio kept
  in :attr:`ChannelTranscriber.pending`: a caller decoding slices in a worker thread sends the
  final without first decoding the rest of its slice.
* ``Finalize`` flushes: the open (or held back) utterance comes out with ``from_finalize: true``;
  nothing buffered, nothing sent. The end of the stream flushes like an endpoint.
* ``UtteranceEnd`` (``utterance_end_ms``) is sent once the audio clock has gone that far past the
  end of the last finalized word with no new word heard.
"""

from __future__ import annotations

from typing import Any

from sagebidi_perf.models.transcribe.engine import (
    EngineEvent,
    Hypothesis,
    RecognizerStream,
    VadStart,
)
from sagebidi_perf.models.transcribe.messages import MessageBuilder
from sagebidi_perf.models.transcribe.options import ListenOptions

__all__ = ["PARTIAL_INTERVAL", "ChannelTranscriber"]

#: Audio seconds between interim results.
PARTIAL_INTERVAL = 0.25
#: ``feed(until_final=True)`` hands the engine this much at a time (30 ms at 16 kHz, the
#: endpointer's frame): a final is noticed within one frame of audio.
_STEP_BYTES = 960

Message = dict[str, Any]


class ChannelTranscriber:
    def __init__(
        self,
        stream: RecognizerStream,
        builder: MessageBuilder,
        options: ListenOptions,
        channel: tuple[int, int] = (0, 1),
    ) -> None:
        self.stream = stream
        self.builder = builder
        self.options = options
        self.channel = channel
        self._endpointing = None if options.endpointing is None else options.endpointing / 1000
        stream.reset(
            partial_interval=PARTIAL_INTERVAL if options.interim_results else None,
            endpointing=self._endpointing,
        )
        self._cursor = 0.0  # start of the next result window
        self._held: Hypothesis | None = None  # a VAD final waiting for the endpointing pause
        self._pending = b""  # audio not fed yet (feed returned early at a final)
        self._finals = 0  # finals produced so far
        self._utterance_end = (
            None if options.utterance_end_ms is None else options.utterance_end_ms / 1000
        )
        self._last_word_end: float | None = None
        self._speaking = False  # an interim with words since the last final

    @property
    def pending(self) -> int:
        """Bytes of audio passed to :meth:`feed` and not decoded yet (``until_final``)."""
        return len(self._pending)

    def feed(self, pcm: bytes, *, until_final: bool = False) -> list[Message]:
        """16 kHz mono int16 audio in, messages out. With ``until_final``, return as soon as a
        final is out; the rest waits in :attr:`pending` (call again, with ``b""``, while it is
        not 0)."""
        out: list[Message] = []
        data = self._pending + pcm if self._pending else pcm
        self._pending = b""
        if not until_final:
            self._handle(self.stream.feed(data), out, flush=None)
            self._timers(out)
            return out
        finals = self._finals
        for offset in range(0, len(data), _STEP_BYTES):
            self._handle(self.stream.feed(data[offset : offset + _STEP_BYTES]), out, flush=None)
            self._timers(out)
            if self._finals != finals:
                self._pending = data[offset + _STEP_BYTES :]
                break
        return out

    def finalize(self) -> list[Message]:
        """A client ``Finalize``: finals with ``from_finalize: true`` (none if nothing is open)."""
        out: list[Message] = self.feed(b"") if self._pending else []
        if self._held is not None:
            self._final(self._held, out, speech_final=False, from_finalize=True)
            self._held = None
        self._handle(self.stream.flush(), out, flush="finalize")
        return out

    def end(self) -> list[Message]:
        """End of the stream: everything left, as ordinary finals."""
        out: list[Message] = self.feed(b"") if self._pending else []
        if self._held is not None:
            self._final(self._held, out, speech_final=self._endpointing is not None)
            self._held = None
        self._handle(self.stream.flush(), out, flush="end")
        return out

    def _handle(self, events: list[EngineEvent], out: list[Message], flush: str | None) -> None:
        for event in events:
            if isinstance(event, VadStart):
                if self._held is not None:  # speech again: was the pause long enough?
                    assert self._endpointing is not None  # only VAD finals are held
                    pause = event.timestamp - self._held.end
                    self._final(self._held, out, speech_final=pause >= self._endpointing)
                    self._held = None
                if self.options.vad_events:
                    out.append(self.builder.speech_started(self.channel, event.timestamp))
            elif not event.final:
                if self._held is not None:
                    self._final(self._held, out, speech_final=False)
                    self._held = None
                if event.words:
                    self._speaking = True
                out.append(
                    self.builder.results(
                        event.words,
                        channel=self.channel,
                        start=self._cursor,
                        duration=event.end - self._cursor,
                        is_final=False,
                    )
                )
            elif event.cause == "flush":
                if flush == "finalize":
                    self._final(event, out, speech_final=False, from_finalize=True)
                else:
                    self._final(event, out, speech_final=self._endpointing is not None)
            elif event.cause == "limit" or self._endpointing is None:
                self._final(event, out, speech_final=False)
            else:
                if self._held is not None:
                    self._final(self._held, out, speech_final=False)
                self._held = event

    def _timers(self, out: list[Message]) -> None:
        now = self.stream.time
        held = self._held
        if (
            held is not None
            and self._endpointing is not None
            and now - held.end >= self._endpointing
        ):
            self._final(held, out, speech_final=True)
            self._held = None
        if (
            self._utterance_end is not None
            and self._last_word_end is not None
            and self._held is None
            and not self._speaking
            and now - self._last_word_end >= self._utterance_end
        ):
            out.append(self.builder.utterance_end(self.channel, self._last_word_end))
            self._last_word_end = None

    def _final(
        self,
        hyp: Hypothesis,
        out: list[Message],
        *,
        speech_final: bool,
        from_finalize: bool = False,
    ) -> None:
        end = max(hyp.end, self._cursor)
        out.append(
            self.builder.results(
                hyp.words,
                channel=self.channel,
                start=self._cursor,
                duration=end - self._cursor,
                is_final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
            )
        )
        self._cursor = end
        self._finals += 1
        self._speaking = False
        if hyp.words:
            self._last_word_end = hyp.words[-1].end
