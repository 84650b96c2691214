"""Zero-copy frame chunking and pacing schedules (sagebidi_perf.chunking)."""

from __future__ import annotations

import array
import gc
import itertools
import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagebidi_perf.chunking import (
    FrameIterator,
    audio_pacing_schedule,
    chunk_audio,
    chunk_bytes,
    frame_bytes_for,
    frame_seconds,
    iter_chunks,
    pacing_schedule,
    uniform_pacing_schedule,
)
from sagebidi_perf.errors import InvalidArgumentError

DATA = bytes(range(256)) * 4  # 1024 bytes, every byte distinct within 256


def _sources(data: bytes) -> dict[str, object]:
    return {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "memoryview-of-bytearray": memoryview(bytearray(data)),
        "numpy-uint8": np.frombuffer(data, dtype=np.uint8).copy(),
        "numpy-int16": np.frombuffer(data, dtype=np.int16).copy(),
        "numpy-float32-2d": np.frombuffer(data, dtype=np.float32).reshape(16, -1).copy(),
        "array-int32": array.array("i", data),
    }


def _exporter(source: object) -> object:
    """The object a memoryview over `source` reports as `.obj`."""
    return source.obj if isinstance(source, memoryview) else source


# --- input types and zero-copy -------------------------------------------------------------


@pytest.mark.parametrize("kind", list(_sources(DATA)))
def test_every_buffer_type_chunks_to_the_same_bytes(kind: str) -> None:
    source = _sources(DATA)[kind]
    frames = chunk_bytes(source, 100)  # type: ignore[arg-type]
    assert all(isinstance(f, memoryview) for f in frames)
    assert [len(f) for f in frames] == [100] * 10 + [24]
    assert b"".join(frames) == DATA
    assert all(f.format == "B" and f.ndim == 1 for f in frames)


@pytest.mark.parametrize("kind", list(_sources(DATA)))
def test_frames_are_views_of_the_source(kind: str) -> None:
    source = _sources(DATA)[kind]
    frames = chunk_bytes(source, 64)  # type: ignore[arg-type]
    exporter = _exporter(source)
    assert all(f.obj is exporter for f in frames)


def test_writes_to_the_source_show_through_the_frames() -> None:
    source = bytearray(DATA)
    frames = chunk_bytes(source, 100)
    source[0] = 0xEE
    source[1023] = 0xDD
    source[500:502] = b"\x01\x02"
    assert frames[0][0] == 0xEE
    assert frames[-1][-1] == 0xDD
    assert bytes(frames[5][0:2]) == b"\x01\x02"
    # ... and the other way round: frames of a writable source are writable views.
    assert not frames[3].readonly
    frames[3][0] = 0x42
    assert source[300] == 0x42


def test_frames_of_immutable_sources_are_read_only() -> None:
    frames = chunk_bytes(DATA, 100)
    assert all(f.readonly for f in frames)
    with pytest.raises(TypeError):
        frames[0][0] = 1


def test_numpy_frames_share_the_array_memory() -> None:
    audio = np.arange(16_000, dtype=np.int16)
    frames = chunk_audio(audio, sample_rate=16_000, frame_ms=100)
    assert len(frames) == 10
    exporter: object = audio
    for i, frame in enumerate(frames):
        assert frame.obj is exporter
        samples = np.frombuffer(frame, dtype=np.int16)
        assert np.shares_memory(samples, audio)
        assert samples[0] == i * 1600
    audio[1600] = -7
    assert np.frombuffer(frames[1], dtype=np.int16)[0] == -7


def test_a_bytearray_cannot_be_resized_while_frames_are_alive() -> None:
    source = bytearray(DATA)
    frames = chunk_bytes(source, 100)
    with pytest.raises(BufferError):
        source.extend(b"more")
    del frames
    gc.collect()
    source.extend(b"more")  # the export is gone with the frames
    assert len(source) == len(DATA) + 4


def test_chunking_allocates_no_frame_sized_memory() -> None:
    """5 MiB in 1 MiB frames: a copying implementation would keep another 5 MiB alive."""
    big = bytearray(5 << 20)
    frames = chunk_bytes(big, 1 << 20)
    assert len(frames) == 5
    assert sum(sys.getsizeof(f) for f in frames) < 10_000  # memoryview headers only
    assert all(f.obj is big for f in frames)


