"""How fast is ``dineuro run`` on a 60x512x512 stack on a small CPU, and what does speed cost?

``dineuro run`` (predict with the packaged default model, then trace) is meant for users
without a GPU, so its speed on a small CPU (2 cores; ``taskset`` emulates one) is what counts.
This measures it stage by stage against references timed in the same process and run, on the
same stack, so that ratios compare like with like on a loaded machine (absolute seconds hold
for this machine only), and prints the accuracy of every path beside its speed, so that a
faster path cannot hide a worse result.
Accuracy is the Dice of a map (p > ``DEFAULT_THRESHOLD``) against ``labels/NAME.tif`` and the
precision, recall and F1 of cable length of its trace against ``swc/NAME.swc``
(:func:`dineuro.evaluate.compare_trees` at ``DEFAULT_SWC_THRESHOLD`` voxels, as
``dineuro evaluate``; an empty or refused trace counts recall and F1 0). Every trace is
:func:`dineuro.trace.trace` with its defaults, as ``dineuro run`` traces, except the floor's.

Table 1, the whole run:

- **classical floor**: what a user writes by hand in a few lines, without a network: the
  model's percentile normalisation, a Gaussian of 1 voxel, Otsu's threshold, connected pieces
  of fewer than 27 voxels dropped, 3D ``skimage.morphology.skeletonize``, skan's voxel graph,
  and a breadth-first tree over each connected piece of it (every skeleton voxel a node).
  Timed from the raw stack in memory to the tree in memory; its Dice is of its foreground;
- **MONAI sliding window**: ``monai.inferers.sliding_window_inference`` with the same network,
  crop, overlap, batch size and Gaussian blending, in float32, on the normalised stack, as a
  plain MONAI user writes it. Timed for prediction only (its trace is for accuracy). Its note
  gives the Dice between its mask and the slow path's (below): MONAI shifts the last window of
  an axis to end at the stack's edge, dineuro pads the stack to a fixed grid
  (:mod:`dineuro.predict`), so their windows differ wherever an extent is not crop + k * step
  (on a 60-deep stack, every z window);
- **dineuro run, in-process**: the sum of the stages of table 2 (loading the model excluded:
  once per process). Its time over MONAI's is of the predict stage;
- **dineuro run CLI**: ``dineuro run STACK -o TMP`` in a subprocess, end to end (interpreter
  start-up, imports and loading the model included); its note is the CLI's own line for the
  stack (windows computed, seconds predicting and tracing). A second row runs it with the
  window of variant (6) below.

Table 2, the stages of the default path in-process: read the stack (``read_volume``),
normalise, predict (``sliding_window_predict`` with its defaults: precision "auto", empty
windows skipped, overlap 0.25, the batch size picked from the window), trace, write (the
float32 map, the uint8 mask and the SWC into a temporary folder, as ``dineuro run`` writes
them).

Table 3, the steps of the trace stage, profiled (cProfile's cumulative seconds of each step's
function in one more call, with the raw stack beside the map): threshold, cavities, skeleton
and graph, noise pieces, radii, bridges (of which the line tests in the raw stack), and the
per-tree work (roots, pruning, smoothing, resampling).

Table 4, variants of the predict stage: (1) float32, every window: the slow path, reference of
agreement; (2) float32, empty windows skipped; (3) bf16, every window; (4) the default (the
predict stage of table 2, not run again); (5) the default at overlap 0.5, the default before
both were measured; (6) the network through 64x128x128 windows (``ViTUNETR.at_window``),
larger than the crop it was trained on (``dineuro run --window 64,128,128``). Each gives
seconds, windows computed (:func:`dineuro.predict.signal_windows`) out of the grid's, the largest
probability of the slow path's map anywhere inside a skipped window (what skipping could have
lost: near 0 means nothing), Dice, traced F1, and the differences from the slow path.

Each timing is the median of ``--reps`` back-to-back calls, after a warm-up forward pass in each
precision and window (each CLI call starts cold, on purpose). Prints Markdown: one block per stack,
then the mean over stacks when there are several.

Usage::

    dineuro synth -o data/big --preset realistic --difficulty 0.9 --shape 60,512,512 --n 4 \\
        --seed 3
    taskset -c 0,1 python benchmarks/run_speed.py data/big --max-stacks 1 --out run_speed.md
    python benchmarks/run_speed.py data/big --names synth_002 --reps 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from trace_vs_peers import trace_quietly

from dineuro.data.dataset import open_dataset
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.evaluate import DEFAULT_SWC_THRESHOLD, compare_trees, dice
from dineuro.io.swc import SwcTree, read_swc, write_swc, zyx_to_swc
from dineuro.io.volume import Volume, read_volume
from dineuro.outputs import output_paths, swc_path
from dineuro.predict import (
    DEFAULT_OVERLAP,
    DEFAULT_THRESHOLD,
    SIGMA_SCALE,
    WindowGrid,
    resolve_batch_size,
    resolve_precision,
    signal_windows,
    sliding_window_predict,
    write_prediction,
)
from dineuro.predictor import Predictor

SEED = 0
DEVICE = "cpu"
#: The classical floor: Gaussian sigma (voxels) before Otsu. Otsu straight on a noisy
#: normalised stack splits the noise, not the neurites (40 % foreground on the example data);
#: after this smoothing about 0.5 %, near the label's 0.2 %.
FLOOR_SMOOTHING = 1.0
#: The classical floor drops connected pieces (26-connected) of fewer voxels than a 3x3x3 cube.
FLOOR_MIN_VOXELS = 27
#: SWC type of every node of the floor's trees (dendrite): it finds no soma.
DENDRITE = 3
#: The overlap of variant (5), the default before time and F1 were measured at both.
OTHER_OVERLAP = 0.5
#: The larger inference window of variant (6) (``dineuro run --window``).
WIDE_WINDOW = (64, 128, 128)
SLOW_PATH = "(1) fp32, every window"
#: Predict variants of table 3; the default (empty options) is table 2's predict stage.
VARIANTS = {
    SLOW_PATH: dict(precision="fp32", skip_empty=False),
    "(2) fp32, skip empty": dict(precision="fp32", skip_empty=True),
    "(3) bf16, every window": dict(precision="bf16", skip_empty=False),
    "(4) default: auto, skip empty": {},
    f"(5) default, overlap {OTHER_OVERLAP}": dict(overlap=OTHER_OVERLAP),
    f"(6) default, window {'x'.join(map(str, WIDE_WINDOW))}": dict(window=WIDE_WINDOW),
}
#: ``dineuro run`` options of variant (6), for the second CLI row.
WIDE_OPTIONS = ("--window", ",".join(map(str, WIDE_WINDOW)))
SCORES = ("precision", "recall", "f1")
STAGES = ("read", "normalise", "predict", "trace", "write")
CLI = [sys.executable, "-c", "from dineuro.cli import main; main()", "run"]
#: Console width for the CLI, so that rich does not wrap its line about the stack.
CLI_COLUMNS = 1000

#: Columns of each table: (heading, key, format); a missing or None value prints "-".
WHOLE_RUN_COLUMNS = (("s", "seconds", "{:.1f}"), ("x floor", "x_floor", "{:.2f}"),
                     ("predict x MONAI", "x_monai", "{:.2f}"), ("Dice", "dice", "{:.3f}"),
                     ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
                     ("F1", "f1", "{:.3f}"), ("note", "note", "{}"))
STAGE_COLUMNS = (("load model (once)", "load model", "{:.2f}"),
                 *((stage, stage, "{:.2f}") for stage in STAGES),
                 ("total (without loading)", "total", "{:.2f}"))
#: Steps of dineuro.trace.trace profiled (table 3): function name -> column heading.
TRACE_STEPS = {"hysteresis": "threshold (hysteresis)", "_fill_cavities": "fill cavities",
               "skeleton_graph": "skeletonise + graph", "_drop_short_pieces": "drop noise",
               "_radii": "radii", "bridge_gaps": "bridge gaps",
               "line_contrast": "line tests (in bridge gaps)",
               "_separate_trees": "root, prune, smooth, resample", "trace": "whole trace"}
TRACE_COLUMNS = tuple((heading, heading, "{:.2f}") for heading in TRACE_STEPS.values())
VARIANT_COLUMNS = (("s", "seconds", "{:.1f}"), ("x (1)", "x_slow", "{:.2f}"),
                   ("windows computed", "windows", "{}"),
                   ("largest skipped p", "largest_skipped", "{:.3f}"),
                   ("Dice", "dice", "{:.4f}"), ("F1", "f1", "{:.4f}"),
                   ("abs dDice", "d_dice", "{:.4f}"), ("abs dF1", "d_f1", "{:.4f}"),
                   ("max abs dp", "max_dp", "{:.4f}"))

Row = dict[str, object]
Table = dict[str, Row]
STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr with the seconds since the script started."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def timed(reps: int, function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)`` called ``reps`` times: its last result, median seconds."""
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def traced(prob: np.ndarray, spacing, image: np.ndarray) -> SwcTree | None:
    """``dineuro.trace.trace`` with its defaults and the raw stack beside the map, as
    ``dineuro run`` traces; None when it refuses the map."""
    try:
        return trace_quietly(prob, spacing, image=image)
    except InputError:
        return None


