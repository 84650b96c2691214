"""The model API: what a user writes to serve a model behind SageMaker's bidi contract.

A model is a :class:`Model` subclass (or a plain ``async def session(session)`` function)::

    class Shout(Model):
        async def session(self, session: Session) -> None:
            async for message in session:
                await session.send(message.upper() if isinstance(message, str) else message)

The runtime handles HTTP, the WebSocket protocol, pings, back-pressure, errors and shutdown.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEFAULT_BIDI_PATH",
    "FunctionModel",
    "InvokeResponse",
    "Model",
    "RejectUpgrade",
    "Session",
    "SessionClosed",
    "UpgradeRequest",
    "load_model",
]

DEFAULT_BIDI_PATH = "/invocations-bidirectional-stream"

Message = str | bytes


class SessionClosed(Exception):
    """Raised by :meth:`Session.send` once the WebSocket is closed; ``code``/``reason`` say why."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"session closed (code {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class RejectUpgrade(Exception):
    """Raise from :meth:`Model.check_upgrade` to refuse a WebSocket before it opens.

    The client gets an HTTP ``status`` (400 by default) with ``message`` as the body; through
    SageMaker this becomes a 424 ``ModelError``.
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        #: The body's content type (e.g. ``application/json`` for a JSON error body).
        self.content_type = content_type
        #: Extra response headers (e.g. Deepgram's ``dg-error``).
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The WebSocket upgrade request as the model sees it."""

    path: str
    #: Query parameters in order; a key may repeat.
    query: Sequence[tuple[str, str]]
    headers: Sequence[tuple[str, str]]
    raw_query: str = ""

    def query_dict(self) -> dict[str, str]:
        """The query as a dict (last value wins for repeated keys)."""
        return dict(self.query)


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    """A non-streaming answer to ``POST /invocations``."""

    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)


class Session(Protocol):
    """One bidirectional stream (one WebSocket from the SageMaker sidecar)."""

    @property
    def request(self) -> UpgradeRequest: ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    async def receive(self) -> Message | None:
        """The next whole message (``str`` for text, ``bytes`` for binary); None once closed."""
        ...

    def __aiter__(self) -> AsyncIterator[Message]:
        """Iterate over messages until the session closes (a plain iterator, not a generator)."""
        ...

    async def __anext__(self) -> Message: ...

    async def send(self, message: Message) -> None:
        """Send a whole message: ``str`` as a text frame, bytes-like as a binary frame."""
        ...

    async def send_fragment(self, data: Message, *, final: bool) -> None:
        """Stream one message as fragments (SageMaker PARTIAL...COMPLETE parts)."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Model:
    """Base class of a served model. Override :meth:`session`, and what else you need."""

    #: Paths that accept a WebSocket upgrade (the sidecar's default path plus any the model adds,
    #: such as ``/v1/listen``). ``ModelInvocationPath`` selects one.
    paths: Sequence[str] = (DEFAULT_BIDI_PATH,)

    async def load(self) -> None:
        """Load weights and warm up. ``/ping`` answers 503 until this returns."""

    def check_upgrade(self, request: UpgradeRequest) -> None:
        """Validate an upgrade before it is accepted; raise :class:`RejectUpgrade` to refuse."""

    async def invoke(self, body: bytes, content_type: str | None) -> InvokeResponse:
        """Answer ``POST /invocations`` (non-streaming). The default refuses with 405."""
        raise RejectUpgrade("this model serves WebSocket sessions only", status=405)

    async def session(self, session: Session) -> None:
        """Serve one bidirectional session until it ends."""
        raise NotImplementedError

    def describe(self) -> Mapping[str, object]:
        """What ``sagebidi serve`` logs at start."""
        return {"model": type(self).__name__, "paths": list(self.paths)}


class FunctionModel(Model):
    """Wraps ``async def handler(session)`` as a model on the default path."""

    def __init__(
        self, handler: Callable[[Session], Awaitable[None]], paths: Sequence[str] | None = None
    ) -> None:
        self._handler = handler
        if paths is not None:
            self.paths = tuple(paths)

    async def session(self, session: Session) -> None:
        await self._handler(session)

    def describe(self) -> Mapping[str, object]:
        return {
            "model": getattr(self._handler, "__qualname__", "handler"),
            "paths": list(self.paths),
        }


BUILTIN_MODELS = {
    "echo": "sagebidi_perf.models.echo:EchoModel",
    "transcribe": "sagebidi_perf.models.transcribe:TranscribeModel",
}


def load_model(spec: str) -> Model:
    """A model from a built-in name (``echo``) or ``module:attribute``.

    The attribute may be a :class:`Model` subclass (instantiated with no arguments), a model
    instance, or an ``async def`` taking a session.
    """
    target = BUILTIN_MODELS.get(spec, spec)
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ValueError(f"model {spec!r} is neither a built-in ({known}) nor module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import model module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from None
    if isinstance(obj, type) and issubclass(obj, Model):
        return obj()
    if isinstance(obj, Model):
        return obj
    if inspect.iscoroutinefunction(obj):
        return FunctionModel(obj)
    raise ValueError(f"{spec!r} is not a Model subclass, a Model instance or an async function")
