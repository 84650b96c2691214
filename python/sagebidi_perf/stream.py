"""``sagebidi stream``: send a WAV file to a streaming endpoint at real-time pace and print what
comes back (Deepgram ``/v1/listen`` transcripts live, or any other model's replies).

Either transport of :mod:`sagebidi_perf.client`: ``--url ws://host:8080`` straight to a container
(as the SageMaker sidecar), or ``--endpoint-name``/``--endpoint-url`` through SageMaker's
``InvokeEndpointWithBidirectionalStream`` (the local gateway or a real endpoint; credentials and
region from the standard AWS environment).

The Deepgram protocol (``--path v1/listen``, the default): the PCM of the file goes up as binary
frames with ``encoding=linear16&sample_rate=<rate>&channels=<n>&interim_results=true`` (or, with
``--send-file`` or for a WAV that is not 16-bit PCM, the file as-is and no encoding, so that the
server parses the RIFF header). At the end it does what Deepgram recommends over SageMaker:
``{"type":"CloseStream"}`` as a text (UTF8) message, read until the server ends the stream
(after its ``Metadata``), and only then end the input. Any other path: the audio frames, end of
input, then the replies until the server ends the stream (an echo model's replies are counted
and timed).

Pacing: frame ``i`` leaves at ``start + (audio before it) / speed`` on the monotonic clock, so
delays never accumulate (:func:`sagebidi_perf.chunking.pacing_schedule`); ``--speed 0`` sends as
fast as possible. One thread sends; the main thread receives and prints.

Exit codes: 0 success; 2 bad arguments or an unreadable/unsupported file; 3 no connection
(refused, TLS, the upgrade or request refused: 4xx, 424); 4 the stream ended badly (the server
closed with an error code, a stream error event, a timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import struct
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode

from sagebidi_perf.chunking import chunk_audio, pacing_schedule

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CONNECT",
    "EXIT_OK",
    "EXIT_STREAM",
    "StreamOptions",
    "WavError",
    "WavFile",
    "add_arguments",
    "build_query",
    "read_wav",
    "run",
    "run_from_args",
]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_CONNECT = 3
EXIT_STREAM = 4

CLOSE_STREAM = '{"type": "CloseStream"}'
#: Plain protocol: after the last frame, the input ends once no reply came for this long.
PLAIN_QUIET = 1.0

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE
#: Accepted WAV files (whole file read into memory).
MAX_WAV_BYTES = 1 << 30


# --------------------------------------------------------------------------- WAV parsing


class WavError(ValueError):
    """The file is not a WAV file this command can stream (the message says why)."""


@dataclass(frozen=True)
class WavFile:
    """A parsed RIFF/WAVE file. ``data`` is a zero-copy view of the samples inside ``raw``."""

    raw: bytes
    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    format_tag: int  # 1 PCM, 3 IEEE float (extensible resolved to its subformat)
    data_offset: int
    data_size: int

    @property
    def data(self) -> memoryview:
        return memoryview(self.raw)[self.data_offset : self.data_offset + self.data_size]

    @property
    def is_pcm16(self) -> bool:
        return self.format_tag == _PCM and self.sample_width == 2

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.channels * self.sample_width

    @property
    def duration(self) -> float:
        return self.data_size / self.bytes_per_second


def read_wav(path: str) -> WavFile:
    """Read and parse a RIFF/WAVE file: any chunk order, ``LIST`` and other chunks skipped,
    odd chunk sizes padded, a ``data`` size of 0 or 0xFFFFFFFF (streaming writers) meaning
    "to the end of the file". Raises :class:`WavError` (or ``OSError`` for I/O)."""
    size = os.stat(path).st_size
    if size > MAX_WAV_BYTES:
        raise WavError(f"{path}: {size} bytes is more than the {MAX_WAV_BYTES} accepted")
    with open(path, "rb") as f:
        raw = f.read()
    return parse_wav(raw, name=path)


def parse_wav(raw: bytes, *, name: str = "input") -> WavFile:
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RF64") or raw[8:12] != b"WAVE":
        raise WavError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        (chunk_size,) = struct.unpack_from("<I", raw, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16 or body + 16 > len(raw):
                raise WavError(f"{name}: truncated 'fmt ' chunk")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", raw, body)
            if tag == _EXTENSIBLE:
                if chunk_size < 40 or body + 40 > len(raw):
                    raise WavError(f"{name}: truncated WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk")
                (tag,) = struct.unpack_from("<H", raw, body + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError(f"{name}: the 'data' chunk comes before any 'fmt ' chunk")
            if chunk_size in (0, 0xFFFFFFFF) or body + chunk_size > len(raw):
                # Unknown size (a streaming writer), or a truncated file: what is there, in
                # whole sample frames.
                chunk_size = len(raw) - body
            return _wav_from(name, raw, fmt, body, chunk_size)
        pos = body + chunk_size + (chunk_size & 1)
    if fmt is None:
        raise WavError(f"{name}: no 'fmt ' chunk")
    raise WavError(f"{name}: no 'data' chunk")


def _wav_from(
    name: str, raw: bytes, fmt: tuple[int, int, int, int], offset: int, size: int
) -> WavFile:
    tag, channels, rate, bits = fmt
    if tag not in (_PCM, _FLOAT):
        raise WavError(f"{name}: unsupported WAV encoding (format tag {tag:#06x}); use PCM")
    if (tag == _PCM and bits not in (8, 16, 24, 32)) or (tag == _FLOAT and bits not in (32, 64)):
        raise WavError(f"{name}: unsupported sample size of {bits} bits")
    if not 1 <= channels <= 32:
        raise WavError(f"{name}: unsupported channel count {channels}")
    if not 1000 <= rate <= 384_000:
        raise WavError(f"{name}: unsupported sample rate {rate} Hz")
    width = bits // 8
    block = width * channels
    size -= size % block
    if size == 0:
        raise WavError(f"{name}: the WAV file holds no audio")
    return WavFile(raw, rate, channels, width, tag, offset, size)


# --------------------------------------------------------------------------- options


@dataclass
class StreamOptions:
    file: str
    url: str | None = None
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    ca_file: str | None = None
    path: str = "v1/listen"
    query: str = ""
    speed: float = 1.0
    chunk_ms: float = 100.0
    json: bool = False
    send_file: bool = False
    protocol: str = "auto"  # auto | deepgram | plain
    timeout: float = 30.0
    connect_timeout: float = 10.0

    @property
    def deepgram(self) -> bool:
        if self.protocol == "auto":
            return self.path.strip("/").endswith("listen")
        return self.protocol == "deepgram"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a WAV file (RIFF/WAVE; PCM or float)")
    target = p.add_argument_group("where to (one of)")
    target.add_argument("--url", help="a container, straight: ws://host:8080 (or wss://)")
    target.add_argument(
        "--endpoint-name", help="a SageMaker endpoint (with --endpoint-url for the local gateway)"
    )
    target.add_argument(
        "--endpoint-url",
        help="https://host:port of the gateway or the runtime "
        "[default: $AWS_ENDPOINT_URL..., else the region's runtime endpoint]",
    )
    target.add_argument("--region", help="AWS region [default: $AWS_REGION / profile]")
    target.add_argument("--ca-file", help="PEM bundle that signs the endpoint's certificate")
    p.add_argument(
        "--path",
        default="v1/listen",
        help="model invocation path; '' = the container's default "
        "(/invocations-bidirectional-stream) [default: v1/listen]",
    )
    p.add_argument(
        "--query",
        default="",
        help="query string, e.g. 'model=nova-3&language=en'; its keys replace the defaults",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="times real time; 0 = as fast as possible [default: 1.0]",
    )
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per frame [default: 100]")
    p.add_argument(
        "--send-file",
        action="store_true",
        help="send the WAV file as-is (header included, no encoding/sample_rate: the server "
        "detects the container) instead of its raw PCM",
    )
    p.add_argument(
        "--protocol",
        choices=("auto", "deepgram", "plain"),
        default="auto",
        help="deepgram: Results/Metadata and CloseStream; plain: count and time replies; "
        "auto: deepgram when the path ends in 'listen' [default: auto]",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the server after the audio is sent [default: 30]",
    )
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds [default: 10]")


def build_query(wav: WavFile, options: StreamOptions, *, raw: bool) -> str:
    """The query string: Deepgram defaults for raw audio, then the user's keys (which replace
    defaults of the same name; repeated user keys are kept)."""
    user = parse_qsl(options.query.lstrip("?"), keep_blank_values=True)
    defaults: list[tuple[str, str]] = []
    if options.deepgram:
        if raw:
            defaults += [
                ("encoding", "linear16"),
                ("sample_rate", str(wav.sample_rate)),
                ("channels", str(wav.channels)),
            ]
        defaults.append(("interim_results", "true"))
    given = {k for k, _ in user}
    pairs = [(k, v) for k, v in defaults if k not in given] + user
    return urlencode(pairs)


# --------------------------------------------------------------------------- the session


@dataclass
class _Frame:
    data: memoryview | bytes
    audio_end: float  # seconds of audio up to the end of this frame


def _frames(wav: WavFile, chunk_ms: float, raw: bool) -> list[_Frame]:
    chunks = chunk_audio(
        wav.data,
        sample_rate=wav.sample_rate,
        channels=wav.channels,
        sample_width=wav.sample_width,
        frame_ms=chunk_ms,
    )
    out: list[_Frame] = []
    pos = 0
    for chunk in chunks:
        pos += chunk.nbytes
        out.append(_Frame(chunk, pos / wav.bytes_per_second))
    if not raw and out:
        end = wav.data_offset + wav.data_size
        out[0] = _Frame(wav.raw[: wav.data_offset] + bytes(out[0].data), out[0].audio_end)
        if end < len(wav.raw):  # chunks after the data (LIST...) go with the last frame
            out[-1] = _Frame(bytes(out[-1].data) + wav.raw[end:], out[-1].audio_end)
    return out


@dataclass
class _Stats:
    start: float = 0.0  # first frame sent (perf_counter)
    sent_end: float | None = None  # last frame sent
    audio_seconds: float = 0.0
    frames_sent: int = 0
    bytes_sent: int = 0
    sent_at: list[float] = field(default_factory=list)  # per frame, actual send time
    audio_ends: list[float] = field(default_factory=list)  # per frame, audio end
    first_result: float | None = None
    first_transcript: float | None = None
    final_latencies: list[float] = field(default_factory=list)
    results: int = 0
    finals: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    other_messages: int = 0
    binary_replies: int = 0
    binary_bytes: int = 0
    echo_rtts: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent_time_of(self, audio_pos: float) -> float | None:
        """When the frame holding audio position ``audio_pos`` was sent (None: not yet)."""
        with self.lock:
            i = bisect_left(self.audio_ends, audio_pos - 1e-6)
            if i >= len(self.sent_at):
                return None
            return self.sent_at[i]


class _Printer:
    """Human output: finals on their own lines, the interim on one updating line (a TTY) or
    marked lines (a pipe), events dimmed; or JSON lines."""

    def __init__(self, out: TextIO, as_json: bool, start: Callable[[], float]) -> None:
        self.out = out
        self.json = as_json
        self.tty = out.isatty() and not as_json
        self.start = start
        self._interim_shown = False

    def _elapsed(self, at: float) -> float:
        return at - self.start()

    def _clear_interim(self) -> None:
        if self._interim_shown:
            self.out.write("\r\x1b[K")
            self._interim_shown = False

    def line(self, text: str) -> None:
        self._clear_interim()
        self.out.write(text + "\n")
        self.out.flush()

    def record(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self.out.flush()

    def results(self, doc: dict[str, Any], at: float, latency: float | None) -> None:
        if self.json:
            self.record({**doc, "sagebidi": {"received": round(self._elapsed(at), 4)}})
            return
        transcript = _transcript(doc)
        start = _num(doc.get("start"))
        end = start + _num(doc.get("duration"))
        stamp = f"[{_clock(start)} -> {_clock(end)}]"
        if not doc.get("is_final"):
            if not transcript:
                return
            if self.tty:
                self.out.write(f"\r\x1b[K{stamp} {transcript} ...")
                self.out.flush()
                self._interim_shown = True
            else:
                self.line(f"{stamp} ~ {transcript}")
            return
        if not transcript:
            self._clear_interim()
            return
        tags = []
        if doc.get("speech_final"):
            tags.append("speech_final")
        if doc.get("from_finalize"):
            tags.append("from_finalize")
        if latency is not None:
            tags.append(f"latency {latency * 1000:.0f} ms")
        self.line(f"{stamp} {transcript}" + (f"  ({', '.join(tags)})" if tags else ""))

    def event(self, doc: dict[str, Any], at: float) -> None:
        if self.json:
            self.record({**doc, "sagebidi": {"received": round(self._elapsed(at), 4)}})
            return
        kind = doc.get("type")
        if kind == "SpeechStarted":
            self.line(f"-- speech started at {_num(doc.get('timestamp')):.2f} s")
        elif kind == "UtteranceEnd":
            self.line(
                f"-- utterance end (last word ended at {_num(doc.get('last_word_end')):.2f} s)"
            )
        elif kind == "Metadata":
            self.line(
                f"-- metadata: request {doc.get('request_id')}, "
                f"{_num(doc.get('duration')):.2f} s of audio, {doc.get('channels')} channel(s)"
            )
        else:
            self.line(f"<  {json.dumps(doc)[:300]}")

    def text(self, text: str, at: float) -> None:
        if self.json:
            self.record(
                {"type": "sagebidi.Text", "text": text, "received": round(self._elapsed(at), 4)}
            )
        else:
            self.line(f"<  {text[:300]}")

    def binary(self, size: int, at: float, rtt: float | None) -> None:
        if self.json:
            doc: dict[str, Any] = {
                "type": "sagebidi.Binary",
                "bytes": size,
                "received": round(self._elapsed(at), 4),
            }
            if rtt is not None:
                doc["round_trip_ms"] = round(rtt * 1000, 3)
            self.record(doc)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes):02d}:{secs:05.2f}"


def _transcript(doc: dict[str, Any]) -> str:
    channel = doc.get("channel")
    if not isinstance(channel, dict):
        return ""
    alternatives = channel.get("alternatives")
    if not isinstance(alternatives, list) or not alternatives:
        return ""
    first = alternatives[0]
    text = first.get("transcript") if isinstance(first, dict) else None
    return text.strip() if isinstance(text, str) else ""


class _Sender(threading.Thread):
    def __init__(
        self,
        session: Any,
        frames: list[_Frame],
        schedule: list[float],
        stats: _Stats,
        *,
        deepgram: bool,
    ) -> None:
        super().__init__(name="sagebidi-stream-sender", daemon=True)
        self.session = session
        self.frames = frames
        self.schedule = schedule
        self.stats = stats
        self.deepgram = deepgram
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        stats = self.stats
        try:
            for frame, due in zip(self.frames, self.schedule, strict=True):
                delay = due - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    return
                if self.stop.is_set():
                    return
                # Recorded before the send: a reply may arrive before send() returns.
                with stats.lock:
                    stats.sent_at.append(time.perf_counter())
                    stats.audio_ends.append(frame.audio_end)
                self.session.send(frame.data)
                with stats.lock:
                    stats.frames_sent += 1
                    stats.bytes_sent += len(frame.data)
                    stats.audio_seconds = frame.audio_end
            stats.sent_end = time.perf_counter()
            if self.deepgram:
                # Text (UTF8), never binary: a binary CloseStream may be taken for audio.
                self.session.send(CLOSE_STREAM)
            # Plain protocol: the receiver ends the input once the replies have stopped (a
            # container answers our Close at once, and what it had not yet sent is lost).
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def _connect(options: StreamOptions, query: str) -> Any:
    from sagebidi_perf.client import connect_sagemaker, connect_ws

    path = options.path.strip("/") or None
    if options.url is not None:
        return connect_ws(
            options.url,
            model_invocation_path=path,
            model_query_string=query or None,
            ca_file=options.ca_file,
            timeout=options.timeout,
            connect_timeout=options.connect_timeout,
        )
    assert options.endpoint_name is not None
    return connect_sagemaker(
        options.endpoint_url,
        options.endpoint_name,
        region=options.region,
        model_invocation_path=path,
        model_query_string=query or None,
        ca_file=options.ca_file,
        timeout=options.timeout,
        connect_timeout=options.connect_timeout,
    )


def _describe_connect_error(exc: BaseException, where: str) -> str:
    from sagebidi_perf.client import HandshakeError, ModelError, ServiceError

    if isinstance(exc, ModelError):
        return (
            f"{where} refused the stream: {exc} (424: the container refused the WebSocket "
            "upgrade; for /v1/listen usually an unknown or bad query parameter)"
        )
    if isinstance(exc, ServiceError) and exc.status == 403:
        return f"{where} refused the request: {exc} (403: check the AWS credentials and region)"
    if isinstance(exc, HandshakeError):
        return f"{where}: {exc}"
    return f"cannot connect to {where}: {exc}"


def _clean_end(exc: BaseException) -> bool:
    """A SageMaker ModelStreamError that only reports the container's normal close (1000)."""
    from sagebidi_perf.client import ModelStreamError

    return isinstance(exc, ModelStreamError) and exc.error_code == "1000"


