"""How fast is render_mask? 10^5 nodes into a 256 x 512 x 512 (z, y, x) volume.

Builds a random branching tree (persistent random walks that branch off earlier nodes, reflected
at the volume walls, radii 0.5-3 voxels), renders it with ``render_mask`` and prints the time,
the rate in volume voxels per second and the ratio against a naive reference run in
the same process: a Python loop over edges that tests every voxel of each edge's bounding box,
timed on a subset of edges and scaled up to the whole tree. Ratios, not absolute times, are what
to compare between machines. No assertions.

Usage::

    .venv/bin/python benchmarks/render_speed.py [--nodes 100000] [--reference-edges 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dineuro.data.render import render_mask
from dineuro.io.swc import SwcTree, swc_to_zyx

SHAPE = (256, 512, 512)  # (z, y, x)
BRANCH_NODES = 250
STEP = 1.5  # voxels between consecutive nodes


def random_tree(n_nodes: int, shape=SHAPE, seed: int = 0) -> SwcTree:
    """One random tree: persistent random walks, each starting on an earlier node."""
    rng = np.random.default_rng(seed)
    size = np.array(shape[::-1], dtype=np.float64)  # (x, y, z) extent
    xyz = np.empty((n_nodes, 3))
    radius = np.empty(n_nodes)
    parents = np.empty(n_nodes, dtype=np.int64)
    filled = 0
    while filled < n_nodes:
        m = min(BRANCH_NODES, n_nodes - filled)
        if filled == 0:
            start, parent_row = size / 2, -1
        else:
            parent_row = int(rng.integers(filled))
            start = xyz[parent_row]
        heading = rng.normal(size=3) + np.cumsum(rng.normal(scale=0.3, size=(m, 3)), axis=0)
        heading /= np.linalg.norm(heading, axis=1, keepdims=True)
        walk = start + STEP * np.cumsum(heading, axis=0)
        period = 2 * (size - 1)  # reflect at the walls
        walk = np.mod(walk, period)
        walk = np.where(walk > size - 1, period - walk, walk)
        r0 = rng.uniform(0.5, 3.0)
        xyz[filled:filled + m] = walk
        radius[filled:filled + m] = np.linspace(r0, rng.uniform(0.5, r0), m)
        parents[filled] = parent_row + 1 if parent_row >= 0 else -1
        parents[filled + 1:filled + m] = np.arange(filled + 1, filled + m)  # previous node's id
        filled += m
    return SwcTree(np.arange(1, n_nodes + 1), np.full(n_nodes, 3), xyz, radius, parents)


def naive_render(tree: SwcTree, shape, spacing, min_radius, edges) -> np.ndarray:
    """Reference: one edge at a time, every voxel of its bounding box, same geometry."""
    scale = np.asarray(spacing, dtype=np.float64) / spacing[2]
    zyx = swc_to_zyx(tree.xyz)
    mask = np.zeros(shape, dtype=bool)
    for c, p in zip(*edges, strict=True):
        a, b = zyx[c], zyx[p]
        ra, rb = tree.radius[c], tree.radius[p]
        reach = np.maximum(max(ra, rb) / scale, min_radius)
        lo = np.clip(np.ceil(np.minimum(a, b) - reach), 0, np.array(shape) - 1).astype(int)
        hi = np.clip(np.floor(np.maximum(a, b) + reach), -1, np.array(shape) - 1).astype(int)
        if np.any(hi < lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(lo[k], hi[k] + 1) for k in range(3)],
                                    indexing="ij"), axis=-1).astype(np.float64)
        w = grid - a
        d = b - a
        dd = np.sum((d * scale) ** 2)
        t = np.clip(np.sum(w * d * scale**2, axis=-1) / dd, 0, 1) if dd > 0 else 0 * w[..., 0]
        dist = np.linalg.norm((w - t[..., None] * d) * scale, axis=-1)
        inside = dist <= ra + t * (rb - ra)
        if min_radius > 0:
            ddi = np.sum(d * d)
            ti = np.clip(np.sum(w * d, axis=-1) / ddi, 0, 1) if ddi > 0 else 0 * w[..., 0]
            inside |= np.linalg.norm(w - ti[..., None] * d, axis=-1) <= min_radius
        mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] |= inside
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--reference-edges", type=int, default=2000)
    args = parser.parse_args()

    t = time.perf_counter()
    tree = random_tree(args.nodes)
    print(f"tree: {len(tree)} nodes, {len(tree.roots)} root(s), volume {SHAPE} (z, y, x), "
          f"built in {time.perf_counter() - t:.2f} s")
    child, parent = tree.edges()
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(len(child), size=min(args.reference_edges, len(child)),
                                replace=False))
    scale_up = len(child) / len(sample)

    for spacing in ((1.0, 1.0, 1.0), (2.5, 1.0, 1.0)):
        for min_radius in (0.0, 1.0):
            t = time.perf_counter()
            mask = render_mask(tree, SHAPE, spacing=spacing, min_radius=min_radius)
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            naive_render(tree, SHAPE, spacing, min_radius, (child[sample], parent[sample]))
            naive_seconds = (time.perf_counter() - t) * scale_up
            print(f"spacing {spacing}, min_radius {min_radius}: render_mask {seconds:.2f} s "
                  f"({mask.size / seconds / 1e6:.0f} M volume voxels/s, "
                  f"{mask.mean() * 100:.2f}% foreground); naive per-edge loop "
                  f"~{naive_seconds:.1f} s (scaled from {len(sample)} edges); "
                  f"speed-up x{naive_seconds / seconds:.1f}")

    # Same answer on the reference subset: the speed-up is not bought with a different result.
    sub = (child[sample], parent[sample])
    pairs = SwcTree(np.arange(2 * len(sample)), np.zeros(2 * len(sample)),
                    np.concatenate([tree.xyz[sub[0]], tree.xyz[sub[1]]]),
                    np.concatenate([tree.radius[sub[0]], tree.radius[sub[1]]]),
                    np.concatenate([np.arange(len(sample), 2 * len(sample)),
                                    np.full(len(sample), -1)]))
    fast = render_mask(pairs, SHAPE, spacing=(2.5, 1.0, 1.0), min_radius=1.0)
    slow = naive_render(pairs, SHAPE, (2.5, 1.0, 1.0), 1.0, pairs.edges())
    print(f"subset check ({len(sample)} edges): masks differ in {int((fast != slow).sum())} "
          "voxels (expected 0, or a handful exactly on a tube surface)")


if __name__ == "__main__":
    main()
