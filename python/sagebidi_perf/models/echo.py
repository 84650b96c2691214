"""The echo model: every message comes back as it was sent (text stays text, binary stays binary).

``POST /invocations`` returns the request body. Used by the conformance suite (Autobahn), the
benchmarks and the load tester's byte-exact echo scenario.
"""

from __future__ import annotations

from sagebidi_perf.container.model import InvokeResponse, Model, Session

__all__ = ["EchoModel"]


class EchoModel(Model):
    async def invoke(self, body: bytes, content_type: str | None) -> InvokeResponse:
        return InvokeResponse(body, content_type or "application/octet-stream")

    async def session(self, session: Session) -> None:
        async for message in session:
            await session.send(message)
