"""Properties of generated phantoms: determinism, anatomy, HU values, lesions, compression."""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from phantom import Phantom, PhantomOptions, Tissue, anatomy, generate, skeleton
from phantom.view import resolve
from spinemets import labels

CANONICAL = {"max_rotation_deg": 0.0, "max_translation_mm": 0.0}


@cache
def phantom(**kwargs: object) -> Phantom:
    return generate(PhantomOptions(**kwargs))  # type: ignore[arg-type]


def small(seed: int, **kwargs: object) -> Phantom:
    return phantom(seed=seed, spacing=(3.0, 3.0, 3.0), matrix=100, **kwargs)


def full_spine(seed: int, **kwargs: object) -> Phantom:
    return phantom(seed=seed, spacing=(3.0, 3.0, 3.0), matrix=110, full_spine=True, **kwargs)


def voxel_index(p: Phantom, lps: npt.ArrayLike) -> tuple[int, int, int]:
    """(slice, row, column) of the voxel nearest to a patient point."""
    g = p.ct.geometry
    ijk = np.rint((np.asarray(lps) - np.asarray(g.origin)) / np.asarray(g.spacing)).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])


def test_same_seed_same_phantom_other_seed_other_phantom() -> None:
    first = generate(PhantomOptions(seed=11, spacing=(3.0, 3.0, 3.0), matrix=90))
    again = generate(PhantomOptions(seed=11, spacing=(3.0, 3.0, 3.0), matrix=90))
    other = generate(PhantomOptions(seed=12, spacing=(3.0, 3.0, 3.0), matrix=90))
    assert np.array_equal(first.ct.array, again.ct.array)
    for name in ("vertebrae", "muscles", "lesions"):
        assert np.array_equal(getattr(first, name).array, getattr(again, name).array)
    assert first.truth == again.truth
    assert first.ct.slice_instance_uids == again.ct.slice_instance_uids
    assert first.truth["levels"] != other.truth["levels"]
    assert (first.ct.array.shape != other.ct.array.shape
            or not np.array_equal(first.ct.array, other.ct.array))


def test_anatomy_does_not_depend_on_the_grid() -> None:
    coarse = phantom(seed=4, spacing=(3.0, 3.0, 3.0), matrix=100, levels=("T11", "L3"))
    fine = phantom(seed=4, spacing=(1.5, 1.5, 1.5), matrix=200, levels=("T11", "L3"))
    assert coarse.truth["levels"] == fine.truth["levels"]
    for level in ("T12", "L1", "L2"):
        centroids = []
        for p in (coarse, fine):
            zyx = np.argwhere(p.vertebrae.mask(f"vertebra_{level}")).mean(axis=0)
            centroids.append(p.ct.geometry.index_to_patient(zyx[::-1]))
        assert np.linalg.norm(centroids[0] - centroids[1]) < 1.5


@pytest.mark.parametrize("seed", [1, 2])
def test_full_spine_has_every_level_in_cranio_caudal_order(seed: int) -> None:
    p = full_spine(seed)
    assert p.truth["levels_in_view"] == [*labels.LEVELS, "sacrum"]
    assert p.truth["levels_partly_in_view"] == []
    z = []
    for level in labels.LEVELS:
        zyx = np.argwhere(p.vertebrae.mask(f"vertebra_{level}")).mean(axis=0)
        z.append(p.ct.geometry.index_to_patient(zyx[::-1])[2])
    assert all(np.diff(z) < 0)
    sacrum = np.argwhere(p.vertebrae.mask("sacrum")).mean(axis=0)
    assert p.ct.geometry.index_to_patient(sacrum[::-1])[2] < z[-1]
    assert set(p.vertebrae.labels) == {*range(8, 25), 26}
    assert p.vertebrae.model_name == "phantom-truth"


def test_levels_grow_caudally() -> None:
    p = full_spine(3)
    volumes = [int(p.vertebrae.mask(f"vertebra_{lv}").sum()) for lv in labels.LEVELS]
    assert volumes[-1] > 2.5 * volumes[0]
    heights = [p.truth["levels"][lv]["height_mm"] for lv in labels.LEVELS]
    assert 13 <= heights[0] <= 17 and 24 <= heights[-1] <= 30


def test_ribs_join_thoracic_levels_only() -> None:
    p = full_spine(5, **CANONICAL)
    assert p.truth["ribs"] == list(labels.LEVELS[:12])
    rib = p.tissues == Tissue.RIB
    near = ndimage.generate_binary_structure(3, 1)
    for level in labels.LEVELS:
        grown = ndimage.binary_dilation(p.vertebrae.mask(f"vertebra_{level}"), near,
                                        iterations=2)
        touching = int((grown & rib).sum())
        assert (touching > 0) == level.startswith("T"), level


