"""The exceptions sagebidi-perf raises.

Every error the native core raises is a :class:`SageBidiError`; each specific class also inherits
the built-in exception it stands for, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "EventStreamError",
    "InvalidArgumentError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "SageBidiError",
    "SignatureMismatchError",
    "TruncatedMessageError",
]


class SageBidiError(Exception):
    """Base class of every sagebidi-perf error."""


class EventStreamError(SageBidiError, ValueError):
    """An AWS event-stream message could not be decoded or encoded.

    ``offset`` is the byte offset, counted from the first byte fed to the decoder, of the message
    (or field) at fault, or ``None`` where no stream position applies (encoding).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class ChecksumError(EventStreamError):
    """The prelude CRC or the message CRC does not match the bytes received."""


class MalformedMessageError(EventStreamError):
    """A length field or the header block is malformed (bad type, bad UTF-8, duplicate, cut off)."""


class MessageTooLargeError(EventStreamError):
    """The message, its payload, its header block or one header value exceeds the limit."""


class TruncatedMessageError(EventStreamError):
    """The stream ended in the middle of a message."""


class SignatureMismatchError(SageBidiError, PermissionError):
    """A SigV4 request signature or event ``:chunk-signature`` did not verify."""


class InvalidArgumentError(SageBidiError, ValueError):
    """An argument is outside its domain (for example a zero sample rate or an unaligned buffer)."""
