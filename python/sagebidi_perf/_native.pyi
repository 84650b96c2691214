# Stubs for the private native module, checked by `mypy.stubtest` (make lint).
# Each section belongs to one Rust binding module in rust/src/python/.
from typing_extensions import Buffer  # collections.abc.Buffer needs Python 3.12

__version__: str

# --- eventstream ---
import datetime
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias, TypeVar, final, overload

_T = TypeVar("_T")
_HeaderValueIn: TypeAlias = (
    bool | int | str | Buffer | datetime.datetime | uuid.UUID | tuple[int, Any]
)
_HeaderValueOut: TypeAlias = bool | int | bytes | str | datetime.datetime | uuid.UUID

EVENTSTREAM_MAX_PAYLOAD_LENGTH: int
EVENTSTREAM_MAX_HEADERS_LENGTH: int
EVENTSTREAM_MAX_HEADER_VALUE_LENGTH: int
EVENTSTREAM_MAX_MESSAGE_LENGTH: int

# Overloads (not a union) so that mypy types a dict or list literal against each form.
@overload
def encode_message(headers: Mapping[str, _HeaderValueIn], payload: Buffer = b"") -> bytes: ...
@overload
def encode_message(
    headers: Iterable[tuple[str, _HeaderValueIn]], payload: Buffer = b""
) -> bytes: ...
def decode_message(data: Buffer) -> Message: ...

@final
class Message:
    @overload
    def __new__(
        cls, headers: Mapping[str, _HeaderValueIn] = ..., payload: Buffer = b""
    ) -> Message: ...
    @overload
    def __new__(
        cls, headers: Iterable[tuple[str, _HeaderValueIn]] = (), payload: Buffer = b""
    ) -> Message: ...
    @property
    def headers(self) -> dict[str, _HeaderValueOut]: ...
    @property
    def payload(self) -> bytes: ...
    @overload
    def header(self, name: str) -> _HeaderValueOut | None: ...
    @overload
    def header(self, name: str, default: _T) -> _HeaderValueOut | _T: ...
    def header_items(self) -> list[tuple[str, int, _HeaderValueOut]]: ...
    def encode(self) -> bytes: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class EventStreamDecoder:
    def __new__(cls) -> EventStreamDecoder: ...
    def feed(self, data: Buffer) -> list[Message]: ...
    def close(self) -> None: ...
    @property
    def buffered(self) -> int: ...
    @property
    def offset(self) -> int: ...

# --- sigv4 ---
from collections.abc import Callable as _Callable  # noqa: E402
from collections.abc import Iterable as _Iterable  # noqa: E402
from collections.abc import Mapping as _Mapping  # noqa: E402
from typing import Self as _Self  # noqa: E402
from typing import TypeAlias as _TypeAlias  # noqa: E402
from typing import final as _final  # noqa: E402

_SigHeaders: _TypeAlias = _Iterable[tuple[str | bytes, str | bytes]]
_SigCredentials: _TypeAlias = _Mapping[str, str] | _Callable[[str], str | None]

SIGV4_STREAMING_EVENTS_PAYLOAD: str
SIGV4_UNSIGNED_PAYLOAD: str
SIGV4_EMPTY_SHA256: str
SIGV4_DEFAULT_MAX_SKEW_SECONDS: float
SIGV4_ENVELOPE_OVERHEAD: int

def derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes: ...
def event_string_to_sign(
    *,
    amz_date: str,
    region: str,
    service: str,
    prior_signature: str,
    headers_bytes: Buffer,
    payload_bytes: Buffer,
) -> str: ...
def sign_event_raw(
    *,
    secret_access_key: str,
    amz_date: str,
    region: str,
    service: str,
    prior_signature: str,
    headers_bytes: Buffer,
    payload_bytes: Buffer,
) -> str: ...
def date_header_bytes(date_ms: int) -> bytes: ...
def sign_request(
    *,
    method: str,
    path: str | bytes,
    query: str | bytes | None = None,
    headers: _SigHeaders,
    payload_hash: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    amz_date: str,
    session_token: str | None = None,
    normalize_path: bool = True,
    content_sha256_header: bool = False,
) -> SignedRequest: ...
def presign_request(
    *,
    method: str,
    path: str | bytes,
    query: str | bytes | None = None,
    headers: _SigHeaders,
    payload_hash: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    amz_date: str,
    expires_seconds: int,
    session_token: str | None = None,
    normalize_path: bool = True,
) -> PresignedRequest: ...
def verify_request(
    *,
    method: str,
    path: str | bytes,
    query: str | bytes | None = None,
    headers: _SigHeaders,
    credentials: _SigCredentials,
    region: str,
    service: str,
    payload_hash: str | None = None,
    now: float | None = None,
    max_skew_seconds: float | None = 300.0,
    normalize_path: bool = True,
) -> VerifiedRequest: ...