def trace_scores(tree: SwcTree | None, gold: SwcTree) -> Row:
    """Length precision, recall and F1 of ``tree`` against ``gold``; an empty or refused trace
    has no precision and recall and F1 0."""
    if tree is None or len(tree) == 0:
        return {"precision": None, "recall": 0.0, "f1": 0.0}
    distance = compare_trees(tree, gold, DEFAULT_SWC_THRESHOLD)
    return {score: getattr(distance, score) for score in SCORES}


def accuracy(prob: np.ndarray, tree: SwcTree | None, label: np.ndarray, gold: SwcTree) -> Row:
    """Dice of the map's mask and the trace's scores."""
    return {"dice": dice(prob > DEFAULT_THRESHOLD, label), **trace_scores(tree, gold)}


def classical_floor(raw: np.ndarray, norm: NormalizationConfig) -> tuple[np.ndarray, SwcTree]:
    """Foreground and SWC tree of a raw stack by hand: smoothed Otsu threshold, specks dropped,
    3D skeleton, skan's voxel graph, one breadth-first tree per connected piece of it."""
    from skan.csr import skeleton_to_csgraph
    from skimage.filters import threshold_otsu
    from skimage.morphology import skeletonize

    smooth = ndimage.gaussian_filter(norm.normalize(raw), FLOOR_SMOOTHING)
    pieces, _ = ndimage.label(smooth > threshold_otsu(smooth), structure=np.ones((3, 3, 3)))
    large = np.bincount(pieces.ravel()) >= FLOOR_MIN_VOXELS
    large[0] = False  # background
    foreground = large[pieces]
    graph, coordinates = skeleton_to_csgraph(skeletonize(foreground))
    return foreground, spanning_forest(sparse.csr_matrix(graph), np.stack(coordinates, axis=1))


