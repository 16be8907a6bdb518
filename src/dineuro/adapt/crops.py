"""Batches that mix the lab's pseudo-labelled crops with synthetic crops with gold labels.

Every batch holds the same number of synthetic crops (``AdaptConfig.synthetic_crops``), drawn
after the lab's: a fixed mix keeps the network's synthetic knowledge in every step instead of
in some. The lab's crops get strong augmentation (:class:`~dineuro.train.data.Augmenter` with
``strong=True``): their labels came from the same network on the unaugmented stack, so
agreeing with them under blur, gamma and noise is something it has to learn. Synthetic crops
get training's usual augmentation. One generator drives both samplers and every augmentation,
so its state (:meth:`state`) is all a resumed run needs, as for
:class:`~dineuro.train.data.TrainingCrops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dineuro.train.config import AugmentConfig
from dineuro.train.data import SEED_BOUND, Augmenter, CropSampler, Stack


class MixedCrops:
    """Batches of ``lab`` crops followed by ``synthetic`` ones; see the module docstring.

    Parameters
    ----------
    lab : sequence of Stack
        The lab's stacks, labels uint8 pseudo-labels (or gold masks).
    synthetic : sequence of Stack
        Synthetic stacks with gold labels (may be empty when ``synthetic_crops`` is 0).
    crop : sequence of int
        Crop size (z, y, x).
    synthetic_crops : int
        Synthetic crops per batch.
    foreground_prob : float
        See :class:`~dineuro.train.data.CropSampler`.
    rng : numpy.random.Generator
        The single source of randomness.
    """

    def __init__(self, lab: Sequence[Stack], synthetic: Sequence[Stack], crop: Sequence[int],
                 synthetic_crops: int, foreground_prob: float, rng: np.random.Generator):
        if synthetic_crops and not synthetic:
            raise ValueError("synthetic crops were asked for but there are no synthetic stacks.")
        self.rng, self.synthetic_crops = rng, int(synthetic_crops)
        self.lab = CropSampler(lab, crop, foreground_prob, rng)
        self.synthetic = CropSampler(synthetic, crop, foreground_prob, rng) if synthetic \
            else None
        augment = AugmentConfig()
        self.strong = Augmenter(augment, crop, strong=True)
        self.weak = Augmenter(augment, crop)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (size, 1, z, y, x) float32 and labels (size, 1, z, y, x) with values 0, 1
        and ``IGNORE``; the last ``synthetic_crops`` come from synthetic stacks."""
        if not 0 <= self.synthetic_crops < size:
            raise ValueError(f"a batch of {size} cannot hold {self.synthetic_crops} synthetic "
                             "crops and at least one of the lab's.")
        pairs = []
        for index in range(size):
            synthetic = index >= size - self.synthetic_crops
            sampler, augmenter = (self.synthetic, self.weak) if synthetic else \
                (self.lab, self.strong)
            image, label, _ = sampler.draw()
            pairs.append(augmenter(image, label, int(self.rng.integers(SEED_BOUND))))
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def state(self) -> dict:
        """The generator state (plain dict of str and int)."""
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
