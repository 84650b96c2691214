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


def _add_gateway(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="a local SageMaker runtime (router + sidecar) in front of a container",
        description=(
            "Serve InvokeEndpointWithBidirectionalStream over TLS + HTTP/2 like "
            "runtime.sagemaker.<region>.amazonaws.com:8443 and relay each session to a container "
            "over a WebSocket. Prints the endpoint URL and the SSL_CERT_FILE a client needs."
        ),
    )
    p.add_argument(
        "--upstream", help="default container for every endpoint name, e.g. ws://127.0.0.1:8080"
    )
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=ws://HOST:PORT",
        help="container of one endpoint name (repeatable)",
    )
    p.add_argument("--host", help="address to bind [default: 127.0.0.1]")
    p.add_argument("--port", type=int, help="port [default: 8443]")
    p.add_argument(
        "--cert-dir", help="local CA and server certificate [default: ~/.sagebidi/gateway-certs]"
    )
    p.add_argument(
        "--cert-host",
        action="append",
        default=[],
        help="extra DNS name or IP for the server certificate (repeatable)",
    )
    p.add_argument("--access-key-id", help="accepted key id [default: $AWS_ACCESS_KEY_ID]")
    p.add_argument("--secret-access-key", help="its secret [default: $AWS_SECRET_ACCESS_KEY]")
    p.add_argument(
        "--no-auth", action="store_true", default=None, help="accept unsigned/any-key requests"
    )
    p.add_argument("--region", help="SigV4 region [default: $AWS_REGION or us-west-2]")
    p.add_argument(
        "--ping-interval", type=float, help="seconds between pings to the container [default: 60]"
    )
    p.add_argument("--ping-misses", type=int, help="unanswered pings before closing [default: 5]")
    p.add_argument(
        "--max-session-seconds", type=float, help="end sessions after N seconds [default: none]"
    )
    p.add_argument("--log-level", default="INFO")


def _gateway(args: argparse.Namespace) -> int:
    import trio

    from sagebidi_perf.gateway import GatewayServer, GatewaySettings, serve

    try:
        settings = GatewaySettings.from_env(
            upstream=args.upstream,
            endpoint_specs=args.endpoint,
            access_key_id=args.access_key_id,
            secret_access_key=args.secret_access_key,
            host=args.host,
            port=args.port,
            cert_dir=args.cert_dir,
            cert_hosts=tuple(args.cert_host) or None,
            no_auth=args.no_auth,
            region=args.region,
            ping_interval=args.ping_interval,
            ping_misses=args.ping_misses,
            max_session_seconds=args.max_session_seconds,
        )
    except ValueError as exc:
        print(f"sagebidi gateway: {exc}", file=sys.stderr)
        return 2

    def ready(server: GatewayServer) -> None:
        print(server.endpoint_url)
        print(f"SSL_CERT_FILE={server.ca_file}", flush=True)

    try:
        trio.run(lambda: serve(settings, handle_signals=True, on_ready=ready))
    except OSError as exc:
        print(f"sagebidi gateway: {exc}", file=sys.stderr)
        return 1
    return 0


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
    _add_gateway(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "gateway":
        return _gateway(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
