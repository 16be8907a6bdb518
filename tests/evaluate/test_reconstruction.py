"""ESA, DSA, PDS and length precision/recall against hand computations and a brute-force reference.

The reference below samples edges in a Python loop and measures every sample point against every
segment of the other tree (plain numpy, O(N * M)); it shares no code with the kd-tree search.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields

import numpy as np
import pytest
from helpers import invoke

from dineuro.data.synth.generate import merge_trees
from dineuro.errors import InputError
from dineuro.evaluate import reconstruction
from dineuro.evaluate.reconstruction import (
    ReconstructionScores,
    compare_swc_files,
    compare_trees,
    labelled_precision,
)
from dineuro.io.swc import SwcTree, write_swc

SCORES = ("esa", "dsa", "pds", "precision", "recall", "f1")
DIRECTIONAL = ("esa", "dsa", "pds")


def make_tree(xyz, parents, ids=None) -> SwcTree:
    """A tree from (x, y, z) positions and parent *ids* (ids 1..N unless given)."""
    n = len(xyz)
    ids = np.arange(1, n + 1) if ids is None else ids
    return SwcTree(ids, np.full(n, 3), xyz, np.ones(n), parents)


def chain(*xyz) -> SwcTree:
    """Nodes joined one after the other, the first being the root."""
    return make_tree(xyz, [-1, *range(1, len(xyz))])


def line_at(y: float) -> SwcTree:
    """One edge of length 10 along x, at height y."""
    return chain((0, y, 0), (10, y, 0))


# ---------------------------------------------------------------- brute-force reference


def reference_sampling(tree: SwcTree):
    """Sample points, their length weights and target segments, one node at a time."""
    row = {int(i): r for r, i in enumerate(tree.ids)}
    has_child = {row[int(p)] for p in tree.parents if p != -1}
    points, weights, starts, ends = [], [], [], []
    for r in range(len(tree)):
        child = tree.xyz[r]
        if tree.parents[r] == -1:
            if r not in has_child:
                points.append(child)
                weights.append(0.0)
                starts.append(child)
                ends.append(child)
            continue
        parent = tree.xyz[row[int(tree.parents[r])]]
        length = math.dist(child, parent)
        count = int(1 + length + 0.5)
        for j in range(count):
            step = j / (count - 1) if count > 1 else 0.0
            points.append(child + step * (parent - child))
            weights.append(length / count)
        starts.append(child)
        ends.append(parent)
    return np.array(points), np.array(weights), np.array(starts), np.array(ends)


def reference_distances(points, starts, ends):
    """Every point against every segment: projection clamped to the segment."""
    p = points[:, None, :]
    a, b = starts[None, :, :], ends[None, :, :]
    ab = b - a
    squared = (ab ** 2).sum(-1)
    t = ((p - a) * ab).sum(-1) / np.where(squared > 0, squared, 1.0)
    t = np.clip(np.where(squared > 0, t, 0.0), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.sqrt(((p - closest) ** 2).sum(-1)).min(axis=1)


def reference_scores(test: SwcTree, gold: SwcTree, threshold: float = 2.0) -> dict:
    test_points, test_weights, test_a, test_b = reference_sampling(test)
    gold_points, gold_weights, gold_a, gold_b = reference_sampling(gold)
    out = {}
    fractions = {}
    directions = (("test_to_gold", test_points, test_weights, gold_a, gold_b),
                  ("gold_to_test", gold_points, gold_weights, test_a, test_b))
    for name, points, weights, a, b in directions:
        d = reference_distances(points, a, b)
        far = d >= threshold
        out[f"esa_{name}"] = d.mean()
        out[f"dsa_{name}"] = d[far].mean() if far.any() else 0.0
        out[f"pds_{name}"] = far.mean()
        fractions[name] = (weights[~far].sum() / weights.sum() if weights.sum() > 0
                           else (~far).mean())
        out[f"far_{name}"] = far.any()
    out["esa"] = (out["esa_test_to_gold"] + out["esa_gold_to_test"]) / 2
    far_dsa = [out[f"dsa_{n}"] for n in ("test_to_gold", "gold_to_test") if out.pop(f"far_{n}")]
    out["dsa"] = sum(far_dsa) / len(far_dsa) if far_dsa else 0.0
    out["pds"] = (out["pds_test_to_gold"] + out["pds_gold_to_test"]) / 2
    out["precision"], out["recall"] = fractions["test_to_gold"], fractions["gold_to_test"]
    total = out["precision"] + out["recall"]
    out["f1"] = 2 * out["precision"] * out["recall"] / total if total > 0 else 0.0
    out["test_points"], out["gold_points"] = len(test_points), len(gold_points)
    out["test_length"], out["gold_length"] = test_weights.sum(), gold_weights.sum()
    return out


def assert_matches(result: ReconstructionScores, expected: dict, rel: float = 1e-9) -> None:
    for key, value in expected.items():
        assert getattr(result, key) == pytest.approx(value, rel=rel, abs=1e-9), key


# ---------------------------------------------------------------- random trees


def random_walk_tree(rng, n: int) -> SwcTree:
    """A branching random walk (steps of 0.5-3 units), two roots, lone nodes, a zero edge.

    Ids are shuffled so parents are looked up by id, not by position.
    """
    xyz = np.zeros((n, 3))
    parent = np.full(n, -1)
    for i in range(1, n):
        if i == n // 2:  # a second tree
            xyz[i] = rng.uniform(0, 40, 3)
            continue
        parent[i] = i - 1 if rng.random() < 0.85 else rng.integers(0, i)
        xyz[i] = xyz[parent[i]] + rng.normal(size=3) * rng.uniform(0.5, 3.0)
    xyz[n - 1] = xyz[parent[n - 1]]  # a zero-length edge
    lone = rng.uniform(0, 40, (3, 3))  # isolated roots
    xyz = np.concatenate([xyz, lone])
    parent = np.concatenate([parent, [-1, -1, -1]])
    ids = rng.permutation(len(xyz)) * 3 + 7
    parent_ids = np.where(parent >= 0, ids[np.maximum(parent, 0)], -1)
    return make_tree(xyz, parent_ids, ids)


def scattered_tree(rng, n: int) -> SwcTree:
    """Nodes scattered in a flat 60 x 60 x 6 box with random parents: long, crossing edges."""
    xyz = rng.uniform(0, 1, (n, 3)) * np.array([60.0, 60.0, 6.0])
    parent = np.array([-1, *(rng.integers(0, i) for i in range(1, n))])
    return make_tree(xyz, np.where(parent >= 0, parent + 1, -1))


def pair(kind: str, seed: int) -> tuple[SwcTree, SwcTree]:
    rng = np.random.default_rng(seed)
    if kind == "walk":
        return random_walk_tree(rng, 120), random_walk_tree(rng, 90)
    return scattered_tree(rng, 40), scattered_tree(rng, 30)


# ---------------------------------------------------------------- hand computations


@pytest.mark.parametrize("d", [0.0, 0.5, 1.999, 2.0, 3.7, 25.0])
def test_parallel_lines_are_their_distance_apart(d):
    result = compare_trees(line_at(0.0), line_at(d))
    far = d >= 2
    assert result.esa == pytest.approx(d, abs=1e-12)
    assert result.esa_test_to_gold == pytest.approx(d, abs=1e-12)
    assert result.esa_gold_to_test == pytest.approx(d, abs=1e-12)
    assert result.pds == (1.0 if far else 0.0)
    assert result.dsa == pytest.approx(d if far else 0.0, abs=1e-12)
    assert result.precision == result.recall == result.f1 == (0.0 if far else 1.0)
    assert result.test_points == result.gold_points == 11
    assert result.test_length == result.gold_length == 10.0


def test_a_tree_against_itself_scores_zero_distance_and_full_overlap():
    tree = random_walk_tree(np.random.default_rng(3), 200)
    result = compare_trees(tree, tree)
    for key in ("esa", "dsa", "pds", "esa_test_to_gold", "esa_gold_to_test"):
        assert getattr(result, key) == pytest.approx(0.0, abs=1e-9), key
    assert result.precision == result.recall == result.f1 == 1.0
    assert result.test_nodes == result.gold_nodes == 203


def test_an_extra_branch_counts_only_from_test_to_gold():
    # gold: (0,0,0)-(10,0,0); test adds the branch (10,0,0)-(10,6,0). The branch's 7 samples
    # lie at y = 6, 5, ..., 0, that is 6, 5, ..., 0 from the gold line; the shared edge has 11
    # samples at distance 0.
    gold = chain((0, 0, 0), (10, 0, 0))
    test = make_tree([(0, 0, 0), (10, 0, 0), (10, 6, 0)], [-1, 1, 2])
    result = compare_trees(test, gold)
    assert (result.test_points, result.gold_points) == (18, 11)
    assert (result.test_length, result.gold_length) == (16.0, 10.0)
    assert result.esa_gold_to_test == 0.0
    assert result.dsa_gold_to_test == result.pds_gold_to_test == 0.0
    assert result.esa_test_to_gold == pytest.approx(21 / 18)
    assert result.esa == pytest.approx(21 / 36)
    # distant points (>= 2): 6, 5, 4, 3, 2; DSA takes the one direction that has any
    assert result.dsa_test_to_gold == result.dsa == pytest.approx(4.0)
    assert result.pds_test_to_gold == pytest.approx(5 / 18)
    assert result.pds == pytest.approx(5 / 36)
    # near length: 11 samples x 10/11 on the shared edge, 2 samples x 6/7 on the branch
    assert result.precision == pytest.approx((10 + 12 / 7) / 16)
    assert result.recall == 1.0
    assert result.f1 == pytest.approx(82 / 97)


@pytest.mark.parametrize(("length", "count"), [(0.0, 1), (0.49, 1), (0.5, 2), (1.49, 2),
                                               (1.5, 3), (2.3, 3), (7.5, 9), (10.0, 11)])
def test_an_edge_of_length_l_has_int_1_plus_l_plus_half_samples(length, count):
    direction = np.array([2.0, -1.0, 2.0]) / 3.0  # a unit vector off the axes
    edge = chain((1.0, 2.0, 3.0), tuple(np.array([1.0, 2.0, 3.0]) + length * direction))
    result = compare_trees(edge, line_at(0.0))
    assert result.test_points == count
    assert result.test_length == pytest.approx(length)


def test_isolated_nodes_are_one_point_each_and_add_no_length():
    test = make_tree([(0, 0, 0), (10, 0, 0), (5, 10, 0)], [-1, 1, -1])
    result = compare_trees(test, line_at(0.0))
    assert result.test_points == 12
    assert result.esa_test_to_gold == pytest.approx(10 / 12)
    assert result.pds_test_to_gold == pytest.approx(1 / 12)
    assert result.precision == 1.0  # the lone node stands for no length
    assert result.esa_gold_to_test == 0.0


def test_single_node_trees_compare_as_points():
    result = compare_trees(chain((0, 0, 0)), chain((3, 4, 0)))
    assert (result.esa, result.dsa, result.pds) == (5.0, 5.0, 1.0)
    assert result.test_points == result.gold_points == 1
    # no length at all: the fraction of points within the threshold, here none
    assert result.precision == result.recall == result.f1 == 0.0


def test_zero_length_edge_is_a_point_target():
    gold = make_tree([(4, 0, 0), (4, 0, 0)], [-1, 1])
    result = compare_trees(chain((0, 3, 0)), gold)
    assert result.gold_points == 1
    assert result.esa == pytest.approx(5.0)


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize("kind", ["walk", "scattered"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equals_brute_force_reference_on_random_trees(kind, seed):
    test, gold = pair(kind, seed)
    for threshold in (2.0, 5.5):
        expected = reference_scores(test, gold, threshold)
        assert_matches(compare_trees(test, gold, threshold), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_search_stays_exact_when_candidates_overflow(monkeypatch, seed):
    # One neighbour at first and tiny chunks: nearly every point takes the re-query path.
    monkeypatch.setattr(reconstruction, "FIRST_NEIGHBOURS", 1)
    monkeypatch.setattr(reconstruction, "CANDIDATE_BUDGET", 7)
    test, gold = pair("scattered", seed)
    assert_matches(compare_trees(test, gold), reference_scores(test, gold))


def test_point_at_the_centre_of_a_ring_sees_many_candidates():
    angles = np.linspace(0, 1.9 * np.pi, 300)
    ring = chain(*np.stack([20 * np.cos(angles), 20 * np.sin(angles), 0 * angles], axis=1))
    centre = chain((0, 0, 0), (0, 0, 0.3))  # one short edge: one sample point, 0.3 off centre
    result = compare_trees(centre, ring)
    assert_matches(result, reference_scores(centre, ring))
    assert result.esa_test_to_gold == pytest.approx(20.0, rel=1e-3)


@pytest.mark.parametrize("kind", ["walk", "scattered"])
def test_swapping_the_trees_swaps_directions(kind):
    test, gold = pair(kind, 5)
    forward, backward = compare_trees(test, gold), compare_trees(gold, test)
    for key in ("esa", "dsa", "pds", "f1"):
        assert getattr(forward, key) == pytest.approx(getattr(backward, key), abs=1e-12), key
    for key in DIRECTIONAL:
        assert getattr(forward, f"{key}_test_to_gold") == getattr(backward, f"{key}_gold_to_test")
    assert (forward.precision, forward.recall) == (backward.recall, backward.precision)
    assert (forward.test_points, forward.test_length) == (backward.gold_points,
                                                         backward.gold_length)


def test_translating_both_trees_changes_nothing():
    test, gold = pair("walk", 7)
    offset = np.array([1234.5, -987.25, 321.0])

    def moved(tree):
        return SwcTree(tree.ids, tree.types, tree.xyz + offset, tree.radius, tree.parents)

    before, after = compare_trees(test, gold), compare_trees(moved(test), moved(gold))
    assert (before.test_points, before.gold_points) == (after.test_points, after.gold_points)
    for field in fields(ReconstructionScores):
        assert getattr(after, field.name) == pytest.approx(getattr(before, field.name),
                                                           rel=1e-9, abs=1e-9), field.name


# ---------------------------------------------------------------- hairiness

#: A line of length 40 along x with 4 spurs of length 2 along y from its inner nodes: 6 tips.
SPURRED = make_tree([(0, 0, 0), (8, 0, 0), (16, 0, 0), (24, 0, 0), (32, 0, 0), (40, 0, 0),
                     (8, 2, 0), (16, -2, 0), (24, 2, 0), (32, -2, 0)],
                    [-1, 1, 2, 3, 4, 5, 2, 3, 4, 5])
#: A Y of three arms of length 5 (3-4-5 triangles), rooted at the end of its stem: 3 tips.
Y_FROM_STEM = make_tree([(0, 0, 0), (0, 5, 0), (3, 9, 0), (-3, 9, 0)], [-1, 1, 2, 2])
#: The same Y rooted at its fork (a root of degree 3 is no tip): 3 tips.
Y_FROM_FORK = make_tree([(0, 5, 0), (0, 0, 0), (3, 9, 0), (-3, 9, 0)], [-1, 1, 1, 1])


@pytest.mark.parametrize("tree, tips, length", [
    (chain((0, 0, 0), (10, 0, 0), (20, 0, 0)), 2, 20.0),  # the root with one child is a tip
    (make_tree([(10, 0, 0), (0, 0, 0), (20, 0, 0)], [-1, 1, 1]), 2, 20.0),  # root in the middle
    (Y_FROM_STEM, 3, 15.0), (Y_FROM_FORK, 3, 15.0), (SPURRED, 6, 48.0)])
def test_hairiness_counts_terminal_tips_per_100_units_of_cable(tree, tips, length):
    result = compare_trees(tree, tree)
    assert (result.test_tips, result.gold_tips, result.test_length) == (tips, tips,
                                                                          pytest.approx(length))
    assert result.test_hairiness == result.gold_hairiness == pytest.approx(100 * tips / length)
    assert result.hairiness_ratio == pytest.approx(1.0)


def test_hairiness_ratio_of_spurs_against_the_bare_line():
    bare = chain((0, 0, 0), (40, 0, 0))
    result = compare_trees(SPURRED, bare)
    # 6 tips / 48 against 2 tips / 40: 12.5 / 5 = 2.5; F1 hardly notices the spurs.
    assert (result.test_hairiness, result.gold_hairiness) == (pytest.approx(12.5),
                                                               pytest.approx(5.0))
    assert result.hairiness_ratio == pytest.approx(2.5)
    assert result.f1 > 0.9
    assert compare_trees(bare, SPURRED).hairiness_ratio == pytest.approx(0.4)


def test_a_tree_without_length_has_no_hairiness():
    lone = make_tree([(5, 0, 0)], [-1])
    forest = make_tree([(0, 0, 0), (10, 0, 0), (5, 5, 0)], [-1, 1, -1])  # isolated node: no tip
    result = compare_trees(lone, forest)
    assert (result.test_tips, result.gold_tips) == (0, 2)
    assert (result.test_hairiness, result.gold_hairiness) == (None, pytest.approx(20.0))
    assert result.hairiness_ratio is None and compare_trees(forest, lone).hairiness_ratio is None
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["hairiness_ratio"] is None


# ---------------------------------------------------------------- unlabelled neurites


def test_trace_on_unlabelled_neurites_counts_neither_way():
    # Three equal lines traced: on the gold (y=0), on an unlabelled neurite (y=20), on nothing
    # (y=40). Plain precision: 1 of 3 lines; with the unlabelled one set aside: 1 of 2.
    gold, aside = line_at(0), line_at(20)
    test = merge_trees([line_at(0.5), line_at(20.5), line_at(40)])
    assert compare_trees(test, gold).precision == pytest.approx(1 / 3)
    assert labelled_precision(test, gold, aside) == pytest.approx(1 / 2)
    # Only the trace near the unlabelled neurite is set aside, not the trace near the gold.
    assert labelled_precision(merge_trees([line_at(0.5), line_at(20.5)]), gold, aside) == 1.0
    assert labelled_precision(test, gold, line_at(0)) == pytest.approx(1 / 3)


def test_labelled_precision_is_plain_precision_away_from_unlabelled_neurites():
    rng = np.random.default_rng(3)
    for _ in range(5):
        test, gold = random_walk_tree(rng, 30), random_walk_tree(rng, 30)
        far_away = chain((500, 500, 500), (510, 500, 500))
        assert labelled_precision(test, gold, far_away) == pytest.approx(
            compare_trees(test, gold).precision)


def test_labelled_precision_without_anything_left_to_score_is_nan():
    empty = make_tree(np.zeros((0, 3)), [])
    assert math.isnan(labelled_precision(empty, line_at(0), line_at(20)))
    assert math.isnan(labelled_precision(line_at(20.5), line_at(0), line_at(20)))
    with pytest.raises(InputError, match="unlabelled tree.*cycle"):
        labelled_precision(line_at(0), line_at(0), make_tree([(0, 0, 0), (1, 0, 0)], [2, 1]))


def test_without_unlabelled_neurites_labelled_precision_is_plain_precision():
    test = merge_trees([line_at(0.5), line_at(20.5), line_at(40)])
    for nothing in (None, make_tree(np.zeros((0, 3)), [])):
        assert labelled_precision(test, line_at(0), nothing) == pytest.approx(1 / 3)


# ---------------------------------------------------------------- bad input


def test_compare_trees_refuses_an_empty_gold_and_invalid_trees_and_bad_thresholds():
    # An empty *test* tree is scored (tests/failures/test_bad_inputs.py); an empty gold is not.
    empty = make_tree(np.zeros((0, 3)), [])
    with pytest.raises(InputError, match="gold tree: contains no nodes"):
        compare_trees(line_at(0), empty)
    with pytest.raises(InputError, match="test tree.*cycle"):
        compare_trees(make_tree([(0, 0, 0), (1, 0, 0)], [2, 1]), line_at(0))
    with pytest.raises(InputError, match="gold tree.*cycle"):
        compare_trees(line_at(0), make_tree([(0, 0, 0), (1, 0, 0)], [2, 1]))
    for threshold in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="threshold"):
            compare_trees(line_at(0), line_at(1), threshold)


def test_compare_swc_files_reads_both_and_names_an_empty_file(tmp_path):
    test_path, gold_path = write_swc(tmp_path / "t.swc", line_at(0)), tmp_path / "g.swc"
    write_swc(gold_path, line_at(3))
    result = compare_swc_files(test_path, gold_path, 2.5)
    assert (result.esa, result.pds, result.threshold) == (pytest.approx(3.0), 1.0, 2.5)
    empty = tmp_path / "empty.swc"
    empty.write_text("# no nodes\n")
    with pytest.raises(InputError, match=re.escape(f"{empty}: contains no nodes, so there is "
                                                   "no gold reconstruction")):
        compare_swc_files(test_path, empty)
    with pytest.raises(InputError, match="threshold"):
        compare_swc_files(test_path, gold_path, 0)


# ---------------------------------------------------------------- command line


@pytest.fixture
def swc_pair(tmp_path):
    test = make_tree([(0, 0, 0), (10, 0, 0), (10, 6, 0)], [-1, 1, 2])
    return (write_swc(tmp_path / "test.swc", test),
            write_swc(tmp_path / "gold.swc", line_at(0)))


def test_cli_json_has_the_scores(swc_pair):
    result = invoke("compare", *swc_pair, "--json", "--threshold", "3")
    assert result.code == 0, result.err
    scores = json.loads(result.out)
    assert set(SCORES) | {"threshold", "test_length", "esa_test_to_gold"} <= set(scores)
    assert scores == compare_swc_files(*swc_pair, 3.0).to_dict()
    assert scores["threshold"] == 3.0


def test_cli_prints_a_table(swc_pair):
    result = invoke("compare", *swc_pair)
    assert result.code == 0, result.err
    for label in ("ESA", "DSA", "PDS", "precision", "recall", "F1", "0.583"):
        assert label in result.out
    # The test tree: 2 tips on 16 voxels of cable, 12.5 tips per 100.
    assert "hairiness" in result.out and "12.50" in result.out



@pytest.mark.parametrize("problem", ["missing", "cycle"])
def test_cli_bad_file_is_one_sentence_and_exit_2(swc_pair, tmp_path, problem):
    bad = tmp_path / f"{problem}.swc"
    if problem == "cycle":
        bad.write_text("1 3 0 0 0 1 2\n2 3 1 0 0 1 1\n")
    result = invoke("compare", swc_pair[0], bad, "--json")
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0], result.err
    assert result.out == ""
