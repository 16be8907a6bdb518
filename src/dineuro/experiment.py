"""The transfer ablation: every transfer strategy trained, predicted and scored alike.

One experiment trains a run per (transfer, seed) from one shared training config ``base``, so
the runs differ in ``transfer`` and ``seed`` only: same dataset, same split, same step budget,
same schedule, same teacher file (``scratch`` ignores it). ``teacher`` may also name several
teachers (``{photos: a.pth, mips: b.pth}``) to compare them: every transfer but ``scratch`` is
then trained once per (teacher, seed), ``scratch`` once per seed. Each run's best checkpoint
predicts the evaluation split, :func:`~dineuro.evaluate.evaluate_folder` scores it (Dice,
HD95), and one row per transfer (and teacher) summarises the seeds. The experiment folder
``OUT``::

    OUT/
      experiment.yaml          the resolved experiment config (base inlined)
      ablation.csv             a row per transfer (and teacher): mean/std over seeds, seconds, ...
      ablation.md              a row per transfer, Dice and HD95 columns per teacher, with notes
      runs.csv                 a row per run (transfer, teacher, seed): its own Dice, HD95, ...,
                               for statistics of one's own (paired tests, other experiments)
      val_curves.png           validation Dice against step, one line per run
      overlays.png             x-y MIP of the first evaluation stack, a panel per transfer
                               (and teacher)
      runs/TRANSFER-seedS/     a training run folder (config.yaml, metrics.csv, best.pt, ...);
                               TRANSFER-TEACHER-seedS with named teachers (scratch-seedS still)
        predictions/           NAME_prob.tif, NAME_mask.tif per stack; prediction.json

Re-running is safe and cheap: a complete run (its ``last.pt`` at the full step budget) is not
trained again; an interrupted run (a ``last.pt`` before the budget) is resumed; predictions are
kept while ``prediction.json`` still matches the checkpoint that made them. A finished
experiment re-run therefore only re-scores and re-writes the tables and figures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dineuro.config import config_from_dict, parse_override, read_yaml_mapping, set_dotted
from dineuro.errors import InputError
from dineuro.evaluate import EvaluationTable
from dineuro.evaluate.tables import MeanStd, mean_std, plus_minus, write_csv
from dineuro.io.atomic import atomic_dir, atomic_file
from dineuro.train.config import TrainConfig

#: The five strategies in the order of the paper's ablation table.
TRANSFERS = ("scratch", "average", "center", "tubular", "deformable")
EVAL_SPLITS = ("train", "val", "test")
#: Keys of ``base`` that the experiment sets per run (``out``, ``transfer``, ``seed``) or from
#: its own ``teacher``; a value given in ``base`` is replaced.
PER_RUN_KEYS = ("out", "transfer", "seed", "teacher")
#: Stored-config keys that may differ from ``base`` when a complete run is reused: they change
#: where or how fast a run ran, not what it learnt.
REUSABLE_CHANGES = ("device", "tensorboard", "threads")
PREDICT_DEFAULTS = {"overlap": 0.5, "flips": False, "batch_size": 4}

RUNS, PREDICTIONS, PREDICTION_RECORD = "runs", "predictions", "prediction.json"
CONFIG_NAME, CSV_NAME, MARKDOWN_NAME = "experiment.yaml", "ablation.csv", "ablation.md"
RUNS_CSV_NAME = "runs.csv"
#: runs.csv: one row per run, the numbers ablation.csv summarises over seeds.
RUN_CSV_COLUMNS = ("transfer", "teacher", "seed", "dice", "hd95", "empty_predictions",
                   "hd95_infinite", "stacks", "train_seconds", "steps", "run")
CURVES_NAME, OVERLAYS_NAME = "val_curves.png", "overlays.png"
CSV_COLUMNS = ("transfer", "seeds", "dice_mean", "dice_std", "hd95_mean", "hd95_std",
               "dice_vs_scratch_mean", "dice_vs_scratch_std", "seeds_above_scratch",
               "train_seconds", "steps", "empty_predictions", "hd95_infinite", "stacks")
#: ablation.csv with named teachers: a row per (transfer, teacher), scratch's teacher empty.
TEACHER_CSV_COLUMNS = (CSV_COLUMNS[0], "teacher", *CSV_COLUMNS[1:])
#: A teacher's name is part of run folder names and table headers.
TEACHER_NAME = re.compile(r"[A-Za-z0-9_]+")
#: Line colour per transfer in the figures (matplotlib's tab10, by position in TRANSFERS).
TRANSFER_COLORS = dict(zip(TRANSFERS, ("tab:gray", "tab:blue", "tab:green", "tab:orange",
                                       "tab:red"), strict=True))
#: Curve styles: by seed with one teacher, by teacher with named teachers.
LINE_STYLES = ("-", "--", ":", "-.")
GOLD_COLOR = "#ffd400"
#: The panel of overlays.png that shows the gold alone.
GOLD_PANEL = "gold"

Progress = Callable[[str, int, int], None]
TrainProgress = Callable[[str, int, int, float, "float | None"], None]


# -- the config -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of an ablation experiment.

    Attributes:
        base: the shared training config, as a dict of :class:`~dineuro.train.TrainConfig`
            keys (``data`` required); ``out``, ``transfer``, ``seed`` and ``teacher`` are set
            per run (:data:`PER_RUN_KEYS`). In YAML it may also be the path of a training
            config file (relative to the working directory), which is read and inlined. Stored
            resolved: every key, with defaults filled in, per-run keys removed.
        out: the experiment folder.
        transfers: strategies to compare, each once (default all five, :data:`TRANSFERS`).
        seeds: master seeds; every transfer is trained once per seed (default ``[0]``).
        teacher: DINO checkpoint file or registry name (``dino_vits16``); required unless every
            transfer is ``scratch``. Default: the teacher of ``base``. Or a mapping of short
            names (letters, digits, ``_``) to such teachers, to compare them: every transfer but
            ``scratch`` is then trained once per teacher and seed.
        predict: sliding-window options of the evaluation predictions: ``overlap`` (0.5),
            ``flips`` (false), ``batch_size`` (4).
        split: the dataset split scored ("test"; "val" or "train" for a quick look).
    """

    base: dict[str, Any]
    out: str
    transfers: list[str] = field(default_factory=lambda: list(TRANSFERS))
    seeds: list[int] = field(default_factory=lambda: [0])
    teacher: str | dict[str, str] | None = None
    predict: dict[str, Any] = field(default_factory=lambda: dict(PREDICT_DEFAULTS))
    split: str = "test"

    def __post_init__(self):
        if not self.out:
            raise InputError("experiment key 'out' should name the experiment folder.")
        if not isinstance(self.transfers, list) or not self.transfers or any(
                t not in TRANSFERS for t in self.transfers):
            raise InputError(f"experiment key 'transfers' should be a non-empty list of "
                             f"{list(TRANSFERS)}, got {self.transfers!r}.")
        if len(set(self.transfers)) != len(self.transfers):
            raise InputError(f"experiment key 'transfers' lists a strategy twice: "
                             f"{self.transfers}.")
        if not isinstance(self.seeds, list) or not self.seeds or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise InputError(f"experiment key 'seeds' should be a non-empty list of integers "
                             f">= 0, got {self.seeds!r}.")
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"experiment key 'seeds' lists a seed twice: {self.seeds}.")
        if self.split not in EVAL_SPLITS:
            raise InputError(f"experiment key 'split' should be one of {list(EVAL_SPLITS)}, got "
                             f"{self.split!r}.")
        object.__setattr__(self, "teacher", _checked_teacher(self.teacher))
        object.__setattr__(self, "predict", _checked_predict(self.predict))
        if not isinstance(self.base, Mapping):
            raise InputError(f"experiment key 'base' should be a mapping of training config "
                             f"keys, got {self.base!r}.")
        if self.teacher is None and self.base.get("teacher") is not None:
            object.__setattr__(self, "teacher", str(self.base["teacher"]))
        # Checked (keys, types, ranges) and stored resolved, so the config is self-describing.
        resolved = self.run_config(*self.jobs()[0]).to_dict()
        object.__setattr__(self, "base", {k: v for k, v in resolved.items()
                                          if k not in PER_RUN_KEYS})
        if self.teacher is None and any(t != "scratch" for t in self.transfers):
            from dineuro.models.presets import PRESETS

            size = self.base.get("size", "small")
            name = getattr(PRESETS.get(size), "teacher", None) or "dino_vits16"
            needing = [t for t in self.transfers if t != "scratch"]
            raise InputError(f"transfers {needing} need a DINO teacher: set 'teacher' to a "
                             f"checkpoint file or a registry name (get the weights with "
                             f"`dineuro weights fetch {name}`), or compare 'scratch' only.")

    def teacher_names(self, transfer: str) -> tuple[str | None, ...]:
        """Names of the teachers ``transfer`` is trained with, one run each per seed: ``(None,)``
        for a single unnamed teacher, and for ``scratch``, which ignores the teacher."""
        if transfer == "scratch" or not isinstance(self.teacher, dict):
            return (None,)
        return tuple(self.teacher)

    def jobs(self) -> list[tuple[str, int, str | None]]:
        """(transfer, seed, teacher name) of every run, seeds outermost so that a stopped
        experiment already holds every transfer of its first seeds."""
        return [(transfer, seed, teacher) for seed in self.seeds for transfer in self.transfers
                for teacher in self.teacher_names(transfer)]

    def run_name(self, transfer: str, seed: int, teacher: str | None = None) -> str:
        return "-".join([transfer, *([teacher] if teacher else []), f"seed{seed}"])

    def run_folder(self, transfer: str, seed: int, teacher: str | None = None) -> Path:
        return Path(self.out) / RUNS / self.run_name(transfer, seed, teacher)

    def run_config(self, transfer: str, seed: int, teacher: str | None = None) -> TrainConfig:
        """The training config of one run: ``base`` with out, transfer, seed and teacher set;
        ``teacher`` names one of :meth:`teacher_names` of ``transfer``."""
        if teacher not in self.teacher_names(transfer):
            raise ValueError(f"{transfer} runs have teachers {self.teacher_names(transfer)}, "
                             f"not {teacher!r}.")
        values = {**self.base, "out": str(self.run_folder(transfer, seed, teacher)),
                  "transfer": transfer, "seed": seed, "teacher": self._teacher_of(teacher)}
        try:
            return TrainConfig.from_dict(values)
        except InputError as exc:
            raise InputError(f"experiment key 'base': {exc}") from exc

    def _teacher_of(self, name: str | None) -> str | None:
        """The file or registry name a run stores as its teacher; with named teachers scratch
        stores none, as it was not trained with any of them."""
        if isinstance(self.teacher, dict):
            return None if name is None else self.teacher[name]
        return self.teacher

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with ``base`` inlined; :meth:`from_dict` inverts it."""
        teacher = dict(self.teacher) if isinstance(self.teacher, dict) else self.teacher
        return {"base": dict(self.base),
                "out": self.out, "transfers": list(self.transfers), "seeds": list(self.seeds),
                "teacher": teacher, "predict": dict(self.predict), "split": self.split}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build and check an experiment config from a dict (``base`` a dict or a file path).

        Raises:
            InputError: unknown keys (all named), a missing ``base``/``out``, bad values, or a
                teacher missing for a transfer that needs one.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"an experiment config should be a mapping of keys to values, got "
                             f"{type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in data if k not in names]
        if isinstance(data.get("predict"), Mapping):
            unknown += [f"predict.{k}" for k in data["predict"] if k not in PREDICT_DEFAULTS]
        if unknown:
            raise InputError(f"unknown experiment keys {unknown}; the keys are {names} (predict: "
                             f"{list(PREDICT_DEFAULTS)}).")
        missing = [name for name in ("base", "out") if data.get(name) is None]
        if missing:
            raise InputError(f"the experiment config should set {missing} (the shared training "
                             "config and the experiment folder).")
        values = dict(data)
        base = _read_base(values["base"])
        values["base"] = base
        values["out"] = str(values["out"])
        for key in ("transfers", "seeds", "split"):
            if key in values and values[key] is None:
                del values[key]
        if isinstance(values.get("transfers"), str):
            values["transfers"] = [values["transfers"]]
        if isinstance(values.get("seeds"), int) and not isinstance(values["seeds"], bool):
            values["seeds"] = [values["seeds"]]
        return cls(**values)


def load_experiment(path: str | os.PathLike | None, overrides: Sequence[str] = ()
                    ) -> ExperimentConfig:
    """Read a YAML experiment config and apply ``KEY=VALUE`` overrides.

    Strict like :func:`dineuro.train.load_config`: unknown keys are named, values are checked.
    Overrides may be dotted (``base.steps=20``, ``predict.overlap=0.25``) with YAML values
    (``seeds=[0, 1, 2]``). A ``base`` given as a file path is read first, so ``base.KEY``
    overrides apply on top of that file.

    Raises:
        InputError: unreadable file or YAML, a malformed override, unknown keys, bad values.

    Examples::

        >>> config = load_experiment(None, ["base={data: ds, size: tiny}", "out=ablation",
        ...                                 "transfers=[scratch]", "seeds=[0, 1]"])
        >>> config.run_config("scratch", 1).out
        'ablation/runs/scratch-seed1'
    """
    data = read_yaml_mapping(Path(path), "experiment config keys") if path is not None else {}
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("base.") and not isinstance(data.get("base"), Mapping):
            data["base"] = _read_base(data.get("base"))
        set_dotted(data, key, value)
    return config_from_dict(ExperimentConfig, data, path, overrides)


def _read_base(base) -> dict:
    if base is None:
        return {}
    if isinstance(base, Mapping):
        return dict(base)
    if isinstance(base, (str, os.PathLike)):
        return read_yaml_mapping(Path(base), "training config keys")
    raise InputError(f"experiment key 'base' should be a training config file or a mapping of "
                     f"its keys, got {base!r}.")


def _checked_teacher(teacher) -> str | dict[str, str] | None:
    if teacher is None or isinstance(teacher, str):
        return teacher
    if not isinstance(teacher, Mapping) or not teacher:
        raise InputError(f"experiment key 'teacher' should be a file path, a registry name or a "
                         f"mapping of short names to them, got {teacher!r}.")
    for name, value in teacher.items():
        if not isinstance(name, str) or not TEACHER_NAME.fullmatch(name):
            raise InputError(f"experiment key 'teacher' names a teacher {name!r}: a teacher name "
                             f"should be letters, digits and _ only, as it names run folders.")
        if not isinstance(value, str) or not value:
            raise InputError(f"experiment key 'teacher.{name}' should be a file path or a "
                             f"registry name, got {value!r}.")
    return dict(teacher)


def _checked_predict(predict) -> dict[str, Any]:
    if predict is None:
        predict = {}
    if not isinstance(predict, Mapping):
        raise InputError(f"experiment key 'predict' should be a mapping, got {predict!r}.")
    unknown = [f"predict.{k}" for k in predict if k not in PREDICT_DEFAULTS]
    if unknown:
        raise InputError(f"unknown experiment keys {unknown}; predict takes "
                         f"{list(PREDICT_DEFAULTS)}.")
    values = {**PREDICT_DEFAULTS, **predict}
    overlap = values["overlap"]
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise InputError(f"experiment key 'predict.overlap' should be in [0, 1), got {overlap!r}.")
    if not isinstance(values["flips"], bool):
        raise InputError(f"experiment key 'predict.flips' should be true/false, got "
                         f"{values['flips']!r}.")
    size = values["batch_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"experiment key 'predict.batch_size' should be an integer >= 1, got "
                         f"{size!r}.")
    return {"overlap": float(overlap), "flips": values["flips"], "batch_size": size}


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    """One trained, predicted and scored run.

    Attributes:
        transfer, seed: what distinguishes the run.
        teacher: the teacher's name when the experiment names teachers (None for scratch and
            for a single teacher).
        folder: its run folder; ``folder / "predictions"`` holds the evaluation predictions.
        checkpoint: the checkpoint that predicted (``best.pt``; ``last.pt`` without a val split).
        table: :func:`~dineuro.evaluate.evaluate_folder` of the predictions.
        train_seconds: wall-clock training time from ``metrics.csv`` (across resumes).
        steps: optimizer steps done.
        trained: whether this call trained (or resumed) it; False when it was complete.
        curve: (step, val_dice) of every validation.
    """

    transfer: str
    seed: int
    teacher: str | None
    folder: Path
    checkpoint: Path
    table: EvaluationTable
    train_seconds: float
    steps: int
    trained: bool
    curve: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class TransferRow:
    """One row of ablation.csv: a transfer (with one of the named teachers, if the experiment
    names them; ``teacher`` None otherwise and for scratch) summarised over its seeds.

    Dice and HD95 are the mean and population std (ddof=0) over seeds of each run's mean over
    the evaluation stacks; a run's HD95 mean leaves out infinite values (an empty mask), which
    ``hd95_infinite`` counts. nan when undefined.

    ``dice_vs_scratch_*`` is the paired comparison: a run's Dice minus that of the scratch run
    of the same seed, mean and std over the seeds both have, and ``seeds_above_scratch`` counts
    the seeds where the difference is positive. Runs of one seed draw the same training crops
    in the same order, so the pairing removes what the seed alone changes, which on small
    budgets can be larger than what the transfer changes. nan (and 0) for scratch itself and
    when the experiment trains no scratch run.
    """

    transfer: str
    seeds: int
    dice_mean: float
    dice_std: float
    hd95_mean: float
    hd95_std: float
    dice_vs_scratch_mean: float
    dice_vs_scratch_std: float
    seeds_above_scratch: int
    train_seconds: float
    steps: int
    empty_predictions: int
    hd95_infinite: int
    stacks: int
    teacher: str | None = None


@dataclass(frozen=True)
class ExperimentResult:
    """What :func:`run_experiment` produced: runs, table rows and the files written."""

    out: Path
    runs: tuple[RunResult, ...]
    rows: tuple[TransferRow, ...]
    csv: Path
    markdown: Path
    runs_csv: Path
    val_curves: Path
    overlays: Path
    config: Path


# -- the experiment -------------------------------------------------------------------------
def run_experiment(config: ExperimentConfig, progress: Progress | None = None,
                   train_progress: TrainProgress | None = None) -> ExperimentResult:
    """Train, predict and score every run of :meth:`ExperimentConfig.jobs` (a transfer, seed
    and, with named teachers, teacher) and write the ablation table.

    Seeds are the outer loop, so a stopped experiment already holds every transfer of its first
    seeds. Idempotent: a complete run is reused (not retrained) when its stored config is the
    one this experiment asks for, an interrupted run with a ``last.pt`` is resumed, and
    predictions are reused while their ``prediction.json`` matches the checkpoint; a finished
    experiment re-run only re-scores and re-writes ``ablation.csv``, ``ablation.md``,
    ``runs.csv``, ``val_curves.png``, ``overlays.png`` and ``experiment.yaml`` (each atomically).

    Args:
        config: the experiment (:func:`load_experiment`).
        progress: called as ``progress(message, done, total)`` before each run (``done`` runs
            finished of ``total``) and once at the end (``done == total``).
        train_progress: passed through to each run's training as
            ``train_progress(run_name, step, steps, loss, val_dice)``.

    Returns:
        An :class:`ExperimentResult`.

    Raises:
        InputError: a bad dataset, an empty evaluation split, a teacher that cannot be found,
            or a run folder holding a run with other settings.
    """
    from dineuro.data.dataset import open_dataset

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
    scratch = {run.seed: run.table.summary().dice.mean for run in runs
               if run.transfer == "scratch"}
    rows = tuple(_transfer_row(transfer, teacher, [r for r in runs if r.transfer == transfer
                                                   and r.teacher == teacher], scratch)
                 for transfer in config.transfers for teacher in config.teacher_names(transfer))
    if progress is not None:
        progress("tables and figures", len(jobs), len(jobs))
    csv_path, md_path = write_ablation_tables(rows, out, config)
    runs_csv = write_runs_table(runs, out)
    curves = out / CURVES_NAME
    overlays = out / OVERLAYS_NAME
    _save(val_curves_figure(runs), curves)
    _save(overlays_figure(runs, dataset.root, names[0]), overlays)
    return ExperimentResult(out=out, runs=tuple(runs), rows=rows, csv=csv_path,
                            markdown=md_path, runs_csv=runs_csv, val_curves=curves,
                            overlays=overlays, config=out / CONFIG_NAME)


def _run(config: ExperimentConfig, transfer: str, seed: int, teacher: str | None, data: Path,
         names: list[str], progress) -> RunResult:
    from dineuro.evaluate import evaluate_folder
    from dineuro.train import train
    from dineuro.train.loop import BEST, CONFIG_FILE, LAST, METRICS_FILE

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
    predictions = _predict(checkpoint, data, names, config.predict, folder / PREDICTIONS,
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
    from dineuro.train.loop import CONFIG_FILE, LAST, METRICS_FILE

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
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _predict(checkpoint: Path, data: Path, names: list[str], options: dict, folder: Path,
             device: str, threads: int | None) -> Path:
    """Predictions of ``names`` by ``checkpoint`` in ``folder``, reused while still valid.

    ``folder`` appears only complete (written under a temporary name) and records in
    ``prediction.json`` the checkpoint (path, size, mtime) and options that made it; a folder
    whose record differs is replaced.
    """
    import torch

    from dineuro.checkpoint import load_model
    from dineuro.data.dataset import open_dataset
    from dineuro.data.normalize import NormalizationConfig

    stat = checkpoint.stat()
    record = {"checkpoint": str(checkpoint), "checkpoint_size": stat.st_size,
              "checkpoint_mtime_ns": stat.st_mtime_ns, "names": list(names), **options}
    if folder.is_dir() and _read_record(folder / PREDICTION_RECORD) == record:
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # made by an older checkpoint of this run
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, meta = load_model(checkpoint, device=device)
    norm = NormalizationConfig.from_dict(meta["normalization"])
    dataset = open_dataset(data)
    default_threads = torch.get_num_threads()
    if threads is not None:  # as in training: the run's thread count
        torch.set_num_threads(threads)
    try:
        _predict_into(folder, model, meta, norm, dataset, names, options, device, record)
    finally:
        torch.set_num_threads(default_threads)
    return folder


def _predict_into(folder, model, meta, norm, dataset, names, options, device, record) -> None:
    from dineuro.predict import predict_stack

    # Experiments compare networks: every window, in float32, as the predictions they made
    # before skipping and bf16 existed (and may still find cached).
    with atomic_dir(folder) as tmp:
        for name in names:
            predict_stack(model, dataset.images[name], tmp, meta["model_config"]["crop"], norm,
                          overlap=options["overlap"], flips=options["flips"],
                          batch_size=options["batch_size"], device=device, precision="fp32",
                          skip_empty=False)
        (tmp / PREDICTION_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _transfer_row(transfer: str, teacher: str | None, runs: list[RunResult],
                  scratch: Mapping[int, float]) -> TransferRow:
    """``scratch``: the scratch runs' mean Dice by seed, the baseline of the paired columns."""
    summaries = [run.table.summary() for run in runs]
    dice = mean_std(s.dice.mean for s in summaries)
    hd95 = mean_std(s.hd95.mean for s in summaries)
    by_seed = {run.seed: s.dice.mean for run, s in zip(runs, summaries, strict=True)}
    paired = (math.nan, math.nan, 0) if transfer == "scratch" else \
        paired_difference(by_seed, scratch)
    return TransferRow(
        transfer=transfer, seeds=len(runs), dice_mean=dice.mean, dice_std=dice.std,
        hd95_mean=hd95.mean, hd95_std=hd95.std, dice_vs_scratch_mean=paired[0],
        dice_vs_scratch_std=paired[1], seeds_above_scratch=paired[2],
        train_seconds=float(np.mean([r.train_seconds for r in runs])),
        steps=max(r.steps for r in runs),
        empty_predictions=sum(s.n_empty_prediction for s in summaries),
        hd95_infinite=sum(s.n_hd95_infinite for s in summaries),
        stacks=max(s.n_scored for s in summaries), teacher=teacher)


