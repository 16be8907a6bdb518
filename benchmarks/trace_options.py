"""How the tracer's options trade precision, recall and hairiness on a set of probability maps.

Traces every map of a split (``PRED/NAME_prob.tif``, from ``dineuro predict``), with the raw
stack beside it as ``dineuro run`` traces, with each combination of the options given, and
prints mean precision, recall, F1 and hairiness ratio against the gold SWCs
(:func:`dineuro.evaluate.compare_trees`, threshold 2), the hairiness ratio's median over
the stacks (which one outlying stack moves less than the mean), the precision with a stack's
unlabelled neurites set aside (:func:`dineuro.evaluate.labelled_precision`), and the seconds
each trace took (wall clock: compare settings within one run, on one machine). Choose
defaults on stacks no model was trained on and the card does not score (the validation split,
or the first stacks of a held-out set's train split), report on the test split. For example::

    dineuro predict data/bench/images -o pred/bench
    python benchmarks/trace_options.py data/bench --pred pred/bench --split val \\
        --grid prune_length=4,10 --grid spur_radii=3,6 --grid min_tree_length=30,80

An option that takes a word takes words the same way: ``--grid method=thinning,geodesic``.

``--rule NAME=V1,V2`` varies a constant of the bead rule (:mod:`dineuro.trace._beads`, e.g.
``BEAD_MAX_TURN=60,90``), which has no option of its own, as ``--grid`` varies an option.

``--per-stack`` adds, after each setting's row, a row per stack: its recall, hairiness ratio,
and the tips and cable of its trace and of its gold behind that ratio.

``--zero-floor P`` traces beside each stack less its P-th percentile, clipped at 0, as
background subtraction or an 8-bit export of a dim confocal stack leaves it: a background that
is mostly 0, which the options that read the raw image (the line test) must survive. The maps
stay as predicted from the stacks as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np

import dineuro.trace._beads as bead_rule
from dineuro.data.dataset import open_dataset
from dineuro.evaluate import PROB_SUFFIX, compare_trees, labelled_precision
from dineuro.io import Volume, read_volume
from dineuro.trace import EmptyTraceWarning, trace

COLUMNS = ("precision", "labelled_precision", "recall", "f1", "hairiness_ratio",
           "hairiness_median", "s_per_trace")


def parse_grid(items: list[str]) -> dict[str, list[float | str]]:
    """``["prune_length=4,10", "method=thinning,geodesic"]`` -> ``{"prune_length": [4.0, 10.0],
    "method": ["thinning", "geodesic"]}``: numbers where they parse, words as given."""
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key] = [_number_or_word(v) for v in values.split(",")]
    return grid


def _number_or_word(value: str) -> float | str:
    """A grid value: most options are numbers, ``method`` and ``neurite_type`` take words."""
    try:
        return float(value)
    except ValueError:
        return value


def traced(maps, images, golds, options, unlabelled) -> dict[str, tuple[list[float], object]]:
    """Each stack's columns (all but the median) and its :func:`compare_trees` scores (None for
    an empty trace, which scores 0, with no hairiness)."""
    stacks = {}
    for name, prob in maps.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyTraceWarning)
            tree = trace(prob, images[name].spacing, kind="probability",
                         image=images[name].array, **options)
        seconds = time.perf_counter() - start
        if not len(tree):
            stacks[name] = [0.0, 0.0, 0.0, 0.0, np.nan, seconds], None
            continue
        result = compare_trees(tree, golds[name], 2.0)
        stacks[name] = [result.precision,
                        labelled_precision(tree, golds[name], unlabelled[name], 2.0),
                        result.recall, result.f1,
                        np.nan if result.hairiness_ratio is None else result.hairiness_ratio,
                        seconds], result
    return stacks


def summarised(stacks: dict[str, tuple[list[float], object]]) -> list[float]:
    """Mean of each column over the stacks, and the hairiness ratio's median over the same
    stacks as its mean; the last column is the wall-clock seconds of the trace alone, scoring
    left out."""
    rows = np.asarray([row for row, _ in stacks.values()], dtype=float)
    means = np.nanmean(rows, axis=0).tolist()
    median = np.nanmedian(rows[:, COLUMNS.index("hairiness_ratio")])
    return [*means[:-1], float(median), means[-1]]


def per_stack_lines(stacks: dict[str, tuple[list[float], object]]) -> list[str]:
    """One Markdown row per stack: its recall and hairiness ratio, and the tips and cable of
    its trace and of its gold that the ratio divides (the gold's tips per 100 voxels too)."""
    lines = []
    for name, (row, result) in stacks.items():
        recall, ratio = row[COLUMNS.index("recall")], row[COLUMNS.index("hairiness_ratio")]
        counts = ["", "", "", "", ""] if result is None else [
            f"{result.test_tips}", f"{result.test_length:.0f}", f"{result.gold_tips}",
            f"{result.gold_length:.0f}", f"{result.gold_hairiness:.1f}"]
        lines.append("| " + " | ".join([name, f"{recall:.3f}", f"{ratio:.2f}", *counts]) + " |")
    return lines


def zero_floored(volume: Volume, percentile: float) -> Volume:
    """``volume`` less its ``percentile``-th percentile, clipped at 0, in its own dtype."""
    array = volume.array.astype(np.float64)
    array = np.clip(array - np.percentile(array, percentile), 0, None)
    return Volume(np.rint(array).astype(volume.array.dtype), volume.spacing)


def map_arguments(description: str, split: str) -> argparse.ArgumentParser:
    """A parser of the dataset, its maps (``--pred``), the split (default ``split``) and
    ``--first``, shared by the benchmarks that trace a folder of maps."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data", type=Path, help="dataset folder with swc/ and split.json")
    parser.add_argument("--pred", type=Path, required=True, help="folder of NAME_prob.tif")
    parser.add_argument("--split", default=split, choices=("train", "val", "test"))
    parser.add_argument("--first", type=int, default=None, metavar="N",
                        help="only the split's first N stacks (default: all)")
    return parser


def split_names(args: argparse.Namespace, note: str = "") -> tuple[object, list[str]]:
    """The dataset of ``args.data`` and the names of its ``--split`` (its ``--first``), said
    with ``note`` after them."""
    dataset = open_dataset(args.data)
    names = dataset.split()[args.split][:args.first]
    print(f"{len(names)} {args.split} stacks of {args.data}{note}")
    return dataset, names


def main() -> None:
    parser = map_arguments(__doc__.splitlines()[0], "val")
    parser.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                        help="a trace() option and its values (repeatable)")
    parser.add_argument("--rule", action="append", default=[], metavar="BEAD_NAME=V1,V2",
                        help="a constant of the bead rule and its values (repeatable)")
    parser.add_argument("--zero-floor", type=float, default=None, metavar="P",
                        help="trace beside each stack less its P-th percentile, clipped at 0")
    parser.add_argument("--per-stack", action="store_true",
                        help="after each setting's row, a row per stack: recall, hairiness "
                             "ratio, and the tips and cable of its trace and its gold")
    args = parser.parse_args()
    grid, rules = parse_grid(args.grid), parse_grid(args.rule)
    unknown = [name for name in rules if not name.startswith("BEAD_")
               or not hasattr(bead_rule, name)]
    if unknown:
        parser.error(f"--rule takes the bead rule's constants (BEAD_...), not {unknown}")
    words = [f"{name}={value}" for name, values in rules.items() for value in values
             if isinstance(value, str)]
    if words:
        parser.error(f"--rule takes numbers, not {words}")
    floored = "" if args.zero_floor is None else f", less their {args.zero_floor:g}th " \
        "percentile, clipped at 0"
    dataset, names = split_names(args, floored)
    maps = {n: read_volume(args.pred / f"{n}{PROB_SUFFIX}").array for n in names}
    golds = {n: dataset.tree(n) for n in names}
    unlabelled = {n: dataset.unlabelled(n) for n in names}
    images = {n: dataset.image(n) for n in names}
    if args.zero_floor is not None:
        images = {n: zero_floored(v, args.zero_floor) for n, v in images.items()}
    print()
    print("| " + " | ".join([*grid, *rules, *COLUMNS]) + " |")
    print("|" + "---:|" * (len(grid) + len(rules) + len(COLUMNS)))
    for values in itertools.product(*grid.values(), *rules.values()):
        options = dict(zip(grid, values[:len(grid)], strict=True))
        with contextlib.ExitStack() as constants:  # the rule as it was afterwards
            for name, value in zip(rules, values[len(grid):], strict=True):
                constants.enter_context(mock.patch.object(bead_rule, name, value))
            stacks = traced(maps, images, golds, options, unlabelled)
        print("| " + " | ".join([*(f"{v:g}" if isinstance(v, float) else v for v in values),
                                 *(f"{m:.3f}" for m in summarised(stacks))])
              + " |")
        if args.per_stack:
            print("\n| stack | recall | hairiness ratio | trace tips | trace cable | gold tips "
                  "| gold cable | gold tips per 100 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
            print("\n".join(per_stack_lines(stacks)) + "\n")


if __name__ == "__main__":
    main()
