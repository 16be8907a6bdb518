"""How the tracer's speckle rule was chosen: the cable it drops on and off the gold, per setting.

The tracer drops a separate tree that looks like speckle: a map median along its centre line
below ``SPECKLE_MAP`` with more than ``SPECKLE_TIPS`` tips per 100 voxels of cable
(:mod:`dineuro.trace._forest`). For each ``MAP:TIPS`` setting of ``--grid`` this traces every
map with the rule at that setting and with no rule, and counts the cable (x voxels) of the
difference: on the gold (within 2 voxels of a gold SWC node: real neurite lost) and off it
(removed), and, for scale, the median over the stacks of the gold SWCs' tips per 100 voxels of
cable. Each set is ``DATA:MODEL:N``, the first N stacks of DATA's train split predicted by
MODEL ("default" or a checkpoint); choose on train stacks, never on the test split that the
card and the adaptation benchmark score. The rule's settings are module constants, so the
script swaps them in for each trace. The numbers in ``dineuro.trace._forest`` (run with the
adaptation benchmark's folder from ``benchmarks/adapt_shift.py``)::

    python benchmarks/speckle_rule.py data/noisy:default:16 \\
        runs/adapt_shift/data_widefield:default:8 \\
        runs/adapt_shift/data_widefield:runs/adapt_shift/widefield_adapted.pt:8 \\
        runs/adapt_shift/data_haze:default:8 \\
        runs/adapt_shift/data_haze:runs/adapt_shift/haze_adapted.pt:8 \\
        runs/adapt_shift/data_beads:default:8 \\
        runs/adapt_shift/data_beads:runs/adapt_shift/beads_adapted.pt:8 \\
        --grid 0.6:5,0.6:4,0.7:5,0.7:4,0.8:4
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
from scipy.spatial import cKDTree

from dineuro.data.dataset import open_dataset
from dineuro.io import SwcTree
from dineuro.predictor import Predictor
from dineuro.trace import EmptyTraceWarning, trace

#: A piece of traced cable is on the gold when its middle is this close to a gold node (voxels).
ON_GOLD = 2.0


def cable_on_off(tree: SwcTree, gold: cKDTree) -> np.ndarray:
    """(cable on the gold, cable off it), x voxels: each edge by where its middle lies."""
    if not len(tree):
        return np.zeros(2)
    child, parent = tree.edges()
    a, b = tree.xyz[child], tree.xyz[parent]
    length = np.linalg.norm(a - b, axis=1)
    on = gold.query((a + b) / 2)[0] <= ON_GOLD
    return np.array([length[on].sum(), length[~on].sum()])


def tips_per_100(tree: SwcTree) -> float:
    """Terminal tips per 100 x voxels of the tree's cable."""
    child, parent = tree.edges()
    length = np.linalg.norm(tree.xyz[child] - tree.xyz[parent], axis=1).sum()
    return 100.0 * (len(tree) - len(np.unique(parent))) / max(length, 1e-9)


def traced(prob: np.ndarray, spacing, setting: tuple[float, float] | None) -> SwcTree:
    """The trace of ``prob`` with the rule at ``setting`` (None: no rule)."""
    speckle_map, tips = (0.0, 0.0) if setting is None else setting
    with mock.patch("dineuro.trace._forest.SPECKLE_MAP", speckle_map), \
            mock.patch("dineuro.trace._forest.SPECKLE_TIPS", tips), warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyTraceWarning)
        return trace(prob, spacing, kind="probability")


def one_set(spec: str, grid: list[tuple[float, float]]) -> dict:
    """Cable lost on and removed off the gold per setting, the cable without the rule, and the
    gold's median tips per 100 voxels."""
    data, model, count = spec.rsplit(":", 2)
    dataset = open_dataset(Path(data))
    predictor = Predictor.from_checkpoint(model, device="cpu")
    totals = {"without": np.zeros(2), **{setting: np.zeros(2) for setting in grid}}
    gold_tips = []
    for name in dataset.split()["train"][:int(count)]:
        image = dataset.image(name)
        prob = predictor.predict(image.array)
        gold_tips.append(tips_per_100(dataset.tree(name)))
        gold = cKDTree(dataset.tree(name).xyz)
        without = cable_on_off(traced(prob, image.spacing, None), gold)
        totals["without"] += without
        for setting in grid:
            totals[setting] += without - cable_on_off(traced(prob, image.spacing, setting), gold)
    totals["gold tips"] = float(np.median(gold_tips))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", metavar="DATA:MODEL:N")
    parser.add_argument("--grid", default="0.6:5,0.7:4,0.8:4",
                        help="MAP:TIPS settings, comma-separated")
    args = parser.parse_args()
    grid = [tuple(float(v) for v in item.split(":")) for item in args.grid.split(",")]
    found = {spec: one_set(spec, grid) for spec in args.sets}
    print("| set | gold tips per 100 voxels | cable on / off the gold | "
          + " | ".join(f"median < {m:g}, tips > {t:g}: lost / removed" for m, t in grid) + " |")
    print("|---|---:|---:|" + "---:|" * len(grid))
    total = {setting: np.zeros(2) for setting in grid}
    for spec, totals in found.items():
        on, off = totals["without"]
        cells = []
        for setting in grid:
            lost, removed = totals[setting]
            total[setting] += totals[setting]
            cells.append(f"{lost:.0f} ({100 * lost / max(on, 1):.2f} %) / "
                         f"{removed:.0f} ({100 * removed / max(off, 1):.1f} %)")
        print(f"| {spec} | {totals['gold tips']:.1f} | {on:.0f} / {off:.0f} | "
              + " | ".join(cells) + " |")
    print("| all | | | " + " | ".join(f"{total[s][0]:.0f} / {total[s][1]:.0f}" for s in grid)
          + " |")


if __name__ == "__main__":
    main()