# --- boundaries, short and padded last frame -----------------------------------------------


@pytest.mark.parametrize(
    ("length", "size", "expected"),
    [
        (10, 5, [5, 5]),
        (11, 5, [5, 5, 1]),
        (4, 5, [4]),
        (5, 5, [5]),
        (6, 1, [1] * 6),
        (1, 1, [1]),
        (10, 2**62, [10]),
    ],
)
def test_exact_boundaries(length: int, size: int, expected: list[int]) -> None:
    data = bytes(range(length))
    frames = chunk_bytes(data, size)
    assert [len(f) for f in frames] == expected
    offsets = [sum(expected[:i]) for i in range(len(expected))]
    pieces = [data[o : o + n] for o, n in zip(offsets, expected, strict=True)]
    assert [bytes(f) for f in frames] == pieces


def test_padded_last_frame_is_a_zero_filled_copy() -> None:
    source = bytearray(b"abcdefghij")
    frames = chunk_bytes(source, 4, pad=True)
    assert [bytes(f) for f in frames] == [b"abcd", b"efgh", b"ij\0\0"]
    assert frames[0].obj is source
    assert frames[1].obj is source
    assert frames[2].obj is not source  # the one copied frame
    source[8] = ord("X")
    assert bytes(frames[2]) == b"ij\0\0"
    assert frames[1][0] == ord("e")


def test_padding_leaves_whole_frames_alone() -> None:
    source = bytearray(12)
    frames = chunk_bytes(source, 4, pad=True)
    assert all(f.obj is source for f in frames)


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b""), np.zeros(0, np.int16)])
def test_empty_input_gives_no_frames(empty: object, pad: bool) -> None:
    assert chunk_bytes(empty, 10, pad=pad) == []  # type: ignore[arg-type]
    assert chunk_audio(empty, sample_rate=16_000, pad=pad) == []  # type: ignore[arg-type]
    assert list(iter_chunks(empty, 10, pad=pad)) == []  # type: ignore[arg-type]


def test_a_memoryview_slice_with_an_offset() -> None:
    base = bytearray(DATA)
    window = memoryview(base)[100:350]
    frames = chunk_bytes(window, 100)
    assert [bytes(f) for f in frames] == [DATA[100:200], DATA[200:300], DATA[300:350]]
    assert all(f.obj is base for f in frames)


# --- audio framing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "frame_ms", "expected"),
    [
        ({"sample_rate": 16_000}, 100.0, 3200),
        ({"sample_rate": 16_000}, 20.0, 640),
        ({"sample_rate": 8_000, "sample_width": 1}, 20.0, 160),
        ({"sample_rate": 44_100, "channels": 2}, 10.0, 1764),
        ({"sample_rate": 44_100, "channels": 2}, 0.5, 88),  # 22.05 sample frames → 22
        ({"sample_rate": 48_000, "channels": 6, "sample_width": 4}, 20.0, 960 * 24),
        ({"sample_rate": 8_000, "channels": 3, "sample_width": 3}, 1.99, 15 * 9),
        ({"sample_rate": 10_000}, 0.1, 2),  # exactly one sample despite binary rounding
        ({"sample_rate": 22_050}, 33.3, 734 * 2),  # 734.265 → 734
    ],
)
def test_frame_bytes_for(fmt: dict[str, int], frame_ms: float, expected: int) -> None:
    assert frame_bytes_for(frame_ms=frame_ms, **fmt) == expected


def test_frame_bytes_for_defaults_are_16_bit_mono_100_ms() -> None:
    assert frame_bytes_for(sample_rate=16_000) == 3200


