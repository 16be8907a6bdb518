"""Commands that apply a network and trace: ``predict``, ``trace``, ``run``, ``demo``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import Progress

from dineuro.cli._common import (
    STACK_FORMATS,
    Channel,
    Device,
    ModelOption,
    app,
    err,
    model_and_inputs,
    parse_triple,
    print_warnings,
    progress_bar,
)
from dineuro.defaults import (
    BEAD_MAX_TURN,
    BEAD_MAX_VOXELS,
    BEAD_MIN_COUNT,
    BEAD_MIN_MAP,
    BEAD_REACH,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLOCK,
    DEFAULT_FOLLOW_CONTRAST,
    DEFAULT_FOLLOW_GAP,
    DEFAULT_FOLLOW_LINE_GAP,
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NEURITE_TYPE,
    DEFAULT_NODE_STEP,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_ROOT_SNAP,
    DEFAULT_RUN_MASK,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
    DEFAULT_SWC_UNITS,
    DEFAULT_THRESHOLD,
    NEURITE_TYPES,
    PASS_VOXELS,
    PROB_DTYPES,
    RUN_MASKS,
    SPECKLE_BRANCH_MAP,
    SPECKLE_BRANCH_MIN_TIPS,
    SPECKLE_BRANCH_TIPS,
    SPECKLE_MAP,
    SPECKLE_TIPS,
    SWC_UNITS,
    TIFF_PROB_DTYPES,
)
from dineuro.errors import InputError
from dineuro.io.atomic import check_writable, made_folder

#: --block's default as the command line writes it.
BLOCK_TEXT = ",".join(map(str, DEFAULT_BLOCK))

Overlap = Annotated[float, typer.Option(
    min=0.0, max=0.95, help="Fraction of a window shared with its neighbour.")]
Flips = Annotated[bool, typer.Option(
    help="Average all 8 axis flips (test-time augmentation; 8x slower).")]
BackgroundView = Annotated[float, typer.Option(
    min=0.0, metavar="SIGMA",
    help="Also predict each stack less its blur of SIGMA voxels (haze, out-of-focus glow and "
         "uneven lighting taken off) and keep the larger probability of the two maps: for "
         "hazy, widefield or unevenly lit stacks (4 is a good start); twice the network's "
         "time. 0: off.")]
MaskThreshold = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Foreground of NAME_mask.tif: probability > threshold.")]
BatchSize = Annotated[int | None, typer.Option(
    min=1, show_default="auto", help="Windows per forward pass; auto: as many as hold about "
                                     f"{PASS_VOXELS:,} voxels (4 of 48^3, 1 of 48x96x96), "
                                     "measured fastest on CPUs.")]
#: Mirrors dineuro.predict.PRECISIONS.
Precision = Annotated[str, typer.Option(
    help="auto: bf16 where the CPU (AVX512-BF16, AMX) or GPU computes it natively, else fp32; "
         "or bf16, fp32.")]
AllWindows = Annotated[bool, typer.Option(
    "--all-windows", help="Run the network on every window, also those without signal "
                          "(which are otherwise skipped with probability 0).")]
Window = Annotated[str | None, typer.Option(
    help="Window z,y,x the network predicts through (multiples of its patch, 16), instead of "
         "its training crop (`dineuro model-card` shows the default model's): larger windows "
         "compute fewer voxels, but not the same map (see the README's speed section).",
    show_default=False)]
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing", help="Skip stacks whose outputs all exist (to finish an interrupted "
                            "batch); without it, any existing output is refused.")]
Threads = Annotated[int, typer.Option(
    min=0, help="CPU threads for the network (per worker with --workers or --scheduler); 0: "
                "PyTorch's default (the physical cores; with --workers, shared among them).")]
Inputs = Annotated[list[Path], typer.Argument(
    help=f"Stacks ({STACK_FORMATS}) or folders of them. A checkpoint (.pt) given first is "
         "taken as --model, as in `dineuro run best.pt stack.tif`.")]


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(
        help=f"Stacks ({STACK_FORMATS}) or folders of them; with --blocks, zarr arrays or "
             "OME-Zarr images. A checkpoint (.pt) given first is taken as --model.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: ModelOption = None,
    overlap: Overlap = DEFAULT_OVERLAP,
    flips: Flips = False,
    background_view: BackgroundView = 0.0,
    threshold: MaskThreshold = DEFAULT_THRESHOLD,
    prob_dtype: Annotated[Literal[PROB_DTYPES], typer.Option(
        help="uint8 (= round(p * 255): small files) or float32 (the exact map) for "
             "NAME_prob.tif; zarr also float16.")]
    = DEFAULT_PROB_DTYPE,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    device: Device = "auto",
    precision: Precision = "auto",
    all_windows: AllWindows = False,
    threads: Threads = 0,
    channel: Channel = None,
    blocks: Annotated[bool, typer.Option(
        help="Read and write zarr block by block, for stacks larger than memory: writes "
             "OUT/NAME_prob.zarr, an OME-Zarr image (NGFF 0.5) with the stack's spacing.")]
    = False,
    block: Annotated[str, typer.Option(help="Block size z,y,x for --blocks.")] = BLOCK_TEXT,
    window: Window = None,
    skip_existing: SkipExisting = False,
) -> None:
    """Apply a trained model (the packaged default unless --model): writes NAME_prob.tif and
    NAME_mask.tif per stack.

    Stacks of any size work (windows placed as MONAI places them, a stack thinner than a
    window padded); windows are blended with Gaussian weights, and windows without signal are
    skipped. The checkpoint carries the network, crop and normalisation it was trained with.
    """
    from dineuro.outputs import output_paths, zarr_output
    from dineuro.predict import WindowStats, find_stacks, prepare_batch

    model, inputs = model_and_inputs(model, inputs)
    block_shape = parse_triple(block, "--block", int)
    if blocks:
        stacks = [Path(p) for p in inputs]
        todo = prepare_batch(stacks, out, lambda s: (zarr_output(s, out),),
                             skip_existing=skip_existing)
    else:
        stacks = find_stacks(inputs)
        todo = prepare_batch(stacks, out, lambda s: output_paths(s, out),
                             skip_existing=skip_existing, channel=channel, prob_dtype=prob_dtype)
    predictor = _predictor(model, device, window, threads, overlap=overlap,
                           batch_size=batch_size, flips=flips, precision=precision,
                           skip_empty=not all_windows, background_view=background_view)
    with made_folder(out), progress_bar() as progress:
        for stack in todo:
            _, advance = _window_bar(progress, f"predicting {stack.name}")
            stats = WindowStats()
            if blocks:
                predictor.predict_blocks(stack, zarr_output(stack, out), block=block_shape,
                                         prob_dtype=prob_dtype, progress=advance, stats=stats)
            else:
                predictor.predict_to(stack, out, threshold=threshold, prob_dtype=prob_dtype,
                                     channel=channel, progress=advance, stats=stats)
            progress.console.print(f"{stack.name}: {_network_line(stats, predictor)}",
                                   highlight=False)
    err.print(f"wrote predictions of {len(todo)} stack(s) to {out}/{_skipped(stacks, todo)}")


def _predictor(model: str, device: str, window: str | None, threads: int, **options):
    """The model loaded for prediction, after ``--threads`` is applied (0 leaves PyTorch's
    default, one thread per physical core)."""
    from dineuro.predictor import Predictor

    if threads:
        import torch

        torch.set_num_threads(threads)
    return Predictor.from_checkpoint(model, device=device,
                                     window=parse_triple(window, "--window", int), **options)


def _network_line(stats, predictor) -> str:
    """What the network did with a stack: windows computed of those in the grid (of both
    views, with a background view) and the precision."""
    views = ", two views" if predictor.background_view else ""
    return (f"network on {stats.computed} of {stats.windows} windows ({stats.precision}"
            f"{views})")


def _window_bar(progress: Progress, description: str):
    """A new bar counting windows: its task and the ``progress(done, total)`` that moves it."""
    task = progress.add_task(description, total=None)
    return task, lambda done, total: progress.update(task, completed=done, total=total)


def _skipped(stacks: list[Path], todo: list[Path]) -> str:
    done = len(stacks) - len(todo)
    return f" ({done} stack(s) skipped: their outputs exist)" if done else ""


High = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Hysteresis: foreground is p > --low connected to some p > --high.")]
Low = Annotated[float, typer.Option(min=0.0, max=1.0, help="Lower hysteresis threshold.")]
MaxGap = Annotated[float, typer.Option(
    min=0.0, help="Longest gap bridged between traced pieces in any direction, in x voxels.")]
FollowGap = Annotated[float, typer.Option(
    min=0.0, help="Longest gap bridged along the direction a piece ends in, in x voxels: a "
                  "beaded or dim fibre goes on that way (0: none).")]
FollowContrast = Annotated[float, typer.Option(
    min=0.0, help="Such a bridge over a gap the map leaves empty is still taken where the raw "
                  "image stands out along it by this many spreads of the background around it: "
                  "a fibre too dim for the network (inf: never).")]
FollowLineGap = Annotated[float, typer.Option(
    min=0.0, help="Longest such bridge the raw image carries alone, in x voxels.")]
GapFloor = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Least mean probability (for a mask with --image, normalised "
                           "intensity) along a bridged gap.")]
Prune = Annotated[float, typer.Option(
    min=0.0, help="Remove terminal branches sticking out less than this, in x voxels.")]
Step = Annotated[float, typer.Option(
    min=0.01, help="Distance between SWC nodes along a branch, in x voxels.")]
SpurRadii = Annotated[float, typer.Option(
    min=0.0, help="Also remove terminal branches reaching less than this many radii of the "
                  "neurite they leave.")]
MinPiece = Annotated[float, typer.Option(
    min=0.0, help="Foreground pieces with less centre line than this (x voxels) are noise: "
                  "removed, never bridged. Longer pieces of a beaded fibre stay to be bridged, "
                  "and are dropped as debris if left alone.")]
MinTree = Annotated[float, typer.Option(
    min=0.0, help="Separate trees with less cable than this (x voxels) are dropped as debris; "
                  "larger ones (other neurons, fibres) are written as trees of their own.")]
Smooth = Annotated[float, typer.Option(
    min=0.0, help="Gaussian smoothing (sigma, x voxels) of the centre line along each branch; "
                  "0 keeps the voxel path.")]
KeepFragments = Annotated[bool, typer.Option(
    help="Also write separate trees smaller than --min-tree-length, and the trees and "
         "branches that look like speckle (unsure and branched all over: trees with a map "
         f"median below {SPECKLE_MAP:g} along the centre line and more than {SPECKLE_TIPS:g} "
         "tips per 100 voxels of cable; branches with at least "
         f"{SPECKLE_BRANCH_MIN_TIPS} tips, more than {SPECKLE_BRANCH_TIPS:g} per 100 voxels "
         f"of centre line and a median below {SPECKLE_BRANCH_MAP:g}; maps only).")]
LinkBeads = Annotated[bool, typer.Option(
    help="Join rows of small sure blobs in the map, what a network sees of a beaded "
         f"(varicose) fibre, into fibres: at least {BEAD_MIN_COUNT} blobs of 2-"
         f"{BEAD_MAX_VOXELS} voxels above --high, each within {BEAD_REACH:g} voxels of the "
         f"next, turning by at most {BEAD_MAX_TURN:g} degrees, map mean at least "
         f"{BEAD_MIN_MAP:g} (maps only; see 'Beaded fibres' in the README).")]
Units = Annotated[Literal[SWC_UNITS], typer.Option(
    help="SWC coordinates: voxel (x, y, z; radii in x voxels), as Vaa3D and BigNeuron's gold "
         "SWCs, or um (micrometres from the stack's spacing), for NeuroM, navis and other "
         "morphometry on anisotropic stacks. The header records which, with the spacing.")]
NeuriteType = Annotated[Literal[tuple(NEURITE_TYPES)], typer.Option(
    "--type", help="SWC type of the traced nodes: dendrite (3), axon (2), apical (4) or "
                   "neurite (0, undefined); a soma root is 1 either way.")]
Method = Annotated[str, typer.Option(
    help="Centre lines by thinning (skeletonise), or geodesic: minimal paths from each "
         "piece's thickest point through the probability, as APP2 and Rivulet trace.")]


def _swc_summary(tree) -> str:
    """"T tree(s), N nodes, B branch points" for a traced SWC."""
    import numpy as np

    parent = tree.parent_index
    children = np.bincount(parent[parent >= 0], minlength=len(tree))
    return (f"{len(tree.roots)} tree(s), {len(tree)} nodes, {int((children >= 2).sum())} "
            "branch points")


def _parse_root(text: str) -> tuple[float, float, float]:
    """``"12,40,7"`` -> (12.0, 40.0, 7.0): x, y, z in voxels, SWC order."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--root should be auto or three comma-separated voxel coordinates "
                         f"x,y,z, not {text!r}.")
    return values


