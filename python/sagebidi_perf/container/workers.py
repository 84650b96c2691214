"""``--workers N``: N server processes sharing one port through SO_REUSEPORT.

The parent starts the children, forwards SIGTERM/SIGINT to them, and exits with the worst exit
code (a child killed by the signal we forwarded, before it could handle it, counts as stopped).
Each child is a plain one-process server (``--workers 1 --reuse-port``)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType

__all__ = ["run_workers"]


def run_workers(
    child_args: Sequence[str],
    workers: int,
    *,
    module: str = "sagebidi_perf.container",
    on_started: Callable[[], None] | None = None,
    listen: tuple[str, int] | None = None,
) -> int:
    """Run ``python -m module *child_args --workers 1 --reuse-port`` ``workers`` times;
    ``on_started()`` runs once they are started (the gateway waits for its port there).

    With ``listen=(host, port)`` the parent binds and listens itself and the children inherit
    that one socket (``--listen-fd N`` instead of ``--reuse-port``): one accept queue, from
    which the least busy worker takes each connection."""
    cmd = [sys.executable, "-m", module, *child_args, "--workers", "1"]
    shared: socket.socket | None = None
    if listen is None:
        cmd.append("--reuse-port")
    else:
        host, port = listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        shared = socket.create_server((host, port), family=family, backlog=4096)
        cmd += ["--listen-fd", str(shared.fileno())]
    pass_fds = () if shared is None else (shared.fileno(),)
    children = [subprocess.Popen(cmd, pass_fds=pass_fds) for _ in range(workers)]
    if shared is not None:
        shared.close()  # the children hold it now
    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.add(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_started is not None:
            on_started()
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A child still starting up when we forwarded the stop signal dies of it (its handlers are not
    # installed yet): it served nothing, so that is a clean stop, not a failure.
    return max((0 if -code in forwarded else abs(code) for code in codes), default=0)
