"""Load-test metrics: microsecond HdrHistograms, counters, errors by kind and a per-second
timeline, recorded cheaply per frame and merged exactly across Locust workers.

Imports neither Locust nor gevent (unit-tested in-process). One :class:`Metrics` per process;
the users record into it, a Locust worker ships :meth:`Metrics.take_delta` to the master every
report interval and the master :meth:`Metrics.merge`-s the deltas: HdrHistogram counts are added
bucket by bucket, so the master's percentiles are exactly those of one histogram holding every
worker's samples (3 significant digits: a value is stored within 0.1 %).

What each histogram holds (all in microseconds; the clock is ``time.perf_counter``):

``connect``
    Start of the connect call → the session is ready (TCP + TLS + WebSocket 101, or HTTP/2
    response headers 200 for the ``sagemaker`` transport).
``ttft``
    Time to first token: the first frame of the session sent → the first non-empty response
    message received (speech: a ``Results`` with a non-empty transcript, interim or final;
    echo: the first echoed frame; text: per prompt, the prompt sent → its first reply message).
``first_final``
    Speech: the first audio frame sent → the first ``is_final`` ``Results`` with a non-empty
    transcript.
``final_latency``
    Speech: the last audio frame sent (end of speech) → the last ``is_final`` ``Results`` of the
    session (the answer to ``Finalize``/``CloseStream``).
``transcript_lag``
    Speech: for every non-empty ``Results``, its arrival → the moment the audio it covers up to
    (``start + duration``) had been sent; how far the transcript trails the audio.
``itl``
    Inter-message gap: between consecutive non-empty response messages of one session (text: of
    one reply).
``round_trip``
    Echo: a frame sent → the identical frame received back.
``jitter``
    Send-time jitter: how late the pacer sent each frame against its schedule
    (``start + i * frame duration / speed``); 0 when on time (never negative). Not recorded when
    pacing is "as fast as possible".
``session``
    A session's whole life: connect start → the server ended the stream (or the failure).

Counters: ``frames_sent``/``bytes_sent``/``frames_received``/``bytes_received`` (payload bytes
of whole messages), ``sessions``/``sessions_ok``/``sessions_failed``, ``replies`` (text),
``speech_words``/``speech_word_errors`` (WER against a reference transcript). ``errors`` counts
failures by kind (:func:`sagebidi_perf.loadtest.errors.error_kind`): ``http_424``, ``http_403``,
``ModelStreamError:<code>``, ``close_<code>``, ``timeout``, ``connect``, ``mismatch``...
The timeline holds, per wall-clock second, frames and bytes each way, sessions started/ended,
errors and every TTFT sample of that second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = [
    "COUNTERS",
    "HIGHEST_US",
    "HISTOGRAMS",
    "Histogram",
    "Metrics",
    "TimelineSecond",
]

#: Largest trackable value: one hour in microseconds (larger values are clamped to it).
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
HISTOGRAMS = (
    "connect",
    "ttft",
    "first_final",
    "final_latency",
    "transcript_lag",
    "itl",
    "round_trip",
    "jitter",
    "session",
)
COUNTERS = (
    "frames_sent",
    "bytes_sent",
    "frames_received",
    "bytes_received",
    "sessions",
    "sessions_ok",
    "sessions_failed",
    "replies",
    "speech_words",
    "speech_word_errors",
)
#: Samples buffered before they are folded into the histogram in one vectorised step.
_BUFFER = 4096


def _new_hdr() -> Any:
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)


class Histogram:
    """An HdrHistogram of microseconds with a cheap :meth:`record` (a list append; samples are
    folded in with numpy every few thousand, with exactly the bucket arithmetic of
    ``HdrHistogram.record_value``)."""

    __slots__ = ("_buf", "_counts", "hdr")

    def __init__(self, hdr: Any = None) -> None:
        self.hdr = hdr if hdr is not None else _new_hdr()
        self._counts = np.ctypeslib.as_array(self.hdr.counts)
        self._buf: list[int] = []

    def record_us(self, value: int) -> None:
        """Record one value in microseconds (clamped to ``[0, HIGHEST_US]``)."""
        buf = self._buf
        buf.append(value)
        if len(buf) >= _BUFFER:
            self.flush()

    def record(self, seconds: float) -> None:
        """Record a duration in seconds (negative durations count as 0)."""
        self.record_us(int(seconds * 1e6))

    def flush(self) -> None:
        """Fold the buffered samples into the histogram."""
        if not self._buf:
            return
        values = np.clip(np.asarray(self._buf, dtype=np.int64), 0, HIGHEST_US)
        self._buf = []
        hdr = self.hdr
        # bucket_index = bit_length(v | sub_bucket_mask) - unit_magnitude - (shcm + 1)
        _, exponent = np.frexp((values | hdr.sub_bucket_mask).astype(np.float64))
        bucket = (
            exponent.astype(np.int64)
            - hdr.unit_magnitude
            - (hdr.sub_bucket_half_count_magnitude + 1)
        )
        sub = values >> (bucket + hdr.unit_magnitude)
        index = ((bucket + 1) << hdr.sub_bucket_half_count_magnitude) + (
            sub - hdr.sub_bucket_half_count
        )
        counts = self._counts
        counts += np.bincount(index, minlength=counts.size).astype(counts.dtype, copy=False)
        hdr.total_count += int(values.size)
        hdr.min_value = min(hdr.min_value, int(values.min()))
        hdr.max_value = max(hdr.max_value, int(values.max()))

    @property
    def count(self) -> int:
        self.flush()
        return int(self.hdr.get_total_count())

    def add(self, other: Histogram) -> None:
        other.flush()
        self.flush()
        self.hdr.add(other.hdr)

    def add_encoded(self, encoded: bytes) -> None:
        self.flush()
        self.hdr.add(HdrHistogram.decode(encoded))

    def encode(self) -> bytes:
        self.flush()
        data: bytes = self.hdr.encode()
        return data

    def reset(self) -> None:
        """Empty, in place; the fields ``HdrHistogram.reset`` sets, with the counts zeroed by
        numpy (its pure-Python loop over ~40,000 counters blocks the process for ~5 ms)."""
        self._buf = []
        hdr = self.hdr
        self._counts.fill(0)
        hdr.total_count = 0
        hdr.min_value = sys.maxsize
        hdr.max_value = 0
        hdr.start_time_stamp_msec = sys.maxsize
        hdr.end_time_stamp_msec = 0

    def percentile_us(self, percentile: float) -> int:
        self.flush()
        return int(self.hdr.get_value_at_percentile(percentile))

    def summary(self, percentiles: Iterable[float] = (50, 90, 95, 99, 99.9)) -> dict[str, Any]:
        """count, min, mean, percentiles and max, in milliseconds."""
        self.flush()
        hdr = self.hdr
        count = int(hdr.get_total_count())
        out: dict[str, Any] = {"count": count}
        if count == 0:
            return out
        out["min_ms"] = hdr.get_min_value() / 1000
        out["mean_ms"] = round(hdr.get_mean_value() / 1000, 3)
        for p in percentiles:
            out[f"p{p:g}_ms"] = hdr.get_value_at_percentile(p) / 1000
        out["max_ms"] = hdr.get_max_value() / 1000
        return out

    def distribution(self) -> list[tuple[float, float]]:
        """(percentile, value ms) points for a percentile-distribution plot."""
        self.flush()
        if self.hdr.get_total_count() == 0:
            return []
        points = []
        for p in (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100):
            points.append((float(p), self.hdr.get_value_at_percentile(p) / 1000))
        return points


@dataclass(slots=True)
class TimelineSecond:
    """What happened in one wall-clock second (merged across workers by addition)."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    sessions_started: int = 0
    sessions_ended: int = 0
    errors: int = 0
    ttft_us: list[int] = field(default_factory=list)

    def to_list(self) -> list[Any]:
        return [
            self.frames_sent,
            self.bytes_sent,
            self.frames_received,
            self.bytes_received,
            self.sessions_started,
            self.sessions_ended,
            self.errors,
            list(self.ttft_us),
        ]

    def add_list(self, row: list[Any]) -> None:
        self.frames_sent += int(row[0])
        self.bytes_sent += int(row[1])
        self.frames_received += int(row[2])
        self.bytes_received += int(row[3])
        self.sessions_started += int(row[4])
        self.sessions_ended += int(row[5])
        self.errors += int(row[6])
        self.ttft_us.extend(int(v) for v in row[7])


