"""Small checkpoints in the exact official DINO backbone layout, for teacher and student tests.

``VisionTransformer2d(...).state_dict()`` has the keys and shapes of the official files, so a
tiny instance saved with ``torch.save`` is an official-layout checkpoint in miniature. Every
tensor is perturbed (LayerNorm weights away from 1, biases away from 0) so that a test notices
when a parameter is dropped or mapped to the wrong place.

Use the fixtures rather than importing this module: ``dino_checkpoint`` for a ready file,
``dino_state_dict_factory`` for :func:`make_dino_state_dict` at other sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dineuro.models.vit2d import VisionTransformer2d

#: Architecture of the ``dino_checkpoint`` file. Width 48 is not a released width and not a
#: multiple of 64, so loading it needs ``load_teacher(path, num_heads=TINY["num_heads"])``.
TINY = dict(embed_dim=48, depth=4, num_heads=3, patch_size=16, n_grid=14)


def make_dino_state_dict(embed_dim: int, depth: int, num_heads: int, patch_size: int = 16,
                         n_grid: int = 14, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of a DINO ViT backbone in the official layout (float32, CPU).

    Args:
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads (not stored in the weights; only shapes depend on width).
        patch_size: patch kernel side.
        n_grid: position-embedding grid side (14 -> pos_embed (1, 197, D)).
        seed: makes the weights reproducible.
    """
    torch.manual_seed(seed)
    vit = VisionTransformer2d(img_size=n_grid * patch_size, patch_size=patch_size,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    generator = torch.Generator().manual_seed(seed + 1)
    state = vit.state_dict()
    with torch.no_grad():
        for tensor in state.values():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return {key: tensor.clone() for key, tensor in state.items()}


@pytest.fixture(scope="session")
def dino_state_dict_factory():
    """:func:`make_dino_state_dict`, for tests that need other sizes or seeds."""
    return make_dino_state_dict


@pytest.fixture(scope="session")
def dino_checkpoint(tmp_path_factory) -> Path:
    """Path of a tiny official-layout DINO backbone file (``TINY``; pos_embed (1, 197, 48)).

    Load it with ``load_teacher(path, num_heads=3)``; its tensors are
    ``make_dino_state_dict(48, 4, 3)``.
    """
    path = tmp_path_factory.mktemp("dino") / "dino_tiny16_pretrain.pth"
    torch.save(make_dino_state_dict(**TINY), path)
    return path
