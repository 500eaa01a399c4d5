"""The registrar's Prometheus metrics (``spinemets_registrar_*``).

- ``stage_seconds{stage}``: ``pairing`` (recording a study and finding its prior) and
  ``registration`` (fetching both studies, registering and measuring the lesion change);
- ``pairings_total{prior}``: studies paired, ``found`` (a prior study) or ``none``;
- ``registrations_total{outcome}``: comparisons with the prior, ``done`` or ``failed``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from spinemets.metrics import ServiceMetrics, init_labels

STAGES = ("pairing", "registration")


class RegistrarMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("registrar", STAGES, registry)
        self.pairings = self.counter("pairings_total", "Studies paired, by whether a prior "
                                     "study was found", ("prior",))
        init_labels(self.pairings, "prior", ("found", "none"))
        self.registrations = self.counter("registrations_total", "Comparisons of a study "
                                          "with its prior, by outcome", ("outcome",))
        init_labels(self.registrations, "outcome", ("done", "failed"))
