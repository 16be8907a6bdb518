"""``adapt(config)``: self-training rounds on a lab's unlabelled stacks.

Each round labels the lab's stacks with the current network (:func:`label_stack`: predict as
``dineuro run`` does, trace, keep what both are sure of), then fine-tunes the network for
``steps`` steps on those labels mixed with synthetic crops (:mod:`dineuro.adapt.crops`,
:class:`~dineuro.adapt.loss.MaskedDiceCE`), with a fresh warm-up and decay per round, and ends
by keeping only ``blend`` of the weights' change from the starting network
(:func:`blend_weights`; weight-space ensembling, as WiSE-FT, Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022). On the shift benchmark
(``benchmarks/adapt_shift.py``) the fully fine-tuned network lost about 0.03 traced F1 on the
source domain, mostly precision; halfway weights kept most of the gain and lost a fifth of
that. The next round labels again with the blended network; the checkpoint written at the end
is the last round's.

Guard rails, after every round (and once before the first, as the reference):

- synthetic F1 and Dice: on the synthetic stacks not used for training (val and test
  splits), predicted with every window in float32 as training validates, the mean traced
  length F1 against their gold SWCs (:func:`dineuro.evaluate.compare_trees`) and the
  mean Dice of the map. If the F1 falls by more than ``guard_margin`` below the starting
  network's, an :class:`AdaptWarning` says so. F1 rather than Dice, because Dice also moves
  when the network only draws neurites thinner or fatter, which the trace does not mind.
- agreement: on the held-back lab stacks (never trained on), Dice of the network's map
  (>= ``fg_prob``) with their first-round pseudo-labels, over the voxels those labels decide.
  It tells whether the adapted network still finds what the starting one was sure of.

The run's folder ``WORK`` (``adapted.adapt/`` beside ``adapted.pt``):

- ``config.yaml``: the resolved :class:`AdaptConfig`.
- ``synthetic/``: the synthesised dataset mixed in (when ``synthetic`` is null).
- ``round_K/``: the pseudo-labels of round K, ``NAME_label.tif`` (uint8: 0 background,
  1 foreground, 2 ignored), the trace they came from ``NAME.swc`` (coordinates rounded to
  3 decimals, as every SWC dineuro writes), and ``labels.json`` (per
  stack: :class:`~dineuro.adapt.labels.LabelStats`; written last, so a round folder without
  it is relabelled on resume).
- ``metrics.csv``: round, step (within the round), lr, loss, seconds.
- ``rounds.json``: the guard rails before and after each round, with the hold-out split.
- ``state.pt``: weights, optimizer, scheduler and every random state, written every
  ``save_every`` steps and at the end of each round; ``resume=True`` continues from it exactly
  (the same weights as a run that was not interrupted), with the same settings but
  :data:`RESUMABLE`.
"""

from __future__ import annotations

import csv
import json
import math
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
from dineuro.adapt.labels import FOREGROUND, IGNORE, label_stats, pseudo_label
from dineuro.adapt.loss import MaskedDiceCE
from dineuro.checkpoint import load_checkpoint, load_model, resolve_model, save_checkpoint
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.evaluate import dice
from dineuro.io.atomic import atomic_file, naming
from dineuro.io.swc import SwcTree, write_swc
from dineuro.io.volume import Volume, read_volume, write_volume
from dineuro.train import runtime
from dineuro.train.data import Stack, load_stacks
from dineuro.train.loop import VAL_THRESHOLD, make_optimizer, train_step

CONFIG_FILE, METRICS_FILE, ROUNDS_FILE, STATE_FILE = ("config.yaml", "metrics.csv",
                                                      "rounds.json", "state.pt")
SYNTHETIC_DIR, LABELS_FILE = "synthetic", "labels.json"
METRICS_COLUMNS = ("round", "step", "lr", "loss", "seconds")
#: Settings a resumed run may change: where and how fast it runs, not what it computes.
RESUMABLE = ("device", "threads", "save_every")

#: ``progress(stage, done, total, loss)``: stage "labelling round K", "training round K" or
#: "checking"; ``loss`` only while training.
Progress = Callable[[str, int, int, "float | None"], None]


class AdaptWarning(UserWarning):
    """A guard rail tripped: the adapted network got worse on synthetic data."""


