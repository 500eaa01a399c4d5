"""Follow-ups of a phantom: same anatomy moved per vertebra, exact truth, lesion changes.

Seeds 4_200_000.. are used by these tests only (registrar tests: 4_100_000..).
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from phantom import Phantom, PhantomOptions, generate
from phantom.__main__ import main
from phantom.followup import FollowUp, follow_up
from phantom.options import FollowUpOptions
from spinemets import labels

BASELINE = {"spacing": (1.0, 1.0, 1.5), "matrix": 180, "levels": ("T11", "L3"), "lesions": 3}


@cache
def baseline(seed: int, **kwargs: object) -> Phantom:
    return generate(PhantomOptions(seed=seed, **{**BASELINE, **kwargs}))  # type: ignore[arg-type]


@cache
def later(seed: int, follow_seed: int, **kwargs: object) -> FollowUp:
    return follow_up(baseline(seed), FollowUpOptions(seed=follow_seed, **kwargs))  # type: ignore[arg-type]


def points(p: Phantom, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return p.ct.geometry.index_to_patient(np.argwhere(mask)[:, ::-1])


def moved(transform: list[list[float]], lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    m = np.asarray(transform)
    return np.asarray(np.asarray(lps) @ m[:3, :3].T + m[:3, 3])


def nearest(p: Phantom, lps: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """(slice, row, column) of the voxels nearest to points, -1 where outside the grid."""
    g = p.ct.geometry
    ijk = np.rint((lps - np.asarray(g.origin)) / np.asarray(g.spacing)).astype(np.int64)
    zyx: npt.NDArray[np.int64] = ijk[:, ::-1]
    zyx[~np.all((zyx >= 0) & (zyx < p.ct.array.shape), axis=1)] = -1
    return zyx


def test_each_vertebra_moves_rigidly_by_its_truth_transform() -> None:
    fu = later(4_200_001, 1, new_lesions=1)
    before, after = fu.baseline, fu.phantom
    shared = [lv for lv in labels.LEVELS if lv in before.truth["levels_in_view"]
              and lv in after.truth["levels_in_view"]]
    assert len(shared) >= 4
    rotations = []
    for level in shared:
        transform = fu.truth["levels"][level]["baseline_to_follow_up"]
        name = f"vertebra_{level}"
        source = moved(transform, points(before, before.vertebrae.mask(name)))
        target = points(after, after.vertebrae.mask(name))
        assert np.linalg.norm(source.mean(axis=0) - target.mean(axis=0)) < 0.3, level
        zyx = nearest(after, source)
        landed = after.vertebrae.array[tuple(zyx[zyx[:, 0] >= 0].T)]
        assert np.mean(landed == labels.vertebra(level).value) > 0.93, level
        rotation = np.asarray(transform)[:3, :3]
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        rotations.append(rotation)
    angles = [np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) for r in rotations]
    assert 4.5 < max(angles) < 14, angles
    relative = [np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))
                for a, b in itertools.pairwise(rotations)]
    assert max(relative) > 0.2, "the curvature change moves neighbours against each other"
    motion = fu.truth["motion"]
    assert 5.0 <= motion["rotation_deg"] <= 10.0
    assert 10.0 <= np.linalg.norm(motion["translation_mm"]) <= 20.0


def test_body_corners_are_those_of_the_baseline_body() -> None:
    fu = later(4_200_001, 1, new_lesions=1)
    for level in fu.baseline.truth["levels_in_view"][:-1]:
        corners = np.asarray(fu.truth["levels"][level]["body_corners_lps"])
        info = fu.baseline.truth["levels"][level]
        assert np.allclose(corners.mean(axis=0), info["centre_lps"], atol=0.05)
        extent = np.linalg.norm(corners[7] - corners[0])
        expected = np.linalg.norm([info["width_mm"], info["depth_mm"], info["height_mm"]])
        assert extent == pytest.approx(expected, abs=0.05)


def lesion_voxels(p: Phantom, centre: list[float]) -> int:
    """Lesion voxels within 3 mm of a point."""
    g = p.ct.geometry
    near = np.argwhere(p.lesions.array > 0)
    distance = np.linalg.norm(g.index_to_patient(near[:, ::-1]) - np.asarray(centre), axis=1)
    return int((distance < 3.0).sum())


def test_lesions_grow_shrink_resolve_and_appear_as_the_truth_says() -> None:
    fu = later(4_200_002, 2, new_lesions=2, resolved=1)
    changes = fu.truth["lesions"]
    kinds = [c["change"] for c in changes]
    assert kinds.count("resolved") == 1 and kinds.count("new") == 2
    assert set(kinds) - {"resolved", "new"} <= {"grown", "shrunk"}
    voxel_ml = [p.ct.geometry.voxel_volume_mm3 / 1000 for p in (fu.baseline, fu.phantom)]
    for change in changes:
        level = change["level"]
        transform = fu.truth["levels"][level]["baseline_to_follow_up"]
        if change["baseline"] is not None:
            assert change["baseline"]["volume_ml"] == pytest.approx(
                change["baseline"]["voxels"] * voxel_ml[0])
            where = moved(transform, change["baseline"]["centre_lps"])
            assert (lesion_voxels(fu.phantom, list(where)) > 0) == (change["change"] != "resolved")
        if change["follow_up"] is not None:
            assert change["follow_up"]["volume_ml"] == pytest.approx(
                change["follow_up"]["voxels"] * voxel_ml[1])
        if change["change"] == "new":
            back = moved(np.linalg.inv(np.asarray(transform)).tolist(),
                         change["follow_up"]["centre_lps"])
            assert lesion_voxels(fu.baseline, list(back)) == 0
            assert lesion_voxels(fu.phantom, change["follow_up"]["centre_lps"]) > 0
        if change["change"] in ("grown", "shrunk"):
            grew = change["volume_change_ml"] > 0
            assert grew == (change["change"] == "grown")
            assert change["volume_change_percent"] == pytest.approx(
                100 * change["volume_change_ml"] / change["baseline"]["volume_ml"], abs=0.01)
    total = sum(c["follow_up"]["voxels"] for c in changes if c["follow_up"])
    labelled = sum(int(np.sum(fu.phantom.lesions.array == v)) for v in fu.phantom.lesions.labels)
    assert total == labelled


def test_a_new_compression_fracture_lowers_its_body() -> None:
    coarse = baseline(4_200_003, spacing=(1.5, 1.5, 1.5), matrix=120)
    intact = follow_up(coarse, FollowUpOptions(seed=3, new_lesions=0, resolved=0))
    broken = follow_up(coarse, FollowUpOptions(seed=3, new_lesions=0, resolved=0,
                                               compression="L1", compression_fraction=0.4))
    new = broken.truth["compression"]["new"]
    assert broken.truth["compression"]["baseline"] is None and intact.truth["compression"][
        "new"] is None
    assert (new["level"], new["fraction"]) == ("L1", 0.4) and new["kind"] in ("wedge", "crush")
    volumes = [int(p.phantom.vertebrae.mask("vertebra_L1").sum()) for p in (intact, broken)]
    assert volumes[1] < 0.9 * volumes[0]
    assert np.array_equal(intact.phantom.vertebrae.mask("vertebra_L3"),
                          broken.phantom.vertebrae.mask("vertebra_L3"))
    assert broken.phantom.truth["compression"]["level"] == "L1"


def test_a_level_fractured_in_the_baseline_cannot_fracture_again() -> None:
    fractured = baseline(4_200_004, compression="L2")
    with pytest.raises(ValueError, match="already fractured"):
        follow_up(fractured, FollowUpOptions(seed=1, compression="L2"))


def test_follow_ups_are_deterministic_per_seed() -> None:
    first = later(4_200_001, 1, new_lesions=1)
    again = follow_up(baseline(4_200_001), FollowUpOptions(seed=1, new_lesions=1))
    other = later(4_200_001, 5, new_lesions=1)
    assert np.array_equal(first.phantom.ct.array, again.phantom.ct.array)
    assert first.truth == again.truth and first.phantom.truth == again.phantom.truth
    assert first.phantom.series_uid == again.phantom.series_uid != first.baseline.series_uid
    assert first.phantom.study_uid != first.baseline.study_uid
    assert other.truth["motion"] != first.truth["motion"]


@pytest.mark.parametrize("bad", [{"max_rotation_deg": 45.0}, {"max_bend": 0.9},
                                 {"compression": "C3"}, {"new_lesions": -1}])
def test_invalid_follow_up_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        FollowUpOptions(**bad)  # type: ignore[arg-type]


def test_cli_writes_a_follow_up_with_its_truth(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--seed", "4200005", "--levels", "L1", "L3", "--spacing", "2", "2", "2",
              "--matrix", "96", "--lesions", "2", "--no-nifti"]
    assert main([*common, "--out", str(tmp_path / "base")]) == 0
    assert main([*common, "--out", str(tmp_path / "later"), "--follow-up", "7",
                 "--interval-days", "90", "--new-compression", "random"]) == 0
    assert "follow-up 7 on 20240331" in capsys.readouterr().out
    first, second = (pydicom.dcmread(next((tmp_path / d / "dicom").glob("*.dcm")),
                                     stop_before_pixels=True) for d in ("base", "later"))
    assert first.PatientID == second.PatientID == "PHANTOM-4200005"
    assert (first.StudyDate, second.StudyDate) == ("20240101", "20240331")
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert second.SeriesDescription.endswith("follow-up 7")
    truth = json.loads((tmp_path / "later" / "truth" / "follow_up.json").read_text())
    assert truth["study_dates"] == ["20240101", "20240331"]
    assert truth["follow_up_seed"] == 7 and truth["compression"]["new"] is not None
    assert set(truth["levels"]) == set(labels.LEVELS)
    assert len(truth["lesions"]) >= 2
