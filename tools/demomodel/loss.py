"""Training losses: nnU-Net's Dice + CE, a whole-spine region term, and deep supervision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, axes: tuple[int, ...],
              smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice over ``axes`` (nnU-Net's formula, ``smooth`` in numerator and denominator)."""
    intersection = (probs * onehot).sum(axes)
    total = probs.sum(axes) + onehot.sum(axes)
    return (2 * intersection + smooth) / torch.clamp(total + smooth, min=1e-8)


class DiceCELoss(nn.Module):
    """``CE + (1 - soft Dice) + (1 - soft Dice of the whole spine)``.

    The first two terms are nnU-Net's ``DC_and_CE_loss``: Dice over the whole batch per
    foreground class (``batch_dice``), averaged over the classes present in the batch. The third
    is a region term as in nnU-Net's region-based training: the union of all foreground classes
    (probability ``1 - p(background)``). It makes the network delineate bone early, while
    telling the levels apart is still being learnt.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        probs = torch.softmax(logits, dim=1)
        onehot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)
        axes = (0, *range(2, logits.ndim))
        present = (onehot[:, 1:].sum(axes) > 0).float()
        dice = (soft_dice(probs[:, 1:], onehot[:, 1:], axes) * present).sum()
        mean_dice = dice / torch.clamp(present.sum(), min=1.0)
        region = soft_dice(1 - probs[:, 0], 1 - onehot[:, 0], tuple(range(logits.ndim - 1)))
        ce: torch.Tensor = nn.functional.cross_entropy(logits, target)
        return ce + (1.0 - mean_dice) + (1.0 - region)


class DeepSupervisionLoss(nn.Module):
    """nnU-Net's deep supervision: ``loss`` on every decoder output, weights ``1 / 2**i``.

    Outputs come full resolution first; the lowest one gets weight 0, as in nnU-Net, and the
    weights are normalised to sum to 1. Targets are subsampled (nearest) to each output.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        weights = [0.5 ** i for i in range(len(outputs))]
        if len(weights) > 1:
            weights[-1] = 0.0
        total = sum(weights)
        result = torch.zeros((), device=target.device)
        for weight, output in zip(weights, outputs, strict=True):
            if weight == 0.0:
                continue
            steps = [t // o for t, o in zip(target.shape[1:], output.shape[2:], strict=True)]
            sub = target[(slice(None), *(slice(s // 2, None, s) for s in steps))]
            result = result + weight / total * self.loss(output, sub)
        return result
