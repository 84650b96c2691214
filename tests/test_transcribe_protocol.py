"""The Deepgram /v1/listen protocol of the transcribe model, end to end over real sockets.

The engine is the real pocketsphinx decoder with a small domain LM built at test time from
fixtures/speech/sentences.txt (loads in ~10 ms, decodes the espeak fixtures exactly), so results
can be compared with the spoken sentences word for word.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from collections.abc import Callable
from pathlib import Path

import jiwer
import numpy as np
import pytest
import trio
import wsproto.events

from container_helpers import http_request, start_server
from sagebidi_perf.audio import resample
from sagebidi_perf.models.transcribe import NET_0001, TranscribeModel
from sagebidi_perf.models.transcribe import engine as engine_module
from sagebidi_perf.models.transcribe.engine import PocketsphinxEngine
from transcribe_helpers import (
    SENTENCES,
    SPEECH,
    Transcript,
    build_small_lm,
    chunked,
    collect,
    pcm,
    receive_json,
    stream_audio,
)
from wsproto_client import Closed, connect

RAW16 = "encoding=linear16&sample_rate=16000"
AUDIO, RATE, _ = pcm(SPEECH / "klatt6_16k.wav")
assert RATE == 16000


def clip(start: float, end: float) -> bytes:
    return AUDIO[int(start * RATE) * 2 : int(end * RATE) * 2]


#: One sentence with ~0.9 s of silence before and ~0.6 s after (the 3rd of sentences.txt).
WEATHER = clip(9.6, 14.5)
#: The 3rd and 4th sentences, 1 s of silence between them.
TWO = clip(9.6, 20.0)

RESULTS_KEYS = {
    "type",
    "channel_index",
    "duration",
    "start",
    "is_final",
    "speech_final",
    "channel",
    "metadata",
}
METADATA_KEYS = {
    "type",
    "transaction_key",
    "request_id",
    "sha256",
    "created",
    "duration",
    "channels",
    "models",
    "model_info",
}

Factory = Callable[..., TranscribeModel]


@pytest.fixture(scope="module")
def small_lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_small_lm(tmp_path_factory.mktemp("lm"))


@pytest.fixture
def make_model(small_lm: tuple[Path, Path]) -> Factory:
    def make(**kwargs: object) -> TranscribeModel:
        kwargs.setdefault("decoders", 2)
        return TranscribeModel(lm=str(small_lm[0]), dictionary=str(small_lm[1]), **kwargs)  # type: ignore[arg-type]

    return make


def words_of(message: dict[str, object]) -> list[dict[str, object]]:
    return message["channel"]["alternatives"][0]["words"]  # type: ignore[index, no-any-return]


def transcript_of(message: dict[str, object]) -> str:
    return message["channel"]["alternatives"][0]["transcript"]  # type: ignore[index, no-any-return]


def check_stream_end(transcript: Transcript, sent: bytes, rate: int = RATE) -> None:
    """Metadata last, once, with the hash and duration of the audio; then Close 1000."""
    assert transcript.closed is not None
    assert transcript.closed.code == 1000
    assert [m["type"] for m in transcript.messages].count("Metadata") == 1
    meta = transcript.messages[-1]
    assert meta["type"] == "Metadata"
    assert set(meta) == METADATA_KEYS
    assert meta["transaction_key"] == "deprecated"
    assert meta["sha256"] == hashlib.sha256(sent).hexdigest()
    assert meta["created"].endswith("Z")
    assert len(meta["created"]) == len("2026-11-25T09:53:48.312Z")
    assert meta["models"] == list(meta["model_info"])


async def test_interim_and_final_shapes(nursery: trio.Nursery, make_model: Factory) -> None:
    model = make_model()
    server = await start_server(nursery, model)
    query = f"{RAW16}&interim_results=true&punctuate=true"
    transcript = await stream_audio(server.port, chunked(WEATHER, 3200), query)

    results = transcript.of("Results")
    assert transcript.interims
    assert len(transcript.finals) == 1
    final = transcript.finals[0]
    assert transcript_of(final) == "The weather today is sunny with a light breeze from the west."
    expected_words = SENTENCES[2].split()
    assert [w["word"] for w in words_of(final)] == expected_words
    assert words_of(final)[0]["punctuated_word"] == "The"
    assert words_of(final)[-1]["punctuated_word"] == "west."
    for message in results:
        keys = RESULTS_KEYS | ({"from_finalize"} if message["is_final"] else set())
        assert set(message) == keys
        assert message["channel_index"] == [0, 1]
        assert set(message["metadata"]) == {"request_id", "model_info", "model_uuid"}
        assert set(message["metadata"]["model_info"]) == {"name", "version", "arch"}
        (alternative,) = message["channel"]["alternatives"]
        assert set(alternative) == {"transcript", "confidence", "words"}
        for word in alternative["words"]:
            assert set(word) == {"word", "start", "end", "confidence", "punctuated_word"}
            assert 0.0 <= word["confidence"] <= 1.0
            assert word["start"] < word["end"]
    assert final["is_final"] is True
    assert final["speech_final"] is True
    assert final["from_finalize"] is False
    assert 0 < final["channel"]["alternatives"][0]["confidence"] <= 1
    # Interims revise the window that the final then locks: same start, growing duration.
    for interim in transcript.interims:
        assert interim["is_final"] is False
        assert interim["speech_final"] is False
        assert interim["start"] == final["start"] == 0.0
        assert interim["duration"] <= final["duration"]
    durations = [m["duration"] for m in transcript.interims]
    assert durations == sorted(durations)
    # Word times are on the stream's clock: the speech starts ~0.9 s in.
    assert 0.7 < words_of(final)[0]["start"] < 1.3
    assert words_of(final)[-1]["end"] <= final["start"] + final["duration"] + 0.01
    # The same request id and model on every message.
    meta = transcript.messages[-1]
    assert {m["metadata"]["request_id"] for m in results} == {meta["request_id"]}
    assert {m["metadata"]["model_uuid"] for m in results} == set(meta["models"])
    check_stream_end(transcript, WEATHER)
    assert meta["duration"] == pytest.approx(len(WEATHER) / 2 / RATE)
    assert meta["channels"] == 1


async def test_plain_words_and_no_interims_by_default(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    transcript = await stream_audio(server.port, chunked(TWO, 8000), RAW16)
    assert not transcript.interims
    assert [transcript_of(m) for m in transcript.finals] == SENTENCES[2:4]
    for final in transcript.finals:
        for word in words_of(final):
            assert set(word) == {"word", "start", "end", "confidence"}
    # Windows are contiguous: each final starts where the previous one ended.
    first, second = transcript.finals
    assert second["start"] == pytest.approx(first["start"] + first["duration"], abs=0.002)
    assert first["speech_final"]
    assert second["speech_final"]
    check_stream_end(transcript, TWO)


async def test_diarize_and_multi_language_fields(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    query = f"{RAW16}&diarize=true&language=multi&smart_format=true&extra=team:asr&tag=t1"
    transcript = await stream_audio(server.port, [WEATHER], query)
    (final,) = transcript.finals
    assert final["channel"]["alternatives"][0]["languages"] == ["en"]
    for word in words_of(final):
        assert word["speaker"] == 0
        assert word["language"] == "en"
        assert "punctuated_word" in word
    assert transcript.messages[-1]["extra"] == {"team": "asr"}


async def test_vad_events_and_utterance_end(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model())
    query = f"{RAW16}&vad_events=true&interim_results=true&utterance_end_ms=1000"
    transcript = await stream_audio(server.port, chunked(TWO + bytes(48000), 3200), query)
    kinds = [m["type"] for m in transcript.messages]
    started = transcript.of("SpeechStarted")
    assert len(started) == 2
    for message in started:
        assert set(message) == {"type", "channel", "timestamp"}
        assert message["channel"] == [0, 1]
    # Speech starts at ~0.9 s and ~5.4 s into the clip (1 s silences in the fixture).
    assert 0.6 < started[0]["timestamp"] < 1.2
    assert 5.0 < started[1]["timestamp"] < 5.8
    # SpeechStarted precedes the utterance's results.
    assert kinds.index("SpeechStarted") < kinds.index("Results")
    ends = transcript.of("UtteranceEnd")
    assert len(ends) == 2  # after each sentence: 1 s gaps (the clip ends with 1.5 s of silence)
    for end, final in zip(ends, transcript.finals, strict=True):
        assert set(end) == {"type", "channel", "last_word_end"}
        assert end["last_word_end"] == words_of(final)[-1]["end"]
        # after its final, and not a second (of audio) too early
        assert transcript.messages.index(end) > transcript.messages.index(final)
    assert kinds[-3:] == ["Results", "UtteranceEnd", "Metadata"]


async def test_no_utterance_end_when_the_gap_is_too_short(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    query = f"{RAW16}&interim_results=true&utterance_end_ms=3000"
    transcript = await stream_audio(server.port, [TWO], query)
    assert len(transcript.finals) == 2
    assert not transcript.of("UtteranceEnd")  # 1 s gaps, then the end of the stream


async def test_endpointing_false_never_sets_speech_final(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    transcript = await stream_audio(server.port, [TWO], f"{RAW16}&endpointing=false")
    assert [transcript_of(m) for m in transcript.finals] == SENTENCES[2:4]
    assert [m["speech_final"] for m in transcript.finals] == [False, False]


async def test_long_endpointing_holds_speech_final_for_the_pause(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    # 1 s between the sentences: shorter than 2 s, so the first final is not speech_final.
    transcript = await stream_audio(server.port, [TWO], f"{RAW16}&endpointing=2000")
    assert [m["speech_final"] for m in transcript.finals] == [False, True]  # the end: an endpoint
    # 800 ms: the 1 s pause is long enough.
    transcript = await stream_audio(server.port, [TWO], f"{RAW16}&endpointing=800")
    assert [m["speech_final"] for m in transcript.finals] == [True, True]


async def test_long_speech_is_finalized_in_pieces(
    nursery: trio.Nursery, make_model: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An utterance longer than MAX_UTTERANCE_SECONDS (30 s; 1 s here) is finalized without a
    pause: is_final with speech_final false, and the next window goes on from there."""
    monkeypatch.setattr(engine_module, "MAX_UTTERANCE_SECONDS", 1.0)
    server = await start_server(nursery, make_model())
    transcript = await stream_audio(server.port, [WEATHER], RAW16)
    finals = transcript.finals
    assert len(finals) >= 3
    assert [m["speech_final"] for m in finals[:-1]] == [False] * (len(finals) - 1)
    assert finals[-1]["speech_final"] is True
    for before, after in itertools.pairwise(finals):
        assert after["start"] == pytest.approx(before["start"] + before["duration"], abs=0.002)
    assert 1.0 <= finals[1]["duration"] <= 1.1
    assert jiwer.wer(SENTENCES[2], transcript.text()) <= 0.5


