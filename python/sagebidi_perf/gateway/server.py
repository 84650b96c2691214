"""The gateway server: TLS (ALPN h2 only) + HTTP/2 on one port, like
``runtime.sagemaker.<region>.amazonaws.com:8443``.

A connection that does not start with a TLS ClientHello is answered in its own language and
closed, with a log line saying what went wrong: plaintext HTTP/1.1 (an ``http://`` endpoint URL)
gets a 400 text response, an h2c preface gets a GOAWAY with a debug message. Inside TLS, an
HTTP/1.1 request (a client without ALPN h2) gets the same 400.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import h2.config
import h2.connection
import h2.errors
import trio

from sagebidi_perf.gateway.certs import CertificatePaths, ensure_certificates, server_ssl_context
from sagebidi_perf.gateway.h2conn import H2Connection
from sagebidi_perf.gateway.relay import Gateway
from sagebidi_perf.gateway.settings import GatewaySettings
from sagebidi_perf.gateway.tls import TLSStream

__all__ = ["GatewayServer", "serve"]

log = logging.getLogger("sagebidi.gateway")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TLS_HANDSHAKE_RECORD = 0x16
NOT_TLS_MESSAGE = (
    "this is the sagebidi gateway: it speaks HTTP/2 over TLS only (like SageMaker's "
    "runtime endpoint). Use an https:// endpoint URL and trust the gateway's CA "
    "(SSL_CERT_FILE={ca}).\n"
)


async def _read_at_least(
    stream: trio.abc.Stream, have: bytes, n: int, stop: Callable[[bytes], bool]
) -> bytes:
    """Read until ``n`` bytes are buffered, ``stop(buffer)`` says enough, or EOF."""
    buf = bytearray(have)
    while len(buf) < n and not stop(bytes(buf)):
        data = await stream.receive_some(65536)
        if not data:
            break
        buf += data
    return bytes(buf)


def _looks_like_preface(buf: bytes) -> bool:
    return PREFACE.startswith(buf[: len(PREFACE)]) or buf.startswith(PREFACE)


def _http1_response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def _h2c_refusal(text: str) -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR, additional_data=text.encode())
    return conn.data_to_send()


def _first_line(buf: bytes) -> str:
    return buf.split(b"\r\n", 1)[0][:100].decode("latin-1", "replace")


def endpoint_url(host: str, port: int) -> str:
    """``https://localhost:PORT`` for a loopback/any address, else ``https://host:PORT``."""
    if host in ("0.0.0.0", "::", "127.0.0.1", "::1", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


class GatewayServer:
    """Serves the gateway on ``settings.host:settings.port`` until cancelled or shut down."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        self.port: int | None = None
        self.certs: CertificatePaths | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.connections: set[H2Connection] = set()
        self._connections_changed = trio.Event()
        self._accepting = trio.CancelScope()

    @property
    def ca_file(self) -> str:
        """The CA certificate clients must trust (``SSL_CERT_FILE``); known once serving."""
        assert self.certs is not None
        return str(self.certs.ca)

    @property
    def endpoint_url(self) -> str:
        """What a client passes as ``endpoint_uri`` (``https://localhost:PORT`` on loopback)."""
        assert self.port is not None
        return endpoint_url(self.settings.host, self.port)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Create/reuse the certificates, bind, and serve. ``task_status.started(port)``."""
        settings = self.settings
        self.certs = await trio.to_thread.run_sync(
            ensure_certificates, settings.cert_dir, settings.cert_hosts
        )
        self.ssl_context = server_ssl_context(self.certs)
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.reuse_port:  # --workers: several processes accept on one port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            await sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {settings.port} is already in use") from exc
            raise
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            with self._accepting:
                await trio.serve_listeners(self._handle, [listener], handler_nursery=nursery)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        try:
            peer = "{}:{}".format(*tcp.socket.getpeername()[:2])
        except OSError:
            peer = "?"
        with contextlib.suppress(OSError):
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = await self._negotiate(tcp, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("%s: TLS handshake failed: %s", peer, exc.__cause__ or exc)
            conn = None
        if conn is None:
            await trio.aclose_forcefully(tcp)
            return
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            changed, self._connections_changed = self._connections_changed, trio.Event()
            changed.set()

    async def _negotiate(self, tcp: trio.SocketStream, peer: str) -> H2Connection | None:
        """Sniff the protocol, do TLS, check for the HTTP/2 preface. None: answered, close."""
        settings = self.settings
        assert self.ssl_context is not None
        ca = self.ca_file
        with trio.move_on_after(settings.handshake_timeout) as scope:
            first = await _read_at_least(tcp, b"", 1, lambda b: False)
            if not first:
                return None
            if first[0] != TLS_HANDSHAKE_RECORD:
                first = await _read_at_least(
                    tcp, first, len(PREFACE), lambda b: not _looks_like_preface(b) and b"\n" in b
                )
                await self._refuse_plaintext(tcp, first, peer)
                return None
            tls = TLSStream(tcp, self.ssl_context, initial=first)
            await tls.do_handshake()
            alpn = tls.selected_alpn_protocol()
            head = await _read_at_least(
                tls, b"", len(PREFACE), lambda b: not _looks_like_preface(b)
            )
            if not head.startswith(PREFACE):
                if head:
                    log.warning(
                        "%s: not HTTP/2 inside TLS (ALPN %s, first line %r): the gateway needs "
                        "HTTP/2 (ALPN h2)",
                        peer,
                        alpn,
                        _first_line(head),
                    )
                    text = "HTTP/2 required: this endpoint speaks HTTP/2 only (ALPN h2).\n"
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await tls.send_all(_http1_response("505 HTTP Version Not Supported", text))
                await trio.aclose_forcefully(tls)
                return None
        if scope.cancelled_caught:
            log.warning(
                "%s: no TLS handshake and HTTP/2 preface within %.0f s (a client that does not "
                "trust the certificate stalls like this: SSL_CERT_FILE=%s)",
                peer,
                settings.handshake_timeout,
                ca,
            )
            return None
        return H2Connection(
            tls,
            self.gateway,
            initial_data=head,
            max_concurrent_streams=settings.max_concurrent_streams,
            initial_window_size=settings.initial_window_size,
            idle_timeout=settings.idle_timeout,
            max_client_resets=settings.max_client_resets,
            peer=peer,
        )

    async def _refuse_plaintext(self, tcp: trio.SocketStream, first: bytes, peer: str) -> None:
        text = NOT_TLS_MESSAGE.format(ca=self.ca_file)
        if first.startswith(PREFACE[: len(first)]) and len(first) >= 3:
            log.warning(
                "%s: h2c (cleartext HTTP/2) preface on the TLS port: %s", peer, text.strip()
            )
            reply = _h2c_refusal(text)
        else:
            line = _first_line(first)
            log.warning("%s: plaintext request %r on the TLS port: %s", peer, line, text.strip())
            reply = _http1_response("400 Bad Request", text)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tcp.send_all(reply)

    def cancel_accepting(self) -> None:
        """Stop accepting new connections (open ones go on)."""
        self._accepting.cancel()

    async def shutdown(self, grace: float | None = None) -> None:
        """SIGTERM: stop accepting (the listening socket closes), answer new streams on open
        connections with 503, let sessions finish for ``grace`` seconds (default
        ``settings.shutdown_grace``), then end the rest cleanly (END_STREAM to the client after
        what is queued, Close 1001 to the container) and say GOAWAY on every connection."""
        settings = self.settings
        grace = settings.shutdown_grace if grace is None else grace
        self.cancel_accepting()
        self.gateway.shutting_down = True
        log.info(
            "shutting down: %d sessions open, %.0f s grace", self.gateway.active_sessions, grace
        )
        with trio.move_on_after(grace):
            await self.gateway.wait_idle()
        if self.gateway.active_sessions:
            log.info("grace period over: ending %d sessions", self.gateway.active_sessions)
            self.gateway.end_sessions()
            with trio.move_on_after(settings.close_timeout + 1):
                await self.gateway.wait_idle()
        for conn in list(self.connections):
            conn.close_idle()
        with trio.move_on_after(2):
            while self.connections:
                await self._connections_changed.wait()


async def serve(
    settings: GatewaySettings,
    *,
    handle_signals: bool = False,
    on_ready: Callable[[GatewayServer], None] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled (or SIGTERM/SIGINT with ``handle_signals``).

    ``task_status.started(port)`` once listening; ``on_ready(server)`` is called just before
    (the CLI prints the endpoint URL and ``SSL_CERT_FILE`` there).
    """
    server = GatewayServer(settings)
    with contextlib.ExitStack() as stack:
        # Listen for signals before announcing readiness: a SIGTERM right after must be graceful.
        signals = (
            stack.enter_context(trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT))
            if handle_signals
            else None
        )
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            log.info("gateway listening on %s:%d (CA %s)", settings.host, port, server.ca_file)
            if on_ready is not None:
                on_ready(server)
            task_status.started(port)
            if signals is not None:
                async for signum in signals:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                    break
                # Graceful (``shutdown_grace``); a second signal stops at once.
                with trio.CancelScope() as graceful:
                    nursery.start_soon(_on_second_signal, signals, graceful)
                    await server.shutdown()
                nursery.cancel_scope.cancel()


async def _on_second_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for signum in signals:
        log.info("received %s again: stopping now", signal.Signals(signum).name)
        scope.cancel()
        return
