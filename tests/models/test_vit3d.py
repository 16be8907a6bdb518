"""The 3D ViT encoder: shapes, token order, validation of the crop and the input."""

from __future__ import annotations

import pytest
import torch

from dineuro.errors import InputError
from dineuro.models.vit3d import PatchEmbed3d, VisionTransformer3d, as_triple, token_grid

TINY = dict(embed_dim=48, depth=4, num_heads=3)


def test_encoder_returns_normed_tokens_and_every_block_output():
    vit = VisionTransformer3d((16, 32, 48), patch=(8, 16, 16), **TINY)
    final, hidden = vit(torch.rand(2, 1, 16, 32, 48))
    assert vit.grid == (2, 2, 3)
    assert final.shape == (2, 12, 48) and len(hidden) == 4
    assert all(h.shape == (2, 12, 48) for h in hidden)
    torch.testing.assert_close(final, vit.norm(hidden[-1]))
    assert vit.pos_embed.shape == (1, 12, 48)
    assert "cls_token" not in dict(vit.named_parameters())
    assert vit.norm.eps == 1e-6


def test_tokens_are_z_major_patches():
    embed = PatchEmbed3d((8, 16, 16), 4)
    x = torch.zeros(1, 1, 16, 32, 48)
    x[0, 0, 8:16, 16:32, 32:48] = 1.0  # the patch at token grid index (1, 1, 2)
    tokens = embed(x) - embed.proj.bias
    changed = tokens.abs().sum(dim=-1)[0].nonzero().flatten().tolist()
    assert changed == [(1 * 2 + 1) * 3 + 2]


def test_crop_must_be_a_multiple_of_the_patch():
    with pytest.raises(InputError, match=r"crop \(32, 32, 40\) should be a multiple of the "
                                         r"patch \(16, 16, 16\)"):
        VisionTransformer3d((32, 32, 40), patch=16, **TINY)
    assert token_grid((16, 32, 32), (8, 16, 16)) == (2, 2, 2)
    with pytest.raises(InputError, match="three positive ints"):
        as_triple((16, 16), "patch")


def test_input_must_have_the_configured_crop():
    vit = VisionTransformer3d(32, patch=16, **TINY)
    with pytest.raises(ValueError, match=r"input size \(32, 32, 48\) should equal the "
                                         r"configured crop \(32, 32, 32\)"):
        vit(torch.zeros(1, 1, 32, 32, 48))
    with pytest.raises(ValueError, match=r"\(B, 1, Z, Y, X\)"):
        vit(torch.zeros(1, 2, 32, 32, 32))


def test_unknown_patch_embedding_or_option_is_rejected():
    with pytest.raises(InputError, match="should be one of"):
        VisionTransformer3d(32, patch_embedding="snake", **TINY)
    with pytest.raises(InputError, match="does not take"):
        VisionTransformer3d(32, patch_embedding="tubular", embedding_options={"extend_scope": 2},
                            **TINY)
