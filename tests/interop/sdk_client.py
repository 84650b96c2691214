"""Drives the official SageMaker bidi client (aws-sdk-sagemaker-runtime-http2 0.12.0 + awscrt),
unmodified, against the gateway. Runs in .venv-sdk312 (Python >= 3.12), started by
tests/test_gateway_interop.py; prints one JSON object with what it saw.

    python sdk_client.py CASE --endpoint-url https://localhost:PORT --endpoint-name NAME \\
        [--access-key-id K --secret-access-key S] [--region us-west-2]

The CA is trusted through SSL_CERT_FILE (set by the caller). Every await is bounded: the real
client can hang (reference §8), and a hang must fail the test, not stall it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aws_sdk_sagemaker_runtime_http2.client import AsyncSageMakerRuntimeHTTP2Client
from aws_sdk_sagemaker_runtime_http2.config import AsyncSageMakerRuntimeHTTP2Config
from aws_sdk_sagemaker_runtime_http2.models import (
    InvokeEndpointWithBidirectionalStreamInput,
    RequestPayloadPart,
    RequestStreamEventPayloadPart,
    ResponseStreamEventPayloadPart,
)
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig

T = TypeVar("T")
STEP = 15.0  # seconds any single await may take


async def bounded(what: str, aw: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(aw, STEP)
    except TimeoutError:
        raise TimeoutError(f"{what} did not finish within {STEP:g} s") from None


def part(data: bytes, data_type: str | None = None, state: str | None = None) -> Any:
    return RequestStreamEventPayloadPart(
        value=RequestPayloadPart(bytes_=data, data_type=data_type, completion_state=state)
    )


def describe(event: Any) -> dict[str, Any]:
    if isinstance(event, ResponseStreamEventPayloadPart):
        v = event.value
        return {
            "bytes_hex": v.bytes_.hex() if len(v.bytes_) <= 256 else None,
            "len": len(v.bytes_),
            "sha": __import__("hashlib").sha256(v.bytes_).hexdigest(),
            "data_type": v.data_type,
            "completion_state": v.completion_state,
        }
    return {"unknown": type(event).__name__}


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": getattr(exc, "message", None) or str(exc),
        "error_code": getattr(exc, "error_code", None),
        "original_status_code": getattr(exc, "original_status_code", None),
    }


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client: AsyncSageMakerRuntimeHTTP2Client | None = None
        self.stream: Any = None
        self.output_stream: Any = None
        self.output: Any = None

    async def open(self, secret: str | None = None, **inputs: Any) -> None:
        a = self.args
        config = await AsyncSageMakerRuntimeHTTP2Config.resolve(
            region=a.region,
            endpoint_uri=a.endpoint_url,
            aws_access_key_id=a.access_key_id,
            aws_secret_access_key=secret or a.secret_access_key,
            transport=AWSCRTHTTPClient(client_config=AWSCRTHTTPClientConfig(force_http_2=True)),
        )
        self.client = AsyncSageMakerRuntimeHTTP2Client(config=config)
        self.stream = await bounded(
            "invoke",
            self.client.invoke_endpoint_with_bidirectional_stream(
                InvokeEndpointWithBidirectionalStreamInput(endpoint_name=a.endpoint_name, **inputs)
            ),
        )

    async def await_output(self) -> None:
        self.output, self.output_stream = await bounded("await_output", self.stream.await_output())

    async def send(
        self, data: bytes, data_type: str | None = None, state: str | None = None
    ) -> None:
        await bounded("send", self.stream.input_stream.send(part(data, data_type, state)))

    async def receive(self) -> Any:
        return await bounded("receive", self.output_stream.receive())

    async def close_input(self) -> None:
        await bounded("input_stream.close", self.stream.input_stream.close())

    async def close(self) -> None:
        if self.client is not None:
            await bounded("client.close", self.client.close())


async def receive_n(s: Session, n: int) -> list[dict[str, Any]]:
    return [describe(await s.receive()) for _ in range(n)]


async def finish(s: Session, result: dict[str, Any]) -> None:
    """Clean close: the final signed frame, then receive() must return None."""
    await s.close_input()
    result["after_close"] = describe(ev) if (ev := await s.receive()) is not None else None
    await s.close()


async def case_text(s: Session, result: dict[str, Any]) -> None:
    await s.open(target_variant="AllTraffic")
    messages = [b'{"type":"hello","text":"first"}', "héllo wörld".encode(), b"third"]
    await s.send(messages[0], "UTF8", "COMPLETE")
    await s.await_output()
    result["invoked_production_variant"] = s.output.invoked_production_variant
    for m in messages[1:]:
        await s.send(m, "UTF8", "COMPLETE")
    result["received"] = await receive_n(s, len(messages))
    result["sent"] = [m.hex() for m in messages]
    await finish(s, result)


async def case_binary(s: Session, result: dict[str, Any]) -> None:
    await s.open()
    await s.send(bytes(range(256)), "BINARY")
    await s.send(b"\x00\xffno data type")  # absent DataType -> binary
    await s.await_output()
    result["received"] = await receive_n(s, 2)
    result["sent"] = [bytes(range(256)).hex(), b"\x00\xffno data type".hex()]
    await finish(s, result)


async def case_partial(s: Session, result: dict[str, Any]) -> None:
    await s.open()
    await s.send(b"frag-a|", "UTF8", "PARTIAL")
    await s.send(b"frag-b|", "UTF8", "PARTIAL")
    await s.send(b"frag-c", "UTF8", "COMPLETE")
    await s.await_output()
    # The echo model reassembles: one COMPLETE part with the whole message.
    result["echo"] = await receive_n(s, 1)
    # And a reply the model streams as fragments comes back as PARTIAL, PARTIAL, COMPLETE.
    await s.send(b"fragments:one:two:three", "UTF8", "COMPLETE")
    result["fragments"] = await receive_n(s, 3)
    await finish(s, result)


async def case_path_query(s: Session, result: dict[str, Any]) -> None:
    await s.open(model_invocation_path="v1/listen", model_query_string="model=nova-3&language=en")
    await s.send(b"whoami", "UTF8", "COMPLETE")
    await s.await_output()
    result["received"] = await receive_n(s, 1)
    await finish(s, result)


async def case_greeting(s: Session, result: dict[str, Any]) -> None:
    await s.open(model_invocation_path="v1/greet")
    await s.await_output()
    result["received"] = await receive_n(s, 1)  # before we sent anything
    await finish(s, result)


async def case_big(s: Session, result: dict[str, Any]) -> None:
    await s.open()
    payload = bytes((i * 7 + 3) % 251 for i in range(1_000_000))
    result["sent_sha"] = __import__("hashlib").sha256(payload).hexdigest()
    await s.send(payload, "BINARY", "COMPLETE")
    await s.await_output()
    result["received"] = await receive_n(s, 1)
    await finish(s, result)


async def case_refused(s: Session, result: dict[str, Any]) -> None:
    await s.open(model_query_string="reject=yes")
    await s.send(b"never delivered", "UTF8")
    try:
        await s.await_output()
    except Exception as exc:
        result["error"] = error_info(exc)
    await s.close()


async def case_container_close(s: Session, result: dict[str, Any]) -> None:
    await s.open()
    await s.send(b"before", "UTF8", "COMPLETE")
    await s.await_output()
    result["received"] = await receive_n(s, 1)
    await s.send(b"close:1011:model crashed", "UTF8", "COMPLETE")
    try:
        result["unexpected"] = describe(await s.receive())
    except Exception as exc:
        result["error"] = error_info(exc)
    result["after_error"] = "none" if await s.receive() is None else "event"
    await s.close()


async def case_bad_secret(s: Session, result: dict[str, Any]) -> None:
    await s.open(secret="not-the-secret")
    await s.send(b"must not reach the container", "UTF8")
    try:
        await s.await_output()
        result["unexpected"] = "no error"
    except Exception as exc:
        result["error"] = error_info(exc)
    await s.close()


async def case_clean_close(s: Session, result: dict[str, Any]) -> None:
    await s.open()
    await s.send(b"only one", "UTF8", "COMPLETE")
    await s.await_output()
    result["received"] = await receive_n(s, 1)
    started = time.monotonic()
    await finish(s, result)
    result["close_seconds"] = round(time.monotonic() - started, 3)


CASES = {
    "text": case_text,
    "binary": case_binary,
    "partial": case_partial,
    "path_query": case_path_query,
    "greeting": case_greeting,
    "big": case_big,
    "refused": case_refused,
    "container_close": case_container_close,
    "bad_secret": case_bad_secret,
    "clean_close": case_clean_close,
}


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--endpoint-name", default="my-endpoint")
    p.add_argument("--access-key-id", default="AKIDEXAMPLE")
    p.add_argument("--secret-access-key", default="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    p.add_argument("--region", default="us-west-2")
    args = p.parse_args()
    result: dict[str, Any] = {"case": args.case}
    session = Session(args)
    try:
        await CASES[args.case](session, result)
        result["completed"] = True
    except Exception as exc:
        result["completed"] = False
        result["failure"] = error_info(exc)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
