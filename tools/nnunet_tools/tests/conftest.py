"""Shared pieces of the nnU-Net tests: a trained-model folder made in a second, nnU-Net's predictor.

:func:`synthetic_model` writes what ``nnUNetv2_train`` leaves behind (plans.json, dataset.json,
``fold_<f>/checkpoint_final.pth``) for a randomly initialised tiny network, so the importer can
be tested on any plans variant without training (nnU-Net's own inference, the reference the
equivalence tests compare with, is :mod:`nnunet_tools.reference`). Tests get them through the
fixtures at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

LABELS = {"background": 0, "vertebra_L1": 1, "vertebra_L2": 2, "vertebra_L3": 3}
INTENSITIES = {"max": 1400.0, "mean": 420.0, "median": 380.0, "min": -90.0,
               "percentile_00_5": 60.0, "percentile_99_5": 1100.0, "std": 210.0}


def plans(spacing: Sequence[float] = (3.0, 2.0, 2.0), patch: Sequence[int] = (16, 24, 24),
          transpose: Sequence[int] = (0, 1, 2), **configuration: Any) -> dict[str, Any]:
    """nnU-Net v2 plans with one small 3d_fullres configuration (in transposed axis order)."""
    backward = [int(a) for a in np.argsort(transpose)]
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": [int(p) for p in patch],
        "median_image_size_in_voxels": [40, 60, 60], "spacing": [float(s) for s in spacing],
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                      "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                     "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                               "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 3, "features_per_stage": [4, 8, 16],
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
                "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
        **configuration,
    }
    return {
        "dataset_name": "Dataset991_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [float(s) for s in spacing],
        "original_median_shape_after_transp": [40, 60, 60], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [int(a) for a in transpose], "transpose_backward": backward,
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": INTENSITIES},
        "configurations": {"3d_fullres": config},
    }


def synthetic_model(root: Path, plan: dict[str, Any] | None = None,
                    labels: dict[str, Any] | None = None, folds: Sequence[int] = (0, 1),
                    mirror_axes: tuple[int, ...] | None = (0, 1, 2)) -> Path:
    """A trained-model folder of randomly initialised networks (one seed per fold)."""
    plan = plan or plans()
    dataset = {"channel_names": {"0": "CT"}, "labels": labels or LABELS, "numTraining": 4,
               "file_ending": ".nii.gz"}
    folder = root / "Dataset991_Synthetic" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plan))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    manager = PlansManager(plan)
    heads = manager.get_label_manager(dataset).num_segmentation_heads
    for fold in folds:
        torch.manual_seed(fold)
        network = nnUNetTrainer.build_network_architecture(
            manager, manager.get_configuration("3d_fullres"), 1, heads)
        (folder / f"fold_{fold}").mkdir()
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres"},
                    "inference_allowed_mirroring_axes": mirror_axes},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="session")
def make_plans() -> Callable[..., dict[str, Any]]:
    """``make_plans(spacing, patch, transpose, **configuration)``: see :func:`plans`."""
    return plans


@pytest.fixture(scope="session")
def make_model() -> Callable[..., Path]:
    """``make_model(root, plan, labels, folds, mirror_axes)``: see :func:`synthetic_model`."""
    return synthetic_model
