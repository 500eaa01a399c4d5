"""The local stack: Triton and the four services as processes, started in order, health-checked,
each logging to its own file, stopped cleanly (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from spinemets.errors import SpineMetsError
from spinemets.grpcutil import wait_healthy

log = logging.getLogger(__name__)

#: Start order: every service after the ones it calls.
SERVICES: tuple[str, ...] = ("registrar", "risk", "segmenter", "listener")


@dataclass
class ServiceProcess:
    """One service started as ``python -m <name>`` with the stack's configuration."""

    name: str
    grpc_address: str
    log_file: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.name], stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env}, start_new_session=True,
        )

    def wait_healthy(self, timeout: float) -> None:
        """Block until the gRPC health service says SERVING; fail early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SpineMetsError(f"{self.name} exited with code {self.process.returncode}; "
                                     f"see {self.log_file}")
            if wait_healthy(self.grpc_address, timeout=1.0):
                return
            time.sleep(0.2)
        raise SpineMetsError(f"{self.name} not healthy after {timeout:.0f} s; see {self.log_file}")

    def stop(self, grace: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s, killing it", self.name, grace)
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, no drain (crash tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(processes: list[ServiceProcess], timeout: float = 120.0) -> Iterator[None]:
    """Start the processes in order, each healthy before the next; stop them in reverse."""
    started: list[ServiceProcess] = []
    try:
        for proc in processes:
            proc.start()
            started.append(proc)
            proc.wait_healthy(timeout)
            log.info("%s is serving", proc.name)
        yield
    finally:
        for proc in reversed(started):
            proc.stop()
