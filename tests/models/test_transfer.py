"""The five 2D -> 3D transfer strategies, each against an independent 2D computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dineuro.errors import InputError
from dineuro.models.build import build_model
from dineuro.models.transfer import (
    TRANSFERS,
    apply_transfer,
    copy_blocks,
    transfer_center,
)
from dineuro.models.vit2d import VisionTransformer2d
from dineuro.models.vit3d import VisionTransformer3d

TINY = dict(embed_dim=48, depth=4, num_heads=3)


@pytest.fixture(scope="module")
def teacher_state():
    """A perturbed tiny DINO state dict (biases and norms away from their init)."""
    torch.manual_seed(0)
    state = VisionTransformer2d(img_size=224, **TINY).state_dict()
    generator = torch.Generator().manual_seed(1)
    return {key: value + 0.05 * torch.randn(value.shape, generator=generator)
            for key, value in state.items()}


@pytest.fixture(scope="module")
def teacher_vit(teacher_state) -> VisionTransformer2d:
    vit = VisionTransformer2d(img_size=224, **TINY)
    vit.load_state_dict(teacher_state)
    return vit.eval()


def encoder(transfer: str, teacher_state, crop=(32, 32, 32), patch=16) -> VisionTransformer3d:
    embedding = TRANSFERS[transfer].patch_embedding
    student = VisionTransformer3d(crop, patch=patch, patch_embedding=embedding, **TINY)
    apply_transfer(transfer, student, teacher_state, num_heads=TINY["num_heads"])
    return student.eval()


def patch_tokens_2d(image: torch.Tensor, teacher_state) -> torch.Tensor:
    """2D patch embedding (N, D) of a grey image with the RGB-summed kernel, by F.conv2d."""
    kernel = teacher_state["patch_embed.proj.weight"].sum(dim=1, keepdim=True)
    out = F.conv2d(image[None, None], kernel, teacher_state["patch_embed.proj.bias"], stride=16)
    return out[0].flatten(1).T


@pytest.mark.parametrize("transfer", ["average", "center", "tubular"])
@pytest.mark.parametrize("patch, crop", [(16, (32, 32, 32)), ((8, 16, 16), (16, 32, 48))])
def test_constant_over_depth_volume_gives_the_2d_patch_embedding(transfer, patch, crop,
                                                                 teacher_state, teacher_vit):
    image = torch.rand(crop[1:], generator=torch.Generator().manual_seed(2))
    volume = image.expand(1, 1, *crop).contiguous()
    student = encoder(transfer, teacher_state, crop, patch)
    if transfer == "tubular":  # the inflated centre conv alone, without the tubes
        tokens = student.patch_embed.proj(volume).flatten(2).transpose(1, 2)[0]
    else:
        tokens = student.patch_embed(volume)[0]
    expected = patch_tokens_2d(image, teacher_state)
    per_plane = tokens.reshape(student.grid[0], -1, TINY["embed_dim"])
    for plane in per_plane:
        torch.testing.assert_close(plane, expected, rtol=1e-5, atol=1e-5)
    # a grey image gives the RGB teacher's response to the same image in three channels
    rgb = teacher_vit.patch_embed(image.expand(1, 3, *crop[1:]))[0]
    torch.testing.assert_close(per_plane[0], rgb, rtol=1e-5, atol=1e-5)


def test_center_and_average_kernels_have_their_depth_profile(teacher_state):
    kernel = teacher_state["patch_embed.proj.weight"].sum(dim=1)
    center = encoder("center", teacher_state, (16, 32, 32), (8, 16, 16)).patch_embed.proj.weight
    average = encoder("average", teacher_state, (16, 32, 32), (8, 16, 16)).patch_embed.proj.weight
    for z in range(8):
        torch.testing.assert_close(average[:, 0, z], kernel / 8)
        torch.testing.assert_close(center[:, 0, z], kernel if z == 4 else torch.zeros_like(kernel))


def test_tube_weights_are_the_row_major_flattened_grey_kernel(teacher_state):
    student = encoder("deformable", teacher_state)
    kernel = teacher_state["patch_embed.proj.weight"].sum(dim=1)
    embed = student.patch_embed
    for view in range(3):
        for row in range(16):
            for col in range(16):
                torch.testing.assert_close(embed.tube_weight[view, :, row * 16 + col],
                                           kernel[:, row, col])
    assert embed.gate.tolist() == pytest.approx([1 / 3] * 3)
    assert embed.offset_head.out.weight.abs().sum() == 0


def test_in_plane_resize_keeps_the_constant_image_response(teacher_state):
    student = encoder("center", teacher_state, (16, 16, 16), (8, 8, 8))
    kernel = teacher_state["patch_embed.proj.weight"].sum(dim=1)
    resized = student.patch_embed.proj.weight[:, 0, 4]
    assert resized.shape[-2:] == (8, 8)
    torch.testing.assert_close(resized.sum(dim=(-2, -1)), kernel.sum(dim=(-2, -1)))
    # bicubic resampling (times 4 taps per tap, plus a constant) keeps the kernel's pattern
    shape = F.interpolate(kernel[:, None], size=(8, 8), mode="bicubic")[:, 0] * 4
    centred = resized - resized.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(centred, shape - shape.mean(dim=(-2, -1), keepdim=True))


def test_copied_blocks_compute_what_the_teacher_blocks_compute(teacher_state, teacher_vit):
    student = encoder("center", teacher_state)
    tokens = torch.randn(2, 11, TINY["embed_dim"], generator=torch.Generator().manual_seed(4))
    ours, theirs = tokens, tokens
    for block_3d, block_2d in zip(student.blocks, teacher_vit.blocks, strict=True):
        ours, theirs = block_3d(ours), block_2d(theirs)
        assert torch.equal(ours, theirs)
    assert torch.equal(student.norm(ours), teacher_vit.norm(theirs))


def bicubic_resize(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent separable bicubic resize (Keys, a = -0.75, half-pixel centres, edge clamp)."""

    def cubic(t: float) -> float:
        a, t = -0.75, abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    def matrix(n_in: int, n_out: int) -> np.ndarray:
        weights = np.zeros((n_out, n_in))
        for i in range(n_out):
            source = (i + 0.5) * n_in / n_out - 0.5
            base = int(np.floor(source))
            for j in range(base - 1, base + 3):
                weights[i, min(max(j, 0), n_in - 1)] += cubic(source - j)
        return weights

    rows, cols = matrix(grid.shape[0], size[0]), matrix(grid.shape[1], size[1])
    return np.einsum("ia,abd,jb->ijd", rows, grid, cols)


