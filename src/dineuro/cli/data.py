"""Commands that make and look at stacks: ``convert``, ``synth``, ``show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dineuro.cli._common import STACK_FORMATS, Channel, app, err, parse_triple, progress_bar
from dineuro.io.atomic import check_writable, refuse_existing


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help=f"Input stack: {STACK_FORMATS}.")],
    dst: Annotated[Path, typer.Argument(
        help="Output stack: .tif, .v3draw, .nii/.nii.gz or .ome.zarr (a folder, what "
             "run --workers reads); must not exist.")],
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
    from dineuro.data.synth import preset_config

    changes = {"difficulty": difficulty, "seed": seed, "dtype": dtype}
    if n is not None:
        changes["n_stacks"] = n
    if shape is not None:
        changes["shape"] = parse_triple(shape, "--shape", int)
    if spacing is not None:
        changes["spacing"] = parse_triple(spacing, "--spacing")
    config = preset_config(preset, **changes)
    refuse_existing(out)
    check_writable(out.parent)
    write_synthetic(out, config, "synthesising stacks")
    written = [f"{folder.name}/" for folder in sorted(out.iterdir()) if folder.is_dir()]
    err.print(f"wrote {config.n_stacks} stacks to {out}/ ({', '.join(written)}, split.json, "
              "meta.json)")


def write_synthetic(out: Path, config, description: str) -> None:
    """Write a synthetic dataset with a progress bar of its stacks."""
    from dineuro.data.synth import write_synthetic_dataset

    with progress_bar() as progress:
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
    from dineuro.report import check_figure_path, save_figure, stack_figure

    check_figure_path(out)
    refuse_existing(out)
    check_writable(out.parent)
    save_figure(stack_figure(stack, swc, mask, channel), out)
    err.print(f"wrote {out}")
