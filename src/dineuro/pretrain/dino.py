"""The pieces of DINO self-distillation (Caron et al. 2021), each small enough to test alone.

- :class:`DINOHead`: MLP projection, L2 normalisation, weight-normalised last layer.
- :class:`MultiCropNetwork`: a backbone and a head applied to crops of several sizes, one
  backbone pass per size.
- :class:`DINOLoss`: cross-entropy between the centred, sharpened teacher distribution of each
  global crop and the student distribution of every other crop, with the centre update.
- :func:`cosine_schedule`, :func:`teacher_temperatures`: per-step values of learning rate,
  weight decay, EMA momentum and teacher temperature.
- :func:`ema_update`, :func:`clip_gradients`, :func:`param_groups`: the momentum teacher, the
  per-parameter gradient clipping and the "no weight decay on biases and norms" rule of the
  published recipe.

Schedules are per optimizer step rather than per epoch, because a lab's own image set may be
a few hundred images (an "epoch" of a few steps) or a few hundred thousand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dineuro.errors import InputError
from dineuro.models.vit2d import VisionTransformer2d

#: The head's final L2 normalisation divides by at least this (as ``F.normalize`` does).
NORMALIZE_EPS = 1e-12


class WeightNormLinear(nn.Module):
    """Linear layer without bias whose weight is ``g * v / ||v||`` per output unit.

    The parameter names ``weight_g`` (out, 1) and ``weight_v`` (out, in) are those of the
    official DINO checkpoints' ``head.last_layer``, so a full training state reads like theirs.

    Parameters
    ----------
    in_dim : int
        Input width.
    out_dim : int
        Output width (the number of DINO "prototypes").
    fixed_norm : bool, optional
        Keep ``g`` at 1 and frozen (DINO's ``norm_last_layer``), which stabilises training of small
        models.
    """

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool = True):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fixed_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(x, weight)


class DINOHead(nn.Module):
    """Projection head: MLP, L2 normalisation, then a weight-normalised linear layer.

    Parameters
    ----------
    in_dim : int
        Backbone width.
    out_dim : int, optional
        Number of output dimensions (DINO: 65536; smaller for small data).
    hidden_dim : int, optional
        MLP hidden width (DINO: 2048).
    bottleneck_dim : int, optional
        MLP output width before the last layer (DINO: 256).
    n_layers : int, optional
        Linear layers of the MLP (DINO: 3).
    norm_last_layer : bool, optional
        Freeze the last layer's weight norm at 1 (DINO's default for ViT-S).

    Examples
    --------
    >>> head = DINOHead(in_dim=48, out_dim=100, hidden_dim=64, bottleneck_dim=32)
    >>> head(torch.zeros(2, 48)).shape
    torch.Size([2, 100])
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, n_layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        if n_layers < 1:
            raise InputError("n_layers should be at least 1.")
        widths = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < n_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fixed_norm=norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2, eps=NORMALIZE_EPS)
        return self.last_layer(x)


