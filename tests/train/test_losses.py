"""Training losses: the soft skeleton, soft-clDice and Skeleton Recall on hand-made tubes, and
the loss choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from monai.losses.cldice import soft_skel

from dineuro.errors import InputError
from dineuro.train.losses import (
    CLDICE_ITERATIONS,
    SkeletonRecallLoss,
    cldice_loss,
    make_loss,
    tubed_skeleton,
)

#: Logit of a confident voxel: softmax gives 1 - 4e-18, so probabilities are 0/1 to float32.
SURE = 20.0
SHAPE = (12, 24, 32)  # (z, y, x)
AXIS = (6, 12)  # (z, y) of the tubes' axis, which runs along x


def _tube(radius: float, shape=SHAPE) -> torch.Tensor:
    """(z, y, x) 0/1 tube along x, all voxels within ``radius`` of the axis (z, y) = AXIS."""
    z, y = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    disk = ((z - AXIS[0]) ** 2 + (y - AXIS[1]) ** 2 <= radius ** 2).float()
    return disk[:, :, None].expand(shape).clone()


def _logits(mask: torch.Tensor) -> torch.Tensor:
    """(1, 2, z, y, x) logits whose softmax is (1 - mask, mask)."""
    fg = (2 * mask - 1) * SURE
    return torch.stack([-fg, fg])[None]


def _label(mask: torch.Tensor) -> torch.Tensor:
    return mask[None, None]


def test_soft_skeleton_of_a_tube_and_a_bar_is_their_axis():
    """The published soft skeleton thins a radius-2 tube and a 5x5 bar to the axis line."""
    bar = torch.zeros(SHAPE)
    bar[AXIS[0] - 2:AXIS[0] + 3, AXIS[1] - 2:AXIS[1] + 3] = 1
    axis = torch.zeros(SHAPE)
    axis[AXIS] = 1
    for mask in (_tube(2), bar):
        skeleton = soft_skel(_label(mask), CLDICE_ITERATIONS)[0, 0]
        assert torch.allclose(skeleton, axis)


def test_cldice_is_zero_for_a_perfect_prediction():
    tube = _tube(2)
    assert float(cldice_loss()(_logits(tube), _label(tube))) < 1e-3


def test_cldice_matches_the_published_formula_on_lines():
    """1-voxel lines are their own skeletons: predicting the first h of n label voxels gives
    Tprec = 1 and Tsens = (h + 1) / (n + 1) (smoothing 1), clDice = 2 Tsens / (1 + Tsens)."""
    label, prediction = _tube(0), _tube(0)
    n, h = SHAPE[2], 10
    prediction[..., h:] = 0
    tsens = (h + 1) / (n + 1)
    expected = 1 - 2 * tsens / (1 + tsens)
    assert float(cldice_loss()(_logits(prediction), _label(label))) == pytest.approx(
        expected, rel=1e-3)


def _tube_with_twig() -> torch.Tensor:
    """The radius-2 tube with a 1-voxel twig leaving it along y at x = 16."""
    mask = _tube(2)
    mask[AXIS[0], AXIS[1]:, 16] = 1
    return mask


def test_cldice_prefers_a_fat_prediction_to_one_that_misses_a_thin_branch():
    """The paper's motivation: Dice would rather lose the twig (9 of 425 voxels) than fatten
    the tube by a voxel; clDice would rather fatten, since the skeletons still agree."""
    from monai.losses import DiceLoss

    label = _label(_tube_with_twig())
    no_twig = _tube(2)
    fatter = torch.nn.functional.max_pool3d(label, 3, 1, 1)[0, 0]  # 1-voxel dilation
    dice_loss = DiceLoss(to_onehot_y=True, softmax=True, include_background=False)
    assert dice_loss(_logits(no_twig), label) < dice_loss(_logits(fatter), label)
    cldice = cldice_loss()
    assert float(cldice(_logits(fatter), label)) < 1e-3
    assert float(cldice(_logits(no_twig), label)) > 0.05


def test_cldice_gradient_is_finite_and_nonzero():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, *SHAPE, requires_grad=True)
    labels = torch.stack([_tube(2), _tube_with_twig()])[:, None]
    make_loss("dice_ce_cldice")(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_dice_ce_cldice_adds_the_weighted_cldice_to_dice_ce():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, *SHAPE)
    labels = torch.stack([_tube(2), _tube_with_twig()])[:, None]
    total = make_loss("dice_ce_cldice", cldice_weight=0.3, cldice_iterations=2)(logits, labels)
    expected = (DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
                + 0.3 * cldice_loss(2)(logits, labels))
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    assert float(make_loss()(logits, labels)) == pytest.approx(
        float(DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)), rel=1e-6)


def _cross(shape=SHAPE) -> np.ndarray:
    """The axis AXIS along x and its four neighbours in z and y, in every x slice."""
    cross = np.zeros(shape, bool)
    z, y = AXIS
    cross[z, y, :] = cross[z - 1, y, :] = cross[z + 1, y, :] = True
    cross[z, y - 1, :] = cross[z, y + 1, :] = True
    return cross


@pytest.mark.parametrize("radius", [2, 4])
def test_tubed_skeleton_is_the_axis_grown_by_a_voxel_whatever_the_radius(radius):
    tube = _tube(radius).numpy()
    tubes = tubed_skeleton(tube)
    assert not (tubes & (tube == 0)).any()                     # inside the label
    inner = slice(radius + 2, SHAPE[2] - radius - 2)           # away from the tube's ends
    assert np.array_equal(tubes[:, :, inner], _cross()[:, :, inner])
    assert not tubed_skeleton(np.zeros(SHAPE)).any()


def test_skeleton_recall_by_closed_forms():
    label = _tube_with_twig()
    tubes = torch.from_numpy(tubed_skeleton(label.numpy())).float()
    n = float(tubes.sum())
    loss = SkeletonRecallLoss()
    assert float(loss(_logits(label), _label(label))) < 1e-6                     # all found
    assert float(loss(_logits(tubes), _label(label))) < 1e-6                     # axis enough
    assert float(loss(_logits(torch.zeros(SHAPE)), _label(label))) == pytest.approx(
        1 - 1 / (n + 1), rel=1e-6)                                              # nothing found
    assert float(loss(torch.zeros(1, 2, *SHAPE), _label(label))) == pytest.approx(
        1 - (0.5 * n + 1) / (n + 1), rel=1e-6)                                  # unsure: 0.5
    missed = float((tubes * (1 - _tube(2))).sum())                              # the twig's axis
    assert missed > 0
    assert float(loss(_logits(_tube(2)), _label(label))) == pytest.approx(
        missed / (n + 1), rel=1e-5)
    everything = torch.ones(SHAPE)                                              # no precision term
    assert float(loss(_logits(everything), _label(label))) < 1e-6
    empty = torch.zeros(SHAPE)
    assert float(loss(torch.randn(1, 2, *SHAPE), _label(empty))) == pytest.approx(0.0, abs=1e-6)


def test_skeleton_recall_is_a_batch_mean_with_gradient_only_on_the_tubes():
    torch.manual_seed(2)
    logits = torch.randn(2, 2, *SHAPE, requires_grad=True)
    labels = torch.stack([_tube(4), _tube_with_twig()])[:, None]
    loss = SkeletonRecallLoss()
    batch = loss(logits, labels)
    with torch.no_grad():
        each = [float(loss(logits[i:i + 1], labels[i:i + 1])) for i in range(2)]
    assert float(batch.detach()) == pytest.approx(sum(each) / 2, rel=1e-6)
    batch.backward()
    tubes = np.stack([tubed_skeleton(label[0].numpy()) for label in labels])
    grad = logits.grad.abs().sum(dim=1).numpy()
    assert (grad[tubes] > 0).all() and not grad[~tubes].any()


def test_dice_ce_skeleton_recall_adds_the_weighted_recall_to_dice_ce():
    torch.manual_seed(3)
    logits = torch.randn(2, 2, *SHAPE)
    labels = torch.stack([_tube(2), _tube_with_twig()])[:, None]
    total = make_loss("dice_ce_skeleton_recall", skeleton_recall_weight=0.7)(logits, labels)
    expected = (DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
                + 0.7 * SkeletonRecallLoss()(logits, labels))
    assert float(total) == pytest.approx(float(expected), rel=1e-6)


def test_unknown_loss_is_refused():
    with pytest.raises(InputError, match="'nope'"):
        make_loss("nope")
