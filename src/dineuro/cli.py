"""The ``dineuro`` command line: parses arguments, shows progress, calls one function per verb.

Library code never prints; this module does. Bad input (:class:`dineuro.errors.InputError`)
becomes one sentence on stderr and exit code 2, a failure of the machine (an ``OSError``: a full
disk, a read-only folder) one sentence and exit code 1, both without a traceback.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dineuro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NODE_STEP,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_ROOT_SNAP,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
    DEFAULT_SWC_THRESHOLD,
    DEFAULT_THRESHOLD,
)
from dineuro.errors import InputError, environment_failure
from dineuro.io.atomic import check_writable, made_folder, refuse_existing

app = typer.Typer(
    help="dineuro: segment 3D light-microscopy stacks of single neurons and trace them into SWC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs re-flow to the terminal width
)
weights_app = typer.Typer(help="DINO teacher checkpoints: list the known ones, download them.",
                          no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(weights_app, name="weights")
err = Console(stderr=True, soft_wrap=True)  # a message is one line, also in a log

STACK_FORMATS = ".tif/.tiff, a folder of 2D TIFF slices, .v3draw, .nii/.nii.gz"
Channel = Annotated[int | None, typer.Option(
    help="Channel to take from a multi-channel stack (0-based).")]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except InputError as exc:
        _fail(str(exc), 2)
    except OSError as exc:  # the machine, not the input: a full disk, a read-only folder
        _fail(environment_failure(exc), 1)


def _fail(sentence: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(sentence)}", highlight=False)
    sys.exit(code)


def _progress(*columns) -> Progress:
    columns = columns or (MofNCompleteColumn(),)
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err)


def _parse_triple(text: str | None, what: str, kind=float):
    """``"64,256,256"`` -> (64, 256, 256); a clear error for anything else."""
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"{what} should be three comma-separated numbers z,y,x, not {text!r}.")
    return values


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help=f"Input stack: {STACK_FORMATS}.")],
    dst: Annotated[Path, typer.Argument(
        help="Output stack: .tif, .v3draw or .nii/.nii.gz; must not exist.")],
    channel: Channel = None,
) -> None:
    """Convert a stack between formats, keeping dtype and voxel spacing.

    v3draw files carry no voxel spacing: converting to .v3draw drops it, from .v3draw gives 1.
    """
    from dineuro.io.volume import convert_volume

    check_writable(dst.parent)
    volume = convert_volume(src, dst, channel=channel)
    z, y, x = volume.array.shape
    err.print(f"wrote {dst}: {z} x {y} x {x} (z, y, x), {volume.array.dtype}, "
              f"spacing {volume.spacing}")


@app.command()
def synth(
    out: Annotated[Path, typer.Option("-o", "--out",
                                      help="Dataset folder to create (must not exist).")],
    preset: Annotated[str, typer.Option(
        help="small: 6 stacks of 48x128x128 (seconds); bench: 42 stacks of 64x256x256 "
             "(the size of BigNeuron's Janelia set); realistic: bench-sized, every stack with "
             "its own microscope (anisotropy, 8/12/16-bit camera, speckles, beaded neurites, "
             "several neurons, fibres without a soma): the default model's training data.")]
    = "small",
    difficulty: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="0 = bright and clean ... 1 = dim, gappy, cluttered.")] = 0.5,
    seed: Annotated[int, typer.Option(
        help="Master seed; the same seed gives the same voxels.")] = 0,
    n: Annotated[int | None, typer.Option(
        "--n", help="Number of stacks (default: the preset's).")] = None,
    shape: Annotated[str | None, typer.Option(
        help="Stack shape z,y,x in voxels (default: the preset's).")] = None,
    spacing: Annotated[str | None, typer.Option(
        help="Voxel size z,y,x in micrometres (default 1,0.5,0.5).")] = None,
    dtype: Annotated[str, typer.Option(
        help="uint8, or uint16 (values in a 12-bit camera's range); the realistic preset "
             "draws the camera per stack.")] = "uint8",
) -> None:
    """Generate a synthetic benchmark: stacks, label masks, gold SWCs, split.json, meta.json.

    Neurons are real fly neurons (navis' examples) and procedurally grown trees; the image
    model has PSF blur (worse in z), shot and read noise, uneven background, dim stretches,
    out-of-focus blobs and fragments of other neurons. meta.json records the full generator
    configuration (for the realistic preset, each stack's drawn model), so the folder can be
    regenerated exactly.
    """
    from dineuro.data.synth import PRESETS

    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    changes = {"difficulty": difficulty, "seed": seed, "dtype": dtype}
    if n is not None:
        changes["n_stacks"] = n
    if shape is not None:
        changes["shape"] = _parse_triple(shape, "--shape", int)
    if spacing is not None:
        changes["spacing"] = _parse_triple(spacing, "--spacing")
    try:
        config = replace(PRESETS[preset], **changes)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    refuse_existing(out)
    check_writable(out.parent)
    _write_synthetic(out, config, "synthesising stacks")
    err.print(f"wrote {config.n_stacks} stacks to {out}/ (images/, labels/, swc/, split.json, "
              "meta.json)")


def _write_synthetic(out: Path, config, description: str) -> None:
    from dineuro.data.synth import write_synthetic_dataset

    with _progress() as progress:
        task = progress.add_task(description, total=config.n_stacks)
        write_synthetic_dataset(out, config, on_stack=lambda _: progress.advance(task))


@app.command()
def show(
    stack: Annotated[Path, typer.Argument(help=f"The stack: {STACK_FORMATS}.")],
    out: Annotated[Path, typer.Option("-o", "--out",
                                      help="Picture to write (.png, .pdf or .svg).")],
    swc: Annotated[Path | None, typer.Option(
        help="SWC to draw over the projections.")] = None,
    mask: Annotated[Path | None, typer.Option(
        help="Label-mask stack to tint over the projections.")] = None,
    channel: Channel = None,
) -> None:
    """Draw maximum-intensity projections (x-y, x-z, z-y) with an SWC and/or a mask overlaid.

    With an overlay, the projections appear twice: plain, and with the overlay, side by side.
    """
    from dineuro.data.render import check_tree_in_stack
    from dineuro.io.swc import read_swc
    from dineuro.io.volume import read_volume
    from dineuro.report import FIGURE_FORMATS, mip_figure, save_figure

    if out.suffix.lower() not in FIGURE_FORMATS:
        raise InputError(f"should end in one of {', '.join(FIGURE_FORMATS)}.", out)
    refuse_existing(out)
    check_writable(out.parent)
    volume = read_volume(stack, channel=channel)
    tree = read_swc(swc) if swc is not None else None
    if tree is not None:
        check_tree_in_stack(tree, volume.array.shape, swc)
    label = read_volume(mask).array > 0 if mask is not None else None
    if label is not None and label.shape != volume.array.shape:
        raise InputError(f"has shape {label.shape} but the stack has shape "
                         f"{volume.array.shape}.", mask)
    save_figure(mip_figure(volume.array, volume.spacing, tree, label, title=stack.name), out)
    err.print(f"wrote {out}")


class _TrainBar:
    """A rich progress bar fed by the trainer's ``progress(step, total, loss, val_dice)``."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, step: int, total: int, loss: float, val_dice: float | None) -> None:
        if self.task is None:
            self.task = self.progress.add_task("training", total=total, loss=loss, dice="-")
        fields = {"loss": loss}
        if val_dice is not None:
            fields["dice"] = f"{val_dice:.3f}"
        self.progress.update(self.task, completed=step, **fields)


def _train_progress() -> Progress:
    return _progress(TextColumn("loss {task.fields[loss]:.4f}  val Dice {task.fields[dice]}"),
                     MofNCompleteColumn())


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(
        help="YAML training config (see configs/); omit to start from the defaults.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE override (dotted keys for nested ones, YAML values); "
                      "repeatable, e.g. --set steps=200 --set augment.noise=false.")] = None,
    teacher: Annotated[str | None, typer.Option(
        help="DINO checkpoint file, or a name from `dineuro weights list` (same as "
             "--set teacher=...).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in the config's out folder from its last.pt, exactly; a run "
             "stopped before its first checkpoint starts again from step 0.")] = False,
) -> None:
    """Train a segmentation network on a dataset folder; writes best.pt, last.pt, metrics.csv.

    The run folder also gets the resolved config.yaml. For several processes use
    `torchrun --nproc_per_node N -m dineuro.train CONFIG ...` (gloo on CPU, nccl on GPU).
    """
    from dineuro.train import load_config
    from dineuro.train import train as run_training

    extra = [f"teacher={teacher}"] if teacher is not None else []
    resolved = load_config(config, [*(overrides or []), *extra])
    check_writable(resolved.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _train_progress() as progress:
            result = run_training(resolved, progress=_TrainBar(progress), resume=resume)
    _print_warnings(caught)
    best = "-" if result.best_val_dice is None else f"{result.best_val_dice:.4f}"
    err.print(f"trained {result.steps} steps in {result.seconds:.0f} s; best val Dice {best}; "
              f"checkpoints in {result.out}")


def _device(name: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; a device that is not there is
    refused in one sentence."""
    from dineuro.train.runtime import resolve_device

    return str(resolve_device(name))


def _load_for_prediction(model: Path | str, device: str, window: str | None = None):
    """(network, window, normalisation) of a checkpoint, or of the packaged default model for
    "default": all that prediction needs from it."""
    from dineuro.checkpoint import load_for_prediction, resolve_model

    return load_for_prediction(resolve_model(model), _device(device),
                               _parse_triple(window, "--window", int))


Overlap = Annotated[float, typer.Option(
    min=0.0, max=0.95, help="Fraction of a window shared with its neighbour.")]
Flips = Annotated[bool, typer.Option(
    help="Average all 8 axis flips (test-time augmentation; 8x slower).")]
MaskThreshold = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="NAME_mask.tif = probability > threshold.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Windows per forward pass.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
#: Mirrors dineuro.predict.PRECISIONS.
Precision = Annotated[str, typer.Option(
    help="auto: bf16 where the CPU (AVX512-BF16, AMX) or GPU computes it natively, else fp32; "
         "or bf16, fp32.")]
AllWindows = Annotated[bool, typer.Option(
    "--all-windows", help="Run the network on every window, also those without signal "
                          "(which are otherwise skipped with probability 0).")]
Window = Annotated[str | None, typer.Option(
    help="Window z,y,x the network predicts through (multiples of its patch, 16), instead of "
         "its training crop (48,48,48): larger windows with a lower --overlap compute fewer "
         "voxels, e.g. --window 48,96,96 --overlap 0.25 --batch-size 1 (see the README's "
         "speed section for what it costs).", show_default=False)]
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing", help="Skip stacks whose outputs all exist (to finish an interrupted "
                            "batch); without it, any existing output is refused.")]
Threads = Annotated[int, typer.Option(
    min=0, help="CPU threads for the network; 0: PyTorch's default (the physical cores).")]
#: File endings of checkpoints, to read the older `run MODEL INPUT...` form.
CHECKPOINT_SUFFIXES = (".pt", ".pth")
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="A checkpoint from `dineuro train` (best.pt); default: the model "
                          "that ships with dineuro, trained on synthetic stacks only (its card: "
                          "`dineuro model-card`).", show_default=False)]
Inputs = Annotated[list[Path], typer.Argument(
    help=f"Stacks ({STACK_FORMATS}) or folders of them. A checkpoint (.pt) given first is "
         "taken as --model, as in `dineuro run best.pt stack.tif`.")]


def _model_and_inputs(model: str | None, inputs: list[Path]) -> tuple[str, list[Path]]:
    """The model (the packaged default unless given) and the stacks, accepting the older form
    with the checkpoint as the first positional argument."""
    if model is None and len(inputs) > 1 and inputs[0].suffix.lower() in CHECKPOINT_SUFFIXES:
        return str(inputs[0]), inputs[1:]
    return model or "default", inputs


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(
        help=f"Stacks ({STACK_FORMATS}) or folders of them; with --blocks, zarr arrays. A "
             "checkpoint (.pt) given first is taken as --model.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: ModelOption = None,
    overlap: Overlap = DEFAULT_OVERLAP,
    flips: Flips = False,
    threshold: MaskThreshold = DEFAULT_THRESHOLD,
    prob_dtype: Annotated[str, typer.Option(
        help="float32 or uint8 (= round(p * 255)) for NAME_prob.tif; zarr also float16.")]
    = DEFAULT_PROB_DTYPE,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    device: Device = "auto",
    precision: Precision = "auto",
    all_windows: AllWindows = False,
    threads: Threads = 0,
    channel: Channel = None,
    blocks: Annotated[bool, typer.Option(
        help="Read and write zarr block by block, for stacks larger than memory: writes "
             "OUT/NAME_prob.zarr.")] = False,
    block: Annotated[str, typer.Option(help="Block size z,y,x for --blocks.")] = "128,256,256",
    window: Window = None,
    skip_existing: SkipExisting = False,
) -> None:
    """Apply a trained model (the packaged default unless --model): writes NAME_prob.tif and
    NAME_mask.tif per stack.

    Stacks of any size work (windows placed as MONAI places them, a stack thinner than a
    window padded); windows are blended with Gaussian weights, and windows without signal are
    skipped. The checkpoint carries the network, crop
    and normalisation it was trained with.
    """
    from dineuro.outputs import output_paths, zarr_output
    from dineuro.predict import WindowStats, find_stacks, predict_blocks, predict_stack

    model, inputs = _model_and_inputs(model, inputs)
    stacks = [Path(p) for p in inputs] if blocks else find_stacks(inputs)

    todo = _batch(stacks, out, (lambda s: (zarr_output(s, out),)) if blocks
                  else (lambda s: output_paths(s, out)), skip_existing,
                  None if blocks else (channel, prob_dtype))
    _set_threads(threads)
    network, crop, norm = _load_for_prediction(model, device, window)
    options = {"overlap": overlap, "batch_size": batch_size, "flips": flips,
               "device": _device(device), "precision": precision,
               "skip_empty": not all_windows, "prob_dtype": prob_dtype}
    with made_folder(out), _progress() as progress:
        for stack in todo:
            task = progress.add_task(f"predicting {stack.name}", total=None)

            def advance(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            stats = WindowStats()
            if blocks:
                predict_blocks(network, stack, zarr_output(stack, out), crop, norm,
                               block=_parse_triple(block, "--block", int), progress=advance,
                               stats=stats, **options)
            else:
                predict_stack(network, stack, out, crop, norm, threshold=threshold,
                              channel=channel, progress=advance, stats=stats, **options)
            progress.console.print(f"{stack.name}: network on {stats.computed} of "
                                   f"{stats.windows} windows ({stats.precision})",
                                   highlight=False)
    err.print(f"wrote predictions of {len(todo)} stack(s) to {out}/{_skipped(stacks, todo)}")


def _batch(stacks: list[Path], out: Path, outputs_of, skip_existing: bool,
           probe: tuple[int | None, str] | None) -> list[Path]:
    """The stacks of a batch still to do, after every check that can fail before the work:
    existing outputs, each stack's header (with ``probe`` = (channel, prob dtype)), and
    whether OUT takes the outputs (a map and a uint8 mask per stack)."""
    import numpy as np

    from dineuro.io.atomic import partial_files
    from dineuro.predict import TIFF_PROB_DTYPES, output_bytes, pending, probe_stacks

    todo = pending(stacks, outputs_of, skip_existing)
    needed = 0
    if probe is not None:
        channel, prob_dtype = probe
        if prob_dtype not in TIFF_PROB_DTYPES:
            raise InputError(f"--prob-dtype should be one of {', '.join(TIFF_PROB_DTYPES)}, "
                             f"not {prob_dtype!r}.")
        needed = output_bytes(probe_stacks(todo, channel), np.dtype(prob_dtype).itemsize + 1)
    check_writable(out, needed)
    for stack in todo:  # temporaries a killed run left; its finished files stay
        for path in outputs_of(stack):
            for leftover in partial_files(path):
                leftover.unlink()
    return todo


def _skipped(stacks: list[Path], todo: list[Path]) -> str:
    done = len(stacks) - len(todo)
    return f" ({done} stack(s) skipped: their outputs exist)" if done else ""


High = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Hysteresis: foreground is p > --low connected to some p > --high.")]
Low = Annotated[float, typer.Option(min=0.0, max=1.0, help="Lower hysteresis threshold.")]
MaxGap = Annotated[float, typer.Option(
    min=0.0, help="Longest gap bridged between traced pieces, in x voxels.")]
GapFloor = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Least mean probability (or normalised intensity with --image) "
                           "along a bridged gap.")]
Prune = Annotated[float, typer.Option(
    min=0.0, help="Remove terminal branches sticking out less than this, in x voxels.")]
Step = Annotated[float, typer.Option(
    min=0.01, help="Distance between SWC nodes along a branch, in x voxels.")]
SpurRadii = Annotated[float, typer.Option(
    min=0.0, help="Also remove terminal branches reaching less than this many radii of the "
                  "neurite they leave.")]
MinPiece = Annotated[float, typer.Option(
    min=0.0, help="Foreground pieces with less centre line than this (x voxels) are noise: "
                  "removed, never bridged.")]
MinTree = Annotated[float, typer.Option(
    min=0.0, help="Separate trees with less cable than this (x voxels) are dropped as debris; "
                  "larger ones (other neurons, fibres) are written as trees of their own.")]
Smooth = Annotated[float, typer.Option(
    min=0.0, help="Gaussian smoothing (sigma, x voxels) of the centre line along each branch; "
                  "0 keeps the voxel path.")]
KeepFragments = Annotated[bool, typer.Option(
    help="Also write separate trees smaller than --min-tree-length.")]
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


def _print_warnings(caught, prefix: str = "") -> None:
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            err.print(f"[yellow]warning:[/] {escape(prefix + str(warning.message))}",
                      highlight=False)


@app.command()
def trace(
    prob: Annotated[Path, typer.Argument(
        help="Probability map (NAME_prob.tif from `predict`: float in [0, 1], or uint8/uint16 "
             "scaled to the dtype's maximum) or a binary mask (NAME_mask.tif, 0/1).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="SWC file to write (must not exist).")],
    image: Annotated[Path | None, typer.Option(
        help="The raw stack: gaps are then judged by its normalised intensity.")] = None,
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
    prune: Prune = DEFAULT_PRUNE_LENGTH,
    spur_radii: SpurRadii = DEFAULT_SPUR_RADII,
    min_piece_length: MinPiece = DEFAULT_MIN_PIECE_LENGTH,
    min_tree_length: MinTree = DEFAULT_MIN_TREE_LENGTH,
    smooth: Smooth = DEFAULT_SMOOTH,
    step: Step = DEFAULT_NODE_STEP,
    keep_fragments: KeepFragments = False,
    method: Method = "thinning",
    kind: Annotated[str, typer.Option(
        help="auto, probability, mask, or image: how to read PROB (auto takes 0/1 integers as "
             "a mask; image traces a raw stack, percentile-normalised as predict does).")]
    = "auto",
) -> None:
    """Trace a probability map or mask into SWC trees, one per neuron or fibre.

    Coordinates are voxels (x, y, z) with the spacing in the header; the first tree's root is
    type 1 when it is a soma, and the header says how each root was chosen (soma, the end
    where the tree leaves the stack, its thickest end, or --root). Noise specks and separate
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
                          gap_floor=gap_floor, prune_length=prune, spur_radii=spur_radii,
                          min_piece_length=min_piece_length, min_tree_length=min_tree_length,
                          smooth=smooth, node_step=step, keep_fragments=keep_fragments,
                          method=method, kind=kind)
    _print_warnings(caught, f"{prob}: ")
    err.print(f"wrote {out}: {_swc_summary(tree)}")


@app.command()
def run(
    inputs: Inputs,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: ModelOption = None,
    overlap: Overlap = DEFAULT_OVERLAP,
    flips: Flips = False,
    threshold: MaskThreshold = DEFAULT_THRESHOLD,
    prob_dtype: Annotated[str, typer.Option(
        help="float32 or uint8 (= round(p * 255)) for NAME_prob.tif.")] = DEFAULT_PROB_DTYPE,
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
    prune: Prune = DEFAULT_PRUNE_LENGTH,
    spur_radii: SpurRadii = DEFAULT_SPUR_RADII,
    min_piece_length: MinPiece = DEFAULT_MIN_PIECE_LENGTH,
    min_tree_length: MinTree = DEFAULT_MIN_TREE_LENGTH,
    smooth: Smooth = DEFAULT_SMOOTH,
    step: Step = DEFAULT_NODE_STEP,
    keep_fragments: KeepFragments = False,
    method: Method = "thinning",
) -> None:
    """Predict and trace in one go: writes NAME_prob.tif, NAME_mask.tif and NAME.swc per stack.

    With no --model, the model that ships with dineuro does the prediction, so
    `dineuro run stack.tif -o out` works on a fresh installation.

    Prediction is exactly `dineuro predict`'s; tracing is `dineuro trace` of the map, taken
    from memory rather than read back from NAME_prob.tif (so at full float precision even
    with --prob-dtype uint8). Existing outputs are refused before anything runs. A stack whose
    map cannot be traced (empty, or mostly foreground) gets a warning and the batch goes on.
    Each stack's line says how many windows the network ran on, in which precision, and the
    seconds spent predicting and tracing.
    """
    from dineuro.outputs import run_outputs
    from dineuro.predict import find_stacks

    model, inputs = _model_and_inputs(model, inputs)
    stacks = find_stacks(inputs)
    todo = _batch(stacks, out, lambda s: run_outputs(s, out), skip_existing,
                  (channel, prob_dtype))
    _set_threads(threads)
    network, crop, norm = _load_for_prediction(model, device, window)
    options = {"overlap": overlap, "batch_size": batch_size, "flips": flips,
               "device": _device(device), "precision": precision,
               "skip_empty": not all_windows, "prob_dtype": prob_dtype,
               "threshold": threshold, "channel": channel}
    trace_options = {"high": high, "low": low, "max_gap": max_gap, "gap_floor": gap_floor,
                     "prune_length": prune, "spur_radii": spur_radii,
                     "min_piece_length": min_piece_length, "min_tree_length": min_tree_length,
                     "smooth": smooth, "node_step": step, "keep_fragments": keep_fragments,
                     "method": method}
    with made_folder(out):
        untraced = _predict_and_trace(todo, out, (network, crop, norm), options, trace_options)
    failed = f"; not traced: {', '.join(untraced)}" if untraced else ""
    err.print(f"wrote predictions and SWC trees of {len(todo)} stack(s) to "
              f"{out}/{_skipped(stacks, todo)}{failed}")


def _predict_and_trace(stacks: list[Path], out: Path, loaded, options: dict,
                       trace_options: dict) -> list[str]:
    """Predict and trace each stack into ``out`` with a progress bar and a line per stack;
    the names whose map could not be traced (each gets a warning and an SWC that says why;
    the batch goes on). A stack's three files are written after its tracing, all or none."""
    import time

    from dineuro.io.atomic import undo_on_failure
    from dineuro.io.swc import write_swc
    from dineuro.outputs import swc_path
    from dineuro.predict import WindowStats, checked_outputs, predict_file, write_prediction
    from dineuro.trace import trace_volume, untraced

    network, crop, norm = loaded
    options = dict(options)
    threshold = options.pop("threshold", DEFAULT_THRESHOLD)
    prob_dtype = options.pop("prob_dtype", DEFAULT_PROB_DTYPE)
    outputs = {stack: (*checked_outputs(stack, out, threshold, prob_dtype),
                       swc_path(stack, out)) for stack in stacks}
    not_traced = []
    with _progress() as progress:
        overall = progress.add_task("stacks", total=len(stacks))
        for stack in stacks:
            task = progress.add_task(f"predicting {stack.name}", total=None)

            def advance(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            stats, start = WindowStats(), time.perf_counter()
            prob = predict_file(network, stack, crop, norm, progress=advance, stats=stats,
                                **options)
            prob_path, mask_path, swc_path = outputs[stack]
            predicted = time.perf_counter()
            progress.update(task, description=f"tracing {stack.name}")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    tree = trace_volume(prob, source=prob_path, kind="probability",
                                        **trace_options)
                except InputError as exc:
                    not_traced.append(stack.name)
                    tree = untraced(prob_path, str(exc))
                    warnings.warn(f"not traced: {exc}", UserWarning, stacklevel=1)
            traced = time.perf_counter()
            with undo_on_failure(*outputs[stack]):  # written last: a stack is all or nothing
                write_prediction(prob, prob_path, mask_path, threshold=threshold,
                                 prob_dtype=prob_dtype)
                write_swc(swc_path, tree, allow_empty=True)
            progress.remove_task(task)
            progress.console.print(
                f"{stack.name}: network on {stats.computed} of {stats.windows} windows "
                f"({stats.precision}), predicted in {predicted - start:.1f} s, traced in "
                f"{traced - predicted:.1f} s", highlight=False)
            _print_warnings(caught, f"{stack.name}: ")
            progress.advance(overall)
    return not_traced


def _set_threads(threads: int) -> None:
    """``--threads``: 0 leaves PyTorch's default (one per physical core)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


class _AdaptBars:
    """Rich progress bars fed by adapt's ``progress(stage, done, total, loss)``: one per stage."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, stage: str, done: int, total: int, loss: float | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, loss="")
        shown = {} if loss is None else {"loss": f"loss {loss:.4f}"}
        self.progress.update(self.tasks[stage], completed=done, total=total, **shown)


@app.command()
def adapt(
    inputs: Annotated[list[Path], typer.Argument(
        help=f"The lab's unlabelled stacks ({STACK_FORMATS}) or folders of them.")],
    out: Annotated[Path, typer.Option(
        "-o", "--out", help="The adapted checkpoint to write (.pt; must not exist). The run's "
                            "labels, checks and state go to the folder beside it, OUT.adapt/ "
                            "without the .pt.")],
    model: ModelOption = None,
    steps: Annotated[int | None, typer.Option(
        min=1, help="Fine-tuning steps per round (default 500).")] = None,
    rounds: Annotated[int | None, typer.Option(
        min=1, help="Rounds of label-then-fine-tune (default 1).")] = None,
    synthetic: Annotated[Path | None, typer.Option(
        help="Dataset folder (dineuro synth layout) to mix in so the network does not forget; "
             "default: synthesise 10 stacks of the realistic preset, the default model's "
             "training data.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE for any other setting (lr, batch_size, synthetic_share, "
                      "fg_prob, bg_prob, margin, holdout, guard_margin, seed, ...).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted run from OUT.adapt/state.pt, exactly.")] = False,
    device: Device = "auto",
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads for the network (default: PyTorch's).")] = None,
) -> None:
    """Adapt a network to your own microscope from unlabelled stacks (self-training).

    Each round labels your stacks with the network and the tracer: foreground where the core
    of a traced tree's tube and a high probability agree, background where the probability is
    low, far from any trace, and the image dark, the rest ignored. Then the network is fine-tuned on
    those labels mixed with synthetic stacks with gold labels, and keeps half of the weight
    change (--set blend=...), so that it does not forget what it knew. Some of your stacks
    are held back: after every round adapt reports the network's agreement with their first
    labels, and its traced F1 and Dice on held-back synthetic stacks, and warns when that F1
    fell by more than a margin. Use the result with `dineuro run --model OUT STACK`.
    """
    from dineuro.adapt import AdaptConfig
    from dineuro.adapt import adapt as run_adapt
    from dineuro.config import parse_override
    from dineuro.predict import find_stacks

    values = dict(parse_override(item) for item in overrides or [])
    given = {"stacks": [str(p) for p in find_stacks(inputs)], "out": str(out),
             "model": model or "default", "steps": steps, "rounds": rounds,
             "synthetic": None if synthetic is None else str(synthetic), "device": device,
             "threads": threads}
    values |= {key: value for key, value in given.items() if value is not None}
    config = AdaptConfig.from_dict(values)
    check_writable(out.parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _progress(TextColumn("{task.fields[loss]}"), MofNCompleteColumn()) as progress:
            result = run_adapt(config, progress=_AdaptBars(progress), resume=resume)
    _print_warnings(caught)
    for checked in [result.before, *result.rounds]:
        when = "before" if "round" not in checked else f"round {checked['round']}"
        shown = {key: "-" if checked[key] is None else f"{checked[key]:.3f}"
                 for key in ("synthetic_f1", "synthetic_dice", "agreement")}
        err.print(f"{when}: held-back synthetic stacks: traced F1 {shown['synthetic_f1']}, Dice "
                  f"{shown['synthetic_dice']}; agreement with held-back stacks' first labels "
                  f"{shown['agreement']}", highlight=False)
    err.print(f"wrote {result.out} in {result.seconds:.0f} s; labels, checks and state in "
              f"{result.work}/")


@app.command("model-card")
def model_card(model: ModelOption = None) -> None:
    """Show how a model was made and what it scored: the card of the packaged default model
    (or of --model); a checkpoint without a card shows its training steps and val Dice."""
    import json

    from dineuro.checkpoint import load_checkpoint, resolve_model

    path = resolve_model(model)
    data = load_checkpoint(path)
    card = data.get("card") or {key: data.get(key) for key in ("dineuro_version", "step",
                                                               "val_dice")}
    typer.echo(f"{path}\n{json.dumps(card, indent=2)}")


@app.command()
def evaluate(
    pred_dir: Annotated[Path, typer.Argument(
        help="Folder of predictions: NAME_mask.tif and/or NAME_prob.tif, as `predict` writes, "
             "and traced NAME.swc, as `run` writes.")],
    gold: Annotated[Path, typer.Argument(
        help="A dataset folder (labels/ or swc/) or a folder of NAME.tif gold masks (with "
             "NAME.swc gold reconstructions beside them, if any).")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", help="Folder for metrics.csv and metrics.md (default: PRED_DIR).")] = None,
    split: Annotated[str, typer.Option(
        help="With a dataset as gold: the split to score (train, val, test), or 'all'.")]
    = "test",
    threshold: Annotated[float | None, typer.Option(
        help="Re-threshold NAME_prob.tif at p > T instead of scoring NAME_mask.tif.")] = None,
    swc_threshold: Annotated[float, typer.Option(
        help="Distance in SWC units (voxels, z not scaled, as Vaa3D's neuron_distance) from "
             "which a traced point counts as apart from the gold SWC (DSA, PDS) and below which "
             "it counts as matched (F1).")] = DEFAULT_SWC_THRESHOLD,
) -> None:
    """Score predictions against gold: Dice and HD95 per stack, mean and std; with traced
    NAME.swc files and gold SWCs, also ESA, DSA, PDS and F1 of the reconstructions.

    HD95 is in x/y voxels with z distances scaled by the z/x spacing ratio; ESA and DSA are in
    SWC units (voxels), as Vaa3D's neuron_distance and `compare`. Stacks missing a prediction, a
    trace or their gold, and empty predictions or traces, are listed, never dropped.
    """
    # Checked here too because the library's message names its argument, not the option; the
    # chained comparison also refuses nan.
    if not 0 < swc_threshold < float("inf"):
        raise InputError(f"--swc-threshold should be a positive number of SWC units, not "
                         f"{swc_threshold}.")
    from dineuro.data.dataset import IMAGES, SPLIT_FILE, SPLITS, open_dataset
    from dineuro.evaluate import evaluate_folder, markdown_table, write_tables

    check_writable(out if out is not None else pred_dir)
    names = None
    if (gold / IMAGES).is_dir() and (gold / SPLIT_FILE).exists() and split != "all":
        if split not in SPLITS:
            raise InputError(f"--split should be one of {', '.join(SPLITS)} or all, not "
                             f"{split!r}.")
        names = open_dataset(gold).split()[split]
    with _progress() as progress:
        task = progress.add_task("scoring stacks", total=len(names) if names else None)
        table = evaluate_folder(pred_dir, gold, threshold=threshold, names=names,
                                on_stack=lambda _: progress.advance(task),
                                swc_threshold=swc_threshold)
    csv_path, md_path = write_tables(table, out if out is not None else pred_dir)
    Console(soft_wrap=True).print(markdown_table(table), markup=False, highlight=False)
    err.print(f"wrote {csv_path} and {md_path}")


@app.command()
def compare(
    test: Annotated[Path, typer.Argument(help="The reconstruction to score (SWC).")],
    gold: Annotated[Path, typer.Argument(help="The reference reconstruction (SWC).")],
    threshold: Annotated[float, typer.Option(
        help="Distance in SWC units (voxels) from which a point counts as apart (DSA, PDS) "
             "and below which it counts as matched (precision, recall).")] = DEFAULT_SWC_THRESHOLD,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object with every value instead of a table.")] = False,
) -> None:
    """Compare two SWC reconstructions: ESA, DSA and PDS as Vaa3D's neuron_distance computes
    them, and precision, recall and F1 of the length within the threshold.

    Distances are in raw SWC units; node types and radii are ignored. "test -> gold" averages
    over the test tree's points their distance to the gold tree.
    """
    import json

    from rich.table import Table

    from dineuro.evaluate import compare_swc_files

    result = compare_swc_files(test, gold, threshold)
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"{test.name} vs {gold.name}, threshold {result.threshold:g}")
    for column in ("", "test -> gold", "gold -> test", "both"):
        table.add_column(column, justify="left" if not column else "right")
    for name in ("esa", "dsa", "pds"):
        table.add_row(name.upper(), *(f"{getattr(result, key):.4f}" for key in (
            f"{name}_test_to_gold", f"{name}_gold_to_test", name)))
    table.add_row("precision, recall; F1", f"{result.precision:.4f}", f"{result.recall:.4f}",
                  f"{result.f1:.4f}")
    table.add_row("hairiness (tips / 100 of cable)", _fmt_optional(result.test_hairiness),
                  _fmt_optional(result.gold_hairiness), _fmt_optional(result.hairiness_ratio))
    table.add_row("length", f"{result.test_length:.1f}", f"{result.gold_length:.1f}", "")
    table.add_row("nodes", str(result.test_nodes), str(result.gold_nodes), "")
    table.add_row("sample points", str(result.test_points), str(result.gold_points), "")
    Console(highlight=False).print(table)


def _fmt_optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(
        help="Experiment YAML (configs/ablation_*.yaml): a base training config, the "
             "transfers, the seeds, the teacher (or named teachers to compare).")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE override, e.g. --set base.steps=200 --set seeds=[0,1,2].")]
    = None,
    teacher: Annotated[str | None, typer.Option(
        help="DINO checkpoint file, or a name from `dineuro weights list`; replaces the "
             "config's teacher or teachers.")] = None,
) -> None:
    """Run the transfer ablation: train every transfer x seed (x teacher, when the config names
    several) with the same data and budget, predict and score the evaluation split, and write
    ablation.md/.csv, runs.csv (a row per run), val_curves.png and overlays.png.

    Finished runs are reused and interrupted ones resumed, so the same command continues an
    experiment.
    """
    from dineuro.experiment import load_experiment, run_experiment

    extra = [f"teacher={teacher}"] if teacher is not None else []
    resolved = load_experiment(config, [*(overrides or []), *extra])
    with _progress() as progress:
        task = progress.add_task("ablation runs", total=None)

        def report(message: str, done: int, total: int) -> None:
            progress.update(task, description=message, completed=done, total=total)

        result = run_experiment(resolved, progress=report)
    Console(soft_wrap=True).print(result.markdown.read_text(), markup=False, highlight=False)
    err.print(f"wrote {result.markdown}, {result.csv}, {result.runs_csv}, {result.val_curves}, "
              f"{result.overlays}")


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
    and HD95 of the maps next to ESA/DSA/PDS and F1 of the traces against the gold SWCs, and
    draws the trace over the first stack with its gold SWC (OUT/NAME_trace.png). Nothing is
    trained or downloaded. Stages whose output exists are skipped, so running it again is quick.
    """
    from dineuro.data.dataset import open_dataset
    from dineuro.demo import demo_synth_config
    from dineuro.evaluate import evaluate_folder, markdown_table, read_trace
    from dineuro.io.volume import read_volume
    from dineuro.outputs import output_paths, run_outputs, swc_path
    from dineuro.report import mip_figure, save_figure

    data_dir, pred_dir = out / "data", out / "predictions"
    if not data_dir.exists():
        _write_synthetic(data_dir, demo_synth_config(), "synthesising realistic stacks")
    dataset = open_dataset(data_dir)
    names = dataset.split()["test"] or dataset.names[:1]
    todo = [dataset.images[n] for n in names
            if not swc_path(dataset.images[n], pred_dir).exists()]
    for stack in todo:  # a stack predicted but not traced when the demo was stopped
        for partial in run_outputs(stack, pred_dir):
            partial.unlink(missing_ok=True)
    if todo:
        model, _ = _model_and_inputs(model, [])
        _predict_and_trace(todo, pred_dir, _load_for_prediction(model, "auto"),
                           {"device": _device("auto")}, {})
    table = evaluate_folder(pred_dir, data_dir, names=names)
    Console(soft_wrap=True).print(markdown_table(table), markup=False, highlight=False)
    name = names[0]
    image = dataset.image(name)
    stack = dataset.images[name]
    predicted = read_volume(output_paths(stack, pred_dir)[1]).array > 0
    picture = out / f"{name}_trace.png"
    save_figure(mip_figure(image.array, image.spacing, read_trace(swc_path(stack, pred_dir)),
                           predicted, gold=dataset.tree(name), tree_name="dineuro trace",
                           mask_name="predicted mask",
                           title=f"{name}: dineuro's trace (yellow) and mask (magenta) against "
                                 "the gold SWC (cyan)"), picture)
    err.print(f"predictions and traces: {pred_dir}/  picture: {picture}")


@app.command()
def pretrain2d(
    images: Annotated[list[str] | None, typer.Argument(
        help="Image files or folders (PNG/JPEG/TIFF), 3D stacks or dataset folders (with "
             "--from-stacks), or the word 'photos' for scikit-image's photographs. Default: "
             "'photos' plus projections of a freshly made small synthetic set.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        "-o", "--out", help="The teacher file (.pth); OUT.train.pth, OUT.yaml and OUT.csv go "
                            "beside it.")] = Path("teacher.pth"),
    preset: Annotated[str, typer.Option(
        help="cpu (tiny ViT, small crops, ~20 min on 2 cores), paper (ViT-S/16, 224/96 crops, "
             "a GPU), or auto: paper when CUDA is available, else cpu.")] = "auto",
    arch: Annotated[str | None, typer.Option(
        help="vit_tiny, vit_small, vit_base, or a student preset name (tiny, small, base) "
             "to train a teacher that copies 1:1 into that student.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    from_stacks: Annotated[bool, typer.Option(
        help="Use 3D stacks through their MIPs along z, y, x and random thick-slab "
             "projections (dataset folders: train split only).")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of weights, order and crops.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE for any setting of dineuro.pretrain.PretrainConfig, e.g. "
                      "--set out_dim=8192 --set lr=1e-3; repeatable.")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted run from OUT.train.pth (same images and settings).")]
    = False,
) -> None:
    """Pre-train a 2D ViT teacher with DINO self-distillation (no labels needed).

    Writes the teacher in the official DINO checkpoint layout, usable as `--teacher OUT`
    everywhere a downloaded DINO file is. Progress shows the loss and the teacher's output
    entropy (log of the head width = collapse to uniform; near 0 = collapse to one output).
    """
    import tempfile

    from dineuro.config import parse_override
    from dineuro.pretrain import collect_images, pretrain, resolve_config

    if preset == "auto":
        preset = "paper" if _device("auto") == "cuda" else "cpu"
    config = resolve_config(preset, {"arch": arch, "steps": steps, "batch_size": batch_size,
                                     "seed": seed, "from_stacks": from_stacks or None},
                            [parse_override(item) for item in overrides or []])
    with tempfile.TemporaryDirectory(prefix="dineuro-pretrain-") as tmp:
        inputs = list(images or [])
        if not inputs:
            from dineuro.data.synth import PRESETS

            synthetic = Path(tmp) / "synthetic"
            _write_synthetic(synthetic, PRESETS["small"], "synthesising stacks to project")
            inputs = ["photos", str(synthetic)]
            config = resolve_config(preset, {**config.to_dict(), "from_stacks": True})
        recorded = [i if i != str(Path(tmp) / "synthetic") else "synth --preset small"
                    for i in inputs]
        with _progress() as progress:
            task = progress.add_task("reading images", total=None)
            pictures = collect_images(inputs, from_stacks=config.from_stacks, seed=config.seed,
                                      n_slabs=config.n_slabs, short_side=config.short_side,
                                      progress=lambda done, total: progress.update(
                                          task, completed=done, total=total))
    err.print(f"{len(pictures)} images; preset {preset}, arch {config.arch}, "
              f"{config.steps} steps of {config.batch_size}")
    bar = _progress(TextColumn("loss {task.fields[loss]:.4f}  entropy {task.fields[entropy]:.2f}"),
                    MofNCompleteColumn())
    with bar:
        task = bar.add_task("DINO", total=config.steps, loss=float("nan"),
                            entropy=float("nan"))
        paths = pretrain(config, pictures, out, inputs=recorded, resume=resume,
                         progress=lambda step, total, loss, entropy: bar.update(
                             task, completed=step, loss=loss, entropy=entropy))
    err.print(f"wrote {paths.backbone} (official DINO layout), {paths.state}, {paths.config} "
              f"and {paths.metrics}")


@weights_app.command("list")
def weights_list() -> None:
    """Show the known DINO checkpoints, their URLs and checksums, and where files are looked for.

    Files are looked for in $DINEURO_CACHE, else ~/.cache/dineuro/weights; any other copy can
    be given directly as --teacher PATH.
    """
    from dineuro.models.weights import cache_dir, list_weights

    out = Console(soft_wrap=True, highlight=False)
    out.print(f"cache folder: {cache_dir()} (set $DINEURO_CACHE to move it); a copy elsewhere "
              "is given as `dineuro train --teacher PATH`")
    for info in list_weights():
        status = "[green]present[/]" if info.present else "not downloaded"
        out.print(f"\n[bold]{info.name}[/]  {info.arch}  {status}\n  url:    {info.url}\n"
                  f"  sha256: {info.sha256 or 'not published; the size is checked when known'}")


@weights_app.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="A name from `dineuro weights list`.")],
    to: Annotated[Path | None, typer.Option(
        help="Folder to put the file in (default: the cache folder).")] = None,
) -> None:
    """Download a DINO checkpoint, check its checksum, and put it where dineuro looks for it."""
    from dineuro.models.weights import UnverifiedWeightsWarning, fetch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedWeightsWarning)
        with _progress(DownloadColumn()) as progress:
            task = progress.add_task(f"downloading {name}", total=None)
            path = fetch(name, to, progress=lambda done, total: progress.update(
                task, completed=done, total=total))
    for warning in caught:
        err.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False)
    err.print(f"weights ready: {path}")
