"""``python -m registrar``: serve RegistrarService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import sys

from registrar.server import build
from registrar.settings import Settings
from spinemets import logs
from spinemets.config import CommonSettings, load_section, read_raw
from spinemets.errors import ConfigError

log = logging.getLogger("registrar")


def main() -> int:
    try:
        raw = read_raw()
        common = load_section(CommonSettings, "common", raw)
        settings = load_section(Settings, "registrar", raw)
    except ConfigError as exc:
        print(f"registrar: {exc}", file=sys.stderr)
        return 2
    logs.configure("registrar", common.log_level)
    log.info("settings", extra=logs.fields(settings=settings.model_dump(mode="json")))
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
