"""``python -m risk``: serve RiskService until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import sys
import warnings

from pydicom import config as pydicom_config

from risk.server import build
from risk.settings import Settings
from spinemets import logs
from spinemets.config import CommonSettings, load_section, read_raw
from spinemets.errors import ConfigError

log = logging.getLogger("risk")


def main() -> int:
    try:
        raw = read_raw()
        common = load_section(CommonSettings, "common", raw)
        settings = load_section(Settings, "risk", raw)
    except ConfigError as exc:
        print(f"risk: {exc}", file=sys.stderr)
        return 2
    logs.configure("risk", common.log_level)
    # pydicom's validation warnings and highdicom's person-name check quote element values,
    # which may be patient names or IDs.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
    log.info("settings", extra=logs.fields(settings=settings.model_dump(mode="json")))
    server = build(settings, common.data_dir)
    server.start()
    server.set_serving(True)
    server.serve_until_signal(settings.drain_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
