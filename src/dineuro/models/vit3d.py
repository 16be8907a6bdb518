"""The student's 3D Vision Transformer encoder: 3D patches, a 3D position embedding, DINO blocks.

Volumes are (B, 1, Z, Y, X) tensors. A patch of (pz, py, px) voxels becomes one token; tokens are
ordered z-major (flattened from the (Z/pz, Y/py, X/px) token grid), there is no CLS token, and the
transformer blocks are :class:`~dineuro.models.blocks.Block`, whose parameter names equal DINO's so
that a 2D teacher's blocks copy into the student unchanged (see :mod:`dineuro.models.transfer`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dineuro.errors import InputError
from dineuro.models.blocks import LAYER_NORM_EPS, Block
from dineuro.models.tubular import DeformableTubularPatchEmbed3d, TubularPatchEmbed3d

Triple = tuple[int, int, int]

#: Standard deviation of DINO's truncated-normal init for linear layers and the position embedding.
INIT_STD = 0.02


def as_triple(value: int | Sequence[int], name: str) -> Triple:
    """Return ``value`` as a (z, y, x) triple of positive ints; an int means the same on every axis.

    Raises
    ------
    InputError
        ``value`` is not one positive int or three positive ints.
    """
    triple = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(triple) != 3 or not all(isinstance(v, int) and v > 0 for v in triple):
        raise InputError(f"{name} should be a positive int or three positive ints (z, y, x), "
                         f"got {value!r}.")
    return triple  # type: ignore[return-value]


def token_grid(crop: int | Sequence[int], patch: int | Sequence[int]) -> Triple:
    """Token grid (Z, H, W) of a crop cut into patches.

    Raises
    ------
    InputError
        The crop is not a multiple of the patch along every axis.
    """
    crop, patch = as_triple(crop, "crop"), as_triple(patch, "patch")
    if any(c % p for c, p in zip(crop, patch, strict=True)):
        raise InputError(f"crop {crop} should be a multiple of the patch {patch} along every "
                         "axis (z, y, x).")
    return tuple(c // p for c, p in zip(crop, patch, strict=True))  # type: ignore[return-value]


def resize_pos_embed_3d(pos_embed: torch.Tensor, grid: Sequence[int],
                       new_grid: Sequence[int]) -> torch.Tensor:
    """A position embedding (1, Z*H*W, D) of token ``grid`` resized to ``new_grid``.

    Trilinear over the token grid (z-major order, ``align_corners=False``: each token is the
    centre of its patch), as ViTs resize theirs for another input size. A grid that does not
    change is returned as a copy.

    Examples
    --------
    >>> ramp = torch.tensor([0.0, 1.0]).reshape(1, 2, 1)  # two tokens along x
    >>> resize_pos_embed_3d(ramp, (1, 1, 2), (1, 1, 4)).flatten().tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    grid, new_grid = tuple(grid), tuple(new_grid)
    volume = pos_embed.detach().transpose(1, 2).unflatten(2, grid)  # (1, D, Z, H, W)
    resized = F.interpolate(volume.float(), size=new_grid, mode="trilinear",
                            align_corners=False).to(pos_embed.dtype)
    return resized.flatten(2).transpose(1, 2).contiguous()


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3D patch embedding: ``Conv3d(1, D)`` with kernel = stride = patch.

    Parameters
    ----------
    patch : tuple of 3 int
        Patch size (pz, py, px) in voxels.
    embed_dim : int
        Token width D.

    Examples
    --------
    >>> embed = PatchEmbed3d((8, 16, 16), 48)
    >>> embed(torch.zeros(1, 1, 16, 32, 32)).shape  # 2 x 2 x 2 tokens
    torch.Size([1, 8, 48])
    """

    def __init__(self, patch: Triple, embed_dim: int):
        super().__init__()
        self.patch = as_triple(patch, "patch")
        self.proj = nn.Conv3d(1, embed_dim, kernel_size=self.patch, stride=self.patch)

    def reset_parameters(self) -> None:
        """PyTorch's default convolution init."""
        self.proj.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a volume (B, 1, Z, Y, X) to tokens (B, N, D), N = number of patches, z-major."""
        return self.proj(x).flatten(2).transpose(1, 2)


#: Patch-embedding kinds by name; the transfer strategy decides which one a model uses.
PATCH_EMBEDDINGS: dict[str, type[nn.Module]] = {
    "conv": PatchEmbed3d,
    "tubular": TubularPatchEmbed3d,
    "deformable": DeformableTubularPatchEmbed3d,
}


def embedding_option_names(kind: str) -> tuple[str, ...]:
    """Keyword options a patch-embedding kind accepts beyond ``patch`` and ``embed_dim``."""
    if kind not in PATCH_EMBEDDINGS:
        raise InputError(f"patch embedding should be one of {sorted(PATCH_EMBEDDINGS)}, "
                         f"got {kind!r}.")
    params = inspect.signature(PATCH_EMBEDDINGS[kind]).parameters
    return tuple(name for name in params if name not in ("patch", "embed_dim"))


def make_patch_embedding(kind: str, patch: Triple, embed_dim: int,
                         options: Mapping[str, object] | None = None) -> nn.Module:
    """Build the patch embedding ``kind`` ("conv", "tubular" or "deformable").

    Raises
    ------
    InputError
        Unknown kind, or an option the kind does not take.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(embedding_option_names(kind)))
    if unknown:
        raise InputError(f"the {kind!r} patch embedding does not take {unknown}; it takes "
                         f"{list(embedding_option_names(kind))}.")
    return PATCH_EMBEDDINGS[kind](patch=patch, embed_dim=embed_dim, **options)


