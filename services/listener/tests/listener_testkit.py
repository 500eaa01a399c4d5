"""Test kit of the listener: synthetic CT series, a real DICOM SCU, fake downstream gRPC services
(real servers with fault injection), listener settings for tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE

from listener.settings import Settings
from spinemets import grpcutil, labelmaps, volumes
from spinemets.labels import vertebra
from spinemets.v1 import (
    listener_pb2_grpc,
    longitudinal_pb2,
    registrar_pb2,
    registrar_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
    segmenter_pb2,
    segmenter_pb2_grpc,
    volume_pb2,
)

SENDER = "STORESCU"
PSEUDONYM_KEY = b"test-pseudonym-key"


# --- synthetic CT ---------------------------------------------------------------------------

def ct_series(slices: int = 8, rows: int = 12, columns: int = 10, thickness: float = 2.5,
              pixel_spacing: tuple[float, float] = (0.7, 0.8),
              origin: tuple[float, float, float] = (-40.0, -30.0, 100.0),
              patient_name: str = "Test^Patient", patient_id: str = "TP-0001",
              description: str = "CT spine", study_uid: str | None = None) -> list[Dataset]:
    """Axial CT slices, head to feet, HU = (10*slice + row - column) mod 1500 - 984."""
    study_uid = study_uid or generate_uid()
    series_uid, frame_of_reference = generate_uid(), generate_uid()
    datasets = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SOPClassUID = CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = patient_name, patient_id, "TEST"
        ds.StudyDate, ds.StudyTime, ds.Modality = "20240102", "101500", "CT"
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = description, 3, k + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] - k * thickness]
        ds.SliceThickness, ds.PixelSpacing = thickness, list(pixel_spacing)
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        r, c = np.mgrid[0:rows, 0:columns]
        ds.PixelData = ((10 * k + r - c) % 1500 + 40).astype("<u2").tobytes()
        datasets.append(ds)
    return datasets


def enhanced_ct(frames: int = 6, rows: int = 12, columns: int = 10) -> Dataset:
    """One Enhanced CT instance holding the frames of ``ct_series`` (same geometry and pixels);
    geometry and rescale in the functional groups, as the Enhanced CT IOD puts them."""
    slices = ct_series(slices=frames, rows=rows, columns=columns)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                    "PatientName", "PatientID", "IssuerOfPatientID", "StudyDate", "StudyTime",
                    "Modality", "SeriesDescription", "SeriesNumber", "Rows", "Columns",
                    "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation"):
        setattr(ds, keyword, getattr(slices[0], keyword))
    ds.InstanceNumber, ds.NumberOfFrames = 1, frames
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = slices[0].PixelSpacing, 2.5
    plane = Dataset()
    plane.ImageOrientationPatient = slices[0].ImageOrientationPatient
    rescale = Dataset()
    rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = -1024, 1, "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
    shared.PixelValueTransformationSequence = [rescale]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for frame in slices:
        position = Dataset()
        position.ImagePositionPatient = frame.ImagePositionPatient
        item = Dataset()
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = b"".join(frame.PixelData for frame in slices)
    return ds


def expected_hu(datasets: Sequence[Dataset]) -> np.ndarray:
    """The HU array a correct assembly of ``ct_series`` output gives, sorted along +z."""
    ordered = sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array.astype(np.int32) - 1024 for ds in ordered]).astype(np.int16)


def expected_enhanced_hu(ds: Dataset) -> np.ndarray:
    """The HU array of ``enhanced_ct`` output sorted along +z (its frames run head to feet)."""
    return (ds.pixel_array.astype(np.int32) - 1024)[::-1].astype(np.int16)


def write_files(datasets: Sequence[Dataset], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send(datasets: Sequence[Dataset], port: int, ae_title: str = SENDER,
         transfer_syntax: str = ExplicitVRLittleEndian,
         after_each: Callable[[Dataset, int], None] | None = None) -> list[int]:
    """C-STORE with pynetdicom as a real SCU; the statuses in order."""
    ae = AE(ae_title=ae_title)
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEMETS")
    assert assoc.is_established, "association not established"
    statuses = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status))
            if after_each is not None:
                after_each(ds, int(status.Status))
    finally:
        assoc.release()
    return statuses


def reject_reason(port: int, ae_title: str) -> tuple[int, int, int] | None:
    """(result, source, diagnostic) of an A-ASSOCIATE-RJ, or None if accepted."""
    ae = AE(ae_title=ae_title)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINEMETS")
    if assoc.is_established:
        assoc.release()
        return None
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert rj is not None
    return (int(rj.result or 0), int(rj.result_source or 0), int(rj.diagnostic or 0))


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- fake downstream services ---------------------------------------------------------------

class Faults:
    """Per-method queue of status codes to fail with before answering normally."""

    def __init__(self) -> None:
        self.queued: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.calls: dict[str, list[float]] = {}
        self.metadata: dict[str, list[dict[str, str]]] = {}
        self.delay_s: dict[str, float] = {}

    def fail(self, method: str, code: grpc.StatusCode, times: int = 1,
             details: str = "test-fault: injected") -> None:
        self.queued.setdefault(method, []).extend([(code, details)] * times)

    def count(self, method: str) -> int:
        return len(self.calls.get(method, []))

    def clear(self) -> None:
        self.queued.clear()

    def enter(self, method: str, context: grpc.ServicerContext) -> None:
        """Record the call, wait if a delay is set, fail if a fault is queued."""
        self.calls.setdefault(method, []).append(time.monotonic())
        self.metadata.setdefault(method, []).append(
            {str(k): str(v) for k, v in context.invocation_metadata()})
        time.sleep(self.delay_s.get(method, 0.0))
        queue = self.queued.get(method)
        if queue:
            code, details = queue.pop(0)
            context.abort(code, details)


class FakeSegmenter(segmenter_pb2_grpc.SegmenterServiceServicer):
    """Fetches the volume from the listener's DataService and labels voxels above -900 HU L1."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.requests: list[segmenter_pb2.SegmentRequest] = []

    def Segment(self, request: segmenter_pb2.SegmentRequest,  # noqa: N802
                context: grpc.ServicerContext) -> Iterator[volume_pb2.LabelMapChunk]:
        self.faults.enter("Segment", context)
        self.requests.append(request)
        with grpcutil.channel(request.data_service) as ch:
            stub = listener_pb2_grpc.DataServiceStub(ch)  # type: ignore[no-untyped-call]
            volume = volumes.from_chunks(stub.StreamVolume(request.series, timeout=10))
        hu, geometry = volume.array, volume.geometry
        label = vertebra("L1")
        array = np.where(hu > -900, label.value, 0).astype(np.uint8)
        yield from labelmaps.to_chunks(labelmaps.LabelMap(
            array, geometry, {label.value: label.name}, "fake-vertebrae", "1"))


