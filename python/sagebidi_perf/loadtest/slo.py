"""Service-level objectives checked at the end of a run; they decide the exit code.

A latency SLO is ``metric.pNN <= limit ms`` on one of the histograms of
:mod:`sagebidi_perf.loadtest.metrics`; the error-rate SLO is ``failed sessions / ended sessions
<= limit`` (sessions still running at the end count as neither). With any SLO set, the
process exits 0 when all hold and :data:`EXIT_SLO_FAILED` when one does not (also when a latency
SLO's metric has no samples: nothing measured is not a pass).
Imports neither Locust nor gevent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagebidi_perf.loadtest.metrics import HISTOGRAMS, Metrics

__all__ = ["EXIT_SLO_FAILED", "SloCheck", "SloResult", "evaluate", "parse_slos"]

#: Exit code of a run whose SLOs failed (Locust itself uses 1 for "there were failures").
EXIT_SLO_FAILED = 3

_FLAG = re.compile(r"^slo_(?P<metric>[a-z_]+?)_p(?P<pct>\d+(?:_\d+)?)_ms$")
_EXPR = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\.p(?P<pct>\d+(?:\.\d+)?)\s*<=?\s*(?P<limit>[\d.]+)\s*(ms)?\s*$"
)


@dataclass(frozen=True)
class SloCheck:
    """``metric`` is a histogram name or ``error_rate``; ``percentile`` is None for the error
    rate; ``limit`` is milliseconds (or a fraction for the error rate)."""

    metric: str
    percentile: float | None
    limit: float

    @property
    def name(self) -> str:
        if self.percentile is None:
            return f"{self.metric} <= {self.limit:g}"
        return f"{self.metric} p{self.percentile:g} <= {self.limit:g} ms"


@dataclass(frozen=True)
class SloResult:
    check: SloCheck
    actual: float | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": self.check.name,
            "metric": self.check.metric,
            "percentile": self.check.percentile,
            "limit": self.check.limit,
            "actual": self.actual,
            "ok": self.ok,
        }


def parse_slos(values: Mapping[str, Any]) -> list[SloCheck]:
    """Checks from option values: ``slo_<metric>_p<NN>_ms`` (0 = off), ``slo_error_rate``
    (negative = off) and ``slo`` (comma-separated ``metric.pNN<=ms``)."""
    checks: list[SloCheck] = []
    for dest, value in sorted(values.items()):
        if dest == "slo_error_rate":
            if value is not None and float(value) >= 0:
                checks.append(SloCheck("error_rate", None, float(value)))
            continue
        if dest == "slo":
            for item in str(value or "").split(","):
                if not item.strip():
                    continue
                m = _EXPR.match(item)
                if m is None or m["metric"] not in HISTOGRAMS:
                    raise ValueError(
                        f"--slo {item.strip()!r}: use METRIC.pNN<=MS with METRIC one of "
                        + ", ".join(HISTOGRAMS)
                    )
                checks.append(SloCheck(m["metric"], float(m["pct"]), float(m["limit"])))
            continue
        m = _FLAG.match(dest)
        if m is None:
            continue
        if value is None or float(value) <= 0:
            continue
        metric = m["metric"]
        if metric not in HISTOGRAMS:
            raise ValueError(f"unknown SLO metric {metric!r}")
        checks.append(SloCheck(metric, float(m["pct"].replace("_", ".")), float(value)))
    return checks


def evaluate(checks: tuple[SloCheck, ...] | list[SloCheck], metrics: Metrics) -> list[SloResult]:
    """Each check against the (merged) metrics."""
    results = []
    for check in checks:
        if check.percentile is None:
            # Of the sessions that ended (those still running when the test stopped are
            # neither), as the report's error rate.
            failed = metrics.counters.get("sessions_failed", 0)
            ended = failed + metrics.counters.get("sessions_ok", 0)
            rate = failed / ended if ended else None
            # No session at all is a failed run, not a perfect one.
            results.append(SloResult(check, rate, rate is not None and rate <= check.limit))
            continue
        hist = metrics.hists[check.metric]
        if hist.count == 0:
            results.append(SloResult(check, None, False))
            continue
        actual = hist.percentile_us(check.percentile) / 1000
        results.append(SloResult(check, actual, actual <= check.limit))
    return results
