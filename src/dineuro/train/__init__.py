"""Training: ``train(config)`` turns a dataset folder into a run folder with checkpoints.

- :mod:`dineuro.train.config`: :class:`TrainConfig` and :func:`load_config` (YAML + overrides).
- :mod:`dineuro.train.data`: stacks in memory, foreground-biased crops, augmentations.
- :mod:`dineuro.train.losses`: the training loss (Dice + cross-entropy, optionally soft-clDice).
- :mod:`dineuro.train.optimizer`: AdamW, its learning-rate schedule, one optimizer step.
- :mod:`dineuro.train.validation`: the Dice of whole val stacks, predicted as users predict.
- :mod:`dineuro.train.run_folder`: the run folder's files and how they are written and cleaned.
- :mod:`dineuro.train.loop`: the loop, checkpoints, resume.
- :mod:`dineuro.train.runtime`: processes (DDP under torchrun), devices, random state.

``python -m dineuro.train CONFIG [--set KEY=VALUE ...] [--resume]`` runs it, also under
``torchrun --nproc_per_node N``.
"""

from dineuro.train.config import AugmentConfig, TrainConfig, load_config
from dineuro.train.loop import TrainResult, train
from dineuro.train.optimizer import lr_factor

__all__ = ["AugmentConfig", "TrainConfig", "TrainResult", "load_config", "lr_factor", "train"]