def paired_difference(values: Mapping[int, float], baseline: Mapping[int, float]
                      ) -> tuple[float, float, int]:
    """Mean and std (ddof=0) of ``values[seed] - baseline[seed]`` over the seeds where both are
    finite, and how many of those differences are positive; (nan, nan, 0) when none are."""
    differences = [values[seed] - baseline[seed] for seed in values
                   if seed in baseline and math.isfinite(values[seed])
                   and math.isfinite(baseline[seed])]
    mean, std = mean_std(differences)
    return mean, std, sum(d > 0 for d in differences)


# -- tables ---------------------------------------------------------------------------------
def write_ablation_tables(rows: Sequence[TransferRow], out: str | os.PathLike,
                          config: ExperimentConfig | None = None) -> tuple[Path, Path]:
    """Write ``ablation.csv`` (full-precision numbers, empty where undefined) and
    ``ablation.md`` into ``out``, atomically, replacing earlier versions.

    With named teachers the CSV has a ``teacher`` column (:data:`TEACHER_CSV_COLUMNS`), empty
    for scratch, and a row per (transfer, teacher): tidy, one observation per row.

    Returns:
        The CSV and Markdown paths.
    """
    out = Path(out)
    csv_path, md_path = out / CSV_NAME, out / MARKDOWN_NAME
    columns = TEACHER_CSV_COLUMNS if _named_teachers(rows) else CSV_COLUMNS
    write_csv(csv_path, columns, ([getattr(row, c) for c in columns] for row in rows))
    with atomic_file(md_path) as tmp:
        tmp.write_text(ablation_markdown(rows, config))
    return csv_path, md_path