def test_audio_frames_hold_whole_sample_frames() -> None:
    stereo = np.arange(2 * 1000, dtype=np.int16).reshape(1000, 2)  # 1000 sample frames
    frames = chunk_audio(stereo, sample_rate=44_100, channels=2, frame_ms=2.0)
    # 88.2 → 88 sample frames of 4 bytes; 1000 = 11 * 88 + 32.
    assert [len(f) for f in frames] == [352] * 11 + [128]
    for frame in frames:
        pairs = np.frombuffer(frame, dtype=np.int16).reshape(-1, 2)
        assert (pairs[:, 1] - pairs[:, 0] == 1).all()  # left and right never split
    padded = chunk_audio(stereo, sample_rate=44_100, channels=2, frame_ms=2.0, pad=True)
    assert [len(f) for f in padded] == [352] * 12
    assert bytes(padded[-1][128:]) == bytes(224)


def test_unaligned_audio_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="buffer length 1001 is not a multiple of"):
        chunk_audio(bytes(1001), sample_rate=16_000)
    with pytest.raises(InvalidArgumentError, match="multiple of the sample frame size 6"):
        chunk_audio(bytes(6 * 100 + 2), sample_rate=8_000, channels=3, sample_width=2)
    with pytest.raises(InvalidArgumentError, match="frame_bytes=5"):
        chunk_bytes(bytes(20), 5, align=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "sample_rate must be at least 1"),
        ({"sample_rate": -16_000}, "sample_rate must not be negative"),
        ({"sample_rate": 2**24 + 1}, "sample_rate must be at most"),
        ({"sample_rate": 16_000, "channels": 0}, "channels must be at least 1"),
        ({"sample_rate": 16_000, "channels": 70_000}, "channels must be at most"),
        ({"sample_rate": 16_000, "sample_width": 0}, "sample_width must be at least 1"),
        ({"sample_rate": 16_000, "sample_width": 9}, "sample_width must be at most"),
        ({"sample_rate": 16_000, "frame_ms": 0.0}, "frame_ms must be a positive"),
        ({"sample_rate": 16_000, "frame_ms": -20.0}, "frame_ms must be a positive"),
        ({"sample_rate": 16_000, "frame_ms": math.nan}, "frame_ms must be a positive"),
        ({"sample_rate": 16_000, "frame_ms": math.inf}, "frame_ms must be a positive"),
        ({"sample_rate": 16_000, "frame_ms": 4e6}, "frame_ms must be at most"),
        ({"sample_rate": 16_000, "frame_ms": 0.05}, "shorter than one sample frame"),
    ],
)
def test_hostile_audio_formats(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        frame_bytes_for(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=message):
        chunk_audio(bytes(64), **kwargs)  # type: ignore[arg-type]


# --- hostile arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "error", "message"),
    [
        (0, InvalidArgumentError, "frame_bytes must be at least 1"),
        (-1, InvalidArgumentError, "frame_bytes must not be negative"),
        (-(2**63), InvalidArgumentError, "frame_bytes must not be negative"),
        (2**64, OverflowError, None),
        (1.5, TypeError, None),
        ("10", TypeError, None),
        (None, TypeError, None),
    ],
)
def test_hostile_frame_sizes(size: object, error: type[Exception], message: str | None) -> None:
    with pytest.raises(error, match=message):
        chunk_bytes(b"abc", size)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        iter_chunks(b"abc", size)  # type: ignore[arg-type]


def test_padding_refuses_absurd_frame_sizes() -> None:
    """A padded last frame is allocated at full size: 2**62 bytes must not be attempted."""
    with pytest.raises(InvalidArgumentError, match="with pad=True"):
        chunk_bytes(b"abc", 2**62, pad=True)
    with pytest.raises(InvalidArgumentError, match="with pad=True"):
        iter_chunks(b"abc", 2**31, pad=True)
    assert [bytes(f) for f in chunk_bytes(b"abc", 2**62)] == [b"abc"]


