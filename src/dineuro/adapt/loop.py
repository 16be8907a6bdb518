"""``adapt(config)``: self-training rounds on a lab's unlabelled stacks.

Each round labels the lab's stacks with the current network (:func:`label_stack`: predict as
``dineuro run`` does, with ``background_view`` through its second view too, trace, keep what
both are sure of), then fine-tunes the network for ``steps`` steps on those labels mixed with
synthetic crops (:mod:`dineuro.adapt.crops`, :class:`~dineuro.adapt.loss.MaskedDiceCE`), with
a fresh warm-up and decay per round, and ends by keeping only ``blend`` of the weights' change
from the starting network (:func:`blend_weights`; weight-space ensembling, as WiSE-FT,
Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). On the shift benchmark
(``benchmarks/adapt_shift.py``) the fully fine-tuned network lost about 0.03 traced F1 on the
source domain, mostly precision; halfway weights kept most of the gain and lost a fifth of
that. The next round labels again with the blended network; the checkpoint written at the end
is the last round's.

Guard rails are checked after every round, and once before the first as the reference
(:mod:`dineuro.adapt.guards`). The stacks are read and checked before any work starts
(:mod:`dineuro.adapt.stacks`). Everything a run writes, and what an interrupted run resumes
from, is in its folder (:mod:`dineuro.adapt.run_folder`).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from dineuro.adapt.config import AdaptConfig
from dineuro.adapt.crops import MixedCrops
from dineuro.adapt.guards import agreement, synthetic_scores, warn_if_worse
from dineuro.adapt.labels import FOREGROUND, IGNORE, label_stats, pseudo_label
from dineuro.adapt.loss import MaskedDiceCE
from dineuro.adapt.run_folder import (
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    ROUNDS_FILE,
    STATE_FILE,
    SYNTHETIC_DIR,
    append_metrics,
    atomic_text,
    truncate_metrics,
)
from dineuro.adapt.stacks import (
    holdout_names,
    read_lab_stacks,
    synthetic_dataset,
    synthetic_names,
)
from dineuro.checkpoint import load_checkpoint, load_model, resolve_model, save_checkpoint
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.volume import Volume, read_volume, write_volume
from dineuro.predict import predict_raw, views_of
from dineuro.train import runtime
from dineuro.train.data import Stack, crop_source, load_stacks
from dineuro.train.optimizer import make_optimizer, train_step

#: Settings a resumed run may change: where and how fast it runs, not what it computes.
RESUMABLE = ("device", "threads", "save_every")

#: ``progress(stage, done, total, loss)``: stage "labelling round K", "training round K" or
#: "checking"; ``loss`` only while training.
Progress = Callable[[str, int, int, "float | None"], None]


@dataclass
class AdaptResult:
    """What :func:`adapt` did.

    Attributes
    ----------
    out : Path
        The adapted checkpoint.
    work : Path
        The run's folder.
    rounds : list of dict
        Per round, its guard rails (``synthetic_f1``, ``synthetic_dice``, ``agreement``).
    before : dict
        The guard rails of the starting network.
    seconds : float
        Wall time, across resumes.
    model : torch.nn.Module
        The adapted network.
    """

    out: Path
    work: Path
    rounds: list[dict]
    before: dict
    seconds: float
    model: torch.nn.Module = field(repr=False)


def label_stack(model, crop, raw: np.ndarray, spacing, norm: NormalizationConfig,
                config: AdaptConfig, device) -> tuple[np.ndarray, SwcTree, np.ndarray]:
    """(pseudo-label, traced tree, probability map) of one raw stack, as ``dineuro run``
    predicts and traces it (skipping windows without signal, in the CPU's fast precision;
    with ``config.background_view``, through both views)."""
    from dineuro.trace import trace

    image = norm.normalize(raw)
    prob = predict_raw(model, raw, crop, norm, background_view=config.background_view,
                       overlap=config.overlap, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty trace labels no foreground; stats say so
        try:
            tree = trace(prob, spacing)
        except InputError:  # a map that is mostly foreground: no trace, nothing is sure
            tree = None
    if tree is None:
        tree = SwcTree(ids=[], types=[], xyz=np.zeros((0, 3)), radius=[], parents=[])
        return np.full(prob.shape, IGNORE, np.uint8), tree, prob
    return pseudo_label(prob, tree, spacing, config.fg_prob, config.bg_prob, config.margin,
                        config.core, image), tree, prob


def blend_weights(model: torch.nn.Module, start: Mapping[str, torch.Tensor],
                  blend: float) -> None:
    """Move ``model``'s floating-point weights back to ``start + blend * (weights - start)``,
    in place (integer buffers stay); ``blend`` 1 leaves them exactly as they are."""
    if blend == 1:
        return
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(start[key] + blend * (value - start[key]))


def adapt(config: AdaptConfig, progress: Progress | None = None, resume: bool = False,
          fixed_labels: Mapping[str, np.ndarray] | None = None) -> AdaptResult:
    """Adapt a network to the lab's stacks as ``config`` says; see the module docstring.

    Parameters
    ----------
    config : AdaptConfig
        The run.
    progress : Progress, optional
        See :data:`Progress`.
    resume : bool, optional
        Continue the run in ``config.work`` from its ``state.pt``.
    fixed_labels : mapping of str to ndarray, optional
        Labels (0/1 masks by stack name) to train on instead of pseudo-labels, every round: with
        gold masks this is the benchmark's ceiling, fine-tuning exactly as adapt does but on the
        truth.

    Returns
    -------
    AdaptResult
        The adapted checkpoint, the run's folder and its guard rails.

    Raises
    ------
    InputError
        An unreadable or non-3D stack, two stacks of one name, an existing ``out``, a ``work``
        folder that holds a run (without ``resume``) or none (with it).
    """
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _Adaptation(config, progress, fixed_labels).run(resume)
    finally:
        torch.set_num_threads(threads)


class _Adaptation:
    """State of one adaptation run."""

    def __init__(self, config: AdaptConfig, progress: Progress | None,
                 fixed_labels: Mapping[str, np.ndarray] | None):
        self.config, self.progress, self.fixed = config, progress, fixed_labels
        self.work, self.out = config.work, Path(config.out)

    # -- set-up ---------------------------------------------------------------------------
    def run(self, resume: bool) -> AdaptResult:
        config = self.config
        state = self._check_out(resume)
        self.device = runtime.resolve_device(config.device)
        self.model, meta = load_model(resolve_model(config.model), self.device)
        self.start_weights = {key: value.detach().clone()
                              for key, value in self.model.state_dict().items()}
        self.meta = {key: meta[key] for key in ("normalization", "spacing", "train_config")
                     if key in meta}
        self.crop = tuple(meta["model_config"]["crop"])
        self.norm = NormalizationConfig.from_dict(meta["normalization"])
        views_of(self.norm, config.background_view)  # refused before any reading or writing
        self.lab = read_lab_stacks(config.stacks, self.norm)
        self._check_fixed_labels()
        if config.synthetic is not None:
            synthetic_names(synthetic_dataset(self.work, config))  # checked before any writing
        self.held = holdout_names(sorted(self.lab), config.holdout, config.seed)
        self.history: list[dict] = []
        self.round, self.step, self.seconds = 1, 0, 0.0
        self.before: dict | None = None
        if state is not None:
            self._restore_weights(state)
        else:  # from here on an interrupted run can be resumed
            self.work.mkdir(parents=True)
            atomic_text(self.work / CONFIG_FILE, config.to_yaml())
            self._save_state(None, None, None)
        self.started = time.perf_counter() - self.seconds
        dataset = self._synthetic()
        train_names, check_names = synthetic_names(dataset)
        self.synthetic_train = load_stacks(dataset, train_names, self.norm)
        self.synthetic_check = load_stacks(dataset, check_names, self.norm)
        self.synthetic_trees = {name: dataset.tree(name) for name in check_names}
        if self.before is None:
            self._labels(1)
            self.before = self._check()
            self._save_state(None, None, None)
        return self._rounds(state)

    def _check_fixed_labels(self) -> None:
        if self.fixed is None:
            return
        for name, lab in self.lab.items():
            if name not in self.fixed:
                raise InputError(f"fixed_labels has no label for stack {name!r}.")
            if np.shape(self.fixed[name]) != lab.raw.shape:
                raise InputError(f"the fixed label of {name!r} has shape "
                                 f"{np.shape(self.fixed[name])}, its stack {lab.raw.shape}.")

    def _check_out(self, resume: bool) -> dict | None:
        if self.out.exists():
            raise InputError("already exists; adapt never overwrites a checkpoint.", self.out)
        state = self.work / STATE_FILE
        if resume:
            if not state.exists():
                raise InputError(f"holds no {STATE_FILE} to resume from.", self.work)
            self._check_same_run()
            return load_checkpoint(state)
        if self.work.exists():
            raise InputError("already holds an adapt run; resume it (--resume) or choose "
                             "another output.", self.work)
        return None

    def _check_same_run(self) -> None:
        """A resumed run must be the run its folder describes, up to :data:`RESUMABLE`."""
        stored = yaml.safe_load((self.work / CONFIG_FILE).read_text())
        ours = self.config.to_dict()
        changed = sorted(key for key in set(stored) | set(ours)
                         if key not in RESUMABLE and stored.get(key) != ours.get(key))
        if changed:
            raise InputError(f"holds a run with other settings of {changed}; resume it with "
                             f"the same ones (see its {CONFIG_FILE}).", self.work)

    def _synthetic(self):
        """The synthetic dataset mixed in, synthesised into the run folder if needed."""
        config = self.config
        if config.synthetic is None and not (self.work / SYNTHETIC_DIR).exists():
            from dataclasses import replace

            from dineuro.data.synth import PRESETS, write_synthetic_dataset

            synth = replace(PRESETS[config.synthetic_preset],
                            n_stacks=config.synthetic_stacks, seed=config.seed)
            write_synthetic_dataset(self.work / SYNTHETIC_DIR, synth)  # atomic: all or nothing
        return synthetic_dataset(self.work, config)

    def _restore_weights(self, state: dict) -> None:
        self.model.load_state_dict(state["state_dict"], strict=True)
        saved = state["resume"]
        if saved["fixed_labels"] != (self.fixed is not None):
            raise InputError("was started with" + ("" if saved["fixed_labels"] else "out")
                             + " fixed labels; resume it the same way.", self.work)
        self.round, self.step = int(saved["round"]), int(saved["step"])
        self.seconds, self.history = float(saved["seconds"]), list(saved["history"])
        self.before = saved["before"]
        self.saved = saved

    # -- rounds ---------------------------------------------------------------------------
    def _rounds(self, state: dict | None) -> AdaptResult:
        config = self.config
        loss_fn = MaskedDiceCE()
        while self.round <= config.rounds:
            labels = self._labels(self.round)
            lab = [self._stack(name, labels[name]) for name in sorted(self.lab)
                   if name not in self.held]
            runtime.seed_everything(config.seed + self.round)
            crops = MixedCrops(lab, self.synthetic_train, self.crop, config.synthetic_crops,
                               config.foreground_prob,
                               np.random.default_rng([config.seed, self.round]))
            optimizer, scheduler = make_optimizer(self.model, config)
            if state is not None and self.step > 0:
                optimizer.load_state_dict(self.saved["optimizer"])
                scheduler.load_state_dict(self.saved["scheduler"])
                runtime.set_random_state(self.saved["random"], crops)
            state = None
            truncate_metrics(self.work / METRICS_FILE, self.round, self.step)
            while self.step < config.steps:
                lr = scheduler.get_last_lr()[0]
                images, targets = crops.batch(config.batch_size)
                loss = train_step(self.model, loss_fn, optimizer, scheduler,
                                  images.to(self.device), targets.to(self.device),
                                  config.grad_clip)
                self.step += 1
                self.seconds = time.perf_counter() - self.started
                append_metrics(self.work / METRICS_FILE, self.round, self.step, lr, loss,
                               self.seconds)
                self._report(f"training round {self.round}", self.step, config.steps, loss)
                if self.step % config.save_every == 0 and self.step < config.steps:
                    self._save_state(optimizer, scheduler, crops)
            blend_weights(self.model, self.start_weights, config.blend)
            self.history.append(self._check() | {"round": self.round})
            warn_if_worse(self.before, self.history[-1], self.config.guard_margin)
            self.round, self.step = self.round + 1, 0
            self._save_state(None, None, None)
        return self._finish()

    def _labels(self, round_: int) -> dict[str, np.ndarray]:
        """The pseudo-labels of ``round_``, read back when the round folder is complete."""
        folder = self.work / f"round_{round_}"
        names = sorted(self.lab)
        if (folder / LABELS_FILE).exists():
            return {name: read_volume(folder / f"{name}_label.tif").array for name in names}
        if folder.exists():  # labelling was interrupted: start the round's labels afresh
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        labels, stats = {}, {}
        for done, name in enumerate(names):
            raw, spacing = self.lab[name].raw, self.lab[name].spacing
            if self.fixed is not None:
                label = np.asarray(self.fixed[name], dtype=np.uint8)
                stats[name] = {"foreground": int((label == FOREGROUND).sum()),
                               "voxels": int(label.size), "fixed": True}
            else:
                label, tree, prob = label_stack(self.model, self.crop, raw, spacing, self.norm,
                                                self.config, self.device)
                write_swc(folder / f"{name}.swc", tree, allow_empty=True)
                stats[name] = label_stats(label, prob, tree, self.config.fg_prob).to_dict()
            write_volume(folder / f"{name}_label.tif", Volume(label, spacing))
            labels[name] = label
            self._report(f"labelling round {round_}", done + 1, len(names), None)
        atomic_text(folder / LABELS_FILE, json.dumps(stats, indent=2) + "\n")
        return labels

    def _stack(self, name: str, label: np.ndarray) -> Stack:
        lab = self.lab[name]
        raw, limits = crop_source(lab.raw, lab.limits, self.norm)
        return Stack(name, raw, label, limits, lab.spacing,
                     np.flatnonzero(label == FOREGROUND).astype(np.int64))

    # -- guard rails ----------------------------------------------------------------------
    def _check(self) -> dict:
        """Synthetic F1 and Dice, and hold-out agreement of the current network (with the
        hold-out stacks' first labels, which round 1's folder holds; through the views the
        labels were made with)."""
        self._report("checking", 0, 1, None)
        result = synthetic_scores(self.model, self.synthetic_check, self.synthetic_trees,
                                  self.crop, self.config.overlap, self.device)
        scores = {}
        for name in self.held:
            lab = self.lab[name]
            first = read_volume(self.work / "round_1" / f"{name}_label.tif").array
            prob = predict_raw(self.model, lab.raw, self.crop, self.norm,
                               background_view=self.config.background_view,
                               overlap=self.config.overlap, device=self.device)
            scores[name] = agreement(prob, first, self.config.fg_prob)
        known = [score for score in scores.values() if score is not None]
        result["agreement"] = float(np.mean(known)) if known else None
        result["agreement_per_stack"] = scores
        result["seconds"] = time.perf_counter() - self.started
        self._report("checking", 1, 1, None)
        return result

    # -- files ----------------------------------------------------------------------------
    def _save_state(self, optimizer, scheduler, crops: MixedCrops | None) -> None:
        """state.pt (weights, position, history; optimizer and random states mid-round),
        then rounds.json mirroring it."""
        resume = {"round": self.round, "step": self.step, "seconds": self.seconds,
                  "history": self.history, "before": self.before,
                  "fixed_labels": self.fixed is not None}
        if optimizer is not None:
            resume |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "random": runtime.random_state(crops)}
        save_checkpoint(self.work / STATE_FILE, self.model, **self.meta, resume=resume)
        atomic_text(self.work / ROUNDS_FILE, json.dumps(
            {"held_out": self.held, "before": self.before, "rounds": self.history},
            indent=2) + "\n")

    def _finish(self) -> AdaptResult:
        last = self.history[-1] if self.history else self.before
        save_checkpoint(self.out, self.model, **self.meta, adapt_config=self.config.to_dict(),
                        step=self.config.steps * self.config.rounds,
                        val_dice=last["synthetic_dice"])
        return AdaptResult(out=self.out, work=self.work, rounds=self.history,
                           before=self.before, seconds=self.seconds, model=self.model)

    def _report(self, stage: str, done: int, total: int, loss: float | None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total, loss)
