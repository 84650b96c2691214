"""Interop with the official client: aws-sdk-sagemaker-runtime-http2 0.12.0 (+ awscrt), unmodified,
in its own Python 3.12 venv (.venv-sdk312, made by tests/interop/setup_sdk_venv.sh), runs
tests/interop/sdk_client.py against an in-process gateway and container.

Without the venv the tests skip locally (``make interop`` sets it up); under CI (``CI`` set) the
setup runs here and a failure FAILS the tests with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from container_helpers import start_server
from gateway_helpers import KEY, SECRET, ScriptedModel, start_gateway
from sagebidi_perf.gateway import GatewayServer

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
SDK_PYTHON = ROOT / ".venv-sdk312" / "bin" / "python"
SETUP = ROOT / "tests" / "interop" / "setup_sdk_venv.sh"
SCRIPT = ROOT / "tests" / "interop" / "sdk_client.py"
CASE_TIMEOUT = 90  # the script bounds each await at 15 s; this bounds the whole process


def _sdk_ready() -> bool:
    if not SDK_PYTHON.exists():
        return False
    probe = "import aws_sdk_sagemaker_runtime_http2.client, smithy_http.aio.crt, awscrt"
    return (
        subprocess.run([SDK_PYTHON, "-c", probe], capture_output=True, timeout=60).returncode == 0
    )


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    if _sdk_ready():
        return SDK_PYTHON
    if not os.environ.get("CI"):
        pytest.skip(f"official client venv missing: run `make interop` ({SETUP.relative_to(ROOT)})")
    proc = subprocess.run(["bash", SETUP], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not _sdk_ready():
        pytest.fail(
            "could not set up the official SageMaker client venv for the interop tests "
            f"({SETUP.relative_to(ROOT)} exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return SDK_PYTHON


class Stack:
    def __init__(self, gateway: GatewayServer, model: ScriptedModel, sdk_python: Path) -> None:
        self.gateway = gateway
        self.model = model
        self.sdk_python = sdk_python

    async def run(self, case: str, *extra: str) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["SSL_CERT_FILE"] = self.gateway.ca_file
        cmd = [
            str(self.sdk_python),
            str(SCRIPT),
            case,
            "--endpoint-url",
            f"https://localhost:{self.gateway.port}",
            "--access-key-id",
            KEY,
            "--secret-access-key",
            SECRET,
            *extra,
        ]
        with trio.fail_after(CASE_TIMEOUT):
            proc = await trio.run_process(
                cmd, capture_stdout=True, capture_stderr=True, check=False, env=env
            )
        out = proc.stdout.decode()
        err = proc.stderr.decode()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        assert lines, f"no result printed\n{out}\n{err}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert result.get("completed"), f"{result}\n--- stderr ---\n{err}"
        return result


@pytest.fixture
async def stack(nursery: trio.Nursery, sdk_python: Path, tmp_path: Path) -> Stack:
    model = ScriptedModel()
    container = await start_server(nursery, model)
    assert container.port is not None
    gateway = await start_gateway(nursery, tmp_path / "certs", container.port)
    return Stack(gateway, model, sdk_python)


def parts(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["bytes_hex"], e["data_type"], e["completion_state"]) for e in events]


async def test_text(stack: Stack) -> None:
    result = await stack.run("text")
    assert parts(result["received"]) == [(h, "UTF8", "COMPLETE") for h in result["sent"]]
    assert result["invoked_production_variant"] == "AllTraffic"
    assert result["after_close"] is None
    assert stack.model.received == [bytes.fromhex(h).decode() for h in result["sent"]]
    [record] = stack.gateway.gateway.sessions
    assert record.final_frame is True  # 0.12.0 ends with the signed empty frame
    assert record.outcome == "input-ended"
    assert stack.model.close_codes == [1000]


async def test_binary(stack: Stack) -> None:
    result = await stack.run("binary")
    assert parts(result["received"]) == [(h, "BINARY", "COMPLETE") for h in result["sent"]]
    assert stack.model.received == [bytes.fromhex(h) for h in result["sent"]]


async def test_partial_and_complete(stack: Stack) -> None:
    result = await stack.run("partial")
    # PARTIAL, PARTIAL, COMPLETE went out as one fragmented text message...
    assert stack.model.received[0] == "frag-a|frag-b|frag-c"
    assert parts(result["echo"]) == [(b"frag-a|frag-b|frag-c".hex(), "UTF8", "COMPLETE")]
    # ...and a fragmented reply came back as PARTIAL, PARTIAL, COMPLETE.
    assert parts(result["fragments"]) == [
        (b"one".hex(), "UTF8", "PARTIAL"),
        (b"two".hex(), "UTF8", "PARTIAL"),
        (b"three".hex(), "UTF8", "COMPLETE"),
    ]


async def test_path_and_query_override(stack: Stack) -> None:
    result = await stack.run("path_query")
    [reply] = result["received"]
    assert json.loads(bytes.fromhex(reply["bytes_hex"])) == {
        "path": "/v1/listen",
        "query": "model=nova-3&language=en",
    }
    assert stack.model.requests[0].query_dict() == {"model": "nova-3", "language": "en"}


async def test_server_speaks_first(stack: Stack) -> None:
    result = await stack.run("greeting")
    assert parts(result["received"]) == [(b'{"type":"session.created"}'.hex(), "UTF8", "COMPLETE")]


async def test_one_megabyte_event(stack: Stack) -> None:
    result = await stack.run("big")
    [echo] = result["received"]
    assert echo["len"] == 1_000_000
    assert echo["sha"] == result["sent_sha"]
    assert (echo["data_type"], echo["completion_state"]) == ("BINARY", "COMPLETE")


async def test_upgrade_refused_is_model_error_424(stack: Stack) -> None:
    result = await stack.run("refused")
    assert result["error"]["type"] == "ModelError"
    assert result["error"]["message"] == "Failed to establish WebSocket connection"
    assert result["error"]["original_status_code"] == 400
    assert stack.model.upgrade_attempts == 1
    assert stack.model.requests == []  # no session was opened
    assert list(stack.gateway.gateway.sessions) == []


async def test_container_close_raises_model_stream_error(stack: Stack) -> None:
    result = await stack.run("container_close")
    assert parts(result["received"]) == [(b"before".hex(), "UTF8", "COMPLETE")]
    assert result["error"] == {
        "type": "ModelStreamError",
        "message": "WebSocket closed by model: 1011 model crashed",
        "error_code": "1011",
        "original_status_code": None,
    }
    assert result["after_error"] == "none"  # receive() then returns None


async def test_bad_secret_is_rejected(stack: Stack) -> None:
    result = await stack.run("bad_secret")
    error = result["error"]
    assert "unexpected" not in result
    assert "403" in error["message"]
    assert "InvalidSignatureException" in error["message"]
    assert stack.model.upgrade_attempts == 0  # nothing reached the container
    assert stack.gateway.gateway.requests == 1


async def test_clean_close(stack: Stack) -> None:
    result = await stack.run("clean_close")
    assert parts(result["received"]) == [(b"only one".hex(), "UTF8", "COMPLETE")]
    assert result["after_close"] is None
    [record] = stack.gateway.gateway.sessions
    assert (record.outcome, record.final_frame) == ("input-ended", True)
    assert stack.model.close_codes == [1000]
