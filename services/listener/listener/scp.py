"""DICOM event handlers: plain functions bound with their dependencies at start-up.

They return named DIMSE status codes and never raise; the only work done in the association
thread is writing the received file and its database row (that is the durability promise: success
is answered only once both are on disk). Checks and processing happen elsewhere.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from pynetdicom.events import Event

from listener import intake
from listener.db import Database
from listener.metrics import ListenerMetrics
from listener.settings import Caller
from listener.spool import Spool
from spinemets import logs
from spinemets.errors import InputError

log = logging.getLogger(__name__)

# DIMSE status codes (PS3.4 Annex B.2.3, PS3.7 Annex C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
REJECT_PERMANENT, SOURCE_SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03


@dataclass(frozen=True)
class Refusal:
    """Why a caller is refused: a reason code of a fixed set (a metric label) and a message."""

    reason: str
    message: str


@dataclass(frozen=True)
class Allowlist:
    """Which senders may associate."""

    callers: tuple[Caller, ...]
    allow_any: bool = False

    def check(self, ae_title: str, address: str) -> Refusal | None:
        """Why the caller is refused, or ``None`` if it is allowed."""
        if self.allow_any:
            return None
        title = ae_title.strip()
        entries = [c for c in self.callers if c.ae_title == title]
        if not entries:
            return Refusal("unknown_calling_ae", "calling AE title not in the allowlist")
        if any(c.hosts is None for c in entries):
            return None
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return Refusal("invalid_address", f"peer address {address!r} is not an IP address")
        if any(peer in network for c in entries for network in c.hosts or ()):
            return None
        return Refusal("address_not_allowed", "calling AE title not allowed from this address")

    def refusal(self, ae_title: str, address: str) -> str | None:
        """The message of :meth:`check`, or ``None`` if the caller is allowed."""
        refused = self.check(ae_title, address)
        return None if refused is None else refused.message


def handle_requested(event: Event, allowlist: Allowlist, metrics: ListenerMetrics) -> None:
    """EVT_REQUESTED: reject callers not in the allowlist (the AE title is not PHI)."""
    requestor = event.assoc.requestor
    ae_title = requestor.primitive.calling_ae_title if requestor.primitive else ""
    address = str(requestor.address)
    refused = allowlist.check(ae_title, address)
    if refused is None:
        return
    metrics.associations_rejected.labels(reason=refused.reason).inc()
    log.warning("association rejected: %s", refused.message,
                extra=logs.fields(calling_ae=ae_title.strip(), address=address,
                                  reason=refused.reason))
    event.assoc.acse.send_reject(REJECT_PERMANENT, SOURCE_SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
    event.assoc.kill()  # returns once the A-ASSOCIATE-RJ has been sent and the link closed


def handle_accepted(event: Event, metrics: ListenerMetrics) -> None:
    """EVT_ACCEPTED: count the association."""
    metrics.associations_accepted.inc()


def handle_rejected(event: Event, metrics: ListenerMetrics) -> None:
    """EVT_REJECTED: pynetdicom's own rejections (e.g. too many associations at once)."""
    metrics.associations_rejected.labels(reason="negotiation").inc()
    log.warning("association rejected during negotiation",
                extra=logs.fields(address=str(event.assoc.requestor.address)))


def handle_echo(event: Event) -> int:
    """EVT_C_ECHO: Verification."""
    return SUCCESS


def handle_store(event: Event, spool: Spool, db: Database, secret: bytes,
                 ignored_sop_classes: Sequence[str], metrics: ListenerMetrics) -> int:
    """EVT_C_STORE: spool the instance durably, then answer success."""
    status, outcome = _store(event, spool, db, secret, ignored_sop_classes)
    metrics.instances.labels(outcome=outcome).inc()
    return status


def _store(event: Event, spool: Spool, db: Database, secret: bytes,
           ignored_sop_classes: Sequence[str]) -> tuple[int, str]:
    """The status to answer and the outcome (``instances_received_total`` label)."""
    calling_ae = event.assoc.requestor.ae_title.strip()
    sop_class = str(event.request.AffectedSOPClassUID)
    if sop_class in ignored_sop_classes:
        log.info("instance of an ignored SOP class discarded",
                 extra=logs.fields(sop_class=sop_class, calling_ae=calling_ae))
        return SUCCESS, "ignored"
    try:
        dataset = event.dataset
        header = intake.header_of(dataset, str(event.context.transfer_syntax), calling_ae, secret)
    except InputError as exc:
        log.warning("instance refused: %s", exc, extra=logs.fields(reason=exc.reason))
        return CANNOT_UNDERSTAND, "refused"
    except Exception as exc:
        log.warning("instance refused: data set cannot be decoded (%s)", type(exc).__name__,
                    extra=logs.fields(reason="undecodable-dataset", calling_ae=calling_ae))
        return CANNOT_UNDERSTAND, "refused"
    try:
        intake.receive(spool, db, header, event.encoded_dataset(include_meta=True))
    except InputError as exc:
        log.warning("instance refused: %s", exc,
                    extra=logs.fields(reason=exc.reason, series=header.series_uid))
        return CANNOT_UNDERSTAND, "refused"
    except (OSError, sqlite3.Error) as exc:
        log.error("instance not stored: %s", type(exc).__name__,
                  extra=logs.fields(reason="spool-write-failed", series=header.series_uid,
                                    error=str(exc)))
        return OUT_OF_RESOURCES, "failed"
    except Exception:
        log.exception("instance not stored", extra=logs.fields(series=header.series_uid))
        return OUT_OF_RESOURCES, "failed"
    log.debug("instance stored", extra=logs.fields(series=header.series_uid,
                                                   sop_instance=header.sop_uid))
    return SUCCESS, "stored"
