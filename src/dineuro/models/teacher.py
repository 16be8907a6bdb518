"""Load a DINO-pretrained 2D ViT ("teacher") from whatever file layout it was saved in.

The teacher's weights are what the 3D student inherits, so this module is strict: the file must
hold exactly one DINO ViT backbone, and the architecture is read from the tensor shapes rather
than trusted from a file name. Accepted layouts:

- the official backbone-only downloads (``dino_deitsmall16_pretrain.pth``, ...): a plain state
  dict in the layout of :class:`~dineuro.models.vit2d.VisionTransformer2d`;
- wrappers ``{"teacher": sd}``, ``{"student": sd}``, ``{"model": sd}``, ``{"state_dict": sd}``
  (``teacher`` is preferred when a DINO training checkpoint holds both), with keys prefixed by
  ``module.``, ``backbone.`` or ``module.backbone.``; projection heads (``head.*``) are dropped;
- ``.pth`` / ``.pt`` pickles (read with ``torch.load(weights_only=True)``) and ``.safetensors``;
- DINOv2 ViT-S/14 and ViT-B/14 backbones, converted to a DINO-shaped /16 teacher (see
  :func:`resize_patch_kernel` and :func:`fold_layer_scale`).

Examples
--------
>>> teacher = load_teacher("dino_deitsmall16_pretrain.pth")  # doctest: +SKIP
>>> teacher.embed_dim, teacher.depth, teacher.num_heads, teacher.patch_size  # doctest: +SKIP
(384, 12, 6, 16)
>>> vit = teacher.to_vit2d()  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dineuro.errors import InputError
from dineuro.models.vit2d import VisionTransformer2d

#: Patch side the student is built for; DINOv2's 14-pixel kernels are resized to it.
TARGET_PATCH_SIZE = 16
#: DINOv2's patch side, recognised from the kernel shape.
DINOV2_PATCH_SIZE = 14
#: Heads of the released DINO / DINOv2 ViTs; the head count is not stored in the weights.
KNOWN_NUM_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16}
#: Head width of every released ViT, used when the embedding width is not in the table.
HEAD_DIM = 64

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
#: Wrapper keys, in order of preference: a DINO training checkpoint's EMA teacher is the
#: backbone DINO evaluates and releases, so it wins over the student.
WRAPPER_KEYS = ("teacher", "student", "model", "state_dict")
KEY_PREFIXES = ("module.", "backbone.")
HEAD_PREFIXES = ("head.", "dino_head.", "ibot_head.")
DINOV2_EXTRA_TOKENS = ("mask_token", "register_tokens")
MAX_LISTED_KEYS = 8

_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")
_LAYER_SCALE = re.compile(r"^blocks\.(\d+)\.ls([12])\.gamma$")
#: LayerScale ``ls1`` scales the attention branch, ``ls2`` the MLP branch.
_LAYER_SCALE_TARGET = {"1": "attn.proj", "2": "mlp.fc2"}


@dataclass
class Teacher:
    """A DINO ViT backbone read from a file: canonical weights plus the architecture they imply.

    Parameters
    ----------
    state_dict : dict of {str: torch.Tensor}
        float32 tensors under the official DINO backbone keys (``cls_token``, ``pos_embed``,
        ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``), nothing else.
    embed_dim : int
        Token width (ViT-S 384, ViT-B 768).
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads (inferred, see :func:`infer_num_heads`).
    mlp_ratio : float
        MLP hidden width over ``embed_dim``.
    patch_size : int
        Side of the patch kernel in ``state_dict`` (16 after a DINOv2 conversion).
    in_chans : int
        Image channels of the patch kernel (3 for RGB).
    grid : int
        Side of the square position-embedding grid (14 for 224 px at /16, 37 for DINOv2's 518 px at
        /14, kept as is after the kernel resize).
    source : str
        The file the weights came from.
    source_patch_size : int, optional
        Patch side in the file (14 for DINOv2, else ``patch_size``).
    conversions : tuple of str, optional
        What was changed on the way in, in words, for logs and reports.
    """

    state_dict: dict[str, torch.Tensor]
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch_size: int
    in_chans: int
    grid: int
    source: str
    source_patch_size: int | None = None
    conversions: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.source_patch_size is None:
            self.source_patch_size = self.patch_size

    def to_vit2d(self) -> VisionTransformer2d:
        """Build the 2D ViT these weights describe and load them strictly.

        The image size is ``grid * patch_size``, the size at which the position embedding
        needs no interpolation.
        """
        vit = _build_vit(self.embed_dim, self.depth, self.num_heads, self.mlp_ratio,
                         self.patch_size, self.in_chans, self.grid)
        vit.load_state_dict(self.state_dict, strict=True)
        return vit


def load_teacher(path: str | os.PathLike, num_heads: int | None = None) -> Teacher:
    """Read a DINO (or DINOv2 /14) ViT backbone from ``path`` into a :class:`Teacher`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``, so no code in the file
        runs) or a ``.safetensors`` file.
    num_heads : int, optional
        Attention heads, needed only when the embedding width is not one of the released models' and
        not a multiple of 64 (the head count is not in the weights).

    Returns
    -------
    Teacher
        The teacher with canonical float32 weights and its architecture.

    Raises
    ------
    InputError
        The file cannot be read, holds no state dict, or its keys and shapes are not those of one
        DINO ViT backbone (the offending keys are listed).
    """
    path = Path(path)
    state, conversions = _canonical_state_dict(_unwrap(_read_checkpoint(path), path), path)
    state, dinov2_conversions, source_patch = _convert_dinov2(state)
    arch = _infer_architecture(state, path, num_heads)
    state = _checked_in_module_order(state, arch, path)
    return Teacher(state_dict=state, source=str(path), source_patch_size=source_patch,
                   conversions=conversions + dinov2_conversions, **arch)


def infer_num_heads(embed_dim: int, num_heads: int | None = None) -> int:
    """Head count for a DINO ViT of width ``embed_dim``, which the weights do not record.

    Released models follow a fixed convention (192 -> 3, 384 -> 6, 768 -> 12, 1024 -> 16),
    i.e. heads of width 64; any other width that is a multiple of 64 gets ``embed_dim // 64``.
    An explicit ``num_heads`` always wins.

    Parameters
    ----------
    embed_dim : int
        Token width.
    num_heads : int, optional
        Explicit head count, or None to infer it.

    Raises
    ------
    InputError
        ``num_heads`` does not divide ``embed_dim``, or it is None and cannot be inferred.
    """
    if num_heads is not None:
        if num_heads < 1 or embed_dim % num_heads:
            raise InputError(f"num_heads={num_heads} does not divide the embedding width "
                             f"{embed_dim}.")
        return num_heads
    if embed_dim in KNOWN_NUM_HEADS:
        return KNOWN_NUM_HEADS[embed_dim]
    if embed_dim % HEAD_DIM == 0:
        return embed_dim // HEAD_DIM
    raise InputError(f"the number of attention heads of a ViT with embedding width {embed_dim} "
                     "is not stored in the weights and cannot be inferred; pass num_heads.")


def resize_patch_kernel(weight: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize a patch-embedding kernel (D, C, h, w) to (D, C, *size), keeping DC response.

    The kernel is resampled bicubically (so its spatial pattern, e.g. an edge detector, keeps
    its shape over the new patch), multiplied by ``k**2 / size**2`` (each new tap covers a
    smaller share of the patch), and finally shifted by a constant per (output, input channel)
    pair so that its tap sum equals the original's exactly. The tap sum is the kernel's
    response to a constant image, so a flat image of any colour still yields the same token
    before the bias; the shift is tiny because the scaled bicubic kernel already has nearly
    the original sum.

    Parameters
    ----------
    weight : torch.Tensor
        Convolution kernel (out channels, in channels, h, w).
    size : int or sequence of int
        New kernel side, or (new_h, new_w).
    """
    new_h, new_w = (size, size) if isinstance(size, int) else size
    h, w = weight.shape[-2:]
    original = weight.detach().to(torch.float64)
    resized = F.interpolate(original, size=(new_h, new_w), mode="bicubic", align_corners=False)
    resized = resized * (h * w) / (new_h * new_w)
    missing = original.sum(dim=(-2, -1), keepdim=True) - resized.sum(dim=(-2, -1), keepdim=True)
    return (resized + missing / (new_h * new_w)).to(weight.dtype)


