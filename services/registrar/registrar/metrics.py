"""The registrar's Prometheus metrics (``spinemets_registrar_*``).

- ``stage_seconds{stage="pairing"}``: recording a study and finding its prior;
- ``pairings_total{prior}``: studies paired, ``found`` (a prior study) or ``none``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from spinemets.metrics import ServiceMetrics, init_labels

STAGES = ("pairing",)


class RegistrarMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("registrar", STAGES, registry)
        self.pairings = self.counter("pairings_total", "Studies paired, by whether a prior "
                                     "study was found", ("prior",))
        init_labels(self.pairings, "prior", ("found", "none"))
