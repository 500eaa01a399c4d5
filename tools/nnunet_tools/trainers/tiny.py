"""``nnUNetTrainerSpineMetsTiny``: nnU-Net v2's trainer cut to a CPU-minute a fold (tests only).

It is ``nnUNetTrainer`` with a short schedule and no augmentation: training batches get the
validation transforms, while the mirroring axes allowed at inference stay all three, as after a
normal training. Nothing else changes: network, loss, optimiser, checkpoints.

``python -m nnunet_tools.trainers.tiny DATASET CONFIGURATION FOLD -p PLANS`` trains like
``nnUNetv2_train DATASET CONFIGURATION FOLD -tr nnUNetTrainerSpineMetsTiny -p PLANS -device cpu``
(without the final validation), reading ``nnUNet_preprocessed`` and ``nnUNet_results`` from the
environment. ``nnUNetv2_train`` itself finds the class when ``nnUNet_extTrainer`` names this
folder, where nnU-Net's trainer search can import its own variants (that needs a torchvision
built for the installed torch).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

EPOCHS = 8
ITERATIONS = 40
VALIDATION_ITERATIONS = 2


class nnUNetTrainerSpineMetsTiny(nnUNetTrainer):  # type: ignore[misc]  # noqa: N801 - nnU-Net's naming
    """Few epochs of few iterations, no augmentation; for fixtures, never for real models."""

    def __init__(self, plans: dict[str, Any], configuration: str, fold: int,
                 dataset_json: dict[str, Any],
                 device: torch.device = torch.device("cpu")) -> None:  # noqa: B008 - nnU-Net's signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = EPOCHS
        self.num_iterations_per_epoch = ITERATIONS
        self.num_val_iterations_per_epoch = VALIDATION_ITERATIONS

    @staticmethod
    def get_training_transforms(patch_size: Any, rotation_for_DA: Any,  # noqa: N803
                                deep_supervision_scales: Any, mirror_axes: Any,
                                do_dummy_2d_data_aug: bool, use_mask_for_norm: Any = None,
                                is_cascaded: bool = False, foreground_labels: Any = None,
                                regions: Any = None, ignore_label: Any = None) -> Any:
        """The validation transforms: targets for deep supervision, no augmentation."""
        return nnUNetTrainer.get_validation_transforms(
            deep_supervision_scales, is_cascaded, foreground_labels, regions, ignore_label)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self) -> Any:  # noqa: N802
        """nnU-Net's settings, but batches at the patch size (no spatial transform crops them)."""
        rotation, dummy_2d, _, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return rotation, dummy_2d, self.configuration_manager.patch_size, mirror_axes


def train(dataset: str, configuration: str, fold: int, plans_identifier: str) -> Path:
    """Train one fold on the CPU; its output folder.

    One thread, as ``nnUNetv2_train -device cpu``, and the random generators seeded with the
    fold (nnU-Net itself does not seed; with ``nnUNet_n_proc_DA=0`` its batches come from this
    process's generators): two trainings on one machine give identical weights.
    """
    random.seed(fold)
    np.random.seed(fold)
    torch.manual_seed(fold)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    preprocessed = Path(nnUNet_preprocessed) / dataset
    plans = json.loads((preprocessed / f"{plans_identifier}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    trainer = nnUNetTrainerSpineMetsTiny(plans, configuration, fold, dataset_json,
                                         torch.device("cpu"))
    trainer.run_training()
    return Path(trainer.output_folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunet_tools.trainers.tiny",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="DatasetXXX_Name")
    parser.add_argument("configuration")
    parser.add_argument("fold", type=int)
    parser.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier")
    args = parser.parse_args(argv)
    print(train(args.dataset, args.configuration, args.fold, args.plans))


if __name__ == "__main__":
    main()
