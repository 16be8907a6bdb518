r"""Tubular and deformable tubular patch embeddings: the 2D DINO kernel laid out as 3D line filters.

A neurite is a thin curve. DINeuro flattens the teacher's 16 x 16 patch kernel into K = 256 taps and
lays it out three times as a line ("tube") through each token centre, one along each axis z, y, x,
so that every token sees evidence along a neurite in every direction; the deformable variant lets
the tubes bend (snake-like, as Dynamic Snake Convolution, DSCNet) to follow a curving neurite.

Closed form
-----------
Coordinates are continuous voxel coordinates (z, y, x): voxel ``i`` covers ``[i, i + 1)`` and its
value sits at its centre ``i + 0.5``. ``x~(q)`` is the trilinear interpolation of the volume at the
point ``q`` between voxel centres, with zeros outside the volume (zero padding), i.e. exactly
``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``.

For the token ``t`` with grid index ``(t_z, t_y, t_x)`` and patch ``(p_z, p_y, p_x)``, its centre is
``c_t = (t_a * p_a + p_a / 2)`` per axis a. The tube along axis a has K = p_y * p_x taps at::

    q[t, a, k] = c_t + (k - (K - 1) / 2) * s_a * e_a + delta[t, a, k],     k = 0 .. K - 1

with spacing ``s_a`` (default ``p_a / K``: the tube spans exactly one patch along its axis, from
``c_t - p_a/2 + s_a/2`` to ``c_t + p_a/2 - s_a/2``; DINEURO.md's suggestion ``p_a / 16`` would
make a 256-tap tube span 16 patches, so it is an option, ``tube_spacing``, not the default) and
``delta = 0`` for the (straight) tubular embedding. The token embedding is::

    E_t = b + (C * x)_t + sum_a g_a * sum_k W_a[:, k] * x~(q[t, a, k])

where ``C * x`` is the non-overlapping patch convolution ``proj`` (weight ``C``, bias ``b``; the
only bias), ``W_a`` is a learnable (D, K) matrix per view (``tube_weight[a]``, views ordered
z, y, x) and ``g_a`` a learnable scalar gate per view (``gate[a]``, initialised to ``gate_init``,
default 1/3). The transfer (:func:`dineuro.models.transfer.transfer_tubular`) sets ``C`` to the
centre-inflated teacher kernel and every ``W_a`` to the same flattened (row-major) RGB-summed 2D
kernel: ``W_a[:, k] = kernel[:, k // p_x, k % p_x]``.

Deformable offsets
------------------
``delta[t, a, k]`` is zero along axis a and moves in the two perpendicular axes b. A small head
(``Conv3d(1, hidden)`` with kernel = stride = patch, GELU, ``Linear(hidden, 3 * 2 * n_steps)``)
predicts per token, view and perpendicular axis ``n_steps`` raw increments ``r``; as in DSCNet
they are bounded by tanh and accumulated from the tube centre outward in both directions::

    o(0) = 0,   o(+m) = sum_{j=1..m} tanh(r[+j]) * S_b / (n_steps / 2),   likewise o(-m),

for m = 1 .. n_steps / 2, at control points spread evenly over the tube from end to end, and
``delta`` at tap k is the linear interpolation of ``o`` at the tap's position along the tube. So
the path is continuous, starts at the token centre, and ``|delta_b| < S_b`` (``extend_scope``,
default ``p_b / 4`` voxels along axis b). The head's last layer starts at zero, so at
initialisation ``delta`` is exactly zero and the deformable embedding equals the tubular one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dineuro.errors import InputError

#: Tube axes, in the order of the view dimension of ``tube_weight`` and ``gate``.
VIEWS = ("z", "y", "x")
#: For the tube along axis a, the two axes its deformation moves in.
PERPENDICULAR = ((1, 2), (0, 2), (0, 1))
#: Default gate of each view: the three views together weigh as much as the centre kernel.
GATE_INIT = 1.0 / 3.0
#: Default bound of a perpendicular offset along axis b, as a fraction of the patch side p_b.
EXTEND_SCOPE_FRACTION = 0.25
#: Default number of offset increments per tube (control points = this + 1, including the centre).
OFFSET_STEPS = 16
#: Default width of the offset head.
OFFSET_HIDDEN = 32
#: Standard deviation of the random init of the tube weights (as DINO's linear layers).
INIT_STD = 0.02


def _patch_triple(patch: Sequence[int]) -> tuple[int, int, int]:
    patch = tuple(patch)
    if len(patch) != 3 or not all(isinstance(p, int) and p > 0 for p in patch):
        raise InputError(f"patch should be three positive ints (z, y, x), got {patch!r}.")
    return patch  # type: ignore[return-value]


def _per_axis(value: float | Sequence[float], name: str) -> tuple[float, float, float]:
    values = (float(value),) * 3 if np.isscalar(value) else tuple(float(v) for v in value)
    if len(values) != 3 or not all(v > 0 for v in values):
        raise InputError(f"{name} should be a positive number or three (z, y, x), got {value!r}.")
    return values  # type: ignore[return-value]


class TubularPatchEmbed3d(nn.Module):
    """Centre-conv patch embedding plus three straight tubes per token (see the module docstring).

    Parameters
    ----------
    patch : sequence of int
        Patch size (pz, py, px) in voxels; the tubes have K = py * px taps.
    embed_dim : int
        Token width D.
    tube_spacing : float or sequence of float, optional
        Distance between neighbouring taps in voxels, one number or one per tube axis (z, y, x);
        default ``p_a / K`` so that each tube spans one patch.
    gate_init : float, optional
        Initial value of the three per-view gates.

    Examples
    --------
    >>> embed = TubularPatchEmbed3d((16, 16, 16), 48)
    >>> embed(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 8, 48])
    >>> embed.sample_positions(torch.zeros(1, 1, 32, 32, 32)).shape  # (B, N, view, K, zyx)
    torch.Size([1, 8, 3, 256, 3])
    """

    def __init__(self, patch: Sequence[int], embed_dim: int,
                 tube_spacing: float | Sequence[float] | None = None,
                 gate_init: float = GATE_INIT):
        super().__init__()
        self.patch = _patch_triple(patch)
        self.taps = self.patch[1] * self.patch[2]
        self.tube_spacing = (tuple(p / self.taps for p in self.patch) if tube_spacing is None
                             else _per_axis(tube_spacing, "tube_spacing"))
        self.gate_init = float(gate_init)
        self.proj = nn.Conv3d(1, embed_dim, kernel_size=self.patch, stride=self.patch)
        self.tube_weight = nn.Parameter(torch.empty(len(VIEWS), embed_dim, self.taps))
        self.gate = nn.Parameter(torch.empty(len(VIEWS)))
        steps = torch.arange(self.taps, dtype=torch.float32) - (self.taps - 1) / 2
        straight = torch.zeros(len(VIEWS), self.taps, 3)
        for axis, spacing in enumerate(self.tube_spacing):
            straight[axis, :, axis] = steps * spacing
        # Tap positions relative to the token centre, (view, K, zyx); a constant, not state.
        self.register_buffer("tube_displacement", straight, persistent=False)
        TubularPatchEmbed3d.reset_parameters(self)

    def reset_parameters(self) -> None:
        """Random init: default conv, trunc-normal tube weights, gates at ``gate_init``."""
        self.proj.reset_parameters()
        nn.init.trunc_normal_(self.tube_weight, std=INIT_STD)
        nn.init.constant_(self.gate, self.gate_init)

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (Z, H, W) of a volume (B, 1, Z, Y, X); ValueError unless patches tile it."""
        size = tuple(x.shape[2:])
        if x.ndim != 5 or any(s % p for s, p in zip(size, self.patch, strict=True)):
            raise ValueError(f"input of shape {tuple(x.shape)} should be (B, 1, Z, Y, X) with a "
                             f"multiple of the patch {self.patch} along every axis.")
        return tuple(s // p for s, p in zip(size, self.patch, strict=True))  # type: ignore[return-value]

    def token_centres(self, grid: Sequence[int], dtype: torch.dtype = torch.float32,
                      device: torch.device | None = None) -> torch.Tensor:
        """Continuous (z, y, x) centres ``t * p + p / 2`` of the tokens, (N, 3), z-major."""
        axes = [torch.arange(n, dtype=dtype, device=device) * p + p / 2
                for n, p in zip(grid, self.patch, strict=True)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)

    def offsets(self, x: torch.Tensor) -> torch.Tensor | None:
        """Deformation ``delta`` (B, N, view, K, zyx) of the tubes; None for straight tubes."""
        return None

    def sample_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous (z, y, x) positions of all taps, (B, N, view, K, 3); views ordered z, y, x."""
        centres = self.token_centres(self.token_grid(x), x.dtype, x.device)
        straight = centres[:, None, None, :] + self.tube_displacement.to(x.dtype)
        positions = straight.expand(len(x), *straight.shape)
        delta = self.offsets(x)
        return positions if delta is None else positions + delta

    @staticmethod
    def sample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Trilinear samples ``x~(q)`` (zero outside) of x (B, 1, Z, Y, X) at positions (B, ..., 3).

        Returns a tensor of shape ``positions.shape[:-1]``; differentiable in x and positions.
        """
        size = torch.tensor(x.shape[2:], dtype=positions.dtype, device=positions.device)
        # align_corners=False maps -1 / +1 to the outer faces of the first / last voxel, i.e.
        # continuous coordinates 0 and size; grid_sample wants (x, y, z) order.
        grid = (2 * positions / size - 1).flip(-1)
        batch, *rest, _ = positions.shape
        grid = grid.reshape(batch, 1, 1, -1, 3)
        samples = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        return samples.reshape(batch, *rest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a volume (B, 1, Z, Y, X) to tokens (B, N, D), N = number of patches, z-major."""
        centre = self.proj(x).flatten(2).transpose(1, 2)
        samples = self.sample(x, self.sample_positions(x))
        weights = self.gate[:, None, None] * self.tube_weight
        return centre + torch.einsum("bnvk,vdk->bnd", samples, weights)


class TubeOffsetHead(nn.Module):
    """Predicts the snake-like perpendicular deformation of every tube (see the module docstring).

    Parameters
    ----------
    patch : sequence of int
        Patch size (pz, py, px) in voxels.
    taps : int
        Taps per tube K.
    extend_scope : float or sequence of float, optional
        Bound of the offset along each axis in voxels, one number for all axes or None for
        ``p_b / 4`` along axis b.
    steps : int, optional
        Offset increments per tube (even; control points = steps + 1 incl. the centre).
    hidden : int, optional
        Width of the head.
    """

    def __init__(self, patch: Sequence[int], taps: int,
                 extend_scope: float | Sequence[float] | None = None, steps: int = OFFSET_STEPS,
                 hidden: int = OFFSET_HIDDEN):
        super().__init__()
        patch = _patch_triple(patch)
        if steps < 2 or steps % 2:
            raise InputError(f"offset_steps should be an even number >= 2, got {steps}.")
        scope = (tuple(p * EXTEND_SCOPE_FRACTION for p in patch) if extend_scope is None
                 else _per_axis(extend_scope, "extend_scope"))
        self.steps = steps
        self.conv = nn.Conv3d(1, hidden, kernel_size=patch, stride=patch)
        self.act = nn.GELU()
        self.out = nn.Linear(hidden, len(VIEWS) * 2 * steps)
        # Bound of the offset along each of the two perpendicular axes of each view, (view, 2, 1).
        bound = torch.tensor([[scope[b] for b in axes] for axes in PERPENDICULAR])
        self.register_buffer("scope", bound[..., None], persistent=False)
        # One-hot map from (view, perpendicular slot) to the (z, y, x) coordinate it moves.
        perpendicular = torch.zeros(len(VIEWS), 2, 3)
        for view, axes in enumerate(PERPENDICULAR):
            for slot, axis in enumerate(axes):
                perpendicular[view, slot, axis] = 1.0
        self.register_buffer("perpendicular", perpendicular, persistent=False)
        # Linear interpolation from the steps + 1 control points to the K taps, both spread
        # evenly over the tube from end to end, (K, steps + 1).
        control = np.linspace(-1.0, 1.0, steps + 1)
        tap = np.linspace(-1.0, 1.0, taps) if taps > 1 else np.zeros(1)
        interp = np.stack([np.interp(tap, control, row) for row in np.eye(steps + 1)], axis=1)
        self.register_buffer("interp", torch.as_tensor(interp, dtype=torch.float32),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default conv init; zero last layer so that the offsets start at exactly zero."""
        self.conv.reset_parameters()
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deformation (B, N, view, K, zyx) of the tubes of a volume (B, 1, Z, Y, X)."""
        features = self.act(self.conv(x)).flatten(2).transpose(1, 2)
        raw = self.out(features).unflatten(-1, (len(VIEWS), 2, self.steps))
        half = self.steps // 2
        increments = torch.tanh(raw) * self.scope.to(raw.dtype) / half
        outward = increments[..., half:].cumsum(-1)
        inward = increments[..., :half].flip(-1).cumsum(-1).flip(-1)
        control = torch.cat([inward, torch.zeros_like(raw[..., :1]), outward], dim=-1)
        along_tube = control @ self.interp.to(raw.dtype).T
        return torch.einsum("bnvsk,vsc->bnvkc", along_tube, self.perpendicular.to(raw.dtype))


class DeformableTubularPatchEmbed3d(TubularPatchEmbed3d):
    """Tubular patch embedding whose tubes bend perpendicular to their axis (module docstring).

    Parameters
    ----------
    patch : sequence of int
        Patch size (pz, py, px) in voxels; the tubes have K = py * px taps.
    embed_dim : int
        Token width D.
    tube_spacing : float or sequence of float, optional
        Distance between neighbouring taps in voxels (default: tube spans a patch).
    gate_init : float, optional
        Initial value of the three per-view gates.
    extend_scope : float, optional
        Bound of a perpendicular offset in voxels (one number for all axes), or None for ``p_b / 4``
        along axis b.
    offset_steps : int, optional
        Offset increments per tube (even); the offsets at the K taps are linearly interpolated from
        these ``offset_steps + 1`` control points.
    offset_hidden : int, optional
        Width of the offset head.

    Examples
    --------
    >>> embed = DeformableTubularPatchEmbed3d((16, 16, 16), 48)
    >>> x = torch.rand(1, 1, 32, 32, 32)
    >>> bool(embed.offsets(x).abs().max() == 0)  # straight tubes at initialisation
    True
    """

    def __init__(self, patch: Sequence[int], embed_dim: int,
                 tube_spacing: float | Sequence[float] | None = None,
                 gate_init: float = GATE_INIT, extend_scope: float | None = None,
                 offset_steps: int = OFFSET_STEPS, offset_hidden: int = OFFSET_HIDDEN):
        super().__init__(patch, embed_dim, tube_spacing=tube_spacing, gate_init=gate_init)
        self.offset_head = TubeOffsetHead(self.patch, self.taps, extend_scope=extend_scope,
                                          steps=offset_steps, hidden=offset_hidden)

    def reset_parameters(self) -> None:
        """Random init of the tubular part; offset head back to exactly zero offsets."""
        super().reset_parameters()
        self.offset_head.reset_parameters()

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """Deformation ``delta`` (B, N, view, K, zyx) of the tubes, predicted from x."""
        self.token_grid(x)
        return self.offset_head(x)
