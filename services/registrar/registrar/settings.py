"""Settings of the registrar (section ``registrar`` of config/spinemets.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from spinemets.config import Port, Section


class RegistrationSettings(Section):
    """Per-vertebra rigid registration (``registrar.registration``)."""

    #: Similarity of the HU: Mattes mutual information (robust to lesions changing the HU
    #: inside a vertebra) or mean squares.
    metric: Literal["mattes", "mean-squares"] = "mattes"
    histogram_bins: int = Field(default=32, ge=8, le=256)
    #: Share of the masked voxels the metric samples (random, seeded) at each level.
    sampling: float = Field(default=0.3, gt=0, le=1)
    seed: int = Field(default=1, ge=1)
    #: Resolution levels, coarse to fine: shrink factor and Gaussian smoothing (mm) of each.
    shrink_factors: tuple[int, ...] = (2, 1)
    smoothing_mm: tuple[float, ...] = (1.0, 0.0)
    iterations: int = Field(default=200, ge=1)
    #: The metric looks at the vertebra grown by this margin (mm), its neighbours left out.
    mask_margin_mm: float = Field(default=3.0, ge=0)
    #: Each study is cropped to the vertebra's box grown by this margin (mm).
    crop_margin_mm: float = Field(default=12.0, ge=0)
    #: A vertebra with fewer voxels in either study is skipped.
    min_voxels: int = Field(default=500, ge=1)
    #: Quality of the warped masks below which a registration is flagged as failed.
    min_dice: float = Field(default=0.8, ge=0, le=1)
    max_hd95_mm: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _levels_agree(self) -> Self:
        if len(self.shrink_factors) != len(self.smoothing_mm) or not self.shrink_factors:
            raise ValueError("shrink_factors and smoothing_mm need one value per level")
        if any(f < 1 for f in self.shrink_factors) or any(s < 0 for s in self.smoothing_mm):
            raise ValueError("shrink factors must be >= 1 and smoothing >= 0")
        return self


class ChangeSettings(Section):
    """Lesion change per vertebra (``registrar.change``)."""

    #: Connected components smaller than this (mL) are not counted as lesions.
    min_lesion_ml: float = Field(default=0.01, ge=0)
    #: A matched lesion grows (shrinks) when its volume changes by more than this, per cent.
    growth_percent: float = Field(default=20.0, ge=0)
    #: Lesions that do not overlap after the transform still match when their centroids are
    #: this close (mm).
    match_distance_mm: float = Field(default=3.0, ge=0)


class Settings(Section):
    """The registrar's settings; see config/spinemets.yaml for documented defaults."""

    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 50053
    #: Port of the Prometheus endpoint (``GET /metrics`` on ``grpc_host``); 0 disables it.
    metrics_port: Port = 9103
    #: SQLite database of processed studies; default ``<common.data_dir>/registrar/history.db``.
    database: Path | None = None
    #: On SIGTERM, how long running calls may take to finish, seconds.
    drain_s: float = Field(default=30.0, ge=0)
    registration: RegistrationSettings = RegistrationSettings()
    change: ChangeSettings = ChangeSettings()

    def database_path(self, data_dir: Path) -> Path:
        return self.database if self.database is not None else (
            data_dir / "registrar" / "history.db")
