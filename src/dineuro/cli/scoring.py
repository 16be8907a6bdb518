"""Commands that score: ``evaluate`` (maps and traces against gold), ``compare`` (two SWCs),
``model-card`` (how a model was made and what it scored)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dineuro.cli._common import ModelOption, app, err, progress_bar
from dineuro.defaults import DEFAULT_SWC_THRESHOLD
from dineuro.errors import InputError
from dineuro.io.atomic import check_writable


@app.command("model-card")
def model_card(model: ModelOption = None) -> None:
    """Show how a model was made and what it scored: the card of the packaged default model
    (or of --model); a checkpoint without a card shows its training steps and val Dice."""
    import json

    from dineuro.checkpoint import model_card as card_of

    path, card = card_of(model)
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
    from dineuro.evaluate import evaluate_folder, markdown_table, names_in_split, write_tables

    check_writable(out if out is not None else pred_dir)
    names = names_in_split(gold, split)
    with progress_bar() as progress:
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
