"""Thinning or geodesic centre lines? Both tracer methods on clean, noisy and raw inputs.

On the test stacks of one or more datasets (``dineuro synth``), :func:`dineuro.trace.trace` runs
with ``method="thinning"`` and ``method="geodesic"`` (all other options at their defaults) on
three inputs per stack:

- **gold mask**: ``labels/NAME.tif`` (``kind="mask"``): centre lines and pruning alone;
- **noisy map**: :func:`degraded_map` of that mask: what a network gives on a hard stack,
  fatter, soft, bumpy, speckled, dim in places (``kind="probability"``);
- **raw image**: the stack itself, percentile-normalised (``kind="image"``).

Each trace is scored against ``swc/NAME.swc`` with :func:`dineuro.evaluate.compare_trees`
(SWC units, threshold 2 voxels, as ``dineuro evaluate``); the Markdown table gives F1,
precision, recall, ESA and the hairiness ratio (tips per cable over the gold's; 1 = as hairy as
the gold) as mean ± std over stacks, and the seconds per trace (wall clock, whatever else the
machine runs). An empty or refused trace counts as F1 and recall 0 and adds no other score.
Every random choice is seeded by ``--seed`` and the stack's position in the split.

Usage::

    python benchmarks/trace_methods.py /work/data/noisy /work/data/bench --stacks 4
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from dineuro.data.dataset import open_dataset
from dineuro.data.render import spacing_in_x_voxels
from dineuro.errors import InputError
from dineuro.evaluate import compare_trees
from dineuro.trace import METHODS, EmptyTraceWarning, trace

THRESHOLD = 2.0  # SWC units (voxels), as dineuro evaluate
METRICS = ("f1", "precision", "recall", "esa", "hairiness_ratio")
NOTHING_MATCHED = ("f1", "recall")  # what an empty or refused trace still scores (0)
INPUTS = ("gold mask", "noisy map", "raw image")


def degraded_map(label: np.ndarray, spacing, seed: int, *, blur: float = 1.5, gain: float = 2.0,
                 roughness: float = 0.3, noise: float = 0.05, speckles: float = 2e-4,
                 speckle_range: tuple[float, float] = (0.3, 0.7), dim_stretches: int = 6,
                 dim_radius: float = 4.0, dim_range: tuple[float, float] = (0.3, 0.6)
                 ) -> np.ndarray:
    """A float32 probability map as a network might give for ``label`` on a noisy stack.

    Args:
        label: boolean (z, y, x) gold mask.
        spacing: its (z, y, x) voxel size; lengths below are in x voxels.
        seed: seeds every random choice.
        blur: Gaussian sigma of the blur: the map is soft and fatter than the mask.
        gain: the blurred mask is multiplied by this (and clipped to 1), so that thin neurites,
            whose blurred peak is low, still reach the thresholds.
        roughness: standard deviation of a smooth (sigma 1 voxel) multiplicative gain around 1:
            a bumpy surface and uneven brightness.
        noise: standard deviation of additive Gaussian noise everywhere.
        speckles: fraction of voxels set to an isolated speck of uniform probability in
            ``speckle_range``.
        dim_stretches: how many balls of ``dim_radius`` around random neurite voxels are
            multiplied by a factor uniform in ``dim_range``: faint stretches and gaps.

    Returns:
        The (z, y, x) map in [0, 1].
    """
    rng = np.random.default_rng(seed)
    scale = spacing_in_x_voxels(spacing)
    prob = ndimage.gaussian_filter(label.astype(np.float32), blur / scale) * gain
    grain = ndimage.gaussian_filter(rng.standard_normal(label.shape).astype(np.float32), 1.0)
    prob *= 1 + roughness * grain / grain.std()
    prob += rng.normal(0.0, noise, label.shape).astype(np.float32)
    specks = rng.random(label.shape) < speckles
    prob[specks] = rng.uniform(*speckle_range, int(specks.sum()))
    neurite = np.argwhere(label)
    if len(neurite):
        grid = np.indices(label.shape, sparse=True)
        for centre in neurite[rng.integers(0, len(neurite), dim_stretches)]:
            ball = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, scale, strict=True))
            prob[ball <= dim_radius ** 2] *= rng.uniform(*dim_range)
    return np.clip(prob, 0.0, 1.0)


def scored_trace(array: np.ndarray, spacing, gold, kind: str, method: str):
    """``(scores or None, seconds)`` of one trace; None when it is empty or refused."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyTraceWarning)
            tree = trace(array, spacing, kind=kind, method=method)
    except InputError:
        tree = None
    seconds = time.perf_counter() - start
    if tree is None or len(tree) == 0:
        return None, seconds
    distance = compare_trees(tree, gold, THRESHOLD)
    return {metric: getattr(distance, metric) for metric in METRICS}, seconds


def run(datasets: list[Path], stacks: int, seed: int) -> dict[tuple[str, str], list]:
    """Per (input, method): a ``(scores or None, seconds)`` pair per stack."""
    results: dict[tuple[str, str], list] = {(i, m): [] for i in INPUTS for m in METHODS}
    for data in datasets:
        dataset = open_dataset(data)
        for position, name in enumerate(dataset.split()["test"][:stacks]):
            image, gold = dataset.image(name), dataset.tree(name)
            label = dataset.label(name, image)
            inputs = {"gold mask": (label, "mask"),
                      "noisy map": (degraded_map(label, image.spacing, seed + position),
                                    "probability"),
                      "raw image": (image.array, "image")}
            for (source, method), rows in results.items():
                array, kind = inputs[source]
                rows.append(scored_trace(array, image.spacing, gold, kind, method))
            print(f"{data.name}/{name}: " + ", ".join(
                f"{s}/{m} F1 {r[-1][0]['f1'] if r[-1][0] else 0:.3f} {r[-1][1]:.1f}s"
                for (s, m), r in results.items()), flush=True)
    return results


def mean_std(rows: list, metric: str) -> str:
    values = [scores[metric] for scores, _ in rows
              if scores is not None and scores[metric] is not None]
    if metric in NOTHING_MATCHED:
        values += [0.0] * sum(scores is None for scores, _ in rows)
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def markdown(results: dict[tuple[str, str], list], header: str) -> str:
    lines = [header, "", "| input | method | F1 | precision | recall | ESA | hairiness ratio "
             "| s / stack | empty |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (source, method), rows in results.items():
        seconds = [s for _, s in rows]
        cells = [source, method, *(mean_std(rows, m) for m in METRICS),
                 f"{np.mean(seconds):.2f} ± {np.std(seconds):.2f}",
                 str(sum(scores is None for scores, _ in rows))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="dataset folders")
    parser.add_argument("--stacks", type=int, default=4,
                        help="first N test stacks of each dataset (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="for the noisy maps")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    results = run(args.datasets, args.stacks, args.seed)
    n = len(next(iter(results.values())))
    header = (f"{n} test stacks of {', '.join(str(d) for d in args.datasets)}; scores against "
              f"swc/NAME.swc, threshold {THRESHOLD:g} voxels; mean ± std over stacks.")
    table = markdown(results, header)
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