def write_runs_table(runs: Sequence[RunResult], out: str | os.PathLike) -> Path:
    """Write ``runs.csv`` into ``out`` (atomically): a row per run with :data:`RUN_CSV_COLUMNS`,
    Dice and HD95 being the run's means over the evaluation stacks (as in ablation.csv, before
    the mean over seeds); teacher empty for scratch and with a single teacher.

    Returns:
        Its path.
    """
    return write_csv(Path(out) / RUNS_CSV_NAME, RUN_CSV_COLUMNS,
                     (_run_csv_row(run) for run in runs))


def _run_csv_row(run: RunResult) -> tuple:
    summary = run.table.summary()
    return (run.transfer, run.teacher, run.seed, summary.dice.mean, summary.hd95.mean,
            summary.n_empty_prediction, summary.n_hd95_infinite, summary.n_scored,
            run.train_seconds, run.steps, run.folder.name)


def ablation_markdown(rows: Sequence[TransferRow], config: ExperimentConfig | None = None) -> str:
    """The ablation table as Markdown, with what the numbers mean underneath: a row per
    transfer, and with named teachers a Dice, an HD95 and a Dice-vs-scratch column per teacher."""
    teachers = _named_teachers(rows)
    metrics = ("Dice", "HD95", "Dice vs scratch")
    heads = [f"{metric} ({teacher})" for teacher in teachers for metric in metrics]
    heads = heads or list(metrics)
    lines = [f"| transfer | seeds | {' | '.join(heads)} | train time | steps | empty predictions |",
             f"|---|---:|{'---:|' * len(heads)}---:|---:|---:|"]
    for transfer in dict.fromkeys(row.transfer for row in rows):
        lines.append(_markdown_row([row for row in rows if row.transfer == transfer], teachers))
    split = config.split if config is not None else "evaluation"
    lines += ["", f"Dice and HD95: mean ± std over seeds of each run's mean over the {split} "
              f"stacks ({rows[0].stacks if rows else 0} per run). HD95 is in x/y voxels (z "
              "scaled by the z/x spacing ratio); a run's HD95 mean leaves out stacks with an "
              "infinite HD95 (an empty mask; hd95_infinite in ablation.csv). Dice vs scratch: "
              "each run's Dice minus that of the scratch run of the same seed (same training "
              "crops in the same order), mean ± std over seeds, and in how many seeds the "
              "transfer beat scratch. Empty predictions "
              "are summed over seeds and scored as Dice 0. Train time: mean wall-clock training "
              "seconds per run, validation included; axes of overlays.png are in spacing "
              "units."]
    if teachers:
        lines[-1] += (" scratch uses no teacher: its row repeats the same scratch runs under "
                      "every teacher, the baseline each teacher's columns compare against. Train "
                      "time, steps and empty predictions cover a transfer's runs with every "
                      "teacher.")
    if config is not None:
        base = config.run_config(*config.jobs()[0])
        lines.append("")
        lines.append(f"Shared settings: data `{base.data}`, size `{base.size}`, crop "
                     f"{base.crop}, batch {base.batch_size}, {base.steps} steps, lr {base.lr:g}, "
                     f"seeds {config.seeds}, {_teacher_text(config.teacher)}, predict overlap "
                     f"{config.predict['overlap']:g}.")
    return "\n".join(lines) + "\n"