def spanning_forest(graph: sparse.csr_matrix, zyx: np.ndarray) -> SwcTree:
    """One breadth-first tree per connected piece of a voxel graph, rooted at its first voxel.

    A single search from an extra node joined to every piece's first voxel reaches every piece;
    the nodes it reached directly become the roots.
    """
    n = graph.shape[0]
    _, piece = csgraph.connected_components(graph, directed=False)
    firsts = np.unique(piece, return_index=True)[1]
    edges = graph.tocoo()
    rows = np.concatenate([edges.row, np.full(len(firsts), n)])
    cols = np.concatenate([edges.col, firsts])
    joined = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1))
    order, predecessors = csgraph.breadth_first_order(joined, n, directed=False,
                                                      return_predecessors=True)
    nodes = order[1:]  # parents before children
    ids = np.empty(n + 1, dtype=np.int64)
    ids[nodes] = np.arange(1, n + 1)
    parents = np.where(predecessors[nodes] == n, -1, ids[predecessors[nodes]])
    return SwcTree(ids[nodes], np.full(n, DENDRITE), zyx_to_swc(zyx[nodes]), np.ones(n), parents)


def monai_predict(network: torch.nn.Module, volume: np.ndarray, crop) -> np.ndarray:
    """Class-1 probabilities by ``monai.inferers.sliding_window_inference`` in float32."""
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        prob = sliding_window_inference(
            torch.from_numpy(volume)[None, None], roi_size=crop,
            sw_batch_size=resolve_batch_size(None, crop),
            predictor=lambda w: torch.softmax(network(w), 1)[:, 1:2], overlap=DEFAULT_OVERLAP,
            mode="gaussian", sigma_scale=SIGMA_SCALE)
    return prob[0, 0].numpy()


