"""The load tester's pure parts, in-process (they import neither Locust nor gevent): histograms
and their exact merge, SLOs, the report, the inputs (WAV, prompts, echo frames), error kinds."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from sagebidi_perf.client.errors import (
    ClientTimeoutError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    ModelError,
    ModelStreamError,
    ServiceError,
    TLSError,
)
from sagebidi_perf.loadtest.errors import MismatchError, ScenarioError, error_kind
from sagebidi_perf.loadtest.metrics import HIGHEST_US, Histogram, Metrics
from sagebidi_perf.loadtest.options import Settings, expand_audio, parse_pace
from sagebidi_perf.loadtest.report import build_report, format_summary, render_html
from sagebidi_perf.loadtest.slo import SloCheck, evaluate, parse_slos
from sagebidi_perf.loadtest.sources import (
    EchoPattern,
    load_clip,
    load_clips,
    load_prompts,
    word_errors,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_pure_modules_import_neither_locust_nor_gevent() -> None:
    # In a fresh interpreter: other tests of this session may have imported gevent themselves.
    pure = ("errors", "metrics", "options", "report", "slo", "sources")
    code = "; ".join(f"import sagebidi_perf.loadtest.{name}" for name in pure)
    code += "; import sys; print(sorted({'locust', 'gevent'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# -- histograms --------------------------------------------------------------------------------


def test_batched_recording_equals_hdrhistogram_record_value() -> None:
    rng = random.Random(5)
    edges = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, HIGHEST_US]
    values = edges + [int(rng.lognormvariate(7, 3)) for _ in range(30_000)]
    ours, ref = Histogram(), HdrHistogram(1, HIGHEST_US, 3)
    for v in values:
        ours.record_us(v)
        ref.record_value(min(v, HIGHEST_US))
    assert ours.count == len(values)
    assert list(ours.hdr.counts) == list(ref.counts)
    assert ours.hdr.get_min_value() == ref.get_min_value()
    assert ours.hdr.get_max_value() == ref.get_max_value()
    for p in (50, 99, 99.9, 100):
        assert ours.percentile_us(p) == ref.get_value_at_percentile(p)


def test_out_of_range_values_are_clamped() -> None:
    h = Histogram()
    h.record_us(-5)
    h.record_us(HIGHEST_US * 10)
    h.record(-0.5)
    assert h.count == 3
    assert h.hdr.get_min_value() == 0
    assert h.hdr.get_max_value() == h.hdr.get_highest_equivalent_value(HIGHEST_US)


def test_deltas_merge_exactly_across_workers() -> None:
    rng = random.Random(9)
    workers = [Metrics() for _ in range(3)]
    everything = Histogram()
    master = Metrics()
    for round_ in range(4):
        for w in workers:
            for _ in range(rng.randrange(0, 3000)):
                v = int(rng.expovariate(1 / 5000))
                w.hists["round_trip"].record_us(v)
                everything.record_us(v)
            w.frame_sent(3200, 1000.0 + round_)
            w.error("timeout", 1000.0 + round_, "receive timed out")
            # Through msgpack-like plain data, as Locust ships it.
            master.merge(json.loads(json.dumps(_jsonable(w.take_delta()))))
    merged = master.hists["round_trip"]
    assert merged.count == everything.count
    assert list(merged.hdr.counts) == list(everything.hdr.counts)
    for p in (50, 90, 99, 99.99):
        assert merged.percentile_us(p) == everything.percentile_us(p)
    assert master.counters["frames_sent"] == 12
    assert master.counters["bytes_sent"] == 12 * 3200
    assert master.errors == {"timeout": 12}
    assert sum(row.frames_sent for row in master.timeline.values()) == 12
    # A delta is a delta: the workers start over after each.
    assert all(w.hists["round_trip"].count == 0 and not w.errors for w in workers)


def _jsonable(delta: dict[str, object]) -> dict[str, object]:
    hists = delta["hists"]
    assert isinstance(hists, dict)
    return {**delta, "hists": {k: v.decode() for k, v in hists.items()}}


def test_timeline_keeps_ttft_per_second() -> None:
    m = Metrics()
    base = 2_000_000.0 - m.offset  # the perf_counter reading of wall-clock second 2,000,000
    m.ttft(0.010, base + 0.25)
    m.ttft(0.030, base + 0.75)
    m.ttft(0.020, base + 1.25)
    assert sorted(m.timeline) == [2_000_000, 2_000_001]
    assert m.timeline[2_000_000].ttft_us == [10_000, 30_000]
    assert m.timeline[2_000_001].ttft_us == [20_000]
    assert m.hists["ttft"].count == 3


# -- SLOs ----------------------------------------------------------------------------------------


def test_slo_parsing() -> None:
    checks = parse_slos(
        {
            "slo_ttft_p99_ms": 500.0,
            "slo_round_trip_p99_9_ms": 0.0,  # off
            "slo_error_rate": 0.01,
            "slo": "transcript_lag.p95<=800, itl.p99.9 <= 20ms",
        }
    )
    assert SloCheck("ttft", 99.0, 500.0) in checks
    assert SloCheck("error_rate", None, 0.01) in checks
    assert SloCheck("transcript_lag", 95.0, 800.0) in checks
    assert SloCheck("itl", 99.9, 20.0) in checks
    assert len(checks) == 4
    with pytest.raises(ValueError, match=r"METRIC\.pNN<=MS"):
        parse_slos({"slo": "latency.p99<=5"})
    with pytest.raises(ValueError, match=r"METRIC\.pNN<=MS"):
        parse_slos({"slo": "ttft.p99>=5"})


def test_slo_evaluation() -> None:
    m = Metrics()
    for ms in range(1, 101):
        m.record("ttft", ms / 1000)
    m.session_started(1.0)
    m.session_started(1.0)
    m.session_ended(2.0, ok=True)
    m.session_ended(2.0, ok=False)
    results = {
        r.check: r
        for r in evaluate(
            [
                SloCheck("ttft", 99.0, 100.0),
                SloCheck("ttft", 50.0, 40.0),
                SloCheck("error_rate", None, 0.5),
                SloCheck("error_rate", None, 0.1),
                SloCheck("first_final", 99.0, 1e9),
            ],
            m,
        )
    }
    assert results[SloCheck("ttft", 99.0, 100.0)].ok
    assert results[SloCheck("ttft", 99.0, 100.0)].actual == pytest.approx(99.0, rel=1e-3)
    assert not results[SloCheck("ttft", 50.0, 40.0)].ok
    assert results[SloCheck("error_rate", None, 0.5)].ok
    assert results[SloCheck("error_rate", None, 0.5)].actual == 0.5
    assert not results[SloCheck("error_rate", None, 0.1)].ok
    # Nothing measured is not a pass.
    assert not results[SloCheck("first_final", 99.0, 1e9)].ok
    assert evaluate([SloCheck("error_rate", None, 1.0)], Metrics())[0].ok is False


# -- options -------------------------------------------------------------------------------------


def test_pace_and_settings() -> None:
    assert parse_pace("realtime") == 1.0
    assert parse_pace("2x") == 2.0
    assert parse_pace("0.5") == 0.5
    assert parse_pace("max") == float("inf")
    for bad in ("fast-ish", "0x", "-1", "nan"):
        with pytest.raises(ValueError, match="--pace"):
            parse_pace(bad)
    s = Settings.from_options(None)
    assert s.speed == 1.0
    assert s.frame_bytes == 3200
    assert s.slos == ()
    with pytest.raises(ValueError, match="--speech-end"):
        Settings.from_options(type("O", (), {"speech_end": "never"})())
    with pytest.raises(ValueError, match="--frame-rate"):
        Settings.from_options(type("O", (), {"frame_rate": 0.0})())


def test_expand_audio(tmp_path: Path) -> None:
    found = expand_audio("fixtures/speech/*.wav", ROOT)
    assert [p.name for p in found][:2] == ["klatt6_16k.wav", "klatt6_16k_stereo.wav"]
    folder = expand_audio("fixtures/speech/librivox", ROOT)
    assert len(folder) == 5
    assert all(p.suffix == ".wav" for p in folder)
    both = expand_audio(f"{found[0]}, fixtures/speech/librivox", ROOT)
    assert both[0] == found[0]
    assert len(both) == 6
    with pytest.raises(ValueError, match="no such file"):
        load_clips(expand_audio("nope.wav", tmp_path), 100)
    with pytest.raises(ValueError, match="matched no WAV"):
        load_clips(expand_audio("*.wav", tmp_path), 100)


# -- inputs --------------------------------------------------------------------------------------


def _wav(path: Path, samples: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def test_clips_are_mono_linear16_in_zero_copy_frames(tmp_path: Path) -> None:
    tone = (np.sin(np.arange(8000) / 5) * 10000).astype(np.int16)
    mono = load_clip(_wav(tmp_path / "m.wav", tone, 8000), frame_ms=100)
    assert mono.sample_rate == 8000
    assert mono.duration == pytest.approx(1.0)
    assert len(mono.frames) == 10
    assert all(f.nbytes == 1600 for f in mono.frames)
    assert all(f.obj is mono.frames[0].obj for f in mono.frames)
    assert mono.frame_seconds == pytest.approx(0.1)
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    down = load_clip(_wav(tmp_path / "s.wav", stereo, 8000, channels=2), frame_ms=100)
    halved = np.frombuffer(down.pcm, dtype=np.int16)
    assert np.max(np.abs(halved.astype(int) - tone.astype(int) // 2)) <= 1
    u8 = load_clip(_wav(tmp_path / "u.wav", np.full(800, 255, np.uint8), 8000, width=1), 100)
    assert np.frombuffer(u8.pcm, dtype=np.int16)[0] == 127 << 8
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        load_clip(tmp_path / "bad.wav", 100)
    _wav(tmp_path / "f.wav", np.zeros(10, np.int32), 8000, width=4)
    with pytest.raises(ValueError, match="32-bit"):
        load_clip(tmp_path / "f.wav", 100)
    ref = load_clip(
        ROOT / "fixtures/speech/librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 100
    )
    assert ref.reference == "he was not an ill disposed young man"


def test_prompts(tmp_path: Path) -> None:
    assert all(json.loads(p)["prompt"] for p in load_prompts(""))
    path = tmp_path / "p.jsonl"
    path.write_text('"hi"\n\n# skip\n{"prompt": "x", "max_tokens": 3}\n')
    assert [json.loads(p) for p in load_prompts(str(path))] == [
        {"prompt": "hi"},
        {"prompt": "x", "max_tokens": 3},
    ]
    for text, match in (
        ("{oops\n", "not JSON"),
        ("3\n", "JSON string or object"),
        ("\n", "no prompts"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_prompts(str(path))


def test_echo_pattern_checks_every_byte() -> None:
    pattern = EchoPattern(3200)
    frame = pattern.frame(7, 42)
    assert len(frame) == 3200
    assert struct.unpack_from("<QQ", frame) == (7, 42)
    assert pattern.check(frame, 7, 42) is None
    assert "header" in (pattern.check(frame, 7, 43) or "")
    assert "header" in (pattern.check(frame, 8, 42) or "")
    for i in (16, 1000, 3199):
        bad = bytearray(frame)
        bad[i] ^= 1
        assert "payload bytes differ" in (pattern.check(bytes(bad), 7, 42) or "")
    assert "3199 bytes back" in (pattern.check(frame[:-1], 7, 42) or "")
    assert "text message" in (pattern.check("x" * 3200, 7, 42) or "")
    tiny = EchoPattern(4)
    assert tiny.check(tiny.frame(1, 2), 1, 2) is None
    assert len(tiny.frame(1, 2)) == 4


def test_word_errors() -> None:
    assert word_errors("He was not an ILL-disposed man.", "he was not an ill disposed man") == (
        0,
        7,
    )
    assert word_errors("a b c", "a b c") == (0, 3)
    assert word_errors("a b c", "") == (3, 3)
    assert word_errors("", "x y") == (2, 0)
    assert word_errors("the cat sat", "the bat sat on") == (2, 3)


# -- error kinds ---------------------------------------------------------------------------------


def test_error_kinds() -> None:
    assert error_kind(ModelError(424, error_type="ModelError")) == "http_424"
    assert error_kind(ServiceError(403)) == "http_403"
    assert error_kind(HandshakeError(400, b"bad query")) == "http_400"
    assert (
        error_kind(ModelStreamError("ModelStreamError", error_code="1011"))
        == "ModelStreamError:1011"
    )
    assert error_kind(ConnectionClosedError("closed", 1011, "crash")) == "close_1011"
    assert error_kind(ConnectionClosedError("lost", 1006)) == "close_1006"
    assert error_kind(ClientTimeoutError("receive", 5)) == "timeout"
    assert error_kind(TLSError("untrusted")) == "tls"
    assert error_kind(ConnectError("refused")) == "connect"
    assert error_kind(MismatchError("frame 3 differs")) == "mismatch"
    assert error_kind(ScenarioError("no_metadata", "x")) == "no_metadata"
    assert error_kind(KeyError("x")) == "KeyError"


# -- the report ----------------------------------------------------------------------------------


def test_report_json_text_and_html() -> None:
    m = Metrics()
    base = 1_000_000.0 - m.offset  # perf_counter reading of wall-clock second 1,000,000
    for i in range(50):
        t = base + i * 0.1
        m.frame_sent(3200, t)
        m.frame_received(3200, t + 0.002)
        m.record("round_trip", 0.002 + i / 1e5)
        m.record("jitter", 0.0005)
    m.session_started(base)
    m.ttft(0.004, base + 0.004)
    m.session_ended(base + 5.0, ok=True)
    m.session_started(base + 1)
    m.session_ended(base + 2.0, ok=False)
    m.error("mismatch", base + 2, "frame 3: <script>alert(1)</script>")
    results = evaluate([SloCheck("round_trip", 99.0, 1.0)], m)
    report = build_report(m, {"host": "ws://x", "users": 2}, results)
    json.dumps(report)  # JSON-ready
    assert report["sessions"] == {
        "started": 2,
        "ok": 1,
        "failed": 1,
        "unfinished": 0,
        "error_rate": 0.5,
    }
    assert report["throughput"]["frames_sent"] == 50
    assert report["meta"]["active_seconds"] == 6
    assert report["throughput"]["frames_sent_per_s"] == pytest.approx(50 / 6, rel=1e-3)
    assert [row["frames_sent"] for row in report["timeline"][:5]] == [10] * 5
    assert report["timeline"][0]["ttft_p50_ms"] == 4.0
    assert report["latency_ms"]["round_trip"]["count"] == 50
    assert report["slo_passed"] is False
    text = format_summary(report)
    assert "round trip" in text
    assert "SLO FAIL: round_trip p99 <= 1 ms" in text
    assert "error rate 50.00%" in text
    page = render_html(report)
    assert page.count("<svg") >= 4
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    empty = build_report(Metrics(), {})
    assert empty["sessions"]["error_rate"] is None
    assert empty["timeline"] == []
    assert "<svg" not in render_html(empty)