class MultiCropNetwork(nn.Module):
    """Backbone + head on a list of crops: one backbone pass per run of equal-size crops.

    The head sees the CLS token of each crop; outputs are concatenated in the order of the
    crops (crop 0 of every image first), shape (n_crops * B, out_dim).
    """

    def __init__(self, backbone: VisionTransformer2d, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:
        outputs, start = [], 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            outputs.append(self.backbone(torch.cat(list(crops[start:end])))[:, 0])
            start = end
        return self.head(torch.cat(outputs))


class DINOLoss(nn.Module):
    """DINO's self-distillation loss and the running centre of the teacher outputs.

    For teacher output ``t`` of global crop ``i`` and student output ``s`` of crop ``v != i``::

        loss = mean over pairs and images of  - sum_k softmax((t - c) / T_t)_k
                                                     * log_softmax(s / T_s)_k

    Centering (subtracting ``c``) keeps one prototype from dominating; sharpening (a low
    teacher temperature ``T_t``) keeps the distribution from going uniform. After each step the
    centre moves towards the batch mean of the teacher outputs (averaged over all processes
    under DDP).

    Parameters
    ----------
    out_dim : int
        Width of the head output.
    n_global : int, optional
        Global crops the teacher sees (DINO: 2); the first ``n_global`` crops.
    student_temp : float, optional
        Student temperature (DINO: 0.1).
    center_momentum : float, optional
        EMA momentum of the centre (DINO: 0.9).
    """

    def __init__(self, out_dim: int, n_global: int = 2, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        self.n_global = n_global
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor,
                teacher_temp: float) -> torch.Tensor:
        """Loss of one step; ``student_out`` (n_crops * B, K), ``teacher_out`` (n_global * B, K).

        Also updates the centre from ``teacher_out``.
        """
        batch = teacher_out.shape[0] // self.n_global
        n_crops = student_out.shape[0] // batch
        student_logp = F.log_softmax(student_out / self.student_temp, dim=-1).chunk(n_crops)
        teacher_p = F.softmax((teacher_out - self.center) / teacher_temp, dim=-1).detach()
        total, terms = student_out.new_zeros(()), 0
        for i, target in enumerate(teacher_p.chunk(self.n_global)):
            for v, logp in enumerate(student_logp):
                if v != i:
                    total = total + (-target * logp).sum(dim=-1).mean()
                    terms += 1
        self.update_center(teacher_out)
        return total / terms

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        batch_sum = teacher_out.sum(dim=0, keepdim=True)
        count = torch.tensor(float(len(teacher_out)), device=teacher_out.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_sum)
            torch.distributed.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count,
                                                    alpha=1 - self.center_momentum)


def teacher_entropy(teacher_out: torch.Tensor, center: torch.Tensor, temp: float
                    ) -> tuple[float, float]:
    """Entropies (nats) of the centred, sharpened teacher distributions: (mean per image,
    of the batch-mean distribution).

    Both near ``log(out_dim)``: collapse to a uniform output. Both near 0: collapse to one
    prototype for every image. Healthy training has a low per-image entropy and a high batch
    one (images spread over many prototypes).
    """
    p = F.softmax((teacher_out - center) / temp, dim=-1)
    per_image = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1).mean()
    mean = p.mean(dim=0)
    batch = -(mean * torch.log(mean.clamp_min(1e-30))).sum()
    return float(per_image), float(batch)


def cosine_schedule(base: float, final: float, steps: int, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """Per-step values: linear warm-up from ``warmup_start`` to ``base``, then a half cosine
    from ``base`` to ``final`` (DINO's ``cosine_scheduler``, in steps).

    Examples
    --------
    >>> cosine_schedule(1.0, 0.0, 5).round(3).tolist()
    [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    warmup_steps = min(warmup_steps, steps)
    warmup = np.linspace(warmup_start, base, warmup_steps, endpoint=False)
    rest = steps - warmup_steps
    t = np.arange(rest) / max(rest - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(math.pi * t))
    return np.concatenate([warmup, cosine])


def teacher_temperatures(start: float, end: float, warmup_steps: int, steps: int) -> np.ndarray:
    """Teacher temperature per step: linear from ``start`` to ``end``, then constant."""
    warmup_steps = min(warmup_steps, steps)
    return np.concatenate([np.linspace(start, end, warmup_steps),
                           np.full(steps - warmup_steps, end)])


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, parameter by parameter."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> None:
    """Scale each parameter's gradient to norm at most ``max_norm`` (DINO clips per tensor,
    not by the global norm)."""
    for p in parameters:
        if p.grad is not None:
            norm = p.grad.norm()
            if norm > max_norm:
                p.grad.mul_(max_norm / (norm + 1e-6))


def param_groups(model: nn.Module) -> list[dict]:
    """Two AdamW groups: weights (decayed) and biases / norm scales (not decayed).

    Every 1-D parameter and every bias is excluded from weight decay, as in DINO.
    """
    decayed, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (plain if name.endswith(".bias") or p.ndim <= 1 else decayed).append(p)
    return [{"params": decayed}, {"params": plain, "weight_decay": 0.0}]
