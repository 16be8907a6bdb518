"""``benchmarks/trace_vs_peers.py --pred`` reads a map the way ``dineuro predict`` writes it,
and sets a stack's unlabelled neurites aside in a column of their own.

The model row's Dice once compared the 0-255 values of a uint8 map with 0.5, so every voxel
the network gave any probability counted as foreground. Here the map of each stack is its own
gold mask at p = 0.9 inside a shell at p = 0.2, under the tracer's low threshold: at p > 0.5
it is the mask exactly (Dice 1), whatever dtype it is stored in, and the shell counts only if
the map is misread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark
from scipy.ndimage import binary_dilation

from dineuro.data.dataset import open_dataset
from dineuro.data.render import render_mask
from dineuro.evaluate import PROB_SUFFIX
from dineuro.io import SwcTree, write_volume


def write_maps(data: Path, out: Path, names: list[str], dtype: str) -> None:
    """Each stack's gold mask at 0.9 inside a two-voxel shell at 0.2, stored as ``dtype``
    (uint8 scaled to 255, as ``dineuro predict`` writes it by default)."""
    dataset = open_dataset(data)
    for name in names:
        label = dataset.label(name)
        shell = binary_dilation(label, iterations=2) & ~label
        prob = np.where(label, 0.9, np.where(shell, 0.2, 0.0))
        stored = np.round(prob * 255).astype(np.uint8) if dtype == "uint8" \
            else prob.astype(np.float32)
        write_volume(out / f"{name}{PROB_SUFFIX}", stored, dataset.image(name).spacing)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_model_row_scores_the_map_as_probabilities(tiny_training_set, tmp_path, dtype):
    bench = load_benchmark("trace_vs_peers")
    names = open_dataset(tiny_training_set).split()["train"]
    write_maps(tiny_training_set, tmp_path, names, dtype)

    gold_mask, model_map, raw, rivulet = bench.run(tiny_training_set, tmp_path, None, "train",
                                                   2.0, "cpu")

    assert model_map.dice == pytest.approx([1.0] * len(names))
    assert [r.label for r in (gold_mask, raw)] == ["gold mask, traced",
                                                  "raw image (percentile-normalised), traced"]
    assert len(model_map.scores) == len(gold_mask.scores) == len(names)
    # at the tracer's thresholds the map's foreground is the gold mask: the same traces
    for metric in ("precision", "recall"):
        assert bench.metric_values(model_map, metric) == pytest.approx(
            bench.metric_values(gold_mask, metric))
    table = bench.markdown([gold_mask, model_map, raw, rivulet], "header")
    assert "| model map, traced | 1.000 ± 0.000 |" in table


def test_trace_on_unlabelled_neurites_is_set_aside_in_its_own_column(tiny_training_set,
                                                                      tmp_path):
    # Maps that hold the unlabelled fragments as well as the gold, as a network that finds every
    # neurite in the image would draw them: plain precision pays for the fragments, the new
    # column does not, and the gold mask's own trace (no fragments) scores alike in both.
    bench = load_benchmark("trace_vs_peers")
    dataset = open_dataset(tiny_training_set)
    names = dataset.split()["train"]
    for name in names:
        image = dataset.image(name)
        fragments = render_mask(dataset.unlabelled(name), image.array.shape, image.spacing)
        prob = np.where(dataset.label(name) | fragments, 0.9, 0.0).astype(np.float32)
        write_volume(tmp_path / f"{name}{PROB_SUFFIX}", prob, image.spacing)

    gold_mask, model_map, *_ = bench.run(tiny_training_set, tmp_path, None, "train", 2.0, "cpu")

    plain = bench.metric_values(model_map, "precision")
    aside = bench.metric_values(model_map, "labelled_precision")
    assert np.mean(plain) < 0.5  # the fragments are most of these maps' cable
    assert aside == pytest.approx(bench.metric_values(gold_mask, "precision"), abs=0.05)
    assert bench.metric_values(gold_mask, "labelled_precision") == pytest.approx(
        bench.metric_values(gold_mask, "precision"), abs=0.02)
    assert "precision, unlabelled aside" in bench.markdown([gold_mask, model_map], "header")


def test_a_trace_only_on_unlabelled_neurites_leaves_the_column_empty_not_nan():
    # Nothing is left to score, so the stack drops out of that column's mean instead of
    # making it nan.
    bench = load_benchmark("trace_vs_peers")
    result = bench.MethodResult("model map, traced")
    other = SwcTree([1, 2], [3, 3], [[0, 20, 0], [10, 20, 0]], [1, 1], [-1, 1])
    gold = SwcTree([1, 2], [3, 3], [[0, 0, 0], [10, 0, 0]], [1, 1], [-1, 1])
    bench.score(result, "a", lambda: other, gold, 2.0, unlabelled=other)
    assert result.scores[0]["precision"] == 0.0
    assert bench.metric_values(result, "labelled_precision") == []


def test_model_row_scores_the_traced_mask_without_the_specks_it_drops(tiny_training_set,
                                                                        tmp_path):
    # Each map is its gold mask plus a sure 3x3x3 speck in an empty corner: the speck costs the
    # map's Dice; the tracer drops it as noise, so the traced mask's Dice is the one of the map
    # without it, scored the same way in a second run.
    bench = load_benchmark("trace_vs_peers")
    dataset = open_dataset(tiny_training_set)
    names = dataset.split()["train"]
    clean, specked = tmp_path / "clean", tmp_path / "specked"
    for name in names:
        image = dataset.image(name)
        label = dataset.label(name)
        prob = np.where(label, 0.9, 0.0).astype(np.float32)
        write_volume(clean / f"{name}{PROB_SUFFIX}", prob, image.spacing)
        corner = min(((z, y, x) for z in (0, -3) for y in (0, -3) for x in (0, -3)),
                     key=lambda c: label[c[0]:c[0] + 3 or None, c[1]:c[1] + 3 or None,
                                         c[2]:c[2] + 3 or None].sum())
        box = tuple(slice(c, c + 3 or None) for c in corner)
        assert not label[box].any()
        prob[box] = 0.9
        write_volume(specked / f"{name}{PROB_SUFFIX}", prob, image.spacing)

    _, plain, *_ = bench.run(tiny_training_set, clean, None, "train", 2.0, "cpu")
    _, with_speck, *_ = bench.run(tiny_training_set, specked, None, "train", 2.0, "cpu")

    assert all(d < 1.0 for d in with_speck.dice)
    assert with_speck.traced_dice == pytest.approx(plain.traced_dice)
    assert all(t > d for t, d in zip(with_speck.traced_dice, with_speck.dice, strict=True))
    table = bench.markdown([with_speck], "header")
    row = next(line for line in table.splitlines() if line.startswith("| model map"))
    assert row.split(" | ")[2] == bench.mean_std(with_speck, "traced_dice")


def test_the_hairiness_median_column_is_not_moved_by_one_outlying_stack():
    # Against a gold line of 40 (2 tips): the line itself (ratio 1), a trace with two spurs of 2
    # (4 tips along 44) and the trace of a speck (2 tips along 2: ratio 20); an empty trace has
    # no ratio and is left out of both columns.
    bench = load_benchmark("trace_vs_peers")
    result = bench.MethodResult("model map, traced")
    gold = SwcTree([1, 2], [3, 3], [[0, 0, 0], [40, 0, 0]], [1, 1], [-1, 1])
    spurred = SwcTree([1, 2, 3, 4, 5, 6], [3] * 6,
                      [[0, 0, 0], [10, 0, 0], [20, 0, 0], [40, 0, 0], [10, 2, 0], [20, 2, 0]],
                      [1] * 6, [-1, 1, 2, 3, 2, 3])
    speck = SwcTree([1, 2], [3, 3], [[0, 0, 0], [2, 0, 0]], [1, 1], [-1, 1])
    empty = SwcTree([], [], np.zeros((0, 3)), [], [])
    for name, tree in (("a", gold), ("b", spurred), ("c", speck), ("d", empty)):
        bench.score(result, name, lambda tree=tree: tree, gold, 2.0)
    ratios = [1.0, (4 / 44) / (2 / 40), (2 / 2) / (2 / 40)]
    assert bench.metric_values(result, "hairiness_ratio") == pytest.approx(ratios)
    assert bench.hairiness_median(result) == pytest.approx(ratios[1])
    row = bench.markdown([result], "header").splitlines()[-1]
    assert f"| {bench.mean_std(result, 'hairiness_ratio')} | {ratios[1]:.2f} |" in row
