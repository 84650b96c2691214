"""The /v1/listen query: every parameter valid and invalid, and HTTP 400 at a real handshake."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import trio

from container_helpers import http_request, start_server
from sagebidi_perf.models.transcribe import (
    ListenOptions,
    OptionsError,
    TranscribeModel,
    TranscribeSettings,
    domain,
    parse_options,
)
from sagebidi_perf.models.transcribe.engine import EngineInfo, RecognizerStream


def q(text: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in text.split("&") if part]  # type: ignore[misc]


def test_defaults_are_deepgrams() -> None:
    options = parse_options([])
    assert options == ListenOptions()
    assert options.model == "nova-3"
    assert options.language == "en"
    assert options.encoding is None
    assert options.channels == 1
    assert options.endpointing == 10
    assert not options.interim_results
    assert not options.formatted


def test_a_full_deepgram_query() -> None:
    options = parse_options(
        q(
            "model=nova-3-general&language=en-US&encoding=linear16&sample_rate=8000&channels=2"
            "&multichannel=true&interim_results=true&punctuate=true&smart_format=false"
            "&endpointing=300&utterance_end_ms=1000&vad_events=true&diarize=true"
            "&tag=a&tag=b&extra=k:v&extra=x:y:z&keyterm=fox&keywords=dog:2"
        )
    )
    assert options.model == "nova-3-general"
    assert options.language == "en-US"
    assert options.encoding == "linear16"
    assert options.sample_rate == 8000
    assert options.channels == 2
    assert options.multichannel
    assert options.interim_results
    assert options.punctuate
    assert options.formatted
    assert options.endpointing == 300
    assert options.utterance_end_ms == 1000
    assert options.vad_events
    assert options.diarize
    assert options.tags == ("a", "b")
    assert options.extra == (("k", "v"), ("x", "y:z"))
    assert options.keyterms == ("fox", "dog:2")


@pytest.mark.parametrize(
    "query",
    [
        "model=nova-2",
        "model=nova",
        "model=enhanced-general",
        "model=base",
        "model=pocketsphinx",
        "language=en",
        "language=en-GB",
        "language=multi",
        "encoding=linear32&sample_rate=16000",
        "encoding=float32&sample_rate=44100",
        "encoding=mulaw&sample_rate=8000",
        "encoding=ALAW&sample_rate=8000",
        "sample_rate=16000",
        "endpointing=false",
        "endpointing=true",
        "endpointing=0",
        "smart_format=TRUE",
        "numerals=true&dictation=false&profanity_filter=true&filler_words=false",
        "redact=pci&redact=ssn&replace=a:b&search=hello&detect_entities=true",
        "diarize_model=latest&diarize_version=2021&alternatives=1&mip_opt_out=true",
        "version=latest&tier=nova&no_delay=true",
    ],
)
def test_accepted(query: str) -> None:
    parse_options(q(query))


@pytest.mark.parametrize(
    ("query", "parameter", "code"),
    [
        ("foo=bar", "foo", "unsupported_parameter"),
        ("Model=nova-3", "Model", "unsupported_parameter"),
        ("callback=https://example.com", "callback", "unsupported_parameter"),
        ("callback_method=put", "callback_method", "unsupported_parameter"),
        ("model=whisper-large", "model", "invalid_parameter"),
        ("model=", "model", "invalid_parameter"),
        ("language=de", "language", "invalid_parameter"),
        ("language=fr-FR", "language", "invalid_parameter"),
        ("encoding=opus&sample_rate=48000", "encoding", "invalid_parameter"),
        ("encoding=flac&sample_rate=16000", "encoding", "invalid_parameter"),
        ("encoding=pcm16&sample_rate=16000", "encoding", "invalid_parameter"),
        ("encoding=linear16", "sample_rate", "invalid_parameter"),
        ("encoding=linear16&sample_rate=abc", "sample_rate", "invalid_parameter"),
        ("encoding=linear16&sample_rate=10", "sample_rate", "invalid_parameter"),
        ("encoding=linear16&sample_rate=99999999", "sample_rate", "invalid_parameter"),
        ("encoding=linear16&sample_rate=-16000", "sample_rate", "invalid_parameter"),
        ("encoding=linear16&sample_rate=1e4", "sample_rate", "invalid_parameter"),
        ("channels=0", "channels", "invalid_parameter"),
        ("channels=65", "channels", "invalid_parameter"),
        ("channels=two", "channels", "invalid_parameter"),
        ("channels=21&multichannel=true", "channels", "invalid_parameter"),
        ("interim_results=yes", "interim_results", "invalid_parameter"),
        ("punctuate=1", "punctuate", "invalid_parameter"),
        ("vad_events=", "vad_events", "invalid_parameter"),
        ("multichannel=maybe", "multichannel", "invalid_parameter"),
        ("endpointing=-1", "endpointing", "invalid_parameter"),
        ("endpointing=10.5", "endpointing", "invalid_parameter"),
        ("endpointing=60001", "endpointing", "invalid_parameter"),
        ("utterance_end_ms=1000", "utterance_end_ms", "invalid_parameter"),
        ("interim_results=true&utterance_end_ms=999", "utterance_end_ms", "invalid_parameter"),
        ("interim_results=true&utterance_end_ms=x", "utterance_end_ms", "invalid_parameter"),
        ("diarize_model=v2", "diarize_model", "invalid_parameter"),
        ("alternatives=0", "alternatives", "invalid_parameter"),
        ("extra=novalue", "extra", "invalid_parameter"),
        ("extra=:v", "extra", "invalid_parameter"),
        ("replace=nocolon", "replace", "invalid_parameter"),
        ("punctuate=true&punctuate=false", "punctuate", "invalid_parameter"),
        ("model=nova-3&model=nova-2", "model", "invalid_parameter"),
    ],
)
def test_rejected(query: str, parameter: str, code: str) -> None:
    with pytest.raises(OptionsError) as info:
        parse_options(q(query))
    assert info.value.parameter == parameter
    assert info.value.code == code


def test_oversized_and_repeated_values_are_rejected() -> None:
    with pytest.raises(OptionsError, match="longer than"):
        parse_options([("keyterm", "x" * 5000)])
    with pytest.raises(OptionsError, match="at most"):
        parse_options([("tag", str(i)) for i in range(101)])
    parse_options([("tag", str(i)) for i in range(100)])


def test_settings_from_environment(tmp_path: os.PathLike[str]) -> None:
    env = {
        "SAGEBIDI_TRANSCRIBE_DECODERS": "2",
        "SAGEBIDI_TRANSCRIBE_IDLE_TIMEOUT": "3.5",
        "SAGEBIDI_TRANSCRIBE_POOL_WAIT": "1",
    }
    settings = TranscribeSettings.from_env(env)
    assert (settings.decoders, settings.idle_timeout, settings.pool_wait) == (2, 3.5, 1.0)
    assert TranscribeSettings.from_env(env, decoders=5).decoders == 5  # arguments win
    assert TranscribeSettings.from_env({}).decoders == 3
    with pytest.raises(ValueError, match="DECODERS"):
        TranscribeSettings.from_env({"SAGEBIDI_TRANSCRIBE_DECODERS": "many"})
    with pytest.raises(ValueError, match="decoders"):
        TranscribeSettings.from_env({"SAGEBIDI_TRANSCRIBE_DECODERS": "0"})
    with pytest.raises(ValueError, match="idle_timeout"):
        TranscribeSettings(idle_timeout=float("nan"))
    with pytest.raises(ValueError, match="not found"):
        TranscribeSettings.from_env({"SAGEBIDI_TRANSCRIBE_LM": "/nonexistent.arpa"})
    with pytest.raises(ValueError, match="not found"):
        TranscribeSettings.from_env({"SAGEBIDI_TRANSCRIBE_DICT": "/nonexistent.dict"})


# -- through a real server ---------------------------------------------------------------------


class _NullStream:
    """No decoder at all: the handshake tests must not depend on the engine."""

    time = 0.0

    def reset(self, *, partial_interval: float | None, endpointing: float | None = None) -> None:
        pass

    def feed(self, pcm: bytes) -> list[object]:
        return []

    def flush(self) -> list[object]:
        return []


class _NullEngine:
    info = EngineInfo("null", "0", "none", "00000000-0000-4000-8000-000000000000")

    def create(self) -> RecognizerStream:
        return _NullStream()  # type: ignore[return-value]


@pytest.fixture
def null_model() -> TranscribeModel:
    return TranscribeModel(engine=_NullEngine(), decoders=2)


UPGRADE = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", base64.b64encode(b"0123456789abcdef").decode()),
]


@pytest.mark.parametrize(
    ("query", "code", "parameter"),
    [
        ("model=nova-3&bogus=1", "unsupported_parameter", "bogus"),
        ("encoding=linear16", "invalid_parameter", "sample_rate"),
        ("interim_results=false&utterance_end_ms=1000", "invalid_parameter", "utterance_end_ms"),
        ("language=multi&punctuate=maybe", "invalid_parameter", "punctuate"),
        (
            "encoding=linear16&sample_rate=16000&channels=3&multichannel=true",
            "invalid_parameter",
            "channels",
        ),
    ],
)
async def test_bad_query_is_http_400_at_the_handshake(
    nursery: trio.Nursery, null_model: TranscribeModel, query: str, code: str, parameter: str
) -> None:
    server = await start_server(nursery, null_model)
    response = await http_request(server.port, "GET", f"/v1/listen?{query}", UPGRADE)
    assert response.status == 400
    assert response.headers[b"content-type"] == b"application/json"
    body = json.loads(response.body)
    assert body["err_code"] == code
    assert body["parameter"] == parameter
    assert body["err_msg"]
    assert response.headers[b"dg-request-id"].decode() == body["request_id"]
    assert response.headers[b"dg-error"].decode() == body["err_msg"]


@pytest.mark.parametrize("path", ["/v1/listen", "/invocations-bidirectional-stream"])
async def test_good_query_upgrades(
    nursery: trio.Nursery, null_model: TranscribeModel, path: str
) -> None:
    server = await start_server(nursery, null_model)
    query = "model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true&keyterm=a%20b"
    response = await http_request(server.port, "GET", f"{path}?{query}", UPGRADE)
    assert response.status == 101


async def test_other_paths_are_404(nursery: trio.Nursery, null_model: TranscribeModel) -> None:
    server = await start_server(nursery, null_model)
    response = await http_request(server.port, "GET", "/v2/listen", UPGRADE)
    assert response.status == 404


# -- a domain LM for SAGEBIDI_TRANSCRIBE_LM / _DICT -----------------------------------------------


def test_domain_lm_builder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Call me back\n\nplease CALL the office\n")
    assert domain.main([str(sentences), str(tmp_path / "out")]) == 0
    printed = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    lm, dictionary = (
        Path(printed["SAGEBIDI_TRANSCRIBE_LM"]),
        Path(printed["SAGEBIDI_TRANSCRIBE_DICT"]),
    )
    words = {line.split()[0].split("(")[0] for line in dictionary.read_text().splitlines()}
    assert words == {"call", "me", "back", "please", "the", "office"}
    assert "\\data\\" in lm.read_text()
    # The pair loads into the model's settings and engine (a real decoder, in milliseconds).
    settings = TranscribeSettings.from_env(
        {"SAGEBIDI_TRANSCRIBE_LM": str(lm), "SAGEBIDI_TRANSCRIBE_DICT": str(dictionary)}
    )
    model = TranscribeModel(settings=settings, decoders=1)  # arguments override settings
    assert model.pool.size == 1
    assert model.engine.info.name == "pocketsphinx-domain"
    stream = model.engine.create()
    stream.reset(partial_interval=None)
    assert stream.feed(bytes(3200)) == []


def test_domain_lm_builder_refuses_unknown_words(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xyzzyq"):
        domain.build_domain_lm("call xyzzyq now", tmp_path)
    with pytest.raises(ValueError, match="no sentences"):
        domain.build_domain_lm("\n  \n", tmp_path)
    assert domain.main([str(tmp_path / "missing.txt"), str(tmp_path)]) == 1
    assert domain.main([]) == 2
