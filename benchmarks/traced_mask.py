"""The mask ``dineuro run`` writes, against the plain thresholded map, scored on gold masks.

Traces every map of a split (``PRED/NAME_prob.tif``, from ``dineuro predict``) as ``dineuro run``
does (default options, the raw stack beside it), and scores two masks of it against the gold
label mask: every voxel above the threshold (``--mask threshold``, what ``predict`` writes) and
the pieces of that the trace runs through (``--mask traced``, :func:`dineuro.trace.traced_mask`).
Columns: Dice, voxel precision, the same with the voxels on the stack's unlabelled neurites set
aside (the neurons ``synth`` draws and keeps out of the gold, rendered from
``unlabelled/NAME.swc``), voxel recall, and the share of the threshold mask's voxels kept; means
over the stacks. For example::

    dineuro predict data/noisy/images -o pred/noisy --prob-dtype float32
    python benchmarks/traced_mask.py data/noisy --pred pred/noisy --split test
"""

from __future__ import annotations

import warnings

import numpy as np
from trace_options import map_arguments, split_names

from dineuro.data.render import render_mask
from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.evaluate import PROB_SUFFIX, dice
from dineuro.evaluate.voxels import precision, recall
from dineuro.io import read_volume
from dineuro.trace import EmptyTraceWarning, trace, traced_mask

COLUMNS = ("Dice", "precision", "precision, unlabelled aside", "recall", "voxels kept")


def mask_scores(mask: np.ndarray, gold: np.ndarray, unlabelled: np.ndarray,
                everything: int) -> list[float]:
    """The columns for one mask of one stack (``everything``: the threshold mask's voxels)."""
    aside = mask & ~(unlabelled & ~gold)
    return [dice(mask, gold), precision(mask, gold), precision(aside, gold), recall(mask, gold),
            mask.sum() / max(everything, 1)]


def main() -> None:
    parser = map_arguments(__doc__.splitlines()[0], "test")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="probability above which a voxel is foreground")
    args = parser.parse_args()
    dataset, names = split_names(args)
    rows = {"threshold": [], "traced": []}
    for name in names:
        prob = read_volume(args.pred / f"{name}{PROB_SUFFIX}").array
        image = dataset.image(name)
        gold = dataset.label(name, image).astype(bool)
        others = dataset.unlabelled(name)
        unlabelled = (np.zeros_like(gold) if others is None
                      else render_mask(others, gold.shape, image.spacing))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyTraceWarning)
            tree = trace(prob, image.spacing, kind="probability", image=image.array)
        plain = prob > args.threshold
        everything = int(plain.sum())
        rows["threshold"].append(mask_scores(plain, gold, unlabelled, everything))
        rows["traced"].append(mask_scores(traced_mask(plain, tree), gold, unlabelled,
                                          everything))
    print()
    print("| mask | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for kind, scores in rows.items():
        means = np.nanmean(np.asarray(scores, dtype=float), axis=0)
        print(f"| {kind} | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
