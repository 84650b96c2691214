"""The WebSocket keepalive of SageMaker's sidecar as a sans-IO state machine.

A ping every ``interval`` seconds (60 s) and a close once ``max_missed`` (5) consecutive pings
went unanswered. Time is passed in (``now``, seconds on any monotonic clock), so it is
deterministic. Typical loop::

    ka = Keepalive()
    ka.start(trio.current_time())
    # reader task, on every pong frame:  ka.pong(payload, trio.current_time())
    # keepalive task:
    while True:
        await trio.sleep_until(ka.next_deadline)
        action = ka.tick(trio.current_time())
        if action is None:
            continue
        if action.kind == "ping":
            await ws.ping(action.payload)
        else:  # "close"
            await ws.aclose(code=1001, reason="keepalive: pings unanswered")
            break

See :class:`Keepalive` for the exact rules (miss counting, late and stale pongs, clamped time).
"""

from __future__ import annotations

from sagebidi_perf._native import (
    SAGEMAKER_MAX_MISSED_PINGS,
    SAGEMAKER_PING_INTERVAL,
    Keepalive,
    KeepaliveAction,
)

__all__ = [
    "SAGEMAKER_MAX_MISSED_PINGS",
    "SAGEMAKER_PING_INTERVAL",
    "Keepalive",
    "KeepaliveAction",
]
