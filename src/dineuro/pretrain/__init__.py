"""DINO self-distillation of a 2D ViT teacher on 2D images and projections of 3D stacks.

``prepare_inputs`` chooses the inputs (making the default ones), ``collect_images`` gathers the
images, ``resolve_config`` the settings and ``pretrain`` trains
and writes a teacher file in the official DINO layout (see :mod:`dineuro.pretrain.loop`).
"""

from dineuro.pretrain.config import (
    ARCHES,
    PRESETS,
    PretrainConfig,
    resolve_config,
    resolve_preset,
)
from dineuro.pretrain.images import collect_images
from dineuro.pretrain.inputs import PretrainInputs, prepare_inputs
from dineuro.pretrain.loop import PretrainPaths, pretrain

__all__ = ["ARCHES", "PRESETS", "PretrainConfig", "PretrainInputs", "PretrainPaths",
           "collect_images", "prepare_inputs", "pretrain", "resolve_config", "resolve_preset"]
