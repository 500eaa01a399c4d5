"""Sliding-window inference with nnU-Net's Gaussian importance weighting.

Patches are placed as nnU-Net v2 places them (``compute_steps_for_sliding_window``), run through
``predict`` in batches, turned into softmax probabilities (or kept as logits, which nnU-Net v2
averages), weighted by a Gaussian centred on the patch (sigma = 1/8 of the patch size) and
averaged where patches overlap. Images smaller than the patch are padded with 0 (the normalised
value of the padding, as nnU-Net) and cropped back.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from spinemets.errors import ModelError

Predict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
Average = Literal["softmax", "logits"]
Shape3 = tuple[int, int, int]
Window = tuple[slice, slice, slice]


def gaussian_importance(patch: Shape3, sigma_scale: float = 1.0 / 8) -> npt.NDArray[np.float32]:
    """nnU-Net's importance map: a Gaussian at the patch centre, maximum 1, no zero weights."""
    impulse = np.zeros(patch, dtype=np.float64)
    impulse[tuple(n // 2 for n in patch)] = 1.0
    sigmas = [n * sigma_scale for n in patch]
    gauss: npt.NDArray[np.float64] = ndimage.gaussian_filter(impulse, sigmas, order=0,
                                                             mode="constant", cval=0.0)
    gauss /= gauss.max()
    gauss[gauss == 0] = gauss[gauss > 0].min()
    return gauss.astype(np.float32)


def window_starts(size: int, patch: int, step_size: float) -> list[int]:
    """Start indices along one axis: evenly spread, at most ``step_size * patch`` apart."""
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / (patch * step_size)) + 1
    step = (size - patch) / (count - 1)
    return [round(step * i) for i in range(count)]


def windows(shape: Sequence[int], patch: Shape3, step_size: float) -> list[Window]:
    """Every patch window over an array of ``shape`` (each axis at least the patch size)."""
    starts = [window_starts(n, p, step_size) for n, p in zip(shape, patch, strict=True)]
    return [(slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            for z, y, x in itertools.product(*starts)]


def mirror_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of the mirror axes (the empty one first): nnU-Net's test-time mirroring."""
    return [combo for r in range(len(mirror_axes) + 1)
            for combo in itertools.combinations(mirror_axes, r)]


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted: npt.NDArray[np.float32] = np.exp(logits - logits.max(axis=1, keepdims=True))
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _predict_probabilities(predict: Predict, batch: npt.NDArray[np.float32], channels: int,
                           mirrors: list[tuple[int, ...]], average: Average
                           ) -> npt.NDArray[np.float32]:
    """Mean softmax (or logits) over the mirrored copies of ``batch``; checks the output shape."""
    expected = (batch.shape[0], channels, *batch.shape[2:])
    total: npt.NDArray[np.float32] | None = None
    for axes in mirrors:
        flip = tuple(a + 2 for a in axes)
        logits = predict(np.ascontiguousarray(np.flip(batch, flip)) if flip else batch)
        if logits.shape != expected:
            raise ModelError(f"model returned logits of shape {logits.shape}, expected {expected}",
                             reason="bad-model-output")
        unflipped = np.flip(logits, flip) if flip else logits
        probs = _softmax(unflipped) if average == "softmax" else unflipped.astype(np.float32)
        total = probs if total is None else total + probs
    assert total is not None
    total /= np.float32(len(mirrors))
    return total


def _batches(image: npt.NDArray[np.float32], all_windows: list[Window], batch_size: int
             ) -> Iterator[tuple[list[Window], npt.NDArray[np.float32]]]:
    for first in range(0, len(all_windows), batch_size):
        chunk = all_windows[first:first + batch_size]
        yield chunk, np.stack([image[w] for w in chunk])[:, None]


def sliding_window(image: npt.NDArray[np.float32], patch: Shape3, channels: int,
                   predict: Predict, *, step_size: float = 0.5, batch_size: int = 4,
                   mirror_axes: Sequence[int] = (), workers: int = 1,
                   average: Average = "softmax") -> npt.NDArray[np.float32]:
    """Softmax probabilities (or logits) ``[channel, z, y, x]`` of a normalised image.

    ``predict`` maps float32 ``[N, 1, *patch]`` to logits ``[N, channels, *patch]``. Up to
    ``workers`` batches are in flight at once (so a server can batch them); results are summed
    in submission order, so the output does not depend on timing.
    """
    pad = [max(0, p - n) for n, p in zip(image.shape, patch, strict=True)]
    padding = [(d // 2, d - d // 2) for d in pad]
    padded = np.pad(image, padding, constant_values=0.0) if any(pad) else image
    gauss = gaussian_importance(patch)
    probabilities = np.zeros((channels, *padded.shape), dtype=np.float32)
    weights = np.zeros(padded.shape, dtype=np.float32)
    mirrors = mirror_sets(mirror_axes)
    in_flight = max(1, workers)

    def accumulate(chunk: list[Window], probs: npt.NDArray[np.float32]) -> None:
        for window, p in zip(chunk, probs, strict=True):
            probabilities[(slice(None), *window)] += p * gauss
            weights[window] += gauss

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        pending: deque[tuple[list[Window], Future[npt.NDArray[np.float32]]]] = deque()
        for chunk, batch in _batches(padded, windows(padded.shape, patch, step_size), batch_size):
            pending.append((chunk, pool.submit(_predict_probabilities, predict, batch, channels,
                                               mirrors, average)))
            if len(pending) >= in_flight:
                done, future = pending.popleft()
                accumulate(done, future.result())
        while pending:
            done, future = pending.popleft()
            accumulate(done, future.result())
    probabilities /= weights
    crop = tuple(slice(lo, n - hi) for (lo, hi), n in zip(padding, padded.shape, strict=True))
    return probabilities[(slice(None), *crop)]
