"""Volume assembly: order along the normal, HU, geometry, and every refusal with its reason."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
from pydicom.dataset import Dataset

from spinemets.errors import GeometryError, InputError
from spinemets.geometry import assemble_ct

Factory = Callable[..., list[Dataset]]


def test_shuffled_slices_are_sorted_and_rescaled(ct_slices: Factory) -> None:
    slices = ct_slices(8)
    shuffled = slices[:]
    random.Random(1).shuffle(shuffled)
    volume = assemble_ct(shuffled)
    assert volume.array.shape == (8, 16, 16)
    assert volume.slice_instance_uids == tuple(ds.SOPInstanceUID for ds in slices)
    means = volume.array.reshape(8, -1).mean(axis=1)
    assert np.allclose(means, 10 * np.arange(8), atol=1.5)
    assert volume.geometry.spacing == pytest.approx((0.8, 0.8, 2.0))
    positions = volume.geometry.slice_positions()
    assert np.allclose(positions, [ds.ImagePositionPatient for ds in slices])


def test_oblique_series_positions_round_trip(ct_slices: Factory) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    slices = ct_slices(5, orientation=(c, s, 0, 0, 0, -1), spacing=(0.7, 0.9, 3.0))
    volume = assemble_ct(slices[::-1])
    corner = volume.geometry.index_to_patient([[15, 15, 4]])[0]
    last = np.asarray(slices[4].ImagePositionPatient, float)
    row, col = np.asarray([c, s, 0.0]), np.asarray([0.0, 0.0, -1.0])
    assert np.allclose(corner, last + 15 * 0.7 * row + 15 * 0.9 * col)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda s: s[3].__setattr__("ImagePositionPatient", s[2].ImagePositionPatient),
         "duplicate-position"),
        (lambda s: s.pop(4), "uneven-spacing"),
        (lambda s: s[2].__setattr__("ImageOrientationPatient", [0, 1, 0, 0, 0, -1]),
         "mixed-orientation"),
        (lambda s: [d.__setattr__("GantryDetectorTilt", 12.0) for d in s], "gantry-tilt"),
        (lambda s: s[1].__setattr__("Modality", "MR"), "not-ct"),
        (lambda s: s[1].__delattr__("PixelData"), "missing-pixel-data"),
    ],
)
def test_bad_series_are_refused_with_reason(ct_slices: Factory,
                                            damage: Callable[[list[Dataset]], object],
                                            reason: str) -> None:
    slices = ct_slices(8)
    damage(slices)
    with pytest.raises(InputError) as info:
        assemble_ct(slices)
    assert info.value.reason == reason


def test_sheared_positions_are_refused_as_tilt(ct_slices: Factory) -> None:
    slices = ct_slices(6)
    for k, ds in enumerate(slices):
        x, y, z = ds.ImagePositionPatient
        ds.ImagePositionPatient = [x, y + 0.5 * k, z]
    with pytest.raises(GeometryError, match="not along the slice normal"):
        assemble_ct(slices)


def test_undecodable_pixel_data(ct_slices: Factory) -> None:
    slices = ct_slices(4)
    slices[2].file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
    slices[2].PixelData = b"\x00\x01garbage" * 8
    with pytest.raises(InputError) as info:
        assemble_ct(slices)
    assert info.value.reason == "undecodable-pixel-data"
