"""The blocking driver: plain ``socket``/``ssl``, for threads and for gevent (Locust).

Under ``gevent.monkey.patch_all()`` the same code is cooperative: sockets, ``select.poll``,
locks and conditions are gevent's, looked up at call time. A session may be used by one sender
and one receiver at once (two threads or two greenlets): one of them at a time reads the socket
and the others wait for what it read; writes are serialised so frames never interleave.

Every wait is bounded: ``connect_timeout`` (TCP + TLS + handshake), ``timeout`` (default for
:meth:`Session.receive`, and for each write), ``close_timeout`` (the close handshake).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from math import ceil
from types import TracebackType
from typing import NoReturn, Self

from sagebidi_perf.client._core import DriverSession, Message, SessionCore
from sagebidi_perf.client.credentials import CredentialsLike, resolve_credentials, resolve_region
from sagebidi_perf.client.errors import (
    ClientError,
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    SessionStateError,
    TLSError,
)
from sagebidi_perf.client.sagemaker import (
    USER_AGENT as SAGEMAKER_USER_AGENT,
)
from sagebidi_perf.client.sagemaker import (
    SageMakerCore,
    resolve_endpoint_url,
    split_endpoint_url,
)
from sagebidi_perf.client.ws import USER_AGENT as WS_USER_AGENT
from sagebidi_perf.client.ws import WsCore, parse_ws_url
from sagebidi_perf.sigv4 import amz_date

__all__ = ["Session", "connect_sagemaker", "connect_ws", "make_ssl_context"]

RECV_SIZE = 256 * 1024
_perf_counter = time.perf_counter


def make_ssl_context(
    *, ca_file: str | None = None, alpn: Iterable[str] = ("h2",)
) -> ssl.SSLContext:
    """A verifying client context: ``ca_file`` if given, else the default trust store (which
    honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), TLS 1.2+, ALPN ``alpn``."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(alpn))
    return context


def _tls_error(exc: ssl.SSLError, host: str, port: int) -> TLSError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        return TLSError(
            f"TLS: the certificate of {host}:{port} is not trusted ({detail}); pass ca_file= "
            "(the gateway's CA is <cert dir>/ca.pem) or set SSL_CERT_FILE"
        )
    return TLSError(f"TLS handshake with {host}:{port} failed: {exc}")