def run(options: StreamOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream ``options.file``; returns the exit code (see the module docstring)."""
    from sagebidi_perf.client import ClientError

    if options.speed < 0 or not math.isfinite(options.speed):
        print("sagebidi stream: --speed must be >= 0 (0 = as fast as possible)", file=err)
        return EXIT_BAD_INPUT
    if not 1 <= options.chunk_ms <= 10_000:
        print("sagebidi stream: --chunk-ms must be between 1 and 10000", file=err)
        return EXIT_BAD_INPUT
    if (options.url is None) == (options.endpoint_name is None):
        print("sagebidi stream: give either --url or --endpoint-name", file=err)
        return EXIT_BAD_INPUT
    try:
        wav = read_wav(options.file)
    except (WavError, OSError) as exc:
        message = str(exc) if isinstance(exc, WavError) else f"{options.file}: {exc.strerror}"
        print(f"sagebidi stream: {message}", file=err)
        return EXIT_BAD_INPUT
    raw = wav.is_pcm16 and not options.send_file
    query = build_query(wav, options, raw=raw)
    frames = _frames(wav, options.chunk_ms, raw)
    where = options.url or f"endpoint {options.endpoint_name}"

    try:
        session = _connect(options, query)
    except (ClientError, OSError) as exc:
        print(f"sagebidi stream: {_describe_connect_error(exc, where)}", file=err)
        return EXIT_CONNECT

    stats = _Stats()
    printer = _Printer(out, options.json, lambda: stats.start)
    speed = math.inf if options.speed == 0 else options.speed
    stats.start = time.perf_counter() + 0.005
    durations = [frames[0].audio_end] + [
        b.audio_end - a.audio_end for a, b in itertools.pairwise(frames)
    ]
    schedule = pacing_schedule(durations, speed=speed, start=stats.start)
    sender = _Sender(session, frames, schedule, stats, deepgram=options.deepgram)
    if not printer.json:
        mode = "raw PCM" if raw else "the WAV file as-is"
        pace = "as fast as possible" if speed == math.inf else f"{options.speed:g}x real time"
        print(
            f"sagebidi stream: {wav.duration:.2f} s of {wav.sample_rate} Hz x{wav.channels} "
            f"audio, {mode}, {pace}, to {where} ({session.transport})"
            + (f" ?{query}" if query else ""),
            file=err,
        )
    sender.start()
    code = EXIT_OK
    problem: str | None = None
    try:
        code, problem = _receive_loop(session, sender, stats, printer, options)
    except KeyboardInterrupt:
        sender.stop.set()
        session.abort()
        print("sagebidi stream: interrupted", file=err)
        return 130
    finally:
        sender.stop.set()
        sender.join(timeout=5)
    if code == EXIT_OK and sender.error is not None and not _clean_end(sender.error):
        code, problem = EXIT_STREAM, f"sending failed: {sender.error}"
    with contextlib.suppress(ClientError):
        session.close()  # the input ends after the server ended its stream
    _summary(stats, printer, options, err)
    if problem is not None:
        print(f"sagebidi stream: {problem}", file=err)
    return code


def _receive_loop(
    session: Any, sender: _Sender, stats: _Stats, printer: _Printer, options: StreamOptions
) -> tuple[int, str | None]:
    from sagebidi_perf.client import ClientError, ClientTimeoutError, ConnectionClosedError

    echo_index = 0
    plain_input_open = not options.deepgram
    while True:
        # While audio goes up, the server may be quiet (silence): wait in short slices. Once it
        # is all sent, the server has ``timeout`` seconds to end the stream.
        end_on_timeout = False
        if sender.is_alive():
            wait = 1.0
        else:
            sent_end = stats.sent_end or time.perf_counter()
            wait = sent_end + options.timeout - time.perf_counter()
            if wait <= 0:
                return EXIT_STREAM, (
                    f"the server did not end the stream within {options.timeout:g} s "
                    "of the end of the audio"
                )
            if plain_input_open and sender.error is None:
                if stats.binary_bytes >= stats.bytes_sent:  # all came back (an echo)
                    plain_input_open = False
                    _end_input(session)
                    continue
                wait = min(wait, PLAIN_QUIET)
                end_on_timeout = True
        try:
            message = session.receive(timeout=wait)
        except ClientTimeoutError:
            if sender.error is not None:
                if _clean_end(sender.error):
                    return EXIT_OK, None
                return EXIT_STREAM, f"sending failed: {sender.error}"
            if end_on_timeout:
                plain_input_open = False
                _end_input(session)
            continue
        except ConnectionClosedError as exc:
            if exc.code is not None and exc.code != 1006:
                return EXIT_STREAM, f"the server closed the stream with {exc.code}" + (
                    f": {exc.reason}" if exc.reason else ""
                )
            return EXIT_STREAM, f"the connection was lost: {exc}"
        except ClientError as exc:
            if _clean_end(exc):
                return EXIT_OK, None
            return EXIT_STREAM, f"the stream failed: {exc}"
        if message is None:
            return EXIT_OK, None
        at = message.received_at or time.perf_counter()
        data = message.data
        if isinstance(data, bytes):
            stats.binary_replies += 1
            stats.binary_bytes += len(data)
            rtt = None
            with stats.lock:
                if echo_index < len(stats.sent_at):
                    rtt = at - stats.sent_at[echo_index]
            echo_index += 1
            if rtt is not None:
                stats.echo_rtts.append(rtt)
            printer.binary(len(data), at, rtt)
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            stats.other_messages += 1
            printer.text(data, at)
            continue
        if doc.get("type") == "Results":
            _on_results(doc, at, stats, printer)
        else:
            if doc.get("type") == "Metadata":
                stats.metadata = doc
            else:
                stats.other_messages += 1
            printer.event(doc, at)


def _end_input(session: Any) -> None:
    from sagebidi_perf.client import ClientError

    with contextlib.suppress(ClientError):
        session.end_input()  # if the session failed, the next receive reports why


def _on_results(doc: dict[str, Any], at: float, stats: _Stats, printer: _Printer) -> None:
    stats.results += 1
    if stats.first_result is None:
        stats.first_result = at
    transcript = _transcript(doc)
    if transcript and stats.first_transcript is None:
        stats.first_transcript = at
    latency = None
    if doc.get("is_final") and transcript:
        stats.finals.append(transcript)
        if doc.get("speech_final"):
            end = _num(doc.get("start")) + _num(doc.get("duration"))
            sent = stats.sent_time_of(end)
            if sent is not None:
                latency = max(at - sent, 0.0)
                stats.final_latencies.append(latency)
    printer.results(doc, at, latency)


def _summary(stats: _Stats, printer: _Printer, options: StreamOptions, err: TextIO) -> None:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    lat = stats.final_latencies
    summary: dict[str, Any] = {
        "type": "sagebidi.Summary",
        "audio_seconds": round(stats.audio_seconds, 3),
        "frames_sent": stats.frames_sent,
        "bytes_sent": stats.bytes_sent,
        "send_seconds": round((stats.sent_end or stats.start) - stats.start, 3)
        if stats.frames_sent
        else 0.0,
    }
    if options.deepgram:
        summary.update(
            results=stats.results,
            finals=len(stats.finals),
            transcript=" ".join(stats.finals),
            first_result_ms=ms(
                None if stats.first_result is None else stats.first_result - stats.start
            ),
            first_transcript_ms=ms(
                None if stats.first_transcript is None else stats.first_transcript - stats.start
            ),
            final_latency_ms={
                "count": len(lat),
                "p50": ms(statistics.median(lat)) if lat else None,
                "max": ms(max(lat)) if lat else None,
            },
            metadata_duration=None if stats.metadata is None else stats.metadata.get("duration"),
            request_id=None if stats.metadata is None else stats.metadata.get("request_id"),
        )
    else:
        rtts = stats.echo_rtts
        summary.update(
            replies=stats.binary_replies + stats.other_messages,
            binary_replies=stats.binary_replies,
            binary_bytes=stats.binary_bytes,
            round_trip_ms={
                "count": len(rtts),
                "p50": ms(statistics.median(rtts)) if rtts else None,
                "max": ms(max(rtts)) if rtts else None,
            },
        )
    if printer.json:
        printer.record(summary)
        return
    out = printer
    out.line("")
    out.line(
        f"audio {summary['audio_seconds']:.2f} s sent in {summary['send_seconds']:.2f} s "
        f"({stats.frames_sent} frames, {stats.bytes_sent} bytes)"
    )
    if options.deepgram:
        first = summary["first_result_ms"]
        out.line(
            f"results {stats.results}, finals {len(stats.finals)}; first result "
            + ("-" if first is None else f"{first:.0f} ms")
            + " after the first audio"
        )
        if lat:
            out.line(
                f"final latency (speech_final, after its audio was sent): "
                f"p50 {summary['final_latency_ms']['p50']:.0f} ms, "
                f"max {summary['final_latency_ms']['max']:.0f} ms over {len(lat)}"
            )
        if stats.metadata is None:
            out.line("no Metadata received")
    else:
        rt = summary["round_trip_ms"]
        out.line(
            f"replies: {stats.binary_replies} binary ({stats.binary_bytes} bytes), "
            f"{stats.other_messages} text"
            + (
                f"; round trip p50 {rt['p50']:.1f} ms, max {rt['max']:.1f} ms"
                if rt["count"]
                else ""
            )
        )


def run_from_args(args: argparse.Namespace) -> int:
    options = StreamOptions(
        file=args.file,
        url=args.url,
        endpoint_name=args.endpoint_name,
        endpoint_url=args.endpoint_url,
        region=args.region,
        ca_file=args.ca_file,
        path=args.path,
        query=args.query,
        speed=args.speed,
        chunk_ms=args.chunk_ms,
        json=args.json,
        send_file=args.send_file,
        protocol=args.protocol,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
    )
    return run(options)