def fold_layer_scale(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold DINOv2 LayerScale gammas into the linear layer before them, exactly.

    A DINOv2 block computes ``x + gamma * (W h + b)``; since ``gamma * (W h + b) =
    (gamma W) h + gamma b`` (gamma scales output rows), ``blocks.N.ls1.gamma`` folds into
    ``blocks.N.attn.proj`` and ``blocks.N.ls2.gamma`` into ``blocks.N.mlp.fc2``, leaving a
    DINO-shaped block with the same output. Gammas whose target layer is absent are kept (so
    the key check reports them).
    """
    folded = dict(state)
    for key in state:
        match = _LAYER_SCALE.match(key)
        target = match and f"blocks.{match[1]}.{_LAYER_SCALE_TARGET[match[2]]}"
        if not target or f"{target}.weight" not in state or f"{target}.bias" not in state:
            continue
        gamma = folded.pop(key)
        folded[f"{target}.weight"] = gamma[:, None] * state[f"{target}.weight"]
        folded[f"{target}.bias"] = gamma * state[f"{target}.bias"]
    return folded


# --- reading and unwrapping ---------------------------------------------------------------

def _read_checkpoint(path: Path) -> object:
    """Load the file's object without running code from it."""
    if not path.is_file():
        raise InputError("does not exist or is not a file.", path)
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise InputError(f"has an unknown weights suffix {path.suffix!r}; expected one of "
                     f"{', '.join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))}.", path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"is not a readable safetensors file ({err}).", path) from err


def _read_torch(path: Path) -> object:
    # DINO training checkpoints store their argparse options next to the weights; a Namespace
    # of plain values is safe to rebuild, so it is the one class allowed beyond tensors.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(
            f"holds Python objects other than tensors ({_unpickling_reason(err)}), so it is not "
            "a state dict that can be read safely; load it in code you trust and re-save "
            "torch.save(model.state_dict(), path).", path) from err
    except Exception as err:  # torch.load raises anything from EOFError to KeyError on junk
        raise InputError(f"could not be read as a PyTorch file ({type(err).__name__}: {err}).",
                         path) from err


