"""Accepting one received instance: validate its identifiers, spool it durably, record it.

Called from the C-STORE handler; returns only once the file and the database row are on disk.
Late instances of a finished series re-open it (it is processed again after the idle timer);
a quarantined series is first moved back into the spool so that nothing is split.
"""

from __future__ import annotations

import logging
import time

from pydicom.dataset import Dataset

from listener.db import Database, InstanceHeader, SeriesState
from listener.spool import Spool, check_uid
from spinemets import logs
from spinemets.errors import InputError
from spinemets.phi import patient_key

log = logging.getLogger(__name__)


def header_of(ds: Dataset, transfer_syntax: str, calling_ae: str, secret: bytes) -> InstanceHeader:
    """The recorded attributes of an instance; the patient is kept only as a keyed pseudonym."""
    return InstanceHeader(
        study_uid=check_uid(str(ds.get("StudyInstanceUID", "")), "Study Instance UID"),
        series_uid=check_uid(str(ds.get("SeriesInstanceUID", "")), "Series Instance UID"),
        sop_uid=check_uid(str(ds.get("SOPInstanceUID", "")), "SOP Instance UID"),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        transfer_syntax=transfer_syntax,
        patient_key=patient_key(str(ds.get("PatientID", "")),
                                str(ds.get("IssuerOfPatientID", "")), secret),
        modality=str(ds.get("Modality", "")),
        description=str(ds.get("SeriesDescription", "")),
        study_date=str(ds.get("StudyDate", "")),
        study_time=str(ds.get("StudyTime", "")),
        calling_ae=calling_ae,
        study_description=str(ds.get("StudyDescription", "")),
    )


def receive(spool: Spool, db: Database, header: InstanceHeader, data: bytes) -> None:
    """Spool a Part 10 file and record it; raises ``InputError`` or ``OSError``/sqlite errors."""
    with spool.lock:
        known = db.series(header.series_uid)
        if known is not None and known.study_uid != header.study_uid:
            raise InputError("series UID already received in another study",
                             reason="series-in-two-studies")
        if known is not None and known.state == SeriesState.QUARANTINED:
            spool.restore(header.study_uid, header.series_uid)
        spool.write_instance(header.study_uid, header.series_uid, header.sop_uid, data)
        spool.drop_volume(header.study_uid, header.series_uid)
        previous = db.record_instance(header, time.time())
    if previous is None:
        log.info("new series", extra=logs.fields(series=header.series_uid,
                                                 calling_ae=header.calling_ae))
    elif previous != SeriesState.RECEIVING:
        log.info("late instance: series re-opened, it will be processed again",
                 extra=logs.fields(series=header.series_uid, previous_state=str(previous)))