@app.command()
def trace(
    prob: Annotated[Path, typer.Argument(
        help="Probability map (NAME_prob.tif from `predict`: float in [0, 1], or uint8/uint16 "
             "scaled to the dtype's maximum) or a binary mask (NAME_mask.tif, 0/1).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="SWC file to write (must not exist).")],
    image: Annotated[Path | None, typer.Option(
        help="The raw stack: a fibre's line in it carries a bridge the map leaves empty "
             "(--follow-contrast); a mask's gaps are judged by its normalised intensity.")]
    = None,
    channel: Channel = None,
    root: Annotated[str, typer.Option(
        help="auto (thickest, brightest point of the largest piece) or X,Y,Z in voxels, SWC "
             "order; a point off the foreground snaps to a neurite at most --root-snap away.")]
    = "auto",
    root_snap: Annotated[float, typer.Option(
        min=0.0, help="How far (x voxels) a --root off the foreground may be from a neurite.")]
    = DEFAULT_ROOT_SNAP,
    high: High = DEFAULT_HIGH,
    low: Low = DEFAULT_LOW,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
    gap_floor: GapFloor = DEFAULT_GAP_FLOOR,
    follow_gap: FollowGap = DEFAULT_FOLLOW_GAP,
    follow_contrast: FollowContrast = DEFAULT_FOLLOW_CONTRAST,
    follow_line_gap: FollowLineGap = DEFAULT_FOLLOW_LINE_GAP,
    prune: Prune = DEFAULT_PRUNE_LENGTH,
    spur_radii: SpurRadii = DEFAULT_SPUR_RADII,
    min_piece_length: MinPiece = DEFAULT_MIN_PIECE_LENGTH,
    min_tree_length: MinTree = DEFAULT_MIN_TREE_LENGTH,
    smooth: Smooth = DEFAULT_SMOOTH,
    step: Step = DEFAULT_NODE_STEP,
    keep_fragments: KeepFragments = False,
    link_beads: LinkBeads = True,
    method: Method = "thinning",
    units: Units = DEFAULT_SWC_UNITS,
    neurite_type: NeuriteType = DEFAULT_NEURITE_TYPE,
    kind: Annotated[str, typer.Option(
        help="auto, probability, mask, or image: how to read PROB (auto takes 0/1 integers as "
             "a mask; image traces a raw stack, percentile-normalised as predict does).")]
    = "auto",
) -> None:
    """Trace a probability map or mask into SWC trees, one per neuron or fibre.

    Coordinates are voxels (x, y, z), or micrometres with --units um, with the spacing in the
    header; the first tree's root is type 1 when it is a soma, and the header says how each
    root was chosen (soma, the end where the tree leaves the stack, its thickest end, or
    --root). Noise specks and separate
    pieces smaller than --min-tree-length are dropped. An empty map writes an SWC without
    nodes and a warning.
    """
    from dineuro.trace import trace_file

    position = "auto" if root == "auto" else _parse_root(root)
    check_writable(out.parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = trace_file(prob, out, image=image, channel=channel, root=position,
                          root_snap=root_snap, high=high, low=low, max_gap=max_gap,
                          gap_floor=gap_floor, follow_gap=follow_gap,
                          follow_contrast=follow_contrast, follow_line_gap=follow_line_gap,
                          prune_length=prune,
                          spur_radii=spur_radii,
                          min_piece_length=min_piece_length, min_tree_length=min_tree_length,
                          smooth=smooth, node_step=step, keep_fragments=keep_fragments,
                          link_beads=link_beads, method=method, kind=kind, units=units,
                          neurite_type=neurite_type)
    print_warnings(caught, f"{prob}: ")
    err.print(f"wrote {out}: {_swc_summary(tree)}")


@app.command()
def run(
    inputs: Inputs,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: ModelOption = None,
    overlap: Overlap = DEFAULT_OVERLAP,
    flips: Flips = False,
    background_view: BackgroundView = 0.0,
    threshold: MaskThreshold = DEFAULT_THRESHOLD,
    mask: Annotated[Literal[RUN_MASKS], typer.Option(
        help="traced: NAME_mask.tif keeps the pieces of the map above --threshold that the "
             "SWC runs through (the noise specks and debris the tracer removed are left "
             "out); threshold: every voxel above it, as predict writes.")] = DEFAULT_RUN_MASK,
    prob_dtype: Annotated[Literal[TIFF_PROB_DTYPES], typer.Option(
        help="uint8 (= round(p * 255): small files) or float32 (the exact map) for "
             "NAME_prob.tif; tracing uses the float map either way.")] = DEFAULT_PROB_DTYPE,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    device: Device = "auto",
    precision: Precision = "auto",
    all_windows: AllWindows = False,
    threads: Threads = 0,
    channel: Channel = None,
    window: Window = None,
    skip_existing: SkipExisting = False,
    high: High = DEFAULT_HIGH,
    low: Low = DEFAULT_LOW,
    max_gap: MaxGap = DEFAULT_MAX_GAP,
    gap_floor: GapFloor = DEFAULT_GAP_FLOOR,
    follow_gap: FollowGap = DEFAULT_FOLLOW_GAP,
    follow_contrast: FollowContrast = DEFAULT_FOLLOW_CONTRAST,
    follow_line_gap: FollowLineGap = DEFAULT_FOLLOW_LINE_GAP,
    prune: Prune = DEFAULT_PRUNE_LENGTH,
    spur_radii: SpurRadii = DEFAULT_SPUR_RADII,
    min_piece_length: MinPiece = DEFAULT_MIN_PIECE_LENGTH,
    min_tree_length: MinTree = DEFAULT_MIN_TREE_LENGTH,
    smooth: Smooth = DEFAULT_SMOOTH,
    step: Step = DEFAULT_NODE_STEP,
    keep_fragments: KeepFragments = False,
    link_beads: LinkBeads = True,
    method: Method = "thinning",
    units: Units = DEFAULT_SWC_UNITS,
    neurite_type: NeuriteType = DEFAULT_NEURITE_TYPE,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Run one OME-Zarr volume block by block on a local dask cluster of this "
                    "many worker processes (needs the cluster extra); see 'Whole brains' in "
                    "the README.", show_default=False)] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="... or on the running dask scheduler at this address, or named by this "
             "scheduler file (dask scheduler --scheduler-file; e.g. workers started as "
             "SLURM jobs).", show_default=False)] = None,
    block: Annotated[str, typer.Option(
        help="Block z,y,x each worker task predicts and traces, with --workers or "
             "--scheduler; also the chunks of the map.")] = BLOCK_TEXT,
    memory_limit: Annotated[str, typer.Option(
        help="Memory per local worker (e.g. 4GB); auto shares the machine's.")] = "auto",
) -> None:
    """Predict and trace in one go: writes NAME_prob.tif, NAME_mask.tif and NAME.swc per stack.

    NAME_mask.tif holds the pieces of the map above --threshold that the SWC runs through, so
    not the noise specks and debris the tracer removed (--mask threshold: all of it).

    With --workers N or --scheduler ADDRESS, one OME-Zarr volume (a whole brain) is predicted
    and traced block by block on dask.distributed instead: OUT/NAME_prob.ome.zarr and
    OUT/NAME_mask.ome.zarr (multiscale; the mask as above, pieces judged within each block's
    halo), OUT/NAME.swc (every neuron), OUT/NAME_neurons/ (one SWC per neuron) and
    OUT/NAME_summary.json. Running the same command again continues an interrupted run.

    With no --model, the model that ships with dineuro does the prediction, so
    `dineuro run stack.tif -o out` works on a fresh installation.

    Prediction is exactly `dineuro predict`'s; tracing is `dineuro trace` of the map with the
    stack as --image, taken from memory rather than read back from NAME_prob.tif (so at full
    float precision even with --prob-dtype uint8). Existing outputs are refused before anything
    runs. A stack whose map cannot be traced (empty, or mostly foreground) gets a warning and
    the batch goes on.
    Each stack's line says how many windows the network ran on, in which precision, and the
    seconds spent predicting and tracing.
    """
    from dineuro.outputs import run_outputs
    from dineuro.predict import find_stacks, prepare_batch

    model, inputs = model_and_inputs(model, inputs)
    if workers is not None or scheduler is not None:
        from dineuro.cli.volume import run_on_cluster

        run_on_cluster(inputs, out, model, block=parse_triple(block, "--block", int),
                       workers=workers, scheduler=scheduler, memory_limit=memory_limit,
                       threads=threads, method=method, device=device,
                       window=parse_triple(window, "--window", int), overlap=overlap,
                       batch_size=batch_size, flips=flips, precision=precision,
                       skip_empty=not all_windows, background_view=background_view,
                       prob_dtype=prob_dtype, threshold=threshold, mask=mask, high=high,
                       low=low,
                       max_gap=max_gap, gap_floor=gap_floor, follow_gap=follow_gap,
                       follow_contrast=follow_contrast, follow_line_gap=follow_line_gap,
                       prune_length=prune,
                       spur_radii=spur_radii, min_piece_length=min_piece_length,
                       min_tree_length=min_tree_length, smooth=smooth, node_step=step,
                       keep_fragments=keep_fragments, link_beads=link_beads, units=units,
                       neurite_type=neurite_type)
        return
    stacks = find_stacks(inputs)
    todo = prepare_batch(stacks, out, lambda s: run_outputs(s, out), skip_existing=skip_existing,
                         channel=channel, prob_dtype=prob_dtype)
    predictor = _predictor(model, device, window, threads, overlap=overlap,
                           batch_size=batch_size, flips=flips, precision=precision,
                           skip_empty=not all_windows, background_view=background_view)
    trace_options = {"high": high, "low": low, "max_gap": max_gap, "gap_floor": gap_floor,
                     "follow_gap": follow_gap, "follow_contrast": follow_contrast,
                     "follow_line_gap": follow_line_gap,
                     "prune_length": prune, "spur_radii": spur_radii,
                     "min_piece_length": min_piece_length, "min_tree_length": min_tree_length,
                     "smooth": smooth, "node_step": step, "keep_fragments": keep_fragments,
                     "link_beads": link_beads, "method": method, "units": units,
                     "neurite_type": neurite_type}
    with made_folder(out):
        untraced = _run_stacks(predictor, todo, out, threshold=threshold, mask=mask,
                               prob_dtype=prob_dtype, channel=channel, **trace_options)
    failed = f"; not traced: {', '.join(untraced)}" if untraced else ""
    err.print(f"wrote predictions and SWC trees of {len(todo)} stack(s) to "
              f"{out}/{_skipped(stacks, todo)}{failed}")


