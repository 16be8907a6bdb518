"""Recall of traced maps split by how clearly the gold shows in the image.

Traces every map of a split (``PRED/NAME_prob.tif``, from ``dineuro predict``) with the default
options, and the gold mask beside it (the tracer's ceiling), and pools the gold's length over
the stacks by its contrast in the image (:mod:`dineuro.evaluate.contrast`: the
smoothed image over the background's median, in units of the background's spread). Prints,
per contrast bin, the share of the gold's length and the recall of each trace (threshold 2):
where a benchmark's missing recall lies, on neurites at the noise floor or on clear ones. For
example::

    dineuro predict data/noisy/images -o pred/noisy --prob-dtype float32
    python benchmarks/recall_by_contrast.py data/noisy --pred pred/noisy --split test
"""

from __future__ import annotations

import warnings
from functools import reduce
from operator import add
from pathlib import Path

from trace_options import map_arguments, split_names

from dineuro.evaluate import PROB_SUFFIX
from dineuro.evaluate.contrast import recall_by_contrast
from dineuro.io import read_volume
from dineuro.trace import EmptyTraceWarning, trace


def pooled(dataset, names, pred: Path) -> dict[str, object]:
    """The pooled :class:`ContrastRecall` of the model maps' and the gold masks' traces."""
    rows = {"model map": [], "gold mask": []}
    for name in names:
        image, gold, unlabelled = dataset.image(name), dataset.tree(name), dataset.unlabelled(name)
        prob = read_volume(pred / f"{name}{PROB_SUFFIX}").array
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyTraceWarning)
            traces = {"model map": trace(prob, image.spacing, kind="probability",
                                         image=image.array),
                      "gold mask": trace(dataset.label(name, image), image.spacing,
                                         kind="mask")}
        for key, tree in traces.items():
            rows[key].append(recall_by_contrast(tree, gold, image.array, image.spacing,
                                                unlabelled))
        print(f"  {name}", flush=True)
    return {key: reduce(add, value) for key, value in rows.items()}


def table(results: dict[str, object]) -> str:
    """Markdown: a row per contrast bin, the gold's share and each trace's recall."""
    first = next(iter(results.values()))
    share = first.length / first.length.sum()
    lines = ["| contrast (noise units) | share of gold length | "
             + " | ".join(f"recall, {key} traced" for key in results) + " |",
             "|---|---:|" + "---:|" * len(results)]
    for k, label in enumerate(first.labels()):
        cells = [f"{r.recalled[k] / r.length[k]:.3f}" if r.length[k] else "-"
                 for r in results.values()]
        lines.append(f"| {label} | {share[k]:.3f} | " + " | ".join(cells) + " |")
    cells = [f"{r.recalled.sum() / r.length.sum():.3f}" for r in results.values()]
    lines.append("| all (pooled by length) | 1.000 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = map_arguments(__doc__.splitlines()[0], "test").parse_args()
    dataset, names = split_names(args)
    print("\n" + table(pooled(dataset, names, args.pred)))


if __name__ == "__main__":
    main()
