"""Smoke run of the end-to-end container benchmark (benchmarks/container_bench.py), tiny sizes.

Checks that every server starts and echoes, that the report is well-formed JSON with a
methodology block, per-server results and ratios, and that the load client really checks the
echoes (a server that changes one byte fails the run). No timing assertions: numbers belong in
benchmarks/results/, not in tests.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagebidi_perf.websocket import BINARY, WebSocketConnection, accept_key

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "container_bench.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from container.client import BenchError, percentiles, run_pipelined  # noqa: E402

PEERS = {
    "trio-websocket": "trio_websocket",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    "picows": "picows",
}
INSTALLED = ["ours"] + [p for p, mod in PEERS.items() if importlib.util.find_spec(mod)]


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    out = tmp_path_factory.mktemp("container-bench") / "report.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text(), parse_constant=_not_json)


def test_quick_run_succeeds_and_prints_the_tables(quick: tuple[Any, dict[str, Any]]) -> None:
    proc, report = quick
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "error" not in report, report.get("traceback")
    assert "== throughput" in proc.stdout
    assert "== real time" in proc.stdout


def test_methodology_block(quick: tuple[Any, dict[str, Any]]) -> None:
    m = quick[1]["methodology"]
    for key in (
        "cpu",
        "usable_cores",
        "pinning",
        "python",
        "ours",
        "peer_versions",
        "settings",
        "windows",
        "method",
        "duration_s",
        "loadavg_start",
        "loadavg_end",
    ):
        assert key in m, key
    assert m["quick"] is True
    assert m["ours"]["version"]
    assert set(PEERS) <= set(m["peer_versions"])
    assert all(w >= 1 for w in m["windows"].values())


def test_every_server_has_results_and_ratios(quick: tuple[Any, dict[str, Any]]) -> None:
    cases = quick[1]["groups"]["container/throughput"]["cases"]
    settings = quick[1]["methodology"]["settings"]
    assert len(cases) == len(settings["sizes"]) * len(settings["connections"])
    for case in cases:
        assert case["check"]
        assert set(case["results"]) == set(INSTALLED), case["results"].keys()
        for name, r in case["results"].items():
            assert "error" not in r, (name, r)
            assert r["cpu_us_per_msg"] > 0
            assert r["msgs_per_s"] > 0
            samples = [x for x in r["samples"] if "error" not in x]
            assert samples
            for x in samples:
                assert x["echoes"] > 0
                assert x["bytes_echoed"] == x["echoes"] * case["size"]
                assert x["closes_answered"] == case["connections"]
                rtt = x["rtt"]
                assert 0 < rtt["p50_ms"] <= rtt["p99_ms"] <= rtt["max_ms"]
        assert set(case["ratios"]) == set(INSTALLED) - {"ours"}
        assert all(math.isfinite(v) and v > 0 for v in case["ratios"].values())
        assert set(case["ratios_msgs_per_s"]) == set(case["ratios"])


def test_realtime_steps_are_reported(quick: tuple[Any, dict[str, Any]]) -> None:
    rt = quick[1]["groups"]["container/realtime"]
    assert set(rt["servers"]) == set(INSTALLED)
    for name, r in rt["servers"].items():
        assert r["runs"], name
        assert r["capacity"] == 0 or r["capacity"] in [x["connections"] for x in r["runs"]]
        for run in r["runs"]:
            assert isinstance(run["pass"], bool)
            if "error" not in run:
                assert run["offered_msgs_per_s"] == run["connections"] / rt["period_s"]
                assert run["rtt"]["p50_ms"] <= run["rtt"]["p99_ms"]


# ----------------------------------------------------------------------------- the client


class _TamperingEcho:
    """A WebSocket echo server (on our Rust core, in a thread) that flips one byte of every
    ``nth`` message it echoes: the benchmark client must notice."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\n\r\n"
            )
            ws = WebSocketConnection(client=False)
            count = 0
            while not ws.closed:
                for kind, payload, _fin in ws.receive(rest):
                    if kind == BINARY:
                        count += 1
                        if count % self.nth == 0:
                            payload = payload[:-1] + bytes([payload[-1] ^ 1])
                        ws.send(payload)
                if out := ws.outgoing():
                    try:
                        conn.sendall(out)
                    except OSError:
                        return
                try:
                    rest = conn.recv(65536)
                except OSError:
                    return
                if not rest:
                    return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def tampering() -> Iterator[_TamperingEcho]:
    server = _TamperingEcho(nth=5)
    yield server
    server.close()


def test_client_rejects_an_echo_that_differs(tampering: _TamperingEcho) -> None:
    with pytest.raises(BenchError, match="differs"):
        run_pipelined(
            tampering.port,
            os.getpid(),
            size=640,
            connections=1,
            window=2,
            warmup=0.0,
            duration=2.0,
        )


def test_client_accepts_an_honest_echo() -> None:
    server = _TamperingEcho(nth=1 << 60)
    try:
        r = run_pipelined(
            server.port,
            os.getpid(),
            size=3200,
            connections=1,
            window=4,
            warmup=0.05,
            duration=0.2,
        )
    finally:
        server.close()
    assert r["echoes"] > 0
    assert r["bytes_echoed"] == 3200 * r["echoes"]
    assert r["closes_answered"] == 1


def test_percentiles_nearest_rank() -> None:
    import array

    xs = array.array("q", [i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    p = percentiles(xs)
    assert p["p50_ms"] == 50.0
    assert p["p99_ms"] == 99.0
    assert p["max_ms"] == 100.0
    assert percentiles(array.array("q"))["p99_ms"] is None
