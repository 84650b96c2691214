"""Client sessions for SageMaker bidirectional streams, with two transports.

* ``ws``: straight to a model container over a WebSocket, as the SageMaker sidecar does
  (``ws://host:8080/invocations-bidirectional-stream``);
* ``sagemaker``: HTTP/2 over TLS, AWS event-stream and SigV4, as ``aws-sdk-sagemaker-runtime-http2``
  does: to the local gateway or a real endpoint.

Each transport is a sans-IO core (:class:`~sagebidi_perf.client.ws.WsCore`,
:class:`~sagebidi_perf.client.sagemaker.SageMakerCore`) with two drivers: blocking sockets
(threads, and gevent/Locust after ``gevent.monkey.patch_all()``) and Trio::

    from sagebidi_perf.client import connect_ws, connect_sagemaker

    with connect_sagemaker("https://localhost:8443", "my-endpoint", region="us-west-2",
                           ca_file="certs/ca.pem") as session:
        session.send('{"type": "hello"}')
        reply = session.receive(timeout=5)          # Message(data, text, final, received_at)
        session.end_input()
        for message in session: ...                 # until the server ends the stream

    # Trio: from sagebidi_perf.client.trio_driver import open_ws, open_sagemaker
    async with await open_ws("ws://127.0.0.1:8080") as session:
        await session.send(b"...")
        message = await session.receive()

This module does not import Trio: ``open_ws``, ``open_sagemaker`` and ``TrioSession`` load
:mod:`sagebidi_perf.client.trio_driver` on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sagebidi_perf.client._core import Message
from sagebidi_perf.client.blocking import Session, connect_sagemaker, connect_ws, make_ssl_context
from sagebidi_perf.client.credentials import Credentials, resolve_credentials, resolve_region
from sagebidi_perf.client.errors import (
    ClientError,
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    InputValidationError,
    InternalServerError,
    InternalStreamFailure,
    ModelError,
    ModelStreamError,
    NoCredentialsError,
    NoRegionError,
    ProtocolError,
    ServiceError,
    ServiceUnavailableError,
    SessionStateError,
    StreamEventError,
    StreamResetError,
    TLSError,
    UnmodeledEventError,
)
from sagebidi_perf.client.sagemaker import SageMakerCore
from sagebidi_perf.client.ws import WsCore

if TYPE_CHECKING:
    from sagebidi_perf.client.trio_driver import TrioSession, open_sagemaker, open_ws

__all__ = [
    "ClientError",
    "ClientTimeoutError",
    "ConnectError",
    "ConnectionClosedError",
    "Credentials",
    "HandshakeError",
    "InputValidationError",
    "InternalServerError",
    "InternalStreamFailure",
    "Message",
    "ModelError",
    "ModelStreamError",
    "NoCredentialsError",
    "NoRegionError",
    "ProtocolError",
    "SageMakerCore",
    "ServiceError",
    "ServiceUnavailableError",
    "Session",
    "SessionStateError",
    "StreamEventError",
    "StreamResetError",
    "TLSError",
    "TrioSession",
    "UnmodeledEventError",
    "WsCore",
    "connect_sagemaker",
    "connect_ws",
    "make_ssl_context",
    "open_sagemaker",
    "open_ws",
    "resolve_credentials",
    "resolve_region",
]

_TRIO_NAMES = frozenset({"TrioSession", "open_sagemaker", "open_ws"})


def __getattr__(name: str) -> Any:
    if name in _TRIO_NAMES:
        module = importlib.import_module("sagebidi_perf.client.trio_driver")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
