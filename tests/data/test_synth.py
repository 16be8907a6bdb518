"""The synthetic benchmark: alignment of image, mask and SWC; realism bounds; reproducibility;
and the image model against closed forms."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from dineuro.data.render import render_mask
from dineuro.data.synth import (
    FOREGROUND_BOUNDS,
    PRESETS,
    SynthConfig,
    imaging_for_difficulty,
    preset_config,
    synthesize_stack,
)
from dineuro.data.synth.imaging import FULL_SCALE, camera, expected_photons
from dineuro.errors import InputError
from dineuro.io.swc import swc_to_zyx

SMALL = PRESETS["small"]
#: Alignment margin at the default difficulty: the median grey value on the label is at
#: least this many times the median of the background far from the neuron.
ALIGNMENT_RATIO = 3.0
#: One-voxel alignment: moving the label (or the SWC) one voxel along any axis loses at least
#: this share of the image brightness over it (of the label depth at the SWC's nodes).
SHIFT_LOSS = 0.03
SWC_SHIFT_LOSS = 0.1


@pytest.fixture(scope="module")
def small_stacks():
    return [synthesize_stack(SMALL, i) for i in range(SMALL.n_stacks)]


def _background(stack, distance=5):
    far = ndimage.distance_transform_edt(~stack.label) > distance
    return stack.image[far]


def test_image_is_bright_on_the_label(small_stacks):
    for stack in small_stacks:
        on = np.median(stack.image[stack.label].astype(float))
        off = np.median(_background(stack).astype(float))
        assert on >= ALIGNMENT_RATIO * max(off, 1.0), (stack.name, on, off)


def _brightness_over_label(stack, axis: int, shift: int) -> float:
    """Sum of the image over the label moved ``shift`` voxels along array ``axis``.

    The label's first and last plane along ``axis`` are left out for every shift, so each sum
    covers the same label voxels and only the image under them moves.
    """
    n = stack.label.shape[axis]
    label = np.take(stack.label, np.arange(1, n - 1), axis=axis)
    image = np.take(stack.image, np.arange(1 + shift, n - 1 + shift), axis=axis)
    return float(image[label].astype(float).sum())


def test_image_is_brightest_on_the_label_not_one_voxel_beside_it(small_stacks):
    # A blurred image of the labelled neurites matches its label best where it lies; an image
    # or label one voxel off along x, y or z would match better one voxel over.
    for stack in small_stacks:
        for axis in range(3):
            on = _brightness_over_label(stack, axis, 0)
            beside = [_brightness_over_label(stack, axis, s) for s in (-1, 1)]
            assert max(beside) < (1 - SHIFT_LOSS) * on, (stack.name, axis, on, beside)


def test_swc_nodes_lie_deepest_in_the_label_not_one_voxel_beside(small_stacks):
    # Nodes are the centres of the label's tubes: the label's depth there (physical distance to
    # the background) is largest, and drops when the nodes move one voxel along any axis.
    for stack in small_stacks:
        depth = ndimage.distance_transform_edt(stack.label, sampling=stack.spacing)
        zyx = np.rint(swc_to_zyx(stack.tree.xyz)).astype(int)
        for axis in range(3):
            moved = [np.clip(zyx + np.eye(3, dtype=int)[axis] * s, 0,
                             np.array(stack.label.shape) - 1) for s in (-1, 0, 1)]
            before, on, after = (depth[tuple(m.T)].mean() for m in moved)
            assert max(before, after) < (1 - SWC_SHIFT_LOSS) * on, (stack.name, axis, on,
                                                                      before, after)


def test_label_is_the_swc_rendered(small_stacks):
    for stack in small_stacks:
        rendered = render_mask(stack.tree, stack.label.shape, stack.spacing, SMALL.min_radius)
        assert np.array_equal(rendered, stack.label), stack.name


def test_swc_nodes_fall_inside_the_label(small_stacks):
    for stack in small_stacks:
        zyx = np.rint(swc_to_zyx(stack.tree.xyz)).astype(int)
        assert np.all(zyx >= 0) and np.all(zyx < stack.label.shape)
        assert stack.label[tuple(zyx.T)].all(), stack.name


def test_foreground_fraction_is_realistic(small_stacks):
    low, high = FOREGROUND_BOUNDS
    for stack in small_stacks:
        assert low <= stack.foreground_fraction <= high, (stack.name, stack.foreground_fraction)


def test_bench_sized_stacks_are_realistic():
    config = PRESETS["bench"]
    for index in (0, 1):  # a navis neuron and a grown one
        stack = synthesize_stack(config, index)
        assert stack.image.shape == config.shape
        assert FOREGROUND_BOUNDS[0] <= stack.foreground_fraction <= FOREGROUND_BOUNDS[1]


def test_small_preset_mixes_real_and_grown_neurons(small_stacks):
    sources = {s.source.split()[0] for s in small_stacks}
    assert sources == {"navis", "grown"}
    navis = next(s for s in small_stacks if s.source.startswith("navis"))
    assert (navis.tree.types == 1).sum() <= 1
    assert len(navis.tree) > 500  # a real neuron, not a stub


def test_same_seed_same_voxels_and_index_independent_of_count():
    a = synthesize_stack(SMALL, 1)
    b = synthesize_stack(replace(SMALL, n_stacks=2), 1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    c = synthesize_stack(replace(SMALL, seed=1), 1)
    assert not np.array_equal(a.image, c.image)


def test_difficulty_lowers_contrast():
    ratios = []
    for difficulty in (0.0, 0.5, 1.0):
        stack = synthesize_stack(replace(SMALL, difficulty=difficulty), 1)
        on = np.median(stack.image[stack.label].astype(float))
        ratios.append(on / max(np.median(_background(stack).astype(float)), 1.0))
    assert ratios[0] > ratios[1] > ratios[2]


def test_uint16_output_uses_a_12_bit_range():
    stack = synthesize_stack(replace(SMALL, dtype="uint16", shape=(16, 64, 64)), 1)
    assert stack.image.dtype == np.uint16
    assert stack.image.max() <= FULL_SCALE["uint16"]
    assert stack.image.max() > FULL_SCALE["uint8"]


def test_psf_blur_of_a_point_has_the_configured_sigmas():
    # Closed form: a Gaussian-blurred point has variance sigma^2 along each axis.
    config = imaging_for_difficulty(0.5, blob_count=0, background_photons=0.0,
                                    depth_attenuation=0.0, psf_sigma_z=2.0, psf_sigma_xy=0.8)
    fluor = np.zeros((41, 41, 41), np.float32)
    fluor[20, 20, 20] = 1.0
    photons = expected_photons(fluor, (1.0, 1.0, 1.0), config, np.random.default_rng(0))
    grid = np.arange(41) - 20
    for axis, sigma in zip(range(3), (2.0, 0.8, 0.8), strict=True):
        profile = photons.sum(axis=tuple(a for a in range(3) if a != axis))
        variance = (profile * grid**2).sum() / profile.sum()
        assert variance == pytest.approx(sigma**2, rel=0.02)
    assert photons.sum() == pytest.approx(config.signal_photons, rel=1e-3)


def test_camera_noise_follows_poisson_plus_read_noise():
    config = imaging_for_difficulty(0.5, read_noise=2.0, offset=10.0, dtype="uint16")
    photons = np.full((20, 50, 50), 40.0, np.float32)
    grey = camera(photons, config, np.random.default_rng(0)).astype(float)
    gain = config.median_level * FULL_SCALE["uint16"] / config.signal_photons
    assert grey.mean() == pytest.approx(gain * 40.0 + 10.0, rel=0.01)
    # Variance of gain * (Poisson(40) + N(0, 2^2)), plus 1/12 from rounding.
    assert grey.var() == pytest.approx(gain**2 * (40.0 + 4.0) + 1 / 12, rel=0.05)


def test_config_rejects_nonsense():
    with pytest.raises(InputError, match="split"):
        SynthConfig(split=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match="n_stacks"):
        preset_config("small", n_stacks=0)
    with pytest.raises(InputError, match="unknown preset 'huge'"):
        preset_config("huge")
    with pytest.raises(InputError, match="difficulty"):
        imaging_for_difficulty(1.5)
    with pytest.raises(InputError, match="dtype"):
        imaging_for_difficulty(0.5, dtype="float64")


def test_grown_neurons_stay_in_the_stack_and_meet_their_budget():
    from dineuro.data.synth.morphology import GrowthConfig, grow_neuron

    shape, z_ratio = (20, 60, 80), 2.0
    # Tips that never stop or leave grow until the budget is spent, and not further.
    config = GrowthConfig(min_radius=0.6, bounce_prob=1.0, stop_prob=0.0)
    tree = grow_neuron(np.random.default_rng(3), shape, z_ratio, 400.0, config)
    zyx = swc_to_zyx(tree.xyz)
    assert np.all(zyx >= -0.5) and np.all(zyx < np.array(shape) - 0.5)
    assert tree.types[0] == 1 and (tree.types[1:] == 3).all()
    assert tree.radius[1:].min() >= config.min_radius
    child, parent = tree.edges()
    assert np.all(parent < child)  # parents first, one root
    steps = np.linalg.norm((tree.xyz[child] - tree.xyz[parent]) * [1, 1, z_ratio], axis=1)
    assert 400.0 <= steps.sum() <= 400.0 + config.step + 1e-6


def test_straight_growth_without_tortuosity():
    from dineuro.data.synth.morphology import GrowthConfig, grow_neuron

    config = GrowthConfig(tortuosity=0.0, branch_prob=0.0, stop_prob=0.0, n_primary=(1, 1))
    tree = grow_neuron(np.random.default_rng(0), (64, 64, 64), 1.0, 20.0, config)
    points = tree.xyz[1:]  # the primary neurite, away from the soma centre
    _, singular, _ = np.linalg.svd(points - points.mean(axis=0))
    assert singular[1] < 1e-2 * singular[0]  # collinear up to the stored rounding


def test_navis_neuron_is_cropped_to_the_stack_and_zoom_scales_it():
    from dineuro.data.synth.morphology import navis_neuron

    shape, spacing = (32, 96, 96), (1.0, 0.5, 0.5)
    near = navis_neuron(np.random.default_rng(5), shape, spacing, 7, zoom=1.0)
    far = navis_neuron(np.random.default_rng(5), shape, spacing, 2, zoom=0.25)
    for tree in (near, far):
        zyx = swc_to_zyx(tree.xyz)
        assert np.all(zyx >= -0.5) and np.all(zyx < np.array(shape) - 0.5)
    # Zooming out brings more of the cell, hence more nodes, into the same field of view
    # (index 7 is neuron 7 % 5 = 2, seen from the same pose).
    assert len(far) > len(near)
