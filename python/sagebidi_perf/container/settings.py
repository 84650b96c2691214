"""Container settings, read once into a frozen, validated object.

Precedence: explicit arguments (the CLI) > ``SAGEMAKER_*`` environment variables > defaults. Nothing
else in the container reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["ServerSettings"]

DEFAULT_PORT = 8080


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything the container server needs to know, validated on construction."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    model: str = "echo"
    #: Largest WebSocket message (and POST /invocations body) accepted; larger ones close with 1009.
    max_message_size: int = 16 * 2**20
    #: Messages that may wait between the socket reader and the model (per session).
    queue_size: int = 256
    #: How long the reader may wait for room in a full queue before the session is closed (1013).
    #: SageMaker closes a session after 5 unanswered pings 60 s apart; keep this well inside that.
    queue_full_timeout: float = 30.0
    #: Time allowed for the HTTP request (or the WebSocket upgrade) to arrive (slowloris guard).
    handshake_timeout: float = 10.0
    #: Connections allowed to sit in the HTTP/upgrade phase at once.
    max_pending_handshakes: int = 1024
    #: Optional server pings (seconds); None leaves pinging to the SageMaker sidecar.
    ping_interval: float | None = None
    ping_misses: int = 5
    #: On SIGTERM: how long open sessions may go on before they are closed with 1001.
    shutdown_grace: float = 20.0
    #: How long a session's model task may run on after the peer's Close before it is cancelled.
    close_grace: float = 5.0
    #: Bind with SO_REUSEPORT (set for worker processes sharing one port).
    reuse_port: bool = False
    #: A listening socket inherited from the ``--workers`` parent: the workers share one accept
    #: queue, and the less busy one takes the next connection (see ``ContainerServer``).
    listen_fd: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not self.model:
            raise ValueError("model must name a built-in model or module:attribute")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if self.max_pending_handshakes < 1:
            raise ValueError("max_pending_handshakes must be >= 1")
        if self.ping_misses < 1:
            raise ValueError("ping_misses must be >= 1")
        for name in ("queue_full_timeout", "handshake_timeout", "shutdown_grace", "close_grace"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.ping_interval is not None and not (
            self.ping_interval > 0 and math.isfinite(self.ping_interval)
        ):
            raise ValueError(f"ping_interval must be positive, got {self.ping_interval!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Settings from SageMaker's environment variables, then ``overrides`` (None = unset)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        port = _env_int(environ, "SAGEMAKER_BIND_TO_PORT")
        if port is not None:
            values["port"] = port
        workers = _env_int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS")
        if workers is not None:
            values["workers"] = workers
        model = environ.get("SAGEBIDI_MODEL", "").strip()
        if model:
            values["model"] = model
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
