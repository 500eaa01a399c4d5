"""``python -m registrar``: serve RegistrarService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import sys

from registrar.server import build
from registrar.settings import Settings
from spinemets.startup import start_service


def main() -> int:
    common, settings = start_service("registrar", Settings)
    server, history = build(settings, common.data_dir)
    server.start()
    server.set_serving(True)
    try:
        server.serve_until_signal(settings.drain_s)
    finally:
        history.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
