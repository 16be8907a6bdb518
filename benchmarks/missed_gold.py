"""Where traced maps miss the gold: what the network never saw, and what the tracer lost.

Traces every map of a split (``PRED/NAME_prob.tif``, from ``dineuro predict``) with the default
options and the stack beside it, as ``dineuro run`` does, and splits the gold length the trace
misses by what the map shows there and what the tracer did with it
(:mod:`dineuro.evaluate.missed`: blind, unsure, short of a tip, alongside, traced piece,
untraced piece). Prints each stack's shares of its gold length, then the shares pooled by length
over the stacks, and beside them those of the gold mask traced (the mask as the map): the
tracer's own ceiling. For example::

    dineuro predict data/noisy/images -o pred/noisy --prob-dtype float32
    python benchmarks/missed_gold.py data/noisy --pred pred/noisy --split test

``--method geodesic`` traces with the minimal-path centre lines instead of thinning.
"""

from __future__ import annotations

from functools import reduce
from operator import add
from pathlib import Path

import numpy as np
from trace_options import map_arguments, split_names
from trace_vs_peers import trace_quietly

from dineuro.evaluate import PROB_SUFFIX
from dineuro.evaluate.missed import MISSED_CLASSES, MissedGold, missed_gold
from dineuro.io import read_volume
from dineuro.trace import METHODS


def per_stack(dataset, names, pred: Path, method: str = "thinning"
              ) -> tuple[dict[str, MissedGold], MissedGold]:
    """Each stack's :class:`MissedGold` of its map traced with ``method``, and the gold masks'
    traces pooled (the same method)."""
    results, ceiling = {}, []
    for name in names:
        image, gold = dataset.image(name), dataset.tree(name)
        prob = read_volume(pred / f"{name}{PROB_SUFFIX}").array
        tree = trace_quietly(prob, image.spacing, kind="probability", image=image.array,
                             method=method)
        results[name] = missed_gold(tree, gold, prob)
        label = dataset.label(name, image)
        ceiling.append(missed_gold(trace_quietly(label, image.spacing, kind="mask",
                                                 method=method), gold,
                                   (label > 0).astype(np.float32)))
        print(f"  {name}", flush=True)
    return results, reduce(add, ceiling)


def table(results: dict[str, MissedGold], ceiling: MissedGold) -> str:
    """Markdown: a row per stack, the stacks pooled, and the gold masks' traces pooled; each
    class's share of the gold length."""
    lines = ["| stack | gold length | recalled | " + " | ".join(MISSED_CLASSES) + " |",
             "|---|---:|---:|" + "---:|" * len(MISSED_CLASSES)]
    rows = {**results, "all (pooled by length)": reduce(add, results.values()),
            "all, gold mask traced": ceiling}
    for name, result in rows.items():
        shares = [result.recalled, *(result.missed[key] for key in MISSED_CLASSES)]
        lines.append(f"| {name} | {result.length:.0f} | "
                     + " | ".join(f"{share / result.length:.3f}" for share in shares) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = map_arguments(__doc__.splitlines()[0], "test")
    parser.add_argument("--method", choices=METHODS, default="thinning",
                        help="how the tracer finds centre lines (dineuro trace --method)")
    args = parser.parse_args()
    dataset, names = split_names(args)
    print("\n" + table(*per_stack(dataset, names, args.pred, args.method)))


if __name__ == "__main__":
    main()
