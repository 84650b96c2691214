"""Helpers for the transcribe model's tests: fixtures, a small domain LM, a streaming client."""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from sagebidi_perf.models.transcribe.domain import build_domain_lm
from wsproto_client import Closed, WsClient, connect

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "fixtures" / "speech"
SENTENCES = (SPEECH / "sentences.txt").read_text().split("\n")
SENTENCES = [s for s in SENTENCES if s.strip()]


def pcm(path: Path) -> tuple[bytes, int, int]:
    """A WAV's sample bytes, sample rate and channels (16-bit only)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()


def build_small_lm(directory: Path, sentences: list[str] | None = None) -> tuple[Path, Path]:
    """An ARPA trigram LM of ``sentences`` (default: sentences.txt) and its cut dictionary."""
    return build_domain_lm("\n".join(sentences or SENTENCES), directory, "small")


@dataclass
class Transcript:
    messages: list[dict[str, Any]] = field(default_factory=list)
    closed: Closed | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.of("Results") if m["is_final"]]

    @property
    def interims(self) -> list[dict[str, Any]]:
        return [m for m in self.of("Results") if not m["is_final"]]

    def text(self, channel: int | None = None) -> str:
        parts = [
            m["channel"]["alternatives"][0]["transcript"]
            for m in self.finals
            if channel is None or m["channel_index"][0] == channel
        ]
        return " ".join(p for p in parts if p)


async def receive_json(client: WsClient) -> dict[str, Any] | Closed:
    message = await client.receive()
    if isinstance(message, Closed):
        return message
    assert isinstance(message, str), f"server sent a binary frame: {message!r:.80}"
    value = json.loads(message)
    assert isinstance(value, dict)
    return value


async def collect(client: WsClient, transcript: Transcript) -> Transcript:
    """Receive until the server closes."""
    while True:
        message = await receive_json(client)
        if isinstance(message, Closed):
            transcript.closed = message
            return transcript
        transcript.messages.append(message)


async def stream_audio(
    port: int,
    chunks: list[bytes],
    query: str = "",
    *,
    close: str | bytes | None = '{"type":"CloseStream"}',
    path: str = "/v1/listen",
) -> Transcript:
    """Send ``chunks`` (as fast as the socket takes them) while collecting the replies, then
    ``close`` (CloseStream by default), and collect until the server closes."""
    client = await connect(port, f"{path}?{query}" if query else path)
    transcript = Transcript()
    async with trio.open_nursery() as nursery:

        async def sender() -> None:
            for chunk in chunks:
                await client.send(chunk)
            if close is not None:
                await client.send(close)

        nursery.start_soon(sender)
        await collect(client, transcript)
    await client.aclose()
    return transcript


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
