"""Models imported from nnU-Net: model.json fields, RAS order, logit averaging, the nnU-Net path.

The resampling itself is compared with nnunetv2's functions in tools/nnunet_tools/tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from segmenter import nnunet_resampling as nr
from segmenter.inference import segment
from segmenter.orientation import Reorientation
from segmenter.sliding import sliding_window
from segmenter.spec import Interpolation, LinearResampling, ModelSpec, NnUNetResampling
from spinemets import labels
from spinemets.geometry import Geometry, Volume

NNUNET = {"scheme": "nnunet", "data": {"order": 3, "order_z": 0, "force_separate_z": None},
          "probabilities": {"order": 1, "order_z": 0, "force_separate_z": None}}


def test_model_json_of_an_imported_model(make_spec: Callable[..., ModelSpec]) -> None:
    demo = make_spec()
    assert isinstance(demo.resampling, LinearResampling) and demo.averaging == "softmax"
    spec = make_spec(["vertebra_L1", "background", "sacrum"], resampling=NNUNET,
                     averaging="logits", orientation="RAS")
    assert isinstance(spec.resampling, NnUNetResampling)
    assert spec.resampling.data == Interpolation(order=3, order_z=0)
    # A channel the project does not use is background: value 0, not a label of the map.
    assert spec.channel_values == (0, labels.vertebra("L1").value, 0, 26)
    assert spec.label_names == {labels.vertebra("L1").value: "vertebra_L1", 26: "sacrum"}


@pytest.mark.parametrize(("change", "message"), [
    ({"resampling": {**NNUNET, "probabilities": {"order": 3, "order_z": 0}}}, "order 0 or 1"),
    ({"resampling": {**NNUNET, "data": {"order": 3, "order_z": 2}}}, "order_z"),
    ({"resampling": {"scheme": "cubic"}}, "resampling"),
    ({"averaging": "median"}, "averaging"),
])
def test_bad_nnunet_fields_are_refused(make_spec: Callable[..., ModelSpec],
                                       change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec(**change)


def test_only_background_channels_are_refused(make_spec: Callable[..., ModelSpec]) -> None:
    with pytest.raises(ValueError, match="at least one label"):
        make_spec(["background", "background"])


def test_ras_order_flips_rows_and_columns() -> None:
    """An axial LPS grid: RAS canonical runs Superior, Anterior, Right."""
    geometry = Geometry((4, 3, 2), (0.8, 0.9, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    array = np.arange(24).reshape(2, 3, 4)
    lps, ras = Reorientation.of(geometry), Reorientation.of(geometry, "RAS")
    assert lps.flips == (False, False, False) and ras.flips == (False, True, True)
    assert np.array_equal(ras.to_canonical(array), array[:, ::-1, ::-1])
    assert np.array_equal(ras.from_canonical(ras.to_canonical(array)), array)
    assert ras.spacing_zyx == lps.spacing_zyx == (2.0, 0.9, 0.8)


def test_logits_are_averaged_unlike_probabilities() -> None:
    """A net that sees position: mirrored passes average its logits, not its softmax."""
    ramp = np.arange(8, dtype=np.float32)

    def net(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = np.zeros((batch.shape[0], 2, *batch.shape[2:]), np.float32)
        out[:, 1] = ramp
        return out

    image = np.zeros((8, 8, 8), np.float32)
    logits = sliding_window(image, (8, 8, 8), 2, net, mirror_axes=(2,), average="logits")
    assert np.allclose(logits[1], 3.5) and np.allclose(logits[0], 0.0)
    probs = sliding_window(image, (8, 8, 8), 2, net, mirror_axes=(2,))
    sigmoid = 1 / (1 + np.exp(-ramp))
    assert np.allclose(probs[1], (sigmoid + sigmoid[::-1]) / 2)


def test_segment_takes_the_nnunet_path(make_spec: Callable[..., ModelSpec],
                                       volume: Callable[..., Volume]) -> None:
    """A bone block at 3 mm slices, a 2 mm model: nnU-Net's grid there and back."""
    array = np.full((20, 40, 40), -100, np.int16)
    array[6:14, 10:30, 12:28] = 700
    ct = volume(array, spacing=(1.0, 1.0, 3.0))
    spec = make_spec(["vertebra_L1"], patch=(16, 16, 16), resampling=NNUNET, averaging="logits")

    def bone(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.concatenate([np.zeros_like(batch), batch - 2.0], axis=1)  # bone: > 200 HU

    raw = segment(ct, spec, bone, postprocess_labels=False)
    assert raw.array.shape == array.shape
    assert np.array_equal(raw.array == labels.vertebra("L1").value, array == 700)
    model_grid = nr.to_model_grid(array, (3.0, 1.0, 1.0), spec.spacing_zyx, spec.normalization,
                                  Interpolation(order=3, order_z=0))
    assert model_grid.shape == (30, 20, 20)
