"""Speech-to-text benchmark: the ``transcribe`` model under N real-time streams, beside the bare
engine on the same audio, in one run.

    .venv/bin/python benchmarks/transcribe_bench.py             # make bench-transcribe (~3-4 min)
    .venv/bin/python benchmarks/transcribe_bench.py --quick     # seconds (smoke test)
    .venv/bin/python benchmarks/transcribe_bench.py --levels 1,3,6 --audio librivox

Engine limit (no server), in a long-lived child process pinned to one core:

* ``bare``: the reference's pocketsphinx loop (``Decoder(samprate=16000, fwdflat=False)``,
  ``Endpointer(window=0.09, ratio=0.67, LOOSE)`` (what the model uses for Deepgram's default
  ``endpointing=10``), CMN reset per stream, ``process_raw`` per VAD
  speech frame, ``hyp()`` every 0.25 s of speech, ``end_utt`` + ``seg()`` at each endpoint);
* ``engine``: the model's own ``PocketsphinxStream`` (the same recipe plus its bookkeeping).

Each pass feeds the whole audio in 100 ms chunks as fast as possible; RTF = CPU seconds
(``time.process_time``) / audio seconds. First ``--passes`` passes of each (alternating), then
one of each just before and just after every server level: a level's overhead is computed
against the mean of its adjacent passes (the machine's state at that time), and the engine's
limit is the best (minimum) pass, as neighbours on a shared machine only ever add time.
Streams per core at the engine's limit = 1 / RTF. One more pass feeds the model's engine at
real time to give the engine's own final latency (the endpointer's hangover is in it); the
server's added latency = its p50 - that p50.

Server: ``sagebidi serve --model transcribe --workers W`` (SO_REUSEPORT; each worker loads
``SAGEBIDI_TRANSCRIBE_DECODERS`` = max level decoders so an uneven spread of connections over
the workers never waits for a decoder) pinned to the usable cores. At each level N, N clients
(threads, blocking ``connect_ws`` on ``/v1/listen?encoding=linear16&sample_rate=16000&channels=1
&interim_results=true``) stream the audio at real time in 100 ms frames on a drift-free
schedule, each rotated by i/N of its length (so speech is spread over time rather than all
streams talking at once), then ``CloseStream`` and read until Metadata and the close.

* server RTF = server CPU (utime+stime of every server process, /proc) over the level / audio
  seconds streamed; overhead = server RTF / engine RTF - 1 (the runtime's cost: WebSocket,
  queues, resampling front end, JSON; "vs bare" also counts the model's engine bookkeeping);
* final latency = arrival of a ``speech_final`` Results - the send time of the frame holding its
  window's end (``start + duration``): the time from the utterance's audio (as the server
  delimits it, endpointing silence included) having been sent to its final;
* tail = Metadata arrival - CloseStream sent (grows when the server falls behind);
* pacing lag = actual - scheduled send (client health: if it grows the client is the limit).

Results: a table on stdout and benchmarks/results/transcribe-<UTC timestamp>.json
(methodology block from benchmarks/harness.py). Absolute numbers move with the neighbours on a
shared 2-core VM; the engine/server ratio from one run is the stable figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import harness

from sagebidi_perf.models.transcribe.engine import vad_setting

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEECH = ROOT / "fixtures" / "speech"
LEVELS = (1, 2, 4, 6)
WORKERS = 2
FRAME_MS = 100
PARTIAL_INTERVAL = 0.25
# Deepgram's default `endpointing` (10 ms): the server and both engine passes use the VAD window
# the model picks for it, so that they compare like with like.
ENDPOINTING = 0.01
CLK_TCK = os.sysconf("SC_CLK_TCK")
USABLE_CORES = sorted(os.sched_getaffinity(0))
QUERY = "encoding=linear16&sample_rate=16000&channels=1&interim_results=true"
CLOSE_STREAM = '{"type": "CloseStream"}'
NICE = -10


def raise_priority() -> bool:
    """nice -10 if allowed: the other jobs of a shared machine then take less of our CPU."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------- audio


