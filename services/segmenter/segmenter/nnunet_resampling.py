"""nnU-Net v2's pre-processing and resampling, for models imported from nnU-Net (``import-nnunet``).

Reproduces ``nnunetv2.preprocessing`` as ``nnUNetPredictor`` runs it on one CT channel:

* ``CTNormalization`` at the CT's resolution (clip to the foreground 0.5 / 99.5 percentiles,
  subtract the mean, divide by the standard deviation, in float32), then
* ``resample_data_or_seg_to_shape`` to ``round(spacing / target * shape)`` voxels: skimage's
  ``resize`` (``scipy.ndimage.zoom`` with edge-aligned grids, ``mode="edge"``, no anti-aliasing,
  output clipped to the input's range) in float64; when the spacing is anisotropic (largest over
  smallest above 3, the CT's checked first) the low-resolution axis is resampled apart, slice by
  slice in-plane with ``order`` and along the axis with ``order_z`` (0: nearest);
* on the way back the sliding-window logits get the same treatment with the probability settings
  (order 1 by default), then the argmax. This is done in slabs of CT slices with separable
  one-dimensional interpolation, which equals the whole-volume result for orders 0 and 1 and
  bounds the memory to a few slabs whatever the channel count; in-plane, only pixels whose
  winner the neighbouring model values leave in doubt are interpolated.

Arrays are canonical ``(z, y, x)`` (:mod:`segmenter.orientation`); nnU-Net's ``transpose_forward``
is folded into the exported network by the importer. Cropping to the non-zero region is not
reproduced: a CT has no zero-valued border to crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from segmenter.spec import Interpolation, Normalization

#: nnU-Net's ``ANISO_THRESHOLD``: above this ratio of largest to smallest spacing, the
#: low-resolution axis is resampled separately.
ANISOTROPY_THRESHOLD = 3.0
#: Values of the logits slab resampled at once when going back (bounds the working memory).
SLAB_VALUES = 1 << 24

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
Float64 = npt.NDArray[np.float64]


def new_shape(shape: Sequence[int], spacing: Sequence[float],
              target_spacing: Sequence[float]) -> Shape3:
    """nnU-Net's ``compute_new_shape``: ``round(spacing / target * shape)`` per axis."""
    out = [round(s / t * n) for s, t, n in zip(spacing, target_spacing, shape, strict=True)]
    return (out[0], out[1], out[2])


def _lowres_axes(spacing: Sequence[float]) -> list[int]:
    return [int(a) for a in np.where(max(spacing) / np.array(spacing) == 1)[0]]


def _anisotropic(spacing: Sequence[float]) -> bool:
    return bool(np.max(spacing) / np.min(spacing) > ANISOTROPY_THRESHOLD)


def separate_axis(current: Sequence[float], new: Sequence[float],
                  force: bool | None) -> int | None:
    """nnU-Net's ``determine_do_sep_z_and_axis``: the axis resampled apart, or ``None``."""
    if force is not None:
        axes = _lowres_axes(current) if force else []
    elif _anisotropic(current):
        axes = _lowres_axes(current)
    elif _anisotropic(new):
        axes = _lowres_axes(new)
    else:
        axes = []
    return axes[0] if len(axes) == 1 else None


def _resize(array: Float64, shape: Sequence[int], order: int) -> Float64:
    """``skimage.transform.resize(array, shape, order, mode="edge", anti_aliasing=False)``."""
    factors = np.divide(array.shape, shape)
    out: Float64 = ndimage.zoom(array, [1 / f for f in factors], order=order, mode="nearest",
                                grid_mode=True)
    np.clip(out, array.min(), array.max(), out=out)
    return out


def _coordinates(size: int, new_size: int) -> Float64:
    """Source coordinates of the new voxel centres along one axis (edge-aligned grids)."""
    scale = float(size) / new_size
    return scale * (np.arange(new_size, dtype=np.float64) + 0.5) - 0.5


Plan = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Float64]


def _plan(coords: Float64, order: int, size: int) -> Plan:
    """Source indices and weight of each new position along one axis (edges held).

    Order 1 interpolates linearly between the two indices; order 0 takes the nearest one
    (``floor(c + 0.5)``, as scipy's order-0 spline), given as both indices with weight 0.
    """
    last = size - 1
    if order == 0:
        index = np.clip(np.floor(coords + 0.5).astype(np.int64), 0, last)
        return index, index, np.zeros(len(coords))
    clamped = np.clip(coords, 0, last)
    low = np.floor(clamped).astype(np.int64)
    return low, np.minimum(low + 1, last), clamped - low


def _along(array: npt.NDArray[np.floating], axis: int, coords: Float64, order: int, size: int,
           offset: int = 0) -> npt.NDArray[np.floating]:
    """Resample one axis at source ``coords`` (order 0: nearest, order 1: linear).

    ``size`` is the full source length of the axis; ``array`` holds its part from ``offset``.
    """
    first, second, weight = _plan(coords, order, size)
    below = np.take(array, first - offset, axis=axis)
    if order == 0:
        return below
    shape = [1] * array.ndim
    shape[axis] = -1
    above = np.take(array, second - offset, axis=axis)
    result: npt.NDArray[np.floating] = below + (above - below) * weight.astype(
        array.dtype).reshape(shape)
    return result


def _axis_to(array: npt.NDArray[np.floating], axis: int, new_size: int, order: int
             ) -> npt.NDArray[np.floating]:
    size = array.shape[axis]
    return _along(array, axis, _coordinates(size, new_size), order, size)


