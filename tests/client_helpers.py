"""Both client drivers behind one async interface, for tests that run with each: the blocking
driver in a worker thread, the Trio driver natively (each call bounded by ``trio.fail_after``)."""

from __future__ import annotations

from typing import Any

import trio

from sagebidi_perf.client import Message, Session, TrioSession


class Client:
    """One session, driven by the blocking driver (in a thread) or the Trio driver."""

    def __init__(self, session: Session | TrioSession) -> None:
        self.session = session

    @property
    def core(self) -> Any:
        return self.session.core

    async def send(self, data: str | bytes) -> None:
        if isinstance(self.session, Session):
            await trio.to_thread.run_sync(self.session.send, data)
        else:
            with trio.fail_after(10):
                await self.session.send(data)

    async def send_fragment(self, data: str | bytes, final: bool) -> None:
        if isinstance(self.session, Session):
            await trio.to_thread.run_sync(self.session.send_fragment, data, final)
        else:
            with trio.fail_after(10):
                await self.session.send_fragment(data, final)

    async def end_input(self) -> None:
        if isinstance(self.session, Session):
            await trio.to_thread.run_sync(self.session.end_input)
        else:
            with trio.fail_after(10):
                await self.session.end_input()

    async def receive(self) -> Message | None:
        if isinstance(self.session, Session):
            return await trio.to_thread.run_sync(self.session.receive, 10.0)
        with trio.fail_after(10):
            return await self.session.receive()

    async def close(self) -> None:
        if isinstance(self.session, Session):
            await trio.to_thread.run_sync(self.session.close)
        else:
            await self.session.aclose()
