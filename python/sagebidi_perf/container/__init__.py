"""The container runtime: SageMaker's bidirectional-streaming container contract on Trio.

``sagebidi serve --model echo`` (or ``python -m sagebidi_perf.container serve``) serves ``/ping``,
``/invocations`` and WebSocket sessions on port 8080. Write a model by subclassing :class:`Model`.
"""

from sagebidi_perf.container.model import (
    DEFAULT_BIDI_PATH,
    FunctionModel,
    InvokeResponse,
    Model,
    RejectUpgrade,
    Session,
    SessionClosed,
    UpgradeRequest,
    load_model,
)
from sagebidi_perf.container.server import ContainerServer, serve
from sagebidi_perf.container.settings import ServerSettings

__all__ = [
    "DEFAULT_BIDI_PATH",
    "ContainerServer",
    "FunctionModel",
    "InvokeResponse",
    "Model",
    "RejectUpgrade",
    "ServerSettings",
    "Session",
    "SessionClosed",
    "UpgradeRequest",
    "load_model",
    "serve",
]
