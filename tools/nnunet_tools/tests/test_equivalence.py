"""Item 5 of the models issue: a model trained by nnU-Net, imported, served by the real Triton
and run by the segmenter segments as nnU-Net's own ``nnUNetPredictor`` does (>= 99.9 % voxels).

The model is trained by nnunetv2's trainer on phantoms exported by ``export-nnunet-dataset``
(:mod:`nnunet_tools.fixture`, cached in ``.cache/nnunet``, a few minutes to build), imported
with both folds, and served by the embedded ``tritonserver`` from its ``configs/cpu.pbtxt``.
Held-out phantoms at two spacings (one anisotropic, so nnU-Net resamples the slice axis apart)
are segmented with and without mirroring, as nnU-Net would with the same settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nnunet_tools import fixture, source
from nnunet_tools.importer import ImportOptions, import_model
from nnunet_tools.label_mapping import LabelMapping
from nnunet_tools.reference import axial_volume, nnunet_prediction, nnunet_predictor
from phantom.generator import generate
from phantom.options import PhantomOptions
from segmenter.inference import segment
from segmenter.orientation import Reorientation
from segmenter.spec import ModelSpec
from segmenter.triton_client import TritonModel
from spinemets import labels
from spinemets.errors import ConfigError
from spinemets.ports import free_port
from stack.triton import TritonInstall, TritonProcess, TritonSettings

pytestmark = pytest.mark.integration

#: Voxels on which the segmenter and nnU-Net must agree.
AGREEMENT = 0.999
#: (phantom seed, column / row / slice spacing in mm, in-plane matrix, test-time mirroring).
CASES = [(9950, (1.5, 1.5, 2.0), 64, True), (9951, (1.25, 1.25, 3.5), 96, False)]


@pytest.fixture(scope="module")
def trained() -> Path:
    return fixture.ensure()


@pytest.fixture(scope="module")
def repository(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton-models")
    import_model(source.load(trained), root / "vertebrae",
                 ImportOptions(mapping=LabelMapping(), demo=True))
    return root


@pytest.fixture(scope="module")
def served(repository: Path) -> Iterator[tuple[TritonModel, ModelSpec]]:
    settings = TritonSettings(model_repository=repository, http_port=free_port(),
                              grpc_port=free_port(), metrics_port=free_port())
    try:
        TritonInstall.locate(settings.venv)
    except ConfigError as exc:
        pytest.skip(f"no embedded Triton: {exc}")
    with TritonProcess(settings, log_file=repository.parent / "triton.log") as triton:
        triton.wait_ready(120)
        spec = ModelSpec.load(repository / "vertebrae" / "model.json")
        model = TritonModel(triton.grpc_url, spec, timeout=60)
        model.check()
        yield model, spec
        model.close()


@pytest.mark.parametrize(("seed", "spacing", "matrix", "mirroring"), CASES)
def test_segmenter_through_triton_equals_nnunet(
        served: tuple[TritonModel, ModelSpec], trained: Path, seed: int,
        spacing: tuple[float, float, float], matrix: int, mirroring: bool) -> None:
    model, spec = served
    phantom = generate(PhantomOptions(seed=seed, levels=("L1", "L3"), spacing=spacing,
                                      matrix=matrix))
    reorientation = Reorientation.of(phantom.ct.geometry)
    image = np.ascontiguousarray(reorientation.to_canonical(phantom.ct.array))
    ours = segment(axial_volume(image, reorientation.spacing_zyx), spec, model.predict,
                   mirror=mirroring, workers=2, postprocess_labels=False).array
    folds = [str(f) for f in range(fixture.FIXTURE["folds"])]
    theirs = np.asarray(spec.channel_values)[
        nnunet_prediction(nnunet_predictor(trained, folds, mirroring), image,
                          reorientation.spacing_zyx)]
    agreement = float(np.mean(ours == theirs))
    foreground = (ours > 0) | (theirs > 0)
    print(f"seed {seed}, spacing {spacing}, mirroring {mirroring}: {agreement:.5%} of "
          f"{ours.size} voxels agree, {float(np.mean(ours[foreground] == theirs[foreground])):.4%}"
          f" of {int(foreground.sum())} foreground voxels")
    assert agreement >= AGREEMENT
    # Not a blank map: the trained model labels vertebral bone.
    assert foreground.mean() > 0.01
    assert set(np.unique(theirs)) & {labels.vertebra(lv).value for lv in ("L1", "L2", "L3")}
