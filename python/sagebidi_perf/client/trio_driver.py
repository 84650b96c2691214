"""The Trio driver: the same sans-IO cores over ``trio`` streams.

Timeouts belong to the caller (``trio.fail_after``/``move_on_after``), except the close
handshake in :meth:`TrioSession.aclose`, which is bounded by ``close_timeout`` and shielded. A
session may be used by one sending task and one receiving task at once: one task at a time
reads the stream and the others wait for what it read; writes are serialised.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Self

import trio

from sagebidi_perf.client._core import DriverSession, Message, SessionCore
from sagebidi_perf.client.blocking import make_ssl_context
from sagebidi_perf.client.credentials import CredentialsLike, resolve_credentials, resolve_region
from sagebidi_perf.client.errors import (
    ClientError,
    ConnectError,
    ConnectionClosedError,
    SessionStateError,
    TLSError,
)
from sagebidi_perf.client.sagemaker import USER_AGENT as SAGEMAKER_USER_AGENT
from sagebidi_perf.client.sagemaker import (
    SageMakerCore,
    resolve_endpoint_url,
    split_endpoint_url,
)
from sagebidi_perf.client.ws import USER_AGENT as WS_USER_AGENT
from sagebidi_perf.client.ws import WsCore, parse_ws_url
from sagebidi_perf.sigv4 import amz_date

__all__ = ["TrioSession", "open_sagemaker", "open_ws"]

RECV_SIZE = 256 * 1024
_perf_counter = time.perf_counter


class TrioSession(DriverSession):
    """A connected client session (either transport) for Trio code; see
    :class:`~sagebidi_perf.client.blocking.Session` for the semantics."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        core: WsCore | SageMakerCore,
        *,
        close_timeout: float = 5.0,
    ) -> None:
        self._stream = stream
        self._core = core
        self._close_timeout = close_timeout
        self._send_lock = trio.Lock()
        self._reading = False
        self._flush_requested = False
        self._progress = trio.Event()
        self._closed = False
        #: The close code a lost connection reports: 1006 for a WebSocket, None otherwise.
        self._abnormal = 1006 if core.transport == "ws" else None

    # -- sending ------------------------------------------------------------------------------

    async def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one whole message: ``str`` as text (``DataType=UTF8``), bytes-like as binary."""
        await self._do_send(self._core.send, data)

    async def send_fragment(self, data: str | bytes | bytearray | memoryview, final: bool) -> None:
        """Send one part of a message (``final=True`` for the last)."""
        await self._do_send(self._core.send_fragment, data, final)

    async def end_input(self) -> None:
        """No more sends (WebSocket Close 1000 / final signed frame + END_STREAM)."""
        await self._do_send(self._core.end_input)

    async def _do_send(self, operation: Callable[..., None], *args: object) -> None:
        if self._closed:
            raise self._closed_error()
        await self._flush(operation=operation, args=args)
        while self._core.send_blocked:
            error = self._core.error
            if error is not None:
                raise error
            await self._pump()

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self) -> Message | None:
        """The next message; None once the server ended the stream cleanly. Raises the error
        that ended the session after the messages before it."""
        core = self._core
        while True:
            message = core.next_message()
            if message is not None:
                if core.wants_flush:
                    await self._flush()
                await trio.lowlevel.checkpoint()
                return message
            if core.receive_closed:
                await trio.lowlevel.checkpoint()
                return None
            if self._closed:
                raise self._closed_error()
            await self._pump()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while (message := await self.receive()) is not None:
            yield message

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """End the input if not done, wait (at most ``close_timeout``, shielded) for the server
        to end the stream, discarding what arrives, then close. Never raises for the server's
        errors; idempotent."""
        if self._closed:
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._close_timeout
            try:
                if not self._core.input_ended:
                    await self.end_input()
                while not self._core.receive_closed:
                    while self._core.next_message() is not None:
                        pass
                    await self._pump()
                if isinstance(self._core, SageMakerCore):
                    self._core.close_connection()
                await self._flush()
            except (ClientError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._closed = True
                await trio.aclose_forcefully(self._stream)

    async def abort(self) -> None:
        """Close the connection at once, without any close handshake."""
        if not self._closed:
            self._closed = True
            self._core.fail(SessionStateError("the session was aborted"))
            await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            await self.abort()

    # -- stream plumbing ----------------------------------------------------------------------

    async def _flush(
        self,
        *,
        wait: bool = True,
        operation: Callable[..., None] | None = None,
        args: tuple[object, ...] = (),
    ) -> None:
        """Write what the core has queued, one task at a time (``_send_lock``).

        A sender runs its ``operation`` (queueing its frames) while it holds the lock and writes
        them itself. The reader (``wait=False``) never waits for the lock: its pongs and window
        updates go out with the holder's next write. So the reader never blocks in a write of a
        sender's data, which would stop it reading and could deadlock two full TCP buffers.
        """
        if operation is None:
            self._flush_requested = True
            if not wait and self._send_lock.locked():
                await trio.lowlevel.checkpoint()
                return
        async with self._send_lock:
            if operation is not None:
                operation(*args)
                self._flush_requested = True
            while self._flush_requested:
                self._flush_requested = False
                out = self._core.data_to_send()
                if not out:
                    continue
                try:
                    await self._stream.send_all(out)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    error = ConnectionClosedError(
                        f"connection lost while sending: {exc}", self._abnormal
                    )
                    self._core.fail(error)
                    raise error from exc
                except trio.Cancelled:
                    # A partial write: the byte stream is no longer in sync.
                    self._core.fail(SessionStateError("a send was cancelled mid-write"))
                    raise

    async def _pump(self) -> None:
        if self._reading:
            await self._progress.wait()
            return
        self._reading = True
        try:
            try:
                data = await self._stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._core.fail(ConnectionClosedError(f"connection lost: {exc}", self._abnormal))
                return
            self._core.receive_data(bytes(data), _perf_counter())
        finally:
            self._reading = False
            progress, self._progress = self._progress, trio.Event()
            progress.set()
        # A failure is recorded in the core: the next receive/send raises it.
        with contextlib.suppress(ClientError):
            await self._flush(wait=False)


async def _open_stream(
    host: str, port: int, context: ssl.SSLContext | None, want_alpn: str | None
) -> trio.abc.Stream:
    try:
        tcp = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
    if context is None:
        return tcp
    stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise TLSError(
                f"TLS: the certificate of {host}:{port} is not trusted "
                f"({cause.verify_message or cause}); pass ca_file= (the gateway's CA is "
                "<cert dir>/ca.pem) or set SSL_CERT_FILE"
            ) from exc
        raise TLSError(f"TLS handshake with {host}:{port} failed: {cause or exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    if want_alpn is not None and stream.selected_alpn_protocol() != want_alpn:
        chosen = stream.selected_alpn_protocol()
        await trio.aclose_forcefully(stream)
        raise TLSError(
            f"{host}:{port} did not negotiate {want_alpn!r} in ALPN (got {chosen!r}): "
            "is it an HTTP/2 server?"
        )
    return stream


async def _wait_ready(session: TrioSession, core: SessionCore) -> None:
    try:
        await session._flush()
        while not core.ready:
            if core.receive_closed:
                core.next_message()  # raises the error
                raise ConnectionClosedError("the server ended the stream during the handshake")
            await session._pump()
    except BaseException:
        with trio.CancelScope(shield=True):
            await session.abort()
        raise


async def open_ws(
    url: str,
    *,
    model_invocation_path: str | None = None,
    model_query_string: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    fragments: bool = False,
    max_message_size: int = 16 * 1024 * 1024,
    close_timeout: float = 5.0,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = WS_USER_AGENT,
) -> TrioSession:
    """Trio version of :func:`~sagebidi_perf.client.blocking.connect_ws` (same arguments, no
    timeouts: wrap it in ``trio.fail_after``)."""
    target = parse_ws_url(
        url, model_invocation_path=model_invocation_path, model_query_string=model_query_string
    )
    context = None
    if target.secure:
        context = ssl_context or make_ssl_context(ca_file=ca_file, alpn=("http/1.1",))
    stream = await _open_stream(target.host, target.port, context, None)
    core = WsCore(
        target.authority,
        target.target,
        headers=headers,
        fragments=fragments,
        max_message_size=max_message_size,
        user_agent=user_agent,
    )
    session = TrioSession(stream, core, close_timeout=close_timeout)
    await _wait_ready(session, core)
    return session


async def open_sagemaker(
    endpoint_url: str | None,
    endpoint_name: str,
    *,
    region: str | None = None,
    credentials: CredentialsLike | None = None,
    profile: str | None = None,
    model_invocation_path: str | None = None,
    model_query_string: str | None = None,
    target_variant: str | None = None,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    fragments: bool = False,
    max_message_size: int = 16 * 1024 * 1024,
    await_response: bool = True,
    close_timeout: float = 5.0,
    user_agent: str = SAGEMAKER_USER_AGENT,
) -> TrioSession:
    """Trio version of :func:`~sagebidi_perf.client.blocking.connect_sagemaker` (same
    arguments, no timeouts: wrap it in ``trio.fail_after``)."""
    region = resolve_region(region, profile=profile)
    creds = resolve_credentials(credentials, profile=profile)
    host, port, authority = split_endpoint_url(resolve_endpoint_url(endpoint_url, region))
    context = ssl_context or make_ssl_context(ca_file=ca_file)
    stream = await _open_stream(host, port, context, "h2")
    try:
        core = SageMakerCore(
            authority=authority,
            endpoint_name=endpoint_name,
            credentials=creds,
            region=region,
            amz_date=amz_date(),
            model_invocation_path=model_invocation_path,
            model_query_string=model_query_string,
            target_variant=target_variant,
            fragments=fragments,
            max_message_size=max_message_size,
            user_agent=user_agent,
        )
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    session = TrioSession(stream, core, close_timeout=close_timeout)
    if await_response:
        await _wait_ready(session, core)
    else:
        try:
            await session._flush()
        except BaseException:
            with trio.CancelScope(shield=True):
                await session.abort()
            raise
    return session
