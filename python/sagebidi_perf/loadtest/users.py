"""Abstract Locust users for streaming sessions: subclass one in a locustfile and set only what
differs (host, weight, wait time).

* :class:`SpeechUser` streams WAV clips as linear16 with a Deepgram ``/v1/listen`` query at a
  set pace, then ``Finalize``/``CloseStream``, and reads Deepgram ``Results``/``Metadata``.
* :class:`EchoUser` sends fixed-size binary frames at a fixed rate and checks every echo byte
  for byte.
* :class:`TextUser` sends JSON prompts one at a time and reads each reply stream to its end.

``--host ws://...`` talks to a container straight away (the sidecar's WebSocket);
``--host https://...`` goes through ``InvokeEndpointWithBidirectionalStream`` (the local
gateway or a real SageMaker endpoint) with ``--endpoint-name``, ``--region`` and the standard
AWS credentials. Every session fires Locust ``request`` events (``connect``, ``ttft``,
``session``...; request type = the scenario) for the web UI and ``--csv``, and records the
microsecond histograms of :mod:`sagebidi_perf.loadtest.metrics`.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from array import array
from collections.abc import Callable
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
from locust import User, constant, task

from sagebidi_perf.client import Message, Session, connect_sagemaker, connect_ws
from sagebidi_perf.client.errors import ClientTimeoutError, ModelStreamError
from sagebidi_perf.loadtest import plugin
from sagebidi_perf.loadtest.errors import MismatchError, ScenarioError, error_kind
from sagebidi_perf.loadtest.fastpath import PACER, GeventStream, MessageStream
from sagebidi_perf.loadtest.metrics import Metrics
from sagebidi_perf.loadtest.options import DEFAULT_SPEECH_PATH, DEFAULT_SPEECH_QUERY, Settings
from sagebidi_perf.loadtest.sources import EchoPattern, word_errors

__all__ = ["EchoUser", "SpeechUser", "StreamingUser", "TextUser"]

_perf = time.perf_counter
_session_numbers = itertools.count(1)
#: Seconds a user waits after a failed connect before the next try (no tight error loops).
CONNECT_BACKOFF = 0.5


def _times(n: int) -> array[float]:
    """``n`` zeroed send times as raw doubles: one list of float objects per session (36,000
    for an hour at 10 frames/s) made every full garbage collection walk them all, a pause of
    hundreds of milliseconds at a thousand sessions; an array is not tracked by the collector."""
    return array("d", bytes(8 * n))


class _Failure(Exception):
    """What Locust's failure table shows: the error kind, then the first line of the error."""


def _pace_wait(due: float) -> float:
    """Sleep until ``due`` (a perf_counter time); returns how late we woke (>= 0 when due)."""
    now = _perf()
    while due - now > 0.0002:
        gevent.sleep(due - now)
        now = _perf()
    return now - due


