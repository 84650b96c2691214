"""The Locust side of the metrics: options, per-process state, worker → master shipping, the
end-of-run report and the SLO exit code. Imported (once, via :mod:`sagebidi_perf.loadtest.users`)
by the locustfiles; its listeners register at import.

Distributed runs (``--processes N`` or ``--master`` + ``--worker``): every worker ships its
metrics since the last report (HdrHistograms encoded) in Locust's ``report_to_master`` every
report interval; the master adds them up (``worker_report``). When the test stops, the master
asks every worker to stop its users and send what is left (``sagebidi_stop`` →
``sagebidi_final``), and waits for all of them before it reports: nothing recorded is lost to
the shutdown race, so the merged counts equal the sum of the workers'. Each worker logs the
totals it shipped (``sagebidi-loadtest worker totals {...}``).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent  # type: ignore[import-untyped]
from locust import events as _events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from sagebidi_perf.loadtest.metrics import Metrics
from sagebidi_perf.loadtest.options import DEFAULT_AUDIO, Settings, add_arguments, expand_audio
from sagebidi_perf.loadtest.report import build_report, format_summary, write_html, write_json
from sagebidi_perf.loadtest.slo import EXIT_SLO_FAILED, evaluate
from sagebidi_perf.loadtest.sources import Clip, load_clips, load_prompts

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["METRICS", "State", "state"]

logger = logging.getLogger("sagebidi.loadtest")
#: Locust's event hooks (typed loosely: ``EventHook.add_listener`` is unannotated).
events: Any = _events

#: This process's metrics (on the master: every worker's, merged).
METRICS = Metrics()
#: Seconds the master waits for the workers' last metrics when a test stops (plus stop_timeout).
FINAL_WAIT = 10.0


@dataclass
class State:
    settings: Settings | None = None
    clips: list[Clip] | None = None
    prompts: list[str] | None = None
    #: Worker: everything shipped to the master (for the totals log line).
    shipped: Metrics = field(default_factory=Metrics)
    #: Master: per-worker totals received.
    per_worker: dict[str, Metrics] = field(default_factory=dict)
    finals: set[str] = field(default_factory=set)
    test_started_at: float = 0.0
    test_stopped_at: float = 0.0
    #: When the measurement began (test start, or the end of --warmup-seconds), wall clock,
    #: and this process's CPU time then.
    measure_from: float = 0.0
    cpu_from: float = 0.0
    user_classes: list[str] = field(default_factory=list)
    environment: Environment | None = None


state = State()


def settings(environment: Environment) -> Settings:
    """The run's settings (read once per test from the options; workers get the master's)."""
    if state.settings is None:
        state.settings = Settings.from_options(environment.parsed_options)
    return state.settings


def clips(environment: Environment) -> list[Clip]:
    if state.clips is None:
        s = settings(environment)
        paths = expand_audio(s.audio)
        if not paths and s.audio == DEFAULT_AUDIO:
            # Not run from the repository root: the fixtures of this checkout.
            paths = expand_audio(DEFAULT_AUDIO, Path(__file__).resolve().parents[3])
        state.clips = load_clips(paths, s.chunk_ms)
    return state.clips


def prompts(environment: Environment) -> list[str]:
    if state.prompts is None:
        state.prompts = load_prompts(settings(environment).prompts)
    return state.prompts


# -- options ---------------------------------------------------------------------------------


def _on_parser(parser: Any, **_kw: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Environment, runner: Any = None, **_kw: Any) -> None:
    # gevent's loop caches "now" until its next iteration, and the hub has not run since it was
    # created, before the locustfiles were imported: without this, --run-time timers start in
    # the past and a 3 s run lasts 3 s minus the start-up time.
    gevent.get_hub().loop.update_now()
    state.environment = environment
    if isinstance(runner, WorkerRunner):
        runner.register_message("sagebidi_stop", _worker_stop)
        _listen(environment.events.report_to_master, _report_to_master)
        return
    # Master or local: fail fast on bad options and unreadable inputs.
    try:
        s = settings(environment)
        names = {cls.__name__ for cls in environment.user_classes}
        state.user_classes = sorted(names)
        if any(getattr(cls, "scenario", "") == "speech" for cls in environment.user_classes):
            clips(environment)
        if any(getattr(cls, "scenario", "") == "text" for cls in environment.user_classes):
            prompts(environment)
    except (ValueError, OSError) as exc:
        logger.error("sagebidi-perf: %s", exc)
        sys.exit(2)
    del s
    if isinstance(runner, MasterRunner):
        runner.register_message("sagebidi_final", _master_final)
        _listen(environment.events.worker_report, _worker_report)


def _on_test_start(environment: Environment, **_kw: Any) -> None:
    # A new test (web UI runs several): fresh metrics and freshly read options.
    state.settings = None
    state.clips = None if isinstance(environment.runner, WorkerRunner) else state.clips
    METRICS.reset()
    state.shipped.reset()
    state.per_worker.clear()
    state.finals.clear()
    state.test_started_at = state.measure_from = time.time()
    state.test_stopped_at = 0.0
    state.cpu_from = time.process_time()
    settings(environment)


def _on_spawning_complete(**_kw: Any) -> None:
    # Everything alive now (users, sessions, Locust itself) lives to the end of the test: out
    # of the collector's way, a full collection no longer walks it (at a thousand sessions
    # that pause was ~100 ms, every late frame of it counted as send jitter).
    gc.collect()
    gc.freeze()
    environment = state.environment
    if environment is None:
        return
    warmup = settings(environment).warmup_seconds
    if warmup > 0:
        gevent.spawn_later(warmup, _end_warmup, environment)


def _end_warmup(environment: Environment) -> None:
    """Forget what was measured during the ramp-up and the warm-up (each process at its own
    time: in distributed runs the boundary is approximate by the report interval)."""
    METRICS.reset()
    state.shipped.reset()
    state.per_worker.clear()
    state.measure_from = time.time()
    state.cpu_from = time.process_time()
    logger.info("sagebidi-perf: warm-up over, measuring from now")


# -- worker → master -------------------------------------------------------------------------


def _report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    delta = METRICS.take_delta()
    state.shipped.merge(delta)
    data["sagebidi"] = delta


def _worker_stop(environment: Environment, msg: Any, **_kw: Any) -> None:
    """The master stops the test: stop the users here, then ship what is left."""
    runner = environment.runner
    if runner is not None:
        runner.stop()  # fires test_stop, which ships the final delta
    _send_final(environment)


def _on_test_stop(environment: Environment, **_kw: Any) -> None:
    if not state.test_stopped_at:
        state.test_stopped_at = time.time()
    if isinstance(environment.runner, WorkerRunner):
        _send_final(environment)


def _send_final(environment: Environment) -> None:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return
    delta = METRICS.take_delta()
    state.shipped.merge(delta)
    runner.send_message("sagebidi_final", {"sagebidi": delta})
    logger.info(
        "sagebidi-loadtest worker totals %s",
        json.dumps(
            {
                "client_id": runner.client_id,
                "counts": state.shipped.counts(),
                "counters": state.shipped.counters,
            },
            sort_keys=True,
        ),
    )


def _merge_from(client_id: str, delta: dict[str, Any]) -> None:
    METRICS.merge(delta)
    state.per_worker.setdefault(client_id, Metrics()).merge(delta)


def _worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    delta = data.get("sagebidi")
    if delta:
        _merge_from(client_id, delta)


def _master_final(environment: Environment, msg: Any, **_kw: Any) -> None:
    data = msg.data or {}
    delta = data.get("sagebidi")
    if delta:
        _merge_from(msg.node_id, delta)
    state.finals.add(msg.node_id)


def _on_test_stopping(environment: Environment, **_kw: Any) -> None:
    # The measured window ends when the stop begins (not after the users were stopped).
    state.test_stopped_at = time.time()
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    waiting = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
    state.finals.clear()
    for client_id in waiting:
        runner.send_message("sagebidi_stop", None, client_id)
    deadline = time.monotonic() + FINAL_WAIT + float(environment.stop_timeout or 0)
    while not waiting <= state.finals and time.monotonic() < deadline:
        gevent.sleep(0.02)
    missing = waiting - state.finals
    if missing:
        logger.warning(
            "sagebidi-perf: no final metrics from %d worker(s) %s; the report misses their "
            "last seconds",
            len(missing),
            sorted(missing),
        )


# -- the report --------------------------------------------------------------------------------


def _on_quitting(environment: Environment, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    s = state.settings or Settings.from_options(environment.parsed_options)
    results = evaluate(s.slos, METRICS)
    meta = {
        "host": environment.host or "",
        "user_classes": state.user_classes,
        "users": getattr(runner, "target_user_count", None) if runner is not None else None,
        "workers": len(state.per_worker) or None,
        "per_worker_counts": {cid: m.counts() for cid, m in sorted(state.per_worker.items())},
        "started_at": state.test_started_at or METRICS.started_at,
        "measured_from": state.measure_from or METRICS.started_at,
        # CPU seconds of this process (the load generator itself in a local run) while measuring.
        "process_cpu_s": round(time.process_time() - state.cpu_from, 3),
        "stopped_at": state.test_stopped_at or time.time(),
        "pace": s.speed,
        "settings": {
            "chunk_ms": s.chunk_ms,
            "frame_bytes": s.frame_bytes,
            "frame_rate": s.frame_rate,
            "model_path": s.model_path,
            "model_query": s.model_query,
            "session_seconds": s.session_seconds,
            "endpoint_name": s.endpoint_name,
        },
    }
    report = build_report(METRICS, meta, results)
    print(format_summary(report), flush=True)
    if s.report_json:
        write_json(report, Path(s.report_json))
        logger.info("sagebidi-perf: report written to %s", s.report_json)
    if s.report_html:
        write_html(report, Path(s.report_html))
        logger.info("sagebidi-perf: HTML report written to %s", s.report_html)
    if results:
        failed = [r for r in results if not r.ok]
        environment.process_exit_code = EXIT_SLO_FAILED if failed else 0
        for r in failed:
            logger.error("SLO failed: %s (actual %s)", r.check.name, r.actual)


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    hook.add_listener(listener)


# Registered once: Python imports this module once per process.
_listen(events.init_command_line_parser, _on_parser)
_listen(events.init, _on_init)
_listen(events.test_start, _on_test_start)
_listen(events.spawning_complete, _on_spawning_complete)
_listen(events.test_stop, _on_test_stop)
_listen(events.test_stopping, _on_test_stopping)
_listen(events.quitting, _on_quitting)
