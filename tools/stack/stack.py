"""The local stack: embedded Triton, the four services and (in demo mode) a mock PACS.

All processes read the same configuration file; the stack adds environment overrides that place
their state under one root folder (``.demo`` by default) and point delivery at the mock PACS.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from listener.settings import Settings as ListenerSettings
from registrar.settings import Settings as RegistrarSettings
from risk.settings import Settings as RiskSettings
from segmenter.settings import Settings as SegmenterSettings
from spinemets import metrics
from spinemets.config import AETitle, Port, Section, config_path, load_section, read_raw
from stack.mock_pacs import MockPacs
from stack.processes import SERVICES, ServiceProcess, running
from stack.triton import TritonProcess, TritonSettings

log = logging.getLogger(__name__)

#: The services in pipeline order (for display; :data:`SERVICES` is the start order).
PIPELINE: tuple[str, ...] = ("listener", "segmenter", "registrar", "risk")


class StackSettings(Section):
    """Section ``stack``: the local stack and the demo."""

    #: Folder for the stack's state, logs, the mock PACS and the demo phantom.
    root: Path = Path(".demo")
    pacs_ae_title: AETitle = "PACS"
    pacs_port: Port = 11113
    #: Calling AE title of the demo sender (must be allowed by the listener).
    sender_ae_title: AETitle = "SPINEMETS-DEMO"
    #: Seconds each process may take to become healthy (Triton loads and warms up models).
    startup_timeout_s: float = Field(300.0, gt=0)
    #: Seconds the demo waits for the SEG and SR at the PACS.
    result_timeout_s: float = Field(1200.0, gt=0)
    #: Seed of the demo phantom.
    phantom_seed: int = 7
    #: Pixel spacing (column, row) and slice spacing of the demo phantom, mm.
    phantom_spacing: tuple[float, float, float] = (0.9, 0.9, 2.5)
    #: In-plane matrix of the demo phantom.
    phantom_matrix: int = Field(384, ge=64, le=1024)
    #: Metastatic lesions of the demo phantom (at distinct levels).
    phantom_lesions: int = Field(4, ge=0, le=17)


@dataclass(frozen=True)
class StackConfig:
    """Everything the stack needs to know about the processes it starts."""

    stack: StackSettings
    triton: TritonSettings
    listener: ListenerSettings
    segmenter: SegmenterSettings
    registrar: RegistrarSettings
    risk: RiskSettings

    @classmethod
    def load(cls, raw: dict[str, Any] | None = None) -> StackConfig:
        raw = read_raw() if raw is None else raw
        return cls(
            stack=load_section(StackSettings, "stack", raw),
            triton=load_section(TritonSettings, "triton", raw),
            listener=load_section(ListenerSettings, "listener", raw),
            segmenter=load_section(SegmenterSettings, "segmenter", raw),
            registrar=load_section(RegistrarSettings, "registrar", raw),
            risk=load_section(RiskSettings, "risk", raw),
        )

    def grpc_address(self, service: str) -> str:
        ports = {"listener": self.listener.grpc_port, "segmenter": self.segmenter.grpc_port,
                 "registrar": self.registrar.grpc_port, "risk": self.risk.grpc_port}
        return f"127.0.0.1:{ports[service]}"

    def metrics_url(self, service: str) -> str | None:
        """Where the service's Prometheus endpoint is scraped; ``None`` if it is disabled."""
        ports = {"listener": self.listener.metrics_port, "segmenter": self.segmenter.metrics_port,
                 "registrar": self.registrar.metrics_port, "risk": self.risk.metrics_port}
        return metrics.url("127.0.0.1", ports[service]) if ports[service] else None

    def metrics_summary(self) -> str:
        """One line per service: its metrics endpoint."""
        return "\n".join(f"  {name:<10} {self.metrics_url(name) or 'disabled (metrics_port 0)'}"
                         for name in PIPELINE)


def service_environment(config: StackConfig) -> dict[str, str]:
    """Overrides that every process of the stack gets on top of the configuration file."""
    root = config.stack.root.resolve()
    return {
        "SPINEMETS_CONFIG": str(config_path().resolve()),
        "SPINEMETS__COMMON__DATA_DIR": str(root / "work"),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class RunningStack:
    """Handles on a started stack: the mock PACS (if any) and each service process."""

    pacs: MockPacs | None
    services: dict[str, ServiceProcess]


@contextlib.contextmanager
def stack_running(config: StackConfig, *, with_pacs: bool) -> Iterator[RunningStack]:
    """Start Triton, the services (and the mock PACS); stop everything on exit."""
    root = config.stack.root
    logs_dir = root / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    pacs: MockPacs | None = None
    if with_pacs:
        pacs = MockPacs(root / "pacs", config.stack.pacs_ae_title, port=config.stack.pacs_port)
        pacs.start()
    triton = TritonProcess(config.triton, log_file=logs_dir / "triton.log")
    env = service_environment(config)
    services = [
        ServiceProcess(name, config.grpc_address(name), logs_dir / f"{name}.log", env)
        for name in SERVICES
    ]
    try:
        log.info("starting Triton (log: %s)", triton.log_file)
        triton.start()
        triton.wait_ready(config.stack.startup_timeout_s)
        with running(services, timeout=config.stack.startup_timeout_s):
            yield RunningStack(pacs, {proc.name: proc for proc in services})
    finally:
        triton.stop()
        if pacs is not None:
            pacs.stop()