class StreamingUser(User):
    """One streaming session per task run; subclasses implement :meth:`stream`.

    ``scenario`` is the Locust request type of the events; ``default_path``/``default_query``
    are used when ``--model-path``/``--model-query`` are not given.
    """

    abstract = True
    wait_time = constant(0)
    scenario: ClassVar[str] = "stream"
    default_path: ClassVar[str] = ""
    default_query: ClassVar[str] = ""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.metrics: Metrics = plugin.METRICS
        self.sessions_run = 0
        self.user_number = next(_session_numbers)

    @property
    def settings(self) -> Settings:
        return plugin.settings(self.environment)

    # -- events ------------------------------------------------------------------------------

    def fire(
        self,
        name: str,
        seconds: float,
        length: int = 0,
        exception: BaseException | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=self.scenario,
            name=name,
            response_time=seconds * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )

    # -- connecting ----------------------------------------------------------------------------

    def connect(self, query_vars: dict[str, str] | None = None) -> Any:
        """A session to ``--host`` with the scenario's path and query."""
        s = self.settings
        host = (self.host or self.environment.host or "").strip()
        path = s.model_path or self.default_path
        query = s.model_query or self.default_query
        for key, value in (query_vars or {}).items():
            query = query.replace("{" + key + "}", value)
        common: dict[str, Any] = {
            "model_invocation_path": path or None,
            "model_query_string": query or None,
            "timeout": s.receive_timeout,
            "connect_timeout": s.connect_timeout,
            "ca_file": s.ca_file,
        }
        if host.startswith(("ws://", "wss://")):
            return connect_ws(host, **common)
        if host.startswith(("https://", "http://")):
            if not s.endpoint_name:
                raise ScenarioError("config", "an https:// host needs --endpoint-name")
            return connect_sagemaker(host, s.endpoint_name, region=s.region, **common)
        raise ScenarioError(
            "config", f"--host {host!r}: use ws://HOST:PORT (a container) or https:// (SageMaker)"
        )

    # -- the session life cycle ------------------------------------------------------------------

    def run_session(self, query_vars: dict[str, str] | None = None) -> None:
        metrics = self.metrics
        started = _perf()
        metrics.session_started(started)
        self.sessions_run += 1
        try:
            session = self.connect(query_vars)
        except Exception as exc:
            self._failed("connect", started, exc)
            gevent.sleep(CONNECT_BACKOFF)
            return
        connected = _perf()
        metrics.record("connect", connected - started)
        self.fire("connect", connected - started)
        receiver: gevent.Greenlet | None = None
        ok = False
        # Our sessions carry their frames on the gevent fast path; others (peers) as they are.
        fast = (
            GeventStream(session, self.settings.receive_timeout)
            if isinstance(session, Session)
            else None
        )
        try:
            receiver = self.stream(fast or session)
            ok = True
        except Exception as exc:
            self._failed("session", started, exc)
        finally:
            if receiver is not None and not receiver.dead:
                receiver.kill(block=True, timeout=1.0)
            if fast is not None:
                fast.detach()
            if ok:
                session.close()
            else:
                session.abort()
        if ok:
            ended = _perf()
            metrics.record("session", ended - started)
            metrics.session_ended(ended, ok=True)
            self.fire("session", ended - started)

    def _failed(self, name: str, started: float, exc: BaseException) -> None:
        now = _perf()
        kind = error_kind(exc)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not getattr(exc, "counted", False):
            self.metrics.error(kind, now, text)
        self.metrics.session_ended(now, ok=False)
        # Locust groups failures by their text: keep it stable (no frame numbers).
        shown = kind if isinstance(exc, ScenarioError) else f"{kind}: {text[:160]}"
        self.fire(name, now - started, 0, _Failure(shown))

    def stream(self, session: MessageStream) -> gevent.Greenlet | None:
        """Run the scenario on an open session; raise to fail it. May return a receiver
        greenlet still running (killed when the session ends)."""
        raise NotImplementedError

    # -- helpers for scenarios -------------------------------------------------------------------

    def spawn_receiver(
        self, target: Callable[[MessageStream, list[BaseException]], None], session: MessageStream
    ) -> tuple[gevent.Greenlet, list[BaseException]]:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                target(session, errors)
            except Exception as exc:
                errors.append(exc)

        return gevent.spawn(run), errors

    def join_receiver(self, greenlet: gevent.Greenlet, errors: list[BaseException]) -> None:
        greenlet.join(timeout=self.settings.receive_timeout + 1.0)
        if errors:
            raise errors[0]
        if not greenlet.dead:
            raise ClientTimeoutError("waiting for the replies", self.settings.receive_timeout)


# -- echo ------------------------------------------------------------------------------------------


