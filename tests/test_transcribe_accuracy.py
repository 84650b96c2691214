"""Accuracy of the transcribe model with the bundled general English model, streamed as a client
would (a WAV in chunks, no encoding parameter). Thresholds are loose (reference Part B: klatt6
WER 0.159, LibriVox 0.282); the text is never compared exactly with the general model."""

from __future__ import annotations

import re

import jiwer
import pytest
import trio

from container_helpers import start_server
from sagebidi_perf.models.transcribe import TranscribeModel
from transcribe_helpers import SENTENCES, SPEECH, Transcript, chunked, stream_audio

REFERENCE = " ".join(SENTENCES)
LIBRIVOX = sorted((SPEECH / "librivox").glob("*.wav"))


@pytest.fixture(scope="module")
def model() -> TranscribeModel:
    # One model for the module: its decoders (the general LM, ~0.6 s each) load once.
    return TranscribeModel(decoders=2)


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(reference, hypothesis))


def normalise(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


async def transcribe_file(port: int, name: str, query: str = "") -> Transcript:
    data = (SPEECH / name).read_bytes()
    with trio.fail_after(100):
        return await stream_audio(port, chunked(data, 8192), query)


@pytest.mark.parametrize("name", ["klatt6_16k.wav", "klatt6_44k1.wav", "klatt6_48k.wav"])
async def test_espeak_fixtures(nursery: trio.Nursery, model: TranscribeModel, name: str) -> None:
    server = await start_server(nursery, model)
    transcript = await transcribe_file(server.port, name)
    error = wer(REFERENCE, transcript.text())
    assert error <= 0.30, (error, transcript.text())
    assert len(transcript.finals) >= 4
    assert transcript.messages[-1]["duration"] == pytest.approx(20.1, abs=0.01)


async def test_8k_is_transcribed_loosely(nursery: trio.Nursery, model: TranscribeModel) -> None:
    server = await start_server(nursery, model)
    transcript = await transcribe_file(server.port, "klatt6_8k.wav")
    assert transcript.text()
    assert wer(REFERENCE, transcript.text()) <= 0.9  # a wideband model on narrowband audio


async def test_librivox_human_speech(nursery: trio.Nursery, model: TranscribeModel) -> None:
    server = await start_server(nursery, model)
    references, hypotheses = [], []
    for path in LIBRIVOX:
        transcript = await transcribe_file(server.port, f"librivox/{path.name}", "punctuate=true")
        references.append(normalise(path.with_suffix(".txt").read_text()))
        hypotheses.append(normalise(transcript.text()))
    assert len(references) == 5
    error = wer(" ".join(references), " ".join(hypotheses))
    assert error <= 0.40, (error, hypotheses)


async def test_stereo_downmix_and_multichannel(
    nursery: trio.Nursery, model: TranscribeModel
) -> None:
    server = await start_server(nursery, model)
    # Downmixed (the right channel is silent: speech at half the level).
    mixed = await transcribe_file(server.port, "klatt6_16k_stereo.wav")
    assert {tuple(m["channel_index"]) for m in mixed.finals} == {(0, 1)}
    assert wer(REFERENCE, mixed.text()) <= 0.30, mixed.text()
    # One decoder per channel: the whole file.
    split = await transcribe_file(server.port, "klatt6_16k_stereo.wav", "multichannel=true")
    assert split.messages[-1]["channels"] == 2
    assert {tuple(m["channel_index"]) for m in split.finals} <= {(0, 2), (1, 2)}
    assert wer(REFERENCE, split.text(channel=0)) <= 0.30, split.text(channel=0)
    assert split.text(channel=1) == ""  # digital silence on the right
