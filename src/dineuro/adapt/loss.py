"""Dice + cross-entropy that skips the voxels a pseudo-label leaves undecided.

Training uses MONAI's ``DiceCELoss`` (:mod:`dineuro.train.losses`); MONAI has no ignore label
for it, so this is the same loss with a voxel weight: labels are (B, 1, z, y, x) with values
0 (background), 1 (foreground) and :data:`~dineuro.adapt.labels.IGNORE`, and ignored voxels
count in neither term. Per crop b and class c (both classes, as MONAI's
``include_background=True``), with softmax probabilities p, one-hot labels y and weights w
(0 on ignored voxels, 1 elsewhere)::

    dice = mean_bc 1 - (2 sum(w p y) + 1e-5) / (sum(w p) + sum(w y) + 1e-5)
    ce   = sum(w * cross_entropy) / sum(w)
    loss = dice + ce

Without ignored voxels this is MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)`` exactly,
so synthetic crops with gold labels are scored as training scored them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dineuro.adapt.labels import IGNORE

#: MONAI DiceLoss's default smoothing of numerator and denominator.
SMOOTH = 1e-5


class MaskedDiceCE(nn.Module):
    """``loss(logits, labels)``: Dice + cross-entropy over the voxels whose label is not
    :data:`IGNORE`; see the module docstring.

    Examples
    --------
    >>> logits = torch.zeros(1, 2, 2, 2, 2)
    >>> labels = torch.full((1, 1, 2, 2, 2), float(IGNORE))
    >>> labels[0, 0, 0, 0, 0] = 1
    >>> # one voxel counts, p = 0.5 for each class: ce = ln 2, dice = mean(1 - 1/1.5, 1 - 0)
    >>> round(float(MaskedDiceCE()(logits, labels)), 4)
    1.3598
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 2 or labels.shape[1] != 1 or logits.shape[2:] != labels.shape[2:]:
            raise ValueError(f"need (B, 2, ...) logits and (B, 1, ...) labels of the same size, "
                             f"got {tuple(logits.shape)} and {tuple(labels.shape)}.")
        weight = (labels != IGNORE).to(logits.dtype)
        target = (labels == 1).long()[:, 0]
        onehot = F.one_hot(target, 2).movedim(-1, 1).to(logits.dtype)
        prob = logits.softmax(dim=1)
        dims = tuple(range(2, logits.ndim))
        inter = (weight * prob * onehot).sum(dims)
        denom = (weight * prob).sum(dims) + (weight * onehot).sum(dims)
        dice = (1.0 - (2.0 * inter + SMOOTH) / (denom + SMOOTH)).mean()
        ce = F.cross_entropy(logits, target, reduction="none")
        ce = (weight[:, 0] * ce).sum() / weight.sum().clamp_min(1.0)
        return dice + ce
