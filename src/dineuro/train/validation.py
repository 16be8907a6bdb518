"""Validation during training: the Dice of whole val stacks, predicted as users predict them.

Each stack is predicted with :func:`dineuro.predict.sliding_window_predict`, the path ``predict``
runs, so that the Dice that picks ``best.pt`` measures the network as its users will run it, not
on training crops. The adaptation guard rails (:mod:`dineuro.adapt.guards`) threshold their Dice
at the same :data:`VAL_THRESHOLD`.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from dineuro.evaluate import dice
from dineuro.train.data import Stack

#: Validation masks are probability > this.
VAL_THRESHOLD = 0.5


def validate(model: nn.Module, stacks: list[Stack], crop, overlap: float, device,
             amp: bool = False) -> float:
    """Mean Dice of (probability > 0.5) against the label, over whole validation stacks.

    Every window is computed, in the training's precision: validation measures the network,
    so a window that prediction would skip for want of signal still counts what it would say.
    """
    from dineuro.predict import sliding_window_predict

    scores = []
    for stack in stacks:
        prob = sliding_window_predict(model, stack.normalized(), crop, overlap=overlap,
                                      device=device, precision="bf16" if amp else "fp32",
                                      skip_empty=False)
        scores.append(dice(prob > VAL_THRESHOLD, stack.label))
    return float(np.mean(scores))
