"""gRPC helpers: servers with the standard health service and SIGTERM drain, channels with
sane options, chunked streaming of arrays, and the one place errors map to gRPC status.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from spinemets import logs
from spinemets.errors import (
    CallCancelledError,
    DeliveryError,
    InputError,
    ModelError,
    SpineMetsError,
)
from spinemets.geometry import Geometry
from spinemets.v1 import volume_pb2

log = logging.getLogger(__name__)

#: Bytes per streamed chunk: well below gRPC's default 4 MiB message limit.
CHUNK_BYTES = 1 << 20

#: Clients ping a connection every this many milliseconds, also while they wait on a long call
#: (a segmentation on CPU takes minutes), so that a dead peer is noticed.
KEEPALIVE_MS = 30_000


def channel_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, Any]]:
    """Keep-alive options shared by clients and servers."""
    return [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def client_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, Any]]:
    """Keep-alive, and calls spread over every address the name resolves to (a headless
    Kubernetes Service lists one per pod; a host:port resolving to one address is unaffected)."""
    return [
        *channel_options(keepalive_ms),
        ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
    ]


def server_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, Any]]:
    """Keep-alive the clients' pings agree with, and a maximum connection age.

    gRPC servers take a ping as abuse when it comes less than 5 minutes after the last one
    while no data flows, and answer the third such ping with GOAWAY "too_many_pings", which
    fails the call in flight: a client pinging every ``keepalive_ms`` during a long call lost
    it at its fourth ping (2 minutes). Pings half an interval apart are accepted here.
    Connections close after an age (after a grace period for calls in flight), so clients
    re-resolve and new replicas of a scaled-out service start receiving calls.
    """
    return [
        *channel_options(keepalive_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", keepalive_ms // 2),
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 900_000),
    ]


Response = TypeVar("Response")

#: Metadata key of the listener's job id on its calls downstream: the servers' logs carry it.
JOB_METADATA_KEY = "spinemets-job"
_JOB_ID = re.compile(r"^[0-9]{1,19}$")


class Server:
    """A gRPC server with ``grpc.health.v1`` that drains in-flight calls on SIGTERM."""

    def __init__(self, name: str, address: str, workers: int = 8,
                 keepalive_ms: int = KEEPALIVE_MS) -> None:
        self.name = name
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                   options=server_options(keepalive_ms))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise SpineMetsError(f"{name}: cannot bind gRPC address {address}")
        self._stopped = threading.Event()

    def add(self, register: Callable[[Any, grpc.Server], None], servicer: Any) -> None:
        """Register a servicer (``add_XServicer_to_server``, servicer instance)."""
        register(servicer, self._server)

    def set_serving(self, serving: bool, service: str = "") -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set(service, status)

    def start(self) -> None:
        self._server.start()
        log.info("%s listening", self.name, extra={"fields": {"port": self.port}})

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting calls, mark NOT_SERVING, let in-flight calls finish within ``grace``."""
        self.set_serving(False)
        self._server.stop(grace).wait()
        self._stopped.set()

    def serve_until_signal(self, grace: float = 30.0) -> None:
        """Block until SIGTERM/SIGINT, then drain."""
        def handle(signum: int, _frame: object) -> None:
            log.info("%s: signal %d, draining", self.name, signum)
            threading.Thread(target=self.stop, args=(grace,), daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        self._stopped.wait()


def channel(address: str, keepalive_ms: int = KEEPALIVE_MS) -> grpc.Channel:
    """An insecure channel with keep-alive and round-robin balancing (the cluster network is the
    trust boundary)."""
    return grpc.insecure_channel(address, options=client_options(keepalive_ms))


def wait_healthy(address: str, timeout: float) -> bool:
    """True once the server at ``address`` reports SERVING within ``timeout`` seconds."""
    with channel(address) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=timeout)
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=timeout)
        except (grpc.FutureTimeoutError, grpc.RpcError):
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class _Context(Protocol):
    def abort(self, code: grpc.StatusCode, details: str) -> None: ...


