"""Settings of the segmenter (section ``segmenter`` of config/spinemets.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from segmenter.crop import CropRule
from spinemets.config import Port, Section


class Settings(Section):
    """Section ``segmenter``: its gRPC endpoint, the Triton server and how inference runs."""

    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 50052
    #: Port of the Prometheus endpoint (``GET /metrics`` on ``grpc_host``); 0 disables it.
    metrics_port: Port = 9102
    #: Triton's gRPC endpoint (host:port).
    triton_url: str = "127.0.0.1:8001"
    #: Folder with one sub-folder per role holding the model's ``model.json``.
    model_repository: Path = Path("triton-models")
    #: Model roles served, each with ``<model_repository>/<role>/model.json``; a request that
    #: names no role gets all of them.
    roles: tuple[str, ...] = Field(default=("vertebrae", "muscles", "lesions"), min_length=1)
    #: Roles run only inside the box around another role's labels grown by a margin
    #: (:mod:`segmenter.crop`), when a request names both; rules of roles not served are inert.
    crops: dict[str, CropRule] = Field(
        default_factory=lambda: {"lesions": CropRule(around="vertebrae", margin_mm=10.0,
                                                     extend_reference=True)})
    #: Patches per Triton request; larger requests are split at the model's max_batch_size.
    batch_size: int = Field(default=4, ge=1)
    #: Requests in flight at once, so that Triton's dynamic batcher can group them.
    concurrency: int = Field(default=2, ge=1)
    #: Sliding-window step as a fraction of the patch size (nnU-Net: 0.5).
    step_size: float = Field(default=0.5, gt=0, le=1)
    #: Test-time mirroring over the model's mirror axes (up to 8 times slower; nnU-Net's
    #: default for the models it trains).
    mirror: bool = False
    #: Connected components and vertebra level order after inference; off returns the
    #: network's own segmentation (for an imported nnU-Net model: nnU-Net's).
    postprocess: bool = True
    #: Deadline of each Triton call (s).
    request_timeout_s: float = Field(default=60.0, gt=0)
    #: Deadline for streaming a volume from the listener (s).
    volume_timeout_s: float = Field(default=300.0, gt=0)
    #: Series segmented at the same time (each holds its volume and probabilities in memory).
    parallel_series: int = Field(default=1, ge=1)
    #: Interval of the Triton readiness check behind the health service (s).
    health_interval_s: float = Field(default=5.0, gt=0)
    #: On SIGTERM, how long running calls may take to finish (s).
    drain_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _crops(self) -> Settings:
        for role, rule in self.crops.items():
            if role not in self.roles:
                continue
            if rule.around not in self.roles:
                raise ValueError(f"crops.{role}.around: {rule.around!r} is not a served role "
                                 f"({', '.join(self.roles)})")
            if rule.around == role or rule.around in self.crops:
                raise ValueError(f"crops.{role}.around: {rule.around!r} must be an uncropped "
                                 f"role other than {role!r}")
        return self