async def test_finalize_flushes_and_keeps_the_socket_open(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    client = await connect(server.port, f"/v1/listen?{RAW16}&interim_results=true")
    head, rest = WEATHER[: 3 * RATE * 2], WEATHER[3 * RATE * 2 :]  # cut mid-sentence
    await client.send(head)
    await client.send('{"type": "Finalize"}')
    received = Transcript()
    with trio.fail_after(30):
        while not received.finals:
            message = await receive_json(client)
            assert not isinstance(message, Closed), message
            received.messages.append(message)
    (flushed,) = received.finals
    assert flushed["from_finalize"] is True
    assert flushed["speech_final"] is False
    words = transcript_of(flushed).split()
    assert words
    assert words == SENTENCES[2].split()[: len(words)]  # a prefix of the sentence
    # Still open: more audio, a KeepAlive, then the end.
    await client.send(rest)
    await client.send('{"type": "KeepAlive"}')
    await client.send('{"type": "CloseStream"}')
    with trio.fail_after(30):
        await collect(client, received)
    await client.aclose()
    later = received.finals[1:]
    assert all(m["from_finalize"] is False for m in later)
    # (The sentence was cut in two utterances: the second half decodes without its context.)
    assert " ".join([*words, *(transcript_of(m) for m in later)]).split()[-1] == "west"
    # Contiguous windows across the flush.
    assert later[0]["start"] == pytest.approx(flushed["start"] + flushed["duration"], abs=0.002)
    check_stream_end(received, WEATHER)


async def test_finalize_with_nothing_buffered_sends_nothing(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    silence = bytes(RATE)  # 0.5 s of digital silence: no speech, nothing to finalize
    transcript = await stream_audio(
        server.port,
        [silence, '{"type":"Finalize"}', '{"type":"Finalize","channel":0}'],  # type: ignore[list-item]
        RAW16,
    )
    assert [m["type"] for m in transcript.messages] == ["Metadata"]
    check_stream_end(transcript, silence)
    assert transcript.messages[0]["duration"] == 0.5


async def test_close_stream_without_audio(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model())
    transcript = await stream_audio(server.port, [], RAW16)
    (meta,) = transcript.messages
    assert meta["type"] == "Metadata"
    assert meta["duration"] == 0.0
    assert meta["channels"] == 0
    check_stream_end(transcript, b"")
    assert meta["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


async def test_empty_binary_frame_ends_the_stream(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    transcript = await stream_audio(server.port, [WEATHER], RAW16, close=b"")
    assert transcript_of(transcript.finals[0]) == SENTENCES[2]
    check_stream_end(transcript, WEATHER)


async def test_control_messages_as_binary_frames(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    chunks = [WEATHER[:40000], b'{"type":"KeepAlive"}', WEATHER[40000:]]
    transcript = await stream_audio(server.port, chunks, RAW16, close=b'{"type": "CloseStream"}')
    assert transcript_of(transcript.finals[0]) == SENTENCES[2]
    check_stream_end(transcript, WEATHER)  # the control frames are not audio


async def test_unknown_and_malformed_text_is_ignored(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model())
    chunks: list[str | bytes] = [
        '{"type":"Configure","x":1}',
        "not json",
        "[1, 2]",
        '{"no_type": true}',
        WEATHER,
        '{"type": 5}',
    ]
    transcript = await stream_audio(server.port, chunks, RAW16)  # type: ignore[arg-type]
    assert transcript_of(transcript.finals[0]) == SENTENCES[2]
    check_stream_end(transcript, WEATHER)


async def test_idle_stream_closes_with_net_0001(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model(idle_timeout=0.3))
    client = await connect(server.port, f"/v1/listen?{RAW16}")
    with trio.fail_after(10):
        closed = await client.receive()
    await client.aclose()
    assert closed == Closed(1011, NET_0001)
    assert NET_0001.startswith("NET-0001")
    assert "dpgr.am/net0001" in NET_0001


async def test_keepalive_and_audio_keep_the_stream_open(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    server = await start_server(nursery, make_model(idle_timeout=1.0))
    client = await connect(server.port, f"/v1/listen?{RAW16}")
    for i in range(8):  # 2.4 s in all, more than twice the idle timeout
        await trio.sleep(0.3)
        await client.send('{"type":"KeepAlive"}' if i % 2 else bytes(3200))
    await client.send('{"type":"CloseStream"}')
    transcript = Transcript()
    with trio.fail_after(10):
        await collect(client, transcript)
    await client.aclose()
    check_stream_end(transcript, bytes(3200) * 4)


async def test_raw_encodings(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model())
    samples = np.frombuffer(WEATHER, dtype="<i2")
    as_float = samples.astype(np.float32) / 32768
    variants = {
        "encoding=linear32&sample_rate=16000": (samples.astype(np.int32) << 16).tobytes(),
        "encoding=float32&sample_rate=16000": as_float.tobytes(),
        "encoding=linear16&sample_rate=48000": (
            resample(as_float, 16000, 48000, dtype="int16").astype("<i2").tobytes()
        ),
        "encoding=mulaw&sample_rate=16000": _mulaw(samples),
    }
    for query, data in variants.items():
        transcript = await stream_audio(server.port, chunked(data, 4001), query)
        assert transcript.text() == SENTENCES[2], query
        assert transcript.messages[-1]["duration"] == pytest.approx(len(samples) / RATE, abs=1e-3)


def _mulaw(samples: np.ndarray) -> bytes:
    """G.711 mu-law encoding (the reference algorithm), for the test only."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


async def test_wav_header_split_across_frames(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model())
    header = (
        b"RIFF\xff\xff\xff\xffWAVE"
        + b"LIST\x04\x00\x00\x00INFO"
        + b"fmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
        + b"data\xff\xff\xff\xff"
    )
    data = header + WEATHER
    chunks = [data[i : i + 1] for i in range(20)] + chunked(data[20:], 5000)
    transcript = await stream_audio(server.port, chunks)
    assert transcript.text() == SENTENCES[2]
    check_stream_end(transcript, data)
    assert transcript.messages[-1]["duration"] == pytest.approx(len(WEATHER) / 2 / RATE)


@pytest.mark.parametrize(
    "first",
    [
        b"\x01\x02" * 2000,  # raw PCM without encoding=
        b"OggS" + b"\0" * 200,
        b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\xff" * 16 + b"data\0\0\0\0",
        b"RIFF\x00\x00\x00\x00WAVELIST\xf0\xff\xff\xff",
    ],
)
async def test_undecodable_audio_closes_with_data_0000(
    nursery: trio.Nursery, make_model: Factory, first: bytes
) -> None:
    model = make_model(decoders=1)
    server = await start_server(nursery, model)
    client = await connect(server.port, "/v1/listen")
    await client.send(first)
    with trio.fail_after(10):
        closed = await client.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1008
    assert closed.reason.startswith("DATA-0000")
    await client.aclose()
    # The server is fine, and so is the pool.
    transcript = await stream_audio(server.port, [WEATHER], RAW16)
    assert transcript.text() == SENTENCES[2]
    assert model.pool.free == 1


async def test_multichannel_wav_with_more_channels_than_decoders(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    model = make_model(decoders=2)
    server = await start_server(nursery, model)
    header = (
        b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 1, 3, 16000, 96000, 6, 16)
        + b"data\xff\xff\xff\xff"
    )
    client = await connect(server.port, "/v1/listen?multichannel=true")
    await client.send(header + bytes(6000))
    with trio.fail_after(10):
        closed = await client.receive()
    await client.aclose()
    assert isinstance(closed, Closed)
    assert closed.code == 1008
    assert "3 channels needs 3 decoders" in closed.reason
    assert model.pool.free == 2
    # Without multichannel the same audio is downmixed and needs one decoder.
    transcript = await stream_audio(server.port, [header + bytes(6000)])
    assert transcript.messages[-1]["channels"] == 3
    assert transcript.messages[-1]["duration"] == pytest.approx(1000 / 16000)


async def test_same_audio_twice_on_one_decoder_gives_the_same_result(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    """CMN (cepstral mean) adapts during a stream; each stream starts from the model's."""
    server = await start_server(nursery, make_model(decoders=1))
    runs = []
    for _ in range(3):
        transcript = await stream_audio(server.port, chunked(TWO, 6400), RAW16)
        runs.append([{**m, "metadata": None} for m in transcript.finals])
    assert runs[0] == runs[1] == runs[2]
    assert [transcript_of(m) for m in runs[0]] == SENTENCES[2:4]


def test_cmn_is_reset_per_stream(small_lm: tuple[Path, Path]) -> None:
    engine = PocketsphinxEngine(lm=str(small_lm[0]), dictionary=str(small_lm[1]))
    stream = engine.create()
    initial = stream._decoder.get_cmn()
    stream.reset(partial_interval=None)
    stream.feed(TWO)
    stream.flush()
    assert stream._decoder.get_cmn() != initial  # adapted to this speaker
    stream.reset(partial_interval=None)
    assert stream._decoder.get_cmn() == initial
    # A reused decoder scores exactly like a fresh one (posteriors included).
    runs = []
    for _ in range(2):
        stream.reset(partial_interval=None)
        runs.append([*stream.feed(TWO), *stream.flush()])
    fresh = engine.create()
    fresh.reset(partial_interval=None)
    assert runs[0] == runs[1] == [*fresh.feed(TWO), *fresh.flush()]


async def test_pings_are_answered_while_a_long_message_decodes(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    """20 s of audio in one message, then a ping: the pong must not wait for the decoding (which
    runs in a worker thread; a decode on the Trio thread would hold the pong until the end)."""
    server = await start_server(nursery, make_model())
    client = await connect(server.port, f"/v1/listen?{RAW16}")
    await client.send(AUDIO)
    await client.send('{"type":"CloseStream"}')
    await client.ping(b"are you there")
    order = []
    with trio.fail_after(60):
        while True:
            event = await client.next_event()
            if isinstance(event, wsproto.events.Pong):
                order.append("pong")
            elif isinstance(event, wsproto.events.TextMessage):
                order.append(json.loads(event.data)["type"])
            elif event is None or isinstance(event, wsproto.events.CloseConnection):
                break
    await client.aclose()
    assert order[0] == "pong"
    assert order.count("Results") == 4
    assert order[-1] == "Metadata"


async def test_peer_vanishing_returns_the_decoder(
    nursery: trio.Nursery, make_model: Factory
) -> None:
    model = make_model(decoders=1, pool_wait=5.0)
    server = await start_server(nursery, model)
    client = await connect(server.port, f"/v1/listen?{RAW16}&interim_results=true")
    await client.send(WEATHER[: 2 * RATE * 2])  # mid-sentence
    with trio.fail_after(10):
        message = await receive_json(client)  # the stream is decoding
    assert not isinstance(message, Closed)
    assert model.pool.free == 0
    await client.stream.aclose()  # TCP gone, no Close frame
    with trio.fail_after(10):
        while model.pool.free == 0:  # noqa: ASYNC110 - the pool has no event to wait on
            await trio.sleep(0.01)
    transcript = await stream_audio(server.port, [WEATHER], RAW16)
    assert transcript.text() == SENTENCES[2]


async def test_concurrent_streams(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model(decoders=3))
    results: dict[int, Transcript] = {}
    samples = {0: WEATHER, 1: TWO, 2: clip(4.6, 9.8)}

    async def one(i: int) -> None:
        results[i] = await stream_audio(
            server.port, chunked(samples[i], 3200), f"{RAW16}&interim_results=true"
        )

    with trio.fail_after(60):
        async with trio.open_nursery() as streams:
            for i in samples:
                streams.start_soon(one, i)
    assert results[0].text() == SENTENCES[2]
    assert results[1].text() == " ".join(SENTENCES[2:4])
    assert results[2].text().split()[-4:] == SENTENCES[1].split()[-4:]
    assert len({r.messages[-1]["request_id"] for r in results.values()}) == 3


async def test_no_free_decoder_closes_1013(nursery: trio.Nursery, make_model: Factory) -> None:
    model = make_model(decoders=1, pool_wait=0.2)
    server = await start_server(nursery, model)
    first = await connect(server.port, f"/v1/listen?{RAW16}")
    await first.send(WEATHER[:32000])
    with trio.fail_after(10):
        while model.pool.free:  # noqa: ASYNC110 - the pool has no event to wait on
            await trio.sleep(0.01)
    second = await connect(server.port, f"/v1/listen?{RAW16}")
    await second.send(WEATHER[:32000])
    with trio.fail_after(10):
        closed = await second.receive()
    assert isinstance(closed, Closed)
    assert closed.code == 1013
    assert "no free decoder" in closed.reason
    await second.aclose()
    # The first stream is unaffected.
    await first.send(WEATHER[32000:])
    await first.send('{"type":"CloseStream"}')
    transcript = Transcript()
    with trio.fail_after(30):
        await collect(first, transcript)
    await first.aclose()
    assert transcript.text() == SENTENCES[2]


async def test_multichannel_raw(nursery: trio.Nursery, make_model: Factory) -> None:
    server = await start_server(nursery, make_model(decoders=2))
    mono = np.frombuffer(WEATHER, dtype="<i2")
    stereo = np.stack([np.zeros_like(mono), mono], axis=1).reshape(-1).tobytes()
    query = "encoding=linear16&sample_rate=16000&channels=2&multichannel=true"
    transcript = await stream_audio(server.port, chunked(stereo, 6400), query)
    assert {tuple(m["channel_index"]) for m in transcript.finals} == {(1, 2)}
    assert transcript.text(channel=1) == SENTENCES[2]
    assert transcript.messages[-1]["channels"] == 2
    # Finalize one channel only.
    client = await connect(server.port, f"/v1/listen?{query}")
    await client.send(stereo[: len(stereo) // 2])
    await client.send('{"type":"Finalize","channel":0}')  # the silent one: nothing to flush
    await client.send('{"type":"Finalize","channel":1}')
    with trio.fail_after(30):
        message = await receive_json(client)
    assert not isinstance(message, Closed)
    assert message["channel_index"] == [1, 2]
    assert message["from_finalize"] is True
    await client.send('{"type":"CloseStream"}')
    rest = Transcript()
    with trio.fail_after(30):
        await collect(client, rest)
    await client.aclose()
    # Downmixed (no multichannel): one channel, at half the level.
    transcript = await stream_audio(
        server.port, [stereo], "encoding=linear16&sample_rate=16000&channels=2"
    )
    assert {tuple(m["channel_index"]) for m in transcript.finals} == {(0, 1)}
    assert transcript.text() == SENTENCES[2]


async def test_invocations_transcribes_a_wav(nursery: trio.Nursery, make_model: Factory) -> None:
    # pool_wait bounds the wait for a decoder, not the decoding (which takes longer here).
    model = make_model(decoders=1, pool_wait=0.05)
    server = await start_server(nursery, model)
    header = (
        b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
        + struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", len(TWO))
    )
    response = await http_request(
        server.port, "POST", "/invocations", [("content-type", "audio/wav")], header + TWO
    )
    assert response.status == 200
    body = json.loads(response.body)
    (alternative,) = body["results"]["channels"][0]["alternatives"]
    assert alternative["transcript"] == " ".join(SENTENCES[2:4])
    assert len(alternative["words"]) == len(" ".join(SENTENCES[2:4]).split())
    assert body["metadata"]["duration"] == pytest.approx(len(TWO) / 2 / RATE)
    assert set(body["metadata"]) == METADATA_KEYS - {"type"}
    bad = await http_request(server.port, "POST", "/invocations", [], b"not a wav")
    assert bad.status == 415
    # Every decoder busy (a live stream holds the only one): 503 once pool_wait has passed.
    client = await connect(server.port, f"/v1/listen?{RAW16}")
    await client.send(WEATHER[:3200])
    with trio.fail_after(10):
        while model.pool.free:  # noqa: ASYNC110 - the pool has no event to wait on
            await trio.sleep(0.01)
    busy = await http_request(server.port, "POST", "/invocations", [], header + TWO)
    assert busy.status == 503
    await client.aclose()
