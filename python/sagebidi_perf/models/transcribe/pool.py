"""A per-worker pool of loaded recognizer streams (decoders).

A pocketsphinx decoder with the general model takes about 90 MB and 0.35-0.9 s to load, so each
worker process loads ``size`` of them in ``Model.load()`` and lends them to sessions. A session
that finds the pool empty waits (the caller bounds the wait with ``trio.fail_after``/
``move_on_after``); streams come back with :meth:`release`, reset (an open utterance ended, the
adaptation state cleared at the next ``reset``), whatever way the session ended.
"""

from __future__ import annotations

import trio

from sagebidi_perf.models.transcribe.engine import Engine, RecognizerStream

__all__ = ["DecoderPool"]


class DecoderPool:
    def __init__(self, engine: Engine, size: int) -> None:
        if size < 1:
            raise ValueError(f"the decoder pool needs at least one decoder, got {size}")
        self.engine = engine
        self.size = size
        self._free: list[RecognizerStream] = []
        self._loaded = 0
        self._waiters = trio.lowlevel.ParkingLot()

    @property
    def loaded(self) -> bool:
        return self._loaded == self.size

    @property
    def free(self) -> int:
        return len(self._free)

    async def fill(self) -> None:
        """Load the decoders (in a thread each: loading releases the loop between decoders)."""
        while self._loaded < self.size:
            stream = await trio.to_thread.run_sync(self.engine.create)
            self._free.append(stream)
            self._loaded += 1
        self._waiters.unpark_all()

    async def acquire(self, count: int = 1) -> list[RecognizerStream]:
        """``count`` streams, waiting for them as long as the caller's scope allows."""
        if not 1 <= count <= self.size:
            raise ValueError(f"cannot lend {count} decoders from a pool of {self.size}")
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._free) < count:
            await self._waiters.park()
        taken = self._free[-count:]
        del self._free[-count:]
        return taken

    def release(self, streams: list[RecognizerStream]) -> None:
        for stream in streams:
            stream.reset(partial_interval=None)
            self._free.append(stream)
        if streams:
            self._waiters.unpark_all()
