"""How good are dineuro's reconstructions? Traces of four inputs against the gold SWCs.

On the test stacks of a dataset (``dineuro synth --preset bench``), each method's tree is compared
with the gold ``swc/NAME.swc`` as ``dineuro evaluate`` and ``dineuro compare`` do
(:func:`dineuro.evaluate.compare_trees`: raw SWC units, i.e. voxels with z not scaled, as
Vaa3D's neuron_distance, so that the numbers compare with published ones; threshold 2), and the
table gives ESA, DSA, PDS, length precision, recall and F1 as mean ± std over the stacks, the
precision with the stack's unlabelled neurites set aside (``unlabelled/NAME.swc``, which
``synth`` writes for the fragments of other neurons it draws but leaves out of the gold;
:func:`dineuro.evaluate.labelled_precision`; plain precision where a stack has none), and
the hairiness ratio (terminal tips per 100 voxels of cable, over the gold's own; 1 = as hairy
as the gold; also its median over the stacks, which one outlying stack moves less than the
mean) and seconds per stack; the model row also gives the Dice against
``labels/NAME.tif`` of its map above 0.5 (the mask ``dineuro predict`` writes) and of the
pieces of it that its trace runs through (:func:`dineuro.trace.traced_mask`, the mask
``dineuro run`` writes):

- **gold mask, traced**: :func:`dineuro.trace.trace` of ``labels/NAME.tif``, the tracer's
  ceiling (what is lost in centre lines, pruning and resampling alone);
- **model map, traced**: the tracer on ``NAME_prob.tif`` as ``dineuro run`` does it (read as a
  probability map, the raw stack beside it); its time is tracing only with ``--pred``, and
  predict + trace with ``--model`` (predict first with :func:`dineuro.predict.predict_stack`);
- **raw image, traced**: the tracer on the stack itself, percentile-normalised to [0, 1] and
  read as a probability: what the segmentation network buys;
- **Rivulet2** on the raw image at its Otsu threshold (as its ``rtrace`` does for a negative
  threshold), when ``rivuletpy`` imports; otherwise the row says why it did not run.

Every tracer call uses :func:`dineuro.trace.trace`'s defaults. A stack whose trace is empty or
refused (e.g. a map that is mostly foreground) counts as recall and F1 0 and has no distances, as
an empty trace in ``dineuro evaluate``; the note counts them. Times are wall-clock on whatever
else the machine runs; compare rows, not machines.

Usage::

    python benchmarks/trace_vs_peers.py data/bench \\
        --pred predictions --out trace_vs_peers.md
    python benchmarks/trace_vs_peers.py data/bench \\
        --model runs/bench_tiny/best.pt
    python benchmarks/trace_vs_peers.py data/bench --model default   # the packaged model
    python benchmarks/trace_vs_peers.py data/bench --model default --precision fp32 \
        --all-windows                                     # ... on the exact prediction path
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from dineuro.data.dataset import open_dataset
from dineuro.errors import InputError
from dineuro.evaluate import (
    DEFAULT_SWC_THRESHOLD,
    PROB_SUFFIX,
    compare_trees,
    dice,
    labelled_precision,
)
from dineuro.io import SwcTree, read_volume
from dineuro.predict import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, PRECISIONS
from dineuro.trace import EmptyTraceWarning, as_probability, trace, traced_mask

#: The model row's Dice scores its map at p > this, as ``dineuro predict`` writes NAME_mask.tif.
MAP_THRESHOLD = 0.5

#: The model row's mask scores: Dice of its map above MAP_THRESHOLD, and of the traced pieces.
MASK_METRICS = ("dice", "traced_dice")
METRICS = ("esa", "dsa", "pds", "precision", "labelled_precision", "recall", "f1",
           "hairiness_ratio")
# Scores an empty or refused trace still has: nothing of the gold is matched.
NOTHING_MATCHED = ("recall", "f1")
# Why rivuletpy does not install on this project's Python (checked with pip for 0.3.0, the
# latest release): the row quotes it next to the import error.
RIVULET_PACKAGING = ("rivuletpy 0.3.0 requires Python < 3.11, numpy < 2 and scikit-image < 0.19, "
                     "and is published as an sdist only, whose msfm C extension must be compiled")


@dataclass
class MethodResult:
    """Per-stack scores and seconds of one method; None scores for empty or refused traces."""

    label: str
    scores: list[dict[str, float] | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "NAME: why", for the note
    dice: list[float] = field(default_factory=list)  # of the map, for the model row
    traced_dice: list[float] = field(default_factory=list)  # of its traced pieces, likewise
    extra_note: str = ""
    not_run: str = ""


def trace_quietly(prob: np.ndarray, spacing, **options) -> SwcTree:
    """:func:`trace`, with an empty result reported by its tree rather than a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyTraceWarning)
        return trace(prob, spacing, **options)