class VisionTransformer3d(nn.Module):
    """3D ViT encoder: patch embedding + learnable 3D position embedding + DINO blocks + LayerNorm.

    Parameters
    ----------
    crop : int or sequence of int
        Input size (z, y, x) in voxels; every input must have exactly this size, and it must be a
        multiple of ``patch`` per axis (the position embedding is one vector per token).
    patch : int or sequence of int, optional
        Patch size (pz, py, px) in voxels, or one int for a cube.
    embed_dim : int, optional
        Token width D (ViT-S 384, ViT-B 768).
    depth : int, optional
        Number of transformer blocks.
    num_heads : int, optional
        Attention heads; must divide ``embed_dim``.
    mlp_ratio : float, optional
        MLP hidden width as a multiple of ``embed_dim``.
    patch_embedding : str, optional
        "conv" (:class:`PatchEmbed3d`), "tubular" or "deformable" (see
        :mod:`dineuro.models.tubular`).
    embedding_options : mapping of {str: object}, optional
        Keyword options of the patch embedding (e.g. ``gate_init``).
    drop_path : float, optional
        Stochastic-depth rate of the last block, rising linearly from 0 (as DINO).

    Examples
    --------
    >>> vit = VisionTransformer3d(crop=32, patch=16, embed_dim=48, depth=4, num_heads=3)
    >>> tokens, hidden = vit(torch.zeros(1, 1, 32, 32, 32))
    >>> tokens.shape, len(hidden)
    (torch.Size([1, 8, 48]), 4)
    """

    def __init__(self, crop: int | Sequence[int], patch: int | Sequence[int] = 16,
                 embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, patch_embedding: str = "conv",
                 embedding_options: Mapping[str, object] | None = None, drop_path: float = 0.0):
        super().__init__()
        if depth < 1:
            raise InputError(f"depth should be at least 1, got {depth}.")
        if embed_dim % num_heads:
            raise InputError(f"embed_dim {embed_dim} should be divisible by num_heads {num_heads}.")
        self.crop = as_triple(crop, "crop")
        self.patch = as_triple(patch, "patch")
        self.grid = token_grid(self.crop, self.patch)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.patch_embed = make_patch_embedding(patch_embedding, self.patch, embed_dim,
                                                embedding_options)
        n_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, embed_dim))
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, drop_path=rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random init as DINO: trunc-normal(0.02) linears and position embedding, unit LayerNorms.

        The patch embedding re-initialises itself (a conv keeps PyTorch's default init, as DINO's).
        """
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        for module in [*self.blocks.modules(), self.norm]:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.patch_embed.reset_parameters()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is (B, 1, *crop)."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"input should be (B, 1, Z, Y, X), got shape {tuple(x.shape)}.")
        if tuple(x.shape[2:]) != self.crop:
            raise ValueError(f"input size {tuple(x.shape[2:])} should equal the configured crop "
                             f"{self.crop}; pad or crop the volume first.")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode a volume (B, 1, *crop).

        Returns
        -------
        tuple of (torch.Tensor, list of torch.Tensor)
            The last block's tokens after the final LayerNorm (B, N, D), and the output of every
            block before that norm, in order (``depth`` tensors of shape (B, N, D)).
        """
        self.check_input(x)
        tokens = self.patch_embed(x) + self.pos_embed
        hidden = []
        for block in self.blocks:
            tokens = block(tokens)
            hidden.append(tokens)
        return self.norm(tokens), hidden
