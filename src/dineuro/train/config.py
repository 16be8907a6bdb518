"""``TrainConfig``: every setting of a training run, read from YAML with ``--set`` overrides.

A run is fully described by its config plus the dataset folder: ``train()`` writes the resolved
config to ``OUT/config.yaml`` and stores it in every checkpoint. Keys are checked strictly: an
unknown key (a typo such as ``lr_rate``) or a value of the wrong type is an
:class:`~dineuro.errors.InputError` naming the key, never silently ignored.

Paths (``data``, ``out``, ``teacher``) are taken as given: relative paths are relative to the
working directory, not to the YAML file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dineuro.config import (
    DEVICE_PATTERN,
    checked_value,
    config_from_dict,
    field_types,
    parse_override,
    read_yaml_mapping,
    require,
    section,
    set_dotted,
)
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.train.losses import CLDICE_ITERATIONS, CLDICE_WEIGHT, LOSSES, SKELETON_RECALL_WEIGHT

SCHEDULES = ("cosine", "poly")
AMP_MODES = ("none", "bf16")
#: ``augment.zero_floor``: probability per crop, and the stack percentiles the floor is drawn
#: from (within the normalisation's percentiles, so the clipped stack's limits follow from the
#: stack's own; see :meth:`dineuro.train.data.CropSampler.draw`).
ZERO_FLOOR_PROB, ZERO_FLOOR_PERCENTILES = 0.3, tuple(range(50, 100))


@dataclass(frozen=True)
class AugmentConfig:
    """Switches of the training augmentations (MONAI dict transforms but the zero floor;
    magnitudes and probabilities are the constants in :mod:`dineuro.train.data`, the zero
    floor's here).

    Attributes
    ----------
    flip : bool
        Mirror z, y and x, each with probability 0.5 (image and label together).
    rotate90 : bool
        Rotate by k * 90 degrees in the x-y plane only; z is anisotropic, so it is never swapped
        with y or x. Needs a crop with equal y and x.
    scale_intensity : bool
        Multiply the image by 1 + U(-0.2, 0.2).
    shift_intensity : bool
        Add U(-0.1, 0.1) to the image.
    contrast : bool
        Gamma correction with gamma in U(0.7, 1.5).
    noise : bool
        Add Gaussian noise with a standard deviation drawn from U(0, 0.03).
    zero_floor : bool
        With probability 0.3, the crop of its stack less a percentile drawn from 50..99 and
        clipped at zero, normalised as that stack would be: the background of exact zeros with
        isolated speckles that background subtraction or an 8-bit export of a dim stack leaves,
        which ``synth``'s cameras never make. Off by default, so configs written before it
        draw the same crops.
    """

    flip: bool = True
    rotate90: bool = True
    scale_intensity: bool = True
    shift_intensity: bool = True
    contrast: bool = True
    noise: bool = True
    zero_floor: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):
            checked_value(f"augment.{f.name}", getattr(self, f.name), bool)

    def to_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes
    ----------
    data : str
        Dataset folder (:mod:`dineuro.data.dataset` layout; needs a train split, and a val split for
        validation and ``best.pt``).
    extra_data : list of str
        More dataset folders whose train and val splits join ``data``'s, each with a train split
        of its own: a lab's labelled stacks beside synthetic ones, or a second synthetic set of
        another difficulty, without copying either into one folder. A folder named twice
        (also through a link) is refused: its stacks would weigh double.
    out : str
        Run folder: config.yaml, metrics.csv, best.pt, last.pt, tensorboard/.
    size : str
        Model preset, "tiny", "small" or "base" (:mod:`dineuro.models.presets`).
    transfer : str
        "scratch", "average", "center", "tubular" or "deformable".
    teacher : str or None
        DINO checkpoint: a file, or a registry name such as "dino_vits16" (the file
        ``dineuro weights fetch`` put in the cache); required by every transfer but "scratch", which
        ignores it.
    init : str or None
        Start from this checkpoint's network and weights instead of ``transfer``: a path, or
        "default" for the packaged model (:mod:`dineuro.train.warm_start`), to fine-tune it on
        new data or through larger crops. It must be of ``size``, trained with the same
        ``normalization``, and then ``transfer`` is "scratch" and ``model_options`` empty.
    model_options : dict of {str: object}
        Further keyword arguments of :func:`dineuro.models.build.build_model` (e.g.
        ``patch: [8, 16, 16]``, ``drop_path: 0.1``, ``extend_scope: 1.0``).
    crop : list of int or None
        Training crop (z, y, x) in voxels, or one int for a cube; None = the preset's.
    batch_size : int
        Crops per optimizer step (per process under torchrun).
    steps : int
        Optimizer steps of the whole run.
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW weight decay.
    warmup_steps : int
        Steps of linear warm-up from lr / warmup_steps to lr.
    schedule : str
        Decay after warm-up: "cosine" (to 0) or "poly" ((1 - t) ** poly_power).
    poly_power : float
        Exponent of the "poly" schedule.
    grad_clip : float or None
        Largest global gradient norm; None or 0 disables clipping.
    loss : str
        "dice_ce" (Dice + cross-entropy), "dice_ce_cldice" to add soft-clDice, which rewards
        keeping thin branches connected, or "dice_ce_skeleton_recall" to add Skeleton Recall,
        which counts every voxel of a neurite's axis alike, whatever its radius
        (:mod:`dineuro.train.losses`).
    cldice_weight : float
        Weight of soft-clDice in "dice_ce_cldice"; ignored by "dice_ce".
    cldice_iterations : int
        Soft-skeleton iterations of "dice_ce_cldice": about the largest neurite radius, in voxels,
        that clDice sees; ignored by "dice_ce".
    skeleton_recall_weight : float
        Weight of Skeleton Recall in "dice_ce_skeleton_recall"; ignored by the others.
    amp : str
        "none", or "bf16" for bfloat16 autocast (CUDA only; ignored on CPU with a warning).
    val_every : int
        Validate (and write last.pt) every this many steps, and at the last step.
    val_overlap : float
        Sliding-window overlap of validation, in [0, 1).
    foreground_prob : float
        Probability that a crop is centred on a random foreground voxel; otherwise its position is
        uniform.
    augment : AugmentConfig
        Augmentation switches (:class:`AugmentConfig`).
    seed : int
        Master seed of weights, crops and augmentations.
    normalization : NormalizationConfig
        Per-stack intensity normalisation (percentile clip + scale to [0, 1]; with
        ``background``, a Gaussian background of that sigma in voxels subtracted after).
    device : str
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    tensorboard : bool
        Also log scalars to OUT/tensorboard when TensorBoard is installed.
    threads : int or None
        torch CPU threads of this process during the run (restored afterwards); None keeps torch's
        default (the cores, or ``OMP_NUM_THREADS``; torchrun sets 1). On a machine whose cores are
        busy with other work, 1 can be several times faster.
    """

    data: str
    out: str
    extra_data: list[str] = field(default_factory=list)
    size: str = "small"
    transfer: str = "deformable"
    teacher: str | None = None
    init: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    crop: list[int] | None = None
    batch_size: int = 2
    steps: int = 2000
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    schedule: str = "cosine"
    poly_power: float = 0.9
    grad_clip: float | None = 1.0
    loss: str = "dice_ce"
    cldice_weight: float = CLDICE_WEIGHT
    cldice_iterations: int = CLDICE_ITERATIONS
    skeleton_recall_weight: float = SKELETON_RECALL_WEIGHT
    amp: str = "none"
    val_every: int = 200
    val_overlap: float = 0.5
    foreground_prob: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    device: str = "auto"
    tensorboard: bool = True
    threads: int | None = None

    def __post_init__(self):
        for name, hint in field_types(type(self)).items():
            object.__setattr__(self, name, checked_value(name, getattr(self, name), hint))
        if self.crop is not None:
            crop = [self.crop] * 3 if isinstance(self.crop, int) else list(self.crop)
            if len(crop) != 3 or min(crop) < 1:
                raise InputError(f"config key 'crop' should be one positive int or three "
                                 f"(z, y, x), got {self.crop}.")
            object.__setattr__(self, "crop", crop)
        require(self.batch_size >= 1, "batch_size", "should be at least 1", self.batch_size)
        require(self.steps >= 1, "steps", "should be at least 1", self.steps)
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "should be positive", self.lr)
        require(self.weight_decay >= 0, "weight_decay", "should be >= 0", self.weight_decay)
        require(self.warmup_steps >= 0, "warmup_steps", "should be >= 0", self.warmup_steps)
        require(self.schedule in SCHEDULES, "schedule", f"should be one of {list(SCHEDULES)}",
                 self.schedule)
        require(self.poly_power > 0, "poly_power", "should be positive", self.poly_power)
        require(self.grad_clip is None or self.grad_clip >= 0, "grad_clip",
                 "should be >= 0 (0 or null disables clipping)", self.grad_clip)
        require(self.loss in LOSSES, "loss", f"should be one of {list(LOSSES)}", self.loss)
        require(self.cldice_weight >= 0 and math.isfinite(self.cldice_weight), "cldice_weight",
                "should be >= 0", self.cldice_weight)
        require(self.skeleton_recall_weight >= 0 and math.isfinite(self.skeleton_recall_weight),
                "skeleton_recall_weight", "should be >= 0", self.skeleton_recall_weight)
        require(self.cldice_iterations >= 1, "cldice_iterations", "should be at least 1",
                self.cldice_iterations)
        require(self.amp in AMP_MODES, "amp", f"should be one of {list(AMP_MODES)}", self.amp)
        require(self.val_every >= 1, "val_every", "should be at least 1", self.val_every)
        require(0 <= self.val_overlap < 1, "val_overlap", "should be in [0, 1)",
                 self.val_overlap)
        require(0 <= self.foreground_prob <= 1, "foreground_prob", "should be in [0, 1]",
                 self.foreground_prob)
        require(self.seed >= 0, "seed", "should be >= 0", self.seed)
        require(DEVICE_PATTERN.fullmatch(self.device) is not None, "device",
                 'should be "auto", "cpu", "cuda" or "cuda:N"', self.device)
        require(self.threads is None or self.threads >= 1, "threads", "should be >= 1 or null",
                 self.threads)
        require(not self.augment.zero_floor or (
            self.normalization.low < min(ZERO_FLOOR_PERCENTILES)
            and max(ZERO_FLOOR_PERCENTILES) < self.normalization.high), "augment.zero_floor",
            f"needs normalisation percentiles outside {min(ZERO_FLOOR_PERCENTILES)}-"
            f"{max(ZERO_FLOOR_PERCENTILES)}", self.normalization.to_dict())
        require(bool(self.data), "data", "should name the dataset folder", self.data)
        require(all(self.extra_data), "extra_data", "should name dataset folders",
                 self.extra_data)
        require(bool(self.out), "out", "should name the run folder", self.out)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/checkpoint friendly); :meth:`from_dict` inverts it."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (value.to_dict() if hasattr(value, "to_dict")
                           else dict(value) if isinstance(value, Mapping)
                           else list(value) if isinstance(value, list) else value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build and check a config from a (possibly partial) nested dict.

        Missing keys take their defaults (``data`` and ``out`` have none); nested sections
        (``augment``, ``normalization``) may be partial too.

        Raises
        ------
        InputError
            Unknown keys (all named), missing ``data``/``out``, wrong types or values out of range.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a training config should be a mapping of keys to values, got "
                             f"{type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in data if k not in names]
        for name, kind in (("augment", AugmentConfig), ("normalization", NormalizationConfig)):
            value = data.get(name)
            if isinstance(value, Mapping):
                allowed = [f.name for f in dataclasses.fields(kind)]
                unknown += [f"{name}.{k}" for k in value if k not in allowed]
        if unknown:
            raise InputError(f"unknown config keys {unknown}; the keys are {names}.")
        missing = [name for name in ("data", "out") if data.get(name) is None]
        if missing:
            raise InputError(f"the config should set {missing} (the dataset folder and the run "
                             "folder).")
        values = dict(data)
        if "augment" in values:
            values["augment"] = AugmentConfig(**section(values["augment"], "augment"))
        if "normalization" in values:
            merged = {**NormalizationConfig().to_dict(),
                      **section(values["normalization"], "normalization")}
            values["normalization"] = NormalizationConfig.from_dict(merged)
        return cls(**values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as YAML, atomically."""
        from dineuro.io.atomic import atomic_file

        with atomic_file(path) as tmp:
            tmp.write_text(self.to_yaml())


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config and apply ``KEY=VALUE`` overrides.

    Parameters
    ----------
    path : str or os.PathLike or None
        The YAML file; None starts from the defaults (then ``data`` and ``out`` must be set by
        overrides).
    overrides : sequence of str, optional
        Strings ``KEY=VALUE``; ``KEY`` may be dotted for nested sections (``augment.noise=false``,
        ``normalization.high=99.5``, ``model_options.patch=[8,16,16]``) and ``VALUE`` is parsed as
        YAML (``null``, ``true``, ``3``, ``[8, 16, 16]``; ``1e-4`` is read as a number too).

    Raises
    ------
    InputError
        Unreadable file or YAML, a malformed override, unknown keys, wrong types.

    Examples
    --------
    >>> config = load_config(None, ["data=ds", "out=run", "lr=3e-4", "augment.noise=false"])
    >>> config.lr, config.augment.noise
    (0.0003, False)
    """
    data = read_yaml_mapping(Path(path), "config keys") if path is not None else {}
    for item in overrides:
        set_dotted(data, *parse_override(item))
    return config_from_dict(TrainConfig, data, path, overrides)