def trace_raw_image(image: np.ndarray, spacing, **options) -> SwcTree:
    """The tracer on a raw stack, percentile-normalised to [0, 1] as predict does."""
    return trace_quietly(image, spacing, kind="image", **options)


def rivulet_trace(image: np.ndarray) -> SwcTree:
    """Rivulet2 (``rivuletpy.trace.R2Tracer``) on a raw (z, y, x) stack at its Otsu threshold.

    R2Tracer's nodes are rows (id, type, three coordinates in the input's axis order, radius,
    parent); the coordinates are reversed to SWC (x, y, z), and the parents of pieces it could
    not connect (negative, not -1) become roots. ``clean`` drops pieces unconnected to the soma,
    as dineuro's tracer does by default.
    """
    from rivuletpy.trace import R2Tracer
    from skimage.filters import threshold_otsu

    swc, _ = R2Tracer(quality=False, silent=True, clean=True).trace(
        image, float(threshold_otsu(image)))
    rows = np.asarray(swc.get_array(), dtype=np.float64)
    parents = np.where(rows[:, 6] < 0, -1, rows[:, 6])
    return SwcTree(rows[:, 0], np.full(len(rows), 3), rows[:, 4:1:-1], rows[:, 5], parents)


def rivulet_unavailable() -> str:
    """Why Rivulet2 cannot run here, or "" when ``rivuletpy`` imports."""
    try:
        import rivuletpy.trace  # noqa: F401
    except ImportError as exc:
        return f"not run: {exc}; {RIVULET_PACKAGING}"
    return ""


def score(result: MethodResult, name: str, make_tree: Callable[[], SwcTree], gold: SwcTree,
          threshold: float, unlabelled: SwcTree | None = None) -> SwcTree | None:
    """Time ``make_tree`` and append its scores against ``gold`` (None if empty or refused),
    its precision also with the ``unlabelled`` neurites set aside; returns the tree (None if
    refused)."""
    start = time.perf_counter()
    try:
        tree = make_tree()
    except InputError as exc:
        tree, why = None, f"{name}: {exc}"
    else:
        why = f"{name}: empty trace" if len(tree) == 0 else ""
    result.seconds.append(time.perf_counter() - start)
    if why:
        result.failures.append(why)
        result.scores.append(None)
        return tree
    distance = compare_trees(tree, gold, threshold)
    scores = {metric: getattr(distance, metric) for metric in METRICS
              if metric != "labelled_precision"}
    aside = labelled_precision(tree, gold, unlabelled, threshold)
    scores["labelled_precision"] = None if math.isnan(aside) else aside  # all on unlabelled
    result.scores.append(scores)
    return tree


def metric_values(result: MethodResult, metric: str) -> list[float]:
    """The per-stack values of ``metric`` that exist (empty traces count 0 for recall, F1)."""
    if metric in MASK_METRICS:
        return list(getattr(result, metric))
    values = [s[metric] for s in result.scores if s is not None and s[metric] is not None]
    if metric in NOTHING_MATCHED:
        values += [0.0] * sum(s is None for s in result.scores)
    return values


def mean_std(result: MethodResult, metric: str) -> str:
    values = metric_values(result, metric)
    if not values:
        return "-" if metric in MASK_METRICS else "n/a"
    decimals = 2 if metric in ("esa", "dsa", "hairiness_ratio") else 3
    return f"{np.mean(values):.{decimals}f} ± {np.std(values):.{decimals}f}"


def hairiness_median(result: MethodResult) -> float | None:
    """The median of the method's per-stack hairiness ratios (None without any)."""
    values = metric_values(result, "hairiness_ratio")
    return float(np.median(values)) if values else None


