"""``python -m stack up|demo``: run the local stack, or the end-to-end demo."""

from __future__ import annotations

import argparse
import logging
import threading

from spinemets import logs
from spinemets.errors import SpineMetsError
from stack.demo import run_demo
from stack.stack import StackConfig, stack_running

log = logging.getLogger("stack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=("up", "demo"),
                        help="up: run Triton, the services and a mock PACS until Ctrl-C; "
                             "demo: push a phantom through the stack and print the results")
    args = parser.parse_args(argv)
    logs.configure("stack")
    try:
        config = StackConfig.load()
        if args.command == "demo":
            return run_demo(config)
        with stack_running(config, with_pacs=True):
            print(f"stack is up: DICOM {config.listener.ae_title}@127.0.0.1:"
                  f"{config.listener.port}; logs in {config.stack.root / 'logs'}; Ctrl-C stops")
            print(f"metrics (Prometheus):\n{config.metrics_summary()}")
            threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    except SpineMetsError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
