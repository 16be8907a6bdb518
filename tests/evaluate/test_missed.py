"""Missed gold by class, on a hand-made map: six gold lines 20 voxels long, one per class but
"short of a tip" (a trace's end reaches only the first few voxels beyond it: its own case).

Each line lies 16 voxels from the next, far beyond the 2-voxel ball the map is read in, so each
line's whole length falls in one class, known from how the map and trace were drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from dineuro.evaluate import compare_trees
from dineuro.evaluate.missed import MISSED_CLASSES, missed_gold
from dineuro.io import SwcTree

Z = 4
ROWS = {"recalled": 8, "blind": 24, "unsure": 40, "alongside": 56, "traced piece": 72,
        "untraced piece": 88}


def lines(segments) -> SwcTree:
    """A forest of straight segments ((x0, y0), (x1, y1)) at z = Z, one tree each."""
    xyz, parents = [], []
    for (x0, y0), (x1, y1) in segments:
        parents += [-1, len(xyz) + 1]
        xyz += [[x0, y0, Z], [x1, y1, Z]]
    n = len(xyz)
    return SwcTree(np.arange(1, n + 1), [3] * n, xyz, [1.0] * n, parents)


@pytest.fixture
def case():
    prob = np.zeros((9, 100, 40), np.float32)
    for key in ("recalled", "alongside", "traced piece", "untraced piece"):
        y = ROWS[key]
        prob[Z, y - 1:y + 2, 5:26] = 0.9
    y = ROWS["unsure"]
    prob[Z, y - 1:y + 2, 5:26] = 0.35  # above the low threshold, nowhere above the high one
    y = ROWS["traced piece"]
    prob[Z, y:y + 12, 5:8] = 0.9  # an arm of the same piece, traced only at its far end
    gold = lines([((5, y), (25, y)) for y in ROWS.values()])
    test = lines([((5, ROWS["recalled"]), (25, ROWS["recalled"])),
                  ((5, ROWS["alongside"] + 3), (25, ROWS["alongside"] + 3)),  # 3 voxels off
                  ((6, ROWS["traced piece"] + 11), (6, ROWS["traced piece"] + 6))])
    return prob, gold, test


def test_each_line_falls_in_its_class(case):
    prob, gold, test = case
    result = missed_gold(test, gold, prob)
    assert result.length == pytest.approx(120.0)
    assert result.recalled == pytest.approx(20.0)
    for key in MISSED_CLASSES:
        assert result.missed[key] == pytest.approx(0.0 if key == "short of a tip" else 20.0), key
    # the recalled share is the recall compare_trees finds
    assert result.recalled / result.length == pytest.approx(compare_trees(test, gold).recall)


def test_without_a_trace_every_sure_line_is_an_untraced_piece(case):
    prob, gold, _ = case
    empty = SwcTree([], [], np.zeros((0, 3)), [], [])
    result = missed_gold(empty, gold, prob)
    assert result.recalled == 0.0
    assert result.missed["blind"] == pytest.approx(20.0)
    assert result.missed["unsure"] == pytest.approx(20.0)
    assert result.missed["alongside"] == result.missed["short of a tip"] == 0.0
    assert result.missed["traced piece"] == 0.0
    assert result.missed["untraced piece"] == pytest.approx(80.0)


def test_pooled_stacks_add_up(case):
    prob, gold, test = case
    one = missed_gold(test, gold, prob)
    both = one + missed_gold(test, gold, prob)
    assert both.length == pytest.approx(240.0)
    assert both.recalled + sum(both.missed.values()) == pytest.approx(both.length)


@pytest.mark.parametrize("root_at_the_end", [False, True])
def test_gold_beyond_a_traced_end_is_short_of_a_tip(root_at_the_end):
    """Gold from x = 5 to 25 on a sure line, the trace along it from 5 to 20: the gold up to
    x = 22 is recalled (within 2), from 22 to 24 it lies 2-4 ahead of the trace's end, and
    beyond in the traced piece; the same whether the end is a tip or the root."""
    y = 10
    prob = np.zeros((9, 20, 40), np.float32)
    prob[Z, y - 1:y + 2, 5:26] = 0.9
    gold = lines([((5, y), (25, y))])
    test = lines([((20, y), (5, y))] if root_at_the_end else [((5, y), (20, y))])
    result = missed_gold(test, gold, prob)
    assert result.recalled == pytest.approx(17.0, abs=1.0)
    assert result.missed["short of a tip"] == pytest.approx(2.0, abs=1.0)
    assert result.missed["alongside"] == 0.0
    assert result.missed["traced piece"] == pytest.approx(1.0, abs=1.0)