def write_outputs(prob: np.ndarray, tree: SwcTree | None, spacing, stack: Path,
                  scratch: Path) -> None:
    """What ``dineuro run`` writes for a stack, into a new folder under ``scratch``."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    write_prediction(Volume(prob, spacing), *output_paths(stack, out))
    if tree is not None:
        write_swc(swc_path(stack, out), tree, allow_empty=True)


def run_cli(stack: Path, scratch: Path, threads: int, *options: str
            ) -> tuple[Path | None, float, str]:
    """``dineuro run STACK [OPTIONS]`` in a subprocess: its output folder (None if it failed),
    seconds, and its line about the stack (the last line of its errors when it failed)."""
    out = Path(tempfile.mkdtemp(dir=scratch)) / "out"
    wide = dict(os.environ, COLUMNS=str(CLI_COLUMNS))
    start = time.perf_counter()
    done = subprocess.run([*CLI, str(stack), "-o", str(out), "--threads", str(threads),
                           *options], capture_output=True, text=True, env=wide, check=False)
    seconds = time.perf_counter() - start
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode:
        return None, seconds, f"failed: {lines[-1] if lines else done.returncode}"
    return out, seconds, next((line.strip() for line in lines
                               if line.startswith(f"{stack.name}: ")), "")


def cold_runs(reps: int, stack: Path, scratch: Path, threads: int, *options: str
              ) -> tuple[Path | None, float, str]:
    """:func:`run_cli` ``reps`` times, each a cold start: the last run's folder and line, and
    the median seconds (None and the line of the first failure, if one fails)."""
    seconds = []
    for _ in range(reps):
        out, elapsed, note = run_cli(stack, scratch, threads, *options)
        if out is None:
            return None, elapsed, note
        seconds.append(elapsed)
    return out, statistics.median(seconds), note


def cli_accuracy(out: Path, stack: Path, label: np.ndarray, gold: SwcTree) -> Row:
    """Dice of the mask and scores of the SWC that ``dineuro run`` wrote."""
    mask = read_volume(output_paths(stack, out)[1]).array
    try:
        tree = read_swc(swc_path(stack, out))
    except InputError:  # a file of comments only: the trace was empty
        tree = None
    return {"dice": dice(mask > 0, label), **trace_scores(tree, gold)}


def skipped_extent(computed: np.ndarray, grid: WindowGrid) -> np.ndarray:
    """Voxels of the stack inside at least one window that ``computed`` marks False."""
    inside = np.zeros(grid.shape, dtype=bool)
    for window in zip(*np.nonzero(~computed), strict=True):
        inside[tuple(slice(max(grid.start(axis, k), 0), max(grid.start(axis, k) + c, 0))
                     for axis, (k, c) in enumerate(zip(window, grid.crop, strict=True)))] = True
    return inside


def window_use(volume: np.ndarray, crop, options: dict, slow: np.ndarray) -> Row:
    """Windows computed out of the grid's, and the slow path's largest probability inside the
    skipped ones (None when none is skipped)."""
    overlap = options.get("overlap", DEFAULT_OVERLAP)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    if not options.get("skip_empty", True):
        return {"windows": f"{grid.n_windows} / {grid.n_windows}", "largest_skipped": None}
    computed = signal_windows(volume, crop, overlap)
    skipped = skipped_extent(computed, grid)
    largest = float(slow[skipped].max()) if skipped.any() else None
    return {"windows": f"{int(computed.sum())} / {grid.n_windows}", "largest_skipped": largest}


def warm_up(network: torch.nn.Module, crop) -> None:
    """One forward pass per precision and window, so that oneDNN's first-call set-up for a
    shape is not timed."""
    for window in (crop, WIDE_WINDOW):
        volume = np.random.default_rng(SEED).random(window, dtype=np.float32)
        for precision in ("fp32", "bf16"):
            sliding_window_predict(network.at_window(window), volume, window,
                                   precision=precision, skip_empty=False)


def measure_stack(stack: Path, label: np.ndarray, gold: SwcTree, network: torch.nn.Module,
                  crop, norm: NormalizationConfig, args, scratch: Path) -> dict[str, Table]:
    """Tables 1-4 (see the module docstring) for one stack; loading the model is main's."""
    reps, name, stage_seconds = args.reps, stack.stem, {}
    log(f"{name}: read, normalise, predict (default)")
    (raw, spacing), stage_seconds["read"] = timed(reps, read_volume, stack)
    volume, stage_seconds["normalise"] = timed(reps, norm.normalize, raw)
    prob, stage_seconds["predict"] = timed(reps, sliding_window_predict, network, volume, crop,
                                           device=DEVICE)
    log(f"{name}: trace, write")
    tree, stage_seconds["trace"] = timed(reps, traced, prob, spacing, raw)
    _, stage_seconds["write"] = timed(reps, write_outputs, prob, tree, spacing, stack, scratch)
    stage_seconds["total"] = sum(stage_seconds[stage] for stage in STAGES)

    log(f"{name}: predict variants")
    variants, maps = predict_variants(network, volume, crop, (prob, stage_seconds["predict"]),
                                      reps)
    for variant, variant_prob in maps.items():
        log(f"{name}: trace {variant}")
        variant_tree = tree if variant_prob is prob else traced(variant_prob, spacing, raw)
        variants[variant].update(accuracy(variant_prob, variant_tree, label, gold))
    slow = variants[SLOW_PATH]
    for row in variants.values():
        row.update(x_slow=row["seconds"] / slow["seconds"], d_dice=abs(row["dice"] - slow["dice"]),
                   d_f1=abs(row["f1"] - slow["f1"]))

    log(f"{name}: MONAI sliding window")
    monai_prob, monai_seconds = timed(reps, monai_predict, network, volume, crop)
    masks = (monai_prob > DEFAULT_THRESHOLD, maps[SLOW_PATH] > DEFAULT_THRESHOLD)
    log(f"{name}: classical floor")
    (foreground, floor_tree), floor_seconds = timed(reps, classical_floor, raw, norm)
    log(f"{name}: dineuro run CLI")
    cli_out, cli_seconds, cli_note = cold_runs(reps, stack, scratch, args.threads)
    wide_out, wide_seconds, wide_note = cold_runs(reps, stack, scratch, args.threads,
                                                  *WIDE_OPTIONS)

    whole = {
        "classical floor": {"seconds": floor_seconds, "dice": dice(foreground, label),
                            **trace_scores(floor_tree, gold),
                            "note": f"{len(floor_tree)} skeleton voxels"},
        "MONAI sliding window (predict only)": {
            "seconds": monai_seconds, "x_monai": 1.0,
            **accuracy(monai_prob, traced(monai_prob, spacing, raw), label, gold),
            "note": f"mask vs (1)'s: Dice {dice(*masks):.4f}"},
        "dineuro run, stages, in-process": {
            "seconds": stage_seconds["total"], "x_monai": stage_seconds["predict"] / monai_seconds,
            **accuracy(prob, tree, label, gold)},
        "dineuro run CLI (subprocess)": {
            "seconds": cli_seconds, "note": cli_note,
            **(cli_accuracy(cli_out, stack, label, gold) if cli_out else {})},
        f"dineuro run CLI {' '.join(WIDE_OPTIONS)}": {
            "seconds": wide_seconds, "note": wide_note,
            **(cli_accuracy(wide_out, stack, label, gold) if wide_out else {})},
    }
    for row in whole.values():
        row["x_floor"] = row["seconds"] / floor_seconds
    return {"whole run": whole, "stages": {"seconds": stage_seconds},
            "trace steps": {"seconds": trace_steps(prob, spacing, raw)},
            "predict variants": variants}


