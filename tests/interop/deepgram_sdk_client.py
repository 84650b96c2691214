"""The official Deepgram Python SDK (``deepgram-sdk`` v7, unmodified) against our ``/v1/listen``.

Run as a subprocess by tests/test_deepgram_sdk_interop.py (the SDK imports ``websockets.legacy``,
which warns at import, and runs its own threads: it stays out of the pytest process)::

    python tests/interop/deepgram_sdk_client.py ws://127.0.0.1:8080 fixtures/speech/klatt6_16k.wav

The SDK's documented pattern: ``DeepgramClient(environment=...)`` pointed at our container,
``client.listen.v1.connect(model=..., encoding=..., ...)`` (the synchronous client), event
handlers, ``start_listening()`` in a thread, ``send_media`` in 100 ms chunks at ``--speed``
times real time, a ``KeepAlive``, a ``Finalize`` in the middle of an utterance, the rest of the
audio, ``CloseStream``, then wait for the socket to close.

Prints one JSON object: what arrived (SDK class names in order), every typed message
re-validated strictly with pydantic (the SDK's own parse is lenient), fields the SDK models do
not declare, the SDK's "unknown message" log lines, ERROR events, warnings, and the transcript.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import warnings
import wave
from typing import Any

import_warnings: list[str] = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pydantic
    from deepgram import DeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment
import_warnings = [f"{w.category.__name__}: {w.message}" for w in caught]


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="ws://127.0.0.1:PORT")
    parser.add_argument("wav")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--finalize-at", type=float, default=2.5, help="audio seconds")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    logging.getLogger().setLevel(logging.WARNING)

    with wave.open(args.wav, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        pcm = w.readframes(w.getnframes())
    chunk = rate * channels * width // 10  # 100 ms

    http = args.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    environment = DeepgramClientEnvironment(
        base=http, production=args.url, agent=args.url, agent_rest=http
    )
    client = DeepgramClient(api_key="local-test-key", environment=environment)

    messages: list[Any] = []
    errors: list[str] = []
    closed = threading.Event()
    opened = threading.Event()

    def on_message(message: Any) -> None:
        messages.append((time.monotonic(), message))

    def on_error(error: Any) -> None:
        errors.append(f"{type(error).__name__}: {error}")

    runtime_warnings: list[str] = []
    with warnings.catch_warnings(record=True) as caught_runtime:
        warnings.simplefilter("always")
        with client.listen.v1.connect(
            model="nova-3",
            language="en",
            encoding="linear16",
            sample_rate=str(rate),
            channels=str(channels),
            interim_results="true",
            vad_events="true",
            utterance_end_ms="1000",
            punctuate="true",
        ) as socket:
            socket.on(EventType.OPEN, lambda _: opened.set())
            socket.on(EventType.MESSAGE, on_message)
            socket.on(EventType.ERROR, on_error)
            socket.on(EventType.CLOSE, lambda _: closed.set())
            listener = threading.Thread(target=socket.start_listening, daemon=True)
            listener.start()
            opened.wait(10)
            start = time.monotonic()
            finalize_at = int(args.finalize_at * 10)
            sent_finalize = False
            for i, offset in enumerate(range(0, len(pcm), chunk)):
                due = start + i * 0.1 / args.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                socket.send_media(pcm[offset : offset + chunk])
                if i == 5:
                    socket.send_keep_alive()
                if i == finalize_at:
                    socket.send_finalize()
                    sent_finalize = True
            socket.send_close_stream()
            closed_in_time = closed.wait(args.timeout)
        runtime_warnings = [f"{w.category.__name__}: {w.message}" for w in caught_runtime]

    kinds: list[str] = []
    invalid: list[str] = []
    extra_fields: dict[str, list[str]] = {}
    finals: list[str] = []
    from_finalize = 0
    metadata: dict[str, Any] | None = None
    for _at, message in messages:
        name = type(message).__name__
        kinds.append(name)
        if not isinstance(message, pydantic.BaseModel):
            invalid.append(f"not a typed model: {name} {message!r:.200}")
            continue
        data = message.model_dump(mode="json", exclude_unset=True)
        try:
            pydantic.TypeAdapter(type(message)).validate_python(data)
        except pydantic.ValidationError as exc:
            invalid.append(f"{name}: {exc}")
        extras = _extras(message)
        if extras:
            extra_fields.setdefault(name, sorted(set(extras)))
        if name == "ListenV1Results" and message.is_final:
            text = message.channel.alternatives[0].transcript.strip()
            if text:
                finals.append(text)
            if message.from_finalize:
                from_finalize += 1
        if name == "ListenV1Metadata":
            metadata = data
    print(
        json.dumps(
            {
                "kinds": kinds,
                "invalid": invalid,
                "extra_fields": extra_fields,
                "errors": errors,
                "log_warnings": capture.records,
                "import_warnings": import_warnings,
                "runtime_warnings": runtime_warnings,
                "closed": closed_in_time,
                "sent_finalize": sent_finalize,
                "from_finalize": from_finalize,
                "metadata": metadata,
                "transcript": " ".join(finals),
            }
        )
    )


def _extras(model: pydantic.BaseModel, prefix: str = "") -> list[str]:
    """Keys the SDK's models do not declare (they allow extras), recursively."""
    out = [prefix + key for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, pydantic.BaseModel):
                out += _extras(item, f"{prefix}{name}.")
    return out


if __name__ == "__main__":
    main()