def _named_teachers(items: Sequence[RunResult | TransferRow]) -> list[str]:
    """The teacher names of runs or rows, in their order; empty with a single teacher."""
    return [name for name in dict.fromkeys(item.teacher for item in items) if name is not None]


def _markdown_row(group: Sequence[TransferRow], teachers: Sequence[str]) -> str:
    """The Markdown row of one transfer from its CSV rows (one per teacher; scratch's single
    row fills every teacher's columns). Time, steps and empties cover all of its runs."""
    by_teacher = {row.teacher: row for row in group}
    shown = [by_teacher.get(teacher, by_teacher.get(None)) for teacher in teachers] or group
    cells = [f"{plus_minus(MeanStd(row.dice_mean, row.dice_std), 3)} "
             f"| {plus_minus(MeanStd(row.hd95_mean, row.hd95_std), 2)} | {_paired_cell(row)}"
             for row in shown]
    seconds = float(np.mean([row.train_seconds for row in group]))
    return (f"| {group[0].transfer} | {group[0].seeds} | {' | '.join(cells)} "
            f"| {_duration(seconds)} | {max(row.steps for row in group)} "
            f"| {sum(row.empty_predictions for row in group)} |")


def _teacher_text(teacher: str | dict[str, str] | None) -> str:
    if isinstance(teacher, dict):
        return "teachers " + ", ".join(f"{name} `{path}`" for name, path in teacher.items())
    return f"teacher `{teacher}`"


