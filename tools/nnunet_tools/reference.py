"""nnU-Net's own inference, the reference of the equivalence tests and of
``bench/segmenter_vs_nnunet.py``: ``nnUNetPredictor`` on a trained model folder, and an axial
volume for the segmenter holding the same array.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from spinemets.geometry import Geometry, Volume


def nnunet_predictor(folder: Path, folds: Sequence[str], mirroring: bool) -> nnUNetPredictor:
    """nnU-Net's predictor on a trained folder, CPU, nnU-Net's defaults (step 0.5, Gaussian).

    Set up as ``initialize_from_trained_model_folder`` does, with the network built by the base
    trainer: nnU-Net's trainer search imports every trainer variant, which fails where the
    installed torchvision does not match torch (the project's trainers do not change networks).
    """
    plan = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    checkpoints = [torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", map_location="cpu",
                              weights_only=False) for f in folds]
    manager = PlansManager(plan)
    configuration = manager.get_configuration(checkpoints[0]["init_args"]["configuration"])
    network = nnUNetTrainer.build_network_architecture(
        manager, configuration, 1, manager.get_label_manager(dataset).num_segmentation_heads,
        enable_deep_supervision=False)
    network.load_state_dict(checkpoints[0]["network_weights"])
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.manual_initialization(
        network, manager, configuration, [c["network_weights"] for c in checkpoints], dataset,
        checkpoints[0]["trainer_name"], checkpoints[0]["inference_allowed_mirroring_axes"])
    return predictor


def nnunet_prediction(predictor: nnUNetPredictor, image: npt.NDArray[np.int16],
                      spacing_zyx: Sequence[float], threads: int = 1) -> npt.NDArray[np.int64]:
    """nnU-Net's label map (its own label values) of a ``(z, y, x)`` image, as nnU-Net reads it.

    Runs on ``threads`` torch threads (default one, as ``nnUNetv2_predict -device cpu``: more
    threads than cores slow it down tenfold).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = predictor.predict_single_npy_array(image[None].astype(np.float32),
                                                    {"spacing": list(spacing_zyx)})
    finally:
        torch.set_num_threads(previous)
    return np.asarray(result, dtype=np.int64)


def axial_volume(image: npt.NDArray[np.int16], spacing_zyx: Sequence[float]) -> Volume:
    """An axial LPS volume whose ``[slice, row, column]`` array is the canonical ``image``."""
    slices, rows, columns = image.shape
    geometry = Geometry((columns, rows, slices), (spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]),
                        (-50.0, -60.0, 300.0), np.eye(3))
    return Volume(image, geometry, tuple(f"1.2.826.0.1.{k}" for k in range(slices)),
                  "1.2.840.10008.5.1.4.1.1.2")
