"""``build_model``: one call from a preset, a transfer strategy and a DINO teacher to a network."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from torch import nn

from dineuro.errors import InputError
from dineuro.models.presets import Preset, get_preset
from dineuro.models.transfer import get_transfer
from dineuro.models.unetr import ViTUNETR
from dineuro.models.vit3d import embedding_option_names

#: Keyword overrides that go to the network rather than to the preset or the patch embedding.
NETWORK_OPTIONS = ("out_channels", "norm_name", "drop_path", "encoder_input")
#: Preset fields that ``**overrides`` may replace (``crop`` has its own argument).
PRESET_FIELDS = tuple(field.name for field in dataclasses.fields(Preset)
                      if field.name not in ("name", "crop", "teacher"))


def build_model(size: str = "small", transfer: str = "deformable", teacher=None, crop=None,
                **overrides) -> nn.Module:
    """Build the 3D ViT-UNETR student and fill its encoder from a DINO teacher.

    The network maps a volume (B, 1, Z, Y, X) of exactly the crop size to logits
    (B, 2, Z, Y, X) (background, neurite). It carries its configuration in ``model.config``
    (preset name, dimensions, patch, crop, transfer, teacher source), so a checkpoint that stores
    it describes itself.

    Parameters
    ----------
    size : str, optional
        Preset, "tiny" (tests), "small" (ViT-S/16, 64^3 crop) or "base" (ViT-B/16, 96^3).
    transfer : str, optional
        "scratch", "average", "center", "tubular" or "deformable".
    teacher : str, os.PathLike, Teacher or dict, optional
        The DINO teacher: None (only for ``scratch``, which ignores any teacher), a checkpoint path
        (read with :func:`dineuro.models.teacher.load_teacher`), a
        :class:`~dineuro.models.teacher.Teacher`, or a canonical DINO state dict (whose head count
        is then assumed to be the student's).
    crop : int or sequence of int, optional
        Input size (z, y, x) or one int; default the preset's. A multiple of the patch.
    **overrides
        Preset fields (``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``patch``,
        ``feature_size``), network options (``out_channels``, ``norm_name``, ``drop_path``,
        ``encoder_input``) and options of the strategy's patch embedding (tubular: ``tube_spacing``,
        ``gate_init``; deformable also ``extend_scope``, ``offset_steps``, ``offset_hidden``).

    Returns
    -------
    torch.nn.Module
        A :class:`~dineuro.models.unetr.ViTUNETR`.

    Raises
    ------
    InputError
        (a ValueError) unknown size, strategy or option, a crop that is not a multiple of the patch,
        a missing teacher, or a teacher of another size.

    Examples
    --------
    >>> import torch
    >>> model = build_model("tiny", transfer="scratch")
    >>> model(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 2, 32, 32, 32])
    >>> from dineuro.models.vit2d import VisionTransformer2d
    >>> dino = VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict()
    >>> model = build_model("tiny", transfer="deformable", teacher=dino, crop=(16, 32, 32),
    ...                     patch=(8, 16, 16))
    >>> model(torch.zeros(1, 1, 16, 32, 32)).shape
    torch.Size([1, 2, 16, 32, 32])
    >>> model.config["transfer"], model.config["patch"], model.config["teacher"]
    ('deformable', [8, 16, 16], 'state_dict')
    """
    strategy = get_transfer(transfer)
    embedding_names = embedding_option_names(strategy.patch_embedding)
    unknown = sorted(set(overrides) - set(PRESET_FIELDS) - set(NETWORK_OPTIONS)
                     - set(embedding_names))
    if unknown:
        raise InputError(f"build_model does not take {unknown} with transfer {transfer!r}; "
                         f"it takes {list(PRESET_FIELDS + NETWORK_OPTIONS + embedding_names)}.")
    preset = get_preset(size, **{key: overrides[key] for key in PRESET_FIELDS
                                 if key in overrides},
                        **({} if crop is None else {"crop": crop}))
    state, num_heads, source = (_resolve_teacher(teacher, transfer, preset)
                                if strategy.needs_teacher else (None, None, None))
    model = ViTUNETR(
        crop=preset.crop, patch=preset.patch, embed_dim=preset.embed_dim, depth=preset.depth,
        num_heads=preset.num_heads, mlp_ratio=preset.mlp_ratio,
        feature_size=preset.feature_size, patch_embedding=strategy.patch_embedding,
        embedding_options={key: overrides[key] for key in embedding_names if key in overrides},
        **{key: overrides[key] for key in NETWORK_OPTIONS if key in overrides})
    strategy.apply(model.encoder, state, num_heads)
    model.config = {"size": size, **model.config, "transfer": transfer, "teacher": source}
    return model


def _resolve_teacher(teacher, transfer: str, preset: Preset):
    """(canonical state dict, head count or None, source description) of the teacher argument."""
    if teacher is None:
        fetch = preset.teacher or "dino_vits16"
        raise InputError(f"transfer {transfer!r} needs a DINO teacher checkpoint: pass "
                         f"teacher=PATH (get one with `dineuro weights fetch {fetch}`, or use "
                         "`--teacher PATH` on the command line), or use transfer='scratch'.")
    if isinstance(teacher, (str, os.PathLike)):
        from dineuro.models.teacher import infer_num_heads, load_teacher

        try:  # the released widths imply their head count; other widths need the student's
            infer_num_heads(preset.embed_dim)
            hint = None
        except ValueError:
            hint = preset.num_heads
        loaded = load_teacher(teacher, num_heads=hint)
        return loaded.state_dict, loaded.num_heads, str(teacher)
    if isinstance(teacher, Mapping):
        return teacher, None, "state_dict"
    if isinstance(getattr(teacher, "state_dict", None), Mapping) and hasattr(teacher, "num_heads"):
        return teacher.state_dict, teacher.num_heads, str(getattr(teacher, "source", "Teacher"))
    raise InputError(f"teacher should be None, a checkpoint path, a Teacher or a state dict, got "
                     f"{type(teacher).__name__}.")
