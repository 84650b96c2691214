"""The gateway: a local SageMaker router + sidecar.

``sagebidi gateway --upstream ws://127.0.0.1:8080`` serves ``InvokeEndpointWithBidirectionalStream``
over TLS + HTTP/2 (ALPN h2) like ``runtime.sagemaker.<region>.amazonaws.com:8443``: it verifies
SigV4 (the request and every event's chained ``:chunk-signature``), validates the request,
opens the sidecar's WebSocket to the container and relays PayloadParts <-> WebSocket frames, with
SageMaker's error shapes and keepalive. The official AWS client connects to it unchanged once it
trusts the gateway's local CA (``SSL_CERT_FILE=<cert dir>/ca.pem``).

In-process use (tests, the demo)::

    server = GatewayServer(GatewaySettings(port=0, default_upstream=parse_upstream(url), ...))
    port = await nursery.start(server.serve)
"""

from sagebidi_perf.gateway.certs import CertificatePaths, ensure_certificates, server_ssl_context
from sagebidi_perf.gateway.relay import Gateway, SessionRecord
from sagebidi_perf.gateway.server import GatewayServer, serve
from sagebidi_perf.gateway.settings import (
    DEFAULT_CERT_DIR,
    DEFAULT_PORT,
    GatewaySettings,
    Upstream,
    parse_upstream,
)

__all__ = [
    "DEFAULT_CERT_DIR",
    "DEFAULT_PORT",
    "CertificatePaths",
    "Gateway",
    "GatewayServer",
    "GatewaySettings",
    "SessionRecord",
    "Upstream",
    "ensure_certificates",
    "parse_upstream",
    "serve",
    "server_ssl_context",
]
