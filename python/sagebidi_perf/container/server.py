"""The container server: one Trio process serving SageMaker's bidi contract on one port."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Callable

import trio

from sagebidi_perf.container.http import serve_http
from sagebidi_perf.container.model import Model
from sagebidi_perf.container.session import WebSocketSession
from sagebidi_perf.container.settings import ServerSettings

__all__ = ["ContainerServer", "serve"]

log = logging.getLogger("sagebidi.container")

#: Shared accept queue (``--workers``): how long a worker waits per open connection before
#: accepting, so that the least busy worker takes the next connection.
ACCEPT_DELAY = 0.001
ACCEPT_DELAY_MAX = 0.01
ACCEPT_BATCH = 64
_ACCEPT_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def _listen_socket(settings: ServerSettings) -> trio.socket.SocketType:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class ContainerServer:
    """Serves ``model`` on ``settings.host:settings.port`` until cancelled or shut down."""

    def __init__(self, model: Model, settings: ServerSettings) -> None:
        self.model = model
        self.settings = settings
        self.ready = False
        #: Set once the model has loaded (``/ping`` answers 200 from then on).
        self.ready_event = trio.Event()
        self.port: int | None = None
        self.sessions: set[WebSocketSession] = set()
        self._handshakes = trio.Semaphore(settings.max_pending_handshakes)
        self._accepting = trio.CancelScope()
        self._all_closed = trio.Event()
        self._connections = 0
        self._shared: socket.socket | None = None

    def _is_ready(self) -> bool:
        return self.ready

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, start loading the model, and serve. ``task_status.started(port)`` after binding."""
        if self.settings.listen_fd is not None:
            self._shared = socket.socket(fileno=self.settings.listen_fd)
            sock = trio.socket.from_stdlib_socket(self._shared)
        else:
            sock = await self._bind()
        self.port = sock.getsockname()[1]
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._load_model)
            task_status.started(self.port)
            with self._accepting:
                if self.settings.listen_fd is None:
                    await trio.serve_listeners(
                        self._handle_connection, [listener], handler_nursery=nursery
                    )
                else:
                    await self._accept_shared(listener, nursery)

    async def _bind(self) -> trio.socket.SocketType:
        sock = _listen_socket(self.settings)
        try:
            await sock.bind((self.settings.host, self.settings.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {self.settings.port} is already in use") from exc
            raise
        sock.listen(4096)
        return sock

    async def _accept_shared(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        assert self._shared is not None
        """Accept from a queue shared with the other workers. Every worker is woken for a new
        connection; one with open connections waits ``ACCEPT_DELAY`` per connection (at most
        ``ACCEPT_DELAY_MAX``) before taking it, so the least busy worker usually gets it (with
        SO_REUSEPORT the kernel hashes connections to workers whatever their load). A burst is
        still taken quickly: after the wait, connections already queued are accepted at once."""
        while True:
            if self._connections:
                await trio.sleep(min(ACCEPT_DELAY * self._connections, ACCEPT_DELAY_MAX))
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise
                log.error("accept failed (%s); retrying in 100 ms", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._handle_connection, stream)
            for _ in range(ACCEPT_BATCH):  # the rest of a burst, without waiting again
                try:
                    conn, _addr = self._shared.accept()  # non-blocking (Trio set it so)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.error("accept failed (%s)", exc)
                    break
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                nursery.start_soon(self._handle_connection, stream)

    async def _load_model(self) -> None:
        await self.model.load()
        self.ready = True
        self.ready_event.set()
        log.info("model ready: %s", self.model.describe())

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self._connections += 1
        try:
            async with self._handshakes:
                upgrade = await serve_http(
                    stream,
                    self.model,
                    is_ready=self._is_ready,
                    handshake_timeout=self.settings.handshake_timeout,
                    max_body_size=self.settings.max_message_size,
                )
            if upgrade is None:
                await trio.aclose_forcefully(stream)
                return
            session = WebSocketSession(
                stream, upgrade.request, self.settings, upgrade.trailing_data
            )
            self.sessions.add(session)
            await session.run(self.model, on_shutdown=lambda: self._forget(session))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(stream)
        finally:
            self._connections -= 1

    def _forget(self, session: WebSocketSession) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._all_closed.set()
            self._all_closed = trio.Event()

    async def wait_idle(self) -> None:
        """Return once no WebSocket session is open."""
        while self.sessions:
            await self._all_closed.wait()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting; let sessions finish within ``grace`` seconds; close the rest (1001)."""
        grace = self.settings.shutdown_grace if grace is None else grace
        self._accepting.cancel()
        log.info("shutting down: %d sessions open, %.0fs grace", len(self.sessions), grace)
        with trio.move_on_after(grace):
            await self.wait_idle()
        remaining = list(self.sessions)
        if remaining:
            log.info("closing %d sessions with 1001", len(remaining))
        async with trio.open_nursery() as nursery:
            for session in remaining:
                nursery.start_soon(session.shutdown)


async def serve(
    model: Model,
    settings: ServerSettings,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a :class:`ContainerServer` until SIGTERM/SIGINT (graceful) or cancellation."""
    server = ContainerServer(model, settings)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        log.info("listening on %s:%d", settings.host, port)
        task_status.started(port)
        if handle_signals:
            await _wait_for_signal()
            await server.shutdown()
            nursery.cancel_scope.cancel()


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            return


def run(model_factory: Callable[[], Model], settings: ServerSettings) -> None:
    """Blocking entry point for one process."""
    model = model_factory()
    trio.run(serve, model, settings)
