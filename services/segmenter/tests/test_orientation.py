"""Reorientation to canonical LPS, and label maps that land on the source grid in patient space."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from segmenter.inference import segment
from segmenter.orientation import Reorientation
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.errors import GeometryError
from spinemets.geometry import Geometry, Volume

#: Canonical grid: (z, y, x) voxels and spacing; first voxel centre in LPS mm.
SHAPE = (20, 24, 22)
SPACING_ZYX = (2.5, 1.0, 0.8)
ORIGIN = np.array([-10.0, -12.0, 200.0])

#: Direction matrices (columns: row direction, column direction, slice normal).
ORIENTATIONS = {
    "axial LPS": np.eye(3),
    "axial feet first, flipped rows": np.array([[-1, 0, 0], [0, 1, 0], [0, 0, -1]], float).T,
    "sagittal PIR": np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], float).T,
    "coronal": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T,
}


def grid(direction: npt.NDArray[np.float64]) -> Geometry:
    """The canonical voxel centres, traversed along ``direction``'s axes."""
    spacing_xyz = np.array(SPACING_ZYX[::-1])
    extent_xyz = (np.array(SHAPE[::-1]) - 1) * spacing_xyz
    patient_axis = [int(np.argmax(np.abs(direction[:, a]))) for a in range(3)]
    corner = ORIGIN + np.where((direction.sum(axis=1) < 0), extent_xyz, 0.0)
    size = tuple(int(SHAPE[2 - p]) for p in patient_axis)
    spacing = tuple(float(spacing_xyz[p]) for p in patient_axis)
    return Geometry((size[0], size[1], size[2]), (spacing[0], spacing[1], spacing[2]),
                    (corner[0], corner[1], corner[2]), direction)


def sample(geometry: Geometry, field: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
           ) -> npt.NDArray[np.float64]:
    """``field`` (of LPS positions, shape (..., 3)) at every voxel, as ``[slice, row, column]``."""
    columns, rows, slices = geometry.size
    k, j, i = np.meshgrid(np.arange(slices), np.arange(rows), np.arange(columns), indexing="ij")
    return field(geometry.index_to_patient(np.stack([i, j, k], axis=-1)))


def code(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A different value at every voxel centre of the grid."""
    return p[..., 0] + 100.0 * p[..., 1] + 10_000.0 * p[..., 2]


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_every_orientation_gives_the_same_canonical_array(name: str) -> None:
    geometry = grid(ORIENTATIONS[name])
    reorientation = Reorientation.of(geometry)
    canonical = reorientation.to_canonical(sample(geometry, code))
    expected = sample(grid(np.eye(3)), code)
    assert canonical.shape == SHAPE
    assert np.allclose(canonical, expected)
    assert reorientation.spacing_zyx == SPACING_ZYX
    source = sample(geometry, code)
    assert np.array_equal(reorientation.from_canonical(canonical), source)


def test_small_obliquity_keeps_the_axes() -> None:
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    rotated = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]).T
    reorientation = Reorientation.of(Geometry((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0),
                                              rotated))
    assert reorientation.axes == (0, 1, 2) and reorientation.flips == (False, False, False)


def test_45_degree_obliquity_is_refused() -> None:
    c = np.sqrt(0.5)
    rotated = np.array([[c, c, 0], [-c, c, 0], [0, 0, 1]]).T
    with pytest.raises(GeometryError, match="oblique") as info:
        Reorientation.of(Geometry((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), rotated))
    assert info.value.reason == "oblique-orientation"


def bone(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Two 10 mm-thick bone plates (700 HU) stacked head to foot, in soft tissue (40 HU)."""
    in_plane = ((np.abs(p[..., 0] - ORIGIN[0] - 8.0) < 5.0)
                & (np.abs(p[..., 1] - ORIGIN[1] - 11.0) < 7.0))
    upper = np.abs(p[..., 2] - ORIGIN[2] - 35.0) < 5.0
    lower = np.abs(p[..., 2] - ORIGIN[2] - 12.0) < 5.0
    return np.where(in_plane & (upper | lower), 700.0, 40.0)


def bone_net(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Logits: background 0, T1 where HU > 200 (2.0 normalised), T2 never on its own."""
    return np.concatenate([np.zeros_like(batch), 4 * (batch - 2.0), np.full_like(batch, -9.0)],
                          axis=1)


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_label_map_lies_on_the_source_grid(name: str, make_spec: Callable[..., ModelSpec]
                                           ) -> None:
    geometry = grid(ORIENTATIONS[name])
    hu = sample(geometry, bone).astype(np.int16)
    volume = Volume(hu, geometry, tuple(str(k) for k in range(geometry.size[2])), "1.2")
    label_map = segment(volume, make_spec(patch=(8, 8, 8)), bone_net)
    assert label_map.geometry == geometry and label_map.array.shape == hu.shape
    # On the source grid, the labels cover the bone up to one voxel at its surface (the linear
    # resampling to 2 mm and back blurs edges by that much).
    labelled, truth = label_map.array > 0, hu > 200
    assert not (labelled & ~ndimage.binary_dilation(truth)).any()
    assert not (ndimage.binary_erosion(truth) & ~labelled).any()
    # The upper plate is T1, the lower one T2, whatever the array order.
    t1 = label_map.array == labels.vertebra("T1").value
    t2 = label_map.array == labels.vertebra("T2").value
    z = sample(geometry, lambda p: p[..., 2])
    upper = truth & (z > ORIGIN[2] + 24.0)
    assert z[t1].mean() == pytest.approx(z[upper].mean(), abs=SPACING_ZYX[0] / 2)
    assert z[t2].mean() == pytest.approx(z[truth & ~upper].mean(), abs=SPACING_ZYX[0] / 2)


def test_label_maps_of_all_orientations_agree_exactly(make_spec: Callable[..., ModelSpec]
                                                      ) -> None:
    spec = make_spec(patch=(8, 8, 8))
    canonical = []
    for direction in ORIENTATIONS.values():
        geometry = grid(direction)
        hu = sample(geometry, bone).astype(np.int16)
        volume = Volume(hu, geometry, tuple(str(k) for k in range(geometry.size[2])), "1.2")
        label_map = segment(volume, spec, bone_net)
        canonical.append(Reorientation.of(geometry).to_canonical(label_map.array))
    for other in canonical[1:]:
        assert np.array_equal(other, canonical[0])
