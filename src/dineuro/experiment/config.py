"""The experiment config: what an ablation compares, checked at once and stored resolved.

An :class:`ExperimentConfig` names one shared training config (``base``), the transfers, seeds
and teacher(s) to compare, and how the evaluation split is predicted; every run's
:class:`~dineuro.train.TrainConfig` derives from it, so runs differ in transfer, seed and
teacher only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dineuro.config import config_from_dict, parse_override, read_yaml_mapping, set_dotted
from dineuro.errors import InputError
from dineuro.train.config import TrainConfig

#: The five strategies in the order of the paper's ablation table.
TRANSFERS = ("scratch", "average", "center", "tubular", "deformable")
EVAL_SPLITS = ("train", "val", "test")
#: Keys of ``base`` that the experiment sets per run (``out``, ``transfer``, ``seed``) or from
#: its own ``teacher``; a value given in ``base`` is replaced.
PER_RUN_KEYS = ("out", "transfer", "seed", "teacher")
PREDICT_DEFAULTS = {"overlap": 0.5, "flips": False, "batch_size": 4}
#: A teacher's name is part of run folder names and table headers.
TEACHER_NAME = re.compile(r"[A-Za-z0-9_]+")
#: The folder of the experiment folder that holds a folder per run.
RUNS = "runs"


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of an ablation experiment.

    Attributes
    ----------
    base : dict
        The shared training config, as a dict of :class:`~dineuro.train.TrainConfig` keys
        (``data`` required); ``out``, ``transfer``, ``seed`` and ``teacher`` are set per run
        (:data:`PER_RUN_KEYS`). In YAML it may also be the path of a training config file
        (relative to the working directory), which is read and inlined. Stored resolved: every
        key, with defaults filled in, per-run keys removed.
    out : str
        The experiment folder.
    transfers : list of str
        Strategies to compare, each once (default all five, :data:`TRANSFERS`).
    seeds : list of int
        Master seeds; every transfer is trained once per seed (default ``[0]``).
    teacher : str or dict of str to str or None
        DINO checkpoint file or registry name (``dino_vits16``); required unless every transfer
        is ``scratch``. Default: the teacher of ``base``. Or a mapping of short names (letters,
        digits, ``_``) to such teachers, to compare them: every transfer but ``scratch`` is then
        trained once per teacher and seed.
    predict : dict
        Sliding-window options of the evaluation predictions: ``overlap`` (0.5), ``flips``
        (false), ``batch_size`` (4).
    split : str
        The dataset split scored ("test"; "val" or "train" for a quick look).

    Raises
    ------
    InputError
        A missing ``out``, bad transfers, seeds, split, teacher or predict options, a ``base``
        that is not a valid training config, or a teacher missing for a transfer that needs one.

    Examples
    --------
    >>> config = ExperimentConfig(base={"data": "ds", "size": "tiny"}, out="ablation",
    ...                           transfers=["scratch", "center"], seeds=[0, 1],
    ...                           teacher={"photos": "a.pth", "mips": "b.pth"})
    >>> [config.run_name(*job) for job in config.jobs()[:3]]
    ['scratch-seed0', 'center-photos-seed0', 'center-mips-seed0']
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
        """Names of the teachers ``transfer`` is trained with, one run each per seed.

        Parameters
        ----------
        transfer : str
            One of :data:`TRANSFERS`.

        Returns
        -------
        tuple of str or None
            The names of :attr:`teacher` in order; ``(None,)`` for a single unnamed teacher,
            and for ``scratch``, which ignores the teacher.
        """
        if transfer == "scratch" or not isinstance(self.teacher, dict):
            return (None,)
        return tuple(self.teacher)

    def jobs(self) -> list[tuple[str, int, str | None]]:
        """Every run of the experiment, seeds outermost.

        A stopped experiment then already holds every transfer of its first seeds.

        Returns
        -------
        list of tuple of (str, int, str or None)
            (transfer, seed, teacher name) of each run, in the order they are trained.
        """
        return [(transfer, seed, teacher) for seed in self.seeds for transfer in self.transfers
                for teacher in self.teacher_names(transfer)]

    def run_name(self, transfer: str, seed: int, teacher: str | None = None) -> str:
        """The name of a run's folder: ``TRANSFER-seedS``, ``TRANSFER-TEACHER-seedS``.

        Parameters
        ----------
        transfer : str
            The run's transfer.
        seed : int
            The run's seed.
        teacher : str, optional
            The run's teacher name, with named teachers.

        Returns
        -------
        str
            The name.
        """
        return "-".join([transfer, *([teacher] if teacher else []), f"seed{seed}"])

    def run_folder(self, transfer: str, seed: int, teacher: str | None = None) -> Path:
        """The training run folder of one run: ``OUT/runs/NAME`` (:meth:`run_name`).

        Parameters
        ----------
        transfer : str
            The run's transfer.
        seed : int
            The run's seed.
        teacher : str, optional
            The run's teacher name, with named teachers.

        Returns
        -------
        Path
            The folder.
        """
        return Path(self.out) / RUNS / self.run_name(transfer, seed, teacher)

    def run_config(self, transfer: str, seed: int, teacher: str | None = None) -> TrainConfig:
        """The training config of one run: ``base`` with out, transfer, seed and teacher set.

        Parameters
        ----------
        transfer : str
            The run's transfer.
        seed : int
            The run's seed.
        teacher : str, optional
            One of :meth:`teacher_names` of ``transfer``.

        Returns
        -------
        TrainConfig
            The run's training config.

        Raises
        ------
        InputError
            ``teacher`` is not one of ``transfer``'s teachers.
        InputError
            ``base`` is not a valid training config.
        """
        if teacher not in self.teacher_names(transfer):
            raise InputError(f"{transfer} runs have teachers {self.teacher_names(transfer)}, "
                             f"not {teacher!r}.")
        values = {**self.base, "out": str(self.run_folder(transfer, seed, teacher)),
                  "transfer": transfer, "seed": seed, "teacher": self._teacher_of(teacher)}
        try:
            return TrainConfig.from_dict(values)
        except InputError as exc:
            raise InputError(f"experiment key 'base': {exc}") from exc

    def _teacher_of(self, name: str | None) -> str | None:
        """The file or registry name a run stores as its teacher.

        With named teachers scratch stores none, as it was not trained with any of them.
        """
        if isinstance(self.teacher, dict):
            return None if name is None else self.teacher[name]
        return self.teacher

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict, every key resolved; :meth:`from_dict` inverts it."""
        teacher = dict(self.teacher) if isinstance(self.teacher, dict) else self.teacher
        return {"base": dict(self.base),
                "out": self.out, "transfers": list(self.transfers), "seeds": list(self.seeds),
                "teacher": teacher, "predict": dict(self.predict), "split": self.split}

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML text, what ``experiment.yaml`` holds."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build and check an experiment config from a dict (``base`` a dict or a file path).

        Parameters
        ----------
        data : Mapping
            The config's keys; a single transfer or seed may be given bare.

        Returns
        -------
        ExperimentConfig
            The checked config.

        Raises
        ------
        InputError
            Unknown keys (all named), a missing ``base`` or ``out``, bad values, or a teacher
            missing for a transfer that needs one.
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

    Parameters
    ----------
    path : str or os.PathLike or None
        The YAML file; None to build the config from ``overrides`` alone.
    overrides : sequence of str, optional
        ``KEY=VALUE`` items, applied in order.

    Returns
    -------
    ExperimentConfig
        The checked config.

    Raises
    ------
    InputError
        An unreadable file or YAML, a malformed override, unknown keys or bad values; errors
        name the file.

    Examples
    --------
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
    """``base`` as a dict: itself, the training config file it names, or empty for None."""
    if base is None:
        return {}
    if isinstance(base, Mapping):
        return dict(base)
    if isinstance(base, (str, os.PathLike)):
        return read_yaml_mapping(Path(base), "training config keys")
    raise InputError(f"experiment key 'base' should be a training config file or a mapping of "
                     f"its keys, got {base!r}.")


def _checked_teacher(teacher) -> str | dict[str, str] | None:
    """``teacher`` if it is None, a string or a mapping of valid names to strings."""
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
    """The predict options with defaults filled in, each checked."""
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
