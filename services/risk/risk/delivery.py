"""Delivery of outbox entries by C-STORE (pynetdicom SCU), with bounded retries.

Objects go in entry order (SEG before the SR that references it); after a failed object the
rest wait for the next attempt, so a destination never holds an SR without its SEG. Each
acknowledged object is marked in the outbox at once, so a later call sends only what is missing.
If a destination still lacks objects after the last attempt, :class:`DeliveryError` is raised
and the entry stays in the outbox for the caller's next try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE

from risk.metrics import RiskMetrics
from risk.outbox import Entry, Outbox
from risk.settings import Destination
from spinemets import logs
from spinemets.dimse import stored
from spinemets.errors import DeliveryError

log = logging.getLogger(__name__)

SUCCESS = 0x0000


@dataclass(frozen=True)
class Delivery:
    """Outcome of one object at one destination; ``status`` is None when none was received."""

    destination: str
    sop_instance_uid: str
    status: int | None

    @property
    def stored(self) -> bool:
        return stored(self.status)


def send(destination: Destination, files: Sequence[Path], calling_ae: str, timeout: float
         ) -> list[int | None]:
    """C-STORE ``files`` in order over one association; status per file, None if not sent.

    Proposes one presentation context per SOP Class and Transfer Syntax among the files (SEG,
    SR, Encapsulated PDF, Secondary Capture). Stops at the first failure. A rejected or failed
    association yields only ``None``.
    """
    ae = AE(ae_title=calling_ae)
    for sop_class, syntax in _contexts(files):
        ae.add_requested_context(sop_class, syntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    statuses: list[int | None] = [None] * len(files)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return statuses
    try:
        for n, path in enumerate(files):
            try:
                response = assoc.send_c_store(path)
            except ValueError as exc:  # the destination accepted no context for this object
                log.warning("C-STORE impossible", extra=logs.fields(
                    destination=destination.key, error=str(exc)))
                break
            statuses[n] = int(response.Status) if "Status" in response else None
            if not stored(statuses[n]):
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def _contexts(files: Sequence[Path]) -> list[tuple[str, str]]:
    """The (SOP Class, Transfer Syntax) of each file, once each: the contexts to propose."""
    metas = [read_file_meta_info(path) for path in files]
    return list(dict.fromkeys((str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID))
                              for m in metas))


Sender = Callable[[Destination, Sequence[Path]], list[int | None]]


def deliver(outbox: Outbox, series_uid: str, destinations: Sequence[Destination],
            sender: Sender, attempts: int, backoff_s: float,
            sleep: Callable[[float], None] = time.sleep,
            metrics: RiskMetrics | None = None) -> list[Delivery]:
    """Send the outbox entry of ``series_uid`` to every destination.

    Up to ``attempts`` tries per destination, waiting ``backoff_s``, then twice that, and so
    on between tries. Objects a destination already acknowledged are not sent again.
    Raises :class:`DeliveryError` naming each destination that still lacks objects.
    """
    metrics = metrics if metrics is not None else RiskMetrics()
    entry = outbox.get(series_uid)
    done = outbox.delivered(series_uid)
    results: list[Delivery] = []
    failed: list[str] = []
    for destination in destinations:
        outcome = _deliver_one(outbox, entry, series_uid, destination,
                               done.get(destination.key, set()), sender, attempts, backoff_s,
                               sleep, metrics)
        results.extend(outcome)
        missing = [d for d in outcome if not d.stored]
        if missing:
            metrics.delivery_failures.inc()
            failed.append(f"{destination.key} lacks {len(missing)} of {len(outcome)} objects "
                          f"(status {_hex(missing[0].status)})")
    if failed:
        raise DeliveryError(f"not delivered after {attempts} attempts: {'; '.join(failed)}",
                            reason="delivery-failed")
    return results


def _deliver_one(outbox: Outbox, entry: Entry, series_uid: str, destination: Destination,
                 acknowledged: set[str], sender: Sender, attempts: int, backoff_s: float,
                 sleep: Callable[[float], None], metrics: RiskMetrics) -> list[Delivery]:
    status: dict[str, int | None] = {uid: SUCCESS for uid in acknowledged}
    pending = [o for o in entry.objects if o.sop_instance_uid not in acknowledged]
    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            metrics.delivery_retries.inc()
            sleep(backoff_s * 2 ** (attempt - 1))
        replies = sender(destination, [entry.path / o.file for o in pending])
        for obj, reply in zip(pending, replies, strict=True):
            status[obj.sop_instance_uid] = reply
            if stored(reply):
                outbox.mark_delivered(series_uid, destination.key, obj.sop_instance_uid)
                metrics.delivered(obj.modality)
        pending = [o for o in pending if not stored(status[o.sop_instance_uid])]
        log.info("C-STORE attempt", extra=logs.fields(
            destination=destination.key, attempt=attempt + 1, pending=len(pending)))
    return [Delivery(destination.key, o.sop_instance_uid, status.get(o.sop_instance_uid))
            for o in entry.objects]


def _hex(status: int | None) -> str:
    return "none (no association or no response)" if status is None else f"0x{status:04X}"
