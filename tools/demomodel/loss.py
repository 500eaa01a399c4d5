"""nnU-Net's default segmentation loss: soft Dice (batch Dice, no background) + cross-entropy."""

from __future__ import annotations

import torch
from torch import nn


class DiceCELoss(nn.Module):
    """``CE + (1 - soft Dice)`` with equal weights, as nnU-Net's ``DC_and_CE_loss``.

    Dice is computed over the whole batch per foreground class (``batch_dice``) and averaged
    over classes; a class absent from both target and prediction scores 1 via ``smooth``.
    """

    def __init__(self, smooth: float = 1e-5) -> None:
        super().__init__()
        self.smooth = smooth
        self.ce = nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        probs = torch.softmax(logits, dim=1)[:, 1:]
        onehot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)[:, 1:]
        axes = (0, *range(2, logits.ndim))
        intersection = (probs * onehot).sum(axes)
        total = probs.sum(axes) + onehot.sum(axes)
        dice = (2 * intersection + self.smooth) / torch.clamp(total + self.smooth, min=1e-8)
        ce: torch.Tensor = self.ce(logits, target)
        return ce + (1.0 - dice.mean())
