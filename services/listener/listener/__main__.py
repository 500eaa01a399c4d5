"""``python -m listener``: run the listener until SIGTERM/SIGINT, then drain and stop."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from listener.app import Listener
from listener.settings import Settings
from spinemets.errors import SpineMetsError
from spinemets.startup import start_service

log = logging.getLogger("listener")


def main() -> int:
    common, settings = start_service("listener", Settings)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing current work", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = Listener(settings, common.pseudonym_key.encode(), common.data_dir, common.baseline)
    try:
        app.start()
    except SpineMetsError as exc:
        log.error("cannot start: %s", exc)
        app.stop()
        return 1
    while not stop.wait(1.0):
        pass
    app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