class Metrics:
    """Every metric of one process (or, on the master, of all workers merged).

    ``offset`` converts ``time.perf_counter()`` readings into wall-clock seconds for the
    timeline (taken once, so per-frame work reads no extra clock).
    """

    def __init__(self) -> None:
        self.hists: dict[str, Histogram] = {name: Histogram() for name in HISTOGRAMS}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.errors: dict[str, int] = {}
        #: A sample message per error kind (the first seen).
        self.error_examples: dict[str, str] = {}
        self.timeline: dict[int, TimelineSecond] = {}
        self.offset = time.time() - time.perf_counter()
        self.started_at = time.time()

    # -- recording (per frame: keep it cheap) ----------------------------------------------

    def _second(self, perf: float) -> TimelineSecond:
        sec = int(perf + self.offset)
        row = self.timeline.get(sec)
        if row is None:
            row = self.timeline[sec] = TimelineSecond()
        return row

    def frame_sent(self, nbytes: int, perf: float) -> None:
        c = self.counters
        c["frames_sent"] += 1
        c["bytes_sent"] += nbytes
        row = self._second(perf)
        row.frames_sent += 1
        row.bytes_sent += nbytes

    def frame_received(self, nbytes: int, perf: float) -> None:
        c = self.counters
        c["frames_received"] += 1
        c["bytes_received"] += nbytes
        row = self._second(perf)
        row.frames_received += 1
        row.bytes_received += nbytes

    def record(self, name: str, seconds: float) -> None:
        self.hists[name].record_us(int(seconds * 1e6))

    def ttft(self, seconds: float, perf: float) -> None:
        us = int(seconds * 1e6)
        self.hists["ttft"].record_us(us)
        self._second(perf).ttft_us.append(max(us, 0))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def session_started(self, perf: float) -> None:
        self.counters["sessions"] += 1
        self._second(perf).sessions_started += 1

    def session_ended(self, perf: float, *, ok: bool) -> None:
        self.counters["sessions_ok" if ok else "sessions_failed"] += 1
        self._second(perf).sessions_ended += 1

    def error(self, kind: str, perf: float, example: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if kind not in self.error_examples and example:
            self.error_examples[kind] = example[:300]
        self._second(perf).errors += 1

    # -- shipping and merging ----------------------------------------------------------------

    def take_delta(self) -> dict[str, Any]:
        """Everything recorded since the last call, as msgpack-friendly data, and reset.

        Histograms travel HdrHistogram-encoded (compressed counts), so merging is exact.
        """
        hists = {}
        for name, hist in self.hists.items():
            if hist.count:
                hists[name] = hist.encode()
                hist.reset()
        delta = {
            "hists": hists,
            "counters": {k: v for k, v in self.counters.items() if v},
            "errors": dict(self.errors),
            "error_examples": dict(self.error_examples),
            "timeline": {str(sec): row.to_list() for sec, row in self.timeline.items()},
        }
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.errors = {}
        self.timeline = {}
        return delta

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add a :meth:`take_delta` payload (from this or another process)."""
        for name, encoded in delta.get("hists", {}).items():
            hist = self.hists.get(name)
            if hist is None:
                hist = self.hists[name] = Histogram()
            hist.add_encoded(encoded.encode() if isinstance(encoded, str) else bytes(encoded))
        for name, value in delta.get("counters", {}).items():
            self.counters[name] = self.counters.get(name, 0) + int(value)
        for kind, value in delta.get("errors", {}).items():
            self.errors[kind] = self.errors.get(kind, 0) + int(value)
        for kind, example in delta.get("error_examples", {}).items():
            self.error_examples.setdefault(kind, str(example))
        for sec, row in delta.get("timeline", {}).items():
            key = int(sec)
            target = self.timeline.get(key)
            if target is None:
                target = self.timeline[key] = TimelineSecond()
            target.add_list(row)

    def reset(self) -> None:
        """Forget everything, in place (users keep references to the histograms)."""
        for hist in self.hists.values():
            hist.reset()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.errors = {}
        self.error_examples = {}
        self.timeline = {}
        self.offset = time.time() - time.perf_counter()
        self.started_at = time.time()

    def counts(self) -> dict[str, int]:
        """Sample count of every histogram (what the distributed test compares)."""
        return {name: hist.count for name, hist in self.hists.items()}