def load_audio(name: str) -> bytes:
    """16 kHz mono s16 PCM: the klatt6 fixture, or the five LibriVox utterances back to back."""
    files = (
        [SPEECH / "klatt6_16k.wav"]
        if name == "klatt6"
        else sorted((SPEECH / "librivox").glob("*.wav"))
    )
    out = bytearray()
    for f in files:
        with wave.open(str(f), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), f
            out += w.readframes(w.getnframes())
    return bytes(out)


def rotate(pcm: bytes, fraction: float) -> bytes:
    cut = int(len(pcm) * fraction) // 2 * 2
    return pcm[cut:] + pcm[:cut]


# ----------------------------------------------------------------------------- engine limit


def _bare_pass(decoder: Any, cmn0: str, pcm: bytes) -> int:
    """The reference's streaming loop (Part B3) over ``pcm``; returns the finals' word count."""
    import pocketsphinx

    window, ratio = vad_setting(ENDPOINTING)
    ep = pocketsphinx.Endpointer(
        window=window, ratio=ratio, vad_mode=pocketsphinx.Vad.LOOSE, sample_rate=16000
    )
    decoder.set_cmn(cmn0)
    fb = ep.frame_bytes
    buf = bytearray()
    utt_open = False
    last_partial = 0.0
    audio_t = 0.0
    words = 0
    chunk = 16000 * 2 * FRAME_MS // 1000
    for off in range(0, len(pcm), chunk):
        buf += pcm[off : off + chunk]
        while len(buf) >= fb:
            frame = bytes(buf[:fb])
            del buf[:fb]
            audio_t += ep.frame_length
            speech = ep.process(frame)
            if speech is None:
                continue
            if not utt_open:
                decoder.start_utt()
                utt_open = True
                last_partial = audio_t
            decoder.process_raw(speech, False, False)
            if ep.in_speech:
                if audio_t - last_partial >= PARTIAL_INTERVAL:
                    last_partial = audio_t
                    decoder.hyp()
            else:
                decoder.end_utt()
                utt_open = False
                words += sum(1 for s in decoder.seg() if not s.word.startswith(("<", "[")))
    if utt_open:
        decoder.end_utt()
        words += sum(1 for s in decoder.seg() if not s.word.startswith(("<", "[")))
    return words


def _engine_pass(stream: Any, pcm: bytes) -> int:
    from sagebidi_perf.models.transcribe.engine import Hypothesis

    stream.reset(partial_interval=PARTIAL_INTERVAL, endpointing=ENDPOINTING)
    chunk = 16000 * 2 * FRAME_MS // 1000
    words = 0
    for off in range(0, len(pcm), chunk):
        for event in stream.feed(pcm[off : off + chunk]):
            if isinstance(event, Hypothesis) and event.final:
                words += len(event.words)
    for event in stream.flush():
        if isinstance(event, Hypothesis) and event.final:
            words += len(event.words)
    return words


