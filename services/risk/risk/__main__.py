"""``python -m risk``: serve RiskService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import sys

from risk.metrics import RiskMetrics
from risk.server import build
from risk.settings import Settings
from spinemets.startup import start_metrics, start_service


def main() -> int:
    common, settings = start_service("risk", Settings)
    service_metrics = RiskMetrics()
    exporter = start_metrics("risk", service_metrics, settings.grpc_host,
                             settings.metrics_port)
    server = build(settings, common.data_dir, service_metrics)
    server.start()
    server.set_serving(True)
    server.serve_until_signal(settings.drain_s)
    if exporter is not None:
        exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