@pytest.mark.parametrize("seed", [105, 112, 116])
def test_bone_stays_inside_the_body(seed: int) -> None:
    """No bone (spinous processes, ribs, iliac wings) pokes through the skin."""
    p = full_spine(seed)
    bone = np.isin(p.tissues, [Tissue.CORTEX, Tissue.TRABECULAR, Tissue.RIB])
    outside = ndimage.binary_dilation(p.tissues == Tissue.AIR)
    assert not (bone & outside).any()


def test_muscles_left_right_and_psoas_only_lumbar() -> None:
    p = full_spine(6, **CANONICAL)
    names = set(p.muscles.labels.values())
    assert names == {f"{m}_{s}" for m in ("deep_back_muscle", "psoas_major", "quadratus_lumborum")
                     for s in ("left", "right")}
    g = p.ct.geometry
    for side, sign in (("left", 1), ("right", -1)):
        deep = np.argwhere(p.muscles.mask(f"deep_back_muscle_{side}"))
        x = g.index_to_patient(deep[:, ::-1])[:, 0]
        assert np.sign(np.median(x) - p.truth["pose"]["pivot_lps"][0]) == sign
    psoas = np.argwhere(p.muscles.mask("psoas_major_left"))
    z_psoas = g.index_to_patient(psoas[:, ::-1])[:, 2]
    assert z_psoas.max() < p.truth["levels"]["T11"]["centre_lps"][2]


def hu_by_tissue(p: Phantom, tissue: Tissue, erode: int = 0) -> npt.NDArray[np.int16]:
    mask = p.tissues == tissue
    if erode:
        mask = ndimage.binary_erosion(mask, iterations=erode)
    values: npt.NDArray[np.int16] = p.ct.array[mask]
    return values


def test_hu_of_each_tissue_without_noise() -> None:
    """On a fine grid without blur and noise, each tissue shows its nominal HU."""
    coarse = small(8, **CANONICAL, levels=("T11", "L2"))
    centre = coarse.truth["levels"]["L1"]["centre_lps"]
    p = phantom(seed=8, **CANONICAL, levels=("T11", "L2"), spacing=(0.4, 0.4, 0.4),
                size=(200, 200, 60), centre=tuple(centre), noise_sigma=0.0, psf_sigma_mm=0.0)
    expected = {Tissue.CORTEX: (700, 1000), Tissue.TRABECULAR: (150, 300),
                Tissue.DISC: (80, 100), Tissue.MUSCLE: (40, 60), Tissue.FAT: (-110, -90),
                Tissue.CSF: (15, 35)}
    for tissue, (low, high) in expected.items():
        values = hu_by_tissue(p, tissue)
        assert values.size > 100, tissue
        assert low <= np.median(values) <= high, tissue


def test_hu_of_each_tissue_with_noise() -> None:
    p = phantom(seed=9, spacing=(2.0, 2.0, 2.0), levels=("T8", "L2"))
    sigma = p.truth["noise_sigma_hu"]
    assert 10 <= sigma <= 25
    expected = {Tissue.AIR: (-1010, -990), Tissue.LUNG: (-880, -820),
                Tissue.FAT: (-112, -88), Tissue.SOFT: (33, 57), Tissue.MUSCLE: (38, 62),
                Tissue.TRABECULAR: (145, 305)}
    for tissue, (low, high) in expected.items():
        values = hu_by_tissue(p, tissue, erode=2).astype(float)
        assert values.size > 50, tissue
        assert low <= values.mean() <= high, tissue
    air = hu_by_tissue(p, Tissue.AIR, erode=3).astype(float)
    assert abs(np.std(air[air > -1024]) - sigma) < 0.25 * sigma


def test_lesions_inside_their_vertebra_with_their_volume_and_hu() -> None:
    p = phantom(seed=21, spacing=(1.0, 1.0, 1.0), matrix=140, levels=("T12", "L4"), lesions=4,
                noise_sigma=0.0, psf_sigma_mm=0.0, **CANONICAL)
    lesions = p.truth["lesions"]
    assert len(lesions) == 4
    assert len({les["level"] for les in lesions}) == 4
    voxel_ml = p.ct.geometry.voxel_volume_mm3 / 1000
    for les in lesions:
        host = p.vertebrae.array == labels.vertebra(les["level"]).value
        mask = (p.lesions.array == les["value"]) & host
        assert les["voxels"] == int(mask.sum()) > 0
        assert les["volume_ml"] == pytest.approx(mask.sum() * voxel_ml, abs=1e-4)
        nominal = np.pi / 6 * les["diameter_mm"] ** 3 / 1000
        assert 0.3 * nominal < les["volume_ml"] < 1.6 * nominal
        hu = np.median(p.ct.array[ndimage.binary_erosion(mask)])
        if les["type"] == "lytic":
            assert -100 <= hu <= 50
        elif les["type"] == "blastic":
            assert 600 <= hu <= 1200
        assert voxel_index(p, les["centre_lps"]) and host[voxel_index(p, les["centre_lps"])]
    assert np.all(p.vertebrae.array[p.lesions.array > 0] > 0)


