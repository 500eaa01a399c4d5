"""Resampling between the CT grid and a model's spacing with SimpleITK (linear interpolation).

Both grids live in the canonical frame of :mod:`segmenter.orientation` and cover the same
physical extent edge to edge, as nnU-Net's resampling does: the model grid has
``round(size * spacing / target_spacing)`` voxels along each axis, so its effective spacing is
the extent divided by that count. Going back therefore lands exactly on the CT grid.

Arrays are ``(z, y, x)``; SimpleITK images are ``(x, y, z)``, hence the reversals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk  # noqa: N813 - the conventional alias

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]

#: Voxels of the CT grid resampled at once when going back (bounds the working memory).
SLAB_VOXELS = 1 << 24


def target_shape(shape: Sequence[int], spacing: Sequence[float],
                 target_spacing: Sequence[float]) -> Shape3:
    """nnU-Net's new shape: ``round(shape * spacing / target_spacing)``, at least 1."""
    out = [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target_spacing, strict=True)]
    return (out[0], out[1], out[2])


def _grid(shape: Sequence[int], spacing: Sequence[float], target: Sequence[int]
          ) -> tuple[Spacing3, Spacing3]:
    """Spacing and origin of the edge-aligned grid of ``target`` voxels over the same extent.

    The origin is relative to the first voxel centre of the source grid.
    """
    new_spacing = [n * s / t for n, s, t in zip(shape, spacing, target, strict=True)]
    origin = [(ns - s) / 2 for ns, s in zip(new_spacing, spacing, strict=True)]
    return ((new_spacing[0], new_spacing[1], new_spacing[2]), (origin[0], origin[1], origin[2]))


def _image(array: npt.NDArray[np.generic], spacing: Sequence[float],
           origin: Sequence[float] = (0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(v) for v in reversed(spacing)])
    image.SetOrigin([float(v) for v in reversed(origin)])
    return image


def _resample(image: sitk.Image, shape: Sequence[int], spacing: Sequence[float],
              origin: Sequence[float]) -> npt.NDArray[np.float32]:
    out = sitk.Resample(image, [int(v) for v in reversed(shape)], sitk.Transform(),
                        sitk.sitkLinear, [float(v) for v in reversed(origin)],
                        [float(v) for v in reversed(spacing)], [1, 0, 0, 0, 1, 0, 0, 0, 1],
                        0.0, sitk.sitkFloat32, True)
    return np.asarray(sitk.GetArrayFromImage(out), dtype=np.float32)


def to_spacing(array: npt.NDArray[np.int16], spacing: Spacing3, target_spacing: Spacing3,
               clip: tuple[float, float]) -> npt.NDArray[np.float32]:
    """Clip a canonical HU array to ``clip`` and resample it linearly to ``target_spacing``.

    Clipping first is nnU-Net's order (``CTNormalization`` runs before resampling).
    """
    shape = target_shape(array.shape, spacing, target_spacing)
    new_spacing, origin = _grid(array.shape, spacing, shape)
    clipped = sitk.Clamp(_image(array, spacing), sitk.sitkFloat32, clip[0], clip[1])
    return _resample(clipped, shape, new_spacing, origin)


def argmax_on_grid(probabilities: npt.NDArray[np.float32], shape: Shape3, spacing: Spacing3,
                   slab_voxels: int = SLAB_VOXELS, *, are_probabilities: bool = True,
                   foreground_first: bool = False) -> npt.NDArray[np.uint8]:
    """Resample ``[channel, z, y, x]`` probabilities (or logits, ``are_probabilities=False``)
    back to the CT grid and take the argmax.

    ``foreground_first`` (probabilities only) decides in two steps instead: background where
    channel 0 holds at least half the probability, else the most probable other channel. For a
    network whose output factors as P(foreground) x P(class | foreground), such as the demo
    vertebra model (bone x level), this is the decision of its two parts; the plain argmax
    labels background wherever the class is uncertain, even inside clear foreground.

    ``probabilities`` is on the model grid made by :func:`to_spacing` from a CT grid of
    ``shape`` and ``spacing``. The CT grid is processed in slabs of slices, one channel at a
    time, keeping only a running maximum, so memory stays at a few slab-sized arrays whatever
    the channel count and CT size. Ties go to the lower channel, as ``numpy.argmax``.

    A channel whose probability stays below ``1 / channels`` over a slab's support is skipped
    there: linear interpolation keeps the probabilities of a voxel summing to at most one, so
    the winner always has at least ``1 / channels`` (times the share of its support inside
    the grid) and such a channel can never win. Each slab holds only a few vertebrae, so most
    channels are skipped, and the result is exactly that of resampling every channel. With
    ``foreground_first`` the bound is ``1 / (2 (channels - 1))``: where the foreground (above
    one half) wins, the most probable of its channels has at least that share. Logits have no
    such bound: every channel is resampled.
    """
    if foreground_first and not are_probabilities:
        raise ValueError("the foreground-first decision needs probabilities, not logits")
    channels = probabilities.shape[0]
    model_shape = probabilities.shape[1:]
    model_spacing, model_origin = _grid(shape, spacing, model_shape)
    slices_per_slab = max(1, slab_voxels // (shape[1] * shape[2]))
    result = np.empty(shape, dtype=np.uint8)
    if not are_probabilities:
        cannot_win = np.float32(-np.inf)
    else:
        cannot_win = np.float32(0.5 / (channels - 1) if foreground_first else 1.0 / channels)
    for k0 in range(0, shape[0], slices_per_slab):
        k1 = min(shape[0], k0 + slices_per_slab)
        # Model slices whose interpolation support covers CT slices k0..k1-1, one spare each side.
        lo = max(0, math.floor((k0 * spacing[0] - model_origin[0]) / model_spacing[0]) - 1)
        hi = min(model_shape[0],
                 math.ceil(((k1 - 1) * spacing[0] - model_origin[0]) / model_spacing[0]) + 2)
        crop_origin = (model_origin[0] + lo * model_spacing[0], model_origin[1], model_origin[2])
        slab_shape = (k1 - k0, shape[1], shape[2])
        slab_origin = (k0 * spacing[0], 0.0, 0.0)
        best = np.full(slab_shape, -np.inf, dtype=np.float32)
        labels = result[k0:k1]
        labels.fill(0)
        background: npt.NDArray[np.float32] | None = None
        for channel in range(channels):
            if channel > 0 and probabilities[channel, lo:hi].max() < cannot_win:
                continue
            image = _image(probabilities[channel, lo:hi], model_spacing, crop_origin)
            values = _resample(image, slab_shape, spacing, slab_origin)
            if foreground_first and channel == 0:
                background = values
                continue
            better = values > best
            best[better] = values[better]
            labels[better] = channel
        if background is not None:
            labels[background >= np.float32(0.5)] = 0
    return result
