"""``python -m risk``: serve RiskService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import sys

from risk.metrics import RiskMetrics
from risk.server import build
from risk.settings import Settings
from spinemets import metrics
from spinemets.errors import SpineMetsError
from spinemets.startup import start_service

log = logging.getLogger("risk")


def main() -> int:
    common, settings = start_service("risk", Settings)
    service_metrics = RiskMetrics()
    try:
        exporter = metrics.serve(service_metrics, settings.grpc_host, settings.metrics_port)
    except SpineMetsError as exc:
        log.error("cannot start: %s", exc)
        return 1
    server = build(settings, common.data_dir, service_metrics)
    server.start()
    server.set_serving(True)
    server.serve_until_signal(settings.drain_s)
    if exporter is not None:
        exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
