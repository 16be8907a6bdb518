"""The main job on an embedded default: a few realistic synthetic stacks, the packaged default
model, predict + trace, scores against the gold, and a picture.

Every stage writes under one folder and is skipped when its output is already there, so the demo
can be re-run (or resumed after an interruption) cheaply. Nothing is downloaded or trained: the
default model ships with dineuro (``dineuro model-card`` says how it was trained), and the stacks
come from the ``realistic`` synthetic preset with a seed the model was not trained on.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from dineuro.data.dataset import Dataset
from dineuro.data.synth import PRESETS, SynthConfig
from dineuro.outputs import output_paths, run_outputs, swc_path

#: The demo's stacks: small enough for a minute on 2 CPU cores, all in the test split.
DEMO_STACKS, DEMO_SHAPE, DEMO_SEED = 3, (48, 128, 128), 1


def demo_synth_config() -> SynthConfig:
    """Three realistic stacks of 48x128x128, seed 1 (the default model trained on seed 0)."""
    return replace(PRESETS["realistic"], n_stacks=DEMO_STACKS, shape=DEMO_SHAPE, seed=DEMO_SEED,
                   split=(0.0, 0.0, 1.0))


def demo_folders(out: str | os.PathLike) -> tuple[Path, Path]:
    """Where the demo keeps its synthetic dataset and its predictions: OUT/data,
    OUT/predictions."""
    return Path(out) / "data", Path(out) / "predictions"


def stacks_to_run(dataset: Dataset, pred_dir: Path) -> tuple[list[str], list[Path]]:
    """The names the demo scores (the test split), and the stacks among them not yet traced.

    A stack predicted but not traced when the demo was stopped has its partial outputs removed
    here, so that it runs again from the start.
    """
    names = dataset.split()["test"] or dataset.names[:1]
    todo = [dataset.images[n] for n in names
            if not swc_path(dataset.images[n], pred_dir).exists()]
    for stack in todo:
        for partial in run_outputs(stack, pred_dir):
            partial.unlink(missing_ok=True)
    return names, todo


def demo_picture(dataset: Dataset, name: str, pred_dir: Path, out: str | os.PathLike) -> Path:
    """Draw the trace and mask of stack ``name`` over its projections, with its gold SWC:
    OUT/NAME_trace.png."""
    from dineuro.evaluate import read_trace
    from dineuro.io.volume import read_volume
    from dineuro.report import mip_figure, save_figure

    image = dataset.image(name)
    stack = dataset.images[name]
    predicted = read_volume(output_paths(stack, pred_dir)[1]).array > 0
    picture = Path(out) / f"{name}_trace.png"
    save_figure(mip_figure(image.array, image.spacing, read_trace(swc_path(stack, pred_dir)),
                           predicted, gold=dataset.tree(name), tree_name="dineuro trace",
                           mask_name="predicted mask",
                           title=f"{name}: dineuro's trace (yellow) and mask (magenta) against "
                                 "the gold SWC (cyan)"), picture)
    return picture