def abort_with(context: _Context, exc: Exception) -> None:
    """The one mapping from project errors to gRPC status codes; the reason leads the details."""
    if isinstance(exc, InputError):
        code = grpc.StatusCode.INVALID_ARGUMENT
    elif isinstance(exc, CallCancelledError):
        code = grpc.StatusCode.CANCELLED
    elif isinstance(exc, ModelError | DeliveryError):
        code = grpc.StatusCode.UNAVAILABLE
    elif isinstance(exc, FileNotFoundError | KeyError):
        code = grpc.StatusCode.NOT_FOUND
    else:
        code = grpc.StatusCode.INTERNAL
    reason = getattr(exc, "reason", type(exc).__name__)
    context.abort(code, f"{reason}: {exc}")


def job_metadata(job_id: int) -> tuple[tuple[str, str], ...]:
    """Call metadata naming the job a downstream call works for (see :func:`guarded`)."""
    return ((JOB_METADATA_KEY, str(job_id)),)


def call_identifiers(request: Any, context: grpc.ServicerContext) -> dict[str, str]:
    """Log identifiers of a call: the job id from its metadata, the series UID of its request."""
    found: dict[str, str] = {}
    try:
        metadata = context.invocation_metadata() or ()
    except Exception:  # a context without metadata (tests)
        metadata = ()
    for key, value in metadata:
        if key == JOB_METADATA_KEY and isinstance(value, str) and _JOB_ID.match(value):
            found["job"] = value
    series = (request if isinstance(request, volume_pb2.SeriesRef)
              else getattr(request, "series", None))
    if isinstance(series, volume_pb2.SeriesRef) and series.series_instance_uid:
        found["series"] = series.series_instance_uid
    return found


def guarded(method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate a servicer method: everything it logs carries the job id and series UID of the
    call (:func:`call_identifiers`); exceptions become gRPC status via :func:`abort_with`."""
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Response:
        with logs.context(**call_identifiers(request, context)):
            try:
                return method(self, request, context)
            except Exception as exc:
                if isinstance(exc, SpineMetsError):
                    log.warning("%s failed: %s", method.__name__, exc)
                else:
                    log.exception("%s failed", method.__name__)
                abort_with(context, exc)
                raise  # unreachable: abort raises

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def error_reason(error: grpc.RpcError) -> str:
    """The project reason carried in a failed call's details ("reason: message")."""
    details = error.details() if hasattr(error, "details") else str(error)
    return str(details or "").split(":", 1)[0] or "rpc-error"


def is_permanent(error: grpc.RpcError) -> bool:
    """Errors that retrying cannot fix: bad input, missing data."""
    return error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.FAILED_PRECONDITION)


# --- geometry and arrays on the wire -------------------------------------------------------

def geometry_to_proto(geometry: Geometry) -> volume_pb2.Geometry:
    return volume_pb2.Geometry(
        size=list(geometry.size), spacing=list(geometry.spacing), origin=list(geometry.origin),
        direction=[float(v) for v in geometry.direction.T.ravel()],
    )


def geometry_from_proto(msg: volume_pb2.Geometry) -> Geometry:
    size = tuple(int(v) for v in msg.size)
    spacing = tuple(float(v) for v in msg.spacing)
    origin = tuple(float(v) for v in msg.origin)
    if len(size) != 3 or len(spacing) != 3 or len(origin) != 3 or len(msg.direction) != 9:
        raise InputError("geometry message is incomplete", reason="bad-geometry-message")
    direction = np.asarray(msg.direction, dtype=np.float64).reshape(3, 3).T
    return Geometry((size[0], size[1], size[2]), (spacing[0], spacing[1], spacing[2]),
                    (origin[0], origin[1], origin[2]), direction)


def array_chunks(array: npt.NDArray[Any]) -> Iterator[bytes]:
    """The array's bytes (C order, little endian) in chunks of :data:`CHUNK_BYTES`."""
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    for start in range(0, max(len(data), 1), CHUNK_BYTES):
        yield data[start:start + CHUNK_BYTES]


def array_from_chunks(parts: Iterable[bytes], dtype: str,
                      geometry: Geometry) -> npt.NDArray[Any]:
    """Rebuild a ``[slice, row, column]`` array from streamed bytes; checks the byte count."""
    data = b"".join(parts)
    columns, rows, slices = geometry.size
    expected = columns * rows * slices * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise InputError(f"streamed array has {len(data)} bytes, expected {expected}",
                         reason="truncated-stream")
    return np.frombuffer(data, dtype=dtype).reshape(slices, rows, columns).copy()
