"""Foreign label names to the catalogue: by name, display name or mapping file, never by value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_tools.label_mapping import BUILTIN, LabelMapping, channel_labels
from spinemets import labels
from spinemets.errors import ModelError

CATALOGUE_ONLY = LabelMapping()


def test_catalogue_and_display_names_map_whatever_the_channel() -> None:
    mapped = channel_labels({0: "background", 1: "L2 vertebra", 2: "vertebra_T12",
                             3: "SACRUM"}, CATALOGUE_ONLY)
    assert mapped == {"0": "background", "1": "vertebra_L2", "2": "vertebra_T12",
                      "3": "sacrum"}


def test_totalsegmentator_names_and_dropped_classes() -> None:
    mapping = LabelMapping.load("totalsegmentator")
    assert mapping.orientation == "RAS" and mapping.unmapped == "background"
    mapped = channel_labels({0: "background", 1: "liver", 2: "vertebrae_L1",
                             3: "vertebrae_C7", 4: "autochthon_left"}, mapping)
    assert mapped == {"0": "background", "1": "background", "2": "vertebra_L1",
                      "3": "background", "4": "deep_back_muscle_left"}
    with pytest.raises(ModelError, match=r"\['liver', 'vertebrae_C7'\]") as info:
        channel_labels({0: "background", 1: "liver", 2: "vertebrae_L1", 3: "vertebrae_C7"},
                       mapping, unmapped="error")
    assert info.value.reason == "unmapped-labels"


def test_spine_mets_ct_seg_names() -> None:
    mapping = LabelMapping.load("spine-mets-ct-seg")
    channels = {0: "background", **{i: f"{lv} vertebra" for i, lv in
                                    enumerate(labels.LEVELS, start=1)}}
    mapped = channel_labels(channels, mapping)
    assert [mapped[str(i)] for i in range(1, 18)] == [f"vertebra_{lv}" for lv in labels.LEVELS]
    with pytest.raises(ModelError, match="C7 vertebra"):
        channel_labels({0: "background", 1: "C7 vertebra", 2: "T1 vertebra"}, mapping)


def test_every_built_in_mapping_targets_the_catalogue() -> None:
    files = sorted(BUILTIN.glob("*.json"))
    assert [f.stem for f in files] == ["spine-mets-ct-seg", "totalsegmentator"]
    for path in files:
        assert LabelMapping.load(str(path)).labels


@pytest.mark.parametrize(("channels", "message"), [
    ({0: "background", 1: "L1 vertebra", 2: "vertebra_L1"}, r"\['vertebra_L1'\] are claimed"),
    ({0: "L1", 1: "background"}, "channel 0"),
    ({0: "background", 1: "liver"}, "match no catalogue name"),
])
def test_conflicts_are_refused(channels: dict[int, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        channel_labels(channels, CATALOGUE_ONLY)


def test_a_model_without_any_catalogue_label_is_refused() -> None:
    with pytest.raises(ModelError, match="no channel maps"):
        channel_labels({0: "background", 1: "liver"}, CATALOGUE_ONLY, unmapped="background")


def test_mapping_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"labels": {"Wirbel L1": "vertebra_L1", "Leber": None}}))
    mapped = channel_labels({0: "background", 1: "Leber", 2: "Wirbel L1"},
                            LabelMapping.load(str(path)))
    assert mapped == {"0": "background", "1": "background", "2": "vertebra_L1"}
    path.write_text(json.dumps({"labels": {"Wirbel L1": "lumbar_1"}}))
    with pytest.raises(ModelError, match="lumbar_1") as info:
        LabelMapping.load(str(path))
    assert info.value.reason == "bad-label-mapping"
    with pytest.raises(ModelError, match="neither a file nor one of spine-mets-ct-seg"):
        LabelMapping.load("absent")
