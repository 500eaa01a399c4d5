"""Arrays and label maps on the wire and on disk: exact round trips, chunk limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spinemets import labelmaps
from spinemets.errors import InputError
from spinemets.geometry import Geometry
from spinemets.grpcutil import (
    CHUNK_BYTES,
    array_chunks,
    array_from_chunks,
    geometry_from_proto,
    geometry_to_proto,
)


def geometry(shape: tuple[int, int, int]) -> Geometry:
    c, s = np.cos(0.2), np.sin(0.2)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    return Geometry((shape[2], shape[1], shape[0]), (0.7, 0.8, 2.5), (-10.0, 20.0, 300.0),
                    direction)


def test_geometry_round_trip() -> None:
    g = geometry((4, 5, 6))
    back = geometry_from_proto(geometry_to_proto(g))
    assert back == g
    assert np.allclose(back.direction, g.direction)


def test_large_array_streams_in_chunks_below_limit() -> None:
    array = np.arange(3 * 512 * 512, dtype=np.int32).astype(np.int16).reshape(3, 512, 512)
    parts = list(array_chunks(array))
    assert len(parts) > 1 and all(len(p) <= CHUNK_BYTES for p in parts)
    back = array_from_chunks(parts, "<i2", geometry(array.shape))
    assert np.array_equal(back, array)


def test_truncated_stream_is_an_error() -> None:
    array = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(InputError, match="expected 24"):
        array_from_chunks([b"\x00" * 23], "|u1", geometry(array.shape))


def label_map(seed: int) -> labelmaps.LabelMap:
    array = np.random.default_rng(seed).choice([0, 8, 9], size=(5, 6, 7)).astype(np.uint8)
    return labelmaps.LabelMap(array, geometry(array.shape), {8: "vertebra_T1", 9: "vertebra_T2"},
                              "vertebrae", "1")


def test_several_label_maps_in_one_stream() -> None:
    maps = [label_map(1), label_map(2)]
    chunks = [chunk for m in maps for chunk in labelmaps.to_chunks(m)]
    back = labelmaps.from_chunks(chunks)
    assert len(back) == 2
    for a, b in zip(maps, back, strict=True):
        assert np.array_equal(a.array, b.array)
        assert a.labels == b.labels and a.geometry == b.geometry
        assert b.model_name == "vertebrae"


def test_save_and_load(tmp_path: Path) -> None:
    m = label_map(3)
    labelmaps.save(m, tmp_path / "map.npz")
    back = labelmaps.load(tmp_path / "map.npz")
    assert np.array_equal(back.array, m.array) and back.labels == m.labels
    assert back.geometry == m.geometry
    assert np.array_equal(back.mask("vertebra_T2"), m.array == 9)


def test_unknown_label_name_is_refused() -> None:
    array = np.zeros((1, 1, 1), np.uint8)
    with pytest.raises(KeyError, match="not in the label catalogue"):
        labelmaps.LabelMap(array, geometry(array.shape), {1: "kidney"}, "m", "1")