class EchoUser(StreamingUser):
    """Fixed-size binary frames (``--frame-bytes``) at a fixed rate (``--frame-rate``, times
    ``--pace``) for ``--session-seconds`` (default 10); each echo must come back byte for byte
    and in order. Metrics: round trip per frame, TTFT (the first echo), ITL, jitter."""

    abstract = True
    scenario = "echo"

    @property
    def _frames_per_session(self) -> int:
        s = self.settings
        seconds = s.session_seconds if s.session_seconds > 0 else 10.0
        return max(1, round(seconds * s.frame_rate))

    @task
    def echo_session(self) -> None:
        self.run_session()

    def stream(self, session: MessageStream) -> gevent.Greenlet | None:
        s = self.settings
        metrics = self.metrics
        pattern = _pattern(s.frame_bytes)
        n = self._frames_per_session
        sid = self.user_number * 1_000_000 + self.sessions_run
        sent_at = _times(n)
        interval = 0.0 if math.isinf(s.speed) else 1.0 / (s.frame_rate * s.speed)
        frame_events = s.frame_events
        record = metrics.hists["round_trip"].record_us
        itl = metrics.hists["itl"].record_us

        received = [0, 0]  # echoes taken, echoes that matched
        last_at = [0.0]  # when the last matching echo arrived

        def on_message(message: Message) -> None:
            """Echo number ``received[0]``: checked, then its metrics."""
            i = received[0]
            if i >= n:
                return
            received[0] = i + 1
            now = message.received_at
            data = message.data
            metrics.frame_received(len(data), now)
            problem = pattern.check(data, sid, i)
            if problem is not None:
                # Counted per frame; the session fails at its end (all frames still checked).
                metrics.error("mismatch", now, problem)
                errors.append(MismatchError(problem, counted=True))
                return
            rtt = now - sent_at[i]
            record(int(rtt * 1e6))
            if frame_events:
                self.fire("frame", rtt, len(data))
            if received[1] == 0:
                metrics.ttft(rtt, now)
                self.fire("ttft", rtt)
            else:
                itl(int((now - last_at[0]) * 1e6))
            last_at[0] = now
            received[1] += 1

        def closed_early() -> ScenarioError:
            return ScenarioError(
                "closed_early", f"the server ended the stream after {received[0]} of {n} echoes"
            )

        def receive(session: MessageStream, errors: list[BaseException]) -> None:
            while received[0] < n:
                message = session.receive()
                if message is None:
                    raise closed_early()
                on_message(message)

        if interval and isinstance(session, GeventStream) and session.can_dispatch:
            # Our client: one pacer sends every session's frames and the hub reads the echoes
            # in callbacks (no greenlet of this session wakes per frame).
            errors: list[BaseException] = []
            all_back = gevent.event.Event()

            def on_echo(message: Message) -> None:
                on_message(message)
                if received[0] >= n:
                    all_back.set()
                    session.detach()  # stop reading: the close handshake is the session's

            def on_end(error: BaseException | None) -> None:
                if error is None and received[0] < n:
                    error = closed_early()
                if error is not None:
                    errors.append(error)
                all_back.set()

            session.dispatch(on_echo, on_end)
            self._paced_sends(session, n, interval, pattern, sid, sent_at, errors)
            if not all_back.wait(self.settings.receive_timeout + 1.0):
                raise ClientTimeoutError("waiting for the replies", self.settings.receive_timeout)
            if errors:
                raise errors[0]
            return None

        greenlet, errors = self.spawn_receiver(receive, session)
        jitter = metrics.hists["jitter"].record_us
        if interval and isinstance(session, GeventStream):
            self._paced_sends(session, n, interval, pattern, sid, sent_at, errors)
            self.join_receiver(greenlet, errors)
            return greenlet
        start = _perf()
        for i in range(n):
            if interval:
                late = _pace_wait(start + i * interval)
                jitter(int(late * 1e6))
            frame = pattern.frame(sid, i)
            if errors and not isinstance(errors[0], ScenarioError):
                break
            now = _perf()
            sent_at[i] = now
            session.send(frame)
            metrics.frame_sent(len(frame), now)
        self.join_receiver(greenlet, errors)
        return greenlet

    def _paced_sends(
        self,
        stream: GeventStream,
        n: int,
        interval: float,
        pattern: EchoPattern,
        sid: int,
        sent_at: array[float],
        errors: list[BaseException],
    ) -> None:
        """The frames of :meth:`stream`, sent by the process's :data:`PACER` (the same schedule,
        jitter and checks as the loop there; no greenlet of this session wakes per frame).
        Returns once every frame is written, or raises what stopped the sends."""
        metrics = self.metrics
        jitter = metrics.hists["jitter"].record_us
        frame_sent = metrics.frame_sent
        frame = pattern.frame
        send_nowait = stream.send_nowait
        done = gevent.event.Event()
        state: dict[str, Any] = {"i": 0, "failure": None, "writer": None, "cancelled": False}
        start = _perf()

        def stop(failure: BaseException | None = None) -> None:
            state["failure"] = failure
            done.set()

        def resume() -> None:
            """A writer greenlet: finish the last send, then hand the session back."""
            try:
                stream.finish_send()
            except Exception as exc:
                stop(exc)
                return
            state["writer"] = None
            i = state["i"]
            if i >= n:
                stop()
            elif not state["cancelled"]:
                PACER.add(start + i * interval, step)

        def step(due: float, now: float) -> float | None:
            if state["cancelled"]:
                return None
            jitter(int((now - due) * 1e6))
            i: int = state["i"]
            data = frame(sid, i)
            if errors and not isinstance(errors[0], ScenarioError):
                stop()
                return None
            now = _perf()
            sent_at[i] = now
            try:
                written = send_nowait(data)
            except Exception as exc:
                stop(exc)
                return None
            frame_sent(len(data), now)
            i += 1
            state["i"] = i
            if not written:
                state["writer"] = gevent.spawn(resume)
                return None
            if i >= n:
                stop()
                return None
            return start + i * interval

        PACER.add(start, step)
        try:
            done.wait()
        finally:
            state["cancelled"] = True
            writer = state["writer"]
            if writer is not None and not writer.dead:
                writer.kill(block=True, timeout=1.0)
        if state["failure"] is not None:
            raise state["failure"]


