"""Transport wiring: the DICOM SCP (pynetdicom) and the gRPC server (DataService + health)."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from listener import scp
from listener.data_service import DataService
from listener.db import Database
from listener.metrics import ListenerMetrics
from listener.settings import Settings
from listener.spool import Spool
from spinemets import grpcutil
from spinemets.v1 import listener_pb2_grpc

#: Transfer syntaxes accepted for storage. Pixel data that cannot be decoded later quarantines
#: the series ("undecodable-pixel-data"); it is never refused at the door.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    JPEGLosslessSV1, JPEGLossless, JPEG2000Lossless, JPEG2000, RLELossless,
)
STORAGE_SOP_CLASSES = (CTImageStorage, EnhancedCTImageStorage)
VERIFICATION = UID("1.2.840.10008.1.1")


def start_dicom(settings: Settings, spool: Spool, db: Database, secret: bytes,
                metrics: ListenerMetrics) -> ThreadedAssociationServer:
    """Start the SCP in its own threads (non-blocking)."""
    ae = AE(ae_title=settings.ae_title)
    ae.add_supported_context(VERIFICATION)
    for sop_class in (*STORAGE_SOP_CLASSES, *settings.ignored_sop_classes):
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    allowlist = scp.Allowlist(settings.allowed_callers, settings.allow_any_caller)
    handlers: list[evt.EventHandlerType] = [
        (evt.EVT_REQUESTED, scp.handle_requested, [allowlist, metrics]),
        (evt.EVT_ACCEPTED, scp.handle_accepted, [metrics]),
        (evt.EVT_REJECTED, scp.handle_rejected, [metrics]),
        (evt.EVT_C_ECHO, scp.handle_echo),
        (evt.EVT_C_STORE, scp.handle_store,
         [spool, db, secret, tuple(settings.ignored_sop_classes), metrics]),
    ]
    server = ae.start_server((settings.host, settings.port), block=False, evt_handlers=handlers)
    assert server is not None
    return server


def grpc_server(settings: Settings, db: Database, spool: Spool) -> grpcutil.Server:
    """The gRPC server with DataService; NOT_SERVING until :meth:`set_serving` is called."""
    server = grpcutil.Server("listener", f"{settings.grpc_host}:{settings.grpc_port}")
    server.set_serving(False)
    server.add(listener_pb2_grpc.add_DataServiceServicer_to_server, DataService(db, spool))
    return server
