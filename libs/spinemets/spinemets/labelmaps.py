"""Label maps: a segmentation over a volume's grid, with the catalogue names of its values.

Label maps travel between services as ``LabelMapChunk`` streams and are stored as ``.npz``
files (job spool, risk outbox) with the same content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from spinemets import labels
from spinemets.errors import InputError
from spinemets.geometry import Geometry
from spinemets.grpcutil import (
    array_chunks,
    array_from_chunks,
    geometry_from_proto,
    geometry_to_proto,
)
from spinemets.v1 import volume_pb2


@dataclass(frozen=True)
class LabelMap:
    """A label map: ``array[slice, row, column]`` with values named in ``labels``."""

    array: npt.NDArray[Any]
    geometry: Geometry
    labels: dict[int, str]  # value in this map -> catalogue name
    model_name: str
    model_version: str
    #: Produced by a phantom-trained demo model: every result derived from it says so.
    demo: bool = False

    def __post_init__(self) -> None:
        columns, rows, slices = self.geometry.size
        if self.array.shape != (slices, rows, columns):
            raise InputError(f"label map shape {self.array.shape} does not match geometry "
                             f"{(slices, rows, columns)}", reason="bad-label-map")
        for name in self.labels.values():
            labels.by_name(name)

    def mask(self, name: str) -> npt.NDArray[np.bool_]:
        """Boolean mask of the catalogue label ``name`` (all False if absent)."""
        values = [v for v, n in self.labels.items() if n == name]
        return np.isin(self.array, values) if values else np.zeros(self.array.shape, bool)


def of_group(label_maps: Sequence[LabelMap], group: labels.Group) -> LabelMap | None:
    """The one label map naming structures of ``group`` (e.g. the vertebra model's), or None
    when no map does; :class:`InputError` if several do."""
    found = [m for m in label_maps
             if any(labels.by_name(name).group is group for name in m.labels.values())]
    if len(found) > 1:
        raise InputError(f"{len(found)} label maps hold {group.value} labels; expected one",
                         reason="ambiguous-label-maps")
    return found[0] if found else None


def to_chunks(label_map: LabelMap) -> Iterator[volume_pb2.LabelMapChunk]:
    """Stream a label map: the header rides on the first chunk."""
    header = volume_pb2.LabelMapHeader(
        geometry=geometry_to_proto(label_map.geometry),
        dtype=label_map.array.dtype.newbyteorder("<").str,
        labels={int(k): v for k, v in label_map.labels.items()},
        model_name=label_map.model_name,
        model_version=label_map.model_version,
        demo=label_map.demo,
    )
    for n, data in enumerate(array_chunks(label_map.array)):
        yield volume_pb2.LabelMapChunk(header=header if n == 0 else None, data=data)


def from_chunks(chunks: Iterable[volume_pb2.LabelMapChunk]) -> list[LabelMap]:
    """Collect one or more streamed label maps (each starts with a chunk carrying a header)."""
    maps: list[LabelMap] = []
    header: volume_pb2.LabelMapHeader | None = None
    parts: list[bytes] = []

    def close() -> None:
        if header is None:
            return
        geometry = geometry_from_proto(header.geometry)
        array = array_from_chunks(parts, header.dtype, geometry)
        maps.append(LabelMap(array, geometry, dict(header.labels), header.model_name,
                             header.model_version, header.demo))

    for chunk in chunks:
        if chunk.HasField("header"):
            close()
            header, parts = chunk.header, []
        elif header is None:
            raise InputError("label map stream does not start with a header",
                             reason="bad-label-map")
        parts.append(chunk.data)
    close()
    return maps


def save(label_map: LabelMap, path: Path) -> None:
    """Write a label map atomically (temp file, fsync, rename)."""
    meta = {
        "size": label_map.geometry.size, "spacing": label_map.geometry.spacing,
        "origin": label_map.geometry.origin,
        "direction": label_map.geometry.direction.tolist(),
        "labels": {str(k): v for k, v in label_map.labels.items()},
        "model_name": label_map.model_name, "model_version": label_map.model_version,
        "demo": label_map.demo,
    }
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, array=label_map.array, meta=np.asarray(json.dumps(meta)))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> LabelMap:
    """Read a label map written by :func:`save`."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        array = data["array"]
    geometry = Geometry(tuple(meta["size"]), tuple(meta["spacing"]), tuple(meta["origin"]),
                        np.asarray(meta["direction"], dtype=np.float64))
    return LabelMap(array, geometry, {int(k): v for k, v in meta["labels"].items()},
                    meta["model_name"], meta["model_version"], bool(meta.get("demo", False)))
