"""Interop with the official Deepgram Python SDK (``deepgram-sdk`` 7.x, a test dependency),
unmodified: its own synchronous live client, pointed at our ``transcribe`` container with
``DeepgramClient(environment=DeepgramClientEnvironment(production="ws://127.0.0.1:PORT", ...))``.

The SDK runs in a subprocess (tests/interop/deepgram_sdk_client.py): it imports
``websockets.legacy`` (a DeprecationWarning, an error under this suite's filterwarnings) and
runs its own listener thread. The script reports what the SDK parsed; the assertions are here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import pytest
from process_helpers import Container, start_container, stop

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "interop" / "deepgram_sdk_client.py"
SPEECH = ROOT / "fixtures" / "speech"
REFERENCE = " ".join((SPEECH / "sentences.txt").read_text().split())

#: Fields real Deepgram sends that the SDK's v7 models do not declare (its models allow extras):
#: ``Metadata.models``/``model_info`` (see the reference, §A3) and ``extra``.
KNOWN_UNDECLARED = {"models", "model_info", "extra"}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def transcribe() -> Iterator[Container]:
    container = start_container("transcribe")
    yield container
    stop(container.proc)


def run_sdk(container: Container, wav: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), container.url, str(wav), *args],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def test_sdk_live_client_streams_finalizes_and_closes(transcribe: Container) -> None:
    report = run_sdk(transcribe, SPEECH / "klatt6_16k.wav", "--speed", "4")
    # Every server message became one of the SDK's typed models, and validates strictly.
    assert report["invalid"] == []
    assert report["errors"] == []
    assert report["log_warnings"] == []  # e.g. "Skipping unknown WebSocket message"
    kinds = report["kinds"]
    assert set(kinds) == {
        "ListenV1Results",
        "ListenV1SpeechStarted",
        "ListenV1UtteranceEnd",
        "ListenV1Metadata",
    }
    assert kinds[-1] == "ListenV1Metadata"
    assert kinds.count("ListenV1Metadata") == 1
    assert kinds.count("ListenV1SpeechStarted") >= 4
    for name, fields in report["extra_fields"].items():
        assert set(fields) <= KNOWN_UNDECLARED, (name, fields)
    # KeepAlive was accepted silently, Finalize answered with from_finalize, CloseStream ended
    # the stream with Metadata and the close.
    assert report["sent_finalize"]
    assert report["from_finalize"] >= 1
    assert report["closed"]
    metadata = report["metadata"]
    assert metadata["duration"] == pytest.approx(20.098, abs=0.01)
    assert metadata["channels"] == 1
    assert metadata["transaction_key"] == "deprecated"
    # punctuate=true: the transcript comes punctuated and capitalised.
    assert re.search(r"[A-Z].*\.", report["transcript"])
    error = jiwer.wer(REFERENCE, normalise(report["transcript"]))
    assert error <= 0.35, report["transcript"]
