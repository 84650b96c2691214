"""The load tester's command-line options (each also a ``LOCUST_*`` environment variable) and the
frozen settings read from them once per process.

:func:`add_arguments` is called once, from :mod:`sagebidi_perf.loadtest.plugin`'s
``init_command_line_parser`` listener. This module imports neither Locust nor gevent.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagebidi_perf.loadtest.slo import SloCheck, parse_slos

__all__ = ["DEFAULT_AUDIO", "DEFAULT_SPEECH_QUERY", "Settings", "add_arguments", "parse_pace"]

DEFAULT_AUDIO = "fixtures/speech/*.wav"
DEFAULT_SPEECH_PATH = "v1/listen"
DEFAULT_SPEECH_QUERY = (
    "model=nova-3&language=en&encoding=linear16&sample_rate={sample_rate}&interim_results=true"
)
DEFAULT_DONE_TYPES = "done,response.done,response.completed"

#: (flag, dest, type, default, help). ``type`` None means a store_true flag.
_OPTIONS: list[tuple[str, str, Any, Any, str]] = [
    (
        "--endpoint-name",
        "endpoint_name",
        str,
        "",
        "SageMaker endpoint name (with an https:// --host: the local gateway or a real endpoint)",
    ),
    ("--region", "region", str, "", "AWS region for SigV4 [default: $AWS_REGION / profile]"),
    (
        "--ca-file",
        "ca_file",
        str,
        "",
        "CA bundle to trust for https:// and wss:// hosts (the gateway's ca.pem)",
    ),
    (
        "--audio",
        "audio",
        str,
        DEFAULT_AUDIO,
        "speech: WAV files, a folder or a glob, comma-separated [default: fixtures/speech/*.wav]",
    ),
    ("--chunk-ms", "chunk_ms", float, 100.0, "speech: audio per frame in milliseconds"),
    (
        "--pace",
        "pace",
        str,
        "realtime",
        "send pacing: realtime, Nx (N times real time, e.g. 2x) or max (as fast as possible)",
    ),
    (
        "--model-path",
        "model_path",
        str,
        "",
        "path on the container (ModelInvocationPath) [speech: v1/listen; others: the default]",
    ),
    (
        "--model-query",
        "model_query",
        str,
        "",
        "query string (ModelQueryString); {sample_rate} is replaced by the clip's rate "
        f"[speech: {DEFAULT_SPEECH_QUERY}]",
    ),
    (
        "--session-seconds",
        "session_seconds",
        float,
        0.0,
        "session length: echo streams this long [default 10]; speech loops the clips to at "
        "least this much audio [default: one clip]",
    ),
    ("--frame-bytes", "frame_bytes", int, 3200, "echo: bytes per frame"),
    ("--frame-rate", "frame_rate", float, 10.0, "echo: frames per second per session"),
    (
        "--prompts",
        "prompts",
        str,
        "",
        "text: JSON-lines file, one prompt per line (a JSON string or object) [default: built in]",
    ),
    ("--prompts-per-session", "prompts_per_session", int, 3, "text: prompts sent per session"),
    (
        "--text-done-types",
        "text_done_types",
        str,
        DEFAULT_DONE_TYPES,
        "text: JSON 'type' values that end a reply ('*': any message ends it)",
    ),
    (
        "--speech-end",
        "speech_end",
        str,
        "finalize",
        "speech: after the audio send 'finalize' (Finalize then CloseStream) or 'close' "
        "(CloseStream only)",
    ),
    (
        "--receive-timeout",
        "receive_timeout",
        float,
        30.0,
        "seconds without any expected message before a session fails with 'timeout'",
    ),
    ("--connect-timeout", "connect_timeout", float, 10.0, "seconds to connect"),
    (
        "--warmup-seconds",
        "warmup_seconds",
        float,
        0.0,
        "forget the metrics of the ramp-up and this many seconds after it",
    ),
    (
        "--frame-events",
        "frame_events",
        None,
        False,
        "also fire a Locust request event per echoed frame / transcript message (costly)",
    ),
    (
        "--report-json",
        "report_json",
        str,
        "loadtest-report.json",
        "write the final report as JSON here ('' to skip)",
    ),
    (
        "--report-html",
        "report_html",
        str,
        "loadtest-report.html",
        "write the final report as a self-contained HTML page here ('' to skip)",
    ),
    ("--slo-ttft-p50-ms", "slo_ttft_p50_ms", float, 0.0, "SLO: TTFT p50 at most this (ms)"),
    ("--slo-ttft-p95-ms", "slo_ttft_p95_ms", float, 0.0, "SLO: TTFT p95 at most this (ms)"),
    ("--slo-ttft-p99-ms", "slo_ttft_p99_ms", float, 0.0, "SLO: TTFT p99 at most this (ms)"),
    (
        "--slo-first-final-p99-ms",
        "slo_first_final_p99_ms",
        float,
        0.0,
        "SLO: time to first final p99 (ms)",
    ),
    (
        "--slo-final-latency-p99-ms",
        "slo_final_latency_p99_ms",
        float,
        0.0,
        "SLO: final latency after end of speech p99 (ms)",
    ),
    ("--slo-round-trip-p99-ms", "slo_round_trip_p99_ms", float, 0.0, "SLO: echo round trip p99"),
    ("--slo-itl-p99-ms", "slo_itl_p99_ms", float, 0.0, "SLO: inter-message gap p99 (ms)"),
    ("--slo-jitter-p99-ms", "slo_jitter_p99_ms", float, 0.0, "SLO: send jitter p99 (ms)"),
    ("--slo-connect-p99-ms", "slo_connect_p99_ms", float, 0.0, "SLO: connect time p99 (ms)"),
    (
        "--slo-error-rate",
        "slo_error_rate",
        float,
        -1.0,
        "SLO: failed / ended sessions at most this (0.01 = 1%%)",
    ),
    (
        "--slo",
        "slo",
        str,
        "",
        "more SLOs, comma-separated METRIC.pNN<=MS (e.g. transcript_lag.p95<=800)",
    ),
]


def _env_name(dest: str) -> str:
    return "LOCUST_" + dest.upper()


def add_arguments(parser: Any) -> None:
    """Register every option on Locust's parser (call once)."""
    group = parser.add_argument_group(
        "sagebidi-perf", "streaming sessions (speech, echo, text) and their report"
    )
    for flag, dest, kind, default, help_text in _OPTIONS:
        if kind is None:
            group.add_argument(
                flag,
                dest=dest,
                action="store_true",
                default=default,
                help=help_text,
                env_var=_env_name(dest),
            )
        else:
            group.add_argument(
                flag,
                dest=dest,
                type=kind,
                default=default,
                help=help_text,
                env_var=_env_name(dest),
            )


