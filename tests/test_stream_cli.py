"""``sagebidi stream``: the real CLI in a subprocess against real containers (echo, transcribe)
on 127.0.0.1, straight over a WebSocket and through the gateway (SageMaker transport, SigV4)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import pytest
from process_helpers import (
    CLI,
    KEY,
    REGION,
    SECRET,
    Container,
    Gateway,
    free_port,
    start_container,
    start_gateway,
    stop,
)

from sagebidi_perf.stream import StreamOptions, WavError, build_query, parse_wav

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "fixtures" / "speech"
KLATT = SPEECH / "klatt6_16k.wav"
REFERENCE = " ".join((SPEECH / "sentences.txt").read_text().split())

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def echo() -> Iterator[Container]:
    container = start_container("echo")
    yield container
    stop(container.proc)


@pytest.fixture(scope="module")
def transcribe() -> Iterator[Container]:
    container = start_container("transcribe")
    yield container
    stop(container.proc)


@pytest.fixture(scope="module")
def gateway(transcribe: Container, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(transcribe, tmp_path_factory.mktemp("certs"))
    yield gw
    stop(gw.proc)


def aws_env(secret: str = SECRET) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION=REGION)
    return env


def stream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "stream", *args], capture_output=True, text=True, timeout=100, env=env
    )


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def summary_of(out: str) -> dict[str, Any]:
    docs = json_lines(out)
    assert docs, out[-500:]
    assert docs[-1]["type"] == "sagebidi.Summary", out[-500:]
    return docs[-1]


def wer(hypothesis: str) -> float:
    return float(jiwer.wer(REFERENCE, hypothesis.lower()))


def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    n = int(seconds * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(n)) * channels
        )
    return path


# --------------------------------------------------------------------------- echo: mechanics


def test_echo_every_frame_comes_back_unchanged(echo: Container) -> None:
    r = stream(str(KLATT), "--url", echo.url, "--path", "", "--speed", "0", "--json")
    assert r.returncode == 0, r.stderr
    docs = json_lines(r.stdout)
    summary = docs[-1]
    data_bytes = parse_wav(KLATT.read_bytes()).data_size  # the header is not sent
    assert summary["bytes_sent"] == data_bytes
    assert summary["binary_bytes"] == data_bytes
    assert summary["frames_sent"] == summary["binary_replies"] == 201  # 20.1 s in 100 ms frames
    binaries = [d for d in docs if d["type"] == "sagebidi.Binary"]
    assert len(binaries) == 201
    assert all(d["bytes"] == 3200 for d in binaries[:-1])
    assert summary["round_trip_ms"]["count"] == 201
    # As fast as possible: 20 s of audio leaves in far less than real time.
    assert summary["send_seconds"] < summary["audio_seconds"] / 2


def test_pacing_never_runs_ahead_of_real_time(echo: Container, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", 2.0)
    r = stream(str(wav), "--url", echo.url, "--path", "", "--speed", "2", "--chunk-ms", "50")
    assert r.returncode == 0, r.stderr
    assert "replies: 40 binary (64000 bytes), 0 text" in r.stdout
    r = stream(str(wav), "--url", echo.url, "--path", "", "--speed", "2", "--json")
    summary = summary_of(r.stdout)
    # Frame i leaves at i * 0.1 s / 2: the last of 20 at 0.95 s, never earlier.
    assert summary["send_seconds"] >= 0.95
    assert summary["binary_bytes"] == 64000


def test_chunk_ms_and_stereo(echo: Container, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "stereo.wav", 1.0, rate=8000, channels=2)
    r = stream(
        str(wav), "--url", echo.url, "--path", "", "--speed", "0", "--chunk-ms", "20", "--json"
    )
    assert r.returncode == 0, r.stderr
    docs = json_lines(r.stdout)
    # 20 ms of 8 kHz stereo s16 = 640 bytes; 50 frames.
    assert [d["bytes"] for d in docs if d["type"] == "sagebidi.Binary"] == [640] * 50


def test_send_file_sends_the_header_too(echo: Container) -> None:
    r = stream(str(KLATT), "--url", echo.url, "--path", "", "--speed", "0", "--json", "--send-file")
    assert r.returncode == 0, r.stderr
    summary = summary_of(r.stdout)
    assert summary["bytes_sent"] == summary["binary_bytes"] == KLATT.stat().st_size


def test_server_vanishing_mid_stream_is_an_error(tmp_path: Path) -> None:
    server = start_container("echo")
    try:
        proc = subprocess.Popen(
            [*CLI, "stream", str(KLATT), "--url", server.url, "--path", "", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["type"] == "sagebidi.Binary"
        server.proc.kill()
        _out, err = proc.communicate(timeout=60)
    finally:
        stop(server.proc)
    assert proc.returncode == 4, err
    assert "1006" in err or "lost" in err


def test_server_closing_with_an_error_code(tmp_path: Path) -> None:
    server = start_container("echo", "--max-message-size", "1000")
    try:
        # Paced, so the Close frame arrives before the next frame would reset the connection.
        wav = write_wav(tmp_path / "tone.wav", 1.0)
        r = stream(str(wav), "--url", server.url, "--path", "")
    finally:
        stop(server.proc)
    assert r.returncode == 4, r.stderr
    assert "closed the stream with 1009" in r.stderr


# ------------------------------------------------------------------------ errors before streaming


def test_missing_file() -> None:
    r = stream("/nonexistent/speech.wav", "--url", "ws://127.0.0.1:9")
    assert r.returncode == 2
    assert "No such file" in r.stderr


def test_not_a_wav(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    r = stream(str(text), "--url", "ws://127.0.0.1:9")
    assert r.returncode == 2
    assert "not a WAV file" in r.stderr


def test_unreachable_url() -> None:
    r = stream(str(KLATT), "--url", f"ws://127.0.0.1:{free_port()}")
    assert r.returncode == 3
    assert "cannot connect" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--url", "ws://127.0.0.1:9", "--endpoint-name", "x"],
        ["--url", "ws://127.0.0.1:9", "--speed", "-1"],
        ["--url", "ws://127.0.0.1:9", "--chunk-ms", "0"],
    ],
)
def test_bad_arguments(args: list[str]) -> None:
    r = stream(str(KLATT), *args)
    assert r.returncode == 2
    assert "sagebidi stream:" in r.stderr


def header(fmt: bytes | None, data: bytes | None, *, extra: bytes = b"") -> bytes:
    body = b"WAVE" + extra
    if fmt is not None:
        body += b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if data is not None:
        body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PCM16 = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00WAVX", "not a WAV file"),
        (header(None, b"\x00" * 10), "before any 'fmt '"),
        (header(PCM16, None), "no 'data' chunk"),
        (header(None, None, extra=b"LIST\x04\x00\x00\x00abcd"), "no 'fmt ' chunk"),
        (header(PCM16[:10], b"\x00\x00"), "truncated 'fmt '"),
        (header(struct.pack("<HHIIHH", 0x55, 1, 16000, 0, 0, 0), b"\x00" * 4), "format tag"),
        (header(struct.pack("<HHIIHH", 1, 1, 16000, 0, 0, 12), b"\x00" * 4), "12 bits"),
        (header(struct.pack("<HHIIHH", 1, 0, 16000, 0, 0, 16), b"\x00" * 4), "channel count"),
        (header(struct.pack("<HHIIHH", 1, 1, 10, 0, 0, 16), b"\x00" * 4), "sample rate"),
        (header(PCM16, b"\x00"), "no audio"),
        (header(PCM16, b"")[:-8] + b"da", "no 'data' chunk"),
    ],
)
def test_hostile_wav_headers_are_refused_clearly(raw: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        parse_wav(raw)


def test_wav_parsing_tolerates_what_streaming_writers_emit() -> None:
    audio = b"\x01\x00" * 100
    # LIST before fmt, an odd-sized chunk (padded), data size 0xFFFFFFFF (unknown).
    odd = b"junk" + struct.pack("<I", 3) + b"abc\x00"
    raw = header(PCM16, None, extra=b"LIST\x02\x00\x00\x00ab" + odd)
    raw += b"data" + struct.pack("<I", 0xFFFFFFFF) + audio
    wav = parse_wav(raw)
    assert (wav.sample_rate, wav.channels, wav.sample_width) == (16000, 1, 2)
    assert bytes(wav.data) == audio
    # A truncated data chunk: what is there, in whole frames.
    cut = header(PCM16, audio)[:-3]
    assert parse_wav(cut).data_size == len(audio) - 4
    # WAVE_FORMAT_EXTENSIBLE resolves to its subformat.
    ext = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 48000, 0, 4, 16, 22, 16, 3) + struct.pack("<H14x", 1)
    wav = parse_wav(header(ext, b"\x00" * 8))
    assert wav.is_pcm16
    assert wav.channels == 2


def test_default_query() -> None:
    wav = parse_wav(header(PCM16, b"\x00" * 64))
    options = StreamOptions(file="x", url="ws://h")
    assert build_query(wav, options, raw=True) == (
        "encoding=linear16&sample_rate=16000&channels=1&interim_results=true"
    )
    assert build_query(wav, options, raw=False) == "interim_results=true"
    options.query = "model=nova-3&interim_results=false&keyterm=a&keyterm=b"
    assert build_query(wav, options, raw=True) == (
        "encoding=linear16&sample_rate=16000&channels=1"
        "&model=nova-3&interim_results=false&keyterm=a&keyterm=b"
    )
    plain = StreamOptions(file="x", url="ws://h", path="", query="a=1")
    assert build_query(wav, plain, raw=True) == "a=1"


# --------------------------------------------------------------------------- transcribe


def check_transcript(out: str) -> dict[str, Any]:
    docs = json_lines(out)
    summary = docs[-1]
    kinds = [d["type"] for d in docs]
    assert kinds.count("Metadata") == 1
    assert kinds.index("Metadata") == len(kinds) - 2  # the last server message
    metadata = docs[-2]
    assert metadata["duration"] == pytest.approx(20.098, abs=0.01)
    assert summary["finals"] >= 4
    assert wer(summary["transcript"]) <= 0.35, summary["transcript"]
    finals = [d for d in docs if d["type"] == "Results" and d["is_final"]]
    assert all(d["channel_index"] == [0, 1] for d in finals)
    return summary


def test_transcribe_over_ws(transcribe: Container) -> None:
    r = stream(str(KLATT), "--url", transcribe.url, "--speed", "0", "--json")
    assert r.returncode == 0, r.stderr
    summary = check_transcript(r.stdout)
    assert summary["first_result_ms"] is not None


def test_transcribe_real_time_prints_interims_and_finals(transcribe: Container) -> None:
    r = stream(str(KLATT), "--url", transcribe.url, "--speed", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    interims = [line for line in lines if line.startswith("[00:") and " ~ " in line]
    finals = [line for line in lines if line.startswith("[00:") and "(speech_final" in line]
    assert interims, r.stdout
    assert len(finals) >= 4, r.stdout
    assert "-- metadata: request" in r.stdout
    assert "final latency (speech_final, after its audio was sent): p50" in r.stdout
    hypothesis = " ".join(line.split("] ", 1)[1].split("  (")[0] for line in finals)
    assert wer(hypothesis) <= 0.35, hypothesis


def test_transcribe_the_wav_file_as_is(transcribe: Container) -> None:
    r = stream(str(KLATT), "--url", transcribe.url, "--speed", "0", "--json", "--send-file")
    assert r.returncode == 0, r.stderr
    check_transcript(r.stdout)


def test_unknown_query_parameter_is_refused_at_the_handshake(transcribe: Container) -> None:
    r = stream(str(KLATT), "--url", transcribe.url, "--query", "bogus=1")
    assert r.returncode == 3
    assert "WebSocket upgrade refused with HTTP 400" in r.stderr
    assert "unsupported parameter 'bogus'" in r.stderr


def test_transcribe_through_the_gateway(gateway: Gateway) -> None:
    r = stream(
        str(KLATT),
        "--endpoint-name",
        "stt",
        "--endpoint-url",
        gateway.url,
        "--ca-file",
        gateway.ca_file,
        "--speed",
        "0",
        "--json",
        env=aws_env(),
    )
    assert r.returncode == 0, r.stderr
    check_transcript(r.stdout)


def test_gateway_424_for_a_refused_upgrade(gateway: Gateway) -> None:
    r = stream(
        str(KLATT),
        "--endpoint-name",
        "stt",
        "--endpoint-url",
        gateway.url,
        "--ca-file",
        gateway.ca_file,
        "--query",
        "bogus=1",
        env=aws_env(),
    )
    assert r.returncode == 3
    assert "424" in r.stderr
    assert "ModelError" in r.stderr
    time.sleep(0.5)
    assert gateway.proc.poll() is None, "the gateway died after a refused upgrade"


def test_gateway_403_for_a_bad_secret(gateway: Gateway) -> None:
    r = stream(
        str(KLATT),
        "--endpoint-name",
        "stt",
        "--endpoint-url",
        gateway.url,
        "--ca-file",
        gateway.ca_file,
        env=aws_env(secret="wrong"),
    )
    assert r.returncode == 3
    assert "403" in r.stderr
    assert "credentials" in r.stderr
