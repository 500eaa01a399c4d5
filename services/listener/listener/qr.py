"""Query/Retrieve SCU (pynetdicom, Study Root, PS3.4 Annex C) against the configured PACS.

Transport only: C-FIND at study and series level, returned as plain records
(:mod:`listener.baseline` chooses among them), and C-MOVE or C-GET of one series. Every failure
is a :class:`PacsError` whose message names the PACS and the DIMSE status, never the patient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from listener.baseline import SeriesMatch, StudyMatch
from listener.settings import Pacs
from spinemets.errors import SpineMetsError

SUCCESS, WARNING = 0x0000, 0xB000
PENDING = frozenset({0xFF00, 0xFF01})


class PacsError(SpineMetsError):
    """The PACS could not be reached or answered a query or retrieval with a failure."""

    reason = "pacs-error"


@dataclass(frozen=True)
class Peer:
    """Who we call and how patiently: the PACS, our AE title, the timeouts (seconds)."""

    pacs: Pacs
    ae_title: str
    timeout_s: float
    retrieve_timeout_s: float

    @property
    def name(self) -> str:
        return f"{self.pacs.ae_title}@{self.pacs.host}:{self.pacs.port}"


def _ae(peer: Peer, dimse_timeout: float) -> AE:
    ae = AE(ae_title=peer.ae_title)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = peer.timeout_s
    ae.dimse_timeout = dimse_timeout
    return ae


@contextlib.contextmanager
def _associated(peer: Peer, ae: AE, ext_neg: list[Any] | None = None,
                handlers: list[evt.EventHandlerType] | None = None) -> Iterator[Association]:
    """An established association, released on exit; :class:`PacsError` if none."""
    pacs = peer.pacs
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, ext_neg=ext_neg,
                         evt_handlers=handlers)
    if not assoc.is_established:
        why = ("rejected the association" if assoc.is_rejected
               else "is unreachable or aborted the association")
        raise PacsError(f"PACS {peer.name} {why}", reason="pacs-unreachable")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status(status: Dataset) -> int | None:
    return int(status.Status) if "Status" in status else None


def _find(peer: Peer, assoc: Association, query: Dataset) -> list[Dataset]:
    matches: list[Dataset] = []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        code = _status(status)
        if code in PENDING:
            if identifier is not None:
                matches.append(identifier)
        elif code != SUCCESS:
            raise PacsError(f"C-FIND at {peer.name} failed: {_describe(code)}",
                            reason="find-failed")
    return matches


def _describe(code: int | None) -> str:
    return "no response (timeout or abort)" if code is None else f"status 0x{code:04X}"


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip()


def study_query(patient_id: str, dates: str) -> Dataset:
    """Study-level query: the patient's CT studies in the Study Date range ``dates``."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = patient_id
    ds.StudyDate = dates
    ds.ModalitiesInStudy = "CT"
    for keyword in ("IssuerOfPatientID", "StudyInstanceUID", "StudyTime", "StudyDescription"):
        setattr(ds, keyword, "")
    return ds


def series_query(study_uid: str) -> Dataset:
    """Series-level query: the CT series of a study with their descriptions and sizes."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.Modality = "CT"
    for keyword in ("SeriesInstanceUID", "SeriesDescription", "NumberOfSeriesRelatedInstances"):
        setattr(ds, keyword, "")
    return ds


@dataclass
class Finder:
    """C-FINDs over one association (:func:`finder`)."""

    peer: Peer
    assoc: Association

    def studies(self, patient_id: str, dates: str) -> list[StudyMatch]:
        return [StudyMatch(_text(ds, "StudyInstanceUID"), _text(ds, "StudyDate"),
                           _text(ds, "StudyTime"), _text(ds, "StudyDescription"),
                           _text(ds, "PatientID"), _text(ds, "IssuerOfPatientID"))
                for ds in _find(self.peer, self.assoc, study_query(patient_id, dates))
                if _text(ds, "StudyInstanceUID")]

    def series(self, study_uid: str) -> list[SeriesMatch]:
        found = []
        for ds in _find(self.peer, self.assoc, series_query(study_uid)):
            count = _text(ds, "NumberOfSeriesRelatedInstances")
            found.append(SeriesMatch(_text(ds, "SeriesInstanceUID"), _text(ds, "Modality"),
                                     _text(ds, "SeriesDescription"),
                                     int(count) if count.isdigit() else 0))
        return [s for s in found if s.series_uid]


@contextlib.contextmanager
def finder(peer: Peer) -> Iterator[Finder]:
    """An association for C-FINDs (Study Root)."""
    ae = _ae(peer, peer.timeout_s)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    with _associated(peer, ae) as assoc:
        yield Finder(peer, assoc)


def _series_identifier(study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    return ds


def _retrieved(peer: Peer, what: str, responses: Iterator[tuple[Dataset, Dataset | None]]
               ) -> int:
    """Follow C-MOVE / C-GET responses to the final one; the instances sent (PS3.4 C.4.2.1.4)."""
    final = Dataset()
    for status, _ in responses:
        final = status
        if _status(status) not in PENDING:
            break
    code = _status(final)
    completed = int(final.get("NumberOfCompletedSuboperations") or 0)
    failed = int(final.get("NumberOfFailedSuboperations") or 0)
    if code != SUCCESS:
        raise PacsError(f"{what} from {peer.name} failed: {_describe(code)}, "
                        f"{completed} instances sent, {failed} failed", reason="retrieve-failed")
    return completed


def move(peer: Peer, study_uid: str, series_uid: str, destination: str) -> int:
    """C-MOVE a series to the AE ``destination``; returns the instances the PACS sent."""
    ae = _ae(peer, peer.retrieve_timeout_s)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    with _associated(peer, ae) as assoc:
        return _retrieved(peer, "C-MOVE", assoc.send_c_move(
            _series_identifier(study_uid, series_uid), destination,
            StudyRootQueryRetrieveInformationModelMove))


def get(peer: Peer, study_uid: str, series_uid: str, storage: dict[str, list[str]],
        on_store: Callable[[Event], int]) -> int:
    """C-GET a series; each instance goes to ``on_store`` (a C-STORE handler returning the
    status), ``storage`` maps the storage SOP classes accepted to their transfer syntaxes.
    Returns the instances the PACS sent."""
    ae = _ae(peer, peer.retrieve_timeout_s)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class, syntaxes in storage.items():
        ae.add_requested_context(sop_class, syntaxes)
    roles: list[Any] = [build_role(sop_class, scp_role=True) for sop_class in storage]
    with _associated(peer, ae, roles, [(evt.EVT_C_STORE, on_store)]) as assoc:
        return _retrieved(peer, "C-GET", assoc.send_c_get(
            _series_identifier(study_uid, series_uid), StudyRootQueryRetrieveInformationModelGet))
