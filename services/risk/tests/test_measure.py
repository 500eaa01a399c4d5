"""Measurement functions on known masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from risk.measure import check_same_grid, measure_vertebrae, volume_ml
from spinemets import labels
from spinemets.errors import GeometryError, InputError
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

GEOMETRY = Geometry(size=(6, 5, 4), spacing=(0.5, 0.8, 2.5), origin=(0.0, 0.0, 0.0),
                    direction=np.eye(3))


def label_map(array: np.ndarray, names: dict[int, str]) -> LabelMap:
    return LabelMap(array, GEOMETRY, names, "vertebrae", "1")


def test_volume_is_voxel_count_times_voxel_volume() -> None:
    assert volume_ml(1000, GEOMETRY) == pytest.approx(1000 * 0.5 * 0.8 * 2.5 / 1000)


def test_known_masks_give_exact_volume_and_mean_hu() -> None:
    ct = np.full((4, 5, 6), -1000, dtype=np.int16)
    values = np.zeros((4, 5, 6), dtype=np.uint8)
    values[0:2, 1:3, 1:4] = 20  # L1: 12 voxels
    ct[0:2, 1:3, 1:4] = [[[100, 200, 300]]]
    values[3, 0, 0] = 8  # T1: one voxel
    ct[3, 0, 0] = -7
    result = measure_vertebrae(ct, label_map(values, {20: "vertebra_L1", 8: "vertebra_T1"}))
    assert [m.level for m in result] == ["T1", "L1"]  # cranial to caudal, not by value order
    t1, l1 = result
    assert (t1.voxels, t1.mean_hu) == (1, -7.0)
    assert l1.voxels == 12
    assert l1.volume_ml == pytest.approx(12 * 1.0 / 1000)
    assert l1.mean_hu == pytest.approx(200.0)


def test_values_are_mapped_by_name_not_by_verse_value() -> None:
    """A map may number its labels its own way; several values may name one label."""
    ct = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    values = np.zeros((4, 5, 6), dtype=np.uint8)
    values[0] = 1
    values[1] = 2
    values[2, 0, 0] = 3  # a muscle: not a vertebra, not measured
    names = {1: "vertebra_L2", 2: "vertebra_L2", 3: "psoas_major_left"}
    (l2,) = measure_vertebrae(ct, label_map(values, names))
    assert l2.label == labels.vertebra("L2")
    assert l2.voxels == 60
    assert l2.mean_hu == pytest.approx(ct[:2].mean())


def test_labels_named_but_absent_are_not_reported() -> None:
    ct = np.zeros((4, 5, 6), dtype=np.int16)
    assert measure_vertebrae(ct, label_map(np.zeros((4, 5, 6), np.uint8),
                                           {9: "vertebra_T2"})) == ()


def test_shape_mismatch_and_bad_values_are_rejected() -> None:
    values = np.zeros((4, 5, 6), dtype=np.int16)
    with pytest.raises(GeometryError, match="differs"):
        measure_vertebrae(np.zeros((4, 5, 7), np.int16), label_map(values, {}))
    values[0, 0, 0] = -1
    with pytest.raises(InputError, match="non-negative"):
        measure_vertebrae(np.zeros((4, 5, 6), np.int16), label_map(values, {}))


def test_grids_must_agree() -> None:
    check_same_grid(GEOMETRY, dataclasses.replace(GEOMETRY, origin=(0.0, 0.0, 1e-4)))
    with pytest.raises(GeometryError, match="same grid"):
        check_same_grid(GEOMETRY, dataclasses.replace(GEOMETRY, origin=(0.0, 0.0, 2.5)))
    with pytest.raises(GeometryError, match="same grid"):
        check_same_grid(GEOMETRY, dataclasses.replace(GEOMETRY, direction=-np.eye(3)))
