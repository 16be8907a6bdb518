"""Commands that make networks: ``train``, ``adapt``, ``experiment``, ``pretrain2d``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TextColumn

from dineuro.cli._common import (
    STACK_FORMATS,
    Device,
    ModelOption,
    app,
    err,
    print_warnings,
    progress_bar,
)
from dineuro.io.atomic import check_writable


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
    return progress_bar(TextColumn("loss {task.fields[loss]:.4f}  val Dice {task.fields[dice]}"),
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
    print_warnings(caught)
    best = "-" if result.best_val_dice is None else f"{result.best_val_dice:.4f}"
    err.print(f"trained {result.steps} steps in {result.seconds:.0f} s; best val Dice {best}; "
              f"checkpoints in {result.out}")


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
    background_view: Annotated[float | None, typer.Option(
        min=0.0, metavar="SIGMA",
        help="Label your stacks through a second view, each less its blur of SIGMA voxels, as "
             "dineuro predict --background-view does (default 0: off). On a hazy synthetic "
             "microscope this traced no better than adapting without it and predicting the "
             "result with --background-view, which is the first thing to try.")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted run from OUT.adapt/state.pt, exactly.")] = False,
    device: Device = "auto",
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads for the network (default: PyTorch's).")] = None,
) -> None:
    """Adapt a network to your own microscope from unlabelled stacks (self-training).

    Each round labels your stacks with the network and the tracer: foreground where the core
    of a traced tree's tube and a high probability agree, background where the probability is
    low, far from any trace, and the image no brighter than its surroundings, the rest
    ignored. Then the network is fine-tuned on those labels mixed with synthetic stacks with
    gold labels, and keeps half of the weight change (--set blend=...), so that it does not
    forget what it knew. Some of your stacks are held back: after every round adapt reports
    the network's agreement with their first labels, and its traced F1 and Dice on held-back
    synthetic stacks, and warns when either fell by more than a margin. Use the result with
    `dineuro run --model OUT STACK`.
    """
    from dineuro.adapt import AdaptConfig
    from dineuro.adapt import adapt as run_adapt
    from dineuro.config import parse_override
    from dineuro.predict import find_stacks

    values = dict(parse_override(item) for item in overrides or [])
    given = {"stacks": [str(p) for p in find_stacks(inputs)], "out": str(out),
             "model": model or "default", "steps": steps, "rounds": rounds,
             "synthetic": None if synthetic is None else str(synthetic), "device": device,
             "threads": threads, "background_view": background_view}
    values |= {key: value for key, value in given.items() if value is not None}
    config = AdaptConfig.from_dict(values)
    check_writable(out.parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress_bar(TextColumn("{task.fields[loss]}"), MofNCompleteColumn()) as progress:
            result = run_adapt(config, progress=_AdaptBars(progress), resume=resume)
    print_warnings(caught)
    for checked in [result.before, *result.rounds]:
        when = "before" if "round" not in checked else f"round {checked['round']}"
        shown = {key: "-" if checked[key] is None else f"{checked[key]:.3f}"
                 for key in ("synthetic_f1", "synthetic_dice", "agreement")}
        err.print(f"{when}: held-back synthetic stacks: traced F1 {shown['synthetic_f1']}, Dice "
                  f"{shown['synthetic_dice']}; agreement with held-back stacks' first labels "
                  f"{shown['agreement']}", highlight=False)
    err.print(f"wrote {result.out} in {result.seconds:.0f} s; labels, checks and state in "
              f"{result.work}/")
    if config.background_view:
        err.print(f"it learnt from labels made through the background view: use it with "
                  f"dineuro run --model {result.out} --background-view "
                  f"{config.background_view:g} STACK", highlight=False)


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
    with progress_bar() as progress:
        task = progress.add_task("ablation runs", total=None)

        def report(message: str, done: int, total: int) -> None:
            progress.update(task, description=message, completed=done, total=total)

        result = run_experiment(resolved, progress=report)
    Console(soft_wrap=True).print(result.markdown.read_text(), markup=False, highlight=False)
    err.print(f"wrote {result.markdown}, {result.csv}, {result.runs_csv}, {result.val_curves}, "
              f"{result.overlays}")


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
    from dineuro.pretrain import (
        collect_images,
        prepare_inputs,
        pretrain,
        resolve_config,
        resolve_preset,
    )

    preset = resolve_preset(preset)
    settings = {"arch": arch, "steps": steps, "batch_size": batch_size, "seed": seed,
                "from_stacks": from_stacks or None}
    pairs = [parse_override(item) for item in overrides or []]
    resolve_config(preset, settings, pairs)  # bad settings are refused before any work
    with tempfile.TemporaryDirectory(prefix="dineuro-pretrain-") as tmp:
        with progress_bar() as progress:
            task = progress.add_task("preparing inputs", total=None)
            inputs = prepare_inputs(images, tmp, on_stack=lambda _: progress.advance(task))
        config = resolve_config(preset, {**settings, "from_stacks": from_stacks
                                         or inputs.from_stacks or None}, pairs)
        with progress_bar() as progress:
            task = progress.add_task("reading images", total=None)
            pictures = collect_images(inputs.paths, from_stacks=config.from_stacks,
                                      seed=config.seed, n_slabs=config.n_slabs,
                                      short_side=config.short_side,
                                      progress=lambda done, total: progress.update(
                                          task, completed=done, total=total))
    err.print(f"{len(pictures)} images; preset {preset}, arch {config.arch}, "
              f"{config.steps} steps of {config.batch_size}")
    bar = progress_bar(
        TextColumn("loss {task.fields[loss]:.4f}  entropy {task.fields[entropy]:.2f}"),
        MofNCompleteColumn())
    with bar:
        task = bar.add_task("DINO", total=config.steps, loss=float("nan"),
                            entropy=float("nan"))
        paths = pretrain(config, pictures, out, inputs=inputs.recorded, resume=resume,
                         progress=lambda step, total, loss, entropy: bar.update(
                             task, completed=step, loss=loss, entropy=entropy))
    err.print(f"wrote {paths.backbone} (official DINO layout), {paths.state}, {paths.config} "
              f"and {paths.metrics}")
