"""``benchmarks/traced_mask.py`` scores the mask ``run`` writes against the plain threshold.

Each map is its stack's gold mask and unlabelled neurites at p = 0.9 with single-voxel specks
at p = 0.9 far from both: the threshold mask holds the specks, the traced mask must not (a
speck is too small to trace), and the unlabelled neurites count against plain precision only.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_benchmark
from scipy.ndimage import binary_dilation

from dineuro.data.dataset import open_dataset
from dineuro.data.render import render_mask
from dineuro.evaluate import PROB_SUFFIX, dice
from dineuro.io import write_volume


def test_specks_leave_the_traced_mask_and_unlabelled_voxels_are_set_aside(tiny_training_set,
                                                                          tmp_path):
    bench = load_benchmark("traced_mask")
    dataset = open_dataset(tiny_training_set)
    rng = np.random.default_rng(0)
    for name in dataset.split()["train"]:
        image = dataset.image(name)
        gold = dataset.label(name)
        others = render_mask(dataset.unlabelled(name), gold.shape, image.spacing)
        far = ~binary_dilation(gold | others, iterations=4)
        specks = np.zeros_like(gold)
        specks.flat[rng.choice(np.flatnonzero(far), 25, replace=False)] = True
        prob = np.where(gold | others | specks, 0.9, 0.0).astype(np.float32)
        write_volume(tmp_path / f"{name}{PROB_SUFFIX}", prob, image.spacing)

        masks, scores = bench.score_stack(dataset, name, tmp_path, 0.5)

        assert masks["threshold"].sum() == (gold | others | specks).sum()
        assert not (masks["traced"] & specks).any()
        assert (masks["traced"] <= masks["threshold"]).all()
        columns = dict(zip(bench.COLUMNS, scores["traced"], strict=True))
        assert columns["Dice"] == pytest.approx(dice(masks["traced"], gold))
        assert columns["voxels kept"] == pytest.approx(masks["traced"].sum()
                                                       / masks["threshold"].sum())
        plain = dict(zip(bench.COLUMNS, scores["threshold"], strict=True))
        labelled = (gold | others | specks) & ~(others & ~gold)
        assert plain["precision, unlabelled aside"] == pytest.approx(gold.sum() / labelled.sum())
        assert plain["recall"] == pytest.approx(1.0)
