"""How fast is compare_trees? Two random 10^4-node trees, and the ratio to a brute-force search.

Trees are branching persistent random walks (steps of 1.5 voxels) in a 512 x 512 x 256 (x, y, z)
box. Two cases: the gold tree against a jittered copy of itself with a few branches dropped (a
good reconstruction: most points near the other tree), and against an unrelated random tree
(most points far from the other tree, the slow case for the kd-tree search). The brute-force
reference measures every sample point (the same samples) against every segment in numpy, so only
the search differs; it runs on smaller trees
and is checked to give the same ESA. Ratios, not absolute times, are what to compare between
machines. No assertions.

Usage::

    .venv/bin/python benchmarks/compare_speed.py [--nodes 10000] [--reference-nodes 1500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dineuro.evaluate.reconstruction import _sample, compare_trees
from dineuro.io.swc import SwcTree

BOX = np.array([512.0, 512.0, 256.0])  # (x, y, z)
BRANCH_NODES = 200
STEP = 1.5  # voxels between consecutive nodes
REFERENCE_PAIRS = 2**22  # point-segment pairs per brute-force chunk


def random_tree(n_nodes: int, seed: int) -> SwcTree:
    """Persistent random walks of BRANCH_NODES nodes, each starting on an earlier node."""
    rng = np.random.default_rng(seed)
    xyz = np.empty((n_nodes, 3))
    parents = np.empty(n_nodes, dtype=np.int64)
    for first in range(0, n_nodes, BRANCH_NODES):
        m = min(BRANCH_NODES, n_nodes - first)
        parent_row = int(rng.integers(first)) if first else -1
        start = xyz[parent_row] if first else BOX / 2
        heading = rng.normal(size=3) + np.cumsum(rng.normal(scale=0.3, size=(m, 3)), axis=0)
        heading /= np.linalg.norm(heading, axis=1, keepdims=True)
        xyz[first:first + m] = np.clip(start + STEP * np.cumsum(heading, axis=0), 0, BOX)
        parents[first] = parent_row + 1 if first else -1
        parents[first + 1:first + m] = np.arange(first + 1, first + m)
    return SwcTree(np.arange(1, n_nodes + 1), np.full(n_nodes, 3), xyz, np.ones(n_nodes), parents)


def jittered(tree: SwcTree, seed: int) -> SwcTree:
    """The tree moved by N(0, 0.7) voxels per node, with about 5% of its walks cut off."""
    rng = np.random.default_rng(seed)
    moved = SwcTree(tree.ids, tree.types, tree.xyz + rng.normal(scale=0.7, size=tree.xyz.shape),
                    tree.radius, tree.parents)
    walk = np.arange(len(tree)) // BRANCH_NODES
    dropped = rng.random(walk.max() + 1) < 0.05
    dropped[0] = False
    return moved.subset(~dropped[walk])


def brute_force_esa(test: SwcTree, gold: SwcTree) -> float:
    """ESA from every sample point against every segment of the other tree, in chunks."""
    means = []
    for source, target in ((test, gold), (gold, test)):
        points = _sample(source).points
        target_sampling = _sample(target)
        a, b = target_sampling.start, target_sampling.end
        ab = b - a
        squared = np.maximum((ab ** 2).sum(-1), np.finfo(float).tiny)
        rows = max(1, REFERENCE_PAIRS // len(a))
        nearest = np.concatenate([
            np.linalg.norm(p[:, None] - a - np.clip(((p[:, None] - a) * ab).sum(-1) / squared,
                                                    0, 1)[..., None] * ab, axis=-1).min(axis=1)
            for p in (points[i:i + rows] for i in range(0, len(points), rows))])
        means.append(nearest.mean())
    return float(np.mean(means))


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--reference-nodes", type=int, default=1500)
    args = parser.parse_args()

    gold = random_tree(args.nodes, seed=0)
    cases = {"jittered copy": jittered(gold, seed=1), "unrelated tree": random_tree(args.nodes, 2)}
    for name, test in cases.items():
        result, seconds = timed(compare_trees, test, gold)
        print(f"{len(test)} vs {len(gold)} nodes, {name}: compare_trees {seconds:.3f} s "
              f"({result.test_points + result.gold_points} sample points; ESA {result.esa:.3f}, "
              f"PDS {result.pds:.3f}, F1 {result.f1:.3f})")

    small_gold = random_tree(args.reference_nodes, seed=0)
    for name, small_test in (("jittered copy", jittered(small_gold, seed=1)),
                             ("unrelated tree", random_tree(args.reference_nodes, 2))):
        result, seconds = timed(compare_trees, small_test, small_gold)
        esa, brute_seconds = timed(brute_force_esa, small_test, small_gold)
        print(f"{len(small_test)} vs {len(small_gold)} nodes, {name}: compare_trees "
              f"{seconds:.3f} s, brute force {brute_seconds:.2f} s, speed-up "
              f"x{brute_seconds / seconds:.0f}; ESA {result.esa:.6f} vs {esa:.6f}")


if __name__ == "__main__":
    main()
