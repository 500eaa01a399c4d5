"""Prometheus metrics of the services: one registry per service, its HTTP exporter, stage timing.

Every metric is named ``spinemets_<service>_<what>`` (counters end in ``_total``, durations in
``_seconds``). Each service exports ``spinemets_<service>_stage_seconds{stage=...}``, a histogram
of the pipeline stages it performs, with every stage's series present (count 0) from the start.
Label values come from small fixed sets (stage names, job states, reason codes, model names
from the configuration) and never carry patient data or UIDs.

A service's metrics live in their own :class:`prometheus_client.CollectorRegistry` (with the
process, platform and garbage-collector collectors), so several instances in one test process
never clash; :func:`serve` exports it over HTTP (``GET /metrics``) on the configured port.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from spinemets import logs
from spinemets.errors import SpineMetsError

log = logging.getLogger(__name__)

NAMESPACE = "spinemets"

#: Buckets of stage durations, seconds: from one C-STORE (milliseconds) to the segmentation of
#: a large CT on a CPU (tens of minutes), and waits for a series to complete.
STAGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1200.0, 1800.0, 3600.0)
#: Buckets of single requests (a Triton inference of a batch of patches), seconds.
REQUEST_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def metric_name(service: str, what: str) -> str:
    """``spinemets_<service>_<what>``."""
    return f"{NAMESPACE}_{service}_{what}"


class ServiceMetrics:
    """A service's registry and its stage histogram; subclasses add the service's metrics."""

    def __init__(self, service: str, stages: Sequence[str],
                 registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.stages = tuple(stages)
        self.stage_seconds = self.histogram(
            "stage_seconds", f"Duration of the pipeline stages the {service} performs, seconds "
            "(successful runs)", ("stage",), STAGE_BUCKETS)
        for stage in self.stages:
            self.stage_seconds.labels(stage=stage)

    def name(self, what: str) -> str:
        return metric_name(self.service, what)

    def counter(self, what: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self.name(what), documentation, tuple(labels), registry=self.registry)

    def gauge(self, what: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(self.name(what), documentation, tuple(labels), registry=self.registry)

    def histogram(self, what: str, documentation: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = STAGE_BUCKETS) -> Histogram:
        return Histogram(self.name(what), documentation, tuple(labels), registry=self.registry,
                         buckets=tuple(buckets))

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record one run of ``stage`` (one of :attr:`stages`: a fixed set, never data)."""
        if stage not in self.stages:
            raise ValueError(f"unknown stage {stage!r} of the {self.service} (known: "
                             f"{', '.join(self.stages)})")
        self.stage_seconds.labels(stage=stage).observe(max(0.0, seconds))

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Time the block as one run of ``stage``; a block that raises is not recorded."""
        started = time.monotonic()
        yield
        self.observe_stage(stage, time.monotonic() - started)

    def value(self, sample: str, **labels: str) -> float:
        """The current value of sample ``spinemets_<service>_<sample>`` (0 if absent), e.g.
        ``value("stage_seconds_count", stage="pairing")``; for tests and diagnostics."""
        found = self.registry.get_sample_value(self.name(sample), labels)
        return 0.0 if found is None else float(found)


def init_labels(metric: Counter | Gauge | Histogram, label: str, values: Iterable[str]) -> None:
    """Create the series of every value of ``label``, so they are exported (at 0) from the start."""
    for value in values:
        metric.labels(**{label: value})


def url(host: str, port: int) -> str:
    """Where a scraper on this machine finds the endpoint bound to ``host:port``."""
    local = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in local:
        local = f"[{local}]"
    return f"http://{local}:{port}/metrics"


class Exporter:
    """``GET /metrics`` of a registry over HTTP, in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry, self.host, self.port = registry, host, port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. :class:`SpineMetsError` if it cannot bind."""
        try:
            self._server, self._thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise SpineMetsError(f"cannot export metrics on {self.host}:{self.port}: {exc}",
                                 reason="metrics-port-unavailable") from None
        self.port = int(self._server.server_address[1])
        log.info("metrics exported", extra=logs.fields(url=url(self.host, self.port)))
        return self.port

    @property
    def url(self) -> str:
        return url(self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def serve(metrics: ServiceMetrics, host: str, port: int) -> Exporter | None:
    """Export ``metrics`` on ``host:port``; ``port`` 0 disables the endpoint (``None``)."""
    if port == 0:
        log.info("metrics endpoint disabled (metrics_port 0)")
        return None
    exporter = Exporter(metrics.registry, host, port)
    exporter.start()
    return exporter
