"""How soon the transcribe model's finals come out, on the audio clock (no wall-clock thresholds):
Deepgram's ``endpointing`` picks the engine's VAD window, and a final leaves a decode slice as
soon as it exists. The real pocketsphinx decoder with the small domain LM (exact text)."""

from __future__ import annotations

from typing import Any

import pocketsphinx  # type: ignore[import-untyped]
import pytest

from sagebidi_perf.models.transcribe.channel import ChannelTranscriber
from sagebidi_perf.models.transcribe.engine import (
    VAD_RATIO,
    VAD_SETTINGS,
    VAD_WINDOW,
    PocketsphinxEngine,
    PocketsphinxStream,
    vad_setting,
)
from sagebidi_perf.models.transcribe.messages import MessageBuilder
from sagebidi_perf.models.transcribe.options import parse_options
from transcribe_helpers import SENTENCES, SPEECH, build_small_lm, pcm

AUDIO, RATE, _ = pcm(SPEECH / "klatt6_16k.wav")
#: The 3rd and 4th sentences, 1 s of silence between them (as in test_transcribe_protocol.py).
TWO = AUDIO[int(9.6 * RATE) * 2 : int(20.0 * RATE) * 2]
FRAME = 960  # 30 ms at 16 kHz


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> PocketsphinxEngine:
    lm, dictionary = build_small_lm(tmp_path_factory.mktemp("lm"))
    return PocketsphinxEngine(lm=str(lm), dictionary=str(dictionary))


@pytest.fixture(scope="module")
def stream(engine: PocketsphinxEngine) -> PocketsphinxStream:
    return engine.create()  # each ChannelTranscriber resets it


def transcriber(
    engine: PocketsphinxEngine, stream: PocketsphinxStream, query: str = ""
) -> ChannelTranscriber:
    pairs = [tuple(item.split("=", 1)) for item in query.split("&") if item]
    options = parse_options(pairs)  # type: ignore[arg-type]
    return ChannelTranscriber(stream, MessageBuilder(options, engine.info, "test"), options)


def text_of(message: dict[str, Any]) -> str:
    return str(message["channel"]["alternatives"][0]["transcript"])


def test_endpointing_maps_to_the_longest_vad_window_not_longer() -> None:
    assert vad_setting(None) == (VAD_WINDOW, VAD_RATIO) == (0.3, 0.9)
    # Deepgram's default (10 ms) and anything below the shortest window: the shortest.
    for seconds in (0.0, 0.01, 0.089, 0.09, 0.1, 0.119):
        assert vad_setting(seconds) == (0.09, 0.67), seconds
    assert vad_setting(0.12) == vad_setting(0.149) == (0.12, 0.75)
    assert vad_setting(0.15) == vad_setting(0.299) == (0.15, 0.8)
    assert vad_setting(0.3) == vad_setting(2.0) == vad_setting(60.0) == (0.3, 0.9)
    windows = [window for window, _ in VAD_SETTINGS]
    assert windows == sorted(windows)
    assert VAD_SETTINGS[-1] == (VAD_WINDOW, VAD_RATIO)


def test_every_vad_setting_is_valid_for_pocketsphinx() -> None:
    for window, ratio in VAD_SETTINGS:
        endpointer = pocketsphinx.Endpointer(
            window=window, ratio=ratio, vad_mode=pocketsphinx.Vad.LOOSE, sample_rate=16000
        )
        assert endpointer.frame_bytes == FRAME
    # Why ratios fall with the window: the short window with the default ratio is refused.
    with pytest.raises(ValueError, match="Invalid endpointer"):
        pocketsphinx.Endpointer(window=0.09, ratio=0.9, sample_rate=16000)


@pytest.mark.parametrize(
    ("query", "vad"),
    [
        ("", (0.09, 0.67)),
        ("endpointing=0", (0.09, 0.67)),
        ("endpointing=150", (0.15, 0.8)),
        ("endpointing=300", (0.3, 0.9)),
        ("endpointing=2000", (0.3, 0.9)),
        ("endpointing=false", (0.3, 0.9)),
    ],
)
def test_each_stream_gets_the_vad_window_of_its_endpointing(
    engine: PocketsphinxEngine, stream: PocketsphinxStream, query: str, vad: tuple[float, float]
) -> None:
    transcriber(engine, stream, query)
    assert stream.vad == vad
    stream.reset(partial_interval=None)  # no preference: the default
    assert stream.vad == (VAD_WINDOW, VAD_RATIO)


