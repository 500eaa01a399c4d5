"""Sliding window: nnU-Net's Gaussian and patch placement, full coverage, padding, mirroring."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from segmenter.inference import segment
from segmenter.sliding import gaussian_importance, mirror_sets, sliding_window, window_starts
from segmenter.spec import ModelSpec
from spinemets.errors import InputError, ModelError
from spinemets.geometry import Volume


def test_gaussian_peaks_at_the_centre_with_sigma_an_eighth_of_the_patch() -> None:
    gauss = gaussian_importance((64, 48, 32))
    assert gauss.shape == (64, 48, 32) and gauss.dtype == np.float32
    assert gauss[32, 24, 16] == gauss.max() == 1.0
    assert gauss.min() > 0  # every voxel of a patch gets some weight
    # One sigma (patch / 8) from the centre along each axis: exp(-1/2).
    assert gauss[32 + 8, 24, 16] == pytest.approx(np.exp(-0.5), abs=0.01)
    assert gauss[32, 24 + 6, 16] == pytest.approx(np.exp(-0.5), abs=0.01)
    assert gauss[32, 24, 16 + 4] == pytest.approx(np.exp(-0.5), abs=0.01)
    assert np.allclose(gauss[32 - 10], gauss[32 + 10])


@pytest.mark.parametrize(("size", "patch", "step", "expected"), [
    (64, 64, 0.5, [0]),
    (30, 64, 0.5, [0]),
    (100, 64, 0.5, [0, 18, 36]),  # nnU-Net: ceil(36 / 32) + 1 = 3 windows
    (128, 64, 0.5, [0, 32, 64]),
    (129, 64, 0.5, [0, 22, 43, 65]),
    (100, 64, 1.0, [0, 36]),
])
def test_window_starts_as_nnunet(size: int, patch: int, step: float, expected: list[int]) -> None:
    starts = window_starts(size, patch, step)
    assert starts == expected
    assert starts[-1] + patch >= min(size, patch) and (size < patch or starts[-1] + patch == size)
    assert all(b - a <= patch * step for a, b in itertools.pairwise(starts))


def test_mirror_sets_are_every_subset() -> None:
    assert mirror_sets(()) == [()]
    assert mirror_sets((0, 2)) == [(), (0,), (2,), (0, 2)]
    assert len(mirror_sets((0, 1, 2))) == 8


def sigmoid_net(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per-voxel logits (0, x): the softmax of channel 1 is sigmoid(x), whatever the patch."""
    return np.concatenate([np.zeros_like(batch), batch], axis=1)


def position_image(shape: tuple[int, int, int]) -> npt.NDArray[np.float32]:
    z, y, x = np.meshgrid(*(np.linspace(-3, 3, n) for n in shape), indexing="ij")
    return (z + 0.5 * y - 0.25 * x).astype(np.float32)


@pytest.mark.parametrize("shape", [(40, 37, 29), (16, 16, 16), (7, 20, 11)])
def test_sliding_window_reproduces_a_pointwise_network_everywhere(
        shape: tuple[int, int, int]) -> None:
    image = position_image(shape)
    probabilities = sliding_window(image, (16, 16, 16), 2, sigmoid_net, batch_size=3)
    assert probabilities.shape == (2, *shape)
    assert np.allclose(probabilities[1], 1 / (1 + np.exp(-image)), atol=1e-5)
    assert np.allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_overlapping_patches_are_averaged_with_gaussian_weights() -> None:
    """A network answering each patch with one value (its mean input) blends them by weight."""
    def patch_mean_net(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        means = batch.mean(axis=(1, 2, 3, 4), keepdims=True)
        return np.concatenate([np.zeros_like(batch), np.broadcast_to(means, batch.shape)], axis=1)

    image = position_image((40, 24, 24))
    probabilities = sliding_window(image, (16, 16, 16), 2, patch_mean_net, batch_size=5)
    gauss = gaussian_importance((16, 16, 16)).astype(np.float64)
    total, weight = np.zeros(image.shape), np.zeros(image.shape)
    for z, y, x in itertools.product([0, 8, 16, 24], [0, 8], [0, 8]):  # nnU-Net's placement
        window = np.s_[z:z + 16, y:y + 16, x:x + 16]
        total[window] += gauss / (1 + np.exp(-float(image[window].mean())))
        weight[window] += gauss
    assert np.allclose(probabilities[1], total / weight, atol=1e-5)


def test_concurrent_batches_give_the_same_result() -> None:
    image = position_image((40, 37, 29)) + np.random.default_rng(0).normal(size=(40, 37, 29)
                                                                          ).astype(np.float32)
    threads: set[int] = set()

    def net(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        threads.add(threading.get_ident())
        return np.concatenate([np.zeros_like(batch), batch, -batch], axis=1)

    one = sliding_window(image, (16, 16, 16), 3, net, batch_size=2, workers=1)
    four = sliding_window(image, (16, 16, 16), 3, net, batch_size=2, workers=4)
    assert len(threads) > 1
    assert np.array_equal(one, four)


def test_mirroring_averages_flipped_predictions() -> None:
    """A network that sees only the first half of the x axis becomes symmetric when mirrored."""
    def half_blind(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        seen = batch.copy()
        seen[..., batch.shape[-1] // 2:] = 0
        return np.concatenate([np.zeros_like(batch), seen], axis=1)

    image = np.full((16, 16, 16), 2.0, np.float32)
    plain = sliding_window(image, (16, 16, 16), 2, half_blind)
    mirrored = sliding_window(image, (16, 16, 16), 2, half_blind, mirror_axes=(2,))
    assert plain[1, 0, 0, 0] > 0.8 and plain[1, 0, 0, -1] == pytest.approx(0.5)
    assert np.allclose(mirrored[1], mirrored[1, ..., ::-1])
    assert np.allclose(mirrored[1], (plain[1] + plain[1, ..., ::-1]) / 2)


def test_a_network_with_the_wrong_channel_count_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="shape") as info:
        sliding_window(np.zeros((16, 16, 16), np.float32), (16, 16, 16), 3, sigmoid_net)
    assert info.value.reason == "bad-model-output"


def test_a_volume_too_thin_for_context_is_refused_but_a_short_one_is_padded(
        make_spec: Callable[..., ModelSpec], volume: Callable[..., Volume]) -> None:
    # Patch 100 x 2 mm = 200 mm: at least 30 mm (0.15) of z extent is needed.
    spec = make_spec(patch=(100, 16, 16))
    thin = volume(np.zeros((9, 40, 40), np.int16), spacing=(1.0, 1.0, 3.0))  # 27 mm
    with pytest.raises(InputError) as info:
        segment(thin, spec, sigmoid_net)
    assert info.value.reason == "volume-too-small"
    short = volume(np.zeros((12, 40, 40), np.int16), spacing=(1.0, 1.0, 3.0))  # 36 mm
    label_map = segment(short, spec, lambda b: np.zeros((b.shape[0], 3, *b.shape[2:]),
                                                          np.float32))
    assert label_map.array.shape == (12, 40, 40)
