"""Settings of a DINO pre-training run: architectures, presets and the checked config.

The defaults are the published DINO ViT-S/16 recipe, with schedules counted in optimizer steps.
``cpu`` shrinks crops, head and batch so that a run finishes on a 2-core machine in about 20
minutes; ``paper`` is the published shape sized for one GPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dineuro.config import DEVICE_PATTERN, checked_value, field_types, require
from dineuro.errors import InputError

#: Backbone sizes: (embed_dim, depth, num_heads). ``vit_*`` are the DeiT/DINO names; ``tiny``,
#: ``small`` and ``base`` are the student presets of :mod:`dineuro.models.presets`, so a teacher
#: of that name copies 1:1 into the student of the same name.
ARCHES: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "tiny": (48, 4, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}

CROP_NORMS = ("imagenet", "standardize")

PRESETS: dict[str, dict[str, Any]] = {
    # Published recipe (ViT-S/16, 2 x 224 + 8 x 96 crops), one GPU's batch.
    "paper": dict(arch="vit_small", batch_size=256, steps=50_000, warmup_steps=5_000,
                  warmup_teacher_temp_steps=15_000),
    # 2 CPU cores, 13-20 minutes: the student preset `tiny`, 64 px global / 32 px local crops
    # (4 x 4 and 2 x 2 tokens), a 4096-prototype head. Standardised crops and a sharper teacher
    # (0.01), because this small ViT's outputs differ little between images at the start: with
    # the published 0.04 and ImageNet statistics, neuron MIPs collapsed to a uniform output
    # (entropy log 4096) within 40 steps; with these settings neither MIPs nor photos did.
    "cpu": dict(arch="tiny", global_size=64, local_size=32, n_local=6, out_dim=4096,
                hidden_dim=512, bottleneck_dim=128, batch_size=32, steps=1500, lr=1e-3,
                warmup_steps=150, warmup_teacher_temp=0.01, teacher_temp=0.01,
                warmup_teacher_temp_steps=450, crop_norm="standardize", drop_path=0.0,
                momentum_teacher=0.99),
}


@dataclass(frozen=True)
class PretrainConfig:
    """One DINO pre-training run.

    Attributes
    ----------
    arch : str
        Backbone size, a key of :data:`ARCHES`.
    patch_size : int
        Patch side in pixels (the 3D student expects 16).
    drop_path : float
        Stochastic depth of the student's last block (DINO ViT-S: 0.1).
    out_dim : int
        Prototypes of the head (DINO: 65536).
    hidden_dim : int
        Head MLP width.
    bottleneck_dim : int
        Head width before the weight-normalised last layer.
    norm_last_layer : bool
        Freeze the last layer's weight norm at 1.
    global_size : int
        Side of the 2 global crops in pixels (multiple of ``patch_size``).
    local_size : int
        Side of the local crops in pixels (multiple of ``patch_size``).
    n_local : int
        Local crops per image (DINO: 8).
    global_scale : list of float
        (min, max) area fraction of a global crop.
    local_scale : list of float
        (min, max) area fraction of a local crop.
    crop_norm : str
        How crops are normalised for the network: "imagenet" (the fixed ImageNet mean and std of the
        published recipe and the official teachers) or "standardize" (each crop to zero mean and
        unit variance). Sparse neuron MIPs need the latter: at initialisation the teacher's outputs
        for dark MIP crops differ ~10x less between images than for photographs (logit spread 0.007
        vs 0.064 with the ``cpu`` preset), far below the 0.04 temperature, and training collapses to
        a uniform output within ~40 steps; per-crop standardisation lifts the spread to 0.029.
    max_short_side : int or None
        Images whose shorter side is longer are shrunk to it once before training (antialiased), so
        that cropping large photos does not dominate a step; None = 2 x ``global_size`` (a crop of
        the minimum global scale then still has more pixels than the crop it is resized to).
    batch_size : int
        Images per step.
    steps : int
        Optimizer steps.
    lr : float
        Peak learning rate per 256 images (scaled linearly with ``batch_size``).
    min_lr : float
        Final learning rate of the cosine schedule.
    warmup_steps : int
        Linear learning-rate warm-up.
    weight_decay : float
        Weight decay at the start (cosine to ``weight_decay_end``).
    weight_decay_end : float
        Weight decay at the end.
    momentum_teacher : float
        EMA momentum at the start (cosine to 1).
    teacher_temp : float
        Teacher temperature after warm-up.
    warmup_teacher_temp : float
        Teacher temperature at step 0.
    warmup_teacher_temp_steps : int
        Steps of the linear temperature warm-up.
    student_temp : float
        Student temperature.
    center_momentum : float
        EMA momentum of the teacher-output centre.
    clip_grad : float
        Largest gradient norm per parameter tensor; 0 disables.
    freeze_last_layer_steps : int or None
        Steps during which the head's last layer is not updated; None = one pass over the images
        (DINO freezes it for the first epoch).
    from_stacks : bool
        3D stacks among the inputs are used through their projections.
    n_slabs : int
        Random thick-slab projections per stack (besides the three MIPs).
    seed : int
        Seed of weights, image order and augmentations.
    save_every : int
        Write the resumable training state every this many steps.
    device : str
        "auto", "cpu", "cuda" or "cuda:N".
    threads : int or None
        torch CPU threads during the run; None keeps torch's default.
    """

    arch: str = "vit_small"
    patch_size: int = 16
    drop_path: float = 0.1
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    global_size: int = 224
    local_size: int = 96
    n_local: int = 8
    global_scale: list[float] = dataclasses.field(default_factory=lambda: [0.4, 1.0])
    local_scale: list[float] = dataclasses.field(default_factory=lambda: [0.05, 0.4])
    crop_norm: str = "imagenet"
    max_short_side: int | None = None
    batch_size: int = 64
    steps: int = 10_000
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 1_000
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 3_000
    student_temp: float = 0.1
    center_momentum: float = 0.9
    clip_grad: float = 3.0
    freeze_last_layer_steps: int | None = None
    from_stacks: bool = False
    n_slabs: int = 4
    seed: int = 0
    save_every: int = 100
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self):
        for name, hint in field_types(type(self)).items():
            object.__setattr__(self, name, checked_value(name, getattr(self, name), hint))
        require(self.arch in ARCHES, "arch", f"should be one of {list(ARCHES)}", self.arch)
        for name in ("patch_size", "out_dim", "hidden_dim", "bottleneck_dim", "batch_size",
                     "steps", "save_every"):
            require(getattr(self, name) >= 1, name, "should be at least 1", getattr(self, name))
        for name in ("global_size", "local_size"):
            size = getattr(self, name)
            require(size >= self.patch_size and size % self.patch_size == 0, name,
                    f"should be a positive multiple of patch_size {self.patch_size}", size)
        for name in ("global_scale", "local_scale"):
            low_high = getattr(self, name)
            require(len(low_high) == 2 and 0 < low_high[0] <= low_high[1] <= 1, name,
                    "should be [min, max] area fractions with 0 < min <= max <= 1", low_high)
        for name in ("n_local", "warmup_steps", "warmup_teacher_temp_steps", "n_slabs", "seed"):
            require(getattr(self, name) >= 0, name, "should be >= 0", getattr(self, name))
        for name in ("lr", "teacher_temp", "warmup_teacher_temp", "student_temp"):
            value = getattr(self, name)
            require(value > 0 and math.isfinite(value), name, "should be positive", value)
        for name in ("min_lr", "weight_decay", "weight_decay_end", "clip_grad"):
            require(getattr(self, name) >= 0, name, "should be >= 0", getattr(self, name))
        for name in ("momentum_teacher", "center_momentum", "drop_path"):
            value = getattr(self, name)
            require(0 <= value < 1, name, "should be in [0, 1)", value)
        require(self.crop_norm in CROP_NORMS, "crop_norm", f"should be one of {CROP_NORMS}",
                self.crop_norm)
        require(self.max_short_side is None or self.max_short_side >= self.global_size,
                "max_short_side", f"should be >= global_size {self.global_size} or null",
                self.max_short_side)
        require(self.freeze_last_layer_steps is None or self.freeze_last_layer_steps >= 0,
                "freeze_last_layer_steps", "should be >= 0 or null",
                self.freeze_last_layer_steps)
        require(self.threads is None or self.threads >= 1, "threads", "should be >= 1 or null",
                self.threads)
        require(DEVICE_PATTERN.fullmatch(self.device) is not None, "device",
                'should be "auto", "cpu", "cuda" or "cuda:N"', self.device)

    @property
    def dims(self) -> tuple[int, int, int]:
        """(embed_dim, depth, num_heads) of the backbone."""
        return ARCHES[self.arch]

    @property
    def short_side(self) -> int:
        """The shorter side images are shrunk to before training."""
        return self.max_short_side or 2 * self.global_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PretrainConfig:
        """Build and check a config from a partial dict; unknown keys are named in the error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in data if k not in names]
        if unknown:
            raise InputError(f"unknown pretrain2d settings {unknown}; the settings are {names}.")
        return cls(**data)


def resolve_preset(preset: str) -> str:
    """``"auto"``: the paper's recipe where CUDA is available (it needs a GPU), else the CPU
    preset; any other name is returned as given.

    Examples
    --------
    >>> resolve_preset("cpu")
    'cpu'
    """
    if preset != "auto":
        return preset
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def resolve_config(preset: str | None = None, settings: Mapping[str, Any] | None = None,
                   overrides: Sequence[tuple[str, Any]] = ()) -> PretrainConfig:
    """The defaults, then ``preset``'s values, then ``settings``, then ``(key, value)`` pairs.

    Examples
    --------
    >>> resolve_config("cpu", {"steps": 10}).steps, resolve_config("cpu").arch
    (10, 'tiny')
    """
    if preset is not None and preset not in PRESETS:
        raise InputError(f"--preset should be one of {list(PRESETS)}, not {preset!r}.")
    data = dict(PRESETS.get(preset, {}))
    data.update({k: v for k, v in (settings or {}).items() if v is not None})
    data.update(dict(overrides))
    return PretrainConfig.from_dict(data)
