"""Adaptation (``dineuro adapt``): the masked loss, pseudo-labels, the hold-out choice, mixed
batches, strong augmentation, the run folder, exact resume and the command line.

Cheap parts are checked against independent computations written here (MONAI's loss, the loss
docstring's formula in float64, brute-force distances). The runs use a tiny scratch network on
16x32x32 crops whose foreground bias is lowered, so that its map on the tiny lab stacks is
mostly low with a few bright specks: the tracer keeps some of them, and the pseudo-labels hold
all three values instead of being all ignored (an untrained network's map is about 0.5
everywhere, which the tracer refuses).
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import Stop, assert_input_error, assert_same_weights, invoke, weights_of

from dineuro.adapt import (
    BACKGROUND,
    FOREGROUND,
    IGNORE,
    AdaptConfig,
    adapt,
    pseudo_label,
)
from dineuro.adapt.crops import MixedCrops
from dineuro.adapt.guards import agreement
from dineuro.adapt.labels import label_stats, local_background, not_brighter
from dineuro.adapt.loss import SMOOTH, MaskedDiceCE
from dineuro.adapt.stacks import holdout_names
from dineuro.checkpoint import load_checkpoint, load_model, save_checkpoint
from dineuro.data.normalize import NormalizationConfig
from dineuro.data.render import render_mask
from dineuro.errors import InputError
from dineuro.io import read_swc, read_volume, write_volume
from dineuro.io.swc import SwcTree
from dineuro.models.build import build_model
from dineuro.predict import signal_level, sliding_window_predict
from dineuro.trace import trace
from dineuro.train.config import AugmentConfig
from dineuro.train.data import (
    BLUR_PROB,
    SEED_BOUND,
    STRONG_CONTRAST_PROB,
    STRONG_NOISE_PROB,
    Augmenter,
    CropSampler,
    Stack,
)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # A tiny network's traced F1 moves at random between rounds, so the forgetting guard may
    # warn here; its rule is tested in test_guards.py.
    pytest.mark.filterwarnings("ignore::dineuro.adapt.AdaptWarning"),
]

CROP = (16, 32, 32)
SPACING = (1.0, 0.5, 0.5)
#: Foreground logit minus background logit is lowered by this much in the test network.
FOREGROUND_SHIFT = 1.0


def _interrupt(config: AdaptConfig, stage: str, at: int) -> None:
    """Run adapt until its progress reports ``at`` in ``stage``, then stop it there, as
    Ctrl-C would."""
    def stop(name, done, total, loss):
        if (name, done) == (stage, at):
            raise Stop

    with pytest.raises(Stop):
        adapt(config, progress=stop)


def _empty_tree() -> SwcTree:
    return SwcTree(ids=[], types=[], xyz=np.zeros((0, 3)), radius=[], parents=[])




# -- loss -----------------------------------------------------------------------------------
def _masked_dice_ce_float64(logits: np.ndarray, labels: np.ndarray) -> float:
    """The formula of :mod:`dineuro.adapt.loss`'s docstring, in float64 numpy."""
    logits = logits.astype(np.float64)
    labels = labels[:, 0]
    w = (labels != IGNORE).astype(np.float64)
    y = np.stack([labels == 0, labels == 1], axis=1).astype(np.float64)  # ignored: both 0
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    axes = tuple(range(2, logits.ndim))
    wide = w[:, None]
    inter = (wide * p * y).sum(axes)
    denom = (wide * p).sum(axes) + (wide * y).sum(axes)
    dice = np.mean(1 - (2 * inter + SMOOTH) / (denom + SMOOTH))
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = (labels == 1).astype(int)
    ce_voxel = -np.take_along_axis(log_p, target[:, None], axis=1)[:, 0]
    ce = (w * ce_voxel).sum() / w.sum()
    return float(dice + ce)


def test_masked_loss_without_ignored_voxels_is_monais_dice_ce():
    """Synthetic crops have no ignored voxels; they must be scored as training scored them."""
    from monai.losses import DiceCELoss

    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(3, 2, 4, 5, 6, generator=gen)
    labels = (torch.rand(3, 1, 4, 5, 6, generator=gen) < 0.3).float()
    labels[2] = 0  # a crop without foreground: MONAI's smoothing decides its Dice
    ours = MaskedDiceCE()(logits, labels)
    monai = DiceCELoss(to_onehot_y=True, softmax=True)(logits, labels)
    torch.testing.assert_close(ours, monai, rtol=1e-6, atol=1e-6)


def test_masked_loss_with_ignored_voxels_follows_its_formula():
    """An independent float64 computation of the documented formula, with a crop whose voxels
    are all ignored (it then adds 0 to every Dice term of the mean)."""
    rng = np.random.default_rng(1)
    logits = 2 * rng.standard_normal((3, 2, 4, 5, 6)).astype(np.float32)
    labels = rng.choice([0.0, 1.0, float(IGNORE)], size=(3, 1, 4, 5, 6), p=[0.5, 0.2, 0.3])
    labels[1] = IGNORE
    labels = labels.astype(np.float32)
    ours = float(MaskedDiceCE()(torch.from_numpy(logits), torch.from_numpy(labels)))
    assert ours == pytest.approx(_masked_dice_ce_float64(logits, labels), rel=1e-5)
    # The ignored voxels matter: treating them as background gives another value.
    as_background = np.where(labels == IGNORE, 0.0, labels).astype(np.float32)
    assert abs(ours - _masked_dice_ce_float64(logits, as_background)) > 1e-3