_patterns: dict[int, EchoPattern] = {}


def _pattern(frame_bytes: int) -> EchoPattern:
    pattern = _patterns.get(frame_bytes)
    if pattern is None:
        pattern = _patterns[frame_bytes] = EchoPattern(frame_bytes)
    return pattern


# -- speech ----------------------------------------------------------------------------------------


class SpeechUser(StreamingUser):
    """Streams ``--audio`` clips (one per session, round robin; looped to ``--session-seconds``
    if set) as linear16 frames of ``--chunk-ms`` at ``--pace``, to ``v1/listen`` with a Deepgram
    query, then ``Finalize`` + ``CloseStream``, and reads ``Results`` until ``Metadata`` and the
    close. Metrics: TTFT, time to first final, final latency, transcript lag, ITL, jitter, WER
    (for clips with a ``.txt`` reference)."""

    abstract = True
    scenario = "speech"
    default_path = DEFAULT_SPEECH_PATH
    default_query = DEFAULT_SPEECH_QUERY

    def on_start(self) -> None:
        self._clips = plugin.clips(self.environment)

    @task
    def speech_session(self) -> None:
        clip = self._clips[(self.user_number + self.sessions_run) % len(self._clips)]
        self._clip = clip
        self.run_session({"sample_rate": str(clip.sample_rate)})

    def stream(self, session: MessageStream) -> gevent.Greenlet | None:
        s = self.settings
        metrics = self.metrics
        clip = self._clip
        loops = 1
        if s.session_seconds > 0:
            loops = max(1, math.ceil(s.session_seconds / clip.duration))
        frames = clip.frames * loops
        n = len(frames)
        fs = clip.frame_seconds
        sent_at = _times(n)
        sent_count = [0]
        finals: list[str] = []
        status: dict[str, Any] = {"metadata": False, "last_final": 0.0}

        def audio_sent_at(offset: float) -> float:
            """When the audio up to ``offset`` seconds had been sent."""
            index = math.ceil(offset / fs - 1e-9) - 1
            index = min(max(index, 0), max(sent_count[0] - 1, 0))
            return sent_at[index]

        def receive(session: MessageStream, errors: list[BaseException]) -> None:
            previous = 0.0
            first = True
            first_final = True
            while True:
                try:
                    message = session.receive()
                except ModelStreamError as exc:
                    # Through SageMaker, the model's normal close after CloseStream may arrive
                    # as a ModelStreamError with ErrorCode 1000: the end of the stream.
                    if exc.error_code == "1000" and status["metadata"]:
                        return
                    raise
                if message is None:
                    return
                now = message.received_at
                data = message.data
                metrics.frame_received(len(data), now)
                if not isinstance(data, str):
                    continue
                try:
                    doc = json.loads(data)
                except ValueError:
                    raise ScenarioError("bad_json", f"not JSON: {data[:80]!r}") from None
                kind = doc.get("type") if isinstance(doc, dict) else None
                if kind == "Metadata":
                    status["metadata"] = True
                    continue
                if kind != "Results":
                    continue
                transcript, start, duration, words = _results_fields(doc)
                if not transcript.strip():
                    continue
                if first:
                    metrics.ttft(now - sent_at[0], now)
                    self.fire("ttft", now - sent_at[0])
                    first = False
                else:
                    metrics.record("itl", now - previous)
                previous = now
                metrics.record("transcript_lag", now - audio_sent_at(start + duration))
                if doc.get("is_final"):
                    finals.append(transcript.strip())
                    status["last_final"] = now
                    if first_final:
                        metrics.record("first_final", now - sent_at[0])
                        self.fire("first_final", now - sent_at[0])
                        first_final = False
                    speech_end = words[-1] if words else start + duration
                    latency = now - audio_sent_at(speech_end)
                    metrics.record("final_latency", latency)
                    if s.frame_events:
                        self.fire("final", latency, len(data))

        greenlet, errors = self.spawn_receiver(receive, session)
        jitter = metrics.hists["jitter"].record_us
        paced = not math.isinf(s.speed)
        step = fs / s.speed if paced else 0.0
        start = _perf()
        for i, frame in enumerate(frames):
            if paced:
                jitter(int(_pace_wait(start + i * step) * 1e6))
            if errors:
                break
            now = _perf()
            sent_at[i] = now
            session.send(frame)
            sent_count[0] = i + 1
            metrics.frame_sent(frame.nbytes, now)
        if not errors:
            if s.speech_end == "finalize":
                session.send('{"type":"Finalize"}')
            session.send('{"type":"CloseStream"}')
        self.join_receiver(greenlet, errors)
        if not status["metadata"]:
            raise ScenarioError("no_metadata", "the stream ended without a Metadata message")
        if clip.reference and loops == 1:
            errors_, words_ = word_errors(clip.reference, " ".join(finals))
            metrics.count("speech_words", words_)
            metrics.count("speech_word_errors", errors_)
        return greenlet


