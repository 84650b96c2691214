"""The ``sagebidi`` command: ``serve``, ``gateway``, ``stream`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagebidi_perf.gateway import GatewaySettings

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
    p.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
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
    p.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds sessions may run on after SIGTERM, then END_STREAM + Close 1001 "
        "[default: 30]",
    )
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port [default: 1]")
    p.add_argument("--reuse-port", action="store_true", default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")


def _add_stream(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sagebidi_perf.stream import __doc__ as doc
    from sagebidi_perf.stream import add_arguments

    p = sub.add_parser(
        "stream",
        help="stream a WAV file to a container or endpoint and print transcripts live",
        description=(doc or "").split("\n\n")[0].replace("``", ""),
    )
    add_arguments(p)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sagebidi_perf.demo import add_arguments

    p = sub.add_parser(
        "demo",
        help="the whole system: STT container + gateway + a short Locust speech load test",
        description=(
            "Start the transcribe container and the gateway, stream speech through the gateway "
            "with Locust (the official client's wire path), print the summary, write the "
            "reports, stop everything."
        ),
    )
    add_arguments(p)


def _gateway(args: argparse.Namespace, argv: Sequence[str]) -> int:
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
            shutdown_grace=args.shutdown_grace,
            reuse_port=args.reuse_port,
        )
    except ValueError as exc:
        print(f"sagebidi gateway: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("sagebidi gateway: --workers must be >= 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _gateway_workers(settings, argv, args.workers)

    def ready(server: GatewayServer) -> None:
        if settings.reuse_port:  # a worker: the parent prints the lines once
            return
        print(server.endpoint_url)
        print(f"SSL_CERT_FILE={server.ca_file}", flush=True)

    try:
        trio.run(lambda: serve(settings, handle_signals=True, on_ready=ready))
    except OSError as exc:
        print(f"sagebidi gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def _gateway_workers(settings: GatewaySettings, argv: Sequence[str], workers: int) -> int:
    """``--workers N``: the CA and certificate are made here once, then N processes serve the
    port (SO_REUSEPORT); the two lines are printed once the port accepts connections."""
    import socket
    import time

    from sagebidi_perf.container.workers import run_workers
    from sagebidi_perf.gateway import ensure_certificates
    from sagebidi_perf.gateway.server import endpoint_url

    if settings.port == 0:
        print("sagebidi gateway: --workers > 1 needs a fixed --port", file=sys.stderr)
        return 2
    certs = ensure_certificates(settings.cert_dir, settings.cert_hosts)

    def started() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((settings.host, settings.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        print(endpoint_url(settings.host, settings.port))
        print(f"SSL_CERT_FILE={certs.ca}", flush=True)

    child = _without_option([a for a in argv if a != "--reuse-port"], "--workers")
    return run_workers(
        [*child, "--port", str(settings.port)],
        workers,
        module="sagebidi_perf.cli",
        on_started=started,
    )


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
            listen_fd=args.listen_fd,
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
        try:
            return run_workers(
                [*child, "--port", str(settings.port)],
                settings.workers,
                listen=(settings.host, settings.port),
            )
        except OSError as exc:  # binding the shared socket
            print(f"sagebidi serve: {settings.host}:{settings.port}: {exc}", file=sys.stderr)
            return 1

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
    _add_stream(sub)
    _add_demo(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "gateway":
        return _gateway(args, argv)
    if args.command == "demo":
        from sagebidi_perf.demo import run_from_args as run_demo

        return run_demo(args)
    if args.command == "stream":
        from sagebidi_perf.stream import run_from_args

        return run_from_args(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
