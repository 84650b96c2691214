"""sagebidi-perf: build, emulate and load-test SageMaker AI bidirectional-streaming endpoints."""

from __future__ import annotations

from sagebidi_perf._native import __version__
from sagebidi_perf.errors import (
    ChecksumError,
    EventStreamError,
    InvalidArgumentError,
    MalformedMessageError,
    MessageTooLargeError,
    SageBidiError,
    SignatureMismatchError,
    TruncatedMessageError,
)

__all__ = [
    "ChecksumError",
    "EventStreamError",
    "InvalidArgumentError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "SageBidiError",
    "SignatureMismatchError",
    "TruncatedMessageError",
    "__version__",
]
