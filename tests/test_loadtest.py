"""The Locust load tester end to end: every Locust run is a subprocess
(``locust -f loadtest/ --headless ...``) against containers and a gateway served here, in-process,
under Trio on 127.0.0.1 port 0. Runs last a few seconds; they check what the report says
(counts, errors by kind, the exit code), never how fast anything was."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from loadtest_models import ANSWER, CorruptingEcho, FakeListen, WordStreamer

from container_helpers import start_server
from gateway_helpers import KEY, REGION, SECRET, start_gateway
from sagebidi_perf.gateway.certs import ensure_certificates
from sagebidi_perf.models.echo import EchoModel

ROOT = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILES = str(ROOT / "loadtest")
RUN_TIMEOUT = 60


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    html: str | None

    def explain(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-5000:]}"
        )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "AWS_"))}
    env.update(extra or {})
    return env


def locust_cmd(*args: str) -> list[str]:
    return [LOCUST, "-f", LOCUSTFILES, "--stop-timeout", "0", *args]


async def run_locust(
    tmp: Path,
    host: str,
    *args: str,
    users: int = 2,
    seconds: int = 3,
    env: dict[str, str] | None = None,
    name: str = "run",
) -> Run:
    """A headless run; the report goes to ``tmp/<name>.json`` and ``.html``."""
    json_path, html_path = tmp / f"{name}.json", tmp / f"{name}.html"
    cmd = locust_cmd(
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--report-json",
        str(json_path),
        "--report-html",
        str(html_path),
        *args,
    )
    with trio.fail_after(RUN_TIMEOUT):
        result = await trio.run_process(
            cmd, capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT, env=_env(env)
        )
    report = json.loads(json_path.read_text()) if json_path.exists() else None
    page = html_path.read_text() if html_path.exists() else None
    return Run(result.returncode, result.stdout.decode(), result.stderr.decode(), report, page)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway-certs")
    ensure_certificates(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


GATEWAY_ENV = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}


# -- echo --------------------------------------------------------------------------------------


async def test_echo_byte_exact_report_and_html(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, EchoModel())
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--session-seconds",
        "1",
        "--frame-rate",
        "20",
        "--frame-bytes",
        "1000",
        "EchoSessions",
        users=3,
    )
    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None, run.explain()
    assert report["errors"] == {}
    sessions = report["sessions"]
    assert sessions["ok"] >= 3
    assert sessions["failed"] == 0
    counts = report["histogram_counts"]
    t = report["throughput"]
    # Every echo was checked and timed; each session: 20 frames of 1000 B.
    assert counts["round_trip"] == t["frames_received"]
    assert t["bytes_received"] == 1000 * t["frames_received"]
    assert t["frames_received"] >= 20 * sessions["ok"]
    assert counts["jitter"] == t["frames_sent"]
    assert counts["ttft"] == counts["connect"] >= sessions["ok"]
    assert counts["session"] == sessions["ok"]
    assert counts["transcript_lag"] == 0
    assert report["slo_passed"] is None
    # The summary table is printed, and the HTML page is self-contained with its charts.
    assert "round trip" in run.stdout
    assert "send jitter" in run.stdout
    assert run.html is not None
    assert run.html.count("<svg") >= 4
    assert "<script" not in run.html
    assert "http://" not in run.html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert sum(row.get("frames_sent", 0) for row in report["timeline"]) == t["frames_sent"]


async def test_echo_mismatch_is_counted(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, CorruptingEcho(every=4))
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--session-seconds",
        "0.8",
        "--frame-rate",
        "20",
        "EchoSessions",
    )
    report = run.report
    assert report is not None, run.explain()
    # Locust's own failure exit code: sessions failed.
    assert run.returncode == 1, run.explain()
    received = report["throughput"]["frames_received"]
    mismatches = report["errors"]["mismatch"]
    # Every 4th frame is corrupted; each is counted, the others are timed.
    assert mismatches >= 4
    assert report["histogram_counts"]["round_trip"] + mismatches == received
    assert report["sessions"]["failed"] >= 1
    assert "payload bytes differ" in report["error_examples"]["mismatch"]
    assert "mismatch" in run.stdout


# -- text --------------------------------------------------------------------------------------


async def test_text_reply_streams(nursery: trio.Nursery, tmp_path: Path) -> None:
    model = WordStreamer()
    server = await start_server(nursery, model)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '"hello there"\n# a comment\n\n{"prompt": "why is the sky blue", "max": 5}\n'
    )
    run = await run_locust(
        tmp_path,
        f"ws://127.0.0.1:{server.port}",
        "--prompts",
        str(prompts),
        "--prompts-per-session",
        "2",
        "TextSessions",
    )
    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None
    replies = report["throughput"]["replies"]
    assert replies >= 2
    counts = report["histogram_counts"]
    # One TTFT per reply; an ITL between each of the len(ANSWER) + 1 messages of a reply.
    assert counts["ttft"] >= replies
    assert counts["itl"] >= replies * len(ANSWER)
    assert report["throughput"]["frames_received"] >= replies * (len(ANSWER) + 1)
    assert model.prompts >= replies
    assert report["errors"] == {}


async def test_text_bad_prompts_file_exits_2(tmp_path: Path) -> None:
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text("[1, 2]\n")
    run = await run_locust(tmp_path, "ws://127.0.0.1:9", "--prompts", str(prompts), "TextSessions")
    assert run.returncode == 2, run.explain()
    assert "a prompt is a JSON string or object" in run.stderr


# -- through the gateway (the sagemaker transport) -----------------------------------------------


async def test_gateway_echo_text_and_errors(
    nursery: trio.Nursery, tmp_path: Path, cert_dir: Path
) -> None:
    model = WordStreamer()
    container = await start_server(nursery, model)
    assert container.port is not None
    gateway = await start_gateway(nursery, cert_dir, container.port)
    url = f"https://localhost:{gateway.port}"
    sm = ["--endpoint-name", "my-endpoint", "--region", REGION, "--ca-file", gateway.ca_file]
    crash = tmp_path / "crash.jsonl"
    crash.write_text('"crash"\n')
    dead_port = free_port()
    results: dict[str, Run] = {}

    async def one(
        name: str, host: str, *args: str, env: dict[str, str] | None = None, seconds: int = 2
    ) -> None:
        results[name] = await run_locust(
            tmp_path,
            host,
            *args,
            env=GATEWAY_ENV if env is None else env,
            name=name,
            seconds=seconds,
        )

    # Runs side by side, a few at a time (the machine has two cores).
    async with trio.open_nursery() as runs:
        runs.start_soon(
            partial(
                one,
                "echo",
                url,
                *sm,
                "--session-seconds",
                "0.5",
                "--frame-rate",
                "20",
                "EchoSessions",
                seconds=4,
            )
        )
        runs.start_soon(
            partial(one, "text", url, *sm, "--prompts-per-session", "2", "TextSessions", seconds=4)
        )
    async with trio.open_nursery() as runs:
        runs.start_soon(one, "refused", url, *sm, "--model-query", "reject=1", "EchoSessions")
        bad_secret = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": "wrong"}
        runs.start_soon(partial(one, "bad_secret", url, *sm, "EchoSessions", env=bad_secret))
        runs.start_soon(one, "crash", url, *sm, "--prompts", str(crash), "TextSessions")
        runs.start_soon(one, "unreachable", f"ws://127.0.0.1:{dead_port}", "EchoSessions")

    echo = results["echo"]
    assert echo.returncode == 0, echo.explain()
    assert echo.report is not None
    assert echo.report["errors"] == {}
    assert echo.report["histogram_counts"]["round_trip"] >= 10, json.dumps(echo.report)[:3000]
    assert echo.report["meta"]["host"] == url

    text = results["text"]
    assert text.returncode == 0, text.explain()
    assert text.report is not None
    assert text.report["throughput"]["replies"] >= 2

    expected = {
        "refused": "http_424",
        "bad_secret": "http_403",
        "crash": "ModelStreamError",
        "unreachable": "connect",
    }
    for name, kind in expected.items():
        run = results[name]
        assert run.returncode == 1, run.explain()
        assert run.report is not None, run.explain()
        errors = run.report["errors"]
        assert errors, run.explain()
        # Only that kind of error, and every session failed with it.
        assert all(k.startswith(kind) for k in errors), (name, errors)
        assert run.report["sessions"]["ok"] == 0
        assert sum(errors.values()) == run.report["sessions"]["failed"] >= 1
        assert kind in run.stdout
    # In-stream: the container's close code travels in the ModelStreamError.
    crash_kinds = list(results["crash"].report["errors"])  # type: ignore[index]
    assert crash_kinds
    assert all(re.fullmatch(r"ModelStreamError(:\w+)?", k) for k in crash_kinds)


async def test_config_errors_exit_2(tmp_path: Path) -> None:
    run = await run_locust(tmp_path, "ws://127.0.0.1:9", "--pace", "fast-ish", "EchoSessions")
    assert run.returncode == 2, run.explain()
    assert "--pace" in run.stderr


# -- SLO gates ---------------------------------------------------------------------------------


async def test_slo_gate_sets_exit_code(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, EchoModel())
    host = f"ws://127.0.0.1:{server.port}"
    common = ("--session-seconds", "0.5", "--frame-rate", "20", "EchoSessions")
    results: dict[str, Run] = {}

    async def one(name: str, *args: str) -> None:
        results[name] = await run_locust(tmp_path, host, *args, *common, name=name)

    async with trio.open_nursery() as runs:
        # Unmeetable: a round trip p99 under a nanosecond.
        runs.start_soon(one, "fail", "--slo-round-trip-p99-ms", "0.000001", "--slo-error-rate", "0")
        # Generous: an hour.
        runs.start_soon(
            one, "pass", "--slo-ttft-p99-ms", "3600000", "--slo", "round_trip.p99.9<=3600000"
        )
        # A metric this scenario never measures is not a pass.
        runs.start_soon(one, "unmeasured", "--slo-first-final-p99-ms", "3600000")

    fail, ok, unmeasured = results["fail"], results["pass"], results["unmeasured"]
    assert fail.returncode == 3, fail.explain()
    assert fail.report is not None
    assert fail.report["slo_passed"] is False
    by_metric = {s["metric"]: s for s in fail.report["slos"]}
    assert by_metric["round_trip"]["ok"] is False
    assert by_metric["error_rate"]["ok"] is True
    assert "SLO FAIL: round_trip p99" in fail.stdout
    assert ok.returncode == 0, ok.explain()
    assert ok.report is not None
    assert ok.report["slo_passed"] is True
    assert len(ok.report["slos"]) == 2
    assert unmeasured.returncode == 3, unmeasured.explain()
    assert unmeasured.report is not None
    assert unmeasured.report["slos"][0]["actual"] is None


# -- distributed ---------------------------------------------------------------------------------


async def test_master_and_two_workers_merge_exactly(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, EchoModel())
    port = free_port()
    json_path = tmp_path / "merged.json"
    master_cmd = locust_cmd(
        "--master",
        "--headless",
        "--expect-workers",
        "2",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--host",
        f"ws://127.0.0.1:{server.port}",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "3s",
        "--session-seconds",
        "1",
        "--frame-rate",
        "20",
        "--report-json",
        str(json_path),
        "--report-html",
        "",
        "EchoSessions",
    )
    worker_cmd = locust_cmd("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    outputs: dict[str, Any] = {}

    async def proc(name: str, cmd: Sequence[str]) -> None:
        with trio.fail_after(RUN_TIMEOUT):
            outputs[name] = await trio.run_process(
                list(cmd),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=ROOT,
                env=_env(),
            )

    async with trio.open_nursery() as procs:
        procs.start_soon(proc, "master", master_cmd)
        procs.start_soon(proc, "w1", worker_cmd)
        procs.start_soon(proc, "w2", worker_cmd)

    master = outputs["master"]
    assert master.returncode == 0, master.stderr.decode()[-4000:]
    report = json.loads(json_path.read_text())
    # Each worker logs what it shipped; the last line per worker is its total.
    totals: dict[str, dict[str, int]] = {}
    for name in ("w1", "w2"):
        lines = re.findall(
            r"sagebidi-loadtest worker totals (\{.*\})", outputs[name].stderr.decode()
        )
        assert lines, outputs[name].stderr.decode()[-3000:]
        doc = json.loads(lines[-1])
        totals[doc["client_id"]] = doc["counts"]
    assert len(totals) == 2
    merged = report["histogram_counts"]
    for metric in ("connect", "ttft", "itl", "round_trip", "jitter", "session"):
        assert merged[metric] == sum(t[metric] for t in totals.values()), metric
    assert merged["round_trip"] > 0
    assert report["meta"]["workers"] == 2
    assert report["meta"]["per_worker_counts"] == totals
    # Both workers ran sessions.
    assert all(t["round_trip"] > 0 for t in totals.values())


# -- speech against the real transcribe model ------------------------------------------------------


async def wait_ping(port: int, proc: trio.Process) -> None:
    with trio.fail_after(60):
        while True:
            assert proc.returncode is None, "the transcribe container exited"
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.1)
                continue
            async with stream:
                await stream.send_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                head = await stream.receive_some(4096)
            if head.startswith(b"HTTP/1.1 200"):
                return
            await trio.sleep(0.1)


async def test_speech_against_transcribe_model(nursery: trio.Nursery, tmp_path: Path) -> None:
    port = free_port()
    proc = await nursery.start(
        partial(
            trio.run_process,
            [
                str(Path(sys.executable).with_name("sagebidi")),
                "serve",
                "--model",
                "transcribe",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        await wait_ping(port, proc)
        clip = ROOT / "fixtures/speech/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
        run = await run_locust(
            tmp_path,
            f"ws://127.0.0.1:{port}",
            "--audio",
            str(clip),
            "--pace",
            "2x",
            "--chunk-ms",
            "50",
            "SpeechSessions",
            users=1,
            seconds=6,
        )
    finally:
        proc.terminate()
    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None
    assert report["errors"] == {}
    ok = report["sessions"]["ok"]
    assert ok >= 1
    counts = report["histogram_counts"]
    # Each finished session: a TTFT, a first final, finals with their latency, and lags.
    assert counts["first_final"] >= ok
    assert counts["ttft"] >= ok
    assert counts["final_latency"] >= ok
    assert counts["transcript_lag"] >= counts["final_latency"]
    # 3 s of 16 kHz audio in 50 ms frames of 1600 bytes, each paced (a jitter sample) and sent.
    t = report["throughput"]
    assert t["frames_sent"] <= counts["jitter"] <= t["frames_sent"] + report["sessions"]["started"]
    assert t["bytes_sent"] >= ok * 95_000
    # The transcript was read: the model recognises most of the reference's 8 words.
    speech = report["speech"]
    assert speech["reference_words"] == 8 * ok
    assert speech["wer"] is not None
    assert speech["wer"] < 0.9


def _silence_wav(path: Path, seconds: float, rate: int, reference: str | None = None) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    if reference is not None:
        path.with_suffix(".txt").write_text(reference + "\n")
    return path


async def test_speech_deepgram_messages(
    nursery: trio.Nursery, tmp_path: Path, cert_dir: Path
) -> None:
    model = FakeListen()
    server = await start_server(nursery, model)
    assert server.port is not None
    host = f"ws://127.0.0.1:{server.port}"
    gateway = await start_gateway(nursery, cert_dir, server.port)
    clip = _silence_wav(tmp_path / "one.wav", 1.0, 8000, reference="Hello, world!")
    common = ("--audio", str(clip), "--pace", "max", "SpeechSessions")
    results: dict[str, Run] = {}

    async def one(name: str, *args: str, url: str = host) -> None:
        results[name] = await run_locust(tmp_path, url, *args, *common, name=name, env=GATEWAY_ENV)

    async with trio.open_nursery() as runs:
        runs.start_soon(one, "ok")
        # Through the gateway the model's close 1000 after Metadata arrives as a
        # ModelStreamError with ErrorCode 1000: a normal end for the speech user.
        sm = ["--endpoint-name", "e", "--region", REGION, "--ca-file", gateway.ca_file]
        runs.start_soon(partial(one, "gateway", *sm, url=f"https://localhost:{gateway.port}"))
        runs.start_soon(
            one, "nometa", "--model-query", "model=nova-3&sample_rate={sample_rate}&nometa=1"
        )

    run = results["ok"]
    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None
    assert report["errors"] == {}
    ok, started = report["sessions"]["ok"], report["sessions"]["started"]
    assert ok >= 1
    counts = report["histogram_counts"]
    # 10 frames of 100 ms: interims after frames 5 and 10 (the empty ones never count), one final.
    assert ok <= counts["ttft"] <= started
    assert ok <= counts["first_final"] <= started
    assert ok <= counts["final_latency"] <= started
    assert counts["transcript_lag"] >= 3 * ok
    assert counts["itl"] >= 2 * ok
    # As fast as possible: no schedule, no jitter samples.
    assert counts["jitter"] == 0
    assert report["throughput"]["bytes_sent"] >= ok * 16_000
    # The final transcript matches the reference word for word (case and punctuation aside).
    assert report["speech"]["reference_words"] == 2 * ok
    assert report["speech"]["wer"] == 0.0
    # The default Deepgram query, with the clip's sample rate.
    default = next(q for q in model.queries if "nometa" not in q)
    assert default["sample_rate"] == "8000"
    assert default["encoding"] == "linear16"
    assert default["model"] == "nova-3"

    nometa = results["nometa"]
    assert nometa.returncode == 1, nometa.explain()
    assert nometa.report is not None
    assert list(nometa.report["errors"]) == ["no_metadata"]
    assert nometa.report["sessions"]["ok"] == 0

    through = results["gateway"]
    assert through.returncode == 0, through.explain()
    assert through.report is not None
    assert through.report["errors"] == {}
    assert through.report["sessions"]["ok"] >= 1
    assert through.report["speech"]["wer"] == 0.0