def _open_socket(
    host: str,
    port: int,
    connect_timeout: float,
    context: ssl.SSLContext | None,
    want_alpn: str | None,
) -> socket.socket:
    deadline = _perf_counter() + connect_timeout
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except TimeoutError as exc:
        raise ClientTimeoutError(f"connecting to {host}:{port}", connect_timeout) from exc
    except OSError as exc:
        raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock.settimeout(max(deadline - _perf_counter(), 0.001))
            try:
                tls = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLError as exc:
                raise _tls_error(exc, host, port) from exc
            except TimeoutError as exc:
                raise ClientTimeoutError(
                    f"TLS handshake with {host}:{port}", connect_timeout
                ) from exc
            except OSError as exc:
                raise ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
            sock = tls
            if want_alpn is not None:
                chosen = tls.selected_alpn_protocol()
                if chosen != want_alpn:
                    raise TLSError(
                        f"{host}:{port} did not negotiate {want_alpn!r} in ALPN (got {chosen!r}): "
                        "is it an HTTP/2 server?"
                    )
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Session(DriverSession):
    """A connected client session (either transport), for blocking code.

    ``send``/``send_fragment`` write at once (they wait only for HTTP/2 flow-control credit);
    ``receive`` returns the next :class:`Message`, or None once the server ended the stream, and
    raises the error that ended it otherwise. Use it as a context manager, or call
    :meth:`close`.

    The socket is read only inside :meth:`receive` (and while a send waits for flow-control
    credit): that is also when server pings are answered. Keep a receiver running (a thread or
    greenlet looping on ``receive``) for sessions that outlive the server's ping interval.
    ``received_at`` of a message is ``time.perf_counter()`` when its last bytes were read.
    """

    def __init__(
        self,
        sock: socket.socket,
        core: WsCore | SageMakerCore,
        *,
        timeout: float,
        close_timeout: float,
    ) -> None:
        self._sock = sock
        self._core = core
        self._timeout = timeout
        self._close_timeout = close_timeout
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._wlock = threading.Lock()
        self._io_lock = threading.Lock()
        self._reading = False
        self._flush_requested = False
        self._closed = False
        #: The close code a lost connection reports: 1006 for a WebSocket, None otherwise.
        self._abnormal = 1006 if core.transport == "ws" else None
        self._rpoll = select.poll()
        self._rpoll.register(sock.fileno(), select.POLLIN)
        self._wpoll = select.poll()
        self._wpoll.register(sock.fileno(), select.POLLOUT)

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one whole message: ``str`` as text (``DataType=UTF8``), bytes-like as binary."""
        self._do_send(self._core.send, data)

    def send_fragment(self, data: str | bytes | bytearray | memoryview, final: bool) -> None:
        """Send one part of a message (WebSocket fragment / ``CompletionState`` PARTIAL, then
        COMPLETE with ``final=True``)."""
        self._do_send(self._core.send_fragment, data, final)

    def end_input(self) -> None:
        """No more sends: WebSocket Close 1000 / the final signed frame and END_STREAM. Keep
        calling :meth:`receive` for the replies still coming; it returns None at the end."""
        self._do_send(self._core.end_input)

    def _do_send(self, operation: Callable[..., None], *args: object) -> None:
        if self._closed:
            raise self._closed_error()
        deadline = _perf_counter() + self._timeout
        self._flush(deadline, wait=True, operation=operation, args=args)
        while self._core.send_blocked:
            if _perf_counter() >= deadline:
                self._break(ClientTimeoutError("waiting for flow-control credit", self._timeout))
            self._pump(deadline)
            with self._lock:
                error = self._core.error
            if error is not None and self._core.send_blocked:
                raise error

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message; None once the server ended the stream cleanly.

        Waits at most ``timeout`` seconds (default: the session's ``timeout``), then raises
        :class:`ClientTimeoutError` (the session stays usable). Raises the error that ended the
        session (``ModelStreamError``, ``ConnectionClosedError``...) after the messages before
        it.
        """
        core = self._core
        deadline = None
        while True:
            with self._lock:
                message = core.next_message()
                if message is None and core.receive_closed:
                    return None
            if message is not None:
                if core.wants_flush:
                    self._flush()
                return message
            if deadline is None:
                deadline = _perf_counter() + (self._timeout if timeout is None else timeout)
            elif _perf_counter() >= deadline:
                raise ClientTimeoutError("receive", self._timeout if timeout is None else timeout)
            if self._closed:
                raise self._closed_error()
            self._pump(deadline)

    def __iter__(self) -> Iterator[Message]:
        """Messages until the server ends the stream (each wait bounded by ``timeout``)."""
        while (message := self.receive()) is not None:
            yield message

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """End the input if not done, wait (at most ``close_timeout``) for the server to end the
        stream, discarding what still arrives, then close the connection. Never raises for
        the server's errors; idempotent."""
        if self._closed:
            return
        deadline = _perf_counter() + self._close_timeout
        try:
            if not self._core.input_ended:
                self.end_input()
            while not self._core.receive_closed and _perf_counter() < deadline:
                with self._lock:
                    while self._core.next_message() is not None:
                        pass
                self._pump(deadline)
            with self._lock:
                if isinstance(self._core, SageMakerCore):
                    self._core.close_connection()
            self._flush(wait=True)
        except (ClientError, OSError):
            pass
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Close the connection at once, without any close handshake."""
        if not self._closed:
            with self._lock:
                self._core.fail(SessionStateError("the session was aborted"))
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- socket plumbing ----------------------------------------------------------------------

    def _break(self, error: ClientError) -> NoReturn:
        """A write failed half-way: the connection is unusable."""
        with self._lock:
            self._core.fail(error)
        self._shutdown()
        raise error

    def _flush(
        self,
        deadline: float | None = None,
        *,
        wait: bool = False,
        operation: Callable[..., None] | None = None,
        args: tuple[object, ...] = (),
    ) -> None:
        """Write what the core has queued, one thread at a time (``_wlock``).

        A sender runs its ``operation`` (queueing its frames) while it holds ``_wlock`` and
        writes them itself. The reader only flushes what it queued (pongs, window updates) and
        never waits for ``_wlock`` (``wait=False``): if a sender holds it, the sender takes the
        reader's bytes along (``_flush_requested``). So the reader never blocks in a write of a
        sender's data, which would stop it reading and could deadlock two full TCP buffers.
        """
        if operation is None:
            with self._lock:
                self._flush_requested = True
        while True:
            if not self._wlock.acquire(blocking=wait):
                return  # the holder writes what we queued
            try:
                if operation is not None:
                    with self._lock:
                        operation(*args)
                        self._flush_requested = True
                    operation = None
                while True:
                    with self._lock:
                        if not self._flush_requested:
                            break
                        self._flush_requested = False
                        out = self._core.data_to_send()
                    if out:
                        self._sendall(out, deadline or _perf_counter() + self._timeout)
            finally:
                self._wlock.release()
            with self._lock:
                if not self._flush_requested:
                    return
            wait = False  # whoever holds _wlock now writes it for us

    def _sendall(self, data: bytes, deadline: float) -> None:
        """Write all of ``data`` (caller holds ``_wlock``)."""
        view = memoryview(data)
        sock = self._sock
        while view:
            poller = self._wpoll
            try:
                if self._tls:
                    with self._io_lock:
                        sent = sock.send(view)
                else:
                    sent = sock.send(view)
                view = view[sent:]
                continue
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLWantReadError:
                poller = self._rpoll
            except OSError as exc:
                self._break(
                    ConnectionClosedError(f"connection lost while sending: {exc}", self._abnormal)
                )
            remaining = deadline - _perf_counter()
            if remaining <= 0:
                self._break(ClientTimeoutError("sending", self._timeout))
            poller.poll(ceil(remaining * 1000))

    def _recv(self, deadline: float) -> bytes | None:
        """Bytes from the socket (``b""`` at EOF), or None if ``deadline`` passed first."""
        sock = self._sock
        while True:
            poller = self._rpoll
            try:
                if self._tls:
                    with self._io_lock:
                        return sock.recv(RECV_SIZE)
                return sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                pass
            except ssl.SSLWantWriteError:
                poller = self._wpoll
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            remaining = deadline - _perf_counter()
            if remaining <= 0:
                return None
            poller.poll(ceil(remaining * 1000))

    def _pump(self, deadline: float) -> None:
        """Read once and feed the core, or wait for whoever is reading to do so."""
        with self._cv:
            if self._reading:
                self._cv.wait(max(deadline - _perf_counter(), 0.0))
                return
            self._reading = True
        data: bytes | None = None
        error: ClientError | None = None
        try:
            data = self._recv(deadline)
        except OSError as exc:
            error = ConnectionClosedError(f"connection lost: {exc}", self._abnormal)
        finally:
            now = _perf_counter()
            with self._cv:
                self._reading = False
                if error is not None:
                    self._core.fail(error)
                elif data is not None:
                    self._core.receive_data(data, now)
                self._cv.notify_all()
        if data is not None:
            # A failure is recorded in the core: the next receive/send raises it.
            with contextlib.suppress(ClientError):
                self._flush()


def _wait_ready(session: Session, core: SessionCore, connect_timeout: float) -> None:
    deadline = _perf_counter() + connect_timeout
    try:
        session._flush(deadline, wait=True)
        while not core.ready:
            if core.receive_closed:
                with session._lock:
                    core.next_message()  # raises the error
                raise ConnectionClosedError("the server ended the stream during the handshake")
            if _perf_counter() >= deadline:
                raise ClientTimeoutError("waiting for the handshake response", connect_timeout)
            session._pump(deadline)
    except BaseException:
        session.abort()
        raise


def connect_ws(
    url: str,
    *,
    model_invocation_path: str | None = None,
    model_query_string: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    fragments: bool = False,
    max_message_size: int = 16 * 1024 * 1024,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    close_timeout: float = 5.0,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = WS_USER_AGENT,
) -> Session:
    """Open a WebSocket session straight to a container, as the SageMaker sidecar does.

    ``url`` is ``ws://host:port[/path][?query]`` (``wss://`` works too);
    ``model_invocation_path``/``model_query_string`` replace a missing path/query like the
    sidecar (``ws://127.0.0.1:8080`` + ``v1/listen`` → ``/v1/listen``; no path →
    ``/invocations-bidirectional-stream``). Raises :class:`HandshakeError` if the container
    refuses the upgrade, :class:`ConnectError` if nothing listens.
    """
    target = parse_ws_url(
        url, model_invocation_path=model_invocation_path, model_query_string=model_query_string
    )
    context = None
    if target.secure:
        context = ssl_context or make_ssl_context(ca_file=ca_file, alpn=("http/1.1",))
    sock = _open_socket(target.host, target.port, connect_timeout, context, None)
    core = WsCore(
        target.authority,
        target.target,
        headers=headers,
        fragments=fragments,
        max_message_size=max_message_size,
        user_agent=user_agent,
    )
    session = Session(sock, core, timeout=timeout, close_timeout=close_timeout)
    _wait_ready(session, core, connect_timeout)
    return session


def connect_sagemaker(
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
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    close_timeout: float = 5.0,
    user_agent: str = SAGEMAKER_USER_AGENT,
) -> Session:
    """Open an ``InvokeEndpointWithBidirectionalStream`` session (HTTP/2, TLS, SigV4).

    ``endpoint_url`` is ``https://host[:port]`` (the local gateway, or a real endpoint); None
    means ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME_HTTP2``, ``AWS_ENDPOINT_URL``, else
    ``https://runtime.sagemaker.<region>.amazonaws.com:8443``. Credentials and region
    come from the arguments or the standard AWS environment and files
    (:mod:`sagebidi_perf.client.credentials`). The server's certificate is checked against
    ``ca_file``, or ``SSL_CERT_FILE``/the system store.

    With ``await_response`` (the default) this waits for the response headers, so HTTP errors
    (:class:`InputValidationError`, :class:`ModelError` 424...) raise here; otherwise it returns
    at once (the first send goes out before the server answered, as with the AWS SDK) and they
    raise from :meth:`Session.receive`.
    """
    region = resolve_region(region, profile=profile)
    creds = resolve_credentials(credentials, profile=profile)
    host, port, authority = split_endpoint_url(resolve_endpoint_url(endpoint_url, region))
    context = ssl_context or make_ssl_context(ca_file=ca_file)
    sock = _open_socket(host, port, connect_timeout, context, "h2")
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
        sock.close()
        raise
    session = Session(sock, core, timeout=timeout, close_timeout=close_timeout)
    if await_response:
        _wait_ready(session, core, connect_timeout)
    else:
        try:
            session._flush(wait=True)
        except BaseException:
            session.abort()
            raise
    return session
