"""AWS event-stream (``application/vnd.amazon.eventstream``) encoding and decoding.

The codec is native (Rust); this module re-exports it and adds :class:`HeaderType`, the wire
type codes, for forcing a header's type::

    from sagebidi_perf.eventstream import HeaderType, encode_message, EventStreamDecoder

    wire = encode_message(
        {":event-type": "PayloadPart", "n": (HeaderType.SHORT, 7)}, b"payload"
    )
    decoder = EventStreamDecoder()
    for message in decoder.feed(wire):
        message.headers  # {':event-type': 'PayloadPart', 'n': 7}
    decoder.close()  # TruncatedMessageError if the stream ended inside a message

Header values map as: ``bool`` ↔ bool_true/bool_false, ``int`` → integer (int32) if it fits,
else long (int64); ``str`` ↔ string; ``bytes``-like ↔ byte_array; an aware ``datetime`` ↔
timestamp (milliseconds, decoded as UTC); ``uuid.UUID`` ↔ uuid; ``(HeaderType, value)`` forces
a type (timestamps then also take ``int`` milliseconds and uuids 16 bytes).
:meth:`Message.header_items` gives ``(name, type_code, value)`` with timestamps as ``int``
milliseconds, so typed round trips are byte-exact.

:attr:`Message.headers` is a new ``dict`` on every access (changing it changes nothing else;
keep it rather than reading the property in a loop, or use :meth:`Message.header` for one
value). The names and values SageMaker streams use (``":event-type"``, ``"PayloadPart"``,
``"DataType"``, ``"BINARY"``, ...) come back as shared interned strings. Streams repeat a few
header sets, and the codec keeps small caches for them: a header dict of the very same ``str``
objects is encoded from its cached block, and a repeated header block is neither checked again
nor built again (its dict is copied).

Decoding is strict and every fault is a :class:`~sagebidi_perf.errors.EventStreamError` with the
stream ``offset``: :class:`~sagebidi_perf.errors.ChecksumError` (prelude or message CRC),
:class:`~sagebidi_perf.errors.MessageTooLargeError` (payload > 16 MiB, header block > 128 KiB,
one value > 32767 bytes), :class:`~sagebidi_perf.errors.MalformedMessageError` (bad lengths, bad
header name/type/value, invalid UTF-8, duplicate header names: the protocol forbids them) and
:class:`~sagebidi_perf.errors.TruncatedMessageError`.
"""

from __future__ import annotations

from enum import IntEnum

from sagebidi_perf._native import (
    EVENTSTREAM_MAX_HEADER_VALUE_LENGTH,
    EVENTSTREAM_MAX_HEADERS_LENGTH,
    EVENTSTREAM_MAX_MESSAGE_LENGTH,
    EVENTSTREAM_MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    Message,
    decode_message,
    encode_message,
)

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "EventStreamDecoder",
    "HeaderType",
    "Message",
    "decode_message",
    "encode_message",
]

#: Largest payload (16 MiB).
MAX_PAYLOAD_LENGTH: int = EVENTSTREAM_MAX_PAYLOAD_LENGTH
#: Largest header block (128 KiB).
MAX_HEADERS_LENGTH: int = EVENTSTREAM_MAX_HEADERS_LENGTH
#: Largest byte_array or string header value (32767 bytes).
MAX_HEADER_VALUE_LENGTH: int = EVENTSTREAM_MAX_HEADER_VALUE_LENGTH
#: Largest whole message: 16 bytes of framing + the two limits above.
MAX_MESSAGE_LENGTH: int = EVENTSTREAM_MAX_MESSAGE_LENGTH


class HeaderType(IntEnum):
    """Wire type codes of event-stream header values.

    Use as ``(HeaderType.SHORT, 5)`` in place of a header value to force its type.
    """

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTE_ARRAY = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9
