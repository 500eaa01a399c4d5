"""``python -m listener``: run the listener until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from pydicom import config as pydicom_config

from listener.app import Listener
from listener.settings import Settings
from spinemets import logs
from spinemets.config import CommonSettings, load_section, read_raw
from spinemets.errors import ConfigError

log = logging.getLogger("listener")


def main() -> int:
    try:
        raw = read_raw()
        common = load_section(CommonSettings, "common", raw)
        settings = load_section(Settings, "listener", raw)
    except ConfigError as exc:
        print(f"listener: {exc}", file=sys.stderr)
        return 2
    logs.configure("listener", common.log_level)
    # pydicom's validation warnings quote element values, which may be patient names or IDs.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    log.info("settings", extra=logs.fields(settings=settings.model_dump(mode="json")))

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing current work", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = Listener(settings, common.pseudonym_key.encode(), common.data_dir)
    app.start()
    while not stop.wait(1.0):
        pass
    app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
