"""The DINO training loop and the files it writes.

For ``-o teacher.pth`` a run writes, next to each other:

- ``teacher.pth``: the EMA teacher's backbone in the official DINO layout (plain state dict,
  ``pos_embed`` on the official 14 x 14 grid of 224-pixel images), written once at the end;
  it loads wherever a downloaded DINO file does (``--teacher teacher.pth``, DINO's own code);
- ``teacher.train.pth``: the full training state (student and teacher with heads, optimizer,
  centre, random state, step) in the layout of DINO's ``checkpoint.pth``, for ``--resume``;
- ``teacher.yaml``: the resolved config, inputs and image count; ``teacher.csv``: per-step
  loss, teacher entropies (per image and of the batch mean) and schedules.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from dineuro import __version__
from dineuro.checkpoint import save_atomically
from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file
from dineuro.models.standardize import standardize_per_sample
from dineuro.models.vit2d import VisionTransformer2d, resize_pos_embed_2d
from dineuro.pretrain.augment import MultiCropAugment, collate_crops
from dineuro.pretrain.config import PretrainConfig
from dineuro.pretrain.dino import (
    DINOHead,
    DINOLoss,
    MultiCropNetwork,
    clip_gradients,
    cosine_schedule,
    ema_update,
    param_groups,
    teacher_entropy,
    teacher_temperatures,
)
from dineuro.pretrain.images import shrink
from dineuro.train.runtime import resolve_device

#: Grid of the official checkpoints' position embedding (224-pixel images at /16).
OFFICIAL_GRID = 14
#: Learning rates are given per this many images and scaled with the batch (DINO's rule).
LR_REFERENCE_BATCH = 256
CSV_COLUMNS = ("step", "loss", "teacher_entropy", "batch_entropy", "lr", "weight_decay", "momentum",
               "teacher_temp")

Progress = Callable[[int, int, float, float], None]


@dataclasses.dataclass(frozen=True)
class PretrainPaths:
    """The files of a run whose backbone goes to ``backbone``."""

    backbone: Path

    @property
    def state(self) -> Path:
        return self.backbone.with_suffix(".train.pth")

    @property
    def config(self) -> Path:
        return self.backbone.with_suffix(".yaml")

    @property
    def metrics(self) -> Path:
        return self.backbone.with_suffix(".csv")

    def all(self) -> tuple[Path, ...]:
        return self.backbone, self.state, self.config, self.metrics


@dataclasses.dataclass
class Schedules:
    """Per-step learning rate, weight decay, EMA momentum and teacher temperature."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    @classmethod
    def of(cls, config: PretrainConfig) -> Schedules:
        lr = config.lr * config.batch_size / LR_REFERENCE_BATCH
        return cls(
            lr=cosine_schedule(lr, config.min_lr, config.steps, config.warmup_steps),
            weight_decay=cosine_schedule(config.weight_decay, config.weight_decay_end,
                                         config.steps),
            momentum=cosine_schedule(config.momentum_teacher, 1.0, config.steps),
            teacher_temp=teacher_temperatures(config.warmup_teacher_temp, config.teacher_temp,
                                              config.warmup_teacher_temp_steps, config.steps))


def build_networks(config: PretrainConfig) -> tuple[MultiCropNetwork, MultiCropNetwork]:
    """(student, teacher): the same initial weights; only the student has stochastic depth."""
    embed_dim, depth, num_heads = config.dims

    def network(drop_path: float) -> MultiCropNetwork:
        backbone = VisionTransformer2d(img_size=config.global_size, patch_size=config.patch_size,
                                       embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                                       drop_path_rate=drop_path)
        head = DINOHead(embed_dim, config.out_dim, config.hidden_dim, config.bottleneck_dim,
                        norm_last_layer=config.norm_last_layer)
        return MultiCropNetwork(backbone, head)

    torch.manual_seed(config.seed)
    student = network(config.drop_path)
    teacher = network(0.0)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def official_backbone(backbone: VisionTransformer2d) -> dict[str, torch.Tensor]:
    """The backbone's state dict as the official files hold it (pos_embed on the 14 x 14 grid)."""
    state = {k: v.detach().to("cpu", torch.float32).clone()
             for k, v in backbone.state_dict().items()}
    state["pos_embed"] = resize_pos_embed_2d(state["pos_embed"], (OFFICIAL_GRID,) * 2)
    return state


