"""DataService over gRPC: volumes equal to assemble_ct of the files, instances byte-identical."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pydicom
import pytest
from listener_testkit import PSEUDONYM_KEY, ct_series, expected_hu, send, wait_for

from listener.app import Listener
from listener.db import SeriesState
from spinemets import grpcutil
from spinemets.geometry import assemble_ct
from spinemets.phi import patient_key
from spinemets.v1 import listener_pb2_grpc, volume_pb2

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]


@pytest.fixture
def stub_for() -> Iterator[Callable[[Listener], listener_pb2_grpc.DataServiceStub]]:
    channels: list[grpc.Channel] = []

    def make(app: Listener) -> listener_pb2_grpc.DataServiceStub:
        channels.append(grpcutil.channel(app.data_service_address))
        return listener_pb2_grpc.DataServiceStub(channels[-1])  # type: ignore[no-untyped-call]

    yield make
    for ch in channels:
        ch.close()


def ref(uid_source: pydicom.Dataset) -> volume_pb2.SeriesRef:
    return volume_pb2.SeriesRef(study_instance_uid=uid_source.StudyInstanceUID,
                                series_instance_uid=uid_source.SeriesInstanceUID)


def test_health_is_serving(start_listener: StartListener) -> None:
    app = start_listener()
    assert grpcutil.wait_healthy(app.data_service_address, timeout=5)


def test_volume_and_instances_match_the_spool(
        start_listener: StartListener,
        stub_for: Callable[[Listener], listener_pb2_grpc.DataServiceStub]) -> None:
    # big slices so that one file spans several chunks; no rule matches, so no cache exists
    app = start_listener(rules=[{"name": "never", "min_slices": 100}])
    series = ct_series(slices=4, rows=730, columns=740, patient_id="PID-77")
    send(series, app.dicom_port)
    uid = series[0].SeriesInstanceUID
    wait_for(lambda: (s := app.db.series(uid)) is not None and s.state == SeriesState.SKIPPED,
             what="series settled")
    stub = stub_for(app)
    files = app.spool.instance_paths(series[0].StudyInstanceUID, uid)

    chunks = list(stub.StreamVolume(ref(series[0]), timeout=30))
    header = chunks[0].header
    geometry = grpcutil.geometry_from_proto(header.geometry)
    array = grpcutil.array_from_chunks([c.data for c in chunks], header.dtype, geometry)
    reference = assemble_ct([pydicom.dcmread(p) for p in files])
    np.testing.assert_array_equal(array, reference.array)
    np.testing.assert_array_equal(array, expected_hu(series))
    assert geometry == reference.geometry
    np.testing.assert_allclose(geometry.direction, reference.geometry.direction)
    assert tuple(header.slice_instance_uids) == reference.slice_instance_uids
    assert header.sop_class_uid == reference.sop_class_uid and header.dtype == "<i2"
    assert app.spool.volume_path(series[0].StudyInstanceUID, uid).exists()  # cached now

    received: dict[str, bytes] = {}
    current = ""
    for chunk in stub.StreamInstances(ref(series[0]), timeout=30):
        if chunk.sop_instance_uid:
            current = chunk.sop_instance_uid
            assert current not in received
            received[current] = b""
        received[current] += chunk.data
        if chunk.last:
            current = ""
    assert received == {p.stem: p.read_bytes() for p in files}
    assert all(len(data) > grpcutil.CHUNK_BYTES for data in received.values())

    info = stub.GetSeriesInfo(ref(series[0]), timeout=5)
    assert info.patient_key == patient_key("PID-77", "TEST", PSEUDONYM_KEY)
    assert "PID-77" not in str(info) and "Test^Patient" not in str(info)
    assert (info.modality, info.study_date, info.study_time) == ("CT", "20240102", "101500")
    assert info.number_of_instances == 4 and info.series_description == "CT spine"
    assert info.sop_class_uid == series[0].SOPClassUID


def test_unknown_bad_and_quarantined_series_are_errors(
        start_listener: StartListener,
        stub_for: Callable[[Listener], listener_pb2_grpc.DataServiceStub]) -> None:
    app = start_listener()
    stub = stub_for(app)
    unknown = volume_pb2.SeriesRef(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetSeriesInfo(unknown, timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    traversal = volume_pb2.SeriesRef(study_instance_uid="1.2", series_instance_uid="../../x")
    with pytest.raises(grpc.RpcError) as invalid:
        list(stub.StreamInstances(traversal, timeout=5))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpcutil.error_reason(invalid.value) == "invalid-uid"

    bad = ct_series(slices=6)
    del bad[3]
    send(bad, app.dicom_port)
    wait_for(lambda: (s := app.db.series(bad[0].SeriesInstanceUID)) is not None
             and s.state == SeriesState.QUARANTINED, what="quarantined")
    with pytest.raises(grpc.RpcError) as quarantined:
        list(stub.StreamVolume(ref(bad[0]), timeout=5))
    assert quarantined.value.code() == grpc.StatusCode.NOT_FOUND
