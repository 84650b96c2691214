"""The query string of ``/v1/listen``, parsed and validated into a frozen :class:`ListenOptions`.

Deepgram rejects unknown or invalid parameters at the WebSocket handshake with HTTP 400; so do we
(:class:`OptionsError` becomes a ``RejectUpgrade`` with a Deepgram-style JSON body). What each
documented parameter does here:

* **honoured**: ``model``, ``language``, ``encoding``, ``sample_rate``, ``channels``,
  ``multichannel``, ``interim_results``, ``punctuate``, ``smart_format`` (= ``punctuate``; no
  number formatting), ``endpointing``, ``utterance_end_ms``, ``vad_events``, ``extra`` (echoed in
  ``Metadata.extra``), ``diarize`` (one speaker: every word gets ``speaker: 0``), ``tag``.
* **accepted and validated, no effect** (the engine has no such component): ``keyterm``,
  ``keywords``, ``numerals``, ``dictation``, ``profanity_filter``, ``filler_words``, ``redact``,
  ``replace``, ``search``, ``detect_entities``, ``diarize_model`` (``v1``/``latest``),
  ``diarize_version``, ``alternatives`` (one alternative is returned), ``mip_opt_out``,
  ``version``, ``tier``, ``no_delay``.
* **refused** (400): ``callback``/``callback_method`` (ignoring them would silently send the
  results somewhere else than the caller expects), encodings other than ``linear16``,
  ``linear32``, ``float32``, ``mulaw`` and ``alaw``, languages other than English (``en``,
  ``en-*``; ``multi`` is accepted and decoded as English), and anything unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sagebidi_perf.audio import AUDIO_MAX_CHANNELS, AUDIO_MAX_RATE, AUDIO_MIN_RATE

__all__ = [
    "ENCODINGS",
    "MAX_MULTICHANNEL",
    "ListenOptions",
    "OptionsError",
    "parse_options",
]

Encoding = Literal["linear16", "linear32", "float32", "mulaw", "alaw"]
#: Raw (headerless) encodings we decode. Deepgram also lists flac, amr-nb, amr-wb, opus,
#: ogg-opus, speex and g729: those are refused with 400 rather than decoded into noise.
ENCODINGS: tuple[Encoding, ...] = ("linear16", "linear32", "float32", "mulaw", "alaw")
_OTHER_DEEPGRAM_ENCODINGS = ("flac", "amr-nb", "amr-wb", "opus", "ogg-opus", "speex", "g729")
#: Deepgram transcribes up to 20 channels separately.
MAX_MULTICHANNEL = 20
#: Model names we answer to: Deepgram's families (all served by the one engine) and our own.
_MODEL_RE = re.compile(r"(nova|enhanced|base|general|pocketsphinx)([a-z0-9._-]*)", re.ASCII)
_LANGUAGE_RE = re.compile(r"en([-_][A-Za-z0-9]{1,8})*|multi", re.ASCII)
#: endpointing accepts 0..this many ms (Deepgram documents no bound; a minute is plenty).
MAX_ENDPOINTING_MS = 60_000
MIN_UTTERANCE_END_MS = 1000
MAX_UTTERANCE_END_MS = 60_000
_MAX_VALUE_LEN = 1024
_MAX_REPEATS = 100

_BOOLS = frozenset(
    {
        "multichannel",
        "interim_results",
        "punctuate",
        "smart_format",
        "vad_events",
        "diarize",
        "numerals",
        "dictation",
        "profanity_filter",
        "filler_words",
        "detect_entities",
        "mip_opt_out",
        "no_delay",
    }
)
_SINGLE_STR = frozenset({"version", "tier", "diarize_version"})
_REPEATED_STR = frozenset({"keyterm", "keywords", "redact", "replace", "search", "tag", "extra"})
_KNOWN = frozenset(
    {
        "model",
        "language",
        "encoding",
        "sample_rate",
        "channels",
        "endpointing",
        "utterance_end_ms",
        "diarize_model",
        "alternatives",
        *_BOOLS,
        *_SINGLE_STR,
        *_REPEATED_STR,
    }
)
_REFUSED = {
    "callback": "callbacks are not supported: results come back on the WebSocket only",
    "callback_method": "callbacks are not supported: results come back on the WebSocket only",
}


class OptionsError(ValueError):
    """A query parameter is unknown (``unsupported_parameter``) or invalid
    (``invalid_parameter``)."""

    def __init__(self, parameter: str, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.code = "unsupported_parameter" if unsupported else "invalid_parameter"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenOptions:
    """Validated ``/v1/listen`` options (defaults are Deepgram's)."""

    model: str = "nova-3"
    language: str = "en"
    #: None: containerized audio (a WAV header is expected in the first binary frames).
    encoding: Encoding | None = None
    #: Required with ``encoding``; ignored for WAV (the header says).
    sample_rate: int | None = None
    channels: int = 1
    multichannel: bool = False
    interim_results: bool = False
    punctuate: bool = False
    smart_format: bool = False
    #: Silence (ms) that ends an utterance with ``speech_final``; None = ``endpointing=false``.
    endpointing: int | None = 10
    utterance_end_ms: int | None = None
    vad_events: bool = False
    diarize: bool = False
    tags: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    keyterms: tuple[str, ...] = ()

    @property
    def formatted(self) -> bool:
        """Whether words carry ``punctuated_word`` (``punctuate`` or ``smart_format``)."""
        return self.punctuate or self.smart_format

    @property
    def multilingual(self) -> bool:
        return self.language == "multi"


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise OptionsError(name, f"{name} must be true or false, got {value!r}")


def _int(name: str, value: str, low: int, high: int) -> int:
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,9}", text, re.ASCII):
        raise OptionsError(name, f"{name} must be an integer, got {value!r}")
    number = int(text)
    if not low <= number <= high:
        raise OptionsError(name, f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_options(query: Iterable[tuple[str, str]]) -> ListenOptions:
    """Validate a query (key, value pairs in order; repeatable keys may repeat)."""
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for key, value in query:
        if key in _REFUSED:
            raise OptionsError(key, _REFUSED[key], unsupported=True)
        if key not in _KNOWN:
            raise OptionsError(key, f"unsupported parameter {key!r}", unsupported=True)
        if len(value) > _MAX_VALUE_LEN:
            raise OptionsError(key, f"{key} is longer than {_MAX_VALUE_LEN} characters")
        if key in _REPEATED_STR:
            values = repeated.setdefault(key, [])
            if len(values) >= _MAX_REPEATS:
                raise OptionsError(key, f"{key} may be given at most {_MAX_REPEATS} times")
            values.append(value)
        elif key in single:
            raise OptionsError(key, f"{key} is given more than once")
        else:
            single[key] = value

    bools = {name: _bool(name, single[name]) for name in _BOOLS if name in single}

    model = single.get("model", "nova-3").strip()
    if not _MODEL_RE.fullmatch(model):
        raise OptionsError("model", f"unsupported model {model!r} (this server runs pocketsphinx)")
    language = single.get("language", "en").strip()
    if not _LANGUAGE_RE.fullmatch(language):
        raise OptionsError(
            "language", f"unsupported language {language!r}: this server transcribes English"
        )

    encoding: Encoding | None = None
    if "encoding" in single:
        raw = single["encoding"].strip().lower()
        if raw in _OTHER_DEEPGRAM_ENCODINGS:
            raise OptionsError(
                "encoding", f"encoding {raw!r} is not supported here (use {', '.join(ENCODINGS)})"
            )
        for candidate in ENCODINGS:
            if raw == candidate:
                encoding = candidate
                break
        else:
            raise OptionsError("encoding", f"unknown encoding {raw!r}")
    sample_rate = None
    if "sample_rate" in single:
        sample_rate = _int("sample_rate", single["sample_rate"], AUDIO_MIN_RATE, AUDIO_MAX_RATE)
    if encoding is not None and sample_rate is None:
        raise OptionsError("sample_rate", "sample_rate is required with encoding (raw audio)")
    channels = 1
    if "channels" in single:
        channels = _int("channels", single["channels"], 1, AUDIO_MAX_CHANNELS)
    multichannel = bools.get("multichannel", False)
    if multichannel and channels > MAX_MULTICHANNEL:
        raise OptionsError(
            "channels", f"multichannel transcribes at most {MAX_MULTICHANNEL} channels"
        )

    endpointing: int | None = 10
    if "endpointing" in single:
        raw = single["endpointing"].strip().lower()
        if raw == "false":
            endpointing = None
        elif raw != "true":
            endpointing = _int("endpointing", raw, 0, MAX_ENDPOINTING_MS)
    interim_results = bools.get("interim_results", False)
    utterance_end_ms = None
    if "utterance_end_ms" in single:
        utterance_end_ms = _int(
            "utterance_end_ms",
            single["utterance_end_ms"],
            MIN_UTTERANCE_END_MS,
            MAX_UTTERANCE_END_MS,
        )
        if not interim_results:
            raise OptionsError("utterance_end_ms", "utterance_end_ms requires interim_results=true")

    if "diarize_model" in single and single["diarize_model"] not in ("v1", "latest"):
        raise OptionsError("diarize_model", "diarize_model must be v1 or latest when streaming")
    if "alternatives" in single:
        _int("alternatives", single["alternatives"], 1, 10)

    extra: list[tuple[str, str]] = []
    for item in repeated.get("extra", []):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise OptionsError("extra", f"extra must be key:value, got {item!r}")
        extra.append((key, value))
    for item in repeated.get("replace", []):
        if ":" not in item:
            raise OptionsError("replace", f"replace must be find:replacement, got {item!r}")

    return ListenOptions(
        model=model,
        language=language,
        encoding=encoding,
        sample_rate=sample_rate,
        channels=channels,
        multichannel=multichannel,
        interim_results=interim_results,
        punctuate=bools.get("punctuate", False),
        smart_format=bools.get("smart_format", False),
        endpointing=endpointing,
        utterance_end_ms=utterance_end_ms,
        vad_events=bools.get("vad_events", False),
        diarize=bools.get("diarize", False),
        tags=tuple(repeated.get("tag", [])),
        extra=tuple(extra),
        keyterms=tuple(repeated.get("keyterm", []) + repeated.get("keywords", [])),
    )