def trace_steps(prob: np.ndarray, spacing, raw: np.ndarray) -> Row:
    """Seconds in each step of one ``dineuro.trace.trace`` call with the raw stack beside the
    map, as ``dineuro run`` traces (cumulative, by cProfile)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(traced, prob, spacing, raw)
    seconds = {name: cumulative for (_, _, name), (_, _, _, cumulative, _)
               in pstats.Stats(profile).stats.items() if name in TRACE_STEPS}
    return {heading: seconds.get(name) for name, heading in TRACE_STEPS.items()}


def predict_variants(network: torch.nn.Module, volume: np.ndarray, crop,
                     default: tuple[np.ndarray, float], reps: int
                     ) -> tuple[Table, dict[str, np.ndarray]]:
    """Seconds, window use and agreement of each predict variant, and their maps; the default
    variant is ``default``, the predict stage's map and seconds."""
    rows, maps = {}, {}
    for label, options in VARIANTS.items():
        options = dict(options)
        window = options.pop("window", crop)
        if options or window != crop:
            log(f"  predict {label}")
            prob, seconds = timed(reps, sliding_window_predict, network.at_window(window),
                                  volume, window, device=DEVICE, **options)
        else:
            prob, seconds = default
        maps[label] = prob
        slow = maps[SLOW_PATH]
        rows[label] = {"seconds": seconds, **window_use(volume, window, options, slow),
                       "max_dp": float(np.abs(prob - slow).max())}
    return rows, maps


