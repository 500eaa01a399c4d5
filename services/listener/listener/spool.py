"""The durable spool: received instances on disk, quarantine, per-job files.

Layout under the state directory::

    spool/<study uid>/<series uid>/<sop instance uid>.dcm   Part 10 files as received
    spool/<study uid>/<series uid>/volume.npz               assembled volume (cache)
    quarantine/<series uid>/*.dcm, reason.json              series that cannot be processed
    jobs/<job id>/                                          label maps, assessment

Every file is written to a temporary name, fsynced, renamed and its directory fsynced, so a file
that exists is complete and survives a crash. UIDs used as path parts are validated first.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

from pydicom.uid import RE_VALID_UID

from spinemets.errors import InputError

VOLUME_FILE = "volume.npz"
REASON_FILE = "reason.json"
#: The label maps a job's segmentation saved in its directory.
LABEL_MAP_GLOB = "labelmap-*.npz"


def check_uid(value: str, what: str) -> str:
    """A valid DICOM UID (digits and dots), safe as a file name; else :class:`InputError`."""
    if len(value) > 64 or not RE_VALID_UID.fullmatch(value):
        raise InputError(f"{what} {value!r} is not a valid UID", reason="invalid-uid")
    return value


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each new entry fsynced into its parent."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    path.mkdir(exist_ok=True)
    fsync_dir(path.parent)


def stage(path: Path, data: bytes) -> Path:
    """Write ``data`` durably to a temporary file beside ``path``; :func:`publish` it after."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def publish(tmp: Path, path: Path) -> None:
    """Rename a staged file into place and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, dir fsync)."""
    tmp = stage(path, data)
    try:
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Spool:
    """Files of received series. ``lock`` serialises changes to a series' files and state."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        for name in ("spool", "quarantine", "jobs"):
            make_dirs(root / name)

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        return (self.root / "spool" / check_uid(study_uid, "Study Instance UID")
                / check_uid(series_uid, "Series Instance UID"))

    def quarantine_dir(self, series_uid: str) -> Path:
        return self.root / "quarantine" / check_uid(series_uid, "Series Instance UID")

    def job_dir(self, job_id: int) -> Path:
        path = self.root / "jobs" / str(int(job_id))
        make_dirs(path)
        return path

    def label_map_paths(self, job_id: int) -> list[Path]:
        """The label maps saved in a job's directory, sorted; empty if none."""
        directory = self.root / "jobs" / str(int(job_id))
        return sorted(directory.glob(LABEL_MAP_GLOB)) if directory.is_dir() else []

    def volume_path(self, study_uid: str, series_uid: str) -> Path:
        return self.series_dir(study_uid, series_uid) / VOLUME_FILE

    def write_instance(self, study_uid: str, series_uid: str, sop_uid: str, data: bytes) -> Path:
        """Store one Part 10 file durably; a resent instance replaces the earlier copy."""
        directory = self.series_dir(study_uid, series_uid)
        path = directory / f"{check_uid(sop_uid, 'SOP Instance UID')}.dcm"
        make_dirs(directory)
        write_durably(path, data)
        return path

    def instance_paths(self, study_uid: str, series_uid: str) -> list[Path]:
        """The series' files in the spool, sorted by name; empty if none."""
        directory = self.series_dir(study_uid, series_uid)
        return sorted(directory.glob("*.dcm")) if directory.is_dir() else []

    def drop_volume(self, study_uid: str, series_uid: str) -> None:
        """Forget the cached volume (the series changed)."""
        self.volume_path(study_uid, series_uid).unlink(missing_ok=True)

    def quarantine(self, study_uid: str, series_uid: str, reason: str, message: str) -> Path:
        """Move the series' files to ``quarantine/<series uid>/`` with ``reason.json``."""
        source = self.series_dir(study_uid, series_uid)
        target = self.quarantine_dir(series_uid)
        with self.lock:
            make_dirs(target)
            if source.is_dir():
                for path in source.glob("*.dcm"):
                    os.replace(path, target / path.name)
                fsync_dir(target)
                shutil.rmtree(source)
                fsync_dir(source.parent)
            record = {"study_instance_uid": study_uid, "series_instance_uid": series_uid,
                      "reason": reason, "message": message}
            write_durably(target / REASON_FILE, json.dumps(record, indent=1).encode())
        return target

    def restore(self, study_uid: str, series_uid: str) -> int:
        """Move a quarantined series back to the spool (more instances arrived); file count."""
        source = self.quarantine_dir(series_uid)
        if not source.is_dir():
            return 0
        target = self.series_dir(study_uid, series_uid)
        with self.lock:
            make_dirs(target)
            paths = list(source.glob("*.dcm"))
            for path in paths:
                if not (target / path.name).exists():
                    os.replace(path, target / path.name)
            fsync_dir(target)
            shutil.rmtree(source)
            fsync_dir(source.parent)
        return len(paths)
