"""The ``transcribe`` model: Deepgram's live ``/v1/listen`` on the offline pocketsphinx engine.

Modules, one job each: ``options`` (the query), ``wav`` (RIFF/WAVE headers), ``frontend``
(samples -> 16 kHz), ``engine`` (the engine interface and pocketsphinx), ``pool`` (loaded
decoders per worker), ``channel`` (Deepgram's result policy per channel), ``messages`` (the JSON
shapes), ``listen`` (one stream), ``model`` (the container model), ``config`` (settings),
``domain`` (a small domain LM and dictionary for ``SAGEBIDI_TRANSCRIBE_LM``/``_DICT``).
"""

from __future__ import annotations

from sagebidi_perf.models.transcribe.config import TranscribeSettings
from sagebidi_perf.models.transcribe.engine import (
    Engine,
    EngineInfo,
    PocketsphinxEngine,
    RecognizerStream,
)
from sagebidi_perf.models.transcribe.model import LISTEN_PATH, NET_0001, TranscribeModel
from sagebidi_perf.models.transcribe.options import ListenOptions, OptionsError, parse_options

__all__ = [
    "LISTEN_PATH",
    "NET_0001",
    "Engine",
    "EngineInfo",
    "ListenOptions",
    "OptionsError",
    "PocketsphinxEngine",
    "RecognizerStream",
    "TranscribeModel",
    "TranscribeSettings",
    "parse_options",
]
