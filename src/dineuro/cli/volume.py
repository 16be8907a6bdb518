"""``dineuro run --workers N`` / ``--scheduler ADDRESS``: a whole volume on a dask cluster."""

from __future__ import annotations

from pathlib import Path

from dineuro.cli._common import err, progress_bar
from dineuro.errors import InputError


def run_on_cluster(inputs: list[Path], out: Path, model: str, *, block: tuple[int, ...],
                   workers: int | None, scheduler: str | None, memory_limit: str,
                   threads: int, method: str, **options) -> None:
    """Check what only a single-volume run allows, then :func:`dineuro.scale.run_volume` with
    a progress bar of blocks and the dashboard's address."""
    from dineuro.scale import run_volume

    if len(inputs) != 1:
        raise InputError(f"a run with --workers or --scheduler takes one volume, got "
                         f"{len(inputs)} inputs.")
    if method != "thinning":
        raise InputError("a run with --workers or --scheduler finds centre lines by thinning, "
                         "block by block; --method geodesic needs each neuron whole.")
    with progress_bar() as progress:
        task = progress.add_task(f"blocks of {inputs[0].name}", total=None)
        run = run_volume(inputs[0], out, model, block=block, workers=workers,
                         scheduler=scheduler, memory_limit=memory_limit,
                         threads=threads or None,
                         progress=lambda done, total: progress.update(task, completed=done,
                                                                      total=total),
                         notify=lambda line: progress.console.print(line, highlight=False),
                         **options)
    facts = run.facts
    cable = facts["cable_length"]
    err.print(f"{inputs[0].name}: {facts['neurons']} neuron(s), {cable['total']:.1f} "
              f"{cable['unit']}s of cable, {facts['blocks']['total']} blocks "
              f"({facts['blocks']['run_now']} run now), network on "
              f"{facts['windows']['computed']} of {facts['windows']['in_grid']} windows, "
              f"{facts['seconds']['total']:.1f} s", highlight=False)
    err.print(f"wrote {run.prob.name}, {run.mask.name}, {run.swc.name}, {run.neurons.name}/ and "
              f"{run.summary.name} to {out}/", highlight=False)
