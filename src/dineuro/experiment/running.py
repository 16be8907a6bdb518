"""Running an experiment: every run trained, predicted and scored, reused when already done.

A complete run (its ``last.pt`` at the full step budget, its stored config the one asked for)
is not trained again; an interrupted run is resumed; a run folder left before its first
``last.pt`` is started afresh.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dineuro.errors import InputError
from dineuro.experiment.config import ExperimentConfig
from dineuro.experiment.figures import overlays_figure, val_curves_figure
from dineuro.experiment.predictions import predict_split
from dineuro.experiment.results import PREDICTIONS, RunResult
from dineuro.experiment.tables import (
    TransferRow,
    ablation_rows,
    write_ablation_tables,
    write_runs_table,
)
from dineuro.io.atomic import atomic_file
from dineuro.train.config import TrainConfig

#: Stored-config keys that may differ from ``base`` when a complete run is reused: they change
#: where or how fast a run ran, not what it learnt.
REUSABLE_CHANGES = ("device", "tensorboard", "threads")
CONFIG_NAME, CURVES_NAME, OVERLAYS_NAME = "experiment.yaml", "val_curves.png", "overlays.png"

Progress = Callable[[str, int, int], None]
TrainProgress = Callable[[str, int, int, float, "float | None"], None]


@dataclass(frozen=True)
class ExperimentResult:
    """What :func:`run_experiment` produced: runs, table rows and the files written.

    Attributes
    ----------
    out : Path
        The experiment folder.
    runs : tuple of RunResult
        Every run, in the order of :meth:`ExperimentConfig.jobs`.
    rows : tuple of TransferRow
        The rows of ablation.csv.
    csv, markdown, runs_csv : Path
        ``ablation.csv``, ``ablation.md`` and ``runs.csv``.
    val_curves, overlays : Path
        ``val_curves.png`` and ``overlays.png``.
    config : Path
        ``experiment.yaml``, the resolved experiment config.
    """

    out: Path
    runs: tuple[RunResult, ...]
    rows: tuple[TransferRow, ...]
    csv: Path
    markdown: Path
    runs_csv: Path
    val_curves: Path
    overlays: Path
    config: Path


def run_experiment(config: ExperimentConfig, progress: Progress | None = None,
                   train_progress: TrainProgress | None = None) -> ExperimentResult:
    """Train, predict and score every run of an experiment and write the ablation table.

    The runs are those of :meth:`ExperimentConfig.jobs` (a transfer, seed and, with named
    teachers, teacher); seeds are the outer loop, so a stopped experiment already holds every
    transfer of its first seeds. Idempotent: a complete run is reused (not retrained) when its
    stored config is the one this experiment asks for, an interrupted run with a ``last.pt`` is
    resumed, and predictions are reused while their ``prediction.json`` matches the checkpoint;
    a finished experiment re-run only re-scores and re-writes ``ablation.csv``,
    ``ablation.md``, ``runs.csv``, ``val_curves.png``, ``overlays.png`` and
    ``experiment.yaml`` (each atomically).

    Parameters
    ----------
    config : ExperimentConfig
        The experiment (:func:`load_experiment`).
    progress : callable, optional
        Called as ``progress(message, done, total)`` before each run (``done`` runs finished of
        ``total``) and once at the end (``done == total``).
    train_progress : callable, optional
        Passed through to each run's training as
        ``train_progress(run_name, step, steps, loss, val_dice)``.

    Returns
    -------
    ExperimentResult
        The runs, the table rows and the paths written.

    Raises
    ------
    InputError
        A bad dataset, an empty evaluation split, a teacher that cannot be found, or a run
        folder holding a run with other settings.
    """
    from dineuro.data.dataset import open_dataset
    from dineuro.report import save_figure

    out = Path(config.out)
    jobs = config.jobs()
    dataset = open_dataset(config.run_config(*jobs[0]).data)
    names = dataset.split()[config.split]
    if not names:
        raise InputError(f"has an empty {config.split!r} split in split.json; the experiment "
                         "scores that split.", dataset.root)
    teachers = dict.fromkeys(config.run_config(*job).teacher for job in jobs
                             if job[0] != "scratch")
    if teachers:
        from dineuro.models.weights import find_weights

        for teacher in teachers:
            find_weights(teacher)  # fail before hours of training, not after them
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / CONFIG_NAME) as tmp:
        tmp.write_text(config.to_yaml())

    runs = []
    for done, (transfer, seed, teacher) in enumerate(jobs):
        name = config.run_name(transfer, seed, teacher)
        if progress is not None:
            progress(f"run {name}", done, len(jobs))
        per_step = None
        if train_progress is not None:
            def per_step(step, steps, loss, val_dice, name=name):
                train_progress(name, step, steps, loss, val_dice)
        runs.append(_run(config, transfer, seed, teacher, dataset.root, names, per_step))
    rows = ablation_rows(runs, config)
    if progress is not None:
        progress("tables and figures", len(jobs), len(jobs))
    csv_path, md_path = write_ablation_tables(rows, out, config)
    runs_csv = write_runs_table(runs, out)
    curves = out / CURVES_NAME
    overlays = out / OVERLAYS_NAME
    save_figure(val_curves_figure(runs), curves)
    save_figure(overlays_figure(runs, dataset.root, names[0]), overlays)
    return ExperimentResult(out=out, runs=tuple(runs), rows=rows, csv=csv_path,
                            markdown=md_path, runs_csv=runs_csv, val_curves=curves,
                            overlays=overlays, config=out / CONFIG_NAME)


def _run(config: ExperimentConfig, transfer: str, seed: int, teacher: str | None, data: Path,
         names: list[str], progress) -> RunResult:
    """Train (or resume, or reuse) one run, predict ``names`` with it and score them."""
    from dineuro.evaluate import evaluate_folder
    from dineuro.train import train
    from dineuro.train.run_folder import BEST, CONFIG_FILE, LAST, METRICS_FILE

    train_config = config.run_config(transfer, seed, teacher)
    folder = Path(train_config.out)
    state = _run_state(folder, train_config)
    trained = state != "complete"
    if state == "partial":  # stopped before its first last.pt: nothing to resume from
        for name in (CONFIG_FILE, METRICS_FILE):
            (folder / name).unlink(missing_ok=True)
    if trained:
        train(train_config, progress=progress, resume=state == "resumable")
    checkpoint = folder / BEST if (folder / BEST).exists() else folder / LAST
    predictions = predict_split(checkpoint, data, names, config.predict, folder / PREDICTIONS,
                                train_config.device, train_config.threads)
    table = evaluate_folder(predictions, data, names=names)
    rows = _read_metrics(folder / METRICS_FILE)
    curve = tuple((int(r["step"]), float(r["val_dice"])) for r in rows if r["val_dice"])
    return RunResult(transfer=transfer, seed=seed, teacher=teacher, folder=folder,
                     checkpoint=checkpoint, table=table,
                     train_seconds=float(rows[-1]["seconds"]) if rows else math.nan,
                     steps=int(rows[-1]["step"]) if rows else 0, trained=trained, curve=curve)


def _run_state(folder: Path, wanted: TrainConfig) -> str:
    """"new", "partial" (files but no last.pt), "resumable" or "complete".

    A complete run is reused only if its stored config is ``wanted`` up to
    :data:`REUSABLE_CHANGES`; otherwise it is handed to training's resume, which refuses
    settings that changed what the run learns (and continues one whose ``steps`` grew).
    """
    from dineuro.train import load_config
    from dineuro.train.run_folder import CONFIG_FILE, LAST, METRICS_FILE

    if not (folder / LAST).exists():
        return "partial" if any((folder / n).exists() for n in (CONFIG_FILE, METRICS_FILE)) \
            else "new"
    rows = _read_metrics(folder / METRICS_FILE)
    if not rows or int(rows[-1]["step"]) < wanted.steps or not (folder / CONFIG_FILE).exists():
        return "resumable"
    stored = load_config(folder / CONFIG_FILE).to_dict()
    current = wanted.to_dict()
    same = all(stored.get(k) == current.get(k) for k in set(stored) | set(current)
               if k not in REUSABLE_CHANGES)
    return "complete" if same and int(rows[-1]["step"]) == wanted.steps else "resumable"


def _read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv``; none when it does not exist yet."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
