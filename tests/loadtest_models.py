"""Container models for the load-tester tests (served in-process under Trio; Locust runs in a
subprocess against them)."""

from __future__ import annotations

import json

import trio

from sagebidi_perf.container import Model, RejectUpgrade, Session, UpgradeRequest

#: The words a :class:`WordStreamer` answers every prompt with, one message each.
ANSWER = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


class WordStreamer(Model):
    """A realtime-LLM-shaped text model: each ``{"prompt": ...}`` gets one
    ``{"type": "token", "text": word}`` message per word of :data:`ANSWER`, then
    ``{"type": "done"}``. The prompt ``crash`` closes the session with 1011; a query with
    ``reject`` refuses the upgrade (the gateway answers 424)."""

    def __init__(self, delay: float = 0.002) -> None:
        self.delay = delay
        self.prompts = 0

    def check_upgrade(self, request: UpgradeRequest) -> None:
        if "reject" in request.query_dict():
            raise RejectUpgrade("rejected by the test model", status=400)

    async def session(self, session: Session) -> None:
        async for message in session:
            if isinstance(message, bytes):
                await session.send(message)
                continue
            doc = json.loads(message)
            if doc.get("prompt") == "crash":
                await session.close(1011, "model crashed")
                return
            self.prompts += 1
            for word in ANSWER:
                await trio.sleep(self.delay)
                await session.send(json.dumps({"type": "token", "text": word}))
            await session.send('{"type": "done"}')


class CorruptingEcho(Model):
    """Echo, except every ``every``-th binary message comes back with its last byte flipped."""

    def __init__(self, every: int = 4) -> None:
        self.every = every

    async def session(self, session: Session) -> None:
        n = 0
        async for message in session:
            n += 1
            if isinstance(message, bytes) and message and n % self.every == 0:
                message = message[:-1] + bytes([message[-1] ^ 0xFF])
            await session.send(message)


class FakeListen(Model):
    """A scripted Deepgram ``/v1/listen``: an interim ``Results`` ("hello") every 5 audio frames,
    a final ("hello world", ``from_finalize``) on ``Finalize``, then on ``CloseStream`` one
    ``Metadata`` and close 1000. With ``nometa`` in the query it closes without the Metadata."""

    paths = ("/v1/listen",)

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []

    @staticmethod
    def results(text: str, start: float, duration: float, *, final: bool) -> str:
        words = [
            {"word": w, "start": start, "end": start + duration, "confidence": 0.9}
            for w in text.split()
        ]
        return json.dumps(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "start": start,
                "duration": duration,
                "is_final": final,
                "speech_final": final,
                "from_finalize": final,
                "channel": {
                    "alternatives": [{"transcript": text, "confidence": 0.9, "words": words}]
                },
                "metadata": {"request_id": "r", "model_info": {}, "model_uuid": "u"},
            }
        )

    async def session(self, session: Session) -> None:
        query = session.request.query_dict()
        self.queries.append(query)
        rate = int(query.get("sample_rate", "16000"))
        audio = 0
        frames = 0
        async for message in session:
            if isinstance(message, bytes):
                audio += len(message)
                frames += 1
                if frames % 5 == 0:
                    await session.send(self.results("hello", 0.0, audio / (2 * rate), final=False))
                # An empty Results, as Deepgram sends on silence: never a first token.
                await session.send(self.results("", 0.0, audio / (2 * rate), final=False))
                continue
            kind = json.loads(message).get("type")
            if kind == "Finalize":
                await session.send(self.results("hello world", 0.0, audio / (2 * rate), final=True))
            elif kind == "CloseStream":
                if "nometa" not in query:
                    await session.send(
                        json.dumps(
                            {"type": "Metadata", "duration": audio / (2 * rate), "channels": 1}
                        )
                    )
                await session.close(1000)
                return
