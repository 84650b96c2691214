"""The end-of-run report: a dict (the JSON file), a summary table for stdout and a
self-contained HTML page with inline SVG charts (no script, no CDN).

Imports neither Locust nor gevent.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagebidi_perf.loadtest.metrics import HISTOGRAMS, Metrics
from sagebidi_perf.loadtest.slo import SloResult

__all__ = ["build_report", "format_summary", "render_html", "write_html", "write_json"]

REPORT_VERSION = 1
_LABELS = {
    "connect": "connect",
    "ttft": "TTFT",
    "first_final": "first final",
    "final_latency": "final latency",
    "transcript_lag": "transcript lag",
    "itl": "inter-message gap",
    "round_trip": "round trip",
    "jitter": "send jitter",
    "session": "session",
}


def _percentile(sorted_values: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of a sorted list (as HdrHistogram ranks)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def build_report(
    metrics: Metrics, meta: dict[str, Any], slos: Sequence[SloResult] = ()
) -> dict[str, Any]:
    """Everything measured, as JSON-ready data."""
    c = metrics.counters
    seconds = sorted(metrics.timeline)
    if seconds:
        first, last = seconds[0], seconds[-1]
        active = last - first + 1
    else:
        first, active = int(meta.get("started_at") or time.time()), 0
    ok, failed = c.get("sessions_ok", 0), c.get("sessions_failed", 0)
    ended = ok + failed
    timeline = []
    active_sessions = 0
    for sec in range(first, first + active):
        row = metrics.timeline.get(sec)
        if row is None:
            timeline.append({"t": sec - first, "active_sessions": active_sessions})
            continue
        active_sessions += row.sessions_started - row.sessions_ended
        ttft = sorted(row.ttft_us)
        point: dict[str, Any] = {
            "t": sec - first,
            "frames_sent": row.frames_sent,
            "bytes_sent": row.bytes_sent,
            "frames_received": row.frames_received,
            "bytes_received": row.bytes_received,
            "sessions_started": row.sessions_started,
            "sessions_ended": row.sessions_ended,
            "active_sessions": active_sessions,
            "errors": row.errors,
        }
        if ttft:
            point["ttft_count"] = len(ttft)
            point["ttft_p50_ms"] = _percentile(ttft, 50) / 1000
            point["ttft_p99_ms"] = _percentile(ttft, 99) / 1000
            point["ttft_max_ms"] = ttft[-1] / 1000
        timeline.append(point)
    per_s = (lambda n: round(n / active, 3)) if active else (lambda n: 0.0)
    words = c.get("speech_words", 0)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "meta": {**meta, "active_seconds": active},
        "sessions": {
            "started": c.get("sessions", 0),
            "ok": ok,
            "failed": failed,
            "unfinished": max(c.get("sessions", 0) - ended, 0),
            "error_rate": round(failed / ended, 6) if ended else None,
        },
        "throughput": {
            "frames_sent": c.get("frames_sent", 0),
            "bytes_sent": c.get("bytes_sent", 0),
            "frames_received": c.get("frames_received", 0),
            "bytes_received": c.get("bytes_received", 0),
            "frames_sent_per_s": per_s(c.get("frames_sent", 0)),
            "bytes_sent_per_s": per_s(c.get("bytes_sent", 0)),
            "frames_received_per_s": per_s(c.get("frames_received", 0)),
            "bytes_received_per_s": per_s(c.get("bytes_received", 0)),
            "replies": c.get("replies", 0),
        },
        "latency_ms": {
            name: metrics.hists[name].summary() for name in HISTOGRAMS if metrics.hists[name].count
        },
        "distributions_ms": {
            name: metrics.hists[name].distribution()
            for name in HISTOGRAMS
            if metrics.hists[name].count
        },
        "histogram_counts": metrics.counts(),
        "errors": dict(sorted(metrics.errors.items(), key=lambda kv: -kv[1])),
        "error_examples": dict(metrics.error_examples),
        "speech": {
            "reference_words": words,
            "word_errors": c.get("speech_word_errors", 0),
            "wer": round(c.get("speech_word_errors", 0) / words, 4) if words else None,
        },
        "timeline": timeline,
        "slos": [r.to_dict() for r in slos],
        "slo_passed": all(r.ok for r in slos) if slos else None,
    }
    return report


def _fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    v = float(value)
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _fmt_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def format_summary(report: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    lines = []
    s = report["sessions"]
    t = report["throughput"]
    meta = report["meta"]
    rate = s["error_rate"]
    lines.append(
        f"sagebidi-perf load test: {meta.get('host', '')}  "
        f"({meta.get('active_seconds', 0)} s, users {meta.get('users')}, "
        f"workers {meta.get('workers') or 1})"
    )
    lines.append(
        f"sessions: {s['started']} started, {s['ok']} ok, {s['failed']} failed, "
        f"{s['unfinished']} unfinished; error rate "
        + ("-" if rate is None else f"{100 * rate:.2f}%")
    )
    lines.append(
        f"frames: {_fmt_count(t['frames_sent'])} sent ({_fmt_count(t['frames_sent_per_s'])}/s, "
        f"{_fmt_count(t['bytes_sent_per_s'])}B/s), {_fmt_count(t['frames_received'])} received "
        f"({_fmt_count(t['frames_received_per_s'])}/s, {_fmt_count(t['bytes_received_per_s'])}B/s)"
    )
    header = f"{'metric (ms)':<18}{'count':>9}{'p50':>9}{'p90':>9}{'p95':>9}{'p99':>9}"
    header += f"{'p99.9':>9}{'max':>9}"
    lines.append(header)
    lines.append("-" * len(header))
    for name, row in report["latency_ms"].items():
        lines.append(
            f"{_LABELS.get(name, name):<18}{row['count']:>9}"
            + "".join(
                f"{_fmt_ms(row.get(k)):>9}"
                for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99.9_ms", "max_ms")
            )
        )
    if report["errors"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in report["errors"].items()))
    wer = report["speech"]["wer"]
    if wer is not None:
        lines.append(
            f"speech WER: {wer:.3f} ({report['speech']['word_errors']} errors / "
            f"{report['speech']['reference_words']} reference words)"
        )
    for slo in report["slos"]:
        actual = slo["actual"]
        shown = "no samples" if actual is None else f"{actual:.4g}"
        lines.append(f"SLO {'PASS' if slo['ok'] else 'FAIL'}: {slo['slo']} (actual {shown})")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")


# -- HTML -----------------------------------------------------------------------------------------

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def svg_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    width: int = 640,
    height: int = 260,
) -> str:
    """A line chart (with dots) as an inline SVG element."""
    left, right, top, bottom = 64, 16, 28, 44
    points = [p for _, pts in series for p in pts]
    if not points:
        return ""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_ticks:
        x_lo = min(x_lo, min(t for t, _ in x_ticks))
        x_hi = max(x_hi, max(t for t, _ in x_ticks))
    if x_hi == x_lo:
        x_hi = x_lo + 1
    y_ticks = _nice_ticks(0.0, max(ys) * 1.05 if max(ys) > 0 else 1.0)
    y_hi = y_ticks[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return top + ph - (y / y_hi) * ph if y_hi else top + ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="18" class="t">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="f"/>',
    ]
    for yt in y_ticks:
        y = sy(yt)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="yl">{yt:g}</text>')
    if x_ticks is None:
        x_ticks = [(v, f"{v:g}") for v in _nice_ticks(x_lo, x_hi) if x_lo <= v <= x_hi]
    for xt, label in x_ticks:
        x = sx(xt)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="g"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" class="xl">{html.escape(label)}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" class="xl">{html.escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + ph / 2}" class="xl" '
        f'transform="rotate(-90 14 {top + ph / 2})">{html.escape(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(series):
        if not pts:
            continue
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        if len(pts) <= 60:
            for x, y in pts:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}"/>')
        ly = top + 12 + 14 * i
        out.append(
            f'<rect x="{left + pw - 150}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
        )
        out.append(
            f'<text x="{left + pw - 136}" y="{ly + 1}" class="lg">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _nines(p: float) -> float:
    """Percentile → 'number of nines' (0 → 0, 90 → 1, 99 → 2, 99.9 → 3...)."""
    if p >= 100:
        return 4.3
    return min(-math.log10(1 - p / 100), 4.3)


_NINES_TICKS = [(0.0, "0"), (1.0, "90"), (2.0, "99"), (3.0, "99.9"), (4.0, "99.99")]


_CSS = """\
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{text-align:left;background:#f4f4f4}
pre{background:#f7f7f7;padding:10px;overflow:auto}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{background:#fff;border:1px solid #ddd}
svg .t{font-weight:600;font-size:13px}
svg .f{fill:#fcfcfc;stroke:#999}
svg .g{stroke:#e3e3e3}
svg .yl{font-size:11px;text-anchor:end}
svg .xl{font-size:11px;text-anchor:middle}
svg .lg{font-size:11px}
tr.ok td{color:#176317}
tr.bad td{color:#b00}
"""


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: summary, tables and inline SVG charts."""
    charts = []
    dist = report["distributions_ms"]
    for name, points in dist.items():
        charts.append(
            svg_chart(
                f"{_LABELS.get(name, name)}: latency by percentile",
                [(_LABELS.get(name, name), [(_nines(p), v) for p, v in points])],
                x_label="percentile",
                y_label="ms",
                x_ticks=_NINES_TICKS,
            )
        )
    timeline = report["timeline"]
    ttft_series = []
    for key, label in (("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99"), ("ttft_max_ms", "max")):
        pts = [(row["t"], row[key]) for row in timeline if key in row]
        if pts:
            ttft_series.append((f"TTFT {label}", pts))
    if ttft_series:
        charts.insert(
            0,
            svg_chart("TTFT over time (per second)", ttft_series, x_label="s", y_label="ms"),
        )
    if timeline:
        charts.insert(
            1 if ttft_series else 0,
            svg_chart(
                "Throughput over time",
                [
                    ("frames sent/s", [(r["t"], r.get("frames_sent", 0)) for r in timeline]),
                    (
                        "frames received/s",
                        [(r["t"], r.get("frames_received", 0)) for r in timeline],
                    ),
                ],
                x_label="s",
                y_label="frames/s",
            ),
        )
        charts.append(
            svg_chart(
                "Active sessions",
                [("sessions", [(r["t"], r.get("active_sessions", 0)) for r in timeline])],
                x_label="s",
                y_label="sessions",
            )
        )
    rows = []
    for name, row in report["latency_ms"].items():
        cells = "".join(
            f"<td>{_fmt_ms(row.get(k))}</td>"
            for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99.9_ms", "max_ms", "mean_ms")
        )
        label = html.escape(_LABELS.get(name, name))
        rows.append(f"<tr><th>{label}</th><td>{row['count']}</td>{cells}</tr>")
    errors = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v}</td>"
        f"<td>{html.escape(report['error_examples'].get(k, ''))}</td></tr>"
        for k, v in report["errors"].items()
    )
    slos = "".join(
        f'<tr class="{"ok" if s["ok"] else "bad"}"><th>{html.escape(s["slo"])}</th>'
        f"<td>{'PASS' if s['ok'] else 'FAIL'}</td><td>{s['actual']}</td></tr>"
        for s in report["slos"]
    )
    summary = html.escape(format_summary(report))
    meta = html.escape(json.dumps(report["meta"], indent=1, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sagebidi-perf load test report</title>
<style>
{_CSS}</style></head><body>
<h1>sagebidi-perf load test report</h1>
<pre>{summary}</pre>
<h2>Latency (ms)</h2>
<table><tr><th>metric</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>
{"".join(rows)}</table>
<h2>Charts</h2><div class="charts">
{"".join(charts)}
</div>
<h2>Errors</h2><table><tr><th>kind</th><th>count</th><th>example</th></tr>{errors}</table>
<h2>SLOs</h2><table><tr><th>objective</th><th>result</th><th>actual</th></tr>{slos}</table>
<h2>Run</h2><pre>{meta}</pre>
</body></html>
"""


def write_html(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