def resample_image(image: npt.NDArray[np.float32], shape: Sequence[int], axis: int | None,
                   interpolation: Interpolation) -> npt.NDArray[np.float32]:
    """One data channel to ``shape`` as ``resample_data_or_seg`` does (``is_seg=False``)."""
    if tuple(image.shape) == tuple(shape):
        return image
    data = image.astype(np.float64)
    if axis is None:
        return _resize(data, shape, interpolation.order).astype(np.float32)
    plane = [n for a, n in enumerate(shape) if a != axis]
    moved = np.moveaxis(data, axis, 0)
    resized: npt.NDArray[np.floating] = np.moveaxis(
        np.stack([_resize(s, plane, interpolation.order) for s in moved]), 0, axis)
    if resized.shape[axis] != shape[axis]:
        resized = _axis_to(resized, axis, shape[axis], interpolation.order_z)
    return resized.astype(np.float32)


def to_model_grid(canonical: npt.NDArray[np.int16], spacing: Spacing3, target_spacing: Spacing3,
                  normalization: Normalization, interpolation: Interpolation
                  ) -> npt.NDArray[np.float32]:
    """Normalise a canonical HU array as ``CTNormalization``, then resample it to the model."""
    image = canonical.astype(np.float32)
    np.clip(image, normalization.lower, normalization.upper, out=image)
    image -= normalization.mean
    image /= normalization.std
    shape = new_shape(image.shape, spacing, target_spacing)
    axis = separate_axis(spacing, target_spacing, interpolation.force_separate_z)
    return resample_image(image, shape, axis, interpolation)


def _argmax_in_plane(stack: npt.NDArray[np.float32], rows: Plan, columns: Plan
                     ) -> npt.NDArray[np.uint8]:
    """Argmax over channels of ``[channel, k, y, x]`` resampled in-plane by ``rows``/``columns``.

    A resampled value lies between the least and the largest of the (up to) four model values
    it is made from. Where one channel's least beats every other channel's largest, that
    channel wins whatever the weights; only the other pixels (near boundaries) are
    interpolated, every channel, and compared. The tolerance keeps rounding on the safe side.
    """
    high, low = stack.copy(), stack.copy()
    for axis in (2, 3):  # each model voxel and its successor along y, then x
        this, following = [slice(None)] * 4, [slice(None)] * 4
        this[axis], following[axis] = slice(0, -1), slice(1, None)
        np.maximum(high[tuple(this)], high[tuple(following)], out=high[tuple(this)])
        np.minimum(low[tuple(this)], low[tuple(following)], out=low[tuple(this)])
    best = low.max(axis=0)
    contenders = (high >= best - 1e-5 * (np.abs(best) + 1)).sum(axis=0)
    y0, y1, wy = rows
    x0, x1, wx = columns
    labels: npt.NDArray[np.uint8] = low.argmax(axis=0).astype(np.uint8)[:, y0][:, :, x0]
    k, y, x = np.nonzero(contenders[:, y0][:, :, x0] > 1)
    if k.size:
        ny, nx = stack.shape[2:]
        flat = stack.reshape(stack.shape[0], -1)

        def at(ys: npt.NDArray[np.int64], xs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            return np.asarray(np.take(flat, (k * ny + ys[y]) * nx + xs[x], axis=1))

        wy_, wx_ = wy[y].astype(np.float32), wx[x].astype(np.float32)
        a, b, c, d = at(y0, x0), at(y1, x0), at(y0, x1), at(y1, x1)
        left, right = a + (b - a) * wy_, c + (d - c) * wy_
        labels[k, y, x] = np.argmax(left + (right - left) * wx_, axis=0)
    return labels


def argmax_on_grid(logits: npt.NDArray[np.float32], shape: Shape3, spacing: Spacing3,
                   model_spacing: Spacing3, interpolation: Interpolation,
                   slab_values: int = SLAB_VALUES) -> npt.NDArray[np.uint8]:
    """Resample ``[channel, z, y, x]`` logits back to the CT grid as nnU-Net does; argmax.

    ``interpolation`` holds the probability settings (order 0 or 1). The axis nnU-Net resamples
    apart gets ``order_z``, the others ``order``. The operation is separable: it runs in slabs
    of CT slices, each from the few model slices it needs, along z for every channel and then
    in-plane only where the winner is in doubt (:func:`_argmax_in_plane`).
    """
    if tuple(logits.shape[1:]) == tuple(shape):
        return np.asarray(np.argmax(logits, axis=0), dtype=np.uint8)
    axis = separate_axis(model_spacing, spacing, interpolation.force_separate_z)
    orders = [interpolation.order_z if a == axis else interpolation.order for a in range(3)]
    channels, model_z, model_y, model_x = logits.shape
    coords = _coordinates(model_z, shape[0])
    rows = _plan(_coordinates(model_y, shape[1]), orders[1], model_y)
    columns = _plan(_coordinates(model_x, shape[2]), orders[2], model_x)
    slices = max(1, slab_values // (channels * model_y * model_x + shape[1] * shape[2]))
    result = np.empty(shape, dtype=np.uint8)
    for k0 in range(0, shape[0], slices):
        part = coords[k0:k0 + slices]
        lo = max(0, min(model_z - 1, math.floor(part[0]) - 1))
        hi = min(model_z, math.ceil(part[-1]) + 2)
        slab = _along(logits[:, lo:hi], 1, part, orders[0], model_z, lo)
        result[k0:k0 + len(part)] = _argmax_in_plane(slab.astype(np.float32), rows, columns)
    return result
