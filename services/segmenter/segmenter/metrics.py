"""The segmenter's Prometheus metrics (``spinemets_segmenter_*``).

- ``stage_seconds{stage}``: ``volume_fetch`` (streaming the volume from the listener) and
  ``segmentation`` (every requested model on it: pre-processing, sliding window, post-processing);
- ``triton_request_seconds{model}``: each inference request to Triton (successful or not);
- ``triton_errors_total{model, reason}``: failed Triton requests;
- ``patches_total{model}``: patches inferred (mirrored copies count).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from spinemets.metrics import REQUEST_BUCKETS, ServiceMetrics

STAGES = ("volume_fetch", "segmentation")


class SegmenterMetrics(ServiceMetrics):
    """The segmenter's metrics; model labels are model names from ``model.json``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("segmenter", STAGES, registry)
        self.triton_seconds = self.histogram(
            "triton_request_seconds", "Duration of Triton inference requests, seconds",
            ("model",), REQUEST_BUCKETS)
        self.triton_errors = self.counter(
            "triton_errors_total", "Failed Triton inference requests, by reason",
            ("model", "reason"))
        self.patches = self.counter("patches_total", "Patches inferred by Triton", ("model",))

    def watch_model(self, model: str) -> None:
        """Create the model's series so that they are exported (at 0) before the first request."""
        self.triton_seconds.labels(model=model)
        self.patches.labels(model=model)
