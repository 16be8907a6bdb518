"""``benchmarks/recall_by_contrast.py``: its table against recalls worked out by hand."""

from __future__ import annotations

import numpy as np
from helpers import load_benchmark

from dineuro.evaluate.contrast import ContrastRecall


def test_the_table_gives_each_bins_share_and_recall_and_the_pooled_recall():
    benchmark = load_benchmark("recall_by_contrast")
    model = ContrastRecall((1.0, 5.0), np.array([10.0, 0.0, 30.0]), np.array([2.0, 0.0, 27.0]))
    gold = ContrastRecall((1.0, 5.0), np.array([10.0, 0.0, 30.0]), np.array([10.0, 0.0, 30.0]))
    lines = benchmark.table({"model map": model, "gold mask": gold}).splitlines()
    assert lines[0] == ("| contrast (noise units) | share of gold length | recall, model map "
                        "traced | recall, gold mask traced |")
    assert lines[2] == "| < 1 | 0.250 | 0.200 | 1.000 |"  # 2 of 10
    assert lines[3] == "| 1-5 | 0.000 | - | - |"  # no gold there
    assert lines[4] == "| >= 5 | 0.750 | 0.900 | 1.000 |"  # 27 of 30
    assert lines[5] == "| all (pooled by length) | 1.000 | 0.725 | 1.000 |"  # 29 of 40
