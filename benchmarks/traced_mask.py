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

``--picture PNG`` draws, for one stack (``--picture-stack NAME``; by default the one whose
traced mask keeps the smallest share of the threshold mask's voxels, where the two differ
most), the z projections of the stack and of both masks with the gold mask's outline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from trace_options import map_arguments, split_names
from trace_vs_peers import trace_quietly

from dineuro.data.render import render_mask
from dineuro.defaults import DEFAULT_THRESHOLD
from dineuro.evaluate import PROB_SUFFIX, dice
from dineuro.evaluate.voxels import precision, recall
from dineuro.io import read_volume
from dineuro.trace import traced_mask

COLUMNS = ("Dice", "precision", "precision, unlabelled aside", "recall", "voxels kept")


def mask_scores(mask: np.ndarray, gold: np.ndarray, unlabelled: np.ndarray,
                everything: int) -> list[float]:
    """The columns for one mask of one stack (``everything``: the threshold mask's voxels)."""
    aside = mask & ~(unlabelled & ~gold)
    return [dice(mask, gold), precision(mask, gold), precision(aside, gold), recall(mask, gold),
            mask.sum() / max(everything, 1)]


def score_stack(dataset, name: str, pred: Path, threshold: float
                ) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Both masks of one stack's map (``pred/NAME_prob.tif``), traced as ``dineuro run`` traces
    it, and their columns."""
    prob = read_volume(pred / f"{name}{PROB_SUFFIX}").array
    image = dataset.image(name)
    gold = dataset.label(name, image).astype(bool)
    others = dataset.unlabelled(name)
    unlabelled = (np.zeros_like(gold) if others is None
                  else render_mask(others, gold.shape, image.spacing))
    tree = trace_quietly(prob, image.spacing, kind="probability", image=image.array)
    masks = {"threshold": prob > threshold}
    masks["traced"] = traced_mask(masks["threshold"], tree)
    everything = int(masks["threshold"].sum())
    return masks, {kind: mask_scores(mask, gold, unlabelled, everything)
                   for kind, mask in masks.items()}


def draw(path: Path, name: str, image: np.ndarray, masks: dict[str, np.ndarray],
         gold: np.ndarray) -> None:
    """The z projections of ``image`` and of each mask, the gold's outline in cyan on these."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 1 + len(masks), figsize=(4.2 * (1 + len(masks)), 4.6))
    axes[0].imshow(image.max(axis=0), cmap="gray")
    axes[0].set_title(f"{name}: stack (z projection)")
    for ax, (kind, mask) in zip(axes[1:], masks.items(), strict=True):
        ax.imshow(mask.max(axis=0), cmap="gray", vmin=0, vmax=1)
        ax.contour(gold.max(axis=0), levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(f"--mask {kind}: {int(mask.sum()):,} voxels, Dice {dice(mask, gold):.3f}")
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = map_arguments(__doc__.splitlines()[0], "test")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="probability above which a voxel is foreground")
    parser.add_argument("--picture", type=Path, default=None, metavar="PNG",
                        help="draw one stack's masks into this picture")
    parser.add_argument("--picture-stack", default=None, metavar="NAME",
                        help="the stack drawn (default: the one the traced mask changes most)")
    args = parser.parse_args()
    dataset, names = split_names(args)
    rows = {"threshold": [], "traced": []}
    drawn = None  # (share kept, name, masks) of the stack to draw
    for name in names:
        masks, scored = score_stack(dataset, name, args.pred, args.threshold)
        for kind, scores in scored.items():
            rows[kind].append(scores)
        kept = scored["traced"][COLUMNS.index("voxels kept")]
        if args.picture is not None and (name == args.picture_stack or (
                args.picture_stack is None and (drawn is None or kept < drawn[0]))):
            drawn = (kept, name, masks)
    if drawn is not None:
        _, name, masks = drawn
        draw(args.picture, name, dataset.image(name).array, masks,
             dataset.label(name).astype(bool))
    print()
    print("| mask | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for kind, scores in rows.items():
        means = np.nanmean(np.asarray(scores, dtype=float), axis=0)
        print(f"| {kind} | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