def _paired_cell(row: TransferRow) -> str:
    """"+0.004 ± 0.010 (2/3 seeds)"; "baseline" for scratch, "n/a" without scratch runs."""
    if row.transfer == "scratch":
        return "baseline"
    if math.isnan(row.dice_vs_scratch_mean):
        return "n/a"
    return (f"{row.dice_vs_scratch_mean:+.3f} ± {row.dice_vs_scratch_std:.3f} "
            f"({row.seeds_above_scratch}/{row.seeds} seeds)")


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# -- figures --------------------------------------------------------------------------------
def val_curves_figure(runs: Sequence[RunResult]):
    """Validation Dice against step, one line per run, one colour per transfer; the line style
    tells seeds apart, or teachers when the experiment names them."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for run in runs:
        if not run.curve:
            continue
        steps, dice = zip(*run.curve, strict=True)
        linestyle, label = _line_style(runs, run)
        ax.plot(steps, dice, marker="o", ms=3, color=TRANSFER_COLORS[run.transfer],
                linestyle=linestyle, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if any(run.curve for run in runs):
        ax.legend(fontsize=7, ncol=2, handlelength=4)  # long enough to show the dashes
    else:
        ax.text(0.5, 0.5, "no validation split: no curves", ha="center",
                transform=ax.transAxes)
    ax.set_title("Validation Dice during training", fontsize=10)
    return fig


def _line_style(runs: Sequence[RunResult], run: RunResult) -> tuple[str, str | None]:
    """Line style and legend label of ``run``'s curve. With named teachers the seeds of a
    (transfer, teacher) share a style and one legend entry, so that a few dozen runs still make
    a legend that fits."""
    teachers = _named_teachers(runs)
    if not teachers:
        seeds = sorted({r.seed for r in runs})
        return (LINE_STYLES[seeds.index(run.seed) % len(LINE_STYLES)],
                f"{run.transfer} seed {run.seed}")
    style = LINE_STYLES[teachers.index(run.teacher) % len(LINE_STYLES)] if run.teacher else "-"
    first = next(r for r in runs if r.curve and (r.transfer, r.teacher) == (run.transfer,
                                                                            run.teacher))
    return style, _run_label(run) if first is run else None


def _run_label(run: RunResult) -> str:
    return f"{run.transfer} · {run.teacher}" if run.teacher else run.transfer


def overlays_figure(runs: Sequence[RunResult], data: str | os.PathLike, name: str):
    """x-y MIP of stack ``name`` with the gold (SWC lines, or the label outline) and, one panel
    per transfer (and teacher), that transfer's predicted mask (its first seed) tinted over it.
    With named teachers the panels are a row per transfer and a column per teacher, as the
    columns of ablation.md."""
    import matplotlib.pyplot as plt

    from dineuro.data.dataset import open_dataset
    from dineuro.report import CONTRAST_PERCENTILES, MASK_RGBA

    dataset = open_dataset(data)
    image = dataset.image(name)
    mip = np.asarray(image.array, dtype=np.float32).max(axis=0)
    low, high = np.percentile(mip, CONTRAST_PERCENTILES)
    tree = dataset.tree(name)
    gold = None if tree is not None else dataset.label(name, image).max(axis=0)
    grid = _overlay_grid(runs)
    dy, dx = image.spacing[1], image.spacing[2]
    extent = (-0.5 * dx, (mip.shape[1] - 0.5) * dx, (mip.shape[0] - 0.5) * dy, -0.5 * dy)
    rows, cols = len(grid), len(grid[0])
    aspect = (mip.shape[0] * dy) / (mip.shape[1] * dx)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows * aspect + 0.6),
                             layout="constrained", squeeze=False)
    for ax, run in zip(axes.flat, [run for row in grid for run in row], strict=True):
        if run is None:
            ax.axis("off")
            continue
        title, mask = ("image + gold", None) if run is GOLD_PANEL else _run_panel(run, name)
        ax.imshow(mip, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), extent=extent,
                  interpolation="nearest")
        if mask is not None:
            overlay = np.zeros(mask.shape + (4,))
            overlay[mask] = MASK_RGBA
            ax.imshow(overlay, extent=extent, interpolation="nearest")
        _draw_gold(ax, tree, gold, image.spacing)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x", fontsize=8)
        ax.set_ylabel("y", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{name}: x-y MIP, prediction magenta, gold "
                 f"{'SWC' if tree is not None else 'outline'} yellow", fontsize=10)
    return fig


def _run_panel(run: RunResult, name: str) -> tuple[str, np.ndarray | None]:
    """Title and x-y MIP of the predicted mask (None when missing) of ``run``'s panel."""
    from dineuro.evaluate import find_predictions, read_prediction

    prediction = find_predictions(run.folder / PREDICTIONS).get(name)
    mask = None if prediction is None else read_prediction(prediction).max(axis=0)
    score = next((r for r in run.table.rows if r.name == name), None)
    dice = "" if score is None or score.dice is None else f"  Dice {score.dice:.3f}"
    return f"{_run_label(run)} (seed {run.seed}){dice}", mask


