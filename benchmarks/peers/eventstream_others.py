"""Adapters for the event-stream codecs of the AWS SDKs for Python, as used by their clients.

* botocore (``EventStreamBuffer``): decode only, the way botocore's ``EventStream`` reads a
  response body (a fresh buffer, ``add_data``, ``next``). It has no encoder.
* smithy-aws-event-stream (the SDK the SageMaker bidi client runs on): ``EventMessage.encode`` and
  ``Event.decode(BytesIO)``. Needs Python >= 3.12, so it only imports in the side venv.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

Decode = Callable[[bytes], tuple[dict[str, Any], Any]]
Encode = Callable[[dict[str, Any], bytes], bytes]


def botocore_codec() -> tuple[None, Decode]:
    from botocore.eventstream import EventStreamBuffer

    def decode(data: bytes) -> tuple[dict[str, Any], Any]:
        buf = EventStreamBuffer()
        buf.add_data(data)
        msg = buf.next()
        return msg.headers, msg.payload

    return None, decode


def smithy_codec() -> tuple[Encode, Decode]:
    from smithy_aws_event_stream.events import Event, EventMessage

    def encode(headers: dict[str, Any], payload: bytes) -> bytes:
        wire: bytes = EventMessage(headers=headers, payload=payload).encode()
        return wire

    def decode(data: bytes) -> tuple[dict[str, Any], Any]:
        event = Event.decode(BytesIO(data))
        if event is None:
            raise ValueError("no event")
        return dict(event.message.headers), event.message.payload

    return encode, decode


def versions() -> dict[str, str]:
    import contextlib
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("botocore", "smithy-aws-event-stream", "smithy-core"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out
