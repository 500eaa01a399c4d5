"""The single-network roles (muscles, lesions): targets, phantoms, network and training settings.

Each role is one :class:`~demomodel.network.PlainUNet` trained with nnU-Net's Dice + CE on
phantoms generated at the role's spacing (the vertebra model, two U-Nets, keeps its own
configuration in :mod:`demomodel.train`).

- ``muscles``: the six labelled paraspinal muscles (deep back muscle, psoas major, quadratus
  lumborum, left and right) at 2.5 mm. The labels are lateral, so there is no left-right
  mirroring; the patch (400 mm wide) spans the whole body, so every patch sees the spine and
  knows the sides. Soft-tissue normalisation (fat -1, muscle +0.5).
- ``lesions``: lytic, blastic and mixed lesion voxels at 1.5 mm. Training phantoms have 2-7
  lesions (pedicle lesions in half of them) and a 240 mm in-plane field of view round the spine
  (a targeted spine reconstruction). The segmenter runs this model only inside the box of the
  vertebrae grown by :data:`LESION_MARGIN_MM` (``segmenter.crops``), so the phantoms are cropped
  to the same box: the model never learns from, and is never asked about, ribs, lungs or the
  edges of the field of view far from the spine, where the first version, trained on whole
  phantoms with three patches in four on a lesion, put nearly all its false positives. Half the
  patches are centred on a lesion voxel; the others fall anywhere in the box, mostly on bone
  without lesions. Eight validation phantoms (three held too few lytic and mixed voxels for a
  stable Dice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import phantom
from demomodel.data import (
    TRAIN_SEEDS,
    VALIDATION_SEEDS,
    Augmentation,
    Crop,
    Normalization,
    PhantomGrid,
    Target,
)
from demomodel.network import NetworkConfig
from spinemets import labels


def _channels(group: labels.Group) -> tuple[str, ...]:
    return ("background", *(label.name for label in labels.in_group(group)))


def muscle_options(seed: int, spacing_zyx: Sequence[float]) -> phantom.PhantomOptions:
    """Training phantom ``seed`` of the muscle model: random field of view (a third full spine),
    a compression fracture in a quarter of them."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    full_spine = bool(rng.random() < 1 / 3)
    compression = "random" if rng.random() < 0.25 else None
    return phantom.PhantomOptions(seed=seed, spacing=(spacing_zyx[2], spacing_zyx[1],
                                                      spacing_zyx[0]),
                                  full_spine=full_spine, compression=compression)


#: In-plane field of view of the lesion model's training phantoms (mm).
LESION_FOV_MM = 240.0


def lesion_options(seed: int, spacing_zyx: Sequence[float]) -> phantom.PhantomOptions:
    """Training phantom ``seed`` of the lesion model: 2-7 lesions of all kinds, pedicle lesions
    in half of them, a compression fracture in a quarter, a 240 mm field of view."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9]))
    lesions = int(rng.integers(2, 8))
    posterior = bool(rng.random() < 0.5)
    compression = "random" if rng.random() < 0.25 else None
    return phantom.PhantomOptions(seed=seed, spacing=(spacing_zyx[2], spacing_zyx[1],
                                                      spacing_zyx[0]),
                                  matrix=round(LESION_FOV_MM / spacing_zyx[2]), lesions=lesions,
                                  posterior_lesions=posterior, compression=compression)


#: Margin of the lesion model's box around the vertebrae T1-L5 (config/spinemets.yaml,
#: ``segmenter.crops.lesions.margin_mm``), mm.
LESION_MARGIN_MM = 10.0
LESION_SPACING_ZYX = (1.5, 1.5, 1.5)
LESION_PATCH_ZYX = (64, 64, 64)

MUSCLES = Target("muscles", "muscles", _channels(labels.Group.MUSCLE), muscle_options)
LESIONS = Target("lesions", "lesions", _channels(labels.Group.LESION), lesion_options,
                 Crop(LESION_MARGIN_MM, (LESION_PATCH_ZYX[0] * LESION_SPACING_ZYX[0],
                                         LESION_PATCH_ZYX[1] * LESION_SPACING_ZYX[1],
                                         LESION_PATCH_ZYX[2] * LESION_SPACING_ZYX[2])))


@dataclass(frozen=True)
class RoleConfig:
    """Everything a single-network role is trained with (recorded in checkpoint and model.json)."""

    target: Target
    spacing_zyx: tuple[float, float, float]
    patch_size_zyx: tuple[int, int, int]
    features: tuple[int, ...]
    normalization: Normalization
    augmentation: Augmentation
    foreground_fraction: float
    batch_size: int
    learning_rate: float
    iterations: int
    time_budget_s: float
    train_phantoms: int = 60
    validation_phantoms: int = 3
    #: Model-grid phantoms: the committed muscle and lesion models were trained on them.
    phantom_grid: PhantomGrid = "model"
    weight_decay: float = 3e-5
    seed: int = 12345
    threads: int = 2
    bf16: bool = True
    #: Seeds of the training and validation phantoms (first, stop), filled from the counts.
    train_seeds: tuple[int, int] = field(init=False)
    validation_seeds: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_seeds",
                           (TRAIN_SEEDS.start, TRAIN_SEEDS.start + self.train_phantoms))
        object.__setattr__(self, "validation_seeds", (
            VALIDATION_SEEDS.start, VALIDATION_SEEDS.start + self.validation_phantoms))

    @property
    def role(self) -> str:
        return self.target.role

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(self.patch_size_zyx, self.features, len(self.target.channels))


ROLES: dict[str, RoleConfig] = {
    "muscles": RoleConfig(
        target=MUSCLES, spacing_zyx=(2.5, 2.5, 2.5), patch_size_zyx=(32, 128, 160),
        features=(8, 16, 32, 64, 96),
        normalization=Normalization(lower=-250.0, upper=250.0, mean=0.0, std=100.0),
        augmentation=Augmentation(mirror_x=0.0), foreground_fraction=0.5, batch_size=2,
        learning_rate=3e-3, iterations=1500, time_budget_s=22 * 60),
    "lesions": RoleConfig(
        target=LESIONS, spacing_zyx=LESION_SPACING_ZYX, patch_size_zyx=LESION_PATCH_ZYX,
        features=(12, 24, 48, 96, 128),
        normalization=Normalization(lower=-200.0, upper=1500.0, mean=0.0, std=300.0),
        augmentation=Augmentation(), foreground_fraction=0.5, batch_size=2,
        learning_rate=3e-3, iterations=1500, time_budget_s=22 * 60, train_phantoms=80,
        validation_phantoms=8),
}