def batch_indices(step: int, batch_size: int, n_images: int, seed: int) -> np.ndarray:
    """Images of ``step``: consecutive slices of a fresh seeded permutation per pass.

    A pure function of its arguments, so a resumed run sees the same images as an
    uninterrupted one without storing sampler state.
    """
    flat = np.arange(step * batch_size, (step + 1) * batch_size)
    passes, positions = np.divmod(flat, n_images)
    out = np.empty_like(flat)
    for p in np.unique(passes):
        order = np.random.default_rng([seed, int(p)]).permutation(n_images)
        out[passes == p] = order[positions[passes == p]]
    return out


def augment_batch(images: Sequence[np.ndarray], indices: np.ndarray, augment: MultiCropAugment,
                  step: int, seed: int, standardize: bool = False) -> list[torch.Tensor]:
    """Multi-crop views of the batch; crop ``k`` of every image stacked into one tensor.

    With ``standardize`` every crop is shifted and scaled to zero mean and unit variance
    (``augment`` should then leave the intensities as they are: mean 0, std 1).
    """
    views = []
    for j, index in enumerate(indices):
        state = np.random.SeedSequence([seed, step, j]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        views.append(augment(torch.from_numpy(images[index]), generator))
    crops = collate_crops(views)
    if standardize:
        crops = [standardize_per_sample(c) for c in crops]
    return crops


def pretrain(config: PretrainConfig, images: Sequence[np.ndarray], out: str | Path,
             inputs: Sequence[str] = (), resume: bool = False,
             progress: Progress | None = None) -> PretrainPaths:
    """Train a DINO ViT on ``images`` (float32 (1 or 3, H, W) in [0, 1]) and write the files.

    Parameters
    ----------
    config : PretrainConfig
        The run's settings.
    images : sequence of numpy.ndarray
        Training images, as :func:`dineuro.pretrain.images.collect_images` returns.
    out : str or Path
        Path of the backbone file (``.pth``); the other files go beside it.
    inputs : sequence of str, optional
        What the images were collected from, recorded in the YAML.
    resume : bool, optional
        Continue from ``OUT.train.pth`` (same config) instead of starting afresh.
    progress : Progress, optional
        Called after each step with (step, steps, loss, teacher entropy).

    Raises
    ------
    InputError
        No images, an existing run without ``resume`` (nothing is overwritten), a missing or
        different run with ``resume``, or a loss that became NaN.
    """
    paths = PretrainPaths(Path(out))
    if not images:
        raise InputError("there are no training images.")
    if paths.backbone.suffix != ".pth":
        raise InputError("the teacher file should end in .pth (the official DINO format).",
                         paths.backbone)
    _check_outputs(paths, resume)
    images = [shrink(image, config.short_side) for image in images]
    device = resolve_device(config.device)
    student, teacher = build_networks(config)
    student.to(device)
    teacher.to(device)
    loss_fn = DINOLoss(config.out_dim, student_temp=config.student_temp,
                       center_momentum=config.center_momentum).to(device)
    optimizer = torch.optim.AdamW(param_groups(student))
    schedules = Schedules.of(config)
    freeze_steps = (math.ceil(len(images) / config.batch_size)
                    if config.freeze_last_layer_steps is None else config.freeze_last_layer_steps)
    standardize = config.crop_norm == "standardize"
    plain = {"mean": (0.0,) * 3, "std": (1.0,) * 3} if standardize else {}
    augment = MultiCropAugment(global_size=config.global_size, local_size=config.local_size,
                               n_local=config.n_local, global_scale=tuple(config.global_scale),
                               local_scale=tuple(config.local_scale), **plain)
    start = 0
    if resume:
        start = _load_state(paths.state, config, student, teacher, loss_fn, optimizer)
    else:
        paths.backbone.parent.mkdir(parents=True, exist_ok=True)
        _write_yaml(paths.config, config, inputs, len(images))
    _truncate_csv(paths.metrics, start)

    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        student.train()
        teacher.train()  # no dropout or stochastic depth in the teacher: train == eval
        for step in range(start, config.steps):
            indices = batch_indices(step, config.batch_size, len(images), config.seed)
            crops = [c.to(device) for c in augment_batch(images, indices, augment, step,
                                                         config.seed, standardize)]
            temp = float(schedules.teacher_temp[step])
            with torch.no_grad():
                teacher_out = teacher(crops[:2])
            entropy, batch_entropy = teacher_entropy(teacher_out, loss_fn.center, temp)
            loss = loss_fn(student(crops), teacher_out, temp)
            if not math.isfinite(loss.item()):
                raise InputError(f"the DINO loss became {loss.item()} at step {step}; lower "
                                 "lr or raise warmup_steps.", paths.backbone)
            for i, group in enumerate(optimizer.param_groups):
                group["lr"] = float(schedules.lr[step])
                if i == 0:
                    group["weight_decay"] = float(schedules.weight_decay[step])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad:
                clip_gradients(student.parameters(), config.clip_grad)
            if step < freeze_steps:
                for p in student.head.last_layer.parameters():
                    p.grad = None
            optimizer.step()
            ema_update(teacher, student, float(schedules.momentum[step]))
            _append_csv(paths.metrics, step + 1, loss.item(), (entropy, batch_entropy),
                        schedules, step)
            done = step + 1
            if done % config.save_every == 0 or done == config.steps:
                _save_state(paths.state, done, config, student, teacher, loss_fn, optimizer)
            if progress is not None:
                progress(done, config.steps, loss.item(), entropy)
    finally:
        torch.set_num_threads(threads)
    save_atomically(official_backbone(teacher.backbone), paths.backbone)
    return paths


def _check_outputs(paths: PretrainPaths, resume: bool) -> None:
    if resume:
        if not paths.state.exists():
            raise InputError("has no training state to resume from; start without --resume.",
                             paths.state)
        if paths.backbone.exists():
            raise InputError("already exists: this run finished; pick another -o to train "
                             "another teacher.", paths.backbone)
        return
    existing = [p for p in paths.all() if p.exists()]
    if existing:
        raise InputError("already exists; pick another -o, or pass --resume to continue an "
                         "interrupted run.", existing[0])


def _write_yaml(path: Path, config: PretrainConfig, inputs: Sequence[str], n_images: int) -> None:
    record = {"config": config.to_dict(), "inputs": [str(i) for i in inputs],
              "n_images": n_images, "dineuro_version": __version__}
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False, default_flow_style=None))


