"""Finding a follow-up's prior in the PACS and retrieving it into the spool.

Used by the job runner when the registrar's history has no prior and ``listener.priors.pacs`` is
set. The search reads the Patient ID (and issuer) from the spooled series, since only the
listener holds them, asks the PACS for the patient's earlier CT studies and their series
(C-FIND), and chooses the baseline and its series (:mod:`listener.baseline`). The retrieval is a
C-MOVE to the listener's own AE title (the instances arrive through the SCP like any other) or a
C-GET whose instances are stored by the same handler. The Patient ID stays in memory: it is
never logged nor written anywhere but the query sent to the PACS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pydicom

from listener import baseline, qr, scp, server
from listener.baseline import SeriesMatch, StudyMatch
from listener.db import Database, Prior, Series
from listener.metrics import PRIOR_OUTCOMES, ListenerMetrics
from listener.settings import Settings
from listener.spool import Spool
from spinemets.baseline import moment
from spinemets.config import BaselineRule
from spinemets.errors import SpineMetsError


def pairing_note(outcome: str, message: str) -> str:
    """``"<code>: <message>"`` for an outcome of :data:`PRIOR_OUTCOMES` (the code in kebab
    case, as reason codes are)."""
    if outcome not in PRIOR_OUTCOMES:
        raise ValueError(f"unknown pairing outcome {outcome!r}")
    return f"{outcome.replace('_', '-')}: {message}"


@dataclass(frozen=True)
class Search:
    """The prior chosen in the PACS (``None``: none) and the note saying why."""

    prior: Prior | None
    note: str


def patient_identity(spool: Spool, series: Series) -> tuple[str, str]:
    """Patient ID and Issuer of Patient ID of a spooled series (PHI: never log them)."""
    paths = spool.instance_paths(series.study_uid, series.series_uid)
    if not paths:
        raise SpineMetsError("the series has no instances in the spool",
                             reason="missing-instances")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True,
                         specific_tags=["PatientID", "IssuerOfPatientID"])
    return str(ds.get("PatientID") or "").strip(), str(ds.get("IssuerOfPatientID") or "").strip()


class PriorFinder:
    """C-FIND, choice and retrieval of priors from the configured PACS."""

    def __init__(self, settings: Settings, rule: BaselineRule, spool: Spool, db: Database,
                 secret: bytes, metrics: ListenerMetrics) -> None:
        pacs = settings.priors.pacs
        if pacs is None:
            raise ValueError("no PACS configured in listener.priors.pacs")
        self.settings, self.priors, self.rule = settings, settings.priors, rule
        self.peer = qr.Peer(pacs, settings.ae_title, self.priors.timeout_s,
                            self.priors.retrieve_timeout_s)
        self._store = functools.partial(scp.handle_store, spool=spool, db=db, secret=secret,
                                        ignored_sop_classes=(), metrics=metrics)
        self.spool = spool

    def search(self, series: Series) -> Search:
        """The baseline of the study of ``series`` in the PACS; :class:`qr.PacsError` if the
        PACS cannot be asked."""
        patient_id, issuer = patient_identity(self.spool, series)
        if not patient_id:
            return Search(None, pairing_note("not_searchable", "the study has no Patient ID"))
        if moment(series.study_date, series.study_time) is None:
            return Search(None, pairing_note("not_searchable",
                                             "the study has no valid Study Date"))
        dates = baseline.date_range(series.study_date, self.priors.max_age_days)
        with qr.finder(self.peer) as find:
            studies = baseline.earlier(find.studies(patient_id, dates), patient_id, issuer,
                                       series.study_uid, series.study_date, series.study_time)

            @functools.cache
            def series_of(study: StudyMatch) -> tuple[SeriesMatch, ...]:
                return tuple(find.series(study.study_uid))

            choice = baseline.choose(studies, series_of, self.settings.rules, self.rule)
        if choice is None:
            return Search(None, pairing_note("not_in_pacs", (
                f"no earlier CT study of the patient in {self.peer.name}" if not studies else
                f"none of the {len(studies)} earlier CT studies of the patient in "
                f"{self.peer.name} is a baseline ({self.rule.policy}, series the routing "
                "rules accept)")))
        return Search(Prior(choice.study.study_uid, choice.series.series_uid,
                            choice.study.study_date),
                      pairing_note("pacs", f"{choice.why} retrieved from {self.peer.name}"))

    def retrieve(self, prior: Prior) -> int:
        """C-MOVE (or C-GET) the prior's series into the spool; the instances the PACS sent."""
        if self.priors.retrieve == "move":
            return qr.move(self.peer, prior.study_uid, prior.series_uid,
                           self.settings.move_destination)
        storage = {str(sop_class): [str(ts) for ts in server.TRANSFER_SYNTAXES]
                   for sop_class in server.STORAGE_SOP_CLASSES}
        return qr.get(self.peer, prior.study_uid, prior.series_uid, storage, self._store)
