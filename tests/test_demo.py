"""`sagebidi demo` (the README's first command, through `make demo`): the whole system, for real.

One short run: the transcribe container and the gateway start, Locust streams speech through the
gateway with the sagemaker transport, the reports are written, and nothing is left running.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_demo_runs_speech_through_the_gateway_and_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "sagebidi_perf.cli", "demo", "--users", "2"]
    cmd += ["--duration", "8s", "--container-workers", "1", "--out-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    container = re.search(r"container on 127\.0\.0\.1:(\d+)", done.stdout)
    gateway = re.search(r"gateway at https://[^:]+:(\d+)", done.stdout)
    assert container is not None
    assert gateway is not None
    assert _refused(int(container[1])), "the container outlived the demo"
    assert _refused(int(gateway[1])), "the gateway outlived the demo"

    assert "SLO PASS" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["sessions"]["ok"] >= 2
    assert report["sessions"]["failed"] == 0
    assert report["slo_passed"] is True
    # Real transcripts, scored against the clips' .txt files (an echo or empty reply scores 1.0;
    # each clip is a stream's first utterance, pocketsphinx's weakest: loose bound).
    assert report["speech"]["reference_words"] > 0
    assert 0 <= report["speech"]["wer"] < 0.8
    html = (out / "report.html").read_text()
    assert "<svg" in html
    assert "TTFT" in html
    assert (out / "locust_stats.csv").exists()
