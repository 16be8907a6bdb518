"""The ``realistic`` preset: per-stack randomisation, and the image-model parts real stacks
need (beads, detector spikes, hot pixels, camera range, projection fibres), each against a
hand computation."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from dineuro.data.render import render_mask
from dineuro.data.synth import PRESETS, synthesize_stack
from dineuro.data.synth.generate import merge_trees
from dineuro.data.synth.imaging import (
    SPIKE_LEVEL,
    ImagingConfig,
    bead_profile,
    camera,
    densified,
)
from dineuro.data.synth.morphology import GrowthConfig, grow_neuron, projection_fibre
from dineuro.data.synth.realistic import Z_RATIO, draw_recipe
from dineuro.errors import InputError
from dineuro.io import SwcTree
from dineuro.io.swc import swc_to_zyx

#: Smaller stacks than the preset's, same randomisation.
REALISTIC = replace(PRESETS["realistic"], shape=(32, 96, 96))


@pytest.fixture(scope="module")
def stacks():
    return [synthesize_stack(REALISTIC, i) for i in range(8)]


def test_image_label_and_swc_agree_in_every_randomised_stack(stacks):
    for stack in stacks:
        assert stack.image.shape == stack.label.shape == REALISTIC.shape
        zyx = np.rint(swc_to_zyx(stack.tree.xyz)).astype(int)
        assert stack.label[tuple(zyx.T)].all(), stack.name
        # One tree per labelled neuron or fibre that made it into the stack.
        recipe = stack.recipe
        assert 1 <= len(stack.tree.roots) <= (recipe.navis * 50 + recipe.neurons
                                              + recipe.fibres * 10)
        on = np.median(stack.image[stack.label].astype(float))
        assert on > np.median(stack.image[~stack.label].astype(float)), stack.name


def test_stacks_differ_in_microscope(stacks):
    ratios = [s.spacing[0] / s.spacing[2] for s in stacks]
    assert all(Z_RATIO[0] <= r <= Z_RATIO[1] for r in ratios)
    assert max(ratios) / min(ratios) > 1.5
    assert len({s.image.dtype for s in stacks}) == 2
    assert len({s.recipe.imaging.signal_photons for s in stacks}) == len(stacks)
    assert any(not (s.tree.types == 1).any() for s in stacks)  # some have no soma at all
    assert any(len(s.tree.roots) > 1 for s in stacks)  # some have several neurons


def test_randomised_stack_is_reproducible_and_written_with_its_spacing(tmp_path):
    from dineuro.data.dataset import open_dataset
    from dineuro.data.synth import write_synthetic_dataset

    a, b = synthesize_stack(REALISTIC, 3), synthesize_stack(replace(REALISTIC, n_stacks=5), 3)
    assert np.array_equal(a.image, b.image) and a.recipe == b.recipe
    config = replace(REALISTIC, n_stacks=2, shape=(16, 48, 48))
    write_synthetic_dataset(tmp_path / "ds", config)
    dataset = open_dataset(tmp_path / "ds")
    for index, name in enumerate(dataset.names):
        stack = synthesize_stack(config, index)
        image = dataset.image(name)
        assert np.allclose(image.spacing, stack.spacing)
        assert image.array.dtype == stack.image.dtype


def test_recipe_difficulty_moves_signal_not_background():
    def draws(difficulty):
        return [draw_recipe(np.random.default_rng(seed), 0.5, difficulty, (0.001, 0.01), 0.3)
                for seed in range(200)]

    easy, hard = draws(0.1), draws(0.9)
    assert (np.median([r.imaging.signal_photons for r in easy])
            > 2 * np.median([r.imaging.signal_photons for r in hard]))
    background = [np.median([r.imaging.background_photons for r in d]) for d in (easy, hard)]
    assert background[1] == pytest.approx(background[0], rel=0.35)


def test_bead_profile_is_one_at_a_swelling_and_the_floor_between():
    config = ImagingConfig(bead_fraction=1.0, bead_period=(6.0, 6.0), bead_width=1.0,
                           bead_floor=0.2)
    arc = np.linspace(0, 60, 601)
    factor = bead_profile(arc, np.zeros(len(arc), dtype=int), config,
                          np.random.default_rng(0))
    assert factor.max() == pytest.approx(1.0, abs=1e-3)
    # Half a period (3 sigma) from the nearest swelling: floor + (1 - floor) * exp(-4.5).
    assert factor.min() == pytest.approx(0.2 + 0.8 * np.exp(-4.5), abs=1e-3)
    peaks = arc[1:-1][(factor[1:-1] > factor[:-2]) & (factor[1:-1] >= factor[2:])]
    assert np.allclose(np.diff(peaks), 6.0, atol=0.11)
    unbeaded = replace(config, bead_fraction=0.0)
    assert np.all(bead_profile(arc, np.zeros(len(arc), dtype=int), unbeaded,
                               np.random.default_rng(0)) == 1.0)


def test_densified_tree_has_short_edges_and_the_same_shape():
    tree = SwcTree([1, 2, 3, 4], [1, 3, 3, 3], [[0, 0, 0], [10, 0, 0], [10, 7, 0], [13, 0, 2]],
                   [4, 2, 1, 1], [-1, 1, 2, 2])
    dense = densified(tree, 2.0, 0.5)
    child, parent = dense.edges()
    steps = np.linalg.norm((dense.xyz[child] - dense.xyz[parent]) * [1, 1, 2.0], axis=1)
    assert steps.max() <= 0.5 + 1e-9
    total = 10 + 7 + np.sqrt(9 + 16)  # the z step of 2 counts twice
    assert steps.sum() == pytest.approx(total)
    # The original nodes are all there, with their radii; the branch point still has 2 children.
    for point, radius in zip(tree.xyz, tree.radius, strict=True):
        row = np.flatnonzero(np.all(dense.xyz == point, axis=1))
        assert len(row) == 1 and dense.radius[row[0]] == radius
    assert np.bincount(dense.parent_index[dense.parent_index >= 0]).max() == 2


def test_salt_and_hot_pixels_add_isolated_bright_voxels_and_columns():
    config = ImagingConfig(salt_rate=1e-3, hot_pixel_rate=2e-3, read_noise=0.0, offset=0.0,
                           bits=16, dtype="uint16")
    grey = camera(np.zeros((20, 100, 100), np.float32), config, np.random.default_rng(1))
    assert config.full_scale == 65535
    bright = grey >= SPIKE_LEVEL[0] * config.full_scale - 1
    columns = bright.all(axis=0)
    assert 5 <= columns.sum() <= 40  # about 2e-3 of 10^4 pixels
    salt = bright & ~columns[None]
    assert 100 <= salt.sum() <= 300  # about 1e-3 of 2 x 10^5 voxels
    assert grey[~bright].max() == 0  # no photons, no noise: the rest stays dark


def test_bits_out_of_the_dtype_are_refused():
    with pytest.raises(InputError, match="bits"):
        ImagingConfig(dtype="uint8", bits=12)


def test_projection_fibre_enters_through_a_side_face_without_a_soma():
    shape = (20, 80, 80)
    for seed in range(5):
        tree = projection_fibre(np.random.default_rng(seed), shape, 2.0, 300.0,
                                GrowthConfig(bounce_prob=0.0))
        assert not (tree.types == 1).any()
        root = tree.xyz[0]  # (x, y, z) voxels
        distance_to_side = min(root[0], root[1], 79 - root[0], 79 - root[1])
        assert distance_to_side <= 2.0
        zyx = swc_to_zyx(tree.xyz)
        assert np.all(zyx >= -0.5) and np.all(zyx < np.array(shape) - 0.5)


def _cable(tree, z_ratio: float) -> float:
    """Cable length in x/y voxels, as the growth budget counts it."""
    parents = tree.parent_index
    child = parents >= 0
    step = (tree.xyz[child] - tree.xyz[parents[child]]) * [1.0, 1.0, z_ratio]
    return float(np.linalg.norm(step, axis=1).sum())


def test_a_fibre_is_not_ended_by_chance_but_a_neuron_still_is():
    # Every tip stops by chance at every step (stop_prob 1) and none branches: a fibre still
    # grows on until the border (no bounce) or its budget, a neuron's tips stop after a step.
    config = GrowthConfig(stop_prob=1.0, branch_prob=0.0, bounce_prob=0.0)
    shape = (20, 80, 80)
    for seed in range(5):
        fibre = projection_fibre(np.random.default_rng(seed), shape, 2.0, 60.0, config)
        x, y, z = fibre.xyz[-1]  # its one tip, in voxels (z in slices of 2 x/y voxels)
        to_border = min(x, y, 79 - x, 79 - y, 2 * z, 2 * (19 - z))
        assert _cable(fibre, 2.0) >= 60.0 - 0.01 or to_border <= 2.0 + config.step
        assert _cable(fibre, 2.0) >= 4 * config.step  # more than the stub that chance left before
        neuron = grow_neuron(np.random.default_rng(seed), shape, 2.0, 60.0, config,
                             soma=False)
        assert _cable(neuron, 2.0) <= 2 * config.step + 0.01  # two tips, a step each


def test_unlabelled_fragments_are_drawn_but_left_out_of_label_and_gold(stacks):
    with_fragments = 0
    for stack in stacks:
        count = stack.recipe.imaging.fragment_count
        if count == 0:
            assert stack.unlabelled is None
            continue
        with_fragments += 1
        assert len(stack.unlabelled.roots) == count
        fragments = render_mask(stack.unlabelled, stack.image.shape, stack.spacing)
        drawn = fragments & ~stack.label
        assert drawn.sum() > (fragments & stack.label).sum()  # mostly off the labelled neurons
        # Bright where drawn (neither label nor gold holds them), against the far background.
        far = ndimage.distance_transform_edt(~(drawn | stack.label)) > 5
        assert np.median(stack.image[drawn]) > np.median(stack.image[far])
    assert with_fragments >= 2  # the fixture holds stacks with fragments, or this proves little


def test_merged_forest_keeps_every_tree():
    rng = np.random.default_rng(0)
    trees = [grow_neuron(rng, (20, 60, 60), 1.0, 50.0) for _ in range(3)]
    forest = merge_trees(trees)
    assert len(forest) == sum(len(t) for t in trees)
    assert len(forest.roots) == 3 and len(set(forest.ids.tolist())) == len(forest)
    assert np.array_equal(forest.xyz[:len(trees[0])], trees[0].renumbered().xyz)
