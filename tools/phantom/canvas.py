"""The arrays a phantom is painted into: HU, tissue classes and the three label maps.

Painting blends a value into the HU array with the partial-volume fraction of each voxel,
``clip(0.5 - d / ramp, 0, 1)`` for a signed distance ``d``; tissue classes and labels take the
voxel-centre test ``d <= 0``. Later paint covers earlier paint.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from phantom.shapes import F32, Block, Grid


class Tissue(enum.IntEnum):
    """Tissue class of a voxel centre (the ``tissues`` array of a phantom)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    SOFT = 3  # organs, chest and abdominal wall, unlabelled muscle
    MUSCLE = 4  # labelled paraspinal muscles
    CSF = 5
    DISC = 6
    TRABECULAR = 7
    CORTEX = 8
    RIB = 9
    LYTIC = 10
    BLASTIC = 11


AIR_HU = -1000.0


@dataclass
class Canvas:
    """Arrays ``[slice, row, column]`` on ``grid``; ``ramp`` is the partial-volume width (mm)."""

    grid: Grid
    ramp: float
    hu: F32
    tissue: npt.NDArray[np.uint8]
    vertebrae: npt.NDArray[np.uint8]
    muscles: npt.NDArray[np.uint8]
    lesions: npt.NDArray[np.uint8]

    @classmethod
    def empty(cls, grid: Grid) -> Canvas:
        ramp = float(np.prod(grid.spacing)) ** (1 / 3)
        return cls(grid, ramp, np.full(grid.shape, AIR_HU, dtype=np.float32),
                   np.zeros(grid.shape, np.uint8), np.zeros(grid.shape, np.uint8),
                   np.zeros(grid.shape, np.uint8), np.zeros(grid.shape, np.uint8))

    def fraction(self, d: F32) -> F32:
        return np.asarray(np.clip(np.float32(0.5) - d / np.float32(self.ramp), 0, 1),
                          dtype=np.float32)


def blend(hu: F32, fraction: F32, value: float) -> None:
    """``hu += fraction * (value - hu)`` in place."""
    hu += fraction * (np.float32(value) - hu)


def paint(canvas: Canvas, block: Block, d: F32, value: float, tissue: Tissue,
          label: tuple[npt.NDArray[np.uint8], int] | None = None) -> None:
    """Paint one material where ``d`` (distance on ``block``) is negative."""
    blend(canvas.hu[block], canvas.fraction(d), value)
    inside = d <= 0
    canvas.tissue[block][inside] = tissue
    if label is not None:
        label[0][block][inside] = label[1]


def paint_bone(canvas: Canvas, block: Block, d: F32, cortex: float, marrow: float, shell: float,
               tissues: tuple[Tissue, Tissue], label: int | None = None) -> None:
    """Paint a bone: cortical shell of thickness ``shell`` round a marrow of ``marrow`` HU."""
    hu = canvas.hu[block]
    blend(hu, canvas.fraction(d), cortex)
    inner = d + np.float32(shell)
    blend(hu, canvas.fraction(inner), marrow)
    outer_tissue, inner_tissue = tissues
    inside = d <= 0
    t = canvas.tissue[block]
    t[inside] = outer_tissue
    t[inner <= 0] = inner_tissue
    if label is not None:
        canvas.vertebrae[block][inside] = label
