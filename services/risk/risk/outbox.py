"""The durable outbox: result objects of each series, kept until (and after) delivery.

Layout: ``<root>/<series uid>/`` holds one file per object named by its modality (``seg.dcm``,
``sr.dcm``, the report's ``doc.dcm`` and ``ot.dcm``, ``ot-2.dcm``... for its pages),
``measurements.json`` (what was measured and which objects were written, in delivery order)
and ``delivered.json`` (per destination, the SOP Instance UIDs it has acknowledged). An entry
is written in a staging folder (every file fsynced) and renamed into place, so a reader sees a
whole entry or none. Writing an entry again (a re-run) replaces it and clears its delivery
marks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from spinemets.errors import InputError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
RECORD = "measurements.json"
DELIVERED = "delivered.json"


@dataclass(frozen=True)
class StoredObject:
    """One result object in an entry."""

    file: str
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class Entry:
    """The outbox entry of one source series."""

    path: Path
    objects: tuple[StoredObject, ...]
    record: dict[str, Any]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: temporary file, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, value: Any) -> None:
    _write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())


def _file_name(ds: Dataset, before: Sequence[Dataset]) -> str:
    """``<modality>.dcm``, numbered from the second object of the same modality on."""
    modality = str(ds.Modality)
    n = 1 + sum(str(other.Modality) == modality for other in before)
    return f"{modality.lower()}.dcm" if n == 1 else f"{modality.lower()}-{n}.dcm"


class Outbox:
    """Result objects per series under ``root``; safe for concurrent use by threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for leftover in [*root.glob(".staging-*"), *root.glob(".old-*")]:
            shutil.rmtree(leftover)  # an interrupted put: its Assess call failed and is retried
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def locked(self, series_uid: str) -> Iterator[Path]:
        """Hold the series' lock; yields the entry's folder (which may not exist)."""
        if not _UID.match(series_uid) or len(series_uid) > 64:
            raise InputError(f"{series_uid!r} is not a valid UID", reason="bad-uid")
        with self._guard:
            lock = self._locks.setdefault(series_uid, threading.Lock())
        with lock:
            yield self.root / series_uid

    def put(self, series_uid: str, objects: Sequence[Dataset], record: dict[str, Any]) -> Entry:
        """Store ``objects`` (in delivery order) and ``record``, replacing an earlier entry."""
        stored = tuple(
            StoredObject(_file_name(ds, objects[:n]), str(ds.Modality), str(ds.SOPClassUID),
                         str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))
            for n, ds in enumerate(objects))
        with self.locked(series_uid) as final:
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            for ds, obj in zip(objects, stored, strict=True):
                with open(staging / obj.file, "wb") as fh:
                    dcmwrite(fh, ds, enforce_file_format=True)
                    fh.flush()
                    os.fsync(fh.fileno())
            _write_json(staging / RECORD, {**record, "objects": [asdict(o) for o in stored]})
            _fsync_dir(staging)
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=".old-", dir=self.root))
                os.replace(final, old / "entry")
                os.replace(staging, final)
                shutil.rmtree(old)
            else:
                os.replace(staging, final)
            _fsync_dir(self.root)
        return Entry(final, stored, record)

    def get(self, series_uid: str) -> Entry:
        """The entry of a series; :class:`FileNotFoundError` if there is none."""
        with self.locked(series_uid) as path:
            try:
                record = json.loads((path / RECORD).read_text())
            except FileNotFoundError:
                raise FileNotFoundError(f"no results of series {series_uid} in the outbox") \
                    from None
        objects = tuple(StoredObject(**o) for o in record.pop("objects"))
        return Entry(path, objects, record)

    def delivered(self, series_uid: str) -> dict[str, set[str]]:
        """Per destination key, the SOP Instance UIDs it has acknowledged."""
        with self.locked(series_uid) as path:
            try:
                marks = json.loads((path / DELIVERED).read_text())
            except FileNotFoundError:
                return {}
        return {key: set(uids) for key, uids in marks.items()}

    def mark_delivered(self, series_uid: str, destination: str, sop_instance_uid: str) -> None:
        """Record (durably) that ``destination`` has acknowledged an object."""
        with self.locked(series_uid) as path:
            try:
                marks = json.loads((path / DELIVERED).read_text())
            except FileNotFoundError:
                marks = {}
            uids = set(marks.get(destination, ())) | {sop_instance_uid}
            marks[destination] = sorted(uids)
            _write_json(path / DELIVERED, marks)