def test_position_embedding_is_the_resized_2d_grid_repeated_over_depth(teacher_state):
    student = encoder("average", teacher_state, crop=(48, 80, 48))  # token grid (3, 5, 3)
    grid_2d = teacher_state["pos_embed"][0, 1:].reshape(14, 14, -1).double().numpy()
    expected = bicubic_resize(grid_2d, (5, 3))
    pos = student.pos_embed.detach().reshape(3, 5, 3, -1).double().numpy()
    for z in range(3):
        np.testing.assert_allclose(pos[z], expected, rtol=1e-5, atol=1e-6)
    same_size = encoder("center", teacher_state, crop=(16, 224, 224))
    torch.testing.assert_close(same_size.pos_embed[0], teacher_state["pos_embed"][0, 1:])


def test_scratch_is_dino_style_random_init(teacher_state):
    torch.manual_seed(0)
    student = encoder("scratch", teacher_state)
    pos = student.pos_embed.detach()
    assert 0.015 < pos.std() < 0.025 and pos.abs().max() <= 2.0
    block = student.blocks[0]
    assert torch.equal(block.norm1.weight, torch.ones(48))
    assert torch.equal(block.attn.qkv.bias, torch.zeros(144))
    assert 0.015 < block.mlp.fc1.weight.std() < 0.025
    assert not torch.equal(block.attn.qkv.weight, teacher_state["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("change, message", [
    (dict(embed_dim=96, depth=4, num_heads=3), "embed_dim 96 and depth 4 .* embed_dim 48 and "
                                               "depth 4"),
    (dict(embed_dim=48, depth=8, num_heads=3), "embed_dim 48 and depth 8 .* embed_dim 48 and "
                                               "depth 4"),
])
def test_teacher_of_another_size_is_a_clear_error(change, message):
    other = VisionTransformer2d(img_size=32, **change).state_dict()
    student = VisionTransformer3d(32, **TINY)
    with pytest.raises(InputError, match=message):
        copy_blocks(student, other)


def test_other_head_count_or_mlp_width_is_a_clear_error(teacher_state):
    student = VisionTransformer3d(32, **TINY)
    with pytest.raises(InputError, match="6 attention heads but the student has 3"):
        transfer_center(student, teacher_state, num_heads=6)
    wide = VisionTransformer2d(img_size=32, mlp_ratio=2.0, **TINY).state_dict()
    with pytest.raises(InputError, match="fc1.weight has shape"):
        copy_blocks(student, wide)


def test_strategy_needs_its_patch_embedding(teacher_state):
    student = VisionTransformer3d(32, **TINY)
    with pytest.raises(InputError, match="transfer='tubular'"):
        apply_transfer("tubular", student, teacher_state)
    with pytest.raises(InputError, match="one of"):
        apply_transfer("inflate", student, teacher_state)


@pytest.mark.parametrize("transfer", list(TRANSFERS))
def test_every_strategy_trains_on_the_tiny_model(transfer, teacher_state):
    torch.manual_seed(0)
    teacher = None if transfer == "scratch" else teacher_state
    model = build_model("tiny", transfer=transfer, teacher=teacher)
    logits = model(torch.rand(1, 1, 32, 32, 32))
    assert logits.shape == (1, 2, 32, 32, 32)
    logits.logsumexp(dim=1).mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["encoder.pos_embed"].abs().sum() > 0
    assert model.config["transfer"] == transfer
