"""``python -m registrar``: serve RegistrarService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import sys

from registrar.metrics import RegistrarMetrics
from registrar.server import build
from registrar.settings import Settings
from spinemets.startup import start_metrics, start_service


def main() -> int:
    common, settings = start_service("registrar", Settings)
    service_metrics = RegistrarMetrics()
    exporter = start_metrics("registrar", service_metrics, settings.grpc_host,
                             settings.metrics_port)
    server, history = build(settings, common.data_dir, common.baseline, service_metrics)
    server.start()
    server.set_serving(True)
    try:
        server.serve_until_signal(settings.drain_s)
    finally:
        history.close()
        if exporter is not None:
            exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
