"""The README's model example is real code: extract it, serve it, talk to it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import trio

from container_helpers import start_server
from sagebidi_perf.container import load_model
from wsproto_client import Closed, connect

README = Path(__file__).resolve().parent.parent / "README.md"


def example(name: str) -> str:
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", README.read_text(), re.S
    )
    assert match, f"README has no example block {name}"
    return match.group(1)


@pytest.fixture
def shout_module(tmp_path: Path) -> str:
    (tmp_path / "shout.py").write_text(example("shout.py"))
    sys.path.insert(0, str(tmp_path))
    yield "shout:Shout"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("shout", None)


async def test_readme_model_example(nursery: trio.Nursery, shout_module: str) -> None:
    server = await start_server(nursery, load_model(shout_module))
    client = await connect(server.port)
    try:
        await client.send("hello sagemaker")
        assert await client.receive() == "HELLO SAGEMAKER"
        await client.send(b"\x00binary stays binary")
        assert await client.receive() == b"\x00binary stays binary"
        await client.close()
        assert await client.receive() == Closed(1000, "")
    finally:
        await client.aclose()