def _unpickling_reason(err: Exception) -> str:
    """The one informative line of torch's long weights-only refusal message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reason = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")
    reason = reason.removeprefix("WeightsUnpickler error: ").split(" was not an allowed")[0]
    return reason.rstrip(".")


def _unwrap(obj: object, path: Path) -> Mapping[str, object]:
    """Descend through ``teacher``/``student``/``model``/``state_dict`` wrappers to the weights."""
    while isinstance(obj, Mapping):
        inner = next((obj[key] for key in WRAPPER_KEYS if isinstance(obj.get(key), Mapping)),
                     None)
        if inner is None:
            return obj
        obj = inner
    raise InputError(f"holds a {type(obj).__name__}, not a state dict of tensors.", path)


def _canonical_state_dict(raw: Mapping[str, object], path: Path
                          ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Strip ``module.``/``backbone.`` prefixes, drop heads, cast to float32."""
    if not raw:
        raise InputError("holds an empty dictionary, not a state dict of tensors.", path)
    not_tensors = [str(k) for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise InputError("is not a state dict of tensors (non-tensor entries: "
                         f"{_list_keys(_natural_sorted(not_tensors))}).", path)
    state: dict[str, torch.Tensor] = {}
    heads = 0
    for key, tensor in raw.items():
        name = _strip_prefixes(str(key))
        if name.startswith(HEAD_PREFIXES):
            heads += 1
            continue
        if name in state:
            raise InputError(f"holds two tensors that both name {name!r} once prefixes are "
                             "removed.", path)
        state[name] = tensor.detach().to(torch.float32).contiguous()
    return state, (f"dropped {heads} projection-head tensors",) if heads else ()


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


# --- DINOv2 -------------------------------------------------------------------------------

def _convert_dinov2(state: dict[str, torch.Tensor]
                    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...], int | None]:
    """Make a DINOv2 /14 backbone DINO-shaped; a DINO v1 state passes through untouched.

    Returns the converted state, what was done, and the patch side found in the file.
    """
    done = []
    dropped = [key for key in DINOV2_EXTRA_TOKENS if state.pop(key, None) is not None]
    if dropped:
        done.append(f"dropped {', '.join(dropped)}")
    n_gammas = sum(bool(_LAYER_SCALE.match(key)) for key in state)
    if n_gammas:
        state = fold_layer_scale(state)
        done.append(f"folded {n_gammas} LayerScale gammas into attn.proj / mlp.fc2")
    kernel = state.get("patch_embed.proj.weight")
    source_patch = kernel.shape[-1] if kernel is not None and kernel.ndim == 4 else None
    if source_patch == DINOV2_PATCH_SIZE:
        state["patch_embed.proj.weight"] = resize_patch_kernel(kernel, TARGET_PATCH_SIZE)
        done.append(f"resized the {DINOV2_PATCH_SIZE}x{DINOV2_PATCH_SIZE} patch kernel to "
                    f"{TARGET_PATCH_SIZE}x{TARGET_PATCH_SIZE} (bicubic, tap sums kept)")
    return state, tuple(done), source_patch


