"""Reading a spooled series and the cached volume beside it (``volume.npz``).

The volume is assembled once by :func:`spinemets.geometry.assemble_ct` and stored with its
geometry and slice UIDs, so the data service streams it without decoding DICOM again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from listener import spool
from spinemets.errors import InputError
from spinemets.geometry import Geometry, Volume

#: Values larger than this are read from the file only when used (pixel data).
_DEFER_BYTES = 4096


def read_datasets(paths: Sequence[Path]) -> list[Dataset]:
    """Read Part 10 files; pixel data stays on disk until decoded."""
    datasets: list[Dataset] = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path, defer_size=_DEFER_BYTES))
        except (InvalidDicomError, EOFError, ValueError, KeyError) as exc:
            raise InputError(f"{path.name} is not a readable DICOM file: {type(exc).__name__}",
                             reason="unreadable-dicom") from None
    return datasets


def encode(volume: Volume) -> bytes:
    """The ``.npz`` bytes of a volume: array plus JSON geometry and slice UIDs."""
    geometry = volume.geometry
    meta = {"size": geometry.size, "spacing": geometry.spacing, "origin": geometry.origin,
            "direction": geometry.direction.tolist(),
            "slice_instance_uids": list(volume.slice_instance_uids),
            "sop_class_uid": volume.sop_class_uid}
    buffer = io.BytesIO()
    np.savez(buffer, array=volume.array, meta=np.asarray(json.dumps(meta)))
    return buffer.getvalue()


def stage(volume: Volume, path: Path) -> Path:
    """Write the volume to a temporary file beside ``path`` (see :func:`spool.publish`)."""
    return spool.stage(path, encode(volume))


def load(path: Path) -> Volume:
    """Read a volume written by :func:`stage` and published."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        array = data["array"]
    geometry = Geometry(tuple(meta["size"]), tuple(meta["spacing"]), tuple(meta["origin"]),
                        np.asarray(meta["direction"], dtype=np.float64))
    return Volume(array, geometry, tuple(meta["slice_instance_uids"]), meta["sop_class_uid"])
