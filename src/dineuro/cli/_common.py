"""What every command shares: the application, the error console, progress bars, the options
that several commands take, and argument parsing.

Library code never prints; the command modules do, through :data:`err` (progress, messages) or
stdout (tables and JSON meant for pipes). Bad input (:class:`dineuro.errors.InputError`) becomes
one sentence on stderr and exit code 2, a failure of the machine (an ``OSError``: a full disk, a
read-only folder) one sentence and exit code 1, both without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dineuro.errors import InputError, environment_failure

app = typer.Typer(  # its help text is the docstring of the callback below
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs re-flow to the terminal width
)
err = Console(stderr=True, soft_wrap=True)  # a message is one line, also in a log

STACK_FORMATS = (".tif/.tiff (also OME-TIFF and compressed TIFF), .lsm, an OME-Zarr folder, "
                 "a folder of 2D TIFF slices, .v3draw, .nii/.nii.gz; with the formats extra "
                 ".ims, BigDataViewer .h5, .czi, .nd2, .lif, .v3dpbd")
Channel = Annotated[int | None, typer.Option(
    help="Channel to take from a multi-channel stack (0-based).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="A checkpoint from `dineuro train` (best.pt); default: the model "
                          "that ships with dineuro, trained on synthetic stacks only (its card: "
                          "`dineuro model-card`).", show_default=False)]
#: File endings of checkpoints, to read the older `run MODEL INPUT...` form.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _show_version(value: bool) -> None:
    if value:
        from dineuro import __version__

        typer.echo(f"dineuro {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print dineuro's version and exit.")] = False) -> None:
    """dineuro: segment 3D light-microscopy stacks of single neurons and trace them into SWC."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except InputError as exc:
        fail(str(exc), 2)
    except OSError as exc:  # the machine, not the input: a full disk, a read-only folder
        fail(environment_failure(exc), 1)


def fail(sentence: str, code: int) -> None:
    """Print ``error: SENTENCE`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(sentence)}", highlight=False)
    sys.exit(code)


def progress_bar(*columns) -> Progress:
    """A rich progress display on stderr: description, bar, the given columns (default: done
    of total), elapsed and remaining time."""
    columns = columns or (MofNCompleteColumn(),)
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err)


def parse_triple(text: str | None, what: str, kind=float):
    """``"64,256,256"`` -> (64, 256, 256); None stays None; anything else is refused.

    Examples
    --------
    >>> parse_triple("64,256,256", "--shape", int)
    (64, 256, 256)
    """
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"{what} should be three comma-separated numbers z,y,x, not {text!r}.")
    return values


def print_warnings(caught, prefix: str = "") -> None:
    """Show the user warnings (``UserWarning``) a library call emitted, one line each."""
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            err.print(f"[yellow]warning:[/] {escape(prefix + str(warning.message))}",
                      highlight=False)


def model_and_inputs(model: str | None, inputs: list[Path]) -> tuple[str, list[Path]]:
    """The model (the packaged default unless given) and the stacks, accepting the older form
    with the checkpoint as the first positional argument.

    Examples
    --------
    >>> model_and_inputs(None, [Path("best.pt"), Path("a.tif")])
    ('best.pt', [PosixPath('a.tif')])
    >>> model_and_inputs(None, [Path("a.tif")])
    ('default', [PosixPath('a.tif')])
    """
    if model is None and len(inputs) > 1 and inputs[0].suffix.lower() in CHECKPOINT_SUFFIXES:
        return str(inputs[0]), inputs[1:]
    return model or "default", inputs
