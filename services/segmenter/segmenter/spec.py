"""The model description (``triton-models/<role>/model.json``): what the client needs.

The file is written by the model's export script or by ``import-nnunet``; its fields are
documented in ``triton-models/README.md``. Array axes are ``(z, y, x)`` of the model's canonical
orientation (:mod:`segmenter.orientation`): LPS (slice towards Superior, row towards Posterior,
column towards Left) or RAS (Superior, Anterior, Right).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spinemets import labels
from spinemets.errors import ModelError

BACKGROUND = "background"

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """nnU-Net's ``CTNormalization``: clip to ``[lower, upper]``, then ``(x - mean) / std``."""

    scheme: Literal["CTNormalization"]
    mean: float
    std: float = Field(gt=0)
    lower: float
    upper: float

    @model_validator(mode="after")
    def _range(self) -> Normalization:
        if self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self


class Interpolation(_Strict):
    """Settings of nnU-Net's ``resample_data_or_seg_to_shape`` (``resampling_fn_*_kwargs``).

    ``order`` is the spline order in-plane (or in 3D), ``order_z`` the order along the
    low-resolution axis when that axis is resampled separately; ``force_separate_z`` ``None``
    lets the spacing decide (anisotropy above 3), as nnU-Net does.
    """

    order: int = Field(ge=0, le=5)
    order_z: int = Field(ge=0, le=1)
    force_separate_z: bool | None = None


class LinearResampling(_Strict):
    """Linear interpolation both ways (SimpleITK, :mod:`segmenter.resampling`)."""

    scheme: Literal["linear"] = "linear"


class NnUNetResampling(_Strict):
    """nnU-Net v2's resampling (:mod:`segmenter.nnunet_resampling`): image and probabilities."""

    scheme: Literal["nnunet"]
    data: Interpolation
    probabilities: Interpolation

    @field_validator("probabilities")
    @classmethod
    def _linear(cls, value: Interpolation) -> Interpolation:
        if value.order > 1:
            raise ValueError(f"probabilities are resampled with order 0 or 1, got {value.order}")
        return value


class TensorSpec(_Strict):
    """Name and Triton datatype of the network's input or output tensor."""

    name: str = Field(min_length=1)
    datatype: Literal["FP32"]


class ModelSpec(BaseModel):
    """A validated ``model.json``. Unknown keys (provenance, training details) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    version: str = Field(pattern=r"^[1-9][0-9]*$")
    role: str = Field(min_length=1)
    title: str
    demo: bool
    orientation: Literal["LPS", "RAS"]
    spacing_zyx: tuple[float, float, float]
    patch_size_zyx: tuple[int, int, int]
    normalization: Normalization
    #: Output channel (as a string key) -> catalogue name; channel 0 is "background", and any
    #: other channel named "background" (a structure the project does not use) counts as it.
    labels: dict[str, str]
    input: TensorSpec
    output: TensorSpec
    mirror_axes: tuple[int, ...] = ()
    resampling: LinearResampling | NnUNetResampling = Field(default_factory=LinearResampling,
                                                           discriminator="scheme")
    #: What the sliding window averages over overlapping patches, mirrors and folds:
    #: softmax probabilities, or logits as nnU-Net v2 does.
    averaging: Literal["softmax", "logits"] = "softmax"
    #: How a voxel's channel is chosen: the most probable channel, or background where channel 0
    #: holds at least half the probability and else the most probable other channel (for
    #: networks that factor foreground x class, as the demo vertebra model's bone x level).
    decision: Literal["argmax", "foreground-first"] = "argmax"

    @field_validator("spacing_zyx")
    @classmethod
    def _spacing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"spacing must be positive, got {list(value)}")
        return value

    @field_validator("patch_size_zyx")
    @classmethod
    def _patch(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"patch size must be positive, got {list(value)}")
        return value

    @field_validator("mirror_axes")
    @classmethod
    def _mirror(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(a not in (0, 1, 2) for a in value) or len(set(value)) != len(value):
            raise ValueError(f"mirror axes must be distinct values of 0, 1, 2, got {list(value)}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.isdigit() or str(int(key)) != key:
                raise ValueError(f"label key {key!r} is not an output channel number")
        channels = sorted(int(k) for k in value)
        if channels != list(range(len(channels))):
            raise ValueError(f"label channels must be 0..{len(channels) - 1} without gaps, "
                             f"got {channels}")
        names = [value[str(c)] for c in channels[1:] if value[str(c)] != BACKGROUND]
        if value["0"] != BACKGROUND or not names:
            raise ValueError('channel 0 must be "background" and at least one label must follow')
        if len(set(names)) != len(names):
            raise ValueError("a catalogue label is assigned to two channels")
        labels.check_names(names)
        return value

    @model_validator(mode="after")
    def _decision(self) -> ModelSpec:
        if self.decision == "foreground-first":
            if self.averaging != "softmax" or isinstance(self.resampling, NnUNetResampling):
                raise ValueError("decision foreground-first needs softmax averaging and linear "
                                 "resampling")
            if any(self.labels[str(c)] == BACKGROUND for c in range(1, self.num_channels)):
                raise ValueError("decision foreground-first needs channel 0 as the only "
                                 "background channel")
        return self

    @property
    def num_channels(self) -> int:
        """Number of network output channels, background included."""
        return len(self.labels)

    @property
    def channel_values(self) -> tuple[int, ...]:
        """Label-map value written for each output channel: 0 for background, else its value."""
        return tuple(0 if name == BACKGROUND else labels.by_name(name).value
                     for name in (self.labels[str(c)] for c in range(self.num_channels)))

    @property
    def label_names(self) -> dict[int, str]:
        """Label-map value -> catalogue name, background excluded (``LabelMap.labels``)."""
        return {labels.by_name(n).value: n for n in self.labels.values() if n != BACKGROUND}

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        """Read and validate ``model.json``; :class:`ModelError` names the file and the field."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"model description {path} not found",
                             reason="missing-model-spec") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"model description {path} is not valid JSON: {exc}",
                             reason="bad-model-spec") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ModelError(f"model description {path} is invalid: {problems}",
                             reason="bad-model-spec") from None
