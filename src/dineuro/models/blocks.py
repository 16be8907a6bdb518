"""Transformer blocks shaped exactly like DINO's, so teacher weights copy 1:1 into the student.

Parameter names and shapes follow the official DINO ViT (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``; qkv with bias; pre-norm; LayerNorm eps 1e-6; GELU). A block
acts on a token sequence and knows nothing about whether the tokens came from a 2D or a 3D grid,
which is what makes the 2D-to-3D weight transfer possible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dineuro.errors import InputError

LAYER_NORM_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample during training.

    Parameters
    ----------
    p : float, optional
        Probability of dropping the branch.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise InputError("drop path probability should be in [0, 1).")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection, as in DINO.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Number of heads; must divide ``dim``.
    qkv_bias : bool, optional
        Bias on the fused qkv projection (DINO: True).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise InputError("dim should be divisible by num_heads.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two-layer perceptron with GELU (``fc1`` -> GELU -> ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Attention heads.
    mlp_ratio : float, optional
        Hidden width of the MLP as a multiple of ``dim`` (DINO: 4).
    qkv_bias : bool, optional
        Bias on the qkv projection (DINO: True).
    drop_path : float, optional
        Stochastic-depth probability.

    Examples
    --------
    >>> block = Block(dim=96, num_heads=3)
    >>> block(torch.zeros(2, 10, 96)).shape
    torch.Size([2, 10, 96])
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
