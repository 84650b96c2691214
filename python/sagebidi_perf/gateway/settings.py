"""Gateway settings, read once into a frozen, validated object.

Precedence: explicit arguments (the CLI) > environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``/``AWS_DEFAULT_REGION``) > defaults. Nothing else in the
gateway reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_CERT_DIR", "DEFAULT_PORT", "GatewaySettings", "Upstream", "parse_upstream"]

DEFAULT_PORT = 8443
DEFAULT_REGION = "us-west-2"
DEFAULT_CERT_DIR = Path("~/.sagebidi/gateway-certs")
#: SageMaker's default WebSocket path in the container (used when no ModelInvocationPath is given).
DEFAULT_BIDI_PATH = "/invocations-bidirectional-stream"

_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    """Where a SageMaker endpoint's container listens: ``ws://host:port[/default-path]``."""

    host: str
    port: int
    #: The WebSocket path used when the client sends no ModelInvocationPath.
    default_path: str = DEFAULT_BIDI_PATH

    @property
    def base(self) -> str:
        """``ws://host:port`` (no path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.default_path


def parse_upstream(url: str) -> Upstream:
    """``ws://127.0.0.1:8080`` -> Upstream; a path replaces the default container path."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"upstream {url!r}: only ws:// is supported (the sidecar speaks plain ws)")
    if not parts.hostname:
        raise ValueError(f"upstream {url!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"upstream {url!r}: no query or fragment allowed")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"upstream {url!r}: {exc}") from None
    path = parts.path.rstrip("/") or DEFAULT_BIDI_PATH
    return Upstream(parts.hostname, port, path)


def _positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    """Everything the gateway needs to know, validated on construction."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Endpoint name -> container. Names not listed go to ``default_upstream`` (if set).
    endpoints: Mapping[str, Upstream] = dataclasses.field(default_factory=dict)
    default_upstream: Upstream | None = None
    #: Directory of the local CA and server certificate (created or reused on start).
    cert_dir: Path = DEFAULT_CERT_DIR
    #: Extra DNS names / IP addresses for the server certificate (beside localhost, 127.0.0.1, ::1).
    cert_hosts: tuple[str, ...] = ()
    #: Access key id -> secret access key accepted for SigV4. Empty with ``no_auth``.
    credentials: Mapping[str, str] = dataclasses.field(default_factory=dict)
    no_auth: bool = False
    region: str = DEFAULT_REGION
    #: Account id in error messages and log-stream ARNs.
    account_id: str = "123456789012"
    #: Bound on ``|x-amz-date - now|`` (AWS: 5 minutes).
    max_clock_skew: float = 300.0
    #: Keepalive toward the container: ping every ``ping_interval`` s, close after ``ping_misses``.
    ping_interval: float | None = 60.0
    ping_misses: int = 5
    #: Optional hard limit on one session (the stream then ends with a ModelStreamError).
    max_session_seconds: float | None = None
    #: TCP connect + WebSocket upgrade to the container must finish within this (else 424).
    upstream_connect_timeout: float = 10.0
    #: After our Close to the container, how long to wait for its Close before dropping TCP.
    close_timeout: float = 5.0
    #: TLS handshake and HTTP/2 preface must arrive within this.
    handshake_timeout: float = 10.0
    #: A connection with no open stream is closed (GOAWAY) after this long.
    idle_timeout: float = 300.0
    #: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (Envoy's edge guidance: 100).
    max_concurrent_streams: int = 100
    #: Our receive window per stream (the client's window for request DATA).
    initial_window_size: int = 1 << 20
    #: Largest WebSocket frame accepted from the container (= largest PayloadPart, 16 MiB).
    max_frame_size: int = 16 * 2**20
    #: Bytes of container frames buffered per stream while the client's window is closed.
    response_buffer: int = 4 * 2**20
    #: A container close with code 1000 also becomes a ModelStreamError (as AWS documents);
    #: False ends the response stream without one.
    normal_close_error: bool = True
    #: Client RST_STREAMs tolerated per connection within 10 s before GOAWAY(ENHANCE_YOUR_CALM)
    #: (the rapid-reset attack, CVE-2023-44487).
    max_client_resets: int = 200
    #: After SIGTERM, sessions may run on this long before they are ended (END_STREAM, 1001).
    shutdown_grace: float = 30.0
    #: SO_REUSEPORT on the listening socket (``--workers``: several processes, one port).
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not self.endpoints and self.default_upstream is None:
            raise ValueError("no upstream: give a default upstream and/or endpoints")
        for name in self.endpoints:
            if not _ENDPOINT_NAME.match(name):
                raise ValueError(f"endpoint name {name!r} is not a valid SageMaker endpoint name")
        if not self.no_auth and not self.credentials:
            raise ValueError(
                "no credentials: pass an access key id and secret (or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or turn authentication off (--no-auth)"
            )
        if not _REGION.match(self.region):
            raise ValueError(f"region {self.region!r} is not a region name")
        if self.ping_misses < 1:
            raise ValueError("ping_misses must be >= 1")
        _positive("ping_interval", self.ping_interval, optional=True)
        _positive("max_session_seconds", self.max_session_seconds, optional=True)
        for name in (
            "max_clock_skew",
            "upstream_connect_timeout",
            "close_timeout",
            "handshake_timeout",
            "idle_timeout",
        ):
            _positive(name, getattr(self, name))
        if not 1 <= self.max_concurrent_streams <= 2**31 - 1:
            raise ValueError("max_concurrent_streams must be >= 1")
        if not 65535 <= self.initial_window_size <= 2**31 - 1:
            raise ValueError("initial_window_size must be 65535 .. 2**31-1")
        if self.max_frame_size < 1 or self.response_buffer < 1:
            raise ValueError("max_frame_size and response_buffer must be positive")
        if not (self.shutdown_grace >= 0 and math.isfinite(self.shutdown_grace)):
            raise ValueError(f"shutdown_grace must be >= 0 seconds, got {self.shutdown_grace!r}")
        if self.max_client_resets < 1:
            raise ValueError("max_client_resets must be >= 1")

    def upstream_for(self, endpoint: str) -> Upstream | None:
        """The container of ``endpoint``, or None if the gateway does not know it."""
        found = self.endpoints.get(endpoint)
        return found if found is not None else self.default_upstream

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        upstream: str | None = None,
        endpoint_specs: tuple[str, ...] | list[str] = (),
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        **overrides: Any,
    ) -> GatewaySettings:
        """Settings from the CLI's strings and the environment (``None`` = unset).

        ``endpoint_specs`` are ``NAME=ws://host:port`` strings.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if upstream is not None:
            values["default_upstream"] = parse_upstream(upstream)
        endpoints: dict[str, Upstream] = {}
        for spec in endpoint_specs:
            name, sep, url = spec.partition("=")
            if not sep or not name:
                raise ValueError(f"--endpoint {spec!r}: expected NAME=ws://host:port")
            if name in endpoints:
                raise ValueError(f"--endpoint {name!r} given twice")
            endpoints[name] = parse_upstream(url)
        values["endpoints"] = endpoints
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if region:
            values["region"] = region
        if not overrides.get("no_auth"):
            key = access_key_id or environ.get("AWS_ACCESS_KEY_ID")
            secret = secret_access_key or environ.get("AWS_SECRET_ACCESS_KEY")
            if bool(access_key_id) != bool(secret_access_key) and (
                access_key_id or secret_access_key
            ):
                raise ValueError("--access-key-id and --secret-access-key go together")
            if key and secret:
                values["credentials"] = {key: secret}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cert_dir" in values:
            values["cert_dir"] = Path(values["cert_dir"])
        return cls(**values)
