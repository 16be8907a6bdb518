"""The main job on the embedded default: synthesise, train, predict, evaluate and picture.

Every stage writes under one folder and is skipped when its output is already there, so the demo
can be re-run (or resumed after an interruption) cheaply. The settings are chosen to finish in a
few minutes on two CPU cores: a ``tiny`` network trained from scratch on the ``small`` synthetic
set. That shows the whole pipeline working; it is not the accuracy the method reaches with a
DINO teacher and a real budget (see ``configs/``).
"""

from __future__ import annotations

from pathlib import Path

from dineuro.train.config import TrainConfig

#: Training budget of the demo (steps of batch 2 on 32^3 crops; about 0.3 s each on 2 cores).
DEMO_STEPS = 300


def demo_train_config(data: Path, run: Path) -> TrainConfig:
    """The demo's training run: tiny network from scratch, foreground-heavy crops."""
    return TrainConfig(data=str(data), out=str(run), size="tiny", transfer="scratch",
                       crop=[32, 32, 32], batch_size=2, steps=DEMO_STEPS, lr=2e-3,
                       warmup_steps=20, val_every=100, foreground_prob=0.8, device="auto",
                       tensorboard=False)
