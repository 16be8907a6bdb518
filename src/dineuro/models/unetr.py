"""UNETR: the 3D ViT encoder with a convolutional decoder that up-samples tokens back to voxels.

The decoder follows Hatamizadeh et al. (UNETR, arXiv 2103.10504) and is assembled from MONAI's
UNETR blocks (re-stated without the MONAI import in :mod:`dineuro.models.unet_blocks`),
generalised beyond ``monai.networks.nets.UNETR``, which fixes depth 12, patch 16
and the skips ``hidden_states_out[3]``, ``[6]``, ``[9]`` (blocks 4, 7, 10 counting from 1; the
paper and this module use blocks 3, 6, 9, 12):

- Levels. A patch side p = 2**n needs n up-samplings by 2 to return to voxels; the decoder has
  L = log2(max patch side) levels, level 0 being full resolution and level L the token grid.
- Skips. Level L is fed by the last block (after the final LayerNorm), levels 1 .. L-1 by the
  blocks ``depth * j / L`` (1-based), and level 0 by a convolutional stem on the input. For patch
  16 and depth 12 that is blocks 3, 6, 9 and 12, for depth 4 blocks 1, 2, 3, 4; the depth must be
  a multiple of L.
- Anisotropic patches. Axis a is up-sampled n_a = log2(p_a) times, at the n_a coarsest levels:
  the finest up-samplings skip the axes whose patch side is smaller (as nnU-Net skips pooling
  the coarse axis of anisotropic data at its finest levels). For patch (8, 16, 16), z is
  up-sampled by 2 at levels 4, 3, 2 and by 1 at level 1; y and x by 2 at every level. A patch
  (8, 16, 16) on voxels twice as long in z is physically isotropic, and so is every feature map.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dineuro.errors import InputError
from dineuro.models.standardize import standardize_per_sample
from dineuro.models.unet_blocks import BasicBlock, OutBlock, ResBlock, UpBlock, conv_layer
from dineuro.models.vit3d import Triple, VisionTransformer3d, as_triple, resize_pos_embed_3d

#: Kernel side of every decoder convolution (as MONAI's UNETR).
CONV_KERNEL = 3
#: Up-sampling factor per decoder level along an axis that is up-sampled at that level.
LEVEL_FACTOR = 2
#: What the encoder may see (``ViTUNETR(encoder_input=...)``).
ENCODER_INPUTS = ("raw", "standardize")


def decoder_levels(patch: int | Sequence[int]) -> int:
    """Number of decoder levels L = log2(largest patch side).

    Raises
    ------
    InputError
        A patch side is not a power of 2, or every side is 1.
    """
    patch = as_triple(patch, "patch")
    if any(p & (p - 1) for p in patch):
        raise InputError(f"patch sides should be powers of 2 for the UNETR decoder, got {patch}.")
    levels = int(math.log2(max(patch)))
    if levels < 1:
        raise InputError(f"the patch should be larger than one voxel, got {patch}.")
    return levels


def level_strides(patch: int | Sequence[int]) -> list[Triple]:
    """Up-sampling stride (z, y, x) of each decoder level, finest (level 1) first.

    Level i up-samples from level i to level i - 1; axis a is up-sampled at the n_a = log2(p_a)
    coarsest levels (see the module docstring).
    """
    patch = as_triple(patch, "patch")
    levels = decoder_levels(patch)
    n_per_axis = [int(math.log2(p)) for p in patch]
    return [tuple(LEVEL_FACTOR if level > levels - n else 1 for n in n_per_axis)
            for level in range(1, levels + 1)]  # type: ignore[misc]


def skip_blocks(depth: int, levels: int) -> list[int]:
    """1-based indices of the blocks feeding decoder levels 1 .. L (evenly spaced, last = depth).

    Raises
    ------
    InputError
        ``depth`` is not a positive multiple of ``levels``.
    """
    if depth < levels or depth % levels:
        raise InputError(f"depth {depth} should be a positive multiple of the {levels} decoder "
                         "levels (log2 of the largest patch side), so that skips are evenly "
                         "spaced.")
    return [depth * j // levels for j in range(1, levels + 1)]


class ProjectionUpsample(nn.Module):
    """MONAI's ``UnetrPrUpBlock`` (conv + residual variant) with a stride per up-sampling step.

    ``UnetrPrUpBlock`` uses one stride for all its steps, which cannot express anisotropic
    schedules such as patch (4, 16, 16); this is the same composition of MONAI's pieces (a
    transposed conv, then per further step a transposed conv and a ``UnetResBlock``), with the
    same parameter names and counts.

    Parameters
    ----------
    in_channels : int
        Channels of the token feature map.
    out_channels : int
        Channels of the output.
    strides : sequence of tuple of 3 int
        Up-sampling stride (z, y, x) of each step, coarsest first.
    norm_name : str or tuple, optional
        Decoder normalisation (:func:`~dineuro.models.unet_blocks.norm_layer`).
    """

    def __init__(self, in_channels: int, out_channels: int, strides: Sequence[Triple],
                 norm_name: str | tuple = "instance"):
        super().__init__()
        self.transp_conv_init = _transposed_conv(in_channels, out_channels, strides[0])
        self.blocks = nn.ModuleList(
            nn.Sequential(
                _transposed_conv(out_channels, out_channels, stride),
                ResBlock(out_channels, out_channels, CONV_KERNEL, 1, norm_name))
            for stride in strides[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transp_conv_init(x)
        for block in self.blocks:
            x = block(x)
        return x


def _transposed_conv(in_channels: int, out_channels: int, stride: Triple) -> nn.Module:
    return conv_layer(in_channels, out_channels, stride, stride, transposed=True)


class ViTUNETR(nn.Module):
    """3D ViT encoder + UNETR decoder: volume (B, 1, *crop) -> logits (B, out_channels, *crop).

    Parameters
    ----------
    crop : int or sequence of int
        Input size (z, y, x) in voxels; inputs must have exactly this size (padding is the caller's
        job), and it must be a multiple of ``patch`` per axis.
    patch : int or sequence of int, optional
        Patch size (pz, py, px), powers of 2 (one int for a cube).
    embed_dim : int, optional
        Token width of the encoder.
    depth : int, optional
        Encoder blocks; a multiple of the number of decoder levels (4 for patch 16).
    num_heads : int, optional
        Attention heads.
    mlp_ratio : float, optional
        MLP hidden width as a multiple of ``embed_dim``.
    feature_size : int, optional
        Channels of the full-resolution stem; level j has ``feature_size * 2**j``.
    out_channels : int, optional
        Output classes (background, neurite).
    norm_name : str or tuple, optional
        Normalisation of the decoder ("instance", "batch", ("group", {"num_groups": 4});
        :func:`~dineuro.models.unet_blocks.norm_layer`).
    patch_embedding : str, optional
        "conv", "tubular" or "deformable" (set by the transfer strategy).
    embedding_options : mapping of {str: object}, optional
        Keyword options of the patch embedding.
    drop_path : float, optional
        Stochastic-depth rate of the last encoder block.
    encoder_input : str, optional
        What the encoder sees: "raw" (the volume as given, [0, 1] after percentile normalisation) or
        "standardize" (each sample shifted and scaled to zero mean and unit variance, as DINO
        teachers saw their crops; see :mod:`dineuro.models.standardize`). The convolutional stem
        always sees the volume as given, so absolute intensity still reaches the decoder.

    Attributes
    ----------
    config : dict
        The constructor arguments as a plain dict (JSON-friendly), extended by
        :func:`dineuro.models.build.build_model` with the preset name, transfer and teacher.

    Examples
    --------
    >>> net = ViTUNETR(crop=(16, 32, 32), patch=(8, 16, 16), embed_dim=48, depth=4,
    ...                num_heads=3, feature_size=8)
    >>> net(torch.zeros(1, 1, 16, 32, 32)).shape
    torch.Size([1, 2, 16, 32, 32])
    >>> net.skip_blocks
    [1, 2, 3, 4]
    """

    def __init__(self, crop: int | Sequence[int], patch: int | Sequence[int] = 16,
                 embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, feature_size: int = 16, out_channels: int = 2,
                 norm_name: str | tuple = "instance", patch_embedding: str = "conv",
                 embedding_options: Mapping[str, object] | None = None, drop_path: float = 0.0,
                 encoder_input: str = "raw"):
        super().__init__()
        if feature_size < 1 or out_channels < 1:
            raise InputError("feature_size and out_channels should be positive.")
        if encoder_input not in ENCODER_INPUTS:
            raise InputError(f"encoder_input should be one of {list(ENCODER_INPUTS)}, got "
                             f"{encoder_input!r}.")
        self.encoder_input = encoder_input
        patch = as_triple(patch, "patch")
        levels = decoder_levels(patch)
        strides = level_strides(patch)
        self.skip_blocks = skip_blocks(depth, levels)
        self.encoder = VisionTransformer3d(
            crop, patch=patch, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, patch_embedding=patch_embedding,
            embedding_options=embedding_options, drop_path=drop_path)
        channels = [feature_size * LEVEL_FACTOR**level for level in range(levels)]
        self.stem = BasicBlock(1, channels[0], CONV_KERNEL, 1, norm_name)
        # Skip of level j (1 .. L-1): tokens up-sampled through levels L, L-1, ..., j + 1.
        self.skips = nn.ModuleList(
            ProjectionUpsample(embed_dim, channels[level], strides[level:][::-1], norm_name)
            for level in range(1, levels))
        # Decoder stage into level j (L-1 .. 0): up-sample by level j + 1, fuse with skip j.
        self.ups = nn.ModuleList(
            UpBlock(embed_dim if level == levels - 1 else channels[level + 1], channels[level],
                    CONV_KERNEL, strides[level], norm_name)
            for level in reversed(range(levels)))
        self.out = OutBlock(channels[0], out_channels)
        self.config: dict[str, object] = {
            "crop": list(self.encoder.crop), "patch": list(patch), "embed_dim": embed_dim,
            "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
            "feature_size": feature_size, "out_channels": out_channels,
            "norm_name": norm_name, "patch_embedding": patch_embedding,
            "embedding_options": dict(embedding_options or {}), "drop_path": drop_path,
            "encoder_input": encoder_input,
        }

    def at_window(self, window: int | Sequence[int]) -> ViTUNETR:
        """This network for inputs of another size ``window`` (z, y, x): a copy with the same
        weights and its position embedding resized to the new token grid
        (:func:`~dineuro.models.vit3d.resize_pos_embed_3d`); itself when the size is its own.

        Everything else works on any input size (convolutions, attention over however many
        tokens), so a network trained on small crops can predict through larger windows,
        whose lower overlap computes fewer voxels (``dineuro predict --window``).

        Raises
        ------
        InputError
            A window that is not a multiple of the patch along every axis.
        """
        window = as_triple(window, "window")
        if window == self.encoder.crop:
            return self
        names = inspect.signature(ViTUNETR).parameters
        other = ViTUNETR(**{**{k: v for k, v in self.config.items() if k in names},
                            "crop": window})
        other.config = {**self.config, "crop": list(window)}
        state = self.state_dict()
        state["encoder.pos_embed"] = resize_pos_embed_3d(
            state["encoder.pos_embed"], self.encoder.grid, other.encoder.grid)
        other.load_state_dict(state)
        parameter = next(self.parameters())
        return other.to(device=parameter.device, dtype=parameter.dtype).train(self.training)

    def _token_volume(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) -> feature map (B, D, Z, H, W) on the token grid."""
        return tokens.transpose(1, 2).unflatten(2, self.encoder.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, out_channels, *crop) for a volume (B, 1, *crop)."""
        final, hidden = self.encoder(
            standardize_per_sample(x) if self.encoder_input == "standardize" else x)
        token_skips = [self._token_volume(hidden[block - 1]) for block in self.skip_blocks[:-1]]
        skips = [self.stem(x)]
        skips += [project(f) for project, f in zip(self.skips, token_skips, strict=True)]
        out = self._token_volume(final)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            out = up(out, skip)
        return self.out(out)