def parse_pace(text: str) -> float:
    """``realtime`` → 1.0, ``2x``/``2`` → 2.0, ``max`` → inf (as fast as possible)."""
    value = text.strip().lower()
    if value in ("realtime", "real-time", "rt", "1x", ""):
        return 1.0
    if value in ("max", "fast", "asap", "inf"):
        return math.inf
    number = value[:-1] if value.endswith("x") else value
    try:
        speed = float(number)
    except ValueError:
        raise ValueError(f"--pace {text!r}: use realtime, Nx (e.g. 2x) or max") from None
    if not speed > 0 or math.isnan(speed):
        raise ValueError(f"--pace {text!r}: the speed must be positive")
    return speed


def expand_audio(spec: str, base: Path | None = None) -> list[Path]:
    """WAV paths from a comma-separated list of files, folders (their ``*.wav``) and globs,
    sorted within each item; relative paths resolve against ``base`` (default: the cwd)."""
    root = base or Path.cwd()
    out: list[Path] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        path = Path(item).expanduser()
        if not path.is_absolute():
            path = root / path
        if path.is_dir():
            out.extend(sorted(path.glob("*.wav")))
        elif any(ch in item for ch in "*?["):
            out.extend(Path(p) for p in sorted(glob.glob(str(path))))
        else:
            out.append(path)
    return out


@dataclass(frozen=True)
class Settings:
    """Everything the users read, parsed and validated once from Locust's options."""

    endpoint_name: str = ""
    region: str | None = None
    ca_file: str | None = None
    audio: str = DEFAULT_AUDIO
    chunk_ms: float = 100.0
    speed: float = 1.0
    model_path: str = ""
    model_query: str = ""
    session_seconds: float = 0.0
    frame_bytes: int = 3200
    frame_rate: float = 10.0
    prompts: str = ""
    prompts_per_session: int = 3
    text_done_types: frozenset[str] = field(
        default_factory=lambda: frozenset(DEFAULT_DONE_TYPES.split(","))
    )
    speech_end: str = "finalize"
    receive_timeout: float = 30.0
    connect_timeout: float = 10.0
    warmup_seconds: float = 0.0
    frame_events: bool = False
    report_json: str = "loadtest-report.json"
    report_html: str = "loadtest-report.html"
    slos: tuple[SloCheck, ...] = ()

    @classmethod
    def from_options(cls, options: argparse.Namespace | Any) -> Settings:
        """Read Locust's parsed options (missing ones take their defaults)."""
        defaults = {dest: default for _, dest, _, default, _ in _OPTIONS}

        def get(dest: str) -> Any:
            value = getattr(options, dest, None) if options is not None else None
            return defaults[dest] if value is None else value

        chunk_ms = float(get("chunk_ms"))
        frame_rate = float(get("frame_rate"))
        frame_bytes = int(get("frame_bytes"))
        if not chunk_ms > 0:
            raise ValueError("--chunk-ms must be positive")
        if not frame_rate > 0:
            raise ValueError("--frame-rate must be positive")
        if frame_bytes < 1:
            raise ValueError("--frame-bytes must be at least 1")
        speech_end = str(get("speech_end")).strip().lower()
        if speech_end not in ("finalize", "close"):
            raise ValueError("--speech-end must be 'finalize' or 'close'")
        slos = parse_slos({dest: get(dest) for dest in defaults if dest.startswith("slo")})
        return cls(
            endpoint_name=str(get("endpoint_name")),
            region=str(get("region")) or os.environ.get("AWS_REGION") or None,
            ca_file=str(get("ca_file")) or None,
            audio=str(get("audio")),
            chunk_ms=chunk_ms,
            speed=parse_pace(str(get("pace"))),
            model_path=str(get("model_path")),
            model_query=str(get("model_query")),
            session_seconds=float(get("session_seconds")),
            frame_bytes=frame_bytes,
            frame_rate=frame_rate,
            prompts=str(get("prompts")),
            prompts_per_session=max(1, int(get("prompts_per_session"))),
            text_done_types=frozenset(
                t.strip() for t in str(get("text_done_types")).split(",") if t.strip()
            ),
            speech_end=speech_end,
            receive_timeout=float(get("receive_timeout")),
            connect_timeout=float(get("connect_timeout")),
            warmup_seconds=max(0.0, float(get("warmup_seconds"))),
            frame_events=bool(get("frame_events")),
            report_json=str(get("report_json")),
            report_html=str(get("report_html")),
            slos=tuple(slos),
        )
