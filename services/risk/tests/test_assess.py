"""Assess end to end (without transport): outbox contents, deterministic UIDs, edge cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from risk.assess import Assessment, assess
from risk.outbox import Outbox
from risk.settings import Settings
from spinemets.errors import GeometryError, InputError
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def run(outbox: Outbox, volume: Volume, headers: list[Dataset], maps: list[LabelMap]
        ) -> Assessment:
    first = headers[0]
    return assess(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), volume, headers,
                  maps, Settings(), outbox)


def uids(result: Assessment) -> list[tuple[str, str]]:
    return [(o.sop_instance_uid, o.series_instance_uid) for o in result.objects]


def test_outbox_holds_seg_then_sr_and_the_measurements(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    outbox = Outbox(tmp_path)
    result = run(outbox, volume, headers, [label_map])
    assert [(o.modality, o.sop_class_uid) for o in result.objects] == [
        ("SEG", SEG_STORAGE), ("SR", COMPREHENSIVE_3D_SR_STORAGE),
        ("DOC", ENCAPSULATED_PDF_STORAGE), ("OT", SECONDARY_CAPTURE_STORAGE)]
    entry = outbox.get(str(headers[0].SeriesInstanceUID))
    assert sorted(p.name for p in entry.path.iterdir()) == [
        "doc.dcm", "measurements.json", "ot.dcm", "seg.dcm", "sr.dcm"]
    for obj in entry.objects:
        ds = dcmread(entry.path / obj.file)
        assert (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.Modality) == (
            obj.sop_instance_uid, obj.series_instance_uid, obj.modality)
    record = json.loads((entry.path / "measurements.json").read_text())
    assert [(v["level"], v["segment_number"]) for v in record["vertebrae"]] == [
        ("L1", 1), ("L2", 2), ("L3", 3)]
    assert [v["volume_ml"] for v in record["vertebrae"]] == [m.volume_ml
                                                             for m in result.vertebrae]
    assert record["model"] == {"name": "vertebrae", "version": "1", "demo": True}


def test_uids_are_the_same_on_rerun_and_change_with_the_model_version(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    outbox = Outbox(tmp_path)
    first = run(outbox, volume, headers, [label_map])
    series_uid = str(headers[0].SeriesInstanceUID)
    outbox.mark_delivered(series_uid, "PACS@127.0.0.1:11113", first.objects[0].sop_instance_uid)
    again = run(outbox, volume, headers, [label_map])
    assert uids(again) == uids(first)
    assert outbox.delivered(series_uid) == {}  # new content: to be delivered again
    other = run(Outbox(tmp_path / "other"), volume, headers,
                [dataclasses.replace(label_map, model_version="2")])
    assert len({u for pair in uids(first) + uids(other) for u in pair}) == 16
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_label_map_off_the_ct_grid_is_refused(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    shifted = dataclasses.replace(label_map, geometry=dataclasses.replace(
        label_map.geometry, origin=(0.0, 0.0, 1.0)))
    with pytest.raises(GeometryError, match="same grid"):
        run(Outbox(tmp_path), volume, headers, [shifted])


def test_no_vertebra_found_writes_no_object(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    empty = dataclasses.replace(label_map, array=np.zeros_like(label_map.array))
    outbox = Outbox(tmp_path)
    for maps in ([empty], [dataclasses.replace(empty, labels={})], []):
        result = run(outbox, volume, headers, maps)
        assert result == Assessment((), ())
        entry = outbox.get(str(headers[0].SeriesInstanceUID))
        assert entry.objects == ()
        assert sorted(p.name for p in entry.path.iterdir()) == ["measurements.json"]


def test_two_label_maps_with_vertebrae_are_ambiguous(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    with pytest.raises(InputError, match="expected one"):
        run(Outbox(tmp_path), volume, headers, [label_map, label_map])


def test_a_clinical_model_carries_no_demo_disclaimer(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    result = run(Outbox(tmp_path), volume, headers,
                 [dataclasses.replace(label_map, demo=False)])
    entry_path = tmp_path / str(headers[0].SeriesInstanceUID)
    seg = dcmread(entry_path / "seg.dcm")
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "vertebrae"
    assert "DEMO" not in seg.SeriesDescription
    assert len(result.objects) == 4
