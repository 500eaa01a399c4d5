"""Overlap of two masks on one grid: Dice and the 95th-percentile Hausdorff distance."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Mask = npt.NDArray[np.bool_]


def dice(a: Mask, b: Mask) -> float:
    """2 |a & b| / (|a| + |b|); 0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 0.0


def _surface(mask: Mask) -> Mask:
    surface: Mask = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return surface


def hd95(a: Mask, b: Mask, spacing_zyx: npt.ArrayLike) -> float:
    """95th-percentile Hausdorff distance (mm) between the surfaces of two masks.

    The larger of the two directed 95th percentiles of surface-to-surface distances; infinite
    when a mask is empty. ``spacing_zyx`` is the voxel size along the array axes.
    """
    if not a.any() or not b.any():
        return float("inf")
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing_zyx)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing_zyx)
    return float(max(np.percentile(to_b[surface_a], 95), np.percentile(to_a[surface_b], 95)))
