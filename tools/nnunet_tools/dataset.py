"""``export-nnunet-dataset``: synthetic spine phantoms as an nnU-Net v2 raw dataset.

Writes ``<out>/DatasetXXX_Name/`` with ``imagesTr/<case>_0000.nii.gz`` (CT, HU, int16),
``labelsTr/<case>.nii.gz`` and ``dataset.json``, so that ``nnUNetv2_plan_and_preprocess`` and
``nnUNetv2_train`` run on it unchanged. Channel ``CT`` selects nnU-Net's ``CTNormalization``.

Images are stored in a model orientation's canonical array order (:mod:`segmenter.orientation`,
LPS by default) with their true direction cosines, so nnU-Net (which never reorients) trains on
exactly the arrays the segmenter feeds an imported model. Labels are the catalogue entries of
the chosen truth maps, numbered 1.. in catalogue order and named by catalogue name in
``dataset.json``: ``import-nnunet`` maps them back by name. Where maps overlap, later ones win
(lesions over vertebrae).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk  # noqa: N813 - the conventional alias

from phantom.generator import Phantom, generate
from phantom.options import PhantomOptions
from segmenter.orientation import Reorientation
from segmenter.spec import BACKGROUND
from spinemets import labels
from spinemets.geometry import Geometry

log = logging.getLogger(__name__)

#: Truth maps of a phantom and the catalogue groups each holds.
MAPS: dict[str, tuple[labels.Group, ...]] = {
    "vertebrae": (labels.Group.VERTEBRA, labels.Group.OTHER_BONE),
    "muscles": (labels.Group.MUSCLE,),
    "lesions": (labels.Group.LESION,),
}
FILE_ENDING = ".nii.gz"


def label_names(maps: Sequence[str]) -> list[str]:
    """Catalogue names of the chosen maps' labels, in catalogue order (label i + 1)."""
    groups = {g for m in maps for g in MAPS[m]}
    return [label.name for label in labels.CATALOGUE if label.group in groups]


def dataset_folder(out: Path, dataset_id: int, name: str) -> Path:
    """nnU-Net's folder name for a dataset: ``DatasetXXX_Name``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be 1..999, got {dataset_id}")
    return out / f"Dataset{dataset_id:03d}_{name}"


def _canonical_image(array: npt.NDArray[Any], geometry: Geometry,
                     reorientation: Reorientation) -> sitk.Image:
    """``array`` in canonical order as an image with its true position and directions."""
    direction = np.asarray(geometry.direction, dtype=np.float64)
    source_dirs = (direction[:, 2], direction[:, 1], direction[:, 0])  # slice, row, column
    size = (geometry.size[2], geometry.size[1], geometry.size[0])
    first = [0, 0, 0]  # source [slice, row, column] index of canonical voxel (0, 0, 0)
    axis_dirs = []
    for axis, flip in zip(reorientation.axes, reorientation.flips, strict=True):
        first[axis] = size[axis] - 1 if flip else 0
        axis_dirs.append(-source_dirs[axis] if flip else source_dirs[axis])
    image = sitk.GetImageFromArray(np.ascontiguousarray(reorientation.to_canonical(array)))
    image.SetSpacing([float(s) for s in reversed(reorientation.spacing_zyx)])
    image.SetOrigin([float(v) for v in geometry.index_to_patient([first[2], first[1], first[0]])])
    # SimpleITK's axes are (x, y, z) = canonical axes (2, 1, 0); directions are its columns.
    image.SetDirection(np.stack(axis_dirs[::-1], axis=1).ravel().tolist())
    return image


def _label_array(phantom: Phantom, maps: Sequence[str], names: Sequence[str]
                 ) -> npt.NDArray[np.uint8]:
    """The chosen truth maps merged into one map of dataset label numbers."""
    lut = np.zeros(256, dtype=np.uint8)
    for number, name in enumerate(names, start=1):
        lut[labels.by_name(name).value] = number
    truth = {"vertebrae": phantom.vertebrae, "muscles": phantom.muscles,
             "lesions": phantom.lesions}
    merged = np.zeros(phantom.ct.array.shape, dtype=np.uint8)
    for name in maps:
        numbers = lut[truth[name].array]
        merged[numbers > 0] = numbers[numbers > 0]
    return merged


def write_case(phantom: Phantom, folder: Path, case: str, maps: Sequence[str],
               names: Sequence[str], orientation: str) -> None:
    """The phantom's CT and merged truth as one training case of the dataset in ``folder``."""
    reorientation = Reorientation.of(phantom.ct.geometry, orientation)
    geometry = phantom.ct.geometry
    sitk.WriteImage(_canonical_image(phantom.ct.array, geometry, reorientation),
                    str(folder / "imagesTr" / f"{case}_0000{FILE_ENDING}"), useCompression=True)
    sitk.WriteImage(_canonical_image(_label_array(phantom, maps, names), geometry, reorientation),
                    str(folder / "labelsTr" / f"{case}{FILE_ENDING}"), useCompression=True)


def export(out: Path, dataset_id: int, name: str, seeds: Sequence[int],
           options: dict[str, Any], maps: Sequence[str] = ("vertebrae",),
           orientation: Literal["LPS", "RAS"] = "LPS") -> Path:
    """Write one phantom per seed (``PhantomOptions(seed=s, **options)``); returns the folder."""
    folder = dataset_folder(out, dataset_id, name)
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    names = label_names(maps)
    overrides: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in options.items()}
    cases = []
    for n, seed in enumerate(seeds, start=1):
        started = time.monotonic()
        case = f"phantom_{seed:06d}"
        phantom = generate(PhantomOptions(seed=seed, **overrides))
        write_case(phantom, folder, case, maps, names, orientation)
        cases.append(case)
        log.info("[%d/%d] %s (%.1f s)", n, len(seeds), case, time.monotonic() - started)
    description = {
        "name": name,
        "description": "Synthetic spine phantoms (spinemets phantom generator), not patient data",
        "channel_names": {"0": "CT"},
        "labels": {BACKGROUND: 0, **{n: i for i, n in enumerate(names, start=1)}},
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "spinemets": {"orientation": orientation, "maps": list(maps), "seeds": list(seeds),
                      "phantom_options": options},
    }
    (folder / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    log.info("wrote %s: %d cases, %d labels", folder, len(cases), len(names))
    return folder