# --- architecture and validation ----------------------------------------------------------

def _infer_architecture(state: Mapping[str, torch.Tensor], path: Path,
                        num_heads: int | None) -> dict[str, object]:
    """Read width, depth, patch, MLP ratio and grid off the tensor shapes."""
    kernel, pos = state.get("patch_embed.proj.weight"), state.get("pos_embed")
    fc1 = next((state[k] for k in _natural_sorted(state) if k.endswith(".mlp.fc1.weight")), None)
    absent = [name for name, t in (("patch_embed.proj.weight", kernel), ("pos_embed", pos),
                                   ("blocks.N.mlp.fc1.weight", fc1)) if t is None]
    if absent:
        raise InputError(f"is not a DINO ViT backbone: missing {_list_keys(absent)}.", path)
    if kernel.ndim != 4 or kernel.shape[-1] != kernel.shape[-2] or pos.ndim != 3 or fc1.ndim != 2:
        raise InputError("is not a DINO ViT backbone: patch_embed.proj.weight, pos_embed or "
                         "mlp.fc1.weight has an unexpected number of dimensions.", path)
    embed_dim, in_chans, patch_size = kernel.shape[0], kernel.shape[1], kernel.shape[-1]
    grid = math.isqrt(pos.shape[1] - 1)
    if grid * grid != pos.shape[1] - 1:
        raise InputError(f"has a pos_embed of {pos.shape[1]} entries, not 1 + a square grid.",
                         path)
    depth = 1 + max((int(m[1]) for k in state if (m := _BLOCK_INDEX.match(k))), default=-1)
    mlp_ratio = fc1.shape[0] / embed_dim
    if int(embed_dim * mlp_ratio) != fc1.shape[0]:
        raise InputError(f"has an MLP width {fc1.shape[0]} that is not representable as a "
                         f"ratio of the embedding width {embed_dim}.", path)
    try:
        heads = infer_num_heads(embed_dim, num_heads)
    except InputError as err:
        raise InputError(str(err), path) from err
    return dict(embed_dim=embed_dim, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
                patch_size=patch_size, in_chans=in_chans, grid=grid)


def _checked_in_module_order(state: Mapping[str, torch.Tensor], arch: Mapping[str, object],
                             path: Path) -> dict[str, torch.Tensor]:
    """Compare with the module the architecture implies, list every difference, and return
    the weights in the module's key order (safetensors files store keys sorted)."""
    expected = {key: tuple(t.shape) for key, t in _build_vit(**arch, device="meta")
                .state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = _natural_sorted(k for k in state if k not in expected)
    wrong = [f"{k} {tuple(state[k].shape)} instead of {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    problems = [f"{label} {_list_keys(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if keys]
    if problems:
        raise InputError(f"does not match a DINO ViT with embed_dim {arch['embed_dim']}, depth "
                         f"{arch['depth']}, patch {arch['patch_size']}, grid {arch['grid']}: "
                         f"{'; '.join(problems)}.", path)
    return {key: state[key] for key in expected}


def _build_vit(embed_dim, depth, num_heads, mlp_ratio, patch_size, in_chans, grid,
               device: str | torch.device = "cpu") -> VisionTransformer2d:
    with torch.device(device):
        return VisionTransformer2d(img_size=grid * patch_size, patch_size=patch_size,
                                   in_chans=in_chans, embed_dim=embed_dim, depth=depth,
                                   num_heads=num_heads, mlp_ratio=mlp_ratio)


def _list_keys(keys: Iterable[str], limit: int = MAX_LISTED_KEYS) -> str:
    """``a, b, c`` for short lists, ``a, ..., h and 5 more`` for long ones, in the given order."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


def _natural_sorted(keys: Iterable[str]) -> list[str]:
    """Sort so that ``blocks.2`` comes before ``blocks.10``."""
    return sorted(keys, key=lambda k: [int(t) if t.isdigit() else t
                                       for t in re.split(r"(\d+)", k)])