def test_ignored_voxels_change_neither_loss_nor_gradient():
    """Whatever the network says where the label is undecided neither counts nor is pushed."""
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 3, (2, 1, 5, 6, 7), generator=gen).float()
    ignored = (labels == IGNORE).expand(2, 2, 5, 6, 7)
    logits = torch.randn(2, 2, 5, 6, 7, generator=gen, requires_grad=True)
    loss = MaskedDiceCE()(logits, labels)
    loss.backward()
    assert ignored.any() and (~ignored).any()
    assert torch.all(logits.grad[ignored] == 0)
    assert torch.all(logits.grad[~ignored] != 0)
    other = logits.detach().clone()
    other[ignored] = 10 * torch.randn(int(ignored.sum()), generator=gen)
    assert torch.equal(MaskedDiceCE()(other, labels), loss.detach())
    # ... while changing the foreground logit of decided voxels does change it.
    decided = other.clone()
    decided[:, 1][~ignored[:, 1]] += 1.0
    assert not torch.equal(MaskedDiceCE()(decided, labels), loss.detach())


def test_masked_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same size"):
        MaskedDiceCE()(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 1, 4, 4, 5))
    with pytest.raises(ValueError, match="logits"):
        MaskedDiceCE()(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))


# -- pseudo-labels --------------------------------------------------------------------------
#: A straight tube along x plus a short separate one: two trees of two nodes each.
TUBES = SwcTree(ids=[1, 2, 3, 4], types=[3, 3, 3, 3],
                xyz=[[3, 5, 3], [18, 5, 3], [20, 1, 5], [22, 2, 5]],
                radius=[1.5, 1.5, 1.0, 1.0], parents=[-1, 1, -1, 3])
SHAPE = (7, 11, 25)
ANISOTROPIC = (2.0, 1.0, 1.0)


def _quantised_prob(seed: int = 3) -> np.ndarray:
    """Map values k/8: the thresholds 0.25 and 0.5 occur exactly."""
    return np.random.default_rng(seed).integers(0, 9, SHAPE) / 8.0


