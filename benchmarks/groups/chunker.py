"""Zero-copy chunker: split 10 s of 16 kHz mono int16 audio (320,000 bytes) into 20 ms (640 B)
and 100 ms (3,200 B) frames. Peers: the list comprehension over ``memoryview`` slices, and
``np.split`` of an int16 array view; both are zero-copy too. Before timing, every contestant's
frames must be byte-identical to the memoryview loop's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import harness
import numpy as np
import ours
from harness import OURS, Config

RATE = 16_000
FRAMES_MS = (20, 100)


def memoryview_loop(frame_bytes: int) -> Callable[[Any], list[memoryview]]:
    def split(buf: Any) -> list[memoryview]:
        mv = memoryview(buf)
        return [mv[i : i + frame_bytes] for i in range(0, len(mv), frame_bytes)]

    return split


def numpy_split(frame_bytes: int) -> Callable[[Any], list[Any]]:
    step = frame_bytes // 2

    def split(buf: Any) -> list[Any]:
        a = np.frombuffer(buf, dtype=np.int16)
        return np.split(a, range(step, len(a), step))

    return split


def run(cfg: Config) -> dict[str, Any]:
    notes: list[str] = []
    seconds = 0.5 if cfg.quick else 10.0
    data = os.urandom(int(RATE * seconds) * 2)
    cases = []
    for ms in FRAMES_MS:
        fb = RATE * ms // 1000 * 2
        splitters: dict[str, Callable[[Any], Any]] = {}
        try:
            splitters[OURS] = ours.chunker(fb)
        except ours.Unavailable as exc:
            if not notes:
                notes.append(f"ours unavailable: {exc}")
        splitters["memoryview loop"] = memoryview_loop(fb)
        splitters["np.split"] = numpy_split(fb)
        expect = [bytes(f) for f in splitters["memoryview loop"](data)]
        for name, split in splitters.items():
            got = [bytes(memoryview(f).cast("B")) for f in split(data)]
            if got != expect:
                raise AssertionError(f"{name} frames differ from the memoryview loop ({ms} ms)")
        ops = {name: _bind(split, data) for name, split in splitters.items()}
        cases.append(
            harness.case(
                f"chunker/split/{ms}ms",
                f"{seconds:g} s into {ms} ms frames",
                ops,
                work=f"split {len(data)} B into {len(expect)} frames of {fb} B (list of views)",
                check="frames byte-identical to the memoryview loop",
            )
        )
    return {"cases": harness.run_cases(cases, cfg), "notes": notes}


def _bind(split: Callable[[Any], Any], data: bytes) -> Callable[[], object]:
    return lambda: split(data)
