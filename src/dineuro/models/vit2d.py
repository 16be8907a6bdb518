"""The 2D DINO Vision Transformer, parameter-for-parameter in the official checkpoint layout.

Its ``state_dict()`` has exactly the keys and shapes of an official DINO backbone file
(``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``), so it is the
teacher that checkpoints load into, the network ``dineuro pretrain2d`` trains, and the way tests
make small checkpoints in that layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dineuro.errors import InputError
from dineuro.models.blocks import LAYER_NORM_EPS, Block


class PatchEmbed2d(nn.Module):
    """Non-overlapping ``patch x patch`` convolution from image channels to tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer2d(nn.Module):
    """DINO's ViT backbone (no classification head).

    Images of another size than ``img_size`` (DINO's small local crops) get the position
    embedding resized bicubically to their token grid, as DINO does.

    Parameters
    ----------
    img_size : int, optional
        Training image side; sets the position-embedding grid (224 -> 14 x 14 at /16).
    patch_size : int, optional
        Patch side in pixels (DINO: 16 or 8).
    in_chans : int, optional
        Image channels (DINO: 3).
    embed_dim : int, optional
        Token width (ViT-S: 384, ViT-B: 768).
    depth : int, optional
        Number of blocks.
    num_heads : int, optional
        Attention heads.
    mlp_ratio : float, optional
        MLP hidden width as a multiple of ``embed_dim``.
    drop_path_rate : float, optional
        Stochastic depth of the last block, rising linearly from 0 at the first (DINO trains ViT-S
        with 0.1); inactive in eval mode.

    Examples
    --------
    >>> vit = VisionTransformer2d(img_size=32, patch_size=16, embed_dim=48, depth=2,
    ...                           num_heads=3)
    >>> vit(torch.zeros(1, 3, 32, 32)).shape  # CLS + 2 x 2 patch tokens
    torch.Size([1, 5, 48])
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0):
        super().__init__()
        if img_size % patch_size:
            raise InputError("img_size should be divisible by patch_size.")
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed2d(patch_size, in_chans, embed_dim)
        n_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n_patches, embed_dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, drop_path=rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, C, H, W), sides multiples of the patch, to tokens (B, 1 + N, D)."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + resize_pos_embed_2d(self.pos_embed, grid)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def resize_pos_embed_2d(pos_embed: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Position embedding (1, 1 + G*G, D) -> (1, 1 + H*W, D) for a token grid (H, W).

    The CLS entry is kept; the G x G patch entries are resized bicubically (align_corners
    False). Returned unchanged (same tensor, so gradients flow as usual) when the grid matches.
    """
    n_patches, dim = pos_embed.shape[1] - 1, pos_embed.shape[2]
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise InputError(f"pos_embed should hold 1 + G*G entries, got {n_patches + 1}.")
    h, w = grid
    if (h, w) == (side, side):
        return pos_embed
    plane = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    plane = F.interpolate(plane, size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], plane.permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)