def _overlay_grid(runs: Sequence[RunResult]) -> list[list[RunResult | str | None]]:
    """Panels of overlays.png by row, padded with None: :data:`GOLD_PANEL` first, then the first
    seed's run of each transfer (and teacher); three a row with one teacher, otherwise a row per
    transfer (scratch beside the gold) so that each teacher has a column."""
    firsts: dict[tuple[str, str | None], RunResult] = {}
    for run in runs:
        firsts.setdefault((run.transfer, run.teacher), run)
    if not _named_teachers(runs):
        panels = [GOLD_PANEL, *firsts.values()]
        grid = [panels[i:i + 3] for i in range(0, len(panels), 3)]
    else:
        by_transfer: dict[str, list] = {}
        for (transfer, _), run in firsts.items():
            by_transfer.setdefault(transfer, []).append(run)
        grid = [[GOLD_PANEL, *by_transfer.pop("scratch", [])], *by_transfer.values()]
    cols = max(len(row) for row in grid)
    return [row + [None] * (cols - len(row)) for row in grid]


def _draw_gold(ax, tree, gold: np.ndarray | None, spacing) -> None:
    from matplotlib.collections import LineCollection

    if tree is not None and len(tree):
        child, parent = tree.edges()
        points = tree.xyz[:, :2] * np.array([spacing[2], spacing[1]])  # SWC x, y
        ax.add_collection(LineCollection(np.stack([points[child], points[parent]], axis=1),
                                         colors=GOLD_COLOR, linewidths=0.6))
    elif gold is not None and gold.any():
        ys, xs = np.arange(gold.shape[0]) * spacing[1], np.arange(gold.shape[1]) * spacing[2]
        ax.contour(xs, ys, gold.astype(float), levels=[0.5], colors=GOLD_COLOR,
                   linewidths=0.6)


def _save(fig, path: Path) -> None:
    from dineuro.report import save_figure

    save_figure(fig, path)
