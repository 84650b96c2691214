"""Real processes for end-to-end tests: ``sagebidi serve`` and ``sagebidi gateway`` on
127.0.0.1, started as subprocesses and stopped with SIGTERM (each wait bounded)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-west-2"
CLI = [sys.executable, "-m", "sagebidi_perf.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def wait_ping(port: int, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the container exited with {proc.returncode}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise AssertionError(f"the container on {port} did not become ready")


@dataclass
class Container:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_container(model: str, *args: str) -> Container:
    port = free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            *args,
        ]
    )
    try:
        wait_ping(port, proc)
    except BaseException:
        stop(proc)
        raise
    return Container(port, proc)


@dataclass
class Gateway:
    url: str
    ca_file: str
    proc: subprocess.Popen[str]


def start_gateway(upstream: Container, cert_dir: Path) -> Gateway:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [
            *CLI,
            "gateway",
            "--upstream",
            upstream.url,
            "--port",
            "0",
            "--cert-dir",
            str(cert_dir),
            "--access-key-id",
            KEY,
            "--secret-access-key",
            SECRET,
            "--region",
            REGION,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    ca = proc.stdout.readline().strip()
    assert url.startswith("https://"), url
    return Gateway(url, ca.removeprefix("SSL_CERT_FILE="), proc)