def _save_state(path: Path, step: int, config: PretrainConfig, student: MultiCropNetwork,
                teacher: MultiCropNetwork, loss_fn: DINOLoss,
                optimizer: torch.optim.Optimizer) -> None:
    state = {"student": {f"module.{k}": v for k, v in student.state_dict().items()},
             "teacher": teacher.state_dict(), "optimizer": optimizer.state_dict(),
             "dino_loss": loss_fn.state_dict(), "step": step, "config": config.to_dict(),
             "torch_rng": torch.get_rng_state(), "dineuro_version": __version__}
    save_atomically(state, path)


def _load_state(path: Path, config: PretrainConfig, student: MultiCropNetwork,
                teacher: MultiCropNetwork, loss_fn: DINOLoss,
                optimizer: torch.optim.Optimizer) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file gets the same one sentence)
        raise InputError(f"cannot be read as a training state ({exc}).", path) from exc
    if state.get("config") != config.to_dict():
        changed = sorted(k for k, v in config.to_dict().items()
                         if state.get("config", {}).get(k) != v)
        raise InputError(f"was trained with other settings ({', '.join(changed)}); resume "
                         "with the settings of the interrupted run.", path)
    student.load_state_dict({k.removeprefix("module."): v for k, v in state["student"].items()})
    teacher.load_state_dict(state["teacher"])
    loss_fn.load_state_dict(state["dino_loss"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _append_csv(path: Path, step: int, loss: float, entropies: tuple[float, float],
                schedules: Schedules, index: int) -> None:
    row = [step, f"{loss:.6g}", *(f"{e:.6g}" for e in entropies), f"{schedules.lr[index]:.6g}",
           f"{schedules.weight_decay[index]:.6g}", f"{schedules.momentum[index]:.6g}",
           f"{schedules.teacher_temp[index]:.6g}"]
    with path.open("a", newline="") as f:
        csv.writer(f).writerow(row)


def _truncate_csv(path: Path, step: int) -> None:
    """Keep the header and the rows up to ``step`` (a resumed run re-does later steps)."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= step]
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
