"""A mock PACS: a pynetdicom storage SCP that files what it receives, with fault injection.

For the demo and for tests that need a PACS to misbehave (refuse associations, answer with a
failure status). Tests that need a real PACS use Orthanc; this is not a replacement for it.
Received objects are written to ``<root>/<Modality>/<SOPInstanceUID>.dcm``.
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from spinemets import logs

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = 0xA700
SUCCESS = 0x0000


@dataclass
class Faults:
    """Failures to inject: the first ``reject_associations`` associations are rejected, the
    first ``fail_stores`` C-STOREs answer Out of Resources."""

    reject_associations: int = 0
    fail_stores: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        """Consume one injected failure of kind ``name``; True if one was left."""
        with self._lock:
            left = int(getattr(self, name))
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


def _is_valid_uid(uid: str) -> bool:
    return bool(uid) and UID(uid).is_valid


class MockPacs:
    """Storage SCP on ``host:port`` with AE title ``ae_title`` writing under ``root``."""

    def __init__(self, root: Path, ae_title: str = "PACS", host: str = "127.0.0.1",
                 port: int = 11113, faults: Faults | None = None) -> None:
        self.root = root
        self.faults = faults or Faults()
        self.received: list[Path] = []
        self._ae = AE(ae_title=ae_title)
        self._ae.supported_contexts = AllStoragePresentationContexts
        self._ae.add_supported_context(Verification)
        self._address = (host, port)
        self._server: ThreadedAssociationServer | None = None

    def _on_requested(self, event: Event) -> None:
        if self.faults.take("reject_associations"):
            log.info("mock PACS: rejecting association (injected fault)")
            assoc = event.assoc
            assoc.acse.send_reject(0x02, 0x01, 0x02)  # transient, service user, no reason
            assoc.is_rejected = True
            assoc.kill()

    def _on_store(self, event: Event) -> int:
        if self.faults.take("fail_stores"):
            return OUT_OF_RESOURCES
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(ds.SOPInstanceUID)
        if not _is_valid_uid(uid):
            return 0xC000
        folder = self.root / str(ds.get("Modality", "OT"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        self.received.append(path)
        log.info("mock PACS stored object", extra=logs.fields(modality=ds.get("Modality"),
                                                              sop_instance_uid=uid))
        return SUCCESS

    def start(self) -> int:
        """Start serving in background threads; returns the bound port."""
        self.root.mkdir(parents=True, exist_ok=True)
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_REQUESTED, self._on_requested)]
        server = self._ae.start_server(self._address, block=False, evt_handlers=handlers)
        assert server is not None  # block=False always returns the server
        self._server = server
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def main(argv: list[str] | None = None) -> int:
    """``python -m stack.mock_pacs --root DIR [--host H] --port N``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(".demo/pacs"))
    parser.add_argument("--ae-title", default="PACS")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=11113)
    args = parser.parse_args(argv)
    logs.configure("mock-pacs")
    pacs = MockPacs(args.root, args.ae_title, host=args.host, port=args.port)
    pacs.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        pacs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
