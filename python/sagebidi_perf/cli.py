"""The ``sagebidi`` command: ``serve`` (the container runtime); more subcommands as they land."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a model under SageMaker's bidi container contract")
    p.add_argument(
        "--model", help="built-in model (echo, transcribe) or module:attribute [default: echo]"
    )
    p.add_argument("--host", help="address to bind [default: 0.0.0.0]")
    p.add_argument("--port", type=int, help="port [default: $SAGEMAKER_BIND_TO_PORT or 8080]")
    p.add_argument(
        "--workers",
        type=int,
        help="processes sharing the port [default: $SAGEMAKER_MODEL_SERVER_WORKERS or 1]",
    )
    p.add_argument("--max-message-size", type=int, help="bytes [default: 16 MiB]")
    p.add_argument("--queue-size", type=int, help="messages queued per session [default: 256]")
    p.add_argument(
        "--queue-full-timeout",
        type=float,
        help="seconds a full queue is tolerated before closing 1013 [default: 30]",
    )
    p.add_argument(
        "--ping-interval",
        type=float,
        help="send our own pings every N seconds [default: off, the sidecar pings]",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds sessions may run on after SIGTERM [default: 20]",
    )
    p.add_argument("--reuse-port", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from sagebidi_perf.container.settings import ServerSettings

    try:
        settings = ServerSettings.from_env(
            model=args.model,
            host=args.host,
            port=args.port,
            workers=args.workers,
            max_message_size=args.max_message_size,
            queue_size=args.queue_size,
            queue_full_timeout=args.queue_full_timeout,
            ping_interval=args.ping_interval,
            shutdown_grace=args.shutdown_grace,
            reuse_port=args.reuse_port,
        )
    except ValueError as exc:
        print(f"sagebidi serve: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from sagebidi_perf.container.workers import run_workers

        if settings.port == 0:
            print("sagebidi serve: --workers > 1 needs a fixed --port", file=sys.stderr)
            return 2
        child = [a for a in argv if a not in ("--reuse-port",)]
        child = _without_option(child, "--workers")
        return run_workers([*child, "--port", str(settings.port)], settings.workers)

    from sagebidi_perf.container.model import load_model
    from sagebidi_perf.container.server import run

    try:
        model = load_model(settings.model)
    except ValueError as exc:
        print(f"sagebidi serve: {exc}", file=sys.stderr)
        return 2
    run(lambda: model, settings)
    return 0


def _without_option(argv: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="sagebidi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if args.command == "serve":
        return _serve(args, argv)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