@pytest.mark.parametrize(("align", "message"), [(0, "align must be at least 1"), (-2, "negative")])
def test_hostile_align(align: int, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        chunk_bytes(b"abcd", 2, align=align)


@pytest.mark.parametrize("not_a_buffer", ["text", [1, 2, 3], 42, None, object()])
def test_objects_without_the_buffer_protocol_are_rejected(not_a_buffer: object) -> None:
    with pytest.raises(TypeError):
        chunk_bytes(not_a_buffer, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        chunk_audio(not_a_buffer, sample_rate=16_000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "array_view",
    [
        pytest.param(lambda: np.arange(100, dtype=np.int16)[::2], id="strided"),
        pytest.param(lambda: np.arange(100, dtype=np.int16)[::-1], id="reversed"),
        pytest.param(lambda: np.zeros((10, 10), dtype=np.int16, order="F"), id="fortran-2d"),
        pytest.param(lambda: np.zeros((10, 10), dtype=np.int16)[:, :5], id="column-slice"),
        pytest.param(lambda: memoryview(bytes(20))[::2], id="strided-memoryview"),
    ],
)
def test_non_contiguous_buffers_are_rejected(array_view: object) -> None:
    source = array_view()  # type: ignore[operator]
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        chunk_bytes(source, 4)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        iter_chunks(source, 4)


def test_contiguous_multidimensional_arrays_are_viewed_as_flat_bytes() -> None:
    grid = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    frames = chunk_bytes(grid, 16)
    assert b"".join(frames) == grid.tobytes()
    exporter: object = grid
    assert all(f.obj is exporter for f in frames)
    scalar = np.array(7, dtype=np.int32)
    assert b"".join(chunk_bytes(scalar, 3)) == scalar.tobytes()


# --- iterator form -------------------------------------------------------------------------


def test_iter_chunks_yields_what_chunk_bytes_returns() -> None:
    source = bytearray(DATA)
    it = iter_chunks(source, 100, pad=True)
    assert isinstance(it, FrameIterator)
    assert iter(it) is it
    assert len(it) == 11
    frames = []
    for expected_left in range(10, -1, -1):
        frames.append(next(it))
        assert len(it) == expected_left
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    assert [bytes(f) for f in frames] == [bytes(f) for f in chunk_bytes(source, 100, pad=True)]
    assert all(f.obj is source for f in frames[:-1])


def test_iter_chunks_checks_arguments_at_once_and_releases_the_buffer_when_done() -> None:
    with pytest.raises(InvalidArgumentError):
        iter_chunks(bytes(11), 4, align=2)
    source = bytearray(10)
    it = iter_chunks(source, 4)
    with pytest.raises(BufferError):
        source.append(0)  # exported while iterating
    assert sum(1 for _frame in it) == 3  # frames are dropped as they come
    source.append(0)  # exhausted: the export is released though `it` is alive
    assert len(it) == 0


# --- pacing --------------------------------------------------------------------------------


def test_pacing_real_time_and_faster() -> None:
    durations = [0.1, 0.1, 0.05, 0.2]
    assert pacing_schedule(durations) == pytest.approx([0.0, 0.1, 0.2, 0.25])
    assert pacing_schedule(durations, speed=2.0, start=5.0) == pytest.approx(
        [5.0, 5.05, 5.1, 5.125]
    )
    assert pacing_schedule(durations, speed=0.5) == pytest.approx([0.0, 0.2, 0.4, 0.5])
    assert pacing_schedule(durations, speed=math.inf, start=3.0) == [3.0] * 4
    assert pacing_schedule([]) == []
    assert pacing_schedule(np.array(durations)) == pytest.approx([0.0, 0.1, 0.2, 0.25])


def test_uniform_pacing() -> None:
    assert uniform_pacing_schedule(4, 0.02) == pytest.approx([0.0, 0.02, 0.04, 0.06])
    assert uniform_pacing_schedule(3, 0.1, speed=10.0, start=1.0) == pytest.approx(
        [1.0, 1.01, 1.02]
    )
    assert uniform_pacing_schedule(3, 0.1, speed=math.inf, start=1.0) == [1.0] * 3
    assert uniform_pacing_schedule(0, 0.1) == []


def test_pacing_does_not_drift_over_an_hour_of_10_ms_frames() -> None:
    times = pacing_schedule([0.01] * 360_000)
    assert times[-1] == pytest.approx(3599.99, abs=1e-9)
    naive = 0.0
    for _ in range(359_999):
        naive += 0.01
    assert abs(naive - 3599.99) > 1e-9  # the plain running sum does drift


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, -math.inf])
def test_pacing_rejects_bad_speeds(speed: float) -> None:
    with pytest.raises(InvalidArgumentError, match="speed must be positive"):
        pacing_schedule([0.1], speed=speed)
    with pytest.raises(InvalidArgumentError, match="speed must be positive"):
        uniform_pacing_schedule(2, 0.1, speed=speed)


