"""The risk service's Prometheus metrics (``spinemets_risk_*``).

- ``stage_seconds{stage}``: ``assessment`` (measurements, SEG and SR into the outbox) and
  ``delivery`` (C-STORE of an outbox entry to every destination, retries included);
- ``delivery_retries_total``: C-STORE attempts after the first, per destination and call;
- ``delivery_failures_total``: destinations still lacking objects when a Deliver call gives up;
- ``objects_delivered_total{kind}``: result objects acknowledged by a destination, ``SEG``,
  ``SR``, ``DOC`` (the report PDF) or ``OT`` (its Secondary Capture pages).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from spinemets.metrics import ServiceMetrics, init_labels

STAGES = ("assessment", "delivery")
#: Kinds of result objects (their modality).
KINDS = ("SEG", "SR", "DOC", "OT")


class RiskMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("risk", STAGES, registry)
        self.delivery_retries = self.counter(
            "delivery_retries_total", "C-STORE attempts after the first (per destination and "
            "Deliver call)")
        self.delivery_failures = self.counter(
            "delivery_failures_total", "Destinations still lacking objects after the last "
            "attempt of a Deliver call")
        self.objects_delivered = self.counter(
            "objects_delivered_total", "Result objects acknowledged by a destination, by kind",
            ("kind",))
        init_labels(self.objects_delivered, "kind", KINDS)

    def delivered(self, modality: str) -> None:
        self.objects_delivered.labels(kind=modality if modality in KINDS else "other").inc()
