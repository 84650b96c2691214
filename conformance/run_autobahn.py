"""Autobahn|Testsuite fuzzingclient against our echo container, beside trio-websocket.

Gate: no case FAILED (behavior or behaviorClose) and no NON-STRICT case outside the allow-list in
``autobahn_expected.json``. Prints both servers' counts side by side.

    python conformance/run_autobahn.py [--no-baseline] [--cases 1.*,2.*]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WSTEST = ROOT / ".venv-autobahn" / "bin" / "wstest"
EXPECTED = Path(__file__).with_name("autobahn_expected.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if path:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                    if r.status == 200:
                        return
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not become ready")


def run_suite(agent: str, port: int, outdir: Path, cases: list[str]) -> dict[str, dict[str, str]]:
    config = {
        "outdir": str(outdir),
        "servers": [
            {"agent": agent, "url": f"ws://127.0.0.1:{port}/invocations-bidirectional-stream"}
        ],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    cfg = outdir.parent / f"{agent}.json"
    cfg.write_text(json.dumps(config))
    subprocess.run(
        [str(WSTEST), "-m", "fuzzingclient", "-s", str(cfg)],
        check=True,
        timeout=1500,
        cwd=outdir.parent,
        stdout=subprocess.DEVNULL,
    )
    index = json.loads((outdir / "index.json").read_text())
    return index[agent]


def summarize(results: dict[str, dict[str, str]]) -> tuple[Counter[str], list[str], list[str]]:
    counts = Counter(v["behavior"] for v in results.values())
    failed = sorted(
        k for k, v in results.items() if v["behavior"] == "FAILED" or v["behaviorClose"] == "FAILED"
    )
    nonstrict = sorted(k for k, v in results.items() if v["behavior"] == "NON-STRICT")
    return counts, failed, nonstrict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-baseline", action="store_true", help="skip trio-websocket")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns")
    args = parser.parse_args()
    if not WSTEST.exists():
        print("Autobahn is not installed: run conformance/setup_autobahn.sh", file=sys.stderr)
        return 2
    cases = args.cases.split(",")
    python = sys.executable
    servers = {
        "sagebidi-perf": [
            python,
            "-m",
            "sagebidi_perf.container",
            "serve",
            "--host",
            "127.0.0.1",
            "--max-message-size",
            str(2**24 + 1024),
            "--log-level",
            "WARNING",
        ],
    }
    if not args.no_baseline:
        baseline = Path(__file__).with_name("trio_websocket_echo.py")
        servers["trio-websocket"] = [python, str(baseline)]
    summary: dict[str, tuple[Counter[str], list[str], list[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for agent, cmd in servers.items():
            port = free_port()
            full = [*cmd, "--port", str(port)] if agent == "sagebidi-perf" else [*cmd, str(port)]
            proc = subprocess.Popen(full)
            try:
                wait_ready(port, "/ping" if agent == "sagebidi-perf" else "")
                started = time.monotonic()
                results = run_suite(agent, port, Path(tmp) / agent, cases)
                print(f"{agent}: {len(results)} cases in {time.monotonic() - started:.0f}s")
                summary[agent] = summarize(results)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"\n{'server':<16}{'OK':>6}{'NON-STRICT':>12}{'INFORMATIONAL':>15}{'UNIMPLEMENTED':>15}{'FAILED':>8}"
    )
    for agent, (counts, failed, _) in summary.items():
        print(
            f"{agent:<16}{counts['OK']:>6}{counts['NON-STRICT']:>12}{counts['INFORMATIONAL']:>15}"
            f"{counts['UNIMPLEMENTED']:>15}{len(failed):>8}"
        )
    counts, failed, nonstrict = summary["sagebidi-perf"]
    allowed = set(json.loads(EXPECTED.read_text())["non_strict_allowed"])
    unexpected = [case for case in nonstrict if case not in allowed]
    print(f"\nsagebidi-perf NON-STRICT: {nonstrict or 'none'}")
    if failed:
        print(f"FAILED cases: {failed}")
    if unexpected:
        print(f"NON-STRICT cases outside the allow-list: {unexpected}")
    return 1 if failed or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