def _brute_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Physical distance (x voxels) of every voxel to the nearest voxel of ``mask``, by
    comparing every pair of voxels."""
    scale = np.asarray(spacing, float) / spacing[2]
    grid = np.stack(np.meshgrid(*map(np.arange, mask.shape), indexing="ij"), -1) * scale
    points = grid.reshape(-1, 3)
    targets = points[mask.ravel()]
    pairs = np.sqrt(((points[:, None, :] - targets[None, :, :]) ** 2).sum(-1))
    return pairs.min(axis=1).reshape(mask.shape)


@pytest.mark.parametrize("core", [1.0, 0.5])
def test_pseudo_label_against_brute_force(core):
    """Foreground: the tube's core (radii times ``core``) where the map is sure; background:
    the map low and physically farther than the margin from every whole tube (z voxels count
    twice here); the rest ignored. The thresholds and the margin are hit exactly by some
    voxels, so their sides matter."""
    prob = _quantised_prob()
    fg_prob, bg_prob, margin = 0.5, 0.25, 2.0
    label = pseudo_label(prob, TUBES, ANISOTROPIC, fg_prob, bg_prob, margin, core)
    tube = render_mask(TUBES, SHAPE, ANISOTROPIC)
    distance = _brute_distance(tube, ANISOTROPIC)
    inner = render_mask(replace(TUBES, radius=TUBES.radius * core), SHAPE, ANISOTROPIC)
    assert (core == 1) == np.array_equal(inner, tube)
    foreground = inner & (prob >= fg_prob)
    background = (prob < bg_prob) & (distance > margin)
    expected = np.full(SHAPE, IGNORE, np.uint8)
    expected[foreground] = FOREGROUND
    expected[background] = BACKGROUND
    assert label.dtype == np.uint8 and label.shape == SHAPE
    np.testing.assert_array_equal(label, expected)
    # The case discriminates: every value occurs, and the boundaries are exercised.
    assert set(np.unique(label)) == {BACKGROUND, FOREGROUND, IGNORE}
    assert np.any(tube & (prob == fg_prob)) and np.any((distance == margin) & (prob < bg_prob))
    assert np.any((prob == bg_prob) & (distance > margin))
    # Anisotropy matters: the isotropic label of the same map differs.
    assert not np.array_equal(label, pseudo_label(prob, TUBES, (1, 1, 1), fg_prob, bg_prob,
                                                  margin, core))


def _brute_running_mean(image: np.ndarray) -> np.ndarray:
    """Mean of every voxel's 3x3x3 neighbourhood, over the neighbours inside the stack."""
    padded = np.pad(image.astype(np.float64), 1, constant_values=np.nan)
    shifted = [padded[1 + dz:1 + dz + image.shape[0], 1 + dy:1 + dy + image.shape[1],
                      1 + dx:1 + dx + image.shape[2]]
               for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.nanmean(shifted, axis=0)


def _ramp(shape: tuple[int, int, int], low: float, high: float) -> np.ndarray:
    """An even background rising from ``low`` to ``high`` along x."""
    return np.broadcast_to(np.linspace(low, high, shape[2], dtype=np.float32), shape).copy()


def test_local_background_is_the_ramp_under_a_thin_line():
    """Between block centres, the local background of an even ramp is the ramp; a bright
    one-voxel line moves a block's median by at most half a ramp step (a block mean would move
    by 8/256 of the line's brightness, three times that)."""
    shape = (16, 40, 64)
    ramp = _ramp(shape, 0.1, 0.7)
    image = ramp.copy()
    image[8, 20, :] += 0.5
    image[8, 5:35, 30] += 0.5
    step = 0.6 / (shape[2] - 1)
    inside = (slice(None), slice(None), slice(4, -4))
    np.testing.assert_allclose(local_background(ramp)[inside], ramp[inside], atol=1e-5)
    np.testing.assert_allclose(local_background(image)[inside], ramp[inside], atol=step / 2)


def test_not_brighter_keeps_a_dim_fibre_on_the_dark_side_out_of_background():
    """A dim fibre where an uneven background is dark is brighter than its surroundings, so it
    is not background, while the bright side without a fibre is. The stack-wide signal level
    (the window test of prediction) called the same fibre background."""
    rng = np.random.default_rng(3)
    shape = (16, 40, 64)
    image = (_ramp(shape, 0.05, 0.6) + rng.normal(0, 0.02, shape)).astype(np.float32)
    image[8, 20, 4:20] += 0.3
    dark = not_brighter(image)
    assert not dark[8, 20, 5:19].any()
    assert dark[:, :, 48:].mean() > 0.7
    level = signal_level(image.__getitem__, image.shape).threshold
    assert (_brute_running_mean(image)[8, 20, 5:19] <= level).all()


def test_not_brighter_follows_its_definition():
    """Against the docstring, computed here: the running mean (brute force) minus the local
    background, at most its median plus ``contrast`` scaled MADs."""
    rng = np.random.default_rng(4)
    image = (_ramp(SHAPE, 0.0, 0.4) + rng.random(SHAPE) * 0.1).astype(np.float32)
    image[3, 5, 4:20] = 0.9
    excess = _brute_running_mean(image) - local_background(image)
    centre = np.median(excess)
    noise = 1.4826 * np.median(np.abs(excess - centre))
    for contrast in (0.5, 1.0, 2.0):
        expected = excess <= centre + contrast * noise
        found = not_brighter(image, contrast)
        assert np.mean(found != expected) < 1e-3  # float32 against float64 at the threshold
        assert not found[3, 5, 5:19].any()


def test_pseudo_label_background_needs_a_dark_image():
    """With the image, a low map is background only where the image has no signal: a
    neurite the model missed is ignored, not taught as background."""
    prob = _quantised_prob()
    image = np.zeros(SHAPE, np.float32)
    image[5, 8, 2:23] = 1.0  # a fibre the tracer did not find, away from TUBES
    without = pseudo_label(prob, TUBES, ANISOTROPIC, 0.5, 0.25, 2.0)
    with_image = pseudo_label(prob, TUBES, ANISOTROPIC, 0.5, 0.25, 2.0, image=image)
    dark = not_brighter(image)
    np.testing.assert_array_equal(with_image == BACKGROUND, (without == BACKGROUND) & dark)
    np.testing.assert_array_equal(with_image == FOREGROUND, without == FOREGROUND)
    assert np.any((without == BACKGROUND) & ~dark)
    assert not np.any(with_image[5, 8, 2:23] == BACKGROUND)


def test_pseudo_label_of_an_empty_tree_has_no_foreground():
    """No trace, nothing sure to be a neurite: low map values are background, the rest
    ignored, even where the map is high."""
    prob = _quantised_prob()
    label = pseudo_label(prob, _empty_tree(), ANISOTROPIC, 0.5, 0.25, 2.0)
    assert not np.any(label == FOREGROUND)
    np.testing.assert_array_equal(label == BACKGROUND, prob < 0.25)
    np.testing.assert_array_equal(label == IGNORE, prob >= 0.25)


@pytest.mark.parametrize("fg_prob, bg_prob, margin, core", [
    (0.3, 0.4, 1.0, 0.5), (1.5, 0.1, 1.0, 0.5), (0.5, -0.1, 1.0, 0.5), (0.5, 0.1, -1.0, 0.5),
    (0.5, 0.1, 1.0, 1.5), (0.5, 0.1, 1.0, -0.1)])
def test_pseudo_label_refuses_bad_thresholds(fg_prob, bg_prob, margin, core):
    with pytest.raises(InputError):
        pseudo_label(_quantised_prob(), TUBES, (1, 1, 1), fg_prob, bg_prob, margin, core)


def test_label_stats_count_the_label():
    prob = _quantised_prob()
    label = pseudo_label(prob, TUBES, ANISOTROPIC, 0.5, 0.25, 2.0)
    stats = label_stats(label, prob, TUBES, fg_prob=0.5)
    assert stats.voxels == label.size
    assert stats.foreground == np.count_nonzero(label == FOREGROUND)
    assert stats.background == np.count_nonzero(label == BACKGROUND)
    assert stats.ignored == np.count_nonzero(label == IGNORE)
    assert (stats.trees, stats.nodes) == (2, 4)
    assert stats.map_foreground == np.count_nonzero(prob >= 0.5)
    shares = stats.to_dict()
    assert shares["foreground_share"] == pytest.approx(stats.foreground / label.size)
    assert shares["ignored_share"] == pytest.approx(stats.ignored / label.size)


# -- hold-out -------------------------------------------------------------------------------
@pytest.mark.parametrize("n, share, expected", [
    (1, 0.5, 0), (2, 0.2, 0), (2, 0.9, 1),  # fewer than 3 stacks: round(share * n), not all
    (3, 0.2, 1), (4, 0.1, 1), (13, 0.2, 3), (10, 0.5, 5),  # at least one, else round()
    (3, 0.9, 2), (10, 0.99, 9),  # never all
    (10, 0.0, 0)])
def test_holdout_sizes_follow_the_docstring(n, share, expected):
    """``round(share * n)``, at least one from 3 stacks on when share > 0, never all; a sorted
    subset, the same for the same seed."""
    names = [f"s{i:02d}" for i in range(n)]
    held = holdout_names(names, share, seed=4)
    assert len(held) == expected
    assert held == sorted(set(held)) and set(held) <= set(names)
    assert holdout_names(list(names), share, seed=4) == held


def test_holdout_choice_depends_on_the_seed():
    names = [f"s{i:02d}" for i in range(10)]
    choices = {tuple(holdout_names(names, 0.2, seed)) for seed in range(10)}
    assert len(choices) > 1
    assert holdout_names(names, 0.2, 0) == holdout_names(names, 0.2, 0)


# -- batches and augmentation ---------------------------------------------------------------
def _stack(name: str, raw: np.ndarray, label: np.ndarray) -> Stack:
    return Stack(name, raw, label, (float(raw.min()), float(raw.max())), SPACING,
                 np.flatnonzero(label == FOREGROUND).astype(np.int64))


@pytest.fixture(scope="module")
def mixed_stacks():
    """Lab stacks labelled all-ignored and synthetic ones with 0/1 labels: a crop's label
    values tell where it came from."""
    rng = np.random.default_rng(5)
    lab = [_stack(f"lab{i}", rng.integers(0, 255, (20, 40, 40), dtype=np.uint8),
                  np.full((20, 40, 40), IGNORE, np.uint8)) for i in range(2)]
    synthetic = []
    for i in range(2):
        label = np.zeros((20, 40, 40), np.uint8)
        label[8:12, 18:22, :] = FOREGROUND
        synthetic.append(_stack(f"syn{i}", rng.integers(0, 255, (20, 40, 40), dtype=np.uint8),
                                label))
    return lab, synthetic


def test_mixed_batches_put_synthetic_crops_last(mixed_stacks):
    lab, synthetic = mixed_stacks
    crops = MixedCrops(lab, synthetic, CROP, 2, 0.5, np.random.default_rng(6))
    for _ in range(3):
        images, labels = crops.batch(5)
        assert images.shape == labels.shape == (5, 1, *CROP)
        assert torch.all(labels[:3] == IGNORE)  # the lab's
        assert not torch.any(labels[3:] == IGNORE)  # synthetic: 0/1 only
        assert set(labels[3:].unique().tolist()) <= {0.0, 1.0}
    assert torch.any(labels[3:] == 1)  # foreground_prob 0.5: some centred on the tube


def test_mixed_batches_are_the_documented_draws(mixed_stacks):
    """One generator: per crop, a draw from the lab's or the synthetic sampler, then a seed for
    its augmentation, strong for the lab's and the usual for synthetic ones."""
    lab, synthetic = mixed_stacks
    images, labels = MixedCrops(lab, synthetic, CROP, 1, 0.5,
                                np.random.default_rng(7)).batch(3)
    rng = np.random.default_rng(7)
    lab_sampler = CropSampler(lab, CROP, 0.5, rng)
    synthetic_sampler = CropSampler(synthetic, CROP, 0.5, rng)
    strong, weak = Augmenter(AugmentConfig(), CROP, strong=True), Augmenter(AugmentConfig(), CROP)
    for index, (sampler, augmenter) in enumerate([(lab_sampler, strong), (lab_sampler, strong),
                                                  (synthetic_sampler, weak)]):
        image, label, _ = sampler.draw()
        image, label = augmenter(image, label, int(rng.integers(SEED_BOUND)))
        assert torch.equal(images[index], image) and torch.equal(labels[index], label), index


def test_mixed_batches_state_replays_the_batch(mixed_stacks):
    lab, synthetic = mixed_stacks
    crops = MixedCrops(lab, synthetic, CROP, 1, 0.5, np.random.default_rng(8))
    crops.batch(2)
    state = crops.state()
    first = crops.batch(3)
    second = crops.batch(3)
    assert not torch.equal(first[0], second[0])
    other = MixedCrops(lab, synthetic, CROP, 1, 0.5, np.random.default_rng(99))
    other.load_state(json.loads(json.dumps(state)))  # plain types, as a checkpoint holds them
    again = other.batch(3)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_mixed_batches_refuse_impossible_mixes(mixed_stacks):
    """Synthetic crops need synthetic stacks, and every batch keeps one crop of the lab's;
    without synthetic crops no synthetic stacks are needed."""
    lab, synthetic = mixed_stacks
    with pytest.raises(ValueError, match="no synthetic stacks"):
        MixedCrops(lab, [], CROP, 1, 0.5, np.random.default_rng(0))
    crops = MixedCrops(lab, synthetic, CROP, 2, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one of the lab's"):
        crops.batch(2)
    _, labels = MixedCrops(lab, [], CROP, 0, 0.5, np.random.default_rng(0)).batch(2)
    assert torch.all(labels == IGNORE)


def test_strong_augmentation_adds_intensity_transforms_only():
    """With one seed, strong augmentation is the usual one followed by blur, gamma and noise,
    each with its own probability. So the label (hence every spatial choice) is the usual one,
    and the image is the usual one transformed again: unchanged when none of the three fires,
    changed but in the same voxel order when only the gamma fires (a monotone map), reordered
    when the blur or the noise fires."""
    rng = np.random.default_rng(9)
    image = rng.random(CROP, dtype=np.float32)
    label = rng.random(CROP) < 0.1
    weak, strong = Augmenter(AugmentConfig(), CROP), Augmenter(AugmentConfig(), CROP, strong=True)
    seeds = 300
    outcomes = {"unchanged": 0, "monotone": 0, "reordered": 0}
    for seed in range(seeds):
        weak_image, weak_label = weak(image, label, seed)
        strong_image, strong_label = strong(image, label, seed)
        assert torch.equal(weak_label, strong_label), seed
        assert torch.isfinite(strong_image).all()
        before, after = weak_image.ravel().numpy(), strong_image.ravel().numpy()
        if np.array_equal(before, after):
            outcomes["unchanged"] += 1
        elif np.all(np.diff(after[np.argsort(before, kind="stable")]) >= 0):
            outcomes["monotone"] += 1
        else:
            outcomes["reordered"] += 1
    keep_order = (1 - BLUR_PROB) * (1 - STRONG_NOISE_PROB)
    expected = {"unchanged": keep_order * (1 - STRONG_CONTRAST_PROB),
                "monotone": keep_order * STRONG_CONTRAST_PROB, "reordered": 1 - keep_order}
    for outcome, p in expected.items():
        sd = (p * (1 - p) / seeds) ** 0.5
        assert abs(outcomes[outcome] / seeds - p) < 4 * sd, (outcome, outcomes)


# -- runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapt")


@pytest.fixture(scope="module")
def synthetic(runs) -> Path:
    """4 tiny synthetic stacks: 2 to mix in, 1 val and 1 test for the Dice guard rail."""
    from dineuro.data.synth import PRESETS, write_synthetic_dataset

    config = replace(PRESETS["small"], n_stacks=4, shape=(16, 48, 48), navis_fraction=0)
    return write_synthetic_dataset(runs / "synthetic", config)


@pytest.fixture(scope="module")
def lab(runs) -> list[Path]:
    """The lab's 3 unlabelled stacks (other neurons than the synthetic set's)."""
    from dineuro.data.synth import PRESETS, synthesize_stack

    config = replace(PRESETS["small"], shape=(16, 48, 48), navis_fraction=0, seed=7)
    paths = []
    for index in range(3):
        stack = synthesize_stack(config, index)
        paths.append(runs / f"lab{index}.tif")
        write_volume(paths[-1], stack.image, stack.spacing)
    return paths


@pytest.fixture(scope="module")
def start(runs) -> Path:
    """A tiny scratch network saved as training saves one, its foreground logit lowered."""
    torch.manual_seed(0)
    net = build_model("tiny", transfer="scratch", crop=CROP, patch=(8, 16, 16))
    with torch.no_grad():
        bias = net.out.conv.conv.bias
        bias[1] = bias[0] - FOREGROUND_SHIFT
    return save_checkpoint(runs / "start.pt", net, normalization=NormalizationConfig().to_dict(),
                           spacing=list(SPACING), step=0, val_dice=None)


def _config(lab, synthetic, start, out: Path, **changes) -> AdaptConfig:
    settings = dict(stacks=[str(p) for p in lab], out=str(out), model=str(start), rounds=2,
                    steps=4, save_every=2, warmup_steps=1, lr=1e-3, synthetic=str(synthetic),
                    device="cpu", seed=3)
    return AdaptConfig(**(settings | changes))


@pytest.fixture(scope="module")
def straight(runs, lab, synthetic, start):
    """Two rounds of 4 steps, uninterrupted: config, result, weights, progress calls."""
    config = _config(lab, synthetic, start, runs / "straight" / "adapted.pt")
    seen = []
    result = adapt(config, progress=lambda *a: seen.append(a))
    return config, result, weights_of(result.model), seen


def test_start_checkpoint_loads(start):
    """The hand-built starting checkpoint is one load_model (hence adapt) accepts."""
    model, meta = load_model(start)
    assert tuple(meta["model_config"]["crop"]) == CROP and meta["spacing"] == list(SPACING)
    assert NormalizationConfig.from_dict(meta["normalization"]) == NormalizationConfig()
    bias = model.out.conv.conv.bias.detach()
    assert float(bias[0] - bias[1]) == pytest.approx(FOREGROUND_SHIFT)


def _metrics(work: Path) -> list[tuple[int, int, float, float]]:
    """(round, step, lr, loss) of every metrics.csv row (seconds differ between runs)."""
    with (work / "metrics.csv").open() as handle:
        return [(int(r["round"]), int(r["step"]), float(r["lr"]), float(r["loss"]))
                for r in csv.DictReader(handle)]


def _without_seconds(data):
    if isinstance(data, dict):
        return {k: _without_seconds(v) for k, v in data.items() if k != "seconds"}
    if isinstance(data, list):
        return [_without_seconds(v) for v in data]
    return data


def _probability(model, raw: np.ndarray, **options) -> np.ndarray:
    from dineuro.predict import sliding_window_predict

    return sliding_window_predict(model, NormalizationConfig().normalize(raw), CROP,
                                  overlap=0.5, device="cpu", **options)


def test_run_folder_and_checkpoint(straight, lab, start):
    """Every documented file, in agreement with the checkpoint, the progress calls and a
    recomputation of round 1's labels from the starting network and the SWC written."""
    config, result, weights, seen = straight
    work = config.work
    assert work == Path(config.out).parent / "adapted.adapt" and result.work == work
    assert AdaptConfig.from_dict(yaml.safe_load((work / "config.yaml").read_text())) == config
    # metrics.csv: one row per step; each round has its own warm-up and decay.
    rows = _metrics(work)
    assert [(r, s) for r, s, _, _ in rows] == [(r, s) for r in (1, 2) for s in range(1, 5)]
    lrs = [lr for _, _, lr, _ in rows]
    assert lrs[:4] == lrs[4:] and lrs[0] == pytest.approx(config.lr) and lrs[3] < lrs[0]
    training = [s for s in seen if s[0].startswith("training")]
    assert [s[:3] for s in training] == [(f"training round {r}", s, 4) for r in (1, 2)
                                         for s in range(1, 5)]
    assert [round(s[3], 6) for s in training] == [loss for _, _, _, loss in rows]
    # rounds.json mirrors the result: the guard rails before and after each round.
    rounds = json.loads((work / "rounds.json").read_text())
    names = sorted(p.stem for p in lab)
    assert rounds["held_out"] == holdout_names(names, config.holdout, config.seed)
    assert len(rounds["held_out"]) == 1
    assert [r["round"] for r in rounds["rounds"]] == [1, 2]
    assert _without_seconds(rounds["rounds"]) == _without_seconds(result.rounds)
    assert _without_seconds(rounds["before"]) == _without_seconds(result.before)
    # The starting network agrees with its own labels where they decide: foreground is where
    # its map is >= fg_prob, background where it is below bg_prob.
    assert result.before["agreement"] == 1.0
    # Labels: 0/1/2, counted in labels.json, round 1 from the starting network.
    network, _ = load_model(start)
    for round_ in (1, 2):
        stats = json.loads((work / f"round_{round_}" / "labels.json").read_text())
        assert sorted(stats) == names
        for name in names:
            label = read_volume(work / f"round_{round_}" / f"{name}_label.tif")
            assert label.array.dtype == np.uint8 and set(np.unique(label.array)) <= {0, 1, 2}
            assert tuple(label.spacing) == SPACING
            assert stats[name]["foreground"] == np.count_nonzero(label.array == FOREGROUND)
            assert stats[name]["background"] == np.count_nonzero(label.array == BACKGROUND)
            assert stats[name]["ignored"] == np.count_nonzero(label.array == IGNORE)
    foreground = 0
    for path in lab:
        label = read_volume(work / "round_1" / f"{path.stem}_label.tif").array
        prob = _probability(network, read_volume(path).array)
        tree = trace(prob, SPACING)
        assert len(tree) > 0
        foreground += np.count_nonzero(label == FOREGROUND)
        image = NormalizationConfig().normalize(read_volume(path).array)
        np.testing.assert_array_equal(label, pseudo_label(prob, tree, SPACING, config.fg_prob,
                                                          config.bg_prob, config.margin,
                                                          config.core, image))
        written = read_swc(work / "round_1" / f"{path.stem}.swc")  # 3 decimals
        np.testing.assert_allclose(written.xyz, tree.xyz, atol=5e-4)
        np.testing.assert_array_equal(written.parents, tree.parents)
        # Round 2 labelled again, with the fine-tuned network.
        assert not np.array_equal(read_volume(work / "round_2" / f"{path.stem}_label.tif"
                                              ).array, label)
    assert foreground > 0  # the comparison is not of empty labels
    # The checkpoint: the last round's network, loadable, with its run and where it came from.
    model, meta = load_model(config.out)
    assert_same_weights(weights_of(model), weights)
    assert any(not torch.equal(weights[k], v) for k, v in network.state_dict().items())
    assert meta["adapt_config"] == config.to_dict() and meta["step"] == 8
    assert meta["val_dice"] == result.rounds[-1]["synthetic_dice"]
    assert meta["spacing"] == list(SPACING)
    assert meta["normalization"] == NormalizationConfig().to_dict()
    assert "resume" not in load_checkpoint(config.out)


def test_synthetic_guard_rails_score_held_back_synthetic_stacks(straight, synthetic, start):
    """The 'before' scores: the starting network on the synthetic val and test stacks, every
    window in float32; Dice of mask > 0.5 and length F1 of its trace against the gold SWC
    (0 for an empty trace), averaged over stacks."""
    from dineuro.data.dataset import open_dataset
    from dineuro.evaluate import compare_trees, dice

    dataset = open_dataset(synthetic)
    split = dataset.split()
    network, _ = load_model(start)
    dices, f1s = [], []
    for name in split["val"] + split["test"]:
        image = dataset.image(name)
        prob = _probability(network, image.array, precision="fp32", skip_empty=False)
        dices.append(dice(prob > 0.5, dataset.label(name)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = trace(prob, image.spacing)
        f1s.append(compare_trees(tree, dataset.tree(name)).f1 if len(tree) else 0.0)
    before = straight[1].before
    assert before["synthetic_dice"] == pytest.approx(np.mean(dices), abs=1e-9)
    assert before["synthetic_f1"] == pytest.approx(np.mean(f1s), abs=1e-9)


@pytest.mark.parametrize("stage, at, redone", [
    ("training round 2", 3, 2),  # saved at step 2 of round 2
    ("labelling round 2", 2, 4),  # saved at the end of round 1; round_2/ lacks labels.json
    ("training round 1", 1, 8)])  # saved after the first check only
def test_resume_continues_exactly(straight, lab, synthetic, start, runs, stage, at, redone):
    """Wherever it was interrupted, the resumed run redoes the steps since the last save and
    ends with the uninterrupted run's weights, bit for bit, and the same files; save_every is
    one of the settings a resumed run may change."""
    config, result, weights, seen = straight
    ours = replace(config, out=str(runs / f"resumed-{stage[0]}{stage[-1]}-{at}" / "adapted.pt"))

    _interrupt(ours, stage, at)
    assert not Path(ours.out).exists()
    resumed_seen = []
    resumed = adapt(replace(ours, save_every=3), progress=lambda *a: resumed_seen.append(a),
                    resume=True)
    assert_same_weights(weights_of(resumed.model), weights)
    assert_same_weights(weights_of(load_model(ours.out)[0]), weights)
    assert _metrics(ours.work) == _metrics(config.work)
    assert _without_seconds(resumed.rounds) == _without_seconds(result.rounds)
    assert _without_seconds(json.loads((ours.work / "rounds.json").read_text())) == \
        _without_seconds(json.loads((config.work / "rounds.json").read_text()))
    for round_ in (1, 2):
        for path in lab:
            name = f"round_{round_}/{path.stem}_label.tif"
            assert np.array_equal(read_volume(ours.work / name).array,
                                  read_volume(config.work / name).array), name
    # The resumed run did only what was left: the losses of the steps after the last save.
    losses = [s[3] for s in resumed_seen if s[0].startswith("training")]
    all_losses = [s[3] for s in seen if s[0].startswith("training")]
    assert len(losses) == redone and losses == all_losses[-redone:]


def test_refusals_keep_existing_runs(straight, lab, synthetic, start, runs):
    """An existing checkpoint is never overwritten; a folder holding a run is neither restarted
    nor resumed with other settings; resume needs a run."""
    config = straight[0]
    with pytest.raises(InputError, match="already exists"):
        adapt(config)
    with pytest.raises(InputError, match="already exists"):
        adapt(config, resume=True)
    interrupted = _config(lab, synthetic, start, runs / "refusals" / "adapted.pt")

    _interrupt(interrupted, "training round 1", 3)
    before = {p: p.read_bytes() for p in interrupted.work.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="already holds an adapt run"):
        adapt(interrupted)
    with pytest.raises(InputError, match=r"other settings of \['steps'\]"):
        adapt(replace(interrupted, steps=5), resume=True)
    with pytest.raises(InputError, match=r"other settings of \['lr', 'seed'\]"):
        adapt(replace(interrupted, lr=0.5, seed=1), resume=True)
    assert {p: p.read_bytes() for p in interrupted.work.rglob("*") if p.is_file()} == before
    with pytest.raises(InputError, match="holds no state.pt"):
        adapt(_config(lab, synthetic, start, runs / "nothing" / "adapted.pt"), resume=True)


def test_fixed_labels_replace_pseudo_labels(lab, synthetic, start, runs):
    """Gold masks are trained on as given, and the hold-out agreement compares the starting
    map with them over every voxel (all are decided)."""
    network, _ = load_model(start)
    maps, masks = {}, {}
    for path in lab:
        # Gold: a slab plus half of the starting map's foreground, so that they partly agree.
        maps[path.stem] = _probability(network, read_volume(path).array) >= 0.5
        mask = np.zeros((16, 48, 48), bool)
        mask[6:10, 20:26, :] = True
        mask[:, :, :24] |= maps[path.stem][:, :, :24]
        masks[path.stem] = mask
    config = _config(lab, synthetic, start, runs / "fixed" / "adapted.pt", rounds=1, steps=1)
    result = adapt(config, fixed_labels=masks)
    stats = json.loads((config.work / "round_1" / "labels.json").read_text())
    for name, mask in masks.items():
        label = read_volume(config.work / "round_1" / f"{name}_label.tif").array
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, mask.astype(np.uint8))
        assert stats[name] == {"foreground": int(mask.sum()), "voxels": mask.size,
                               "fixed": True}
        assert not (config.work / "round_1" / f"{name}.swc").exists()
    (held,) = result.before["agreement_per_stack"]
    ours, gold = maps[held], masks[held]
    expected = 2 * np.count_nonzero(ours & gold) / (np.count_nonzero(ours) + gold.sum())
    assert 0 < expected < 1
    assert result.before["agreement"] == pytest.approx(expected)


def test_blend_keeps_that_share_of_the_weights_change(lab, synthetic, start, runs):
    """One round with blend 1 is the plain fine-tuned network; blend 0.5 ends halfway between
    it and the start, and blend 0 at the start itself."""
    ends = {}
    for blend in (1.0, 0.5, 0.0):
        config = _config(lab, synthetic, start, runs / f"blend-{blend}" / "adapted.pt",
                         rounds=1, blend=blend)
        ends[blend] = weights_of(adapt(config).model)
    first = weights_of(load_model(start)[0])
    moved = 0
    for key, begin in first.items():
        if not begin.is_floating_point():
            continue
        torch.testing.assert_close(ends[0.5][key], begin + 0.5 * (ends[1.0][key] - begin),
                                   rtol=0, atol=1e-6)
        assert torch.equal(ends[0.0][key], begin)
        moved += int(not torch.equal(ends[1.0][key], begin))
    assert moved > 0


def test_fixed_labels_are_checked_before_anything_is_written(lab, synthetic, start, runs):
    """A missing or misshapen gold mask is one sentence, and no run folder is left behind."""
    config = _config(lab, synthetic, start, runs / "bad-fixed" / "adapted.pt", steps=1)
    masks = {path.stem: np.zeros((16, 48, 48), bool) for path in lab}
    with pytest.raises(InputError, match=f"no label for stack '{lab[0].stem}'"):
        adapt(config, fixed_labels={k: v for k, v in masks.items() if k != lab[0].stem})
    with pytest.raises(InputError, match=r"shape \(16, 48, 47\)"):
        adapt(config, fixed_labels=masks | {lab[1].stem: np.zeros((16, 48, 47), bool)})
    assert not config.work.exists()


def test_a_bad_synthetic_folder_writes_nothing(lab, start, runs):
    """The mix-in dataset is checked before the run folder exists, so fixing the option and
    running again is possible."""
    config = _config(lab, runs / "no-such-dataset", start, runs / "bad-synth" / "adapted.pt")
    with pytest.raises(InputError, match="no-such-dataset"):
        adapt(config)
    assert not config.work.exists()


def test_interrupted_first_labelling_resumes(lab, synthetic, start, runs, straight):
    """Killed while labelling round 1 (before any check): the folder is resumable and ends
    where the uninterrupted run ends."""
    config = _config(lab, synthetic, start, runs / "first-labels" / "adapted.pt")

    _interrupt(config, "labelling round 1", 2)
    with pytest.raises(InputError, match="already holds an adapt run"):
        adapt(config)
    resumed = adapt(config, resume=True)
    assert_same_weights(weights_of(resumed.model), straight[2])


@pytest.mark.parametrize("batch_size, share, message", [
    (2, 0.8, "at least one of the lab's crops"), (1, 0.5, "no synthetic crop")])
def test_batch_mix_is_checked_in_the_config(batch_size, share, message):
    """Rounding share * batch to whole crops must leave a lab crop and, for a positive share,
    a synthetic one; zero share needs none."""
    with pytest.raises(InputError, match=message):
        AdaptConfig(stacks=["a.tif"], out="o.pt", batch_size=batch_size, synthetic_share=share)
    assert AdaptConfig(stacks=["a.tif"], out="o.pt", batch_size=1,
                       synthetic_share=0).synthetic_crops == 0


def test_agreement_is_unknown_when_the_labels_decide_nothing():
    """All-ignored labels (a map the tracer refused) say nothing about agreement; labels that
    decide only background agree with a map that finds nothing there."""
    prob = np.random.default_rng(0).random((4, 4, 4))
    assert agreement(prob, np.full((4, 4, 4), IGNORE, np.uint8), 0.5) is None
    background = np.zeros((4, 4, 4), np.uint8)
    assert agreement(np.zeros((4, 4, 4)), background, 0.5) == 1.0
    assert agreement(prob, background, 0.5) == 0.0


# -- command line ---------------------------------------------------------------------------
def test_cli_refuses_an_existing_checkpoint(lab, tmp_path):
    out = tmp_path / "adapted.pt"
    out.write_bytes(b"precious")
    result = invoke("adapt", *lab, "-o", out, "--steps", "1", "--device", "cpu")
    assert_input_error(result, out, "already exists")
    assert out.read_bytes() == b"precious" and not (tmp_path / "adapted.adapt").exists()


def test_cli_names_an_unknown_setting(lab, tmp_path):
    result = invoke("adapt", *lab, "-o", tmp_path / "adapted.pt", "--set", "learning_rate=0.1")
    assert result.code == 2 and "Traceback" not in result.err
    assert len(result.err_lines) == 1 and "learning_rate" in result.err_lines[0]
    assert not any(tmp_path.iterdir())


def test_cli_runs_an_adaptation(lab, synthetic, start, tmp_path):
    """Options and --set reach the config; the guard rails are printed; the result loads."""
    out = tmp_path / "adapted.pt"
    result = invoke("adapt", lab[0].parent, "-o", out, "--model", start, "--steps", "2",
                    "--synthetic", synthetic, "--set", "warmup_steps=0", "--set", "holdout=0.5",
                    "--device", "cpu", "--threads", "1")
    assert result.code == 0, result.err
    config = AdaptConfig.from_dict(yaml.safe_load((tmp_path / "adapted.adapt" / "config.yaml"
                                                   ).read_text()))
    assert sorted(Path(p).name for p in config.stacks) == [p.name for p in lab]
    assert (config.steps, config.rounds, config.warmup_steps, config.holdout) == (2, 1, 0, 0.5)
    assert config.model == str(start) and config.threads == 1
    assert "before: held-back synthetic stacks: traced F1" in result.err
    assert "round 1: held-back synthetic stacks: traced F1" in result.err
    assert load_model(out)[1]["adapt_config"] == config.to_dict()


def test_a_network_that_subtracts_a_background_adapts_seeing_it(lab, synthetic, runs,
                                                                 monkeypatch):
    """A lab stack's crops come from the stack normalised with the network's background taken
    off (a crop cannot take its own), and the adapted checkpoint keeps the background."""
    import dineuro.adapt.loop as loop
    from dineuro.train.data import NORMALISED

    norm = NormalizationConfig(background=2.0)
    torch.manual_seed(0)
    net = build_model("tiny", transfer="scratch", crop=CROP, patch=(8, 16, 16))
    start = save_checkpoint(runs / "start_background.pt", net, normalization=norm.to_dict(),
                            spacing=list(SPACING), step=0, val_dice=None)
    sources, crop_source = [], loop.crop_source
    monkeypatch.setattr(loop, "crop_source",
                        lambda *args: sources.append(crop_source(*args)) or sources[-1])
    config = _config(lab, synthetic, start, runs / "background" / "adapted.pt", rounds=1,
                     steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained network's guard rails may complain
        adapt(config)
    normalised = [norm.normalize(read_volume(path).array) for path in lab]
    trained_on = len(lab) - len(holdout_names(sorted(p.stem for p in lab), config.holdout,
                                              config.seed))
    assert len(sources) == trained_on
    for array, limits in sources:
        assert limits == NORMALISED
        assert any(np.array_equal(array, whole) for whole in normalised)
    assert not any(np.array_equal(NormalizationConfig().normalize(read_volume(path).array),
                                  array) for path in lab for array, _ in sources)
    assert load_model(config.out)[1]["normalization"] == norm.to_dict()


# -- a background view ------------------------------------------------------------------------
def test_background_view_labels_and_checks_through_both_views(lab, synthetic, start, runs,
                                                              straight):
    """With ``background_view``, round 1's labels are those of the larger probability of the
    plain map and the map of the stack less its blur (each computed here on its own), traced;
    the starting network agrees with them fully, since the check sees the same two views."""
    view = NormalizationConfig(background=2.0)
    config = _config(lab, synthetic, start, runs / "view" / "adapted.pt", rounds=1, steps=1,
                     background_view=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny network's guard rails may complain
        result = adapt(config)
    assert result.before["agreement"] == 1.0
    network, _ = load_model(start)
    changed = 0
    for path in lab:
        raw = read_volume(path).array
        plain = _probability(network, raw)
        second = sliding_window_predict(network, view.normalize(raw), CROP, overlap=0.5,
                                        device="cpu")
        prob = np.maximum(plain, second)
        assert np.count_nonzero(prob > plain) > 0  # the view found something the plain map did not
        tree = trace(prob, SPACING)
        label = read_volume(config.work / "round_1" / f"{path.stem}_label.tif").array
        np.testing.assert_array_equal(label, pseudo_label(
            prob, tree, SPACING, config.fg_prob, config.bg_prob, config.margin, config.core,
            NormalizationConfig().normalize(raw)))
        without = read_volume(straight[0].work / "round_1" / f"{path.stem}_label.tif").array
        changed += np.count_nonzero(label != without)
    assert changed > 0  # labels the plain map alone would not have made


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf")])
def test_background_view_must_be_a_sigma(lab, synthetic, start, runs, sigma):
    with pytest.raises(InputError, match="'background_view' should be a sigma >= 0"):
        _config(lab, synthetic, start, runs / "bad-view" / "adapted.pt", background_view=sigma)


def test_background_view_is_refused_for_a_network_that_subtracts_one(lab, synthetic, runs):
    """A network trained on stacks less their background gains nothing from the view: one
    sentence, before any file is written."""
    torch.manual_seed(0)
    net = build_model("tiny", transfer="scratch", crop=CROP, patch=(8, 16, 16))
    start = save_checkpoint(runs / "start_bg_view.pt", net,
                            normalization=NormalizationConfig(background=2.0).to_dict(),
                            spacing=list(SPACING), step=0, val_dice=None)
    config = _config(lab, synthetic, start, runs / "bg-view" / "adapted.pt",
                     background_view=4.0)
    with pytest.raises(InputError, match="already sees each stack less its background"):
        adapt(config)
    assert not config.work.exists() and not Path(config.out).exists()


def test_cli_adapts_through_a_background_view(lab, synthetic, start, tmp_path):
    """--background-view reaches the config, and the closing lines say to predict with it."""
    out = tmp_path / "adapted.pt"
    result = invoke("adapt", *lab, "-o", out, "--model", start, "--steps", "1",
                    "--synthetic", synthetic, "--background-view", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert load_model(out)[1]["adapt_config"]["background_view"] == 2.0
    assert f"dineuro run --model {out} --background-view 2 STACK" in " ".join(result.err.split())
    refused = invoke("adapt", *lab, "-o", tmp_path / "other.pt", "--background-view", "-1")
    assert refused.code == 2 and not (tmp_path / "other.adapt").exists()
