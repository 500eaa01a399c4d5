"""Training losses of the two U-Nets: nnU-Net's Dice + CE (or Dice + TopK CE) for bone, CE (or
TopK CE) for the level."""

from __future__ import annotations

import torch
from torch import nn

#: Target value ignored by the level loss (blocks without vertebra voxels).
IGNORE = -1


class DiceCELoss(nn.Module):
    """nnU-Net's ``DC_and_CE_loss``: ``CE + (1 - soft Dice)``.

    Dice is computed over the whole batch per foreground class (``batch_dice``) and averaged
    over the classes present in the batch. With ``top_k`` below 100 the cross-entropy is the
    mean over the ``top_k`` per cent of voxels where it is largest, as nnU-Net's
    ``DC_and_topk_loss`` (``nnUNetTrainerDiceTopK10Loss`` uses 10).
    """

    def __init__(self, smooth: float = 1e-5, top_k: float = 100.0) -> None:
        super().__init__()
        if not 0 < top_k <= 100:
            raise ValueError(f"top_k must be in (0, 100], not {top_k}")
        self.smooth = smooth
        self.top_k = top_k

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        probs = torch.softmax(logits, dim=1)[:, 1:]
        onehot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)[:, 1:]
        axes = (0, *range(2, logits.ndim))
        intersection = (probs * onehot).sum(axes)
        total = probs.sum(axes) + onehot.sum(axes)
        dice = (2 * intersection + self.smooth) / torch.clamp(total + self.smooth, min=1e-8)
        present = (onehot.sum(axes) > 0).float()
        mean_dice = (dice * present).sum() / torch.clamp(present.sum(), min=1.0)
        return self._cross_entropy(logits, target) + (1.0 - mean_dice)

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.top_k >= 100:
            return nn.functional.cross_entropy(logits, target)
        return _hardest_mean(nn.functional.cross_entropy(logits, target, reduction="none"),
                             self.top_k)


def level_targets(target: torch.Tensor, num_levels: int, scale: int) -> torch.Tensor:
    """Level index (0-based) of every ``scale``-cube of ``target`` holding vertebra voxels.

    ``target`` ``[N, Z, Y, X]`` holds channels (0 background, 1..num_levels); each block gets
    its most frequent level (the more cranial one on a tie), blocks without any get
    :data:`IGNORE`.
    """
    n, z, y, x = target.shape
    s = scale
    blocks = (target.reshape(n, z // s, s, y // s, s, x // s, s)
              .permute(0, 1, 3, 5, 2, 4, 6).reshape(n, z // s, y // s, x // s, s ** 3))
    # Background voxels get distinct values above every level, so they never form the mode.
    filler = num_levels + 1 + torch.arange(s ** 3, dtype=target.dtype)
    mode = torch.where(blocks > 0, blocks, filler).mode(dim=-1).values
    return torch.where(mode <= num_levels, mode - 1, torch.full_like(mode, IGNORE))


def level_loss(logits: torch.Tensor, levels: torch.Tensor, top_k: float = 100.0) -> torch.Tensor:
    """Cross-entropy of the level given vertebra, over the blocks that hold vertebra voxels; with
    ``top_k`` below 100, over the ``top_k`` per cent of those blocks where it is largest."""
    valid = levels != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0
    per_block = nn.functional.cross_entropy(logits.float(), levels, ignore_index=IGNORE,
                                            reduction="none")[valid]
    return _hardest_mean(per_block, top_k)


def _hardest_mean(values: torch.Tensor, top_k: float) -> torch.Tensor:
    """Mean of the ``top_k`` per cent largest of ``values`` (all of them at 100)."""
    if not 0 < top_k <= 100:
        raise ValueError(f"top_k must be in (0, 100], not {top_k}")
    flat = values.flatten()
    if top_k >= 100:
        return flat.mean()
    count = max(1, int(flat.numel() * top_k / 100))
    return flat.topk(count, sorted=False).values.mean()
