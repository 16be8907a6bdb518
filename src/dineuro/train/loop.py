"""The training loop: one process, or several under ``torchrun`` with DistributedDataParallel.

One step draws ``batch_size`` augmented crops (:mod:`dineuro.train.data`), computes the loss
``config.loss`` on the network's two-class logits (:mod:`dineuro.train.losses`: MONAI's
``DiceCELoss``, optionally plus soft-clDice), clips the gradient norm and takes an AdamW step
(:mod:`dineuro.train.optimizer`); the learning rate follows
:func:`~dineuro.train.optimizer.lr_factor` through ``LambdaLR``. Every ``val_every`` steps and
at the last step, each whole validation stack is predicted, thresholded at 0.5 and scored by
Dice (:mod:`dineuro.train.validation`); ``best.pt`` keeps the highest mean, ``last.pt`` the
latest weights plus everything a resumed run needs.

The run folder ``OUT`` holds ``config.yaml``, ``metrics.csv``, ``best.pt``, ``last.pt`` and
``tensorboard/`` (:mod:`dineuro.train.run_folder` says what each holds).

Reproducibility. Weights are initialised after ``torch.manual_seed(seed)``; the crops of
process ``rank`` come from ``numpy.random.default_rng([seed, rank])`` and each crop's MONAI
transforms are re-seeded from that generator, so two runs with the same config give the same
weights (on the same machine, thread count and library versions). ``last.pt`` stores the step,
optimizer, scheduler and, for every process, the python, numpy, torch (and CUDA) and crop-
generator states; resuming restores all of them, so an interrupted run continues as if it had
not stopped. ``last.pt`` is written at validation steps only: a resumed run redoes the steps
after the last validation and replaces their rows in ``metrics.csv``. Raising ``steps`` on
resume stretches the learning-rate schedule from that step on (it depends on the total).

Interruptions. A validation step writes, in this order, its row of ``metrics.csv`` (with its
val_dice), ``best.pt`` (when the Dice improved) and ``last.pt``, each ``.pt`` atomically. A run
killed anywhere thus leaves no row missing before ``last.pt``'s step, and a resume drops the
rows after it, so ``metrics.csv`` always matches the resumed run. ``best.pt`` goes before
``last.pt`` so that ``last.pt`` never records a best step whose ``best.pt`` is missing; a kill
between the two leaves a ``best.pt`` that the resumed run writes again at that step. A run folder
without ``last.pt`` never reached a checkpoint and holds nothing worth keeping: ``train``, and
``train`` with ``resume`` (with a warning), start it again from step 0, removing its
``metrics.csv``, ``tensorboard/`` and ``best.pt`` (a kill between the first ``best.pt`` and
``last.pt`` leaves one). A folder with ``last.pt`` is only ever resumed. Every start removes the
temporary files a killed write left.

Distributed. Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is gloo on CPU and NCCL
on CUDA (one GPU per local rank); every process draws its own crops, DDP averages gradients,
only rank 0 validates and writes files, and the others wait for it.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dineuro.checkpoint import load_checkpoint, save_checkpoint
from dineuro.data.dataset import open_dataset
from dineuro.errors import InputError
from dineuro.train import runtime
from dineuro.train.config import TrainConfig
from dineuro.train.data import TrainingCrops, load_stacks
from dineuro.train.losses import make_loss
from dineuro.train.optimizer import make_optimizer, train_step
from dineuro.train.run_folder import (
    BEST,
    CONFIG_FILE,
    LAST,
    METRICS_FILE,
    append_metrics,
    prepare_out,
    tensorboard_writer,
)
from dineuro.train.validation import validate

#: Config keys that may change when a run is resumed; any other change is refused, because the
#: continued run would no longer be the run that ``OUT`` describes.
RESUMABLE_CHANGES = ("steps", "val_every", "device", "tensorboard", "threads")

Progress = Callable[[int, int, float, "float | None"], None]


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    out : Path
        The run folder.
    steps : int
        Optimizer steps done (all of them, across resumes).
    loss : float
        Training loss of the last step (mean over processes).
    best_val_dice : float or None
        Highest mean validation Dice, or None without a val split.
    best_step : int or None
        Step of ``best_val_dice``.
    last_val_dice : float or None
        Mean validation Dice at the last validation.
    best : Path or None
        Path of ``best.pt`` (None without a val split).
    last : Path
        Path of ``last.pt``.
    seconds : float
        Wall time of the run, across resumes.
    world_size : int
        Number of processes.
    model : torch.nn.Module
        The trained network (final weights, not the best; unwrapped from DDP).
    """

    out: Path
    steps: int
    loss: float
    best_val_dice: float | None
    best_step: int | None
    last_val_dice: float | None
    best: Path | None
    last: Path
    seconds: float
    world_size: int
    model: nn.Module = field(repr=False)


