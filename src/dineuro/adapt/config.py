"""``AdaptConfig``: every setting of one ``dineuro adapt`` run.

The resolved config is written to ``WORK/config.yaml`` and stored in the adapted checkpoint;
keys are checked as :class:`~dineuro.train.TrainConfig` checks them (unknown keys and wrong
types are one sentence naming the key).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dineuro.adapt.labels import BG_PROB, CORE, FG_PROB, MARGIN
from dineuro.config import DEVICE_PATTERN, checked_value, field_types, require
from dineuro.errors import InputError
from dineuro.train.config import SCHEDULES

#: Suffix of the folder beside the adapted checkpoint that holds the run: ``adapted.pt`` ->
#: ``adapted.adapt/``.
WORK_SUFFIX = ".adapt"
#: ``synthetic_preset`` values: the presets of ``dineuro synth`` whose stacks fit a model's crop.
SYNTHETIC_PRESETS = ("realistic", "bench")


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of an adaptation run.

    Attributes
    ----------
    stacks : list of str
        The lab's unlabelled stacks (files).
    out : str
        The adapted checkpoint to write (must not exist); the run's folder is beside it, with
        :data:`WORK_SUFFIX` in place of the file's suffix.
    model : str
        The checkpoint to start from, or "default" for the packaged model.
    rounds : int
        Self-training rounds: label with the current model, then fine-tune.
    steps : int
        Optimizer steps per round.
    batch_size : int
        Crops per step, the lab's and synthetic ones together.
    synthetic_share : float
        Share of each batch drawn from synthetic stacks with gold labels, so the network keeps what
        it knew (rounded to whole crops).
    synthetic : str or None
        A dataset folder (``dineuro synth`` layout) to mix in; null synthesises ``synthetic_stacks``
        stacks of ``synthetic_preset`` into the run folder.
    synthetic_preset : str
        Preset synthesised when ``synthetic`` is null ("realistic" is the default model's training
        data).
    synthetic_stacks : int
        How many (split 70/10/20: train for crops, val and test for the guard rails).
    lr : float
        Peak AdamW learning rate of each round (fine-tuning: well below training's).
    blend : float
        Share of a round's change of the weights that is kept (0 keeps the starting network, 1 the
        fine-tuned one; :func:`dineuro.adapt.loop.blend_weights`).
    weight_decay : float
        AdamW weight decay.
    warmup_steps : int
        Linear warm-up steps at the start of each round.
    schedule : str
        "cosine" or "poly" decay within a round.
    poly_power : float
        Exponent of "poly".
    grad_clip : float or None
        Largest global gradient norm; null or 0 disables clipping.
    foreground_prob : float
        Probability that a crop is centred on a (pseudo-)foreground voxel.
    fg_prob : float
        Least map value of a pseudo-foreground voxel (:mod:`dineuro.adapt.labels`).
    bg_prob : float
        Largest map value of a pseudo-background voxel.
    margin : float
        Pseudo-background keeps this far from every traced tube (x voxels).
    core : float
        Pseudo-foreground is the traced tube with its radii scaled by this.
    holdout : float
        Share of the lab's stacks held back from training to measure agreement with their
        pseudo-labels (at least one when there are 3 or more stacks).
    guard_margin : float
        The traced F1 or the map Dice on held-back synthetic stacks may fall by this much
        before adapt warns (the adaptation benchmark's goal allows the source domain to lose
        0.01 F1).
    overlap : float
        Sliding-window overlap when labelling and checking.
    background_view : float
        Sigma (voxels) of a second view of each lab stack, less its blur, when labelling and
        checking agreement, as ``dineuro predict --background-view`` does
        (:mod:`dineuro.predict._views`), so the labels also hold the dim neurites only that
        view finds. 0: off. On the haze shift of ``benchmarks/adapt_shift.py`` it traced no
        better than labelling without it and predicting the adapted network with the view.
    save_every : int
        Write the resumable state every this many steps (and after each round).
    seed : int
        Master seed of crops, augmentations, synthesis and the hold-out choice.
    device : str
        "auto", "cpu", "cuda" or "cuda:N".
    threads : int or None
        Torch CPU threads during the run; null keeps torch's default.
    """

    stacks: list[str]
    out: str
    model: str = "default"
    rounds: int = 1
    steps: int = 500
    batch_size: int = 2
    synthetic_share: float = 0.5
    synthetic: str | None = None
    synthetic_preset: str = "realistic"
    synthetic_stacks: int = 10
    lr: float = 1e-4
    blend: float = 0.5
    weight_decay: float = 1e-5
    warmup_steps: int = 20
    schedule: str = "cosine"
    poly_power: float = 0.9
    grad_clip: float | None = 1.0
    foreground_prob: float = 0.6
    fg_prob: float = FG_PROB
    bg_prob: float = BG_PROB
    margin: float = MARGIN
    core: float = CORE
    holdout: float = 0.2
    guard_margin: float = 0.01
    overlap: float = 0.5
    background_view: float = 0.0
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self):
        for name, hint in field_types(type(self)).items():
            object.__setattr__(self, name, checked_value(name, getattr(self, name), hint))
        require(bool(self.stacks), "stacks", "should list at least one stack", self.stacks)
        require(bool(self.out), "out", "should name the checkpoint to write", self.out)
        require(self.rounds >= 1, "rounds", "should be at least 1", self.rounds)
        require(self.steps >= 1, "steps", "should be at least 1", self.steps)
        require(self.batch_size >= 1, "batch_size", "should be at least 1", self.batch_size)
        require(0 <= self.synthetic_share <= 1, "synthetic_share", "should be in [0, 1]",
                self.synthetic_share)
        require(self.synthetic_crops < self.batch_size, "synthetic_share",
                f"should leave at least one of the lab's crops in a batch of {self.batch_size} "
                "(synthetic_share * batch_size rounds to the synthetic crops)",
                self.synthetic_share)
        require(self.synthetic_share == 0 or self.synthetic_crops > 0, "synthetic_share",
                f"rounds to no synthetic crop in a batch of {self.batch_size}; raise batch_size "
                "or set synthetic_share to 0", self.synthetic_share)
        require(self.synthetic_preset in SYNTHETIC_PRESETS, "synthetic_preset",
                f"should be one of {list(SYNTHETIC_PRESETS)}", self.synthetic_preset)
        require(self.synthetic_stacks >= 3, "synthetic_stacks",
                "should be at least 3 (train and val stacks)", self.synthetic_stacks)
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "should be positive", self.lr)
        require(0 <= self.blend <= 1, "blend", "should be in [0, 1]", self.blend)
        require(self.weight_decay >= 0, "weight_decay", "should be >= 0", self.weight_decay)
        require(self.warmup_steps >= 0, "warmup_steps", "should be >= 0", self.warmup_steps)
        require(self.schedule in SCHEDULES, "schedule", f"should be one of {list(SCHEDULES)}",
                self.schedule)
        require(self.poly_power > 0, "poly_power", "should be positive", self.poly_power)
        require(self.grad_clip is None or self.grad_clip >= 0, "grad_clip", "should be >= 0",
                self.grad_clip)
        require(0 <= self.foreground_prob <= 1, "foreground_prob", "should be in [0, 1]",
                self.foreground_prob)
        require(0 <= self.bg_prob <= self.fg_prob <= 1, "fg_prob",
                "should be in [bg_prob, 1] with bg_prob >= 0", (self.fg_prob, self.bg_prob))
        require(self.margin >= 0, "margin", "should be >= 0", self.margin)
        require(0 <= self.core <= 1, "core", "should be in [0, 1]", self.core)
        require(0 <= self.holdout < 1, "holdout", "should be in [0, 1)", self.holdout)
        require(self.guard_margin >= 0, "guard_margin", "should be >= 0", self.guard_margin)
        require(0 <= self.overlap < 1, "overlap", "should be in [0, 1)", self.overlap)
        require(math.isfinite(self.background_view) and self.background_view >= 0,
                "background_view", "should be a sigma >= 0 in voxels (0: off)",
                self.background_view)
        require(self.save_every >= 1, "save_every", "should be at least 1", self.save_every)
        require(self.seed >= 0, "seed", "should be >= 0", self.seed)
        require(DEVICE_PATTERN.fullmatch(self.device) is not None, "device",
                'should be "auto", "cpu", "cuda" or "cuda:N"', self.device)
        require(self.threads is None or self.threads >= 1, "threads", "should be >= 1 or null",
                self.threads)

    @property
    def work(self) -> Path:
        """The run's folder beside the checkpoint."""
        out = Path(self.out)
        return out.with_name(out.stem + WORK_SUFFIX)

    @property
    def synthetic_crops(self) -> int:
        """Synthetic crops in each batch."""
        return round(self.synthetic_share * self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["stacks"] = list(self.stacks)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptConfig:
        """Build and check a config from a mapping; unknown keys are refused, all named."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in data if k not in names]
        if unknown:
            raise InputError(f"unknown adapt config keys {unknown}; the keys are {names}.")
        return cls(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
