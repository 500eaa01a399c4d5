"""``python -m risk``: serve RiskService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import sys

from risk.server import build
from risk.settings import Settings
from spinemets.startup import start_service


def main() -> int:
    common, settings = start_service("risk", Settings)
    server = build(settings, common.data_dir)
    server.start()
    server.set_serving(True)
    server.serve_until_signal(settings.drain_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
