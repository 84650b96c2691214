"""RIFF/WAVE header sniffing and the audio front end (sample formats, downmix, resampling)."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagebidi_perf.models.transcribe.frontend import Frontend, decode_samples
from sagebidi_perf.models.transcribe.wav import (
    MAX_HEADER_BYTES,
    WavError,
    WavFormat,
    WavHeaderParser,
    parse_wav,
)
from transcribe_helpers import SPEECH


def chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def fmt_body(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def extensible(subtag: int, channels: int, rate: int, bits: int) -> bytes:
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return (
        fmt_body(0xFFFE, channels, rate, bits)
        + struct.pack("<HHI", 22, bits, 0)
        + struct.pack("<H", subtag)
        + guid_tail
    )


def riff(*chunks: bytes, size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def data_chunk(samples: bytes, size: int | None = None) -> bytes:
    return b"data" + struct.pack("<I", len(samples) if size is None else size) + samples


SAMPLES = bytes(range(64))


def test_the_stdlib_writer() -> None:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(SAMPLES)
    fmt, samples = parse_wav(out.getvalue())
    assert fmt == WavFormat("s16", 44100, 2, len(SAMPLES), 44)
    assert samples == SAMPLES


def test_the_committed_fixtures() -> None:
    for name, rate, channels in [
        ("klatt6_16k.wav", 16000, 1),
        ("klatt6_8k.wav", 8000, 1),
        ("klatt6_44k1.wav", 44100, 1),
        ("klatt6_48k.wav", 48000, 1),
        ("klatt6_16k_stereo.wav", 16000, 2),
    ]:
        data = (SPEECH / name).read_bytes()
        fmt, samples = parse_wav(data)
        with wave.open(str(SPEECH / name)) as w:
            assert (
                (fmt.sample_rate, fmt.channels)
                == (rate, channels)
                == (
                    w.getframerate(),
                    w.getnchannels(),
                )
            )
            assert samples == w.readframes(w.getnframes())


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (fmt_body(1, 1, 8000, 8), ("u8", 8000, 1)),
        (fmt_body(1, 2, 16000, 16), ("s16", 16000, 2)),
        (fmt_body(1, 1, 48000, 24), ("s24", 48000, 1)),
        (fmt_body(1, 6, 48000, 32), ("s32", 48000, 6)),
        (fmt_body(3, 1, 22050, 32), ("f32", 22050, 1)),
        (fmt_body(7, 1, 8000, 8), ("mulaw", 8000, 1)),
        (fmt_body(6, 1, 8000, 8), ("alaw", 8000, 1)),
        (extensible(1, 2, 48000, 16), ("s16", 48000, 2)),
        (extensible(3, 2, 96000, 32), ("f32", 96000, 2)),
        (fmt_body(1, 1, 16000, 16) + b"\0\0", ("s16", 16000, 1)),  # 18-byte fmt (cbSize 0)
    ],
)
def test_sample_formats(fmt: bytes, expected: tuple[str, int, int]) -> None:
    header, samples = parse_wav(riff(chunk(b"fmt ", fmt), data_chunk(SAMPLES)))
    assert (header.sample_format, header.sample_rate, header.channels) == expected
    assert samples == SAMPLES


def test_chunks_before_fmt_and_data_are_skipped() -> None:
    info = chunk(b"LIST", b"INFOISFT" + b"\x05\0\0\0Lavf\0")  # odd size: padded
    data = riff(
        chunk(b"JUNK", b"\0" * 28),
        chunk(b"fmt ", fmt_body()),
        info,
        chunk(b"fact", b"\x10\0\0\0"),
        data_chunk(SAMPLES),
    )
    fmt, samples = parse_wav(data)
    assert fmt.sample_format == "s16"
    assert samples == SAMPLES
    assert fmt.header_size == len(data) - len(SAMPLES)


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_open_ended_data_sizes(size: int) -> None:
    parser = WavHeaderParser()
    result = parser.feed(riff(chunk(b"fmt ", fmt_body()), data_chunk(SAMPLES, size), size=size))
    assert result is not None
    assert result[0].data_size is None
    assert result[1] == SAMPLES


def test_a_declared_data_size_is_respected() -> None:
    trailing = chunk(b"LIST", b"INFO")
    fmt, samples = parse_wav(riff(chunk(b"fmt ", fmt_body()), data_chunk(SAMPLES), trailing))
    assert fmt.data_size == len(SAMPLES)
    assert samples == SAMPLES


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60))
def test_header_split_anywhere(sizes: list[int]) -> None:
    data = riff(
        chunk(b"LIST", b"x" * 301),
        chunk(b"fmt ", fmt_body(1, 2, 44100, 16)),
        chunk(b"JUNK", b"\0" * 7),
        data_chunk(SAMPLES, 0),
    )
    parser = WavHeaderParser()
    pos = 0
    result = None
    for n in [*sizes, len(data)]:
        piece = data[pos : pos + n]
        pos += len(piece)
        result = parser.feed(piece)
        if result is not None:
            break
    assert result is not None
    fmt, first = result
    assert (fmt.sample_format, fmt.sample_rate, fmt.channels) == ("s16", 44100, 2)
    assert first == data[len(data) - len(SAMPLES) : pos]


def test_one_byte_frames() -> None:
    data = riff(chunk(b"fmt ", fmt_body()), data_chunk(SAMPLES))
    parser = WavHeaderParser()
    results = [parser.feed(data[i : i + 1]) for i in range(len(data) - len(SAMPLES))]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] is not None
    assert results[-1][1] == b""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OggS\0\x02" + b"\0" * 40, "no RIFF header"),
        (b"\x00\x01\x02\x03" * 16, "no RIFF header"),
        (b'{"type": "Finalize"}', "no RIFF header"),
        (b"RIFF\x24\0\0\0AVI LIST", "not WAVE"),
        (riff(data_chunk(SAMPLES)), "before the fmt chunk"),
        (riff(chunk(b"fmt ", fmt_body()[:14]), data_chunk(b"")), "too short"),
        (riff(chunk(b"fmt ", b"\0" * 2000), data_chunk(b"")), "fmt chunk of 2000 bytes"),
        (riff(chunk(b"fmt ", fmt_body(0x55, 1, 16000, 16)), data_chunk(b"")), "format tag"),
        (riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 12)), data_chunk(b"")), "12 bits"),
        (riff(chunk(b"fmt ", fmt_body(3, 1, 16000, 64)), data_chunk(b"")), "float32 only"),
        (riff(chunk(b"fmt ", fmt_body(7, 1, 8000, 16)), data_chunk(b"")), "must be 8 bits"),
        (riff(chunk(b"fmt ", fmt_body(1, 0, 16000, 16)), data_chunk(b"")), "channel count"),
        (riff(chunk(b"fmt ", fmt_body(1, 65, 16000, 16)), data_chunk(b"")), "channel count"),
        (riff(chunk(b"fmt ", fmt_body(1, 1, 0, 16)), data_chunk(b"")), "sample rate"),
        (riff(chunk(b"fmt ", fmt_body(1, 1, 10**9, 16)), data_chunk(b"")), "sample rate"),
        (
            riff(chunk(b"fmt ", fmt_body(0xFFFE, 2, 48000, 16)), data_chunk(b"")),
            "EXTENSIBLE fmt chunk too short",
        ),
        (
            riff(
                chunk(b"fmt ", struct.pack("<HHIIHH", 1, 2, 16000, 64000, 3, 16)),
                data_chunk(b""),
            ),
            "block_align",
        ),
        (
            riff(chunk(b"fmt ", fmt_body()), chunk(b"fmt ", fmt_body()), data_chunk(b"")),
            "more than one fmt",
        ),
        (riff(chunk(b"fmt ", fmt_body()), b"\x00\xff\x10\x01\0\0\0\0"), "corrupt"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        WavHeaderParser().feed(data)


def test_hostile_chunk_sizes_are_refused_without_buffering() -> None:
    # A LIST chunk claiming 4 GB before the data: refused as soon as its header is seen.
    parser = WavHeaderParser()
    head = riff(chunk(b"fmt ", fmt_body()))
    with pytest.raises(WavError, match="before the data chunk"):
        parser.feed(head + b"LIST" + struct.pack("<I", 0xFFFFFFF0))
    # Many small chunks adding up to more than the limit: refused too.
    parser = WavHeaderParser()
    parser.feed(head)
    junk = chunk(b"JUNK", b"\0" * 65536)
    many = MAX_HEADER_BYTES // len(junk)
    for _ in range(many - 1):
        assert parser.feed(junk) is None
    with pytest.raises(WavError, match="before the data chunk"):
        parser.feed(junk * 2)


def test_a_big_skipped_chunk_streams_through_without_being_kept() -> None:
    parser = WavHeaderParser()
    head = riff(chunk(b"fmt ", fmt_body())) + b"LIST" + struct.pack("<I", 500_000)
    assert parser.feed(head) is None
    assert parser.feed(b"\0" * 499_999) is None
    assert len(parser._buf) == 0
    result = parser.feed(b"\0" + data_chunk(SAMPLES))
    assert result is not None
    assert result[1] == SAMPLES


def test_truncated_whole_file() -> None:
    data = riff(chunk(b"fmt ", fmt_body()), data_chunk(SAMPLES))
    for cut in (0, 3, 11, 12, 20, 35):
        with pytest.raises(WavError, match="truncated"):
            parse_wav(data[:cut])


def test_feed_after_done_is_an_error() -> None:
    parser = WavHeaderParser()
    assert parser.feed(riff(chunk(b"fmt ", fmt_body()), data_chunk(b""))) is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


# -- the front end -----------------------------------------------------------------------------


def test_sample_decoding_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    s16 = rng.integers(-32768, 32767, 100, dtype=np.int16)
    assert np.array_equal(decode_samples(s16.tobytes(), "s16"), s16)
    s32 = rng.integers(-(2**31), 2**31 - 1, 100, dtype=np.int32)
    np.testing.assert_allclose(decode_samples(s32.tobytes(), "s32"), s32 / 2**31, atol=1e-7)
    f32 = rng.uniform(-1, 1, 100).astype(np.float32)
    assert np.array_equal(decode_samples(f32.tobytes(), "f32"), f32)
    u8 = rng.integers(0, 255, 100, dtype=np.uint8)
    np.testing.assert_allclose(decode_samples(u8.tobytes(), "u8"), (u8 - 128.0) / 128.0)
    s24 = rng.integers(-(2**23), 2**23 - 1, 100, dtype=np.int32)
    packed = b"".join(int(v).to_bytes(3, "little", signed=True) for v in s24)
    np.testing.assert_allclose(decode_samples(packed, "s24"), s24 / 2**23, atol=1e-7)


def test_g711_known_values() -> None:
    # ITU-T G.711: mu-law 0xFF and A-law 0xD5 are (near) zero; 0x00/0x80 are the extremes.
    mulaw = decode_samples(bytes([0xFF, 0x7F, 0x00, 0x80]), "mulaw") * 32768
    assert list(mulaw.round()) == [0, 0, -32124, 32124]
    alaw = decode_samples(bytes([0xD5, 0x55, 0xAA, 0x2A]), "alaw") * 32768
    assert list(alaw.round()) == [8, -8, 32256, -32256]


def test_passthrough_keeps_split_samples() -> None:
    frontend = Frontend("s16", 16000, 1, split=False)
    data = np.arange(100, dtype=np.int16).tobytes()
    out = b"".join(frontend.process(data[i : i + 3])[0] for i in range(0, len(data), 3))
    assert out == data
    assert frontend.frames_in == 100


def test_downmix_split_and_resample() -> None:
    left = (np.sin(np.arange(4800) / 10) * 10000).astype(np.int16)
    right = np.zeros(4800, dtype=np.int16)
    stereo = np.stack([left, right], axis=1).reshape(-1).tobytes()
    split = Frontend("s16", 48000, 2, split=True)
    outs = [split.process(stereo[i : i + 1001]) for i in range(0, len(stereo), 1001)]
    tails = split.flush()
    channel0 = np.frombuffer(b"".join(o[0] for o in outs) + tails[0], dtype=np.int16)
    channel1 = np.frombuffer(b"".join(o[1] for o in outs) + tails[1], dtype=np.int16)
    assert len(channel0) == len(channel1) == 1600  # 0.1 s at 16 kHz
    assert not channel1.any()
    assert np.abs(channel0).max() > 8000
    mixed = Frontend("s16", 48000, 2, split=False)
    out = np.frombuffer(mixed.process(stereo)[0] + mixed.flush()[0], dtype=np.int16)
    assert len(out) == 1600
    assert 4000 < np.abs(out).max() < 6000  # the mean of a full and a silent channel
    assert mixed.duration == pytest.approx(0.1)
