"""``dineuro weights``: the DINO teacher checkpoints dineuro knows, and downloading them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import DownloadColumn

from dineuro.cli._common import app, err, progress_bar

weights = typer.Typer(help="DINO teacher checkpoints: list the known ones, download them.",
                      no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(weights, name="weights")


@weights.command("list")
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


@weights.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="A name from `dineuro weights list`.")],
    to: Annotated[Path | None, typer.Option(
        help="Folder to put the file in (default: the cache folder).")] = None,
) -> None:
    """Download a DINO checkpoint, check its checksum, and put it where dineuro looks for it."""
    from dineuro.models.weights import UnverifiedWeightsWarning, fetch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedWeightsWarning)
        with progress_bar(DownloadColumn()) as progress:
            task = progress.add_task(f"downloading {name}", total=None)
            path = fetch(name, to, progress=lambda done, total: progress.update(
                task, completed=done, total=total))
    for warning in caught:
        err.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False)
    err.print(f"weights ready: {path}")