class FakeRegistrar(registrar_pb2_grpc.RegistrarServiceServicer):
    """Remembers studies per patient key; the earliest one is the prior of later ones, with
    a comparison (L1, Dice 0.95) when the request names a data service."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.history: dict[str, list[registrar_pb2.PairRequest]] = {}

    def Pair(self, request: registrar_pb2.PairRequest,  # noqa: N802
             context: grpc.ServicerContext) -> registrar_pb2.PairResponse:
        self.faults.enter("Pair", context)
        earlier = [r for r in self.history.get(request.patient_key, [])
                   if r.series.study_instance_uid != request.series.study_instance_uid]
        self.history.setdefault(request.patient_key, []).append(request)
        if not earlier:
            return registrar_pb2.PairResponse(has_prior=False)
        reply = registrar_pb2.PairResponse(has_prior=True, prior=earlier[0].series,
                                           prior_study_date=earlier[0].study_date)
        if request.data_service:
            reply.longitudinal.CopyFrom(longitudinal_pb2.Longitudinal(
                prior=earlier[0].series, registrations=[longitudinal_pb2.VertebraRegistration(
                    level="L1", prior_to_current=np.eye(4).ravel().tolist(), dice=0.95,
                    hd95_mm=1.0, refined=True)]))
        return reply


class FakeRisk(risk_pb2_grpc.RiskServiceServicer):
    """Counts the L1 voxels of the streamed label maps; delivers with status 0."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.headers: list[risk_pb2.AssessHeader] = []
        self.label_maps: list[list[labelmaps.LabelMap]] = []
        self.delivered: list[volume_pb2.SeriesRef] = []
        self.delivery_statuses: list[int] = []  # C-STORE statuses to report before success

    def Assess(self, request_iterator: Iterator[risk_pb2.AssessChunk],  # noqa: N802
               context: grpc.ServicerContext) -> risk_pb2.AssessResponse:
        self.faults.enter("Assess", context)
        chunks = list(request_iterator)
        header = chunks[0].header
        maps = labelmaps.from_chunks(c.label_map for c in chunks[1:])
        assert len(maps) == header.label_map_count
        self.headers.append(header)
        self.label_maps.append(maps)
        voxels = int(maps[0].mask("vertebra_L1").sum())
        return risk_pb2.AssessResponse(vertebrae=[risk_pb2.VertebraMeasurement(
            level="L1", volume_ml=voxels * maps[0].geometry.voxel_volume_mm3 / 1000)])

    def Deliver(self, request: volume_pb2.SeriesRef,  # noqa: N802
                context: grpc.ServicerContext) -> risk_pb2.DeliverResponse:
        self.faults.enter("Deliver", context)
        status = self.delivery_statuses.pop(0) if self.delivery_statuses else 0
        if status == 0:
            self.delivered.append(request)
        return risk_pb2.DeliverResponse(deliveries=[risk_pb2.Delivery(
            destination="PACS", sop_instance_uid="1.2.3", status=status)])


class Downstream:
    """Segmenter, registrar and risk fakes on one real gRPC server."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.segmenter = FakeSegmenter(self.faults)
        self.registrar = FakeRegistrar(self.faults)
        self.risk = FakeRisk(self.faults)
        self.server = grpcutil.Server("fake-downstream", "127.0.0.1:0")
        self.server.add(segmenter_pb2_grpc.add_SegmenterServiceServicer_to_server, self.segmenter)
        self.server.add(registrar_pb2_grpc.add_RegistrarServiceServicer_to_server,
                        self.registrar)
        self.server.add(risk_pb2_grpc.add_RiskServiceServicer_to_server, self.risk)
        self.server.start()
        self.address = f"127.0.0.1:{self.server.port}"


def listener_settings(state_dir: Path, downstream_address: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": 0, "grpc_host": "127.0.0.1", "grpc_port": 0,
        "metrics_port": 0,
        "allowed_callers": [{"ae_title": SENDER}], "state_dir": state_dir,
        "completion_idle_s": 0.4, "poll_interval_s": 0.05, "drain_s": 5.0,
        "rules": [{"name": "ct-spine", "min_slices": 5}],
        "segmenter": downstream_address, "registrar": downstream_address,
        "risk": downstream_address,
        "retry": {"max_attempts": 4, "base_delay_s": 0.05, "max_delay_s": 0.2, "factor": 2.0},
        "timeouts": {"segment_s": 20, "pair_s": 5, "assess_s": 10, "deliver_s": 5},
    }
    values.update(overrides)
    return Settings.model_validate(values)