@_final
class SignedRequest:
    @property
    def authorization(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def canonical_request(self) -> str: ...
    @property
    def string_to_sign(self) -> str: ...
    @property
    def signed_headers(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def amz_date(self) -> str: ...
    @property
    def added_headers(self) -> list[tuple[str, str]]: ...
    def event_signer(self) -> EventSigner: ...

@_final
class PresignedRequest:
    @property
    def query(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def canonical_request(self) -> str: ...
    @property
    def string_to_sign(self) -> str: ...
    @property
    def signed_headers(self) -> str: ...
    @property
    def scope(self) -> str: ...

@_final
class VerifiedRequest:
    @property
    def access_key_id(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def amz_date(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def payload_hash(self) -> str: ...
    @property
    def session_token(self) -> str | None: ...
    @property
    def canonical_request(self) -> str: ...
    @property
    def signed_headers(self) -> list[str]: ...
    def event_verifier(self) -> EventVerifier: ...

@_final
class EventSigner:
    def __new__(
        cls, *, secret_access_key: str, region: str, service: str, seed_signature: str
    ) -> _Self: ...
    def sign(self, inner: Buffer, date_ms: int | None = None) -> bytes: ...
    def sign_end(self, date_ms: int | None = None) -> bytes: ...
    @property
    def prior_signature(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def ended(self) -> bool: ...

@_final
class EventVerifier:
    def __new__(
        cls, *, secret_access_key: str, region: str, service: str, seed_signature: str
    ) -> _Self: ...
    def verify(self, outer: Buffer) -> bytes: ...
    def feed(self, data: Buffer) -> list[bytes]: ...
    def finish(self) -> bool: ...
    @property
    def ended(self) -> bool: ...
    @property
    def count(self) -> int: ...
    @property
    def failed(self) -> bool: ...
    @property
    def buffered(self) -> int: ...
    @property
    def prior_signature(self) -> str: ...

# --- chunker ---
from collections.abc import Sequence as _CkSequence  # noqa: E402
from typing import Any as _CkAny  # noqa: E402
from typing import TypeAlias as _CkTypeAlias  # noqa: E402
from typing import final as _ck_final  # noqa: E402

import numpy as _ck_np  # noqa: E402

# numpy declares `__buffer__` only for Python >= 3.12, so name arrays explicitly.
_FrameSource: _CkTypeAlias = Buffer | _ck_np.ndarray[_CkAny, _ck_np.dtype[_CkAny]]

def chunk_bytes(
    buf: _FrameSource, frame_bytes: int, *, pad: bool = False, align: int = 1
) -> list[memoryview]: ...
def chunk_audio(
    buf: _FrameSource,
    *,
    sample_rate: int,
    channels: int = 1,
    sample_width: int = 2,
    frame_ms: float = 100.0,
    pad: bool = False,
) -> list[memoryview]: ...
def frame_bytes_for(
    *, sample_rate: int, channels: int = 1, sample_width: int = 2, frame_ms: float = 100.0
) -> int: ...
def pacing_schedule(
    frame_seconds: _CkSequence[float] | _ck_np.ndarray[_CkAny, _ck_np.dtype[_CkAny]],
    *,
    speed: float = 1.0,
    start: float = 0.0,
) -> list[float]: ...
def uniform_pacing_schedule(
    n_frames: int, frame_seconds: float, *, speed: float = 1.0, start: float = 0.0
) -> list[float]: ...
def iter_chunks(
    buf: _FrameSource, frame_bytes: int, *, pad: bool = False, align: int = 1
) -> FrameIterator: ...

@_ck_final
class FrameIterator:
    def __iter__(self) -> FrameIterator: ...
    def __next__(self) -> memoryview: ...
    def __len__(self) -> int: ...

# --- audio ---
from typing import Any as _AuAny  # noqa: E402
from typing import Literal as _AuLiteral  # noqa: E402
from typing import TypeAlias as _AuTypeAlias  # noqa: E402
from typing import final as _au_final  # noqa: E402

import numpy as _au_np  # noqa: E402
import numpy.typing as _au_npt  # noqa: E402

_AuInput: _AuTypeAlias = (
    Buffer
    | _au_npt.NDArray[_au_np.int16]
    | _au_npt.NDArray[_au_np.float32]
    | _au_npt.NDArray[_au_np.float64]
)
_AuQuality: _AuTypeAlias = _AuLiteral["fast", "hq", "vhq"]
_AuDtype: _AuTypeAlias = _AuLiteral["float32", "int16"]

AUDIO_MIN_RATE: int
AUDIO_MAX_RATE: int
AUDIO_MAX_CHANNELS: int

@_au_final
class Resampler:
    def __new__(
        cls,
        in_rate: int,
        out_rate: int,
        channels: int = 1,
        *,
        quality: _AuQuality = "hq",
        compensate_delay: bool = True,
        dtype: _AuDtype = "float32",
    ) -> Resampler: ...
    def process(self, data: _AuInput) -> _au_npt.NDArray[_AuAny]: ...
    def flush(self) -> _au_npt.NDArray[_AuAny]: ...
    def reset(self) -> None: ...
    def output_frames(self, frames_in: int) -> int: ...
    @property
    def in_rate(self) -> int: ...
    @property
    def out_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def quality(self) -> _AuQuality: ...
    @property
    def compensate_delay(self) -> bool: ...
    @property
    def dtype(self) -> _AuDtype: ...
    @property
    def delay(self) -> int: ...
    @property
    def delay_seconds(self) -> float: ...
    @property
    def frames_in(self) -> int: ...
    @property
    def frames_out(self) -> int: ...

def resample(
    data: _AuInput,
    in_rate: int,
    out_rate: int,
    *,
    channels: int | None = None,
    quality: _AuQuality = "hq",
    dtype: _AuDtype = "float32",
) -> _au_npt.NDArray[_AuAny]: ...
def int16_to_float32(data: _AuInput) -> _au_npt.NDArray[_au_np.float32]: ...
def float32_to_int16(
    data: _au_npt.NDArray[_au_np.float32] | _au_npt.NDArray[_au_np.float64],
) -> _au_npt.NDArray[_au_np.int16]: ...
def downmix(data: _AuInput, channels: int | None = None) -> _au_npt.NDArray[_au_np.float32]: ...
def select_channel(
    data: _AuInput, index: int, channels: int | None = None
) -> _au_npt.NDArray[_au_np.float32]: ...

# --- keepalive ---
SAGEMAKER_PING_INTERVAL: float
SAGEMAKER_MAX_MISSED_PINGS: int

@_ck_final
class KeepaliveAction:
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> bytes | None: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@_ck_final
class Keepalive:
    def __new__(
        cls, interval: float = 60.0, max_missed: int = 5, *, payload_prefix: Buffer | None = None
    ) -> Keepalive: ...
    def start(self, now: float) -> None: ...
    def tick(self, now: float) -> KeepaliveAction | None: ...
    def pong(self, payload: Buffer, now: float) -> float | None: ...
    def activity(self, now: float) -> None: ...
    @property
    def next_deadline(self) -> float | None: ...
    @property
    def interval(self) -> float: ...
    @property
    def max_missed(self) -> int: ...
    @property
    def payload_prefix(self) -> bytes: ...
    @property
    def started(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def pings_sent(self) -> int: ...
    @property
    def pongs_received(self) -> int: ...
    @property
    def unmatched_pongs(self) -> int: ...
    @property
    def outstanding(self) -> int: ...
    @property
    def missed(self) -> int: ...
    @property
    def last_rtt(self) -> float | None: ...

# --- websocket ---
from typing import Any as _WsAny  # noqa: E402
from typing import Literal as _WsLiteral  # noqa: E402
from typing import TypeAlias as _WsTypeAlias  # noqa: E402
from typing import final as _ws_final  # noqa: E402

# (kind, payload, fin): WS_TEXT -> str (messages mode) or UTF-8 bytes (frames mode);
# WS_BINARY/WS_PING/WS_PONG -> bytes; WS_CLOSE -> (code: int, reason: str). The payload is Any
# because its type follows `kind`, which mypy cannot narrow after `kind, payload, fin = event`.
_WsEvent: _WsTypeAlias = tuple[int, _WsAny, bool]

WS_TEXT: int
WS_BINARY: int
WS_CLOSE: int
WS_PING: int
WS_PONG: int

def websocket_accept_key(key: str | bytes) -> str: ...
@_ws_final
class WebSocketConnection:
    def __new__(
        cls,
        *,
        client: bool = False,
        deliver: _WsLiteral["messages", "frames"] = "messages",
        max_message_size: int = 16777216,
        max_frame_size: int | None = None,
        max_fragments: int = 1048576,
    ) -> WebSocketConnection: ...
    def receive(self, data: Buffer) -> list[_WsEvent]: ...
    def send(self, data: str | Buffer) -> None: ...
    def send_fragment(self, data: str | Buffer, fin: bool, *, text: bool | None = None) -> None: ...
    def ping(self, payload: Buffer | None = None) -> None: ...
    def pong(self, payload: Buffer | None = None) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    def outgoing(self) -> bytes: ...
    @property
    def outgoing_size(self) -> int: ...
    @property
    def state(self) -> _WsLiteral["open", "closing", "closed"]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def failed(self) -> bool: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def client(self) -> bool: ...
    @property
    def deliver(self) -> _WsLiteral["messages", "frames"]: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def max_fragments(self) -> int: ...
