"""The tubular and deformable tubular patch embeddings against their closed form, computed here
independently: token centres, tap positions and trilinear interpolation written out with plain
numpy indexing (voxel i has its value at continuous coordinate i + 0.5; zero outside)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dineuro.errors import InputError
from dineuro.models.tubular import (
    PERPENDICULAR,
    DeformableTubularPatchEmbed3d,
    TubularPatchEmbed3d,
)

PATCH = (8, 4, 4)  # K = 16 taps: small enough to loop over in Python
CROP = (16, 8, 12)
DIM = 6
GATES = (0.7, -1.3, 2.1)


def trilinear(volume: np.ndarray, point: np.ndarray) -> float:
    """Value of ``volume`` (Z, Y, X) at a continuous (z, y, x) point, zero outside."""
    index = np.asarray(point, dtype=np.float64) - 0.5
    low = np.floor(index).astype(int)
    frac = index - low
    total = 0.0
    for corner in np.ndindex(2, 2, 2):
        voxel = low + np.array(corner)
        weight = np.prod(np.where(np.array(corner) == 1, frac, 1.0 - frac))
        if all(0 <= v < s for v, s in zip(voxel, volume.shape, strict=True)):
            total += weight * volume[tuple(voxel)]
    return total


def straight_tap(token: tuple[int, int, int], axis: int, k: int, patch, taps: int,
                 spacing: float | None = None) -> np.ndarray:
    """Continuous position of tap k of the straight tube along ``axis`` through ``token``."""
    centre = np.array([t * p + p / 2 for t, p in zip(token, patch, strict=True)], dtype=np.float64)
    step = patch[axis] / taps if spacing is None else spacing
    centre[axis] += (k - (taps - 1) / 2) * step
    return centre


def closed_form(embed: TubularPatchEmbed3d, volume: np.ndarray, token: tuple[int, int, int],
                positions: np.ndarray | None = None) -> np.ndarray:
    """E_t = b + (C * x)_t + sum_a g_a sum_k W_a[:, k] x~(q_{t,a,k}), by explicit loops.

    ``positions`` (view, K, 3) overrides the straight tap positions (deformed tubes).
    """
    patch = embed.patch
    conv = embed.proj.weight.detach().double().numpy()[:, 0]
    corner = [t * p for t, p in zip(token, patch, strict=True)]
    block = volume[corner[0]:corner[0] + patch[0], corner[1]:corner[1] + patch[1],
                   corner[2]:corner[2] + patch[2]]
    out = embed.proj.bias.detach().double().numpy() + np.einsum("dzyx,zyx->d", conv, block)
    weights = embed.tube_weight.detach().double().numpy()
    gates = embed.gate.detach().double().numpy()
    for axis in range(3):
        for k in range(embed.taps):
            point = (straight_tap(token, axis, k, patch, embed.taps) if positions is None
                     else positions[axis, k])
            out += gates[axis] * weights[axis, :, k] * trilinear(volume, point)
    return out


def token_index(token, grid) -> int:
    return (token[0] * grid[1] + token[1]) * grid[2] + token[2]


@pytest.fixture
def volume() -> torch.Tensor:
    return torch.rand(1, 1, *CROP, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def tubular() -> TubularPatchEmbed3d:
    torch.manual_seed(0)
    embed = TubularPatchEmbed3d(PATCH, DIM)
    with torch.no_grad():
        embed.gate.copy_(torch.tensor(GATES))
        embed.proj.bias.normal_()
    return embed


def make_deformable(tubular: TubularPatchEmbed3d, **options) -> DeformableTubularPatchEmbed3d:
    deformable = DeformableTubularPatchEmbed3d(tubular.patch, DIM, **options)
    missing, unexpected = deformable.load_state_dict(tubular.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("offset_head.") for key in missing)
    return deformable


def test_tubular_matches_closed_form(tubular, volume):
    grid = tuple(c // p for c, p in zip(CROP, PATCH, strict=True))
    tokens = tubular(volume)[0].detach().double().numpy()
    assert tokens.shape == (np.prod(grid), DIM)
    # corner tokens have taps outside the volume's last voxel centres (zero padding)
    for token in [(0, 0, 0), (1, 1, 2), (0, 1, 1)]:
        expected = closed_form(tubular, volume[0, 0].double().numpy(), token)
        np.testing.assert_allclose(tokens[token_index(token, grid)], expected, rtol=1e-5,
                                   atol=1e-5)


def test_tubes_span_one_patch_by_default_and_spacing_is_configurable(tubular, volume):
    positions = tubular.sample_positions(volume)[0, 0].numpy()  # token (0, 0, 0)
    for axis, p in enumerate(PATCH):
        along = positions[axis, :, axis]
        step = p / tubular.taps
        assert along[0] == pytest.approx(step / 2) and along[-1] == pytest.approx(p - step / 2)
        np.testing.assert_allclose(positions[axis, 5], straight_tap((0, 0, 0), axis, 5, PATCH,
                                                                    tubular.taps))
    wide = TubularPatchEmbed3d(PATCH, DIM, tube_spacing=0.5)
    positions = wide.sample_positions(volume)[0, 0].numpy()
    np.testing.assert_allclose(positions[1, :, 1],
                               [straight_tap((0, 0, 0), 1, k, PATCH, 16, 0.5)[1]
                                for k in range(16)])


def test_deformable_with_zero_offsets_equals_tubular_exactly(tubular, volume):
    deformable = make_deformable(tubular)
    assert torch.equal(deformable.offsets(volume), torch.zeros(1, 12, 3, 16, 3))
    assert torch.equal(deformable(volume), tubular(volume))


def perturbed_deformable(tubular, **options) -> DeformableTubularPatchEmbed3d:
    deformable = make_deformable(tubular, **options)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = deformable.offset_head.out
        out.weight.copy_(3.0 * torch.randn(out.weight.shape, generator=generator))
        out.bias.copy_(torch.randn(out.bias.shape, generator=generator))
    return deformable


def test_deformed_tubes_stay_within_extend_scope_and_move_perpendicular(tubular, volume):
    deformable = perturbed_deformable(tubular)
    straight = tubular.sample_positions(volume)
    delta = (deformable.sample_positions(volume) - straight)
    assert delta.abs().max() > 0.5  # really deformed
    for axis in range(3):
        assert torch.equal(delta[:, :, axis, :, axis], torch.zeros_like(delta[:, :, 0, :, 0]))
        for b in PERPENDICULAR[axis]:
            assert delta[:, :, axis, :, b].abs().max() <= PATCH[b] / 4  # default p_b / 4
    # the path is continuous: neighbouring taps move by at most 2 * scope / (K - 1)
    steps = (delta[:, :, :, 1:] - delta[:, :, :, :-1]).abs().amax(dim=(0, 1, 3))
    bound = 2 * torch.tensor([[p / 4 for p in PATCH]] * 3) / (tubular.taps - 1)
    assert torch.all(steps <= bound + 1e-6)
    scoped = perturbed_deformable(tubular, extend_scope=0.75)
    assert (scoped.sample_positions(volume) - straight).abs().max() <= 0.75


def test_deformable_matches_closed_form_at_reported_positions(tubular, volume):
    deformable = perturbed_deformable(tubular)
    grid = tuple(c // p for c, p in zip(CROP, PATCH, strict=True))
    positions = deformable.sample_positions(volume)[0].detach().double().numpy()
    tokens = deformable(volume)[0].detach().double().numpy()
    for token in [(0, 0, 0), (1, 1, 1)]:
        index = token_index(token, grid)
        expected = closed_form(deformable, volume[0, 0].double().numpy(), token,
                               positions=positions[index])
        np.testing.assert_allclose(tokens[index], expected, rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_offset_head(tubular, volume):
    deformable = perturbed_deformable(tubular)
    deformable(volume).square().sum().backward()
    for name, param in deformable.offset_head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_offsets_start_at_zero_with_zero_last_layer_only():
    embed = DeformableTubularPatchEmbed3d(PATCH, DIM, offset_steps=4, offset_hidden=5)
    assert embed.offset_head.out.weight.shape == (3 * 2 * 4, 5)
    assert embed.offset_head.out.weight.abs().sum() == 0
    assert embed.offset_head.conv.weight.abs().sum() > 0
    with pytest.raises(InputError, match="even"):
        DeformableTubularPatchEmbed3d(PATCH, DIM, offset_steps=3)


def test_input_not_tiled_by_patches_is_rejected(tubular):
    with pytest.raises(ValueError, match="multiple of the patch"):
        tubular(torch.zeros(1, 1, 16, 8, 10))


def test_default_sixteen_cube_patch_has_256_taps_and_matches_closed_form():
    torch.manual_seed(1)
    embed = TubularPatchEmbed3d((16, 16, 16), 4, gate_init=0.4)
    volume = torch.rand(1, 1, 32, 16, 16)
    assert embed.taps == 256 and embed.gate.tolist() == pytest.approx([0.4] * 3)
    expected = closed_form(embed, volume[0, 0].double().numpy(), (1, 0, 0))
    np.testing.assert_allclose(embed(volume)[0, 1].detach().double().numpy(), expected,
                               rtol=1e-5, atol=1e-5)