def test_pacing_rejects_bad_durations_and_starts() -> None:
    with pytest.raises(InvalidArgumentError, match="frame duration 2"):
        pacing_schedule([0.1, 0.1, -0.1])
    for bad in (math.nan, math.inf):
        with pytest.raises(InvalidArgumentError, match="frame duration 0"):
            pacing_schedule([bad])
        with pytest.raises(InvalidArgumentError, match="start must be a finite"):
            pacing_schedule([0.1], start=bad)
        with pytest.raises(InvalidArgumentError, match="frame_seconds must be"):
            uniform_pacing_schedule(2, bad)
    with pytest.raises(InvalidArgumentError, match="n_frames must not be negative"):
        uniform_pacing_schedule(-1, 0.1)
    with pytest.raises(InvalidArgumentError, match="n_frames must be at most"):
        uniform_pacing_schedule(2**24 + 1, 0.1)
    with pytest.raises(TypeError):
        pacing_schedule("0.1")  # type: ignore[arg-type]


def test_audio_pacing_schedule_follows_frame_lengths() -> None:
    audio = np.zeros(16_000 + 800, dtype=np.int16)  # 1.05 s at 16 kHz
    frames = chunk_audio(audio, sample_rate=16_000, frame_ms=100)
    times = audio_pacing_schedule(frames, sample_rate=16_000)
    assert times == pytest.approx([i * 0.1 for i in range(11)])
    fast = audio_pacing_schedule(frames, sample_rate=16_000, speed=4.0, start=2.0)
    assert fast == pytest.approx([2.0 + i * 0.025 for i in range(11)])
    assert frame_seconds(3200, sample_rate=16_000) == 0.1
    assert frame_seconds(1764, sample_rate=44_100, channels=2) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="positive"):
        frame_seconds(10, sample_rate=0)


# --- properties ----------------------------------------------------------------------------


@given(
    samples=st.integers(min_value=0, max_value=2000),
    align=st.integers(min_value=1, max_value=12),
    frame_units=st.integers(min_value=1, max_value=300),
    pad=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_frames_reassemble_the_source(
    samples: int, align: int, frame_units: int, pad: bool, seed: int
) -> None:
    data = np.random.default_rng(seed).integers(0, 256, samples * align, dtype=np.uint8)
    source = bytearray(data.tobytes())
    frame_bytes = frame_units * align
    frames = chunk_bytes(source, frame_bytes, pad=pad, align=align)
    assert len(frames) == -(-len(source) // frame_bytes)
    assert all(len(f) == frame_bytes for f in frames[:-1])
    assert all(len(f) % align == 0 for f in frames)
    assert all(f.obj is source for f in frames[:-1])
    joined = b"".join(frames)
    if pad:
        assert all(len(f) == frame_bytes for f in frames)
        assert joined == bytes(source) + bytes(len(joined) - len(source))
    else:
        assert joined == bytes(source)
        assert all(f.obj is source for f in frames)
        assert all(0 < len(f) <= frame_bytes for f in frames)
    assert [bytes(f) for f in iter_chunks(source, frame_bytes, pad=pad, align=align)] == [
        bytes(f) for f in frames
    ]


@given(
    durations=st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=200),
    speed=st.floats(min_value=0.01, max_value=100.0),
    start=st.floats(min_value=-1e6, max_value=1e6),
)
def test_pacing_schedule_properties(durations: list[float], speed: float, start: float) -> None:
    times = pacing_schedule(durations, speed=speed, start=start)
    assert len(times) == len(durations)
    if times:
        assert times[0] == start
    assert all(a <= b for a, b in itertools.pairwise(times))
    expected = [start + math.fsum(durations[:i]) / speed for i in range(len(durations))]
    assert times == pytest.approx(expected, rel=1e-12, abs=1e-6)
