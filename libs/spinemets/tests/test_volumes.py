"""Volumes on the wire: exact round trip, and streams that cannot be a volume are refused."""

from __future__ import annotations

import numpy as np
import pytest

from spinemets import volumes
from spinemets.errors import InputError
from spinemets.geometry import Geometry, Volume
from spinemets.grpcutil import CHUNK_BYTES


def volume() -> Volume:
    array = np.random.default_rng(0).integers(-1024, 3000, size=(5, 300, 400)).astype(np.int16)
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    geometry = Geometry((400, 300, 5), (0.7, 0.8, 2.5), (10.0, -20.0, 300.0), direction)
    return Volume(array, geometry, tuple(f"1.2.3.{k}" for k in range(5)),
                  "1.2.840.10008.5.1.4.1.1.2")


def test_round_trip_is_exact() -> None:
    original = volume()
    chunks = list(volumes.to_chunks(original))
    assert len(chunks) > 1 and all(len(c.data) <= CHUNK_BYTES for c in chunks)
    assert chunks[0].HasField("header") and not chunks[1].HasField("header")
    back = volumes.from_chunks(chunks)
    assert back.array.dtype == np.int16 and np.array_equal(back.array, original.array)
    assert back.geometry == original.geometry
    assert np.array_equal(back.geometry.direction, original.geometry.direction)
    assert back.slice_instance_uids == original.slice_instance_uids
    assert back.sop_class_uid == original.sop_class_uid


def test_streams_that_are_no_volume_are_refused() -> None:
    chunks = list(volumes.to_chunks(volume()))
    with pytest.raises(InputError, match="header"):
        volumes.from_chunks(chunks[1:])
    with pytest.raises(InputError, match="empty"):
        volumes.from_chunks([])
    with pytest.raises(InputError, match="bytes"):
        volumes.from_chunks(chunks[:-1])
    chunks[0].header.dtype = "<f4"
    with pytest.raises(InputError, match="int16"):
        volumes.from_chunks(chunks)
    chunks[0].header.dtype = "<i2"
    del chunks[0].header.slice_instance_uids[-1]
    with pytest.raises(InputError, match="4 of 5 slices"):
        volumes.from_chunks(chunks)
