"""2D -> 3D weight transfer from a DINO teacher into the 3D ViT encoder: the five strategies.

Every strategy is a function ``(encoder, teacher_state, num_heads) -> None`` that fills a
:class:`~dineuro.models.vit3d.VisionTransformer3d` in place; :data:`TRANSFERS` selects one by name
and says which patch embedding the encoder must be built with:

- ``scratch``: random init as DINO (no teacher).
- ``average``: the RGB-summed 2D kernel repeated over the patch depth and divided by it.
- ``center``: the RGB-summed 2D kernel on the middle depth slice (index pz // 2), zeros elsewhere.
- ``tubular``: ``center`` for the patch conv, plus the flattened 2D kernel as the weights of three
  straight tubes (see :mod:`dineuro.models.tubular`).
- ``deformable``: as ``tubular``; the offset head keeps its zero init, so the tubes start
  straight and learn to bend.

All strategies but ``scratch`` copy every transformer block and the final norm 1:1 (strictly:
same names and shapes), the patch-embedding bias, and the position embedding: the CLS entry is
dropped, the G x G grid resized bicubically to the student's (H, W) token grid and repeated over
its Z tokens. Teacher state dicts are canonical DINO backbones
(:func:`dineuro.models.teacher.load_teacher` makes one from any checkpoint layout).

Grey input: the RGB kernel channels are summed, so a grey image (R = G = B) gives the same
response as with the RGB original. A student in-plane patch other than the teacher's gets the
kernel resized bicubically, scaled and shifted so its response to a constant image is unchanged
(the rule of :func:`dineuro.models.teacher.resize_patch_kernel`, for rectangles too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from dineuro.errors import InputError
from dineuro.models.teacher import resize_patch_kernel
from dineuro.models.tubular import DeformableTubularPatchEmbed3d, TubularPatchEmbed3d
from dineuro.models.vit2d import resize_pos_embed_2d
from dineuro.models.vit3d import PatchEmbed3d, VisionTransformer3d

TeacherState = Mapping[str, torch.Tensor]

#: Keys a canonical teacher state dict must have besides ``blocks.N.*``.
REQUIRED_KEYS = ("pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                 "norm.weight", "norm.bias")
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


# --------------------------------------------------------------------------------------------
# Building blocks (public so that tests and notebooks can check them one by one)


def grey_kernel(teacher_state: TeacherState, size: Sequence[int] | None = None) -> torch.Tensor:
    """The teacher's patch kernel (D, C, k, k) summed over colour channels: (D, k, k).

    Parameters
    ----------
    teacher_state : TeacherState
        Canonical DINO state dict.
    size : sequence of int, optional
        (py, px) to resize the kernel to, keeping its response to a constant image; None or the
        teacher's own size leaves it unchanged.
    """
    weight = teacher_state["patch_embed.proj.weight"].detach().to(torch.float32)
    if weight.ndim != 4:
        raise InputError(f"teacher patch_embed.proj.weight should be (D, C, k, k), got shape "
                         f"{tuple(weight.shape)}.")
    kernel = weight.sum(dim=1)
    if size is None or tuple(size) == tuple(kernel.shape[-2:]):
        return kernel
    return resize_patch_kernel(kernel[:, None], tuple(size))[:, 0]


def inflate_average(kernel: torch.Tensor, depth: int) -> torch.Tensor:
    """2D kernels (D, py, px) -> Conv3d weight (D, 1, depth, py, px), repeated and divided by depth.

    A volume whose slices all equal one image then gives that image's 2D response.
    """
    return (kernel / depth)[:, None, None].repeat(1, 1, depth, 1, 1)


def inflate_center(kernel: torch.Tensor, depth: int) -> torch.Tensor:
    """2D kernels (D, py, px) -> Conv3d weight (D, 1, depth, py, px), only slice depth // 2 set."""
    weight = kernel.new_zeros(kernel.shape[0], 1, depth, *kernel.shape[1:])
    weight[:, 0, depth // 2] = kernel
    return weight


def resize_pos_embed(pos_embed: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Teacher position embedding (1, 1 + G*G, D) -> student's (1, Z*H*W, D) for grid (Z, H, W).

    The CLS entry is dropped, the G x G grid resized bicubically (align_corners=False) to (H, W)
    and repeated over the Z token planes (z-major token order).
    """
    z, h, w = grid
    plane = resize_pos_embed_2d(pos_embed.detach().to(torch.float32), (h, w))[:, 1:]
    return plane.repeat(1, z, 1)


def teacher_size(teacher_state: TeacherState) -> tuple[int, int]:
    """(embed_dim, depth) of a canonical teacher state dict."""
    missing = [key for key in REQUIRED_KEYS if key not in teacher_state]
    if missing:
        raise InputError(f"teacher state dict lacks {missing}; load checkpoints with "
                         "dineuro.models.teacher.load_teacher.")
    blocks = {int(m.group(1)) for key in teacher_state if (m := _BLOCK_KEY.match(key))}
    return int(teacher_state["pos_embed"].shape[-1]), len(blocks)


def copy_blocks(encoder: VisionTransformer3d, teacher_state: TeacherState,
                num_heads: int | None = None) -> None:
    """Copy every transformer block and the final norm 1:1 (same names and shapes) into encoder.

    Parameters
    ----------
    encoder : VisionTransformer3d
        The student.
    teacher_state : TeacherState
        Canonical DINO state dict.
    num_heads : int, optional
        The teacher's attention heads (not stored in the weights), None to skip the check.

    Raises
    ------
    InputError
        The teacher's width, depth, heads or any block shape differ from the student's.
    """
    dim, depth = teacher_size(teacher_state)
    student_depth = len(encoder.blocks)
    if (dim, depth) != (encoder.embed_dim, student_depth):
        raise InputError(f"the teacher has embed_dim {dim} and depth {depth} but the student has "
                         f"embed_dim {encoder.embed_dim} and depth {student_depth}; pick the "
                         "student size that matches the teacher (ViT-S/16: 'small', ViT-B/16: "
                         "'base').")
    if num_heads is not None and num_heads != encoder.num_heads:
        raise InputError(f"the teacher has {num_heads} attention heads but the student has "
                         f"{encoder.num_heads}.")
    targets = {f"blocks.{key}": value for key, value in encoder.blocks.state_dict().items()}
    targets.update({f"norm.{key}": value for key, value in encoder.norm.state_dict().items()})
    for key, target in targets.items():
        if key not in teacher_state:
            raise InputError(f"the teacher has no {key!r}; it is not a DINO ViT backbone.")
        source = teacher_state[key]
        if source.shape != target.shape:
            raise InputError(f"teacher {key} has shape {tuple(source.shape)} but the student's "
                             f"is {tuple(target.shape)}.")
        target.copy_(source)
    extra = [key for key in teacher_state
             if key.startswith(("blocks.", "norm.")) and key not in targets]
    if extra:
        raise InputError(f"the teacher has parameters the student lacks: {extra[:4]}.")


def _copy_shared(encoder: VisionTransformer3d, teacher_state: TeacherState,
                 num_heads: int | None) -> torch.Tensor:
    """Blocks, norm, patch bias and position embedding; returns the student-sized grey kernel."""
    copy_blocks(encoder, teacher_state, num_heads)
    encoder.pos_embed.copy_(resize_pos_embed(teacher_state["pos_embed"], encoder.grid))
    encoder.patch_embed.proj.bias.copy_(teacher_state["patch_embed.proj.bias"])
    return grey_kernel(teacher_state, encoder.patch[1:])


def _require_embedding(encoder: VisionTransformer3d, kind: type, name: str) -> None:
    if not isinstance(encoder.patch_embed, kind):
        raise InputError(f"transfer {name!r} needs a {kind.__name__} patch embedding, the encoder "
                         f"has {type(encoder.patch_embed).__name__}; build the model with "
                         f"build_model(transfer={name!r}).")


# --------------------------------------------------------------------------------------------
# The five strategies


@torch.no_grad()
def transfer_scratch(encoder: VisionTransformer3d, teacher_state: TeacherState | None = None,
                     num_heads: int | None = None) -> None:
    """Random init as DINO (trunc-normal 0.02 linears and position embedding); no teacher used."""
    encoder.reset_parameters()


@torch.no_grad()
def transfer_average(encoder: VisionTransformer3d, teacher_state: TeacherState,
                     num_heads: int | None = None) -> None:
    """Average inflation: the grey 2D kernel repeated over the patch depth, divided by it."""
    _require_embedding(encoder, PatchEmbed3d, "average")
    kernel = _copy_shared(encoder, teacher_state, num_heads)
    encoder.patch_embed.proj.weight.copy_(inflate_average(kernel, encoder.patch[0]))


@torch.no_grad()
def transfer_center(encoder: VisionTransformer3d, teacher_state: TeacherState,
                    num_heads: int | None = None) -> None:
    """Centre inflation: the grey 2D kernel on depth slice pz // 2, zeros elsewhere."""
    _require_embedding(encoder, PatchEmbed3d, "center")
    kernel = _copy_shared(encoder, teacher_state, num_heads)
    encoder.patch_embed.proj.weight.copy_(inflate_center(kernel, encoder.patch[0]))


@torch.no_grad()
def transfer_tubular(encoder: VisionTransformer3d, teacher_state: TeacherState,
                     num_heads: int | None = None) -> None:
    """Centre-inflated patch conv plus the flattened grey kernel on each of the three tubes.

    Every view's (D, K) tube weight is the row-major flattening of the student-sized grey kernel
    (K = py * px); the gates keep their ``gate_init``.
    """
    _require_embedding(encoder, TubularPatchEmbed3d, "tubular")
    kernel = _copy_shared(encoder, teacher_state, num_heads)
    embed = encoder.patch_embed
    embed.proj.weight.copy_(inflate_center(kernel, encoder.patch[0]))
    embed.tube_weight.copy_(kernel.flatten(1)[None].expand_as(embed.tube_weight))
    embed.gate.fill_(embed.gate_init)


@torch.no_grad()
def transfer_deformable(encoder: VisionTransformer3d, teacher_state: TeacherState,
                        num_heads: int | None = None) -> None:
    """As :func:`transfer_tubular`, with the offset head reset to exactly zero offsets."""
    _require_embedding(encoder, DeformableTubularPatchEmbed3d, "deformable")
    transfer_tubular(encoder, teacher_state, num_heads)
    encoder.patch_embed.offset_head.reset_parameters()


@dataclass(frozen=True)
class TransferStrategy:
    """A transfer strategy: the patch embedding it needs and the function that fills the encoder.

    Attributes
    ----------
    patch_embedding : str
        Name in :data:`dineuro.models.vit3d.PATCH_EMBEDDINGS`.
    apply : callable
        ``(encoder, teacher_state, num_heads) -> None``, in place.
    needs_teacher : bool
        False only for ``scratch``.
    """

    patch_embedding: str
    apply: Callable[[VisionTransformer3d, TeacherState | None, int | None], None]
    needs_teacher: bool = True


#: The strategies of the ablation table, by name.
TRANSFERS: dict[str, TransferStrategy] = {
    "scratch": TransferStrategy("conv", transfer_scratch, needs_teacher=False),
    "average": TransferStrategy("conv", transfer_average),
    "center": TransferStrategy("conv", transfer_center),
    "tubular": TransferStrategy("tubular", transfer_tubular),
    "deformable": TransferStrategy("deformable", transfer_deformable),
}


def get_transfer(name: str) -> TransferStrategy:
    """The strategy called ``name``; ValueError listing the choices otherwise."""
    if name not in TRANSFERS:
        raise InputError(f"transfer should be one of {list(TRANSFERS)}, got {name!r}.")
    return TRANSFERS[name]


def apply_transfer(name: str, encoder: VisionTransformer3d,
                   teacher_state: TeacherState | None = None, num_heads: int | None = None) -> None:
    """Fill ``encoder`` in place with strategy ``name`` from a canonical teacher state dict.

    Raises
    ------
    InputError
        Unknown strategy, a teacher-based strategy without a teacher, or a teacher whose sizes do
        not match the student.
    """
    strategy = get_transfer(name)
    if strategy.needs_teacher and teacher_state is None:
        raise InputError(f"transfer {name!r} needs a DINO teacher state dict.")
    strategy.apply(encoder, teacher_state, num_heads)
