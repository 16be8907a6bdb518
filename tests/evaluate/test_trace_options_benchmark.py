"""``benchmarks/trace_options.py``: its columns against the same traces scored by hand."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from helpers import load_benchmark

from dineuro.data.dataset import open_dataset
from dineuro.evaluate import compare_trees
from dineuro.trace import trace


def test_the_columns_and_the_rows_per_stack_come_from_the_same_traces(tiny_training_set):
    # The gold masks at p = 0.9 as maps: the script's columns against the same traces scored
    # here one by one.
    benchmark = load_benchmark("trace_options")
    dataset = open_dataset(tiny_training_set)
    names = dataset.split()["train"]
    images = {n: dataset.image(n) for n in names}
    maps = {n: np.where(dataset.label(n, images[n]), 0.9, 0.0).astype(np.float32)
            for n in names}
    golds = {n: dataset.tree(n) for n in names}
    unlabelled = {n: dataset.unlabelled(n) for n in names}

    stacks = benchmark.traced(maps, images, golds, {}, unlabelled)
    columns = dict(zip(benchmark.COLUMNS, benchmark.summarised(stacks), strict=True))

    results = [compare_trees(trace(maps[n], images[n].spacing, kind="probability",
                                   image=images[n].array), golds[n], 2.0) for n in names]
    ratios = [r.hairiness_ratio for r in results]
    assert columns["hairiness_ratio"] == pytest.approx(np.mean(ratios))
    assert columns["hairiness_median"] == pytest.approx(statistics.median(ratios))
    assert columns["recall"] == pytest.approx(np.mean([r.recall for r in results]))
    assert columns["s_per_trace"] > 0
    # one row per stack: recall, ratio, and the tips and cable the ratio divides
    lines = benchmark.per_stack_lines(stacks)
    assert len(lines) == len(names)
    for line, name, r in zip(lines, names, results, strict=True):
        assert line.split(" | ") == ["| " + name, f"{r.recall:.3f}", f"{r.hairiness_ratio:.2f}",
                                     str(r.test_tips), f"{r.test_length:.0f}", str(r.gold_tips),
                                     f"{r.gold_length:.0f}", f"{r.gold_hairiness:.1f} |"]