def test_posterior_lesions_sit_in_the_pedicles() -> None:
    p = phantom(seed=0, spacing=(1.0, 1.0, 1.0), matrix=140, levels=("T10", "L5"), lesions=8,
                posterior_lesions=True, **CANONICAL)
    pedicle = [les for les in p.truth["lesions"] if les["site"] == "pedicle"]
    assert pedicle
    for les in pedicle:
        level = p.truth["levels"][les["level"]]
        offset = np.asarray(les["centre_lps"]) - np.asarray(level["centre_lps"])
        assert abs(offset[0]) > 7 and offset[1] > level["depth_mm"] / 4
        assert les["voxels"] > 0


def body_height(p: Phantom, level: str, forward: float) -> float:
    """Label extent along the body axis through a point ``forward`` x half depth in front of
    the centre (nearest-neighbour samples every 0.05 mm)."""
    info = p.truth["levels"][level]
    axis = np.asarray(info["axis_lps"])
    lateral = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    posterior = np.cross(axis, lateral / np.linalg.norm(lateral))
    start = np.asarray(info["centre_lps"]) - forward * info["depth_mm"] / 2 * posterior
    t = np.arange(-20, 20, 0.05)
    points = start[None, :] + t[:, None] * axis[None, :]
    g = p.ct.geometry
    ijk = np.rint((points - np.asarray(g.origin)) / np.asarray(g.spacing)).astype(int)
    values = p.vertebrae.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    return float((values == labels.vertebra(level).value).sum() * 0.05)


@pytest.mark.parametrize(("wedge", "forward"), [(False, 0.0), (True, 0.7)])
def test_compression_reduces_height_by_the_fraction(wedge: bool, forward: float) -> None:
    common = {"seed": 31, **CANONICAL, "levels": ("L1", "L3"), "spacing": (0.4, 0.4, 0.4),
              "size": (140, 140, 130), "noise_sigma": 0.0, "psf_sigma_mm": 0.0}
    coarse = small(31, **CANONICAL, levels=("L1", "L3"))
    centre = tuple(coarse.truth["levels"]["L2"]["centre_lps"])
    intact = phantom(**common, centre=centre)
    broken = phantom(**common, centre=centre, compression="L2", compression_fraction=0.4,
                     compression_wedge=wedge)
    assert broken.truth["compression"]["kind"] == ("wedge" if wedge else "crush")
    before, after = body_height(intact, "L2", forward), body_height(broken, "L2", forward)
    assert before > 20
    assert abs((before - after) / before - 0.4) < 0.05
    volume = [int(p.vertebrae.mask("vertebra_L2").sum()) for p in (intact, broken)]
    assert volume[1] < volume[0]
    if wedge:
        assert abs(body_height(broken, "L2", -0.7) - body_height(intact, "L2", -0.7)) < 1.0
    assert np.array_equal(intact.vertebrae.mask("vertebra_L1"),
                          broken.vertebrae.mask("vertebra_L1"))


def test_random_view_covers_at_least_six_units() -> None:
    for seed in range(40, 46):
        options = PhantomOptions(seed=seed, spacing=(4.0, 4.0, 4.0), matrix=80)
        p = generate(options)
        assert len(p.truth["levels_in_view"]) >= 6, seed
        assert max(abs(a) for a in p.truth["pose"]["rotation_deg"]) <= 8.0


def test_default_acquisition_is_clinical() -> None:
    options = PhantomOptions(seed=3, levels=("L1", "L2"))
    anat = anatomy.build(3)
    solids = [skeleton.vertebra(anat, lv) for lv in anat.levels] + [skeleton.sacrum(anat)[0]]
    view = resolve(options, anat, solids)
    assert 0.6 <= view.grid.spacing[0] == view.grid.spacing[1] <= 1.0
    assert view.grid.spacing[2] in (1.0, 1.25, 2.0, 2.5, 3.0)
    assert 256 <= view.grid.shape[2] == view.grid.shape[1] <= 512


@pytest.mark.parametrize("bad", [{"levels": ("L2", "T1")}, {"levels": ("T1", "C3")},
                                 {"compression": "C5"}, {"spacing": (0.0, 1.0, 1.0)},
                                 {"lesion_kinds": ("benign",)}])
def test_invalid_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PhantomOptions(**bad)  # type: ignore[arg-type]
