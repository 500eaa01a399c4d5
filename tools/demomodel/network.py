"""The demo network: a small nnU-Net-style 3D PlainConvUNet (dynamic_network_architectures).

Built the way nnU-Net v2 plans build ``PlainConvUNet`` for 3d_fullres: Conv3d, kernel 3,
InstanceNorm3d (affine, eps 1e-5), LeakyReLU (inplace), conv bias, no dropout, two convs per
encoder and decoder stage. An axis stops being downsampled once it would drop below
:data:`MIN_BOTTLENECK` voxels, as nnU-Net's planner does.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

#: Smallest edge length (voxels) of the bottleneck feature map along any axis.
MIN_BOTTLENECK = 4


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes the network's shape; stored in model.json for reproduction."""

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
        """One line for model.json's ``architecture``."""
        return (f"PlainConvUNet (dynamic_network_architectures), {len(self.features)} stages, "
                f"features {list(self.features)}, strides {[list(s) for s in self.strides]}, "
                "Conv3d k3, InstanceNorm3d, LeakyReLU")


def build(config: NetworkConfig) -> nn.Module:
    """Return the network for ``config``: one input channel, ``num_classes`` logits at full
    resolution only (no deep supervision, as exported)."""
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


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)



def set_deep_supervision(model: nn.Module, enabled: bool) -> None:
    """Return every decoder output (training) or the full-resolution one only (inference)."""
    decoder = getattr(model, "decoder", None)
    if decoder is None or not hasattr(decoder, "deep_supervision"):
        raise TypeError("model is not a U-Net with a deep-supervision switch")
    decoder.deep_supervision = enabled
