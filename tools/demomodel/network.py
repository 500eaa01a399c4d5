"""The demo networks: nnU-Net-style PlainConvUNets (dynamic_network_architectures).

The muscle and lesion models are one PlainConvUNet each (:class:`PlainUNet`); the vertebra model
is two of them in one graph (:class:`TwoScaleUNet`).

Each U-Net is built the way nnU-Net v2 plans build ``PlainConvUNet`` for 3d_fullres: Conv3d,
kernel 3, InstanceNorm3d (affine, eps 1e-5), LeakyReLU (inplace), conv bias, no dropout, two
convs per encoder and decoder stage; an axis stops being downsampled once it would drop below
:data:`MIN_BOTTLENECK` voxels, as nnU-Net's planner does.

:class:`TwoScaleUNet` factorises the label distribution as nnU-Net's cascade splits the work
between a low- and a full-resolution network::

    p(background) = p_bone(background)                       full resolution (2 classes)
    p(level k)    = p_bone(vertebra) * p_levels(k | vertebra) half resolution, upsampled

The full-resolution U-Net delineates vertebral bone (a local task, learnt in a few hundred
iterations); the half-resolution U-Net, eight times cheaper per patch, learns which level each
vertebra is, which needs the long cranio-caudal context and many iterations. The graph returns
the logarithms of these probabilities as its logits, so the client's softmax gives them back
exactly and the client's argmax, resampling and post-processing apply unchanged.

The level logits are upsampled to full resolution before their softmax, trilinearly (version 6 on)
or by nearest neighbour (versions 1-5, which kept each 2-cube on its block's level):
:attr:`ModelConfig.level_upsampling`. From version 8 they are averaged over the two phases of the
half-resolution grid (:attr:`ModelConfig.level_phases`): the level U-Net also runs on the input
shifted by one full-resolution voxel along every axis, so that each voxel's level comes from two
differently placed blocks, and the boundary between two levels is not bound to one 2-cube grid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

#: Smallest edge length (voxels) of the bottleneck feature map along any axis.
MIN_BOTTLENECK = 4
#: Downsampling factor of the level network's input.
LEVEL_SCALE = 2
#: How the level logits reach full resolution (``torch.nn.functional.interpolate`` modes).
LevelUpsampling = Literal["nearest", "trilinear"]
#: Phases of the half-resolution grid the level logits are averaged over: the grid alone (1,
#: versions 1-7) or also the grid shifted by one full-resolution voxel along every axis (2).
LEVEL_PHASES = (1, 2)


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of one PlainConvUNet."""

    patch_size_zyx: tuple[int, int, int]
    features: tuple[int, ...]
    num_classes: int

    @property
    def strides(self) -> tuple[tuple[int, int, int], ...]:
        """Per-stage strides (first stage 1), halving each axis while it stays >= the minimum."""
        size = list(self.patch_size_zyx)
        strides: list[tuple[int, int, int]] = [(1, 1, 1)]
        for _ in self.features[1:]:
            stride = tuple(2 if s % 2 == 0 and s // 2 >= MIN_BOTTLENECK else 1 for s in size)
            size = [s // d for s, d in zip(size, stride, strict=True)]
            strides.append((stride[0], stride[1], stride[2]))
        return tuple(strides)

    def describe(self) -> str:
        return (f"PlainConvUNet, {len(self.features)} stages, features {list(self.features)}, "
                f"strides {[list(s) for s in self.strides]}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the whole model: patch, the two U-Nets' features, number of levels (+ sacrum),
    how the level logits are upsampled and over how many grid phases they are averaged."""

    patch_size_zyx: tuple[int, int, int]
    bone_features: tuple[int, ...]
    level_features: tuple[int, ...]
    num_levels: int
    level_upsampling: LevelUpsampling = "trilinear"
    level_phases: int = 1

    def __post_init__(self) -> None:
        if any(p % LEVEL_SCALE for p in self.patch_size_zyx):
            raise ValueError(f"patch size {self.patch_size_zyx} must be divisible by "
                             f"{LEVEL_SCALE}")
        if self.level_phases not in LEVEL_PHASES:
            raise ValueError(f"level_phases must be one of {LEVEL_PHASES}, not "
                             f"{self.level_phases}")

    @property
    def bone(self) -> NetworkConfig:
        return NetworkConfig(self.patch_size_zyx, self.bone_features, 2)

    @property
    def levels(self) -> NetworkConfig:
        half = tuple(p // LEVEL_SCALE for p in self.patch_size_zyx)
        return NetworkConfig((half[0], half[1], half[2]), self.level_features, self.num_levels)

    @property
    def num_classes(self) -> int:
        """Output channels: background, then the levels."""
        return 1 + self.num_levels

    def describe(self) -> str:
        """One line for model.json's ``architecture``."""
        return (f"Two PlainConvUNets (dynamic_network_architectures; Conv3d k3, InstanceNorm3d, "
                f"LeakyReLU): vertebral bone at full resolution ({self.bone.describe()}) times "
                f"level at half resolution ({self.levels.describe()}), "
                f"{self.level_upsampling} upsampled"
                + (f", averaged over {self.level_phases} grid phases"
                   if self.level_phases > 1 else ""))


def build(config: NetworkConfig) -> nn.Module:
    """One PlainConvUNet: one input channel, ``num_classes`` logits at full resolution only."""
    n = len(config.features)
    model: nn.Module = PlainConvUNet(
        input_channels=1,
        n_stages=n,
        features_per_stage=list(config.features),
        conv_op=nn.Conv3d,
        kernel_sizes=[[3, 3, 3]] * n,
        strides=[list(s) for s in config.strides],
        n_conv_per_stage=[2] * n,
        num_classes=config.num_classes,
        n_conv_per_stage_decoder=[2] * (n - 1),
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    return model


class TwoScaleUNet(nn.Module):
    """Input ``[N, 1, Z, Y, X]`` -> log-probabilities ``[N, 1 + levels, Z, Y, X]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.bone = build(config.bone)
        self.levels = build(config.levels)

    def level_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Level logits at half resolution, from the average-pooled input."""
        logits: torch.Tensor = self.levels(nn.functional.avg_pool3d(x, LEVEL_SCALE))
        return logits

    def upsampled_level_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Level logits at full resolution: upsampled, and averaged over the grid phases.

        The second phase pools the input shifted by one voxel towards the origin along every
        axis (the last voxel repeated), so its block ``j`` covers voxels ``2j + 1`` and
        ``2j + 2``; its upsampled logits are shifted back by one voxel (the first repeated)
        to lie on the voxels they describe.
        """
        level = self._upsampled(self.level_logits(x))
        if self.config.level_phases == 1:
            return level
        shifted = self._upsampled(self.level_logits(_shift(x, forward=True)))
        return (level + _shift(shifted, forward=False)) / 2

    def _upsampled(self, logits: torch.Tensor) -> torch.Tensor:
        upsampled: torch.Tensor = nn.functional.interpolate(
            logits, scale_factor=LEVEL_SCALE, mode=self.config.level_upsampling)
        return upsampled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bone = nn.functional.log_softmax(self.bone(x), dim=1)
        level = nn.functional.log_softmax(self.upsampled_level_logits(x), dim=1)
        return torch.cat([bone[:, :1], bone[:, 1:] + level], dim=1)


def _shift(x: torch.Tensor, forward: bool) -> torch.Tensor:
    """``x[..., i + 1, j + 1, k + 1]`` at ``[i, j, k]`` (``forward``) or ``x[..., i - 1, j - 1,
    k - 1]`` (backward), the edge voxel repeated where the index leaves the volume."""
    for dim in (2, 3, 4):
        n = x.shape[dim]
        if forward:
            x = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
        else:
            x = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
    return x


class PlainUNet(nn.Module):
    """One PlainConvUNet: input ``[N, 1, Z, Y, X]`` -> logits ``[N, C, Z, Y, X]``."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.net = build(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)
        return logits


#: Decoder convolutions whose input is the concatenation [upsampled, skip] of two equal halves.
_CONCATENATED_INPUT = re.compile(r"decoder\.stages\.\d+\.convs\.0\.(conv|all_modules\.0)\.weight$")


def _old_places(old: int, new: int, concatenated: bool) -> npt.NDArray[np.intp]:
    """Where the ``old`` channels of an axis sit among its ``new`` ones (in each half of a
    concatenation)."""
    if not concatenated:
        return np.arange(old)
    if old % 2 or new % 2:
        raise ValueError(f"a concatenated input of {old} -> {new} channels is not two halves")
    return np.concatenate([np.arange(old // 2), new // 2 + np.arange(old // 2)])


def widen(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load the weights of a narrower network of the same stages into ``model``, keeping its
    function (Net2Net's function-preserving widening, with fresh rather than copied new units).

    Every old channel keeps its index (in a decoder's concatenated input, its index in each
    half); new channels keep their fresh initialisation, and the weights from new input
    channels into old output channels are zeroed, so the wider network computes exactly what
    the narrower one did, and training starts from there.
    """
    axes: dict[str, tuple[int, int]] = {}  # weight name -> (output axis, input axis)
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.ConvTranspose3d):
            axes[f"{name}.weight"] = (1, 0)
        elif isinstance(module, nn.Conv3d):
            axes[f"{name}.weight"] = (0, 1)
    target = model.state_dict()
    if target.keys() != state.keys():
        raise ValueError("not the same network: the parameter names differ")
    with torch.no_grad():
        for name, new in target.items():
            old = state[name]
            if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape,
                                                                    strict=True)):
                raise ValueError(f"{name}: {tuple(old.shape)} does not fit in "
                                 f"{tuple(new.shape)}")
            array = new.numpy()
            output, inputs = axes.get(name, (0, -1))
            places = [_old_places(o, n, axis == inputs and bool(_CONCATENATED_INPUT.search(name)))
                      for axis, (o, n) in enumerate(zip(old.shape, new.shape, strict=True))]
            if inputs >= 0:
                fresh = [np.arange(n) for n in new.shape]
                fresh[output] = places[output]
                fresh[inputs] = np.setdiff1d(np.arange(new.shape[inputs]), places[inputs])
                array[np.ix_(*fresh)] = 0
            array[np.ix_(*places)] = old.numpy()


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
