"""Named student sizes: ``tiny`` for tests, ``small`` (ViT-S/16, CPU default), ``base`` (ViT-B/16).

A preset fixes the encoder and decoder sizes and the training crop; the transformer dimensions of
``small`` and ``base`` equal those of the DINO ViT-S/16 and ViT-B/16 teachers, so their weights
copy 1:1. Overrides are keyword arguments to :func:`get_preset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dineuro.errors import InputError
from dineuro.models.vit3d import Triple, as_triple


@dataclass(frozen=True)
class Preset:
    """Sizes of a student network.

    Attributes
    ----------
    name : str
        Preset name.
    embed_dim : int
        Token width (must equal the teacher's).
    depth : int
        Transformer blocks (must equal the teacher's).
    num_heads : int
        Attention heads (must equal the teacher's).
    mlp_ratio : float
        MLP hidden width over ``embed_dim``.
    patch : tuple of 3 int
        Patch size (pz, py, px) in voxels.
    feature_size : int
        Channels of the decoder's full-resolution stem.
    crop : tuple of 3 int
        Input size (z, y, x) in voxels, a multiple of ``patch`` per axis.
    teacher : str or None
        The DINO checkpoint of matching size (for messages), None for ``tiny``.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    patch: Triple
    feature_size: int
    crop: Triple
    teacher: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "patch", as_triple(self.patch, "patch"))
        object.__setattr__(self, "crop", as_triple(self.crop, "crop"))


PRESETS: dict[str, Preset] = {
    preset.name: preset for preset in (
        Preset("tiny", embed_dim=48, depth=4, num_heads=3, mlp_ratio=4.0, patch=16,
               feature_size=8, crop=32),
        Preset("small", embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0, patch=16,
               feature_size=16, crop=64, teacher="dino_vits16"),
        Preset("base", embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch=16,
               feature_size=16, crop=96, teacher="dino_vitb16"),
    )
}


def get_preset(name: str = "small", **overrides) -> Preset:
    """The preset ``name`` with fields replaced by ``overrides``.

    Raises
    ------
    InputError
        Unknown preset name or field.

    Examples
    --------
    >>> get_preset("tiny", crop=(16, 32, 32), patch=(8, 16, 16)).crop
    (16, 32, 32)
    """
    if name not in PRESETS:
        raise InputError(f"size should be one of {list(PRESETS)}, got {name!r}.")
    fields = {field.name for field in dataclasses.fields(Preset)} - {"name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"unknown preset fields {unknown}; presets have {sorted(fields)}.")
    return dataclasses.replace(PRESETS[name], **overrides)
