"""How the tracer's speckle rules were chosen: the cable each setting drops on and off the gold.

The tracer drops a separate tree that looks like speckle: a map median along its centre line
below ``SPECKLE_MAP`` with more than ``SPECKLE_TIPS`` tips per 100 voxels of cable; and removes
a branch with at least ``SPECKLE_BRANCH_MIN_TIPS`` tips, more than ``SPECKLE_BRANCH_TIPS`` per
100 voxels and a map median below ``SPECKLE_BRANCH_MAP`` (:mod:`dineuro.trace._speckle`). For
each ``MAP:TIPS`` setting of ``--grid`` (``MAP:TIPS:MIN_TIPS`` with ``--branches``) this traces
every map with that rule at that setting and with no such rule (the other rule at its
default), and counts the cable (x voxels) of the difference: on the gold (within 2 voxels of a
gold SWC node: real neurite lost) and off it (removed), and, for scale, the median over the
stacks of the gold SWCs' tips per 100 voxels of cable. Each set is ``DATA:MODEL:N``, the first
N stacks of DATA's train split predicted by MODEL ("default" or a checkpoint); choose on train
stacks, never on the test split that the card and the adaptation benchmark score. The rules'
settings are module constants, so the script swaps them in for each trace. The numbers in
``dineuro.trace._speckle`` (run with the adaptation benchmark's folder from
``benchmarks/adapt_shift.py``)::

    python benchmarks/speckle_rule.py data/noisy:default:16 \\
        runs/adapt_shift/data_widefield:default:8 \\
        runs/adapt_shift/data_widefield:runs/adapt_shift/widefield_adapted.pt:8 \\
        runs/adapt_shift/data_haze:default:8 \\
        runs/adapt_shift/data_haze:runs/adapt_shift/haze_adapted.pt:8 \\
        runs/adapt_shift/data_beads:default:8 \\
        runs/adapt_shift/data_beads:runs/adapt_shift/beads_adapted.pt:8 \\
        --grid 0.6:5,0.6:4,0.7:5,0.7:4,0.8:4

and for the branch rule the same sets, with ``data/bench:default:16`` and the noisy set
traced by the adapted and gold-label models that fire on its noise,
``data/noisy:runs/adapt_shift/widefield_adapted.pt:16``,
``data/noisy:runs/adapt_shift/haze_adapted.pt:16`` and
``data/noisy:runs/adapt_shift/widefield_gold.pt:16``, added, and ``--branches --grid
0.7:3.5:4,0.75:3.5:4,0.75:3:4,0.8:4:4``.
"""

from __future__ import annotations

import argparse
import contextlib
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


#: The constants each kind of setting sets, in its order; a rule is off when its map value is 0.
RULES = {"trees": ("SPECKLE_MAP", "SPECKLE_TIPS"),
         "branches": ("SPECKLE_BRANCH_MAP", "SPECKLE_BRANCH_TIPS", "SPECKLE_BRANCH_MIN_TIPS")}


def traced(prob: np.ndarray, spacing, rule: str, setting: tuple[float, ...] | None) -> SwcTree:
    """The trace of ``prob`` with ``rule`` at ``setting`` (None: that rule off)."""
    names = RULES[rule]
    values = (0.0,) * len(names) if setting is None else setting
    with contextlib.ExitStack() as stack:
        for name, value in zip(names, values, strict=True):
            stack.enter_context(mock.patch(f"dineuro.trace._speckle.{name}", value))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", EmptyTraceWarning)
        return trace(prob, spacing, kind="probability")


def one_set(spec: str, rule: str, grid: list[tuple[float, ...]]) -> dict:
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
        without = cable_on_off(traced(prob, image.spacing, rule, None), gold)
        totals["without"] += without
        for setting in grid:
            totals[setting] += without - cable_on_off(
                traced(prob, image.spacing, rule, setting), gold)
    totals["gold tips"] = float(np.median(gold_tips))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", metavar="DATA:MODEL:N")
    parser.add_argument("--grid", default="0.6:5,0.7:4,0.8:4",
                        help="MAP:TIPS settings (MAP:TIPS:MIN_TIPS with --branches), "
                             "comma-separated")
    parser.add_argument("--branches", action="store_true",
                        help="set the branch rule instead of the separate-tree rule")
    args = parser.parse_args()
    rule = "branches" if args.branches else "trees"
    grid = [tuple(float(v) for v in item.split(":")) for item in args.grid.split(",")]
    if any(len(setting) != len(RULES[rule]) for setting in grid):
        parser.error(f"--grid: each setting of the {rule} rule has {len(RULES[rule])} numbers")
    found = {spec: one_set(spec, rule, grid) for spec in args.sets}
    print("| set | gold tips per 100 voxels | cable on / off the gold | "
          + " | ".join(f"{':'.join(f'{v:g}' for v in setting)}: lost / removed"
                       for setting in grid) + " |")
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
