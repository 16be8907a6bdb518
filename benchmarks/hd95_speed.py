"""How fast is hd95? Neurite-sized masks in a 64 x 256 x 256 (z, y, x) stack.

The gold mask is a dilated 3D random walk (4000 steps of about 1.5 voxels, about 0.4% of the
voxels); the prediction is the same walk with every point jittered by up to ``--jitter`` voxels,
dilated the same way. ``hd95`` (MONAI's edge and distance functions) is timed against a
reference run in the same process on the same masks: the same definition with scipy's kd-tree
for the nearest surface point. The two values are printed beside the times, so a speed-up is
never bought with a different answer. Rounds are interleaved and the median is reported; the
first call of ``hd95`` (MONAI's import) is not timed. Ratios, not absolute times, are what to
compare between machines. No assertions.

Usage::

    .venv/bin/python benchmarks/hd95_speed.py [--shape 64,256,256] [--rounds 5] [--jitter 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dineuro.evaluate import hd95

SPACING = (1.6, 0.55, 0.5)  # (z, y, x), a confocal stack's anisotropy
WALK_STEPS = 4000
DILATION = 2  # voxels around the walk: neurites 5 voxels thick


def neurite_masks(shape, jitter: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, gold): a jittered copy of a dilated random walk, and the walk."""
    rng = np.random.default_rng(seed)
    limit = np.array(shape) - 1
    walk = np.cumsum(rng.normal(0, 1.5, (WALK_STEPS, 3)), axis=0) + np.array(shape) / 2
    walk = np.clip(walk, 0, limit).astype(int)
    jittered = np.clip(walk + rng.integers(-jitter, jitter + 1, walk.shape), 0, limit)
    masks = []
    for points in (jittered, walk):
        mask = np.zeros(shape, bool)
        mask[tuple(points.T)] = True
        masks.append(ndimage.binary_dilation(mask, iterations=DILATION))
    return masks[0], masks[1]


def surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Physical coordinates of voxels with a face neighbour outside (outside the array too)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_in = np.ones_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            all_in &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inner & ~all_in) * np.asarray(spacing, float)


def kdtree_hd95(pred: np.ndarray, gold: np.ndarray, spacing) -> float:
    """Max of the two directed 95th percentiles of nearest surface distances, by kd-tree."""
    p, g = surface_points(pred, spacing), surface_points(gold, spacing)
    return float(max(np.percentile(cKDTree(g).query(p)[0], 95),
                     np.percentile(cKDTree(p).query(g)[0], 95)))


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,256,256", help="z,y,x in voxels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jitter", type=int, default=2)
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))

    pred, gold = neurite_masks(shape, args.jitter)
    hd95(pred[:4, :4, :4], gold[:4, :4, :4])  # pays MONAI's import once
    times = {"hd95": [], "kd-tree": []}
    for _ in range(args.rounds):
        value, seconds = timed(hd95, pred, gold, SPACING)
        times["hd95"].append(seconds)
        reference, seconds = timed(kdtree_hd95, pred, gold, SPACING)
        times["kd-tree"].append(seconds)
    median = {name: float(np.median(t)) for name, t in times.items()}
    print(f"stack {shape} (z, y, x), spacing {SPACING}: gold {gold.mean() * 100:.2f}%, "
          f"prediction {pred.mean() * 100:.2f}% of the voxels, {args.rounds} rounds")
    print(f"hd95 {median['hd95']:.3f} s, kd-tree reference {median['kd-tree']:.3f} s, "
          f"ratio hd95 / reference x{median['hd95'] / median['kd-tree']:.2f}; "
          f"HD95 {value:.6f} vs {reference:.6f} (relative difference "
          f"{abs(value - reference) / reference:.1e})")


if __name__ == "__main__":
    main()
