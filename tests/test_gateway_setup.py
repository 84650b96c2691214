"""The gateway's local CA and certificates, its settings, and the ``sagebidi gateway`` command."""

from __future__ import annotations

import os
import re
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from sagebidi_perf.errors import EventStreamError
from sagebidi_perf.eventstream import encode_message
from sagebidi_perf.gateway import GatewaySettings, ensure_certificates, parse_upstream
from sagebidi_perf.gateway.aws import (
    HEADER_RULES,
    ErrorResponse,
    RequestEventError,
    parse_request_event,
    validate_request_headers,
)
from sagebidi_perf.gateway.certs import server_ssl_context

ROOT = Path(__file__).resolve().parent.parent


def san(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in names}


def test_certificates_are_created_then_reused(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    first = ensure_certificates(d)
    assert first.created_ca
    assert first.created_server
    assert san(first.server) == {"localhost", "127.0.0.1", "::1"}
    for key in (first.ca_key, first.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.ca.stat().st_mode) == 0o644
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    again = ensure_certificates(d)
    assert not again.created_ca
    assert not again.created_server
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # A standard TLS stack accepts the chain for both names.
    ctx = ssl.create_default_context(cafile=str(first.ca))
    assert ctx.get_ca_certs()[0]["subject"][0][0][1] == "sagebidi-perf local CA"
    server_ssl_context(first)  # loads the key pair


def test_new_host_reissues_the_server_certificate_with_the_same_ca(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca = first.ca.read_bytes()
    second = ensure_certificates(tmp_path, ("gateway.test", "10.1.2.3"))
    assert not second.created_ca
    assert second.created_server
    assert second.ca.read_bytes() == ca
    assert {"gateway.test", "10.1.2.3", "localhost"} <= san(second.server)


@pytest.mark.parametrize("victim", ["server.pem", "server-key.pem", "ca.pem", "ca-key.pem"])
def test_damaged_files_are_replaced(tmp_path: Path, victim: str) -> None:
    first = ensure_certificates(tmp_path)
    ca = first.ca.read_bytes()
    (tmp_path / victim).write_bytes(b"-----BEGIN garbage-----\n")
    again = ensure_certificates(tmp_path)
    assert again.created_server
    assert again.created_ca == victim.startswith("ca")
    assert (again.ca.read_bytes() == ca) == (not victim.startswith("ca"))
    cert = x509.load_pem_x509_certificate(again.server.read_bytes())
    issuer = x509.load_pem_x509_certificate(again.ca.read_bytes())
    cert.verify_directly_issued_by(issuer)


def test_a_server_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    a = ensure_certificates(tmp_path / "a")
    b = ensure_certificates(tmp_path / "b")
    (tmp_path / "a" / "server.pem").write_bytes(b.server.read_bytes())
    (tmp_path / "a" / "server-key.pem").write_bytes(b.server_key.read_bytes())
    again = ensure_certificates(tmp_path / "a")
    assert again.created_server
    assert not again.created_ca
    x509.load_pem_x509_certificate(again.server.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(a.ca.read_bytes())
    )


def test_settings_from_environment_and_arguments() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "AWS_REGION": "eu-west-1",
    }
    s = GatewaySettings.from_env(env, upstream="ws://127.0.0.1:8080")
    assert s.credentials == {"AKIDENV": "s3cret"}
    assert s.region == "eu-west-1"
    assert s.port == 8443
    assert s.host == "127.0.0.1"
    assert s.upstream_for("anything") == parse_upstream("ws://127.0.0.1:8080")
    s = GatewaySettings.from_env(
        env,
        endpoint_specs=["a=ws://h:1", "b=ws://h:2/custom/"],
        access_key_id="K",
        secret_access_key="S",
        region="us-east-2",
    )
    assert s.credentials == {"K": "S"}
    assert s.region == "us-east-2"
    assert s.upstream_for("b") == parse_upstream("ws://h:2/custom")
    assert s.upstream_for("b").default_path == "/custom"  # type: ignore[union-attr]
    assert s.upstream_for("c") is None
    s = GatewaySettings.from_env({}, upstream="ws://[::1]:9000", no_auth=True)
    assert s.credentials == {}
    assert s.no_auth
    assert s.upstream_for("x").base == "ws://[::1]:9000"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upstream": "ws://h:1"}, "no credentials"),
        ({"upstream": "http://h:1", "no_auth": True}, "only ws://"),
        ({"upstream": "ws://:1", "no_auth": True}, "no host"),
        ({"upstream": "ws://h:99999", "no_auth": True}, "out of range"),
        ({"no_auth": True}, "no upstream"),
        ({"endpoint_specs": ["noequals"], "no_auth": True}, "NAME=ws://"),
        ({"endpoint_specs": ["a=ws://h:1", "a=ws://h:2"], "no_auth": True}, "twice"),
        ({"endpoint_specs": ["bad_name=ws://h:1"], "no_auth": True}, "not a valid"),
        ({"upstream": "ws://h:1", "access_key_id": "K"}, "go together"),
        ({"upstream": "ws://h:1", "no_auth": True, "ping_interval": 0.0}, "ping_interval"),
        ({"upstream": "ws://h:1", "no_auth": True, "region": "Not A Region"}, "region"),
        ({"upstream": "ws://h:1", "no_auth": True, "port": 70000}, "port"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatewaySettings.from_env({}, **kwargs)  # type: ignore[arg-type]


def test_cli_prints_the_two_lines_a_user_needs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cmd = [
        sys.executable,
        "-m",
        "sagebidi_perf.cli",
        "gateway",
        "--upstream",
        "ws://127.0.0.1:9",
        "--port",
        "0",
        "--cert-dir",
        str(tmp_path / "c"),
        "--access-key-id",
        "K",
        "--secret-access-key",
        "S",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        cert = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert url.startswith("https://localhost:"), err
    assert int(url.rsplit(":", 1)[1]) > 0
    assert cert == f"SSL_CERT_FILE={tmp_path / 'c' / 'ca.pem'}"
    assert (tmp_path / "c" / "ca.pem").exists()
    assert proc.returncode == 0, err


def test_cli_without_credentials_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sagebidi_perf.cli", "gateway", "--upstream", "ws://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--no-auth" in proc.stderr
    assert "AWS_ACCESS_KEY_ID" in proc.stderr


# -- request parsing (pure) ---------------------------------------------------------------------


@given(st.binary(max_size=512))
def test_request_event_parser_never_fails_unexpectedly(data: bytes) -> None:
    try:
        part = parse_request_event(data)
    except (RequestEventError, EventStreamError):
        return
    assert isinstance(part.payload, bytes)


@given(
    st.dictionaries(
        st.sampled_from(["DataType", "CompletionState", "P", ":event-type", ":message-type"]),
        st.one_of(
            st.sampled_from(["UTF8", "BINARY", "PARTIAL", "COMPLETE", "PayloadPart", "event"]),
            st.integers(0, 3),
            st.text(max_size=8),
        ),
    ),
    st.binary(max_size=64),
)
def test_request_event_headers(headers: dict[str, object], payload: bytes) -> None:
    inner = encode_message(headers, payload)  # type: ignore[arg-type]
    valid = (
        headers.get(":message-type") == "event"
        and headers.get(":event-type") == "PayloadPart"
        and headers.get("DataType") in (None, "UTF8", "BINARY")
        and headers.get("CompletionState") in (None, "PARTIAL", "COMPLETE")
        and (headers.get("P") is None or isinstance(headers.get("P"), str))
    )
    if not valid:
        with pytest.raises(RequestEventError):
            parse_request_event(inner)
        return
    part = parse_request_event(inner)
    assert part.payload == payload
    assert part.text == (headers.get("DataType") == "UTF8")
    assert part.final == (headers.get("CompletionState") != "PARTIAL")


@given(st.sampled_from(HEADER_RULES), st.text(max_size=120))
def test_header_validation_matches_the_model(rule: tuple[str, str, int, str], value: str) -> None:
    header, member, max_len, pattern = rule
    ok = len(value) <= max_len and re.fullmatch(pattern.strip("^$"), value) is not None
    if ok:
        validate_request_headers({header: value})
        return
    with pytest.raises(ErrorResponse) as info:
        validate_request_headers({header: value})
    assert info.value.status == 400
    assert info.value.error_type == "InputValidationError"
    assert member in info.value.message


def test_header_validation_examples() -> None:
    validate_request_headers(
        {
            "x-amzn-sagemaker-target-variant": "AllTraffic",
            "x-amzn-sagemaker-model-invocation-path": "v1/listen",
            "x-amzn-sagemaker-model-query-string": "model=nova-3&language=en",
        }
    )
    with pytest.raises(ErrorResponse, match="2 validation errors detected"):
        validate_request_headers(
            {
                "x-amzn-sagemaker-target-variant": "",
                "x-amzn-sagemaker-model-query-string": "=x",
            }
        )