def finals_with_clock(t: ChannelTranscriber, audio: bytes) -> list[tuple[float, dict[str, Any]]]:
    """Feed 30 ms at a time; each final with the audio clock at which it came out."""
    out = []
    for offset in range(0, len(audio), FRAME):
        for message in t.feed(audio[offset : offset + FRAME]):
            if message["type"] == "Results" and message["is_final"]:
                out.append((t.stream.time, message))
    return out


def test_default_endpointing_ends_utterances_after_the_short_window(
    engine: PocketsphinxEngine, stream: PocketsphinxStream
) -> None:
    """Deepgram's default 10 ms: each final is out within the 0.09 s window (plus a frame or two
    of framing) of its window's end. With endpointing=300 the final waits for 0.3 s of silence.
    Same words, both speech_final."""
    fast = finals_with_clock(transcriber(engine, stream), TWO)
    slow = finals_with_clock(transcriber(engine, stream, "endpointing=300"), TWO)
    for finals in (fast, slow):
        assert [text_of(m) for _, m in finals] == SENTENCES[2:4]
        assert [m["speech_final"] for _, m in finals] == [True, True]
    fast_lags = [clock - (m["start"] + m["duration"]) for clock, m in fast]
    slow_lags = [clock - (m["start"] + m["duration"]) for clock, m in slow]
    assert all(0 < lag <= 0.09 + 2 * 0.03 for lag in fast_lags), fast_lags
    assert all(lag >= 0.3 - 1e-6 for lag in slow_lags), slow_lags


def test_until_final_returns_at_each_final_and_loses_nothing(
    engine: PocketsphinxEngine, stream: PocketsphinxStream
) -> None:
    """The same messages as feeding frame by frame (timers included), in more calls."""
    query = "interim_results=true&vad_events=true&utterance_end_ms=1000"
    framed = transcriber(engine, stream, query)
    expected = [m for i in range(0, len(TWO), FRAME) for m in framed.feed(TWO[i : i + FRAME])]
    expected += framed.end()

    early = transcriber(engine, stream, query)
    calls = [early.feed(TWO, until_final=True)]
    assert early.pending > 0  # returned at the first final, the rest waits
    while early.pending:
        calls.append(early.feed(b"", until_final=True))
    tail = early.end()
    assert [m for call in calls for m in call] + tail == expected
    # Every call but the last stopped at its (one) final.
    for call in calls[:-1]:
        finals = [m for m in call if m["type"] == "Results" and m["is_final"]]
        assert len(finals) == 1
    assert sum(text_of(m) != "" for m in expected if m.get("is_final")) == 2


def test_pending_audio_is_decoded_before_a_finalize(
    engine: PocketsphinxEngine, stream: PocketsphinxStream
) -> None:
    t = transcriber(engine, stream)
    first = t.feed(TWO, until_final=True)
    assert [text_of(m) for m in first if m.get("is_final")] == SENTENCES[2:3]
    assert t.pending > 0
    rest = t.finalize()  # drains the pending audio first: the 2nd sentence is not lost
    assert t.pending == 0
    assert [text_of(m) for m in rest if m.get("is_final") and text_of(m)] == SENTENCES[3:4]


def test_a_fresh_stream_has_the_default_window(engine: PocketsphinxEngine) -> None:
    """A fresh stream (and the pool's reset) has no preference: the most conservative window."""
    fresh = engine.create()
    assert fresh.vad == (VAD_WINDOW, VAD_RATIO)


def test_speech_final_does_not_depend_on_how_the_audio_is_cut(
    engine: PocketsphinxEngine, stream: PocketsphinxStream
) -> None:
    """A held VAD final released by the next speech is speech_final when the pause before that
    speech was long enough, even if both arrive in one feed (a big client message)."""
    for query, expected in (("", [True, True]), ("endpointing=800", [True, True])):
        whole = transcriber(engine, stream, query)
        finals = [m for m in whole.feed(TWO) + whole.end() if m.get("is_final")]
        assert [text_of(m) for m in finals] == SENTENCES[2:4]
        assert [m["speech_final"] for m in finals] == expected, query
    # 1 s between the sentences is shorter than 2 s: not an endpoint.
    whole = transcriber(engine, stream, "endpointing=2000")
    finals = [m for m in whole.feed(TWO) + whole.end() if m.get("is_final")]
    assert [m["speech_final"] for m in finals] == [False, True]
