"""Training losses on the network's (B, 2, z, y, x) logits against (B, 1, z, y, x) 0/1 labels.

- ``"dice_ce"``: MONAI's ``DiceCELoss`` (soft Dice + cross-entropy, both channels).
- ``"dice_ce_cldice"``: that plus ``cldice_weight`` times soft-clDice (Shit et al., "clDice - a
  novel topology-preserving loss function for tubular structure segmentation", CVPR 2021) on
  the foreground softmax channel. Volume losses barely notice a missed thin branch (few
  voxels) but punish a slightly fat neurite (many voxels); clDice compares soft skeletons
  instead, so it rewards keeping every branch connected over matching its exact radius.

Soft-clDice is MONAI's ``SoftclDiceLoss`` (a port of the authors' code): the soft skeleton keeps
what an opening removes, erosion by erosion, ``iterations`` times; erosion is a min-pool over
the 6-neighbourhood (kernels (3,1,1), (1,3,1), (1,1,3)), dilation a 3x3x3 max-pool. A tube of
radius up to about ``iterations`` voxels thins to its axis; a much thicker one (radius 5 with 3
iterations) has no soft skeleton, so only Dice + cross-entropy see it. It works on voxels,
ignoring the anisotropic spacing. With ``Tprec = (|S_P . V_L| + 1) / (|S_P| + 1)`` and
``Tsens = (|S_L . V_P| + 1) / (|S_L| + 1)`` per crop (S skeleton, V volume, P prediction,
L label; the published smoothing of 1), ``loss = 1 - 2 Tprec Tsens / (Tprec + Tsens)``,
averaged over the batch. A crop without foreground has Tsens = 1 and so only penalises
predicted skeleton.

- ``"dice_ce_skeleton_recall"``: Dice + cross-entropy plus ``skeleton_recall_weight`` times the
  Skeleton Recall loss (Kirchhoff et al., "Skeleton Recall Loss for connectivity conserving and
  resource efficient segmentation of thin tubular structures", ECCV 2024). The label's skeleton
  is computed (not soft, not differentiated: labels need no gradient) on the CPU each step,
  grown by a voxel on every side (:func:`tubed_skeleton`), and the loss is one minus the soft
  recall of that tube by the foreground probability: every voxel of every neurite's axis counts the
  same, whatever the neurite's radius, so a missed dim twig costs as much per voxel of length
  as a missed trunk. With ``R = (sum P . T + 1) / (|T| + 1)`` per crop (P foreground softmax, T
  tubed skeleton), ``loss = 1 - R``, averaged over the batch (R is 1 on a crop without
  foreground). Unlike clDice it does not penalise what the prediction adds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dineuro.errors import InputError

#: Names of the ``loss`` config key.
LOSSES = ("dice_ce", "dice_ce_cldice", "dice_ce_skeleton_recall")
#: Default weight of soft-clDice added to Dice + cross-entropy.
CLDICE_WEIGHT = 0.5
#: Default soft-skeleton iterations: the radius, in voxels, of the thickest tube thinned to
#: its axis (the clDice paper's default).
CLDICE_ITERATIONS = 3
#: Default weight of Skeleton Recall added to Dice + cross-entropy (the paper's usual weight).
SKELETON_RECALL_WEIGHT = 1.0


def make_loss(name: str = "dice_ce", cldice_weight: float = CLDICE_WEIGHT,
              cldice_iterations: int = CLDICE_ITERATIONS,
              skeleton_recall_weight: float = SKELETON_RECALL_WEIGHT) -> nn.Module:
    """The training loss ``name`` (one of :data:`LOSSES`) as a module ``loss(logits, labels)``.

    Parameters
    ----------
    name : str, optional
        "dice_ce", "dice_ce_cldice" for Dice + cross-entropy + weighted soft-clDice, or
        "dice_ce_skeleton_recall" for Dice + cross-entropy + weighted Skeleton Recall.
    cldice_weight : float, optional
        Weight of soft-clDice (used by "dice_ce_cldice" only).
    cldice_iterations : int, optional
        Soft-skeleton iterations (used by "dice_ce_cldice" only).
    skeleton_recall_weight : float, optional
        Weight of Skeleton Recall (used by "dice_ce_skeleton_recall" only).

    Raises
    ------
    InputError
        An unknown ``name``.

    Examples
    --------
    >>> loss = make_loss("dice_ce_cldice")
    >>> logits, labels = torch.zeros(1, 2, 4, 8, 8), torch.zeros(1, 1, 4, 8, 8)
    >>> bool(torch.isfinite(loss(logits, labels)))
    True
    """
    from monai.losses import DiceCELoss

    if name not in LOSSES:
        raise InputError(f"loss should be one of {list(LOSSES)}, got {name!r}.")
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    if name == "dice_ce":
        return dice_ce
    if name == "dice_ce_skeleton_recall":
        return WeightedSum(dice_ce, SkeletonRecallLoss(), skeleton_recall_weight)
    return WeightedSum(dice_ce, cldice_loss(cldice_iterations), cldice_weight)


def cldice_loss(iterations: int = CLDICE_ITERATIONS) -> nn.Module:
    """Soft-clDice loss of the foreground channel: ``loss(logits, labels)``, 0 when the soft
    skeletons of prediction and label each lie inside the other's volume."""
    from monai.losses import SoftclDiceLoss

    # include_background=False: the background's skeleton is a thinned copy of the whole
    # crop and says nothing about the neurites' topology.
    return SoftclDiceLoss(iter_=iterations, include_background=False, to_onehot_y=True,
                          softmax=True)


def tubed_skeleton(label: np.ndarray) -> np.ndarray:
    """The skeleton of a 0/1 ``label`` (z, y, x) grown by its 6-neighbours, inside the label:
    the axis of every neurite as a tube about three voxels across, whatever its radius."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import skeletonize

    label = np.asarray(label) > 0
    if not label.any():
        return label
    return binary_dilation(skeletonize(label)) & label


class SkeletonRecallLoss(nn.Module):
    """``1 - soft recall`` of the labels' tubed skeletons by the foreground softmax of
    ``logits`` (B, 2, z, y, x), labels (B, 1, z, y, x); mean over the batch."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tubes = np.stack([tubed_skeleton(label[0]) for label in labels.detach().cpu().numpy()])
        tubes = torch.from_numpy(tubes).to(device=logits.device, dtype=logits.dtype)
        foreground = torch.softmax(logits, dim=1)[:, 1]
        dims = tuple(range(1, foreground.ndim))
        recall = ((foreground * tubes).sum(dims) + 1) / (tubes.sum(dims) + 1)
        return 1 - recall.mean()


class WeightedSum(nn.Module):
    """``first(logits, labels) + weight * second(logits, labels)``."""

    def __init__(self, first: nn.Module, second: nn.Module, weight: float):
        super().__init__()
        self.first, self.second, self.weight = first, second, float(weight)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.first(logits, labels) + self.weight * self.second(logits, labels)
