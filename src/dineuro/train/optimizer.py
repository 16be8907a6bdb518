"""How training steps a network: AdamW, its warm-up + decay learning-rate schedule, one step.

:mod:`dineuro.adapt.loop` fine-tunes with the same pieces, so that each round of adaptation
warms up, decays and clips its gradients as training does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dineuro.errors import InputError
from dineuro.train.config import TrainConfig


def lr_factor(step: int, steps: int, warmup_steps: int, schedule: str = "cosine",
              poly_power: float = 0.9) -> float:
    """Learning rate of optimizer step ``step`` (0-based) as a fraction of the peak.

    Linear warm-up ``(step + 1) / warmup_steps`` for ``step < warmup_steps``; then, with
    ``t = (step - warmup_steps) / (steps - warmup_steps)`` in [0, 1):
    cosine ``(1 + cos(pi t)) / 2`` or poly ``(1 - t) ** poly_power``.

    Examples
    --------
    >>> [round(lr_factor(s, 10, 2), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min((step - warmup_steps) / max(steps - warmup_steps, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "poly":
        return (1.0 - t) ** poly_power
    raise InputError(f"schedule should be 'cosine' or 'poly', got {schedule!r}.")


def make_optimizer(model: nn.Module, config: TrainConfig
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the warm-up + decay schedule of ``config``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)

    def factor(step: int) -> float:
        return lr_factor(step, config.steps, config.warmup_steps, config.schedule,
                         config.poly_power)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, images: torch.Tensor, labels: torch.Tensor,
               grad_clip: float | None = None, autocast_device: str | None = None) -> float:
    """One optimizer step; returns the loss.

    ``autocast_device`` ("cuda", or "cpu" for tests) runs the forward pass under bfloat16
    autocast; the loss is computed in float32.
    """
    model.train()
    with torch.autocast(autocast_device or "cpu", dtype=torch.bfloat16,
                        enabled=autocast_device is not None):
        logits = model(images)
    loss = loss_fn(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())
