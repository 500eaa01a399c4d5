"""Resampling to the model's spacing and back onto the CT grid (SimpleITK, edge-aligned)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from segmenter.resampling import argmax_on_grid, target_shape, to_spacing

CT_SHAPE = (37, 50, 45)
CT_SPACING = (1.25, 0.7, 0.8)  # z, y, x (mm)
MODEL_SPACING = (2.0, 2.0, 2.0)


def test_target_shape_as_nnunet() -> None:
    assert target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING) == (23, 18, 18)
    assert target_shape((1, 10, 10), (5.0, 1.0, 1.0), (0.5, 20.0, 20.0)) == (10, 1, 1)


def test_to_spacing_keeps_a_linear_ramp() -> None:
    """Linear interpolation is exact for a ramp; positions follow the edge-aligned grid."""
    k = np.arange(CT_SHAPE[0])
    hu = np.broadcast_to((8 * k - 100).astype(np.int16)[:, None, None], CT_SHAPE)
    out = to_spacing(hu, CT_SPACING, MODEL_SPACING, clip=(-1000.0, 1500.0))
    assert out.shape == (23, 18, 18) and out.dtype == np.float32
    step = CT_SHAPE[0] * CT_SPACING[0] / out.shape[0]
    centres = ((np.arange(out.shape[0]) + 0.5) * step - CT_SPACING[0] / 2) / CT_SPACING[0]
    inside = (centres >= 0) & (centres <= k[-1])  # beyond the outer CT centres values are held
    assert out.min() >= hu.min() and out.max() <= hu.max()  # no default value at the edges
    assert np.allclose(out[inside], (8 * centres[inside] - 100)[:, None, None], atol=1e-3)


def test_clipping_comes_before_interpolation() -> None:
    """nnU-Net clips, then resamples: a 3000 HU step clipped at 1500 blends to 750 between."""
    hu = np.zeros((4, 4, 8), np.int16)
    hu[..., 4:] = 3000
    out = to_spacing(hu, (1.0, 1.0, 1.0), (1.0, 1.0, 2.0), clip=(-1000.0, 1500.0))
    assert out.shape == (4, 4, 4)
    assert np.allclose(out[0, 0], [0.0, 0.0, 1500.0, 1500.0])
    half = to_spacing(hu, (1.0, 1.0, 1.0), (1.0, 1.0, 8.0 / 3), clip=(-1000.0, 1500.0))
    assert np.allclose(half[0, 0], [0.0, 750.0, 1500.0])


def probability_stack(model_shape: tuple[int, int, int]) -> npt.NDArray[np.float32]:
    """Background 0.8 everywhere but channel 1 (0.8) in a box and channel 2 (0.8) above a plane.

    The winner changes half-way between model voxel centres, i.e. at model voxel edges.
    """
    probs = np.full((3, *model_shape), 0.1, np.float32)
    probs[0] = 0.8
    probs[:, 5:15, 4:12, 6:13] = np.array([0.1, 0.8, 0.1])[:, None, None, None]
    probs[:, 18:] = np.array([0.1, 0.1, 0.8])[:, None, None, None]
    return probs


def test_argmax_on_grid_puts_regions_at_their_physical_place() -> None:
    model_shape = target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING)
    labels = argmax_on_grid(probability_stack(model_shape), CT_SHAPE, CT_SPACING)
    assert labels.shape == CT_SHAPE and labels.dtype == np.uint8
    # Physical extent of model voxel range [a, b) on the CT axis, as CT indices.
    step = [n * s / m for n, s, m in zip(CT_SHAPE, CT_SPACING, model_shape, strict=True)]

    def ct_range(axis: int, a: int, b: int) -> tuple[float, float]:
        lo = (a * step[axis] - CT_SPACING[axis] / 2) / CT_SPACING[axis]
        hi = (b * step[axis] - CT_SPACING[axis] / 2) / CT_SPACING[axis]
        return lo, hi

    box = np.argwhere(labels == 1)
    for axis, (a, b) in enumerate([(5, 15), (4, 12), (6, 13)]):
        lo, hi = ct_range(axis, a, b)
        assert box[:, axis].min() == pytest.approx(lo, abs=1.0)
        assert box[:, axis].max() == pytest.approx(hi - 1, abs=1.0)
    above = np.flatnonzero((labels == 2).any(axis=(1, 2)))
    assert above.min() == pytest.approx(ct_range(0, 18, 18)[0], abs=1.0)
    assert (labels[above.min():] == 2).all()


def test_slab_size_does_not_change_the_result() -> None:
    model_shape = target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING)
    probs = probability_stack(model_shape)
    probs += np.random.default_rng(1).uniform(0, 0.2, probs.shape).astype(np.float32)
    whole = argmax_on_grid(probs, CT_SHAPE, CT_SPACING, slab_voxels=10**9)
    for slab in (1, 50 * 45 * 3, 50 * 45 * 7):
        assert np.array_equal(argmax_on_grid(probs, CT_SHAPE, CT_SPACING, slab_voxels=slab), whole)


def test_logits_give_the_argmax_of_their_probabilities() -> None:
    """Log-probabilities (all negative, below any probability bound) label as their softmax."""
    model_shape = target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING)
    probs = probability_stack(model_shape)
    expected = argmax_on_grid(probs, CT_SHAPE, CT_SPACING)
    logits = np.log(probs) - np.float32(3.0)
    labels = argmax_on_grid(logits, CT_SHAPE, CT_SPACING, are_probabilities=False)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.mean(labels == expected) > 0.99


def test_foreground_first_labels_uncertain_classes_inside_clear_foreground() -> None:
    """Background 0.4 beats each of two classes at 0.3 under argmax, not foreground first;
    where background holds at least one half it wins under both."""
    model_shape = target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING)
    probs = np.zeros((3, *model_shape), np.float32)
    probs[0] = 1.0
    probs[:, 4:12] = np.array([0.4, 0.35, 0.25])[:, None, None, None]
    probs[:, 15:] = np.array([0.55, 0.1, 0.35])[:, None, None, None]
    plain = argmax_on_grid(probs, CT_SHAPE, CT_SPACING)
    first = argmax_on_grid(probs, CT_SHAPE, CT_SPACING, foreground_first=True)
    assert set(np.unique(plain)) == {0}
    assert set(np.unique(first)) == {0, 1}
    z = np.flatnonzero((first == 1).all(axis=(1, 2)))
    step = CT_SHAPE[0] * CT_SPACING[0] / model_shape[0]
    # Channel 1 takes the CT slices whose interpolated background falls below one half.
    assert z.min() * CT_SPACING[0] == pytest.approx(4 * step - CT_SPACING[0] / 2, abs=step)
    assert z.max() * CT_SPACING[0] == pytest.approx(12 * step - CT_SPACING[0] / 2, abs=step)
    assert (first[z.max() + 3:] == 0).all()
    for slab in (1, 50 * 45 * 3):
        assert np.array_equal(argmax_on_grid(probs, CT_SHAPE, CT_SPACING, slab_voxels=slab,
                                             foreground_first=True), first)
    with pytest.raises(ValueError, match="logits"):
        argmax_on_grid(np.log(probs + 1e-6), CT_SHAPE, CT_SPACING, are_probabilities=False,
                       foreground_first=True)


def test_same_spacing_is_the_identity() -> None:
    hu = np.random.default_rng(2).integers(-1000, 1500, size=(9, 10, 11)).astype(np.int16)
    out = to_spacing(hu, (2.0, 2.0, 2.0), (2.0, 2.0, 2.0), clip=(-1000.0, 1500.0))
    assert np.array_equal(out, hu.astype(np.float32))
    probs = np.random.default_rng(3).uniform(size=(4, 9, 10, 11)).astype(np.float32)
    assert np.array_equal(argmax_on_grid(probs, (9, 10, 11), (2.0, 2.0, 2.0)),
                          probs.argmax(axis=0))


def test_skipping_channels_that_cannot_win_changes_nothing() -> None:
    """Many localised channels (as vertebrae are): compare with resampling every channel."""
    from segmenter.resampling import _grid, _image, _resample

    model_shape = target_shape(CT_SHAPE, CT_SPACING, MODEL_SPACING)
    rng = np.random.default_rng(4)
    channels = 12
    logits = rng.normal(0, 0.5, (channels, *model_shape)).astype(np.float32)
    for c in range(1, channels):  # channel c dominates a band of slices
        step = model_shape[0] // (channels - 1)
        band = slice((c - 1) * step, c * step)
        logits[c, band] += 6.0
    probs = np.exp(logits - logits.max(axis=0))
    probs /= probs.sum(axis=0)
    model_spacing, model_origin = _grid(CT_SHAPE, CT_SPACING, model_shape)
    every = np.stack([
        _resample(_image(probs[c], model_spacing, model_origin), CT_SHAPE, CT_SPACING,
                  (0.0, 0.0, 0.0)) for c in range(channels)])
    assert np.array_equal(argmax_on_grid(probs, CT_SHAPE, CT_SPACING, slab_voxels=50 * 45 * 4),
                          every.argmax(axis=0))