def markdown(results: list[MethodResult], header: str) -> str:
    lines = [header, "",
             "| method | Dice | Dice, traced mask | ESA | DSA | PDS | precision "
             "| precision, unlabelled aside | recall | F1 | hairiness ratio | hairiness, median "
             "| s / stack | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        if result.not_run:
            lines.append(f"| {result.label} |" + " |" * 12 + f" {result.not_run} |")
            continue
        notes = [result.extra_note] if result.extra_note else []
        if result.failures:
            notes.append(f"{len(result.failures)} empty or refused ({'; '.join(result.failures)})")
        median = hairiness_median(result)
        cells = [result.label, *(mean_std(result, m) for m in MASK_METRICS + METRICS),
                 "n/a" if median is None else f"{median:.2f}",
                 f"{np.mean(result.seconds):.2f}", ", ".join(notes)]
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def predict_all(model: Path | str, dataset, names: list[str], out_dir: Path, device: str,
                window=None, **window_options) -> dict[str, float]:
    """Predict each stack into ``out_dir`` as ``dineuro predict --prob-dtype float32`` does
    (the map traced at full precision, as ``dineuro run`` traces it; ``window``: as its
    ``--window``; ``window_options``: overlap, batch_size, precision, skip_empty,
    background_view of :class:`dineuro.Predictor`); seconds per name."""
    from dineuro.predictor import Predictor

    predictor = Predictor.from_checkpoint(model, device=device, window=window, **window_options)
    seconds = {}
    for name in names:
        start = time.perf_counter()
        predictor.predict_to(dataset.images[name], out_dir, prob_dtype="float32")
        seconds[name] = time.perf_counter() - start
    return seconds


def run(data: Path, pred: Path | None, model: Path | str | None, split: str, threshold: float,
        device: str, method: str = "thinning", **window_options) -> list[MethodResult]:
    """Score every method on the ``split`` stacks of ``data`` (see the module docstring)."""
    dataset = open_dataset(data)
    names = dataset.split()[split]
    with tempfile.TemporaryDirectory() as scratch:
        predict_seconds = {}
        if model is not None:
            pred = Path(scratch)
            predict_seconds = predict_all(model, dataset, names, pred, device, **window_options)
        results = [MethodResult("gold mask, traced"), MethodResult("model map, traced"),
                   MethodResult("raw image (percentile-normalised), traced"),
                   MethodResult("Rivulet2 on the raw image (Otsu threshold)")]
        gold_mask, model_map, raw, rivulet = results
        rivulet.not_run = rivulet_unavailable()
        for name in names:
            image = dataset.image(name)
            gold = dataset.tree(name)
            if gold is None:
                raise InputError(f"has no gold SWC for {name}.", data)
            spacing = image.spacing
            label = dataset.label(name, image)
            # a --pred map may be uint8 (dineuro predict's default): Dice needs probabilities
            prob = as_probability(read_volume(pred / f"{name}{PROB_SUFFIX}").array, "probability")
            methods = [(gold_mask, partial(trace_quietly, label, spacing, kind="mask",
                                           method=method)),
                       (model_map, partial(trace_quietly, prob, spacing, kind="probability",
                                           image=image.array, method=method)),
                       (raw, partial(trace_raw_image, image.array, spacing, method=method))]
            if not rivulet.not_run:
                methods.append((rivulet, partial(rivulet_trace, image.array)))
            unlabelled = dataset.unlabelled(name)
            trees = {result.label: score(result, name, make_tree, gold, threshold, unlabelled)
                     for result, make_tree in methods}
            mask = prob > MAP_THRESHOLD
            model_map.dice.append(dice(mask, label))
            traced = trees[model_map.label]
            model_map.traced_dice.append(dice(traced_mask(mask, traced), label)
                                         if traced is not None else 0.0)
        if predict_seconds:
            model_map.seconds = [predict_seconds[n] + t
                                 for n, t in zip(names, model_map.seconds, strict=True)]
            model_map.extra_note = f"predict + trace ({Path(model).name})"
        else:
            model_map.extra_note = f"tracing only; maps from {pred}"
    return results


def header(data: Path, n_stacks: int, split: str, threshold: float) -> str:
    return (f"{n_stacks} {split} stacks of {data}; scores against swc/NAME.swc in SWC units "
            f"(voxels), as Vaa3D's neuron_distance, threshold {threshold:g}; mean ± std over "
            f"stacks; empty or refused traces count as recall and F1 0.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder with swc/ and split.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", type=Path, help="folder of NAME_prob.tif maps")
    source.add_argument("--model", help="checkpoint to predict the maps with first, or "
                                        "'default' for the packaged model")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--threshold", type=float, default=DEFAULT_SWC_THRESHOLD,
                        help="distance in SWC units (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="for --model (default %(default)s)")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--method", default="thinning", choices=("thinning", "geodesic"),
                        help="the tracer's centre-line method (default %(default)s)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="for --model (default %(default)s)")
    parser.add_argument("--all-windows", action="store_true",
                        help="for --model: compute every window (default: skip those without "
                             "signal, as dineuro run does)")
    parser.add_argument("--window", type=lambda text: tuple(int(v) for v in text.split(",")),
                        help="for --model: window z,y,x, as dineuro predict --window")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help="for --model (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="for --model: windows per forward pass (default %(default)s)")
    parser.add_argument("--background-view", type=float, default=0.0, metavar="SIGMA",
                        help="for --model: as dineuro predict --background-view (default off)")
    args = parser.parse_args()
    results = run(args.data, args.pred, args.model, args.split, args.threshold, args.device,
                  args.method, precision=args.precision, skip_empty=not args.all_windows,
                  window=args.window, overlap=args.overlap, batch_size=args.batch_size,
                  background_view=args.background_view)
    n_stacks = len(results[0].seconds)
    table = markdown(results, header(args.data, n_stacks, args.split, args.threshold))
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