def _results_fields(doc: dict[str, Any]) -> tuple[str, float, float, list[float]]:
    """(transcript, start, duration, word end times) of a Deepgram ``Results``; tolerant of
    missing fields."""
    transcript = ""
    word_ends: list[float] = []
    channel = doc.get("channel")
    if isinstance(channel, dict):
        alternatives = channel.get("alternatives")
        if isinstance(alternatives, list) and alternatives and isinstance(alternatives[0], dict):
            alt = alternatives[0]
            text = alt.get("transcript")
            transcript = text if isinstance(text, str) else ""
            words = alt.get("words")
            if isinstance(words, list):
                for w in words:
                    if isinstance(w, dict) and isinstance(w.get("end"), int | float):
                        word_ends.append(float(w["end"]))
    start = doc.get("start")
    duration = doc.get("duration")
    return (
        transcript,
        float(start) if isinstance(start, int | float) else 0.0,
        float(duration) if isinstance(duration, int | float) else 0.0,
        word_ends,
    )


# -- text ------------------------------------------------------------------------------------------


class TextUser(StreamingUser):
    """Sends ``--prompts-per-session`` prompts (JSON lines of ``--prompts``) one at a time as
    text messages, and reads each reply stream until a message whose JSON ``type`` is in
    ``--text-done-types``. Metrics: TTFT per prompt (sent → first reply message), ITL between
    reply messages, reply time (Locust ``reply`` events)."""

    abstract = True
    scenario = "text"

    def on_start(self) -> None:
        self._prompts = plugin.prompts(self.environment)

    @task
    def text_session(self) -> None:
        self.run_session()

    def stream(self, session: MessageStream) -> gevent.Greenlet | None:
        s = self.settings
        metrics = self.metrics
        prompts = self._prompts
        done_types = s.text_done_types
        any_done = "*" in done_types
        offset = self.user_number + self.sessions_run
        for k in range(s.prompts_per_session):
            prompt = prompts[(offset + k) % len(prompts)]
            sent = _perf()
            session.send(prompt)
            metrics.frame_sent(len(prompt), sent)
            previous = 0.0
            got = 0
            while True:
                message = session.receive()
                if message is None:
                    raise ScenarioError(
                        "closed_early", f"the server ended the stream during reply {k + 1}"
                    )
                now = message.received_at
                metrics.frame_received(len(message.data), now)
                done = any_done or _message_type(message) in done_types
                if got == 0:
                    metrics.ttft(now - sent, now)
                    self.fire("ttft", now - sent)
                else:
                    metrics.record("itl", now - previous)
                previous = now
                got += 1
                if done:
                    break
            metrics.count("replies")
            self.fire("reply", _perf() - sent, got)
        return None


def _message_type(message: Message) -> str | None:
    data = message.data
    if not isinstance(data, str) or not data.startswith("{"):
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None