@dataclass
class AdaptResult:
    """What :func:`adapt` did.

    Attributes:
        out: the adapted checkpoint.
        work: the run's folder.
        rounds: per round, its guard rails (``synthetic_f1``, ``synthetic_dice``,
            ``agreement``).
        before: the guard rails of the starting network.
        seconds: wall time, across resumes.
        model: the adapted network.
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
    predicts and traces it (skipping windows without signal, in the CPU's fast precision)."""
    from dineuro.predict import sliding_window_predict
    from dineuro.trace import trace

    image = norm.normalize(raw)
    prob = sliding_window_predict(model, image, crop, overlap=config.overlap, device=device)
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


def traced_f1(prob: np.ndarray, spacing, gold: SwcTree) -> float:
    """Length F1 of the trace of ``prob`` against ``gold`` (0 for an empty or refused trace)."""
    from dineuro.evaluate import compare_trees
    from dineuro.trace import trace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = trace(prob, spacing)
        except InputError:
            return 0.0
    return compare_trees(tree, gold).f1 if len(tree) else 0.0


def agreement(prob: np.ndarray, label: np.ndarray, fg_prob: float) -> float | None:
    """Dice of ``prob >= fg_prob`` with the label's foreground, over the voxels the label
    decides (1.0 when both are empty there; None when it decides none)."""
    decided = label != IGNORE
    if not decided.any():
        return None
    ours = (prob >= fg_prob) & decided
    theirs = label == FOREGROUND
    total = int(ours.sum()) + int(theirs.sum())
    return 1.0 if total == 0 else 2.0 * int((ours & theirs).sum()) / total


def adapt(config: AdaptConfig, progress: Progress | None = None, resume: bool = False,
          fixed_labels: Mapping[str, np.ndarray] | None = None) -> AdaptResult:
    """Adapt a network to the lab's stacks as ``config`` says; see the module docstring.

    Args:
        config: the run.
        progress: see :data:`Progress`.
        resume: continue the run in ``config.work`` from its ``state.pt``.
        fixed_labels: labels (0/1 masks by stack name) to train on instead of pseudo-labels,
            every round: with gold masks this is the benchmark's ceiling, fine-tuning exactly
            as adapt does but on the truth.

    Raises:
        InputError: an unreadable or non-3D stack, two stacks of one name, an existing
            ``out``, a ``work`` folder that holds a run (without ``resume``) or none (with it).
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
            _truncate_metrics(self.work / METRICS_FILE, self.round, self.step)
            while self.step < config.steps:
                lr = scheduler.get_last_lr()[0]
                images, targets = crops.batch(config.batch_size)
                loss = train_step(self.model, loss_fn, optimizer, scheduler,
                                  images.to(self.device), targets.to(self.device),
                                  config.grad_clip)
                self.step += 1
                self.seconds = time.perf_counter() - self.started
                _append_metrics(self.work / METRICS_FILE, self.round, self.step, lr, loss,
                                self.seconds)
                self._report(f"training round {self.round}", self.step, config.steps, loss)
                if self.step % config.save_every == 0 and self.step < config.steps:
                    self._save_state(optimizer, scheduler, crops)
            blend_weights(self.model, self.start_weights, config.blend)
            self.history.append(self._check() | {"round": self.round})
            self._warn_if_worse(self.history[-1])
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
        return Stack(name, lab.raw, label, lab.limits, lab.spacing,
                     np.flatnonzero(label == FOREGROUND).astype(np.int64))

    # -- guard rails ----------------------------------------------------------------------
    def _check(self) -> dict:
        """Synthetic F1 and Dice, and hold-out agreement of the current network (with the
        hold-out stacks' first labels, which round 1's folder holds)."""
        from dineuro.predict import sliding_window_predict

        self._report("checking", 0, 1, None)
        result = self._synthetic_scores()
        scores = {}
        for name in self.held:
            lab = self.lab[name]
            first = read_volume(self.work / "round_1" / f"{name}_label.tif").array
            prob = sliding_window_predict(self.model, self.norm.normalize(lab.raw), self.crop,
                                          overlap=self.config.overlap, device=self.device)
            scores[name] = agreement(prob, first, self.config.fg_prob)
        known = [score for score in scores.values() if score is not None]
        result["agreement"] = float(np.mean(known)) if known else None
        result["agreement_per_stack"] = scores
        result["seconds"] = time.perf_counter() - self.started
        self._report("checking", 1, 1, None)
        return result

    def _synthetic_scores(self) -> dict[str, float | None]:
        """Mean traced F1 and map Dice on the held-back synthetic stacks (None without any)."""
        from dineuro.predict import sliding_window_predict

        f1s, dices = [], []
        for stack in self.synthetic_check:
            prob = sliding_window_predict(self.model, stack.normalized(), self.crop,
                                          overlap=self.config.overlap, device=self.device,
                                          precision="fp32", skip_empty=False)
            dices.append(dice(prob > VAL_THRESHOLD, stack.label))
            f1s.append(traced_f1(prob, stack.spacing, self.synthetic_trees[stack.name]))
        if not f1s:
            return {"synthetic_f1": None, "synthetic_dice": None}
        return {"synthetic_f1": float(np.mean(f1s)), "synthetic_dice": float(np.mean(dices))}

    def _warn_if_worse(self, checked: dict) -> None:
        before, after = self.before["synthetic_f1"], checked["synthetic_f1"]
        if before is not None and after < before - self.config.guard_margin:
            warnings.warn(f"after round {checked['round']} the network's traced F1 on held-back "
                          f"synthetic stacks fell from {before:.3f} to {after:.3f} (more than "
                          f"guard_margin {self.config.guard_margin:g}); it may have forgotten "
                          "what it knew: fewer steps, a lower lr or a larger synthetic_share "
                          "may help.", AdaptWarning, stacklevel=2)

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


@dataclass(frozen=True)
class LabStack:
    """One of the lab's stacks in memory: as stored, its normalisation limits and spacing."""

    raw: np.ndarray
    limits: tuple[float, float]
    spacing: tuple[float, float, float]