def mean_tables(blocks: list[dict[str, Table]]) -> dict[str, Table]:
    """The mean over stacks of every value that is a number in all of them; notes are dropped
    and window counts summed."""
    mean = {}
    for table, rows in blocks[0].items():
        mean[table] = {}
        for row, values in rows.items():
            mean[table][row] = {}
            for key in values:
                column = [block[table][row].get(key) for block in blocks]
                if all(isinstance(v, int | float) for v in column):
                    mean[table][row][key] = float(np.mean(column))
                elif key == "windows" and all(column):
                    computed, total = zip(*(map(int, v.split(" / ")) for v in column),
                                          strict=True)
                    mean[table][row][key] = f"{sum(computed)} / {sum(total)}"
    return mean


def markdown_table(first: str, columns, rows: Table) -> list[str]:
    lines = [f"| {first} | " + " | ".join(heading for heading, _, _ in columns) + " |",
             "|---|" + "".join("---|" if key == "note" else "---:|" for _, key, _ in columns)]
    for label, row in rows.items():
        cells = [form.format(row[key]) if row.get(key) is not None else "-"
                 for _, key, form in columns]
        lines.append(f"| {label} | " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return lines


def markdown_block(title: str, tables: dict[str, Table]) -> str:
    lines = [f"### {title}", "", "Whole run:", ""]
    lines += markdown_table("path", WHOLE_RUN_COLUMNS, tables["whole run"])
    lines += ["", "Stages of dineuro run in-process (s):", ""]
    lines += markdown_table("", STAGE_COLUMNS, tables["stages"])
    lines += ["", "Steps of the trace stage (s, profiled, so a little slower):", ""]
    lines += markdown_table("", TRACE_COLUMNS, tables["trace steps"])
    lines += ["", f"Predict variants (agreement with {SLOW_PATH}):", ""]
    lines += markdown_table("variant", VARIANT_COLUMNS, tables["predict variants"])
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stacks_of(data: list[Path], names: list[str] | None, max_stacks: int
              ) -> list[tuple[Path, np.ndarray, SwcTree]]:
    """(stack path, label mask, gold tree) of each stack to measure.

    Raises:
        InputError: a name in ``names`` that no folder has, or a stack without a gold SWC.
    """
    stacks, found = [], set()
    for root in data:
        dataset = open_dataset(root)
        chosen = ([n for n in names if n in dataset.images] if names
                  else dataset.names[:max_stacks])
        for name in chosen:
            gold = dataset.tree(name)
            if gold is None:
                raise InputError(f"has no gold SWC for {name}.", root)
            stacks.append((dataset.images[name], dataset.label(name), gold))
        found.update(chosen)
    if names and set(names) - found:
        raise InputError(f"no dataset folder has the stacks {sorted(set(names) - found)}.")
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+",
                        help="dataset folders (images/, labels/, swc/) as dineuro synth makes")
    parser.add_argument("--names", nargs="+", help="only these stacks (default: the first "
                                                   "--max-stacks of each folder)")
    parser.add_argument("--max-stacks", type=int, default=2,
                        help="stacks per folder without --names (default %(default)s)")
    parser.add_argument("--reps", type=int, default=1,
                        help="calls per timing; the median counts (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads, also for the CLI run (0: torch's default)")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)  # nothing should draw random numbers; in case a library does

    stacks = stacks_of(args.data, args.names, args.max_stacks)
    log("loading the default model")
    predictor, load_seconds = timed(1, Predictor.from_checkpoint, "default", device=DEVICE)
    network, crop, norm = predictor.network, predictor.crop, predictor.normalization
    warm_up(network, crop)
    load_before, blocks = os.getloadavg()[0], []
    with tempfile.TemporaryDirectory() as scratch:
        for stack, label, gold in stacks:
            tables = measure_stack(stack, label, gold, network, crop, norm, args, Path(scratch))
            tables["stages"]["seconds"]["load model"] = load_seconds
            blocks.append((f"{stack.parent.parent.name}/{stack.stem} "
                           f"({'x'.join(map(str, label.shape))})", tables))

    header = (f"dineuro run on {cpu_name()} ({platform.machine()}), {torch.get_num_threads()} "
              f"torch threads, precision auto = {resolve_precision('auto', DEVICE)}, torch "
              f"{torch.__version__}; default model crop {crop}, overlap {DEFAULT_OVERLAP}, batch "
              f"{resolve_batch_size(None, crop)}; stacks: "
              f"{', '.join(title for title, _ in blocks)}; seconds "
              f"are the median of {args.reps} call(s); traced scores against swc/NAME.swc at "
              f"{DEFAULT_SWC_THRESHOLD:g} voxels; Dice of p > {DEFAULT_THRESHOLD:g}; 1-minute "
              f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.\n")
    text = header + "\n" + "\n".join(markdown_block(title, tables) for title, tables in blocks)
    if len(blocks) > 1:
        text += "\n" + markdown_block(f"Mean over {len(blocks)} stacks",
                                      mean_tables([tables for _, tables in blocks]))
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