def train(config: TrainConfig, progress: Progress | None = None,
          resume: bool = False) -> TrainResult:
    """Train a network as ``config`` says and write the run folder ``config.out``.

    Runs in one process, or in each process of ``torchrun --nproc_per_node N`` (detected from
    ``WORLD_SIZE``; the process group is created here if the caller has not).

    Parameters
    ----------
    config : TrainConfig
        The run (:class:`TrainConfig`, e.g. from :func:`load_config`).
    progress : Progress, optional
        Called after every step as ``progress(step, total, loss, val_dice)``; ``val_dice`` is None
        except at validation steps.
    resume : bool, optional
        Continue the run in ``config.out`` from its ``last.pt``; only :data:`RESUMABLE_CHANGES` may
        differ from its stored config. Without ``last.pt`` the run starts from step 0, with a
        warning.

    Returns
    -------
    TrainResult
        A :class:`TrainResult` (in every process).

    Raises
    ------
    InputError
        A bad dataset, model option or teacher; ``config.out`` holding a ``last.pt`` without
        ``resume``.
    """
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with runtime.distributed(config.device) as (rank, world, device):
            return _Run(config, rank, world, device, progress).run(resume)
    finally:
        torch.set_num_threads(threads)


class _Run:
    """State of one training run in one process."""

    def __init__(self, config: TrainConfig, rank: int, world: int, device: torch.device,
                 progress: Progress | None):
        self.config, self.rank, self.world, self.device = config, rank, world, device
        self.progress, self.out = progress, Path(config.out)
        self.main = rank == 0

    # -- set-up ---------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        config = self.config
        checkpoint = self._check_out(resume)
        self._barrier()  # every process has looked at OUT before rank 0 writes there
        if checkpoint is not None:
            _check_resumable(config, checkpoint.get("train_config", {}), self.out / LAST)
        train_stacks, val_stacks, roots = [], [], set()
        for folder in (config.data, *config.extra_data):
            dataset = open_dataset(folder)
            if dataset.root.resolve() in roots:
                raise InputError("is named twice in data and extra_data; its stacks would count "
                                 "twice.", dataset.root)
            roots.add(dataset.root.resolve())
            split = dataset.split()
            if not split["train"]:
                raise InputError("has an empty train split in split.json.", dataset.root)
            train_stacks += load_stacks(dataset, split["train"], config.normalization)
            if self.main:
                val_stacks += load_stacks(dataset, split["val"], config.normalization)
        spacing = [float(s) for s in np.median([s.spacing for s in train_stacks], axis=0)]

        runtime.seed_everything(config.seed)
        from dineuro.models.build import build_model

        teacher = config.teacher
        if teacher is not None and config.transfer != "scratch":
            from dineuro.models.weights import find_weights

            teacher = str(find_weights(teacher))  # a registry name (dino_vits16) or a path
        if config.init is None:
            model = build_model(config.size, config.transfer, teacher=teacher,
                                crop=config.crop, **config.model_options)
        elif checkpoint is not None:  # last.pt holds the network; init need not exist any more
            from dineuro.checkpoint import build_network

            model = build_network(checkpoint["model_config"])
        else:
            from dineuro.train.warm_start import warm_start_model

            model = warm_start_model(config)
        self.crop = tuple(model.config["crop"])
        runtime.seed_everything(config.seed + self.rank)  # per-process dropout / drop-path masks
        crops = TrainingCrops(train_stacks, self.crop, config.foreground_prob, config.augment,
                              np.random.default_rng([config.seed, self.rank]))
        model.to(self.device)
        optimizer, scheduler = make_optimizer(model, config)
        net = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model, self.net, self.optimizer, self.scheduler = model, net, optimizer, scheduler
        self.crops, self.val_stacks = crops, val_stacks
        self.meta = {"normalization": config.normalization.to_dict(), "spacing": spacing,
                     "train_config": config.to_dict()}
        self.step, self.seconds = 0, 0.0
        self.best_dice: float | None = None
        self.best_step: int | None = None
        self.last_dice: float | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        if self.main:
            prepare_out(self.out, self.step)
            config.save(self.out / CONFIG_FILE)
        self._barrier()
        return self._loop()

    def _check_out(self, resume: bool) -> dict | None:
        """The checkpoint to continue from, or None to start from step 0.

        Only ``last.pt`` makes a run worth continuing: a folder without it is started again,
        ``resume`` or not, and one with it is never overwritten by a fresh start. A folder
        whose ``best.pt`` or ``metrics.csv`` has no ``config.yaml`` beside it was not made by
        a run (config.yaml is written first), so nothing in it is removed.
        """
        last = self.out / LAST
        if last.exists():
            if not resume:
                raise InputError("already holds a training run; resume it or choose another "
                                 "out folder.", self.out)
            return load_checkpoint(last)
        stray = [name for name in (BEST, METRICS_FILE) if (self.out / name).exists()]
        if stray and not (self.out / CONFIG_FILE).exists():  # not ours: never remove it
            raise InputError(f"holds {' and '.join(stray)} but no {CONFIG_FILE}, so it is not a "
                             "training run that dineuro could start again; choose another out "
                             "folder.", self.out)
        if resume and self.main:  # one warning per run, not one per process
            warnings.warn(f"{self.out} holds no {LAST} yet: the run stopped before its first "
                          "checkpoint, so it starts from step 0.", UserWarning, stacklevel=3)
        return None

    def _restore(self, checkpoint: dict) -> None:
        state = checkpoint.get("resume")
        if state is None:
            raise InputError(f"has no resume state (is it a {BEST}?).", self.out / LAST)
        self.model.load_state_dict(checkpoint["state_dict"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.seconds = int(checkpoint["step"]), float(state["seconds"])
        self.best_dice, self.best_step = state["best_val_dice"], state["best_step"]
        self.last_dice = checkpoint.get("val_dice")
        randomness = state["random"]
        if len(randomness) == self.world:
            runtime.set_random_state(randomness[self.rank], self.crops)
        else:  # another process count: the crops cannot continue exactly; reseed per rank
            warnings.warn(f"{self.out / LAST} was written by {len(randomness)} processes and is "
                          f"resumed by {self.world}; random crops are reseeded, so the run does "
                          "not continue exactly.", stacklevel=3)
            runtime.seed_everything(self.config.seed + self.rank + self.step)
            self.crops.rng = self.crops.sampler.rng = np.random.default_rng(
                [self.config.seed, self.rank, self.step])

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> TrainResult:
        config = self.config
        loss_fn = make_loss(config.loss, config.cldice_weight, config.cldice_iterations,
                            config.skeleton_recall_weight)
        amp_device = None
        if config.amp == "bf16":
            if self.device.type == "cuda":
                amp_device = "cuda"
            else:
                warnings.warn("amp: bf16 is only used on CUDA; training on CPU in float32.",
                              stacklevel=3)
        writer = tensorboard_writer(self.out) if self.main and config.tensorboard else None
        loss = math.nan
        last_dice = self.last_dice
        started = time.perf_counter() - self.seconds
        try:
            while self.step < config.steps:
                lr = self.scheduler.get_last_lr()[0]
                images, labels = self.crops.batch(config.batch_size)
                loss = train_step(self.net, loss_fn, self.optimizer, self.scheduler,
                                  images.to(self.device), labels.to(self.device),
                                  config.grad_clip, amp_device)
                loss = self._mean(loss)
                self.step += 1
                val_dice = None
                validation_step = self.step % config.val_every == 0 or self.step == config.steps
                if validation_step:
                    val_dice = last_dice = self._validate(amp_device is not None)
                self.seconds = time.perf_counter() - started  # the row and last.pt both keep it
                if self.main:
                    append_metrics(self.out / METRICS_FILE, self.step, lr, loss, val_dice,
                                   self.seconds)
                    if writer is not None:
                        writer.add_scalar("train/loss", loss, self.step)
                        writer.add_scalar("train/lr", lr, self.step)
                        if val_dice is not None:
                            writer.add_scalar("val/dice", val_dice, self.step)
                if validation_step:  # after the row: a resume drops rows after last.pt's step
                    self._save(val_dice)
                if self.progress is not None:
                    self.progress(self.step, config.steps, loss, val_dice)
        finally:
            if writer is not None:
                writer.close()
        self._barrier()
        has_val = self.best_step is not None
        return TrainResult(
            out=self.out, steps=self.step, loss=loss, best_val_dice=self.best_dice,
            best_step=self.best_step, last_val_dice=last_dice,
            best=self.out / BEST if has_val else None, last=self.out / LAST,
            seconds=self.seconds, world_size=self.world, model=self.model)

    def _validate(self, amp: bool) -> float | None:
        """Mean val Dice on rank 0, shared with every process (None without a val split)."""
        value = None
        if self.main and self.val_stacks:
            value = validate(self.model, self.val_stacks, self.crop, self.config.val_overlap,
                             self.device, amp)
        if self.world > 1:
            box = [value]
            torch.distributed.broadcast_object_list(box, src=0)
            value = box[0]
        return value

    def _save(self, val_dice: float | None) -> None:
        """Gather every process's random state; rank 0 writes best.pt (if better), then last.pt."""
        randomness = runtime.random_state(self.crops)
        if self.world > 1:
            gathered = [None] * self.world
            torch.distributed.all_gather_object(gathered, randomness)
        else:
            gathered = [randomness]
        improved = val_dice is not None and (self.best_dice is None or val_dice > self.best_dice)
        if improved:
            self.best_dice, self.best_step = val_dice, self.step
        if self.main:
            common = dict(self.meta, step=self.step, val_dice=val_dice)
            if improved:
                save_checkpoint(self.out / BEST, self.model, **common)
            save_checkpoint(self.out / LAST, self.model, **common, resume={
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "random": gathered, "seconds": self.seconds,
                "best_val_dice": self.best_dice, "best_step": self.best_step})
        self._barrier()

    def _mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def _barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _check_resumable(config: TrainConfig, stored: dict, path: Path) -> None:
    # A key missing from the stored config is newer than the run, which therefore used the
    # key's default (e.g. ``loss``: runs before it trained with "dice_ce").
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(TrainConfig)
                if not (f.default is f.default_factory is dataclasses.MISSING)}
    stored = {**defaults, **stored}
    current = config.to_dict()
    changed = sorted(key for key in set(current) | set(stored)
                     if key not in RESUMABLE_CHANGES and current.get(key) != stored.get(key))
    if changed:
        raise InputError(f"was trained with other settings of {changed}; a resumed run may "
                         f"change only {list(RESUMABLE_CHANGES)}.", path)
