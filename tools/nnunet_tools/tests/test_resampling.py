"""The segmenter's nnU-Net resampling against nnunetv2's own functions, on the same arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.preprocessing.resampling.default_resampling import (
    compute_new_shape,
    determine_do_sep_z_and_axis,
    resample_data_or_seg_to_shape,
)
from scipy import ndimage

from segmenter import nnunet_resampling as nr
from segmenter.spec import Interpolation, Normalization

DATA = Interpolation(order=3, order_z=0)
PROBABILITIES = Interpolation(order=1, order_z=0)
NORMALIZATION = Normalization(scheme="CTNormalization", mean=250.0, std=180.0, lower=-150.0,
                              upper=1100.0)

#: (CT spacing, model spacing): isotropic, anisotropic CT (z apart), anisotropic model (x
#: apart), two equally coarse axes (no separate axis), no change of shape.
CASES = [
    ((1.2, 0.9, 0.8), (1.5, 1.5, 1.5)),
    ((3.5, 0.8, 0.8), (2.0, 1.5, 1.5)),
    ((1.0, 1.0, 1.0), (1.5, 1.5, 5.0)),
    ((4.0, 4.0, 0.9), (2.0, 2.0, 2.0)),
    ((2.0, 1.5, 1.5), (2.0, 1.5, 1.5)),
]
SHAPE = (21, 34, 29)


def ct(seed: int = 0) -> npt.NDArray[np.int16]:
    """Smooth random HU with sharp edges, clipped by the normalisation on both sides."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-400, 1400, size=(4, 6, 5))
    zoom = [n / c for n, c in zip(SHAPE, coarse.shape, strict=True)]
    smooth = ndimage.zoom(coarse, zoom, order=1)[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return np.asarray(smooth + rng.normal(0, 60, SHAPE), dtype=np.int16)


@pytest.mark.parametrize(("spacing", "target"), CASES)
def test_shape_and_separate_axis_as_nnunet(spacing: tuple[float, float, float],
                                           target: tuple[float, float, float]) -> None:
    assert nr.new_shape(SHAPE, spacing, target) == tuple(compute_new_shape(SHAPE, spacing, target))
    for force in (None, True, False):
        for current, new in ((spacing, target), (target, spacing)):
            do_separate, axis = determine_do_sep_z_and_axis(force, current, new)
            assert nr.separate_axis(current, new, force) == (axis if do_separate else None)


@pytest.mark.parametrize(("spacing", "target"), CASES)
def test_image_to_the_model_grid_as_nnunet(spacing: tuple[float, float, float],
                                           target: tuple[float, float, float]) -> None:
    hu = ct()
    ours = nr.to_model_grid(hu, spacing, target, NORMALIZATION, DATA)
    properties = {"mean": NORMALIZATION.mean, "std": NORMALIZATION.std,
                  "percentile_00_5": NORMALIZATION.lower, "percentile_99_5": NORMALIZATION.upper}
    normalised = CTNormalization(False, properties).run(hu[None].astype(np.float32))
    shape = compute_new_shape(SHAPE, spacing, target)
    theirs = resample_data_or_seg_to_shape(normalised, shape, spacing, target, is_seg=False,
                                           order=3, order_z=0, force_separate_z=None)[0]
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.parametrize(("spacing", "target"), CASES)
@pytest.mark.parametrize("orders", [(1, 0), (0, 0), (1, 1)])
def test_logits_back_to_the_ct_grid_as_nnunet(spacing: tuple[float, float, float],
                                              target: tuple[float, float, float],
                                              orders: tuple[int, int]) -> None:
    """Argmax of resampled logits equals nnU-Net's, slab by slab as on the whole volume."""
    model_shape = nr.new_shape(SHAPE, spacing, target)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, *model_shape)).astype(np.float32)
    interpolation = Interpolation(order=orders[0], order_z=orders[1])
    theirs = resample_data_or_seg_to_shape(logits, SHAPE, target, spacing, is_seg=False,
                                           order=orders[0], order_z=orders[1],
                                           force_separate_z=None).argmax(0)
    whole = nr.argmax_on_grid(logits, SHAPE, spacing, target, interpolation)
    slabs = nr.argmax_on_grid(logits, SHAPE, spacing, target, interpolation,
                              slab_values=5 * SHAPE[1] * SHAPE[2] * 2)
    assert np.array_equal(whole, slabs)
    assert np.mean(whole == theirs) > 0.9999
