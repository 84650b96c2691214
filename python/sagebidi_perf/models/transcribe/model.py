"""``TranscribeModel``: a Deepgram-compatible live ``/v1/listen`` on pocketsphinx.

Served on ``/v1/listen`` and on the sidecar's default path. The query is validated at the
handshake (unknown or invalid parameters: HTTP 400 with a Deepgram-style JSON body). In a session:

* binary frames are audio (raw with ``encoding``/``sample_rate``, else WAV); a small binary frame
  that parses as a JSON object with a ``type`` is a control message (the Deepgram container does
  the same); an empty binary frame is the legacy end of stream (= ``CloseStream``);
* text frames are control messages: ``KeepAlive`` (no reply), ``Finalize`` (optional
  ``channel``: flush, results with ``from_finalize: true``, the socket stays open),
  ``CloseStream`` (the remaining results, one ``Metadata``, close 1000). Other ``type`` values
  and text that is not a JSON object with a ``type`` are ignored (forward compatible; they still
  count as activity, as Deepgram's "text message");
* no audio and no text for ``idle_timeout`` seconds: close 1011 with Deepgram's NET-0001 text;
* audio that cannot be decoded (not a WAV without ``encoding``, a hostile header): close 1008
  with a DATA-0000 reason; a WAV with more channels for ``multichannel`` than this worker has
  decoders: close 1008 with the reason; no free decoder within ``pool_wait`` seconds: close 1013
  (busy: try again later). Decoders are taken at the first audio, not at the handshake, so a
  stream that ends just before another starts does not refuse it: the newcomer waits;
* the peer vanishing cancels the session; its decoders go back to the pool, reset.

``POST /invocations`` takes a whole WAV and answers with Deepgram's pre-recorded JSON shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import trio

from sagebidi_perf.container.model import (
    DEFAULT_BIDI_PATH,
    InvokeResponse,
    Model,
    RejectUpgrade,
    Session,
    UpgradeRequest,
)
from sagebidi_perf.models.transcribe.channel import ChannelTranscriber
from sagebidi_perf.models.transcribe.config import TranscribeSettings
from sagebidi_perf.models.transcribe.engine import Engine, PocketsphinxEngine, quiet_logs
from sagebidi_perf.models.transcribe.frontend import Frontend
from sagebidi_perf.models.transcribe.listen import (
    AudioError,
    CapacityError,
    ListenStream,
    RequestError,
    parse_control,
)
from sagebidi_perf.models.transcribe.messages import MessageBuilder, iso_now
from sagebidi_perf.models.transcribe.options import ListenOptions, OptionsError, parse_options
from sagebidi_perf.models.transcribe.pool import DecoderPool
from sagebidi_perf.models.transcribe.wav import WavError, parse_wav

__all__ = ["LISTEN_PATH", "NET_0001", "TranscribeModel"]

log = logging.getLogger("sagebidi.transcribe")

LISTEN_PATH = "/v1/listen"
NET_0001 = (
    "NET-0001 Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
DATA_0000 = "DATA-0000 The payload cannot be decoded as audio: "
#: Binary frames up to this size are checked for a JSON control message.
MAX_BINARY_CONTROL = 4096


def _reject(exc: OptionsError, request_id: str) -> RejectUpgrade:
    body = json.dumps(
        {
            "err_code": exc.code,
            "err_msg": exc.message,
            "parameter": exc.parameter,
            "request_id": request_id,
        }
    )
    return RejectUpgrade(
        body,
        400,
        content_type="application/json",
        headers=(("dg-request-id", request_id), ("dg-error", exc.message)),
    )


class TranscribeModel(Model):
    """Live speech to text with Deepgram's ``/v1/listen`` protocol.

    Arguments override ``settings``, which default to the ``SAGEBIDI_TRANSCRIBE_*`` environment
    (see ``config.py``); ``engine`` replaces the pocketsphinx engine altogether.
    """

    paths = (LISTEN_PATH, DEFAULT_BIDI_PATH)

    def __init__(
        self,
        *,
        decoders: int | None = None,
        lm: str | None = None,
        dictionary: str | None = None,
        idle_timeout: float | None = None,
        pool_wait: float | None = None,
        engine: Engine | None = None,
        settings: TranscribeSettings | None = None,
    ) -> None:
        overrides = {
            name: value
            for name, value in (
                ("decoders", decoders),
                ("lm", lm),
                ("dictionary", dictionary),
                ("idle_timeout", idle_timeout),
                ("pool_wait", pool_wait),
            )
            if value is not None
        }
        if settings is None:
            settings = TranscribeSettings.from_env(None, **overrides)
        elif overrides:
            settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
        self.settings = settings
        self.engine: Engine = engine or PocketsphinxEngine(
            lm=settings.lm, dictionary=settings.dictionary
        )
        self.pool = DecoderPool(self.engine, settings.decoders)

    async def load(self) -> None:
        if not self.pool.loaded:
            quiet_logs()
            await self.pool.fill()

    def describe(self) -> Mapping[str, object]:
        info = self.engine.info
        return {
            "model": type(self).__name__,
            "paths": list(self.paths),
            "engine": f"{info.name} {info.version}",
            "decoders": self.pool.size,
        }

    def check_upgrade(self, request: UpgradeRequest) -> None:
        try:
            options = parse_options(request.query)
        except OptionsError as exc:
            raise _reject(exc, str(uuid.uuid4())) from None
        if (
            options.multichannel
            and options.encoding is not None
            and options.channels > self.pool.size
        ):
            raise _reject(
                OptionsError(
                    "channels",
                    f"multichannel audio with {options.channels} channels needs as many "
                    f"decoders; this server has {self.pool.size} per worker",
                ),
                str(uuid.uuid4()),
            )

    async def session(self, session: Session) -> None:
        options = parse_options(session.request.query)  # validated by check_upgrade
        builder = MessageBuilder(options, self.engine.info, str(uuid.uuid4()))

        async def send(message: dict[str, Any]) -> None:
            await session.send(json.dumps(message))

        stream = ListenStream(options, builder, self.pool, send, pool_wait=self.settings.pool_wait)
        try:
            await self._serve(session, stream)
        finally:
            stream.release()

    async def _serve(self, session: Session, stream: ListenStream) -> None:
        idle = self.settings.idle_timeout
        while True:
            message: str | bytes | None = None
            with trio.move_on_after(idle) as waited:
                message = await session.receive()
            if waited.cancelled_caught:
                await session.close(1011, NET_0001)
                return
            if message is None:
                return  # the peer closed (or vanished)
            control: dict[str, Any] | None = None
            if isinstance(message, str):
                control = parse_control(message)
                if control is None:
                    continue
            elif not message:
                await stream.finish()
                await session.close(1000)
                return
            elif len(message) <= MAX_BINARY_CONTROL and message[:1] == b"{":
                control = parse_control(message)
            if control is None:
                assert isinstance(message, bytes | bytearray | memoryview)
                try:
                    await stream.audio(bytes(message))
                except AudioError as exc:
                    await session.close(1008, DATA_0000 + str(exc))
                    return
                except RequestError as exc:
                    await session.close(1008, str(exc))
                    return
                except CapacityError as exc:
                    await session.close(1013, str(exc))
                    return
                continue
            kind = control["type"]
            if kind == "CloseStream":
                await stream.finish()
                await session.close(1000)
                return
            if kind == "Finalize":
                channel = control.get("channel")
                await stream.finalize(channel if isinstance(channel, int) else None)
            # KeepAlive, and unknown types: nothing to do (the idle timer restarts).

    async def invoke(self, body: bytes, content_type: str | None) -> InvokeResponse:
        """A whole WAV in, Deepgram's pre-recorded response out (downmixed, one channel)."""
        try:
            fmt, samples = parse_wav(body)
        except WavError as exc:
            raise RejectUpgrade(f"expected a WAV file: {exc}", 415) from None
        options = ListenOptions()
        builder = MessageBuilder(options, self.engine.info, str(uuid.uuid4()))
        created = iso_now()
        streams = []
        with trio.move_on_after(self.settings.pool_wait):
            streams = await self.pool.acquire(1)
        if not streams:
            raise RejectUpgrade("no free decoder: try again later", 503)
        try:
            frontend = Frontend(fmt.sample_format, fmt.sample_rate, fmt.channels, split=False)
            transcriber = ChannelTranscriber(streams[0], builder, options)
            finals: list[dict[str, Any]] = []
            step = 32_000  # 1 s per worker-thread call (see listen.py)
            pcm = frontend.process(samples)[0] + frontend.flush()[0]
            for offset in range(0, len(pcm), step):
                finals += await trio.to_thread.run_sync(
                    transcriber.feed, pcm[offset : offset + step]
                )
            finals += await trio.to_thread.run_sync(transcriber.end)
        finally:
            self.pool.release(streams)
        words: list[dict[str, Any]] = []
        for result in finals:
            if result["type"] == "Results" and result["is_final"]:
                words += result["channel"]["alternatives"][0]["words"]
        confidence = sum(w["confidence"] for w in words) / len(words) if words else 0.0
        metadata = builder.metadata(
            sha256=hashlib.sha256(body).hexdigest(),
            created=created,
            duration=frontend.duration,
            channels=1,
        )
        del metadata["type"]  # the pre-recorded response's metadata has no type
        alternative = {
            "transcript": " ".join(w["word"] for w in words),
            "confidence": round(confidence, 4),
            "words": words,
        }
        answer = {"metadata": metadata, "results": {"channels": [{"alternatives": [alternative]}]}}
        return InvokeResponse(json.dumps(answer).encode(), "application/json")