def _run_stacks(predictor, stacks: list[Path], out: Path, **options) -> list[str]:
    """:meth:`~dineuro.predictor.Predictor.run` on each stack with progress bars and a line per
    stack; returns the names whose map could not be traced."""
    not_traced = []
    with progress_bar() as progress:
        overall = progress.add_task("stacks", total=len(stacks))
        for stack in stacks:
            task, advance = _window_bar(progress, f"predicting {stack.name}")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tracing = f"tracing {stack.name}"
                done = predictor.run(stack, out, progress=advance, on_tracing=lambda task=task,
                                     tracing=tracing: progress.update(task, description=tracing),
                                     **options)
            progress.remove_task(task)
            progress.console.print(
                f"{stack.name}: {_network_line(done.stats, predictor)}, predicted in "
                f"{done.predict_seconds:.1f} s, traced in {done.trace_seconds:.1f} s "
                f"({len(done.tree.roots)} trees)",
                highlight=False)
            print_warnings(caught, f"{stack.name}: ")
            if done.untraced is not None:
                not_traced.append(stack.name)
            progress.advance(overall)
    return not_traced


@app.command()
def demo(
    out: Annotated[Path, typer.Option("-o", "--out",
                                      help="Folder for everything the demo writes.")]
    = Path("dineuro-demo"),
    model: ModelOption = None,
) -> None:
    """The main job on an embedded default: synthesise, predict, trace, score, picture.

    Makes three small realistic synthetic stacks (OUT/data), runs the default model on them as
    `dineuro run` does (OUT/predictions: NAME_prob.tif, NAME_mask.tif, NAME.swc), prints Dice
    and HD95 of the masks (the pieces of the map the trace runs through) next to ESA/DSA/PDS
    and F1 of the traces against the gold SWCs, and draws the trace over the first stack with
    its gold SWC (OUT/NAME_trace.png). Nothing is trained or downloaded. Stages whose output
    exists are skipped, so running it again is quick.
    """
    from dineuro.cli.data import write_synthetic
    from dineuro.data.dataset import open_dataset
    from dineuro.demo import demo_folders, demo_picture, demo_synth_config, stacks_to_run
    from dineuro.evaluate import evaluate_folder, markdown_table
    from dineuro.predictor import Predictor

    data_dir, pred_dir = demo_folders(out)
    if not data_dir.exists():
        write_synthetic(data_dir, demo_synth_config(), "synthesising realistic stacks")
    dataset = open_dataset(data_dir)
    names, todo = stacks_to_run(dataset, pred_dir)
    if todo:
        pred_dir.mkdir(parents=True, exist_ok=True)
        _run_stacks(Predictor.from_checkpoint(model), todo, pred_dir)
    table = evaluate_folder(pred_dir, data_dir, names=names)
    Console(soft_wrap=True).print(markdown_table(table), markup=False, highlight=False)
    picture = demo_picture(dataset, names[0], pred_dir, out)
    err.print(f"predictions and traces: {pred_dir}/  picture: {picture}")