def read_lab_stacks(paths, norm: NormalizationConfig) -> dict[str, LabStack]:
    """Every stack read and checked before any work starts, by name (the file's stem)."""
    from dineuro.outputs import stack_name

    stacks = {}
    for path in paths:
        name = stack_name(path)
        if name in stacks:
            raise InputError(f"has the same name ({name}) as another stack; rename one.", path)
        volume = read_volume(path)
        if volume.array.ndim != 3:
            raise InputError(f"should be a 3D (z, y, x) stack, got shape {volume.array.shape}.",
                             path)
        try:
            limits = norm.limits(volume.array)
        except ValueError as exc:
            raise InputError(f"cannot be normalised: {exc}", path) from exc
        stacks[name] = LabStack(np.ascontiguousarray(volume.array), limits,
                                tuple(float(s) for s in volume.spacing))
    return stacks


def holdout_names(names: list[str], share: float, seed: int) -> list[str]:
    """The names held back from training: ``round(share * n)``, at least one when ``share``
    is positive and there are 3 or more stacks, never all of them; chosen by ``seed``.

    Examples::

        >>> holdout_names(["a", "b"], 0.2, 0), len(holdout_names(list("abcdefghij"), 0.2, 0))
        ([], 2)
    """
    if share <= 0 or len(names) < 2:
        return []
    count = min(max(round(share * len(names)), 1 if len(names) >= 3 else 0), len(names) - 1)
    chosen = np.random.default_rng([seed, len(names)]).choice(len(names), count, replace=False)
    return sorted(names[i] for i in chosen)


def synthetic_names(dataset) -> tuple[list[str], list[str]]:
    """(train names, check names: val and test) of the synthetic dataset."""
    split = dataset.split()
    if not split["train"]:
        raise InputError("has no train split to mix in.", dataset.root)
    return split["train"], split["val"] + split["test"]


def synthetic_dataset(work: Path, config: AdaptConfig):
    from dineuro.data.dataset import open_dataset

    return open_dataset(config.synthetic if config.synthetic is not None
                        else work / SYNTHETIC_DIR)


def atomic_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def _append_metrics(path: Path, round_: int, step: int, lr: float, loss: float,
                    seconds: float) -> None:
    new = not path.exists()
    with naming(path), path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(METRICS_COLUMNS)
        writer.writerow([round_, step, f"{lr:.6g}", f"{loss:.6f}" if math.isfinite(loss)
                         else "nan", f"{seconds:.2f}"])


def _truncate_metrics(path: Path, round_: int, step: int) -> None:
    """Drop rows after (round_, step): a resumed run redoes those steps."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if (int(row[0]), int(row[1])) <= (round_, step)]
    atomic_text(path, "".join(",".join(row) + "\n" for row in kept))
