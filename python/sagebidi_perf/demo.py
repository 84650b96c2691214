"""``sagebidi demo``: the whole system in one command.

Starts the speech-to-text container (``sagebidi serve --model transcribe``) and the local gateway
in front of it, runs a short headless Locust load test through the gateway with the ``sagemaker``
transport (TLS, HTTP/2, event-stream, SigV4: the official client's wire path), prints the summary
and writes the reports, then stops everything it started (SIGTERM, then SIGKILL after 35 s).

This module imports neither Trio nor Locust: it only orchestrates processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoSettings", "add_arguments", "run_demo", "run_from_args"]

# Credentials the demo's gateway accepts; the load test signs with them (SigV4, every event).
DEMO_ACCESS_KEY_ID = "AKIDSAGEBIDIDEMO"
DEMO_SECRET_ACCESS_KEY = "sagebidi-demo-secret-key"
DEMO_ENDPOINT = "transcribe-demo"
DEMO_REGION = "us-west-2"


@dataclass(frozen=True)
class DemoSettings:
    # Each real-time speech stream costs ~0.2-0.3 of a core in the engine; with the gateway and
    # Locust on the same 2 cores, 4 keep up (6 fall behind by seconds).
    users: int = 4
    spawn_rate: float = 2.0
    duration: str = "30s"
    workers: int = 1
    container_workers: int = 2
    out_dir: Path = Path("demo-report")
    audio: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _wait_for_ping(port: int, proc: subprocess.Popen[str], deadline_s: float) -> None:
    """Until the container answers ``GET /ping`` with 200 (its model is loaded)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the container exited with code {proc.returncode} while starting")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the container did not become healthy within {deadline_s:.0f} s")


def _read_gateway_banner(proc: subprocess.Popen[str], deadline_s: float) -> tuple[str, str]:
    """The two lines ``sagebidi gateway`` prints when it listens: URL and ``SSL_CERT_FILE=...``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + deadline_s
    url = ca = ""
    while time.monotonic() < deadline and not (url and ca):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the gateway exited with code {proc.wait()} while starting")
        line = line.strip()
        if line.startswith("https://"):
            url = line
        elif line.startswith("SSL_CERT_FILE="):
            ca = line.split("=", 1)[1]
    if not (url and ca):
        raise RuntimeError("the gateway did not print its endpoint in time")
    return url, ca


@contextlib.contextmanager
def _started(cmd: Sequence[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    proc: subprocess.Popen[str] = subprocess.Popen(list(cmd), text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _locust_command(settings: DemoSettings, host: str, ca_file: str) -> list[str]:
    out = settings.out_dir
    audio = settings.audio or _repo_root() / "fixtures" / "speech" / "clips"
    cmd = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(_repo_root() / "loadtest"),
        "SpeechSessions",
        "--headless",
        "--host",
        host,
        "-u",
        str(settings.users),
        "-r",
        str(settings.spawn_rate),
        "-t",
        settings.duration,
        "--stop-timeout",
        "30",
        "--only-summary",
        "--endpoint-name",
        DEMO_ENDPOINT,
        "--region",
        DEMO_REGION,
        "--ca-file",
        ca_file,
        "--audio",
        str(audio),
        "--slo-error-rate",
        "0.05",
        "--report-json",
        str(out / "report.json"),
        "--report-html",
        str(out / "report.html"),
        "--csv",
        str(out / "locust"),
    ]
    if settings.workers > 1:
        cmd += ["--processes", str(settings.workers)]
    return cmd


def run_demo(settings: DemoSettings) -> int:
    """Run the demo; the exit code is Locust's (non-zero when an SLO gate failed)."""
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    container_port, gateway_port = _free_port(), _free_port()
    env = _demo_environment(settings)
    sagebidi = [sys.executable, "-m", "sagebidi_perf.cli"]
    container_cmd = [*sagebidi, "serve", "--model", "transcribe", "--host", "127.0.0.1"]
    container_cmd += ["--port", str(container_port)]
    container_cmd += ["--workers", str(settings.container_workers)]
    gateway_cmd = [*sagebidi, "gateway", "--port", str(gateway_port)]
    gateway_cmd += ["--endpoint", f"{DEMO_ENDPOINT}=ws://127.0.0.1:{container_port}"]
    gateway_cmd += ["--cert-dir", str(out / "certs")]

    with contextlib.ExitStack() as stack:
        log = stack.enter_context((out / "servers.log").open("w"))
        say(f"starting the speech-to-text container on 127.0.0.1:{container_port}")
        container = stack.enter_context(
            _started(container_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
        _wait_for_ping(container_port, container, deadline_s=120)
        say("starting the gateway (TLS + HTTP/2 + SigV4, as the SageMaker runtime)")
        gateway = stack.enter_context(
            _started(gateway_cmd, env=env, stdout=subprocess.PIPE, stderr=log)
        )
        url, ca_file = _read_gateway_banner(gateway, deadline_s=60)
        say(f"gateway at {url}, endpoint {DEMO_ENDPOINT!r}, CA {ca_file}")
        cmd = _locust_command(settings, url, ca_file)
        say(
            f"{settings.users} concurrent speech sessions for {settings.duration} through the "
            "gateway (sagemaker transport: HTTP/2, event-stream, SigV4 on every event)"
        )
        say("$ " + " ".join(cmd))
        code = subprocess.call(cmd, env=env)
        say("stopping the gateway and the container")
    say(f"reports: {out}/report.html, {out}/report.json, {out}/locust_*.csv")
    say(f"server logs: {out}/servers.log")
    return code


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def _demo_environment(settings: DemoSettings) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    env.update(
        AWS_ACCESS_KEY_ID=DEMO_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DEMO_SECRET_ACCESS_KEY,
        AWS_REGION=DEMO_REGION,
        PYTHONUNBUFFERED="1",
        # The kernel spreads connections over the workers by hash, unevenly: give every worker a
        # decoder per user so that no session waits for one (each is ~90 MB).
        SAGEBIDI_TRANSCRIBE_DECODERS=str(settings.users),
    )
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DemoSettings()
    parser.add_argument("--users", type=int, default=d.users, help="concurrent speech sessions")
    parser.add_argument("--spawn-rate", type=float, default=d.spawn_rate, help="users started/s")
    parser.add_argument("--duration", default=d.duration, help="how long the load runs (Locust -t)")
    parser.add_argument(
        "--processes", type=int, default=d.workers, help="Locust worker processes [default: 1]"
    )
    parser.add_argument(
        "--container-workers", type=int, default=d.container_workers, help="model processes"
    )
    parser.add_argument("--audio", type=Path, help="WAV files or folder [fixtures/speech/clips]")
    parser.add_argument(
        "--out-dir", type=Path, default=d.out_dir, help="reports, certificates and server logs"
    )


def run_from_args(args: argparse.Namespace) -> int:
    if args.users < 1 or args.processes < 1 or args.container_workers < 1:
        print("sagebidi demo: --users, --processes and --container-workers must be >= 1")
        return 2
    settings = DemoSettings(
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        workers=args.processes,
        container_workers=args.container_workers,
        out_dir=args.out_dir,
        audio=args.audio,
    )
    try:
        return run_demo(settings)
    except RuntimeError as exc:
        print(f"sagebidi demo: {exc}", file=sys.stderr)
        return 1
