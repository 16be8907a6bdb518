"""How bold may the empty-window test be? Windows skipped against the map's agreement, per factor.

:mod:`dineuro.predict._signal` computes a window when its brightest 3x3x3 running mean stands
more than ``NOISE_FACTOR`` noise units above the stack's background. A larger factor skips more
windows and saves time, until it skips windows whose probabilities matter. For each factor
given, every stack is predicted with the default model and its default precision, once with
every window and once per factor (the module constant set for the call), and the table gives,
over the stacks: the share of windows skipped (mean and largest), and the largest change
against computing every window in Dice (p > 0.5 against ``labels/NAME.tif``) and in traced F1
(:func:`dineuro.trace.trace` with its defaults, against ``swc/NAME.swc`` at 2 voxels). The
issue's allowance is 0.002 for both.

Usage::

    python benchmarks/skip_threshold.py data/big data/noisy data/bench --factors 3 4 6 \\
        --max-stacks 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from run_speed import trace_scores, traced

from dineuro.data.dataset import open_dataset
from dineuro.evaluate import dice
from dineuro.predict import WindowStats, _signal, sliding_window_predict
from dineuro.predictor import Predictor

MAP_THRESHOLD = 0.5


def agreement(network, crop, volume, spacing, label, gold, factors) -> dict:
    """Per factor: (share skipped, |dDice|, |dF1|) against every window computed."""
    full = sliding_window_predict(network, volume, crop, skip_empty=False)
    full_dice = dice(full > MAP_THRESHOLD, label)
    full_f1 = trace_scores(traced(full, spacing, volume), gold)["f1"]
    default, rows = _signal.NOISE_FACTOR, {}
    try:
        for factor in factors:
            _signal.NOISE_FACTOR = factor
            stats = WindowStats()
            prob = sliding_window_predict(network, volume, crop, stats=stats)
            f1 = trace_scores(traced(prob, spacing, volume), gold)["f1"]
            rows[factor] = (1 - stats.computed / stats.windows,
                            abs(dice(prob > MAP_THRESHOLD, label) - full_dice), abs(f1 - full_f1))
    finally:
        _signal.NOISE_FACTOR = default
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path, help="dataset folders (dineuro synth)")
    parser.add_argument("--factors", nargs="+", type=float, default=[3.0, 4.0, 6.0])
    parser.add_argument("--max-stacks", type=int, default=4, help="first N stacks per folder")
    args = parser.parse_args()

    predictor = Predictor.from_checkpoint("default", device="cpu")
    network, crop, norm = predictor.network, predictor.crop, predictor.normalization
    results = []
    for root in args.data:
        dataset = open_dataset(root)
        for name in dataset.names[:args.max_stacks]:
            image = dataset.image(name)
            rows = agreement(network, crop, norm.normalize(image.array), image.spacing,
                             dataset.label(name, image) > 0, dataset.tree(name), args.factors)
            results.append(rows)
            print(f"{root.name}/{name}: " + "; ".join(
                f"{k:g}: skip {s:.2f}, dDice {d:.4f}, dF1 {f:.4f}"
                for k, (s, d, f) in rows.items()), file=sys.stderr, flush=True)
    print(f"{len(results)} stacks of {', '.join(str(p) for p in args.data)}; default model, "
          "default precision; changes against computing every window.\n")
    print("| noise factor | windows skipped, mean | largest | largest abs dDice | "
          "largest abs dF1 |")
    print("|---:|---:|---:|---:|---:|")
    for factor in args.factors:
        skip, d_dice, d_f1 = (np.array([rows[factor][i] for rows in results]) for i in range(3))
        print(f"| {factor:g} | {skip.mean():.2f} | {skip.max():.2f} | {d_dice.max():.4f} | "
              f"{d_f1.max():.4f} |")


if __name__ == "__main__":
    main()
