"""Server-side TLS over a Trio socket with ``ssl.MemoryBIO``, built for the relay's hot path.

Why not ``trio.SSLStream``: profiled on the relay, every ``send_all``/``receive_some`` there is
several awaits (conflict detectors, a lock, the transport stream's own checkpoints), and each
socket operation yields to the scheduler even when the kernel would take or give the bytes
at once. Here:

* :meth:`TLSStream.write_nowait` encrypts and writes with ``os.write`` without awaiting; what the
  kernel does not take stays in :attr:`TLSStream.pending` for one writer task to send
  (:meth:`TLSStream.drain`). Ciphertext leaves in the order it was produced.
* :meth:`TLSStream.receive_some` parks once in ``wait_readable`` per batch, reads up to 1 MiB
  with ``os.read`` and decrypts every complete record in it: one call returns all the plaintext
  that arrived (many HTTP/2 frames), not one 16 KB record.

It is also a ``trio.abc.Stream`` (the handshake and the error answers use that API).
"""

from __future__ import annotations

import os
import ssl

import trio

from sagebidi_perf.gateway.sockwrite import DirectSocketWriter

__all__ = ["TLSStream"]

READ_SIZE = 1024 * 1024
#: Plaintext taken from OpenSSL per ``SSLObject.read`` call (it returns one record at most).
RECORD_READ = 64 * 1024


class TLSStream(DirectSocketWriter, trio.abc.Stream):
    """TLS (server side) over ``tcp``; ``initial`` = ciphertext already read (protocol sniff)."""

    def __init__(
        self, tcp: trio.SocketStream, context: ssl.SSLContext, *, initial: bytes = b""
    ) -> None:
        self.tcp = tcp
        self._init_writer(tcp.socket)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        if initial:
            self._incoming.write(initial)
        self._eof = False

    # -- handshake -----------------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Raises ``trio.BrokenResourceError`` (cause: the ``ssl.SSLError``) on failure."""
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                self.broken = True
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
            await self._send_out()
            if not await self._fill():
                raise trio.BrokenResourceError("connection closed during the TLS handshake")
        await self._send_out()

    def selected_alpn_protocol(self) -> str | None:
        return self._obj.selected_alpn_protocol()

    async def _send_out(self) -> None:
        self.write_nowait(b"")
        await self.drain()
        if self.broken:
            raise trio.BrokenResourceError("connection lost")

    # -- reading -------------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Wait for ciphertext and feed it to OpenSSL; False at EOF or when the socket broke."""
        if self._eof:
            return False
        while True:
            try:
                await trio.lowlevel.wait_readable(self.socket)
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                self._eof = True
                return False
            fd = self.socket.fileno()
            if fd < 0:
                self._eof = True
                return False
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:  # reset by the peer
                self._eof = True
                return False
            if not data:
                self._eof = True
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
            return True

    def _read_plain(self) -> bytes | None:
        """All plaintext OpenSSL can give now; None if it needs more ciphertext first."""
        chunks: list[bytes] = []
        obj = self._obj
        while True:
            try:
                data = obj.read(RECORD_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                self._eof = True
                break
            except ssl.SSLError as exc:
                self.broken = True
                raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
            if not data:
                self._eof = True
                break
            chunks.append(data)
            if not self._incoming.pending and not obj.pending():
                break  # all consumed (saves the SSLWantReadError round)
        if self._outgoing.pending:  # post-handshake messages (tickets, key updates)
            self.write_nowait(b"")
        if chunks:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return b"" if self._eof else None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The plaintext that arrived (all complete records); b"" at EOF.

        ``max_bytes`` is not honoured (this stream returns whole batches)."""
        if self.broken:
            raise trio.BrokenResourceError("connection lost")
        while True:
            data = self._read_plain()
            if data is not None:
                if data:
                    return data
                return b""
            if not await self._fill():
                data = self._read_plain()
                return data or b""

    # -- writing -------------------------------------------------------------------------------

    def write_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt ``data`` and write what the kernel takes now; True if nothing is left pending
        (then no writer is needed). Never awaits; errors mark the stream :attr:`broken`."""
        if self.broken:
            return True
        if data:
            try:
                self._obj.write(data)
            except ssl.SSLError:
                self.broken = True
                return True
        return self._push(self._outgoing.read())

    async def drain(self) -> None:
        """Send :attr:`pending` (waiting for the socket); one task drains, others wait for it."""
        await self._drain_pending()

    # -- trio.abc.Stream ----------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("connection lost")
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.write_nowait(data):
            await self.drain()
        if self.broken:
            raise trio.BrokenResourceError("connection lost")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.socket)

    async def aclose(self) -> None:
        self.broken = True
        await self.tcp.aclose()
