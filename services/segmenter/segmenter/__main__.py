"""``python -m segmenter``: serve ``SegmenterService`` until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import sys

from segmenter.metrics import SegmenterMetrics
from segmenter.server import HealthMonitor, SegmenterService, load_models
from segmenter.settings import Settings
from spinemets import logs
from spinemets.errors import ModelError
from spinemets.grpcutil import Server
from spinemets.startup import EXIT_BAD_CONFIG, start_metrics, start_service
from spinemets.v1 import segmenter_pb2_grpc

log = logging.getLogger("segmenter")


def main() -> int:
    _, settings = start_service("segmenter", Settings)
    service_metrics = SegmenterMetrics()
    try:
        models = load_models(settings, service_metrics)
    except ModelError as exc:
        log.error("cannot load the models: %s", exc)
        return EXIT_BAD_CONFIG
    for role, model in models.items():
        log.info("model", extra=logs.fields(role=role, name=model.spec.name,
                                            version=model.spec.version, title=model.spec.title,
                                            demo=model.spec.demo))
    exporter = start_metrics("segmenter", service_metrics, settings.grpc_host,
                             settings.metrics_port)
    server = Server("segmenter", f"{settings.grpc_host}:{settings.grpc_port}")
    server.set_serving(False)
    server.add(segmenter_pb2_grpc.add_SegmenterServiceServicer_to_server,
               SegmenterService(settings, models, service_metrics))
    server.start()
    monitor = HealthMonitor(server, models, settings.health_interval_s)
    monitor.start()
    server.serve_until_signal(settings.drain_s)
    monitor.stop()
    for model in models.values():
        model.close()
    if exporter is not None:
        exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
