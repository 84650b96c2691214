"""Deepgram ``/v1/listen`` server messages, with exactly the keys Deepgram sends.

* ``Results``: ``type, channel_index, duration, start, is_final, speech_final, channel{alternatives
  [{transcript, confidence, words[{word, start, end, confidence, punctuated_word?, speaker?,
  language?}], languages?}]}, metadata{request_id, model_info{name, version, arch}, model_uuid}``,
  plus ``from_finalize`` on finals (``false`` unless produced by a client ``Finalize``);
* ``SpeechStarted``: ``type, channel, timestamp``;
* ``UtteranceEnd``: ``type, channel, last_word_end``;
* ``Metadata`` once at the end: ``type, transaction_key, request_id, sha256, created, duration,
  channels, models, model_info`` (and ``extra`` when the query had ``extra=k:v``).

Punctuation (``punctuate`` or ``smart_format``) is simple: the first word of a result is
capitalised, so is the pronoun "I", and a final ends with a period. ``smart_format`` formats no
numbers or dates.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from sagebidi_perf.models.transcribe.engine import EngineInfo, Word
from sagebidi_perf.models.transcribe.options import ListenOptions

__all__ = ["MessageBuilder", "iso_now", "punctuate"]

_PRONOUN_I = frozenset({"i", "i'm", "i'll", "i'd", "i've"})


def iso_now() -> str:
    """UTC now as Deepgram's ``created``: ISO 8601 with milliseconds and ``Z``."""
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def punctuate(words: Sequence[str], *, final: bool) -> list[str]:
    """Deepgram's ``punctuated_word`` values: capitalised start (and "I"), a period at the end of
    a final."""
    out = []
    for i, word in enumerate(words):
        if i == 0 or word in _PRONOUN_I:
            word = word[:1].upper() + word[1:]
        out.append(word)
    if final and out and not out[-1].endswith((".", "?", "!")):
        out[-1] += "."
    return out


def _r(value: float) -> float:
    return round(value, 3)


class MessageBuilder:
    """Builds one session's messages (its request id, options and engine)."""

    def __init__(self, options: ListenOptions, info: EngineInfo, request_id: str) -> None:
        self.options = options
        self.info = info
        self.request_id = request_id
        self._model_info = {"name": info.name, "version": info.version, "arch": info.arch}

    def results(
        self,
        words: Sequence[Word],
        *,
        channel: tuple[int, int],
        start: float,
        duration: float,
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        options = self.options
        plain = [w.word for w in words]
        shown = punctuate(plain, final=is_final) if options.formatted else plain
        word_list: list[dict[str, Any]] = []
        for word, text in zip(words, shown, strict=True):
            item: dict[str, Any] = {
                "word": word.word,
                "start": _r(word.start),
                "end": _r(word.end),
                "confidence": word.confidence,
            }
            if options.formatted:
                item["punctuated_word"] = text
            if options.diarize:
                item["speaker"] = 0
            if options.multilingual:
                item["language"] = "en"
            word_list.append(item)
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        alternative: dict[str, Any] = {
            "transcript": " ".join(shown),
            "confidence": round(confidence, 4),
            "words": word_list,
        }
        if options.multilingual:
            alternative["languages"] = ["en"] if words else []
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [channel[0], channel[1]],
            "duration": _r(max(duration, 0.0)),
            "start": _r(start),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [alternative]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": dict(self._model_info),
                "model_uuid": self.info.uuid,
            },
        }
        if is_final:
            message["from_finalize"] = from_finalize
        return message

    def speech_started(self, channel: tuple[int, int], timestamp: float) -> dict[str, Any]:
        return {
            "type": "SpeechStarted",
            "channel": [channel[0], channel[1]],
            "timestamp": _r(timestamp),
        }

    def utterance_end(self, channel: tuple[int, int], last_word_end: float) -> dict[str, Any]:
        return {
            "type": "UtteranceEnd",
            "channel": [channel[0], channel[1]],
            "last_word_end": _r(last_word_end),
        }

    def metadata(
        self, *, sha256: str, created: str, duration: float, channels: int
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": sha256,
            "created": created,
            "duration": round(duration, 6),
            "channels": channels,
            "models": [self.info.uuid],
            "model_info": {self.info.uuid: dict(self._model_info)},
        }
        if self.options.extra:
            message["extra"] = dict(self.options.extra)
        return message
