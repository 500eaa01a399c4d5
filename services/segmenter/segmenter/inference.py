"""nnU-Net-compatible inference of one model on one CT volume, wherever the network runs.

:func:`segment` is a pure function of the volume, the model description and a ``predict``
callable (Triton in the service, onnxruntime in evaluation and tests):

1. reorient to the model's canonical orientation by axis permutation and flips
   (:mod:`segmenter.orientation`);
2. ``CTNormalization`` and resampling to the model's spacing: linear (SimpleITK,
   :mod:`segmenter.resampling`) or nnU-Net v2's own (:mod:`segmenter.nnunet_resampling`), as
   ``model.json`` says;
3. sliding window with Gaussian weighting, optional test-time mirroring, averaging softmax
   probabilities or logits (:mod:`segmenter.sliding`);
4. resampling of the probabilities (or logits) back to the CT grid and the model's decision
   (argmax, or foreground first: :func:`segmenter.resampling.argmax_on_grid`);
5. unless disabled, largest connected component of every label except lesions, vertebra level
   consistency (:mod:`segmenter.postprocess`);
6. back to the source orientation: the label map lies on the volume's own grid.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segmenter import nnunet_resampling
from segmenter.orientation import Reorientation
from segmenter.postprocess import enforce_level_order, keep_largest_components
from segmenter.resampling import argmax_on_grid, target_shape, to_spacing
from segmenter.sliding import Predict, sliding_window
from segmenter.spec import BACKGROUND, ModelSpec, NnUNetResampling
from spinemets import labels
from spinemets.errors import InputError
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

#: The volume must span at least this fraction of the patch's physical size along every axis
#: (smaller volumes are padded to the patch; below this there is too little context to label).
#: 0.15 of the demo model's 320 mm patch is 48 mm: a targeted lumbar CT of two or three
#: vertebrae is processed, a handful of slices is refused.
MIN_EXTENT_FRACTION = 0.15
#: Upper bound of the probability array at model resolution (channels x voxels x 4 bytes).
MAX_PROBABILITY_BYTES = 8 << 30


def check_volume(reorientation: Reorientation, shape: tuple[int, ...], spec: ModelSpec) -> None:
    """Refuse volumes the model cannot handle: too thin to give context, or too large."""
    for axis, name in enumerate("zyx"):
        extent = shape[axis] * reorientation.spacing_zyx[axis]
        needed = MIN_EXTENT_FRACTION * spec.patch_size_zyx[axis] * spec.spacing_zyx[axis]
        if extent < needed:
            raise InputError(f"volume spans {extent:.1f} mm along {name}; model {spec.name} needs "
                             f"at least {needed:.1f} mm", reason="volume-too-small")
    model_shape = target_shape(shape, reorientation.spacing_zyx, spec.spacing_zyx)
    size = spec.num_channels * int(np.prod(model_shape)) * 4
    if size > MAX_PROBABILITY_BYTES:
        raise InputError(f"volume needs {size / 2**30:.1f} GiB of probabilities at model "
                         f"resolution {list(model_shape)}", reason="volume-too-large")


def postprocess(channels: np.ndarray, spec: ModelSpec) -> None:
    """Connected components and level order, in place on a canonical channel-index map."""
    groups = {c: labels.by_name(name).group for c in range(1, spec.num_channels)
              if (name := spec.labels[str(c)]) != BACKGROUND}
    vertebrae = sorted((c for c, g in groups.items() if g is labels.Group.VERTEBRA),
                       key=lambda c: spec.channel_values[c])
    enforce_level_order(channels, vertebrae)
    keep_largest_components(channels, [c for c, g in groups.items()
                                       if g not in (labels.Group.VERTEBRA, labels.Group.LESION)])


def to_model_grid(canonical: npt.NDArray[np.int16], spacing: tuple[float, float, float],
                  spec: ModelSpec) -> npt.NDArray[np.float32]:
    """The normalised canonical image on the model's grid (float32)."""
    norm = spec.normalization
    if isinstance(spec.resampling, NnUNetResampling):
        return nnunet_resampling.to_model_grid(canonical, spacing, spec.spacing_zyx, norm,
                                               spec.resampling.data)
    image = to_spacing(canonical, spacing, spec.spacing_zyx, (norm.lower, norm.upper))
    image -= np.float32(norm.mean)
    image /= np.float32(norm.std)
    return image


def to_ct_grid(probabilities: npt.NDArray[np.float32], shape: tuple[int, int, int],
               spacing: tuple[float, float, float], spec: ModelSpec) -> npt.NDArray[np.uint8]:
    """Channel indices on the canonical CT grid from model-grid probabilities (or logits)."""
    if isinstance(spec.resampling, NnUNetResampling):
        return nnunet_resampling.argmax_on_grid(probabilities, shape, spacing, spec.spacing_zyx,
                                                spec.resampling.probabilities)
    return argmax_on_grid(probabilities, shape, spacing,
                          are_probabilities=spec.averaging == "softmax",
                          foreground_first=spec.decision == "foreground-first")


def segment(volume: Volume, spec: ModelSpec, predict: Predict, *, step_size: float = 0.5,
            mirror: bool = False, batch_size: int = 4, workers: int = 1,
            postprocess_labels: bool = True) -> LabelMap:
    """Segment ``volume`` with the model described by ``spec``; ``predict`` runs the network.

    ``predict`` maps float32 ``[N, 1, Z, Y, X]`` patches to logits ``[N, C, Z, Y, X]``; up to
    ``workers`` batches are in flight at once. The returned label map holds catalogue values
    (uint8) on the volume's grid; without ``postprocess_labels`` it is the network's own
    segmentation. Raises :class:`InputError` for volumes the model cannot handle and
    :class:`ModelError` when ``predict`` fails or returns the wrong shape.
    """
    reorientation = Reorientation.of(volume.geometry, spec.orientation)
    canonical = reorientation.to_canonical(volume.array)
    check_volume(reorientation, canonical.shape, spec)
    image = to_model_grid(canonical, reorientation.spacing_zyx, spec)
    probabilities = sliding_window(
        image, spec.patch_size_zyx, spec.num_channels, predict, step_size=step_size,
        batch_size=batch_size, mirror_axes=spec.mirror_axes if mirror else (), workers=workers,
        average=spec.averaging)
    del image
    shape = (canonical.shape[0], canonical.shape[1], canonical.shape[2])
    channels = to_ct_grid(probabilities, shape, reorientation.spacing_zyx, spec)
    del probabilities
    if postprocess_labels:
        postprocess(channels, spec)
    values = np.asarray(spec.channel_values, dtype=np.uint8)[channels]
    array = np.ascontiguousarray(reorientation.from_canonical(values))
    return LabelMap(array, volume.geometry, spec.label_names, spec.name, spec.version,
                    demo=spec.demo)
