"""Writing to a non-blocking socket without awaiting, shared by the gateway's two sides
(:class:`~sagebidi_perf.gateway.tls.TLSStream` toward the client and
:class:`~sagebidi_perf.gateway.upstream.UpstreamConnection` toward the container).

``os.write`` hands the kernel what it takes now; the rest waits in :attr:`pending` until a task
calls :meth:`_drain_pending` (one task drains, the others wait for it). Profiled: Trio's stream
wrappers yield to the scheduler on every call, which cost more than the write itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

__all__ = ["DirectSocketWriter"]


class DirectSocketWriter:
    """Mixin: call :meth:`_init_writer` in ``__init__``."""

    socket: trio.socket.SocketType
    #: Bytes the kernel did not take yet.
    pending: bytearray
    #: The connection failed or was closed (writes are dropped from then on).
    broken: bool

    def _init_writer(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock
        self.pending = bytearray()
        self.broken = False
        self._draining = False
        self._drained = trio.Event()

    @property
    def draining(self) -> bool:
        """A task is waiting for the socket to take :attr:`pending`."""
        return self._draining

    def _push(self, data: bytes | bytearray | memoryview) -> bool:
        """Write ``data`` after whatever is pending, as far as the kernel takes it now; True if
        nothing is left pending (or the connection is broken: the bytes are dropped)."""
        if self.broken:
            return True
        if data:
            if self.pending:
                self.pending += data
                return False
            sent = self._write(data)
            if sent < len(data):
                self.pending += memoryview(data)[sent:]
                return False
        return not self.pending

    def _write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self.socket.fileno()  # -1 once closed: never write to a recycled fd number
        if fd < 0:
            self._lost()
            return len(data)
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            self._lost()
            return len(data)

    def _lost(self) -> None:
        self.broken = True
        self.pending.clear()

    async def _drain_pending(self, refill: Callable[[], object] | None = None) -> None:
        """Wait for the socket until :attr:`pending` is written (or the connection breaks);
        ``refill()`` runs each time it empties, to push what was queued meanwhile."""
        if self._draining:
            await self._drained.wait()
            return
        self._draining = True
        try:
            while self.pending and not self.broken:
                try:
                    await trio.lowlevel.wait_writable(self.socket)
                except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                    self._lost()
                    break
                sent = self._write(self.pending)
                del self.pending[:sent]
                if not self.pending and refill is not None:
                    refill()
        finally:
            self._draining = False
            drained, self._drained = self._drained, trio.Event()
            drained.set()