def _engine_realtime(stream: Any, pcm: bytes) -> list[float]:
    """The model's engine fed at real time (100 ms chunks, drift-free schedule); per final,
    the time it came out minus the time the chunk holding its window end was fed."""
    from sagebidi_perf.models.transcribe.engine import Hypothesis

    stream.reset(partial_interval=PARTIAL_INTERVAL, endpointing=ENDPOINTING)
    chunk = 16000 * 2 * FRAME_MS // 1000
    fed_at: list[float] = []
    latencies: list[float] = []
    start = time.perf_counter()
    for i, off in enumerate(range(0, len(pcm), chunk)):
        delay = start + i * FRAME_MS / 1000 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        fed_at.append(time.perf_counter())
        events = stream.feed(pcm[off : off + chunk])
        now = time.perf_counter()
        for event in events:
            if isinstance(event, Hypothesis) and event.final and event.cause == "vad":
                j = min(int((event.end - 1e-6) * 1000 // FRAME_MS), len(fed_at) - 1)
                latencies.append(now - fed_at[j])
    stream.flush()
    return latencies


def engine_child(audio: str, seconds: float | None) -> int:
    """The child (``--engine-child``): loads both loops once, then answers one line per request
    on stdin (``bare``, ``engine``, ``realtime``) with one JSON line on stdout."""
    import pocketsphinx

    from sagebidi_perf.models.transcribe.engine import PocketsphinxEngine, quiet_logs

    quiet_logs()
    pcm = load_audio(audio)
    if seconds is not None:
        pcm = pcm[: int(seconds * 16000) * 2]
    decoder = pocketsphinx.Decoder(samprate=16000, fwdflat=False)
    cmn0 = decoder.get_cmn()
    stream = PocketsphinxEngine().create()
    print(json.dumps({"ready": True, "audio_seconds": len(pcm) / 32000}), flush=True)
    for line in sys.stdin:
        what = line.strip()
        t0 = time.process_time()
        if what == "bare":
            out: dict[str, Any] = {"words": _bare_pass(decoder, cmn0, pcm)}
        elif what == "engine":
            out = {"words": _engine_pass(stream, pcm)}
        elif what == "realtime":
            out = {"latencies": _engine_realtime(stream, pcm)}
        else:
            return 2
        out["cpu_seconds"] = time.process_time() - t0
        print(json.dumps(out), flush=True)
    return 0


class EngineChild:
    """The engine child process, pinned to one core, asked for one pass at a time (between the
    server's levels, so the two never compete, and drift hits both alike)."""

    def __init__(self, audio: str, seconds: float, core: int | None) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--engine-child", "--audio", audio]
        cmd += ["--seconds", str(seconds)]
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
            preexec_fn=raise_priority,
        )
        hello = self._read()
        self.audio_seconds: float = hello["audio_seconds"]
        self.cpu: dict[str, list[float]] = {"bare": [], "engine": []}
        self.words: dict[str, int] = {}

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"engine child exited with {self.proc.wait(timeout=10)}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def ask(self, what: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return self._read()

    def passes(self, n: int) -> dict[str, float]:
        """``n`` passes of each loop (alternating order); the mean RTF of each loop."""
        got: dict[str, list[float]] = {"bare": [], "engine": []}
        for i in range(n):
            for name in ("bare", "engine") if i % 2 == 0 else ("engine", "bare"):
                r = self.ask(name)
                got[name].append(r["cpu_seconds"])
                self.cpu[name].append(r["cpu_seconds"])
                self.words[name] = r["words"]
        return {k: statistics.fmean(v) / self.audio_seconds for k, v in got.items()}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"audio_seconds": self.audio_seconds}
        for name, ts in self.cpu.items():
            rtf = min(ts) / self.audio_seconds
            out[name] = {
                "cpu_seconds": ts,
                "rtf": rtf,
                "rtf_median": statistics.median(ts) / self.audio_seconds,
                "streams_per_core": 1 / rtf,
                "words": self.words.get(name),
            }
        return out

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for p in out:
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                out.extend(int(c) for c in children)
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime per process of the tree under ``pid``."""
    out = {}
    for p in _descendants(pid):
        try:
            text = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        out[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class Server:
    def __init__(self, workers: int, decoders: int, cores: list[int]) -> None:
        self.port = free_port()
        env = dict(os.environ, SAGEBIDI_TRANSCRIBE_DECODERS=str(decoders), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "sagebidi_perf.cli", "serve", "--model", "transcribe"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, env=env, preexec_fn=raise_priority
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    def cpu(self) -> dict[int, float]:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def one_stream(port: int, pcm: bytes, start: float, result: dict[str, Any]) -> None:
    """Stream ``pcm`` at real time from ``start`` (perf_counter); fill ``result``."""
    from sagebidi_perf.client import connect_ws

    frame = 16000 * 2 * FRAME_MS // 1000
    frames = [pcm[i : i + frame] for i in range(0, len(pcm), frame)]
    sent_at: list[float] = []
    lags: list[float] = []
    latencies: list[float] = []
    finals: list[str] = []
    errors: list[str] = []
    result.update(latencies=latencies, lags=lags, finals=finals, errors=errors)
    try:
        session = connect_ws(
            f"ws://127.0.0.1:{port}",
            model_invocation_path="v1/listen",
            model_query_string=QUERY,
            timeout=60,
            connect_timeout=30,
        )
    except Exception as exc:
        errors.append(f"connect: {exc}")
        return
    close_sent: list[float] = []

    def send() -> None:
        try:
            for i, f in enumerate(frames):
                due = start + i * FRAME_MS / 1000
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                now = time.perf_counter()
                sent_at.append(now)
                lags.append(now - due)
                session.send(f)
            close_sent.append(time.perf_counter())
            session.send(CLOSE_STREAM)
        except Exception as exc:
            errors.append(f"send: {exc}")

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while True:
            msg = session.receive(timeout=60)
            if msg is None:
                break
            if not isinstance(msg.data, str):
                continue
            doc = json.loads(msg.data)
            if doc.get("type") == "Metadata":
                result["metadata_at"] = msg.received_at
            if doc.get("type") != "Results" or not doc.get("speech_final"):
                continue
            end = float(doc["start"]) + float(doc["duration"])
            i = min(int((end - 1e-6) * 1000 // FRAME_MS), len(frames) - 1)
            if i < len(sent_at):
                latencies.append(msg.received_at - sent_at[i])
            text = doc["channel"]["alternatives"][0]["transcript"]
            if text:
                finals.append(text)
    except Exception as exc:
        errors.append(f"receive: {exc}")
    finally:
        sender.join(timeout=60)
        session.close()
    if close_sent and "metadata_at" in result:
        result["tail"] = result["metadata_at"] - close_sent[0]


def cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (PSI, /proc/pressure/cpu), or None."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first.rsplit("total=", 1)[1])


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def level(server: Server, pcm: bytes, n: int) -> dict[str, Any]:
    seconds = len(pcm) / 32000
    results: list[dict[str, Any]] = [{} for _ in range(n)]
    start = time.perf_counter() + 1.0  # connections open first
    threads = [
        threading.Thread(
            target=one_stream, args=(server.port, rotate(pcm, i / n), start, results[i])
        )
        for i in range(n)
    ]
    cpu0 = server.cpu()
    psi0 = cpu_pressure_us()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - t0
    psi1 = cpu_pressure_us()
    cpu1 = server.cpu()
    per_process = {pid: cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1}
    cpu = sum(per_process.values())
    lat = [x for r in results for x in r.get("latencies", [])]
    tails = [r["tail"] for r in results if "tail" in r]
    lags = [x for r in results for x in r.get("lags", [])]
    errors = [e for r in results for e in r.get("errors", [])]
    ms = 1000.0
    return {
        "streams": n,
        "audio_seconds": n * seconds,
        "wall_seconds": wall,
        "server_cpu_seconds": cpu,
        "server_cpu_by_process": sorted(round(v, 2) for v in per_process.values()),
        "server_rtf": cpu / (n * seconds),
        # Share of the time some runnable task waited for a CPU (this machine's neighbours
        # included): near 0 on a quiet machine; high values mean the latencies are starved.
        "cpu_pressure_pct": None
        if psi0 is None or psi1 is None
        else (psi1 - psi0) / (wall * 1e6) * 100,
        "final_latency_ms": {
            "count": len(lat),
            "p50": None if not lat else statistics.median(lat) * ms,
            "p99": None if not lat else (_pct(lat, 0.99) or 0.0) * ms,
            "max": None if not lat else max(lat) * ms,
        },
        "tail_ms": {
            "p50": None if not tails else statistics.median(tails) * ms,
            "max": None if not tails else max(tails) * ms,
        },
        "pacing_lag_ms": {
            "p99": None if not lags else (_pct(lags, 0.99) or 0.0) * ms,
            "max": None if not lags else max(lags) * ms,
        },
        "finals_per_stream": [len(r.get("finals", [])) for r in results],
        "errors": errors,
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    p.add_argument("--levels", help="concurrent streams per level [default: 1,2,4,6]")
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--audio", choices=("klatt6", "librivox"), default="klatt6")
    p.add_argument("--passes", type=int, help="engine passes per loop first [default: 3]")
    p.add_argument("--json", type=Path)
    p.add_argument("--engine-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine_child:
        return engine_child(args.audio, args.seconds)
    q = args.quick
    levels = [int(x) for x in args.levels.split(",")] if args.levels else ([1] if q else LEVELS)
    passes = args.passes or (1 if q else 3)
    pcm = load_audio(args.audio)
    if q:
        pcm = pcm[: 32000 * 5]  # the first 5 s
    engine_core = USABLE_CORES[-1] if len(USABLE_CORES) > 1 else None
    niced = raise_priority()

    cfg = harness.Config.make(q)
    meth = harness.methodology(cfg)
    meth["method"] = (__doc__ or "").strip()
    meth["concurrency"] = (
        f"server: {args.workers} worker processes on cores {USABLE_CORES}; clients: threads "
        f"in this process (same cores); engine child pinned to core {engine_core}"
    )
    meth["audio"] = {"name": args.audio, "seconds": len(pcm) / 32000}
    meth["priority"] = f"nice {NICE}" if niced else "default priority"
    meth["cpu_pressure_start"] = _read_psi()
    meth["versions"]["pocketsphinx"] = harness._dist_version("pocketsphinx")
    report: dict[str, Any] = {"kind": "transcribe", "methodology": meth}

    print(f"engine limit ({args.audio}, {len(pcm) / 32000:.1f} s) ...", flush=True)
    child = EngineChild(args.audio, len(pcm) / 32000, engine_core)
    report["levels"] = []
    server: Server | None = None
    try:
        child.passes(passes)
        rt_lat = child.ask("realtime")["latencies"]
        rt = {
            "values": [x * 1000 for x in rt_lat],
            "p50": statistics.median(rt_lat) * 1000 if rt_lat else None,
            "max": max(rt_lat) * 1000 if rt_lat else None,
        }
        engine = child.summary()
        for name in ("bare", "engine"):
            e = engine[name]
            print(
                f"  {name:6}  RTF {e['rtf']:.3f} (median {e['rtf_median']:.3f})  "
                f"= {e['streams_per_core']:.1f} streams per core  ({e['words']} words)",
                flush=True,
            )
        print(
            f"  engine at real time, one stream: final latency p50 {_f(rt['p50'])} max "
            f"{_f(rt['max'])} ms (the endpointer's ~0.27 s hangover included)",
            flush=True,
        )
        server = Server(args.workers, max(levels), USABLE_CORES)
        # Warm-up (first decoder use in each worker): 4 short streams reach both workers
        # with high probability.
        level(server, pcm[: 32000 * 3], 4)
        for n in levels:
            before = child.passes(1)
            r = level(server, pcm, n)
            after = child.passes(1)
            # This level's baseline: the engine passes just before and just after it.
            base = {k: (before[k] + after[k]) / 2 for k in before}
            r["engine_rtf_adjacent"] = base
            r["overhead_vs_engine"] = r["server_rtf"] / base["engine"] - 1
            r["overhead_vs_bare"] = r["server_rtf"] / base["bare"] - 1
            if r["final_latency_ms"]["p50"] is not None and rt["p50"] is not None:
                r["added_latency_p50_ms"] = r["final_latency_ms"]["p50"] - rt["p50"]
            report["levels"].append(r)
            fl = r["final_latency_ms"]
            print(
                f"N={n}: server RTF {r['server_rtf']:.3f}, engine {base['engine']:.3f} "
                f"(overhead {r['overhead_vs_engine'] * 100:+.1f} %, "
                f"vs bare {r['overhead_vs_bare'] * 100:+.1f} %)  final latency p50 "
                f"{_f(fl['p50'])} p99 {_f(fl['p99'])} max {_f(fl['max'])}"
                f" ms over {fl['count']}  tail max {_f(r['tail_ms']['max'])} ms  CPU/process "
                f"{r['server_cpu_by_process']}  CPU pressure {_f(r['cpu_pressure_pct'])} %  "
                f"errors {len(r['errors'])}",
                flush=True,
            )
            for e in r["errors"][:3]:
                print(f"    error: {e}", flush=True)
        engine = child.summary()
        engine["realtime_final_latency_ms"] = rt
        report["engine"] = engine
    finally:
        if server is not None:
            server.stop()
        child.stop()
    meth["loadavg_end"] = os.getloadavg()
    meth["cpu_pressure_end"] = _read_psi()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.json or HERE / "results" / f"transcribe-{stamp}.json"
    harness.dump(out, report)
    print(f"wrote {out}")
    return 0


def _read_psi() -> str | None:
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


if __name__ == "__main__":
    sys.exit(main())
