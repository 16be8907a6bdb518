"""Training: ``train(config)`` turns a dataset folder into a run folder with checkpoints.

- :mod:`dineuro.train.config`: :class:`TrainConfig` and :func:`load_config` (YAML + overrides).
- :mod:`dineuro.train.data`: stacks in memory, foreground-biased crops, augmentations.
- :mod:`dineuro.train.loop`: the loop, validation, checkpoints, resume.
- :mod:`dineuro.train.runtime`: processes (DDP under torchrun), devices, random state.

``python -m dineuro.train CONFIG [--set KEY=VALUE ...] [--resume]`` runs it, also under
``torchrun --nproc_per_node N``.
"""

from dineuro.train.config import AugmentConfig, TrainConfig, load_config
from dineuro.train.loop import TrainResult, lr_factor, train

__all__ = ["AugmentConfig", "TrainConfig", "TrainResult", "load_config", "lr_factor", "train"]
