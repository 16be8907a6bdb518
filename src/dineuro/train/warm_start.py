"""A training run that starts from a trained network (config key ``init``).

Fine-tuning the packaged default model (or a lab's own) on new data, or through larger crops
than it was trained with, costs a fraction of training from scratch. The network is the
checkpoint's, with every weight; a crop other than its own resizes the position embedding only
(:meth:`~dineuro.models.unetr.ViTUNETR.at_window`), so the convolutions and attention start as
trained. What the checkpoint fixes cannot be asked otherwise in the same config (another size,
a transfer, model options, another normalisation): such a config is refused, naming both,
except that a background subtraction (:class:`~dineuro.data.normalize.NormalizationConfig`)
may be added to a network trained without one: fine-tuning is how it learns to see stacks so.
A network trained with one keeps it (a config that leaves it out is refused, not obeyed).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from dineuro.checkpoint import load_model, resolve_model
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError


def warm_start_model(config) -> nn.Module:
    """The network of ``config.init`` (a path or "default") in training mode, at the config's
    crop (its own when the config has none).

    Raises
    ------
    InputError
        Naming the checkpoint: what :func:`~dineuro.checkpoint.load_model` refuses, or a
        config that asks for another size, a transfer, model options or another normalisation.
    """
    path = resolve_model(config.init)
    model, meta = load_model(path)
    if config.transfer != "scratch":
        raise InputError(f"gives the initial weights (init), so transfer should be 'scratch', "
                         f"not {config.transfer!r}.", path)
    if config.model_options:
        raise InputError(f"fixes the network (init), so model_options should be empty, not "
                         f"{config.model_options}.", path)
    size = meta.get("train_config", {}).get("size")
    if size != config.size:
        raise InputError(f"holds a {size!r} network (init) but the config asks for size "
                         f"{config.size!r}.", path)
    try:
        norm = NormalizationConfig.from_dict(meta.get("normalization", {}))
    except InputError as exc:  # name the checkpoint
        raise InputError(f"has no usable normalization: {exc}", path) from exc
    asked = config.normalization
    added = norm.background == 0 and asked == replace(norm, background=asked.background)
    if asked != norm and not added:
        raise InputError(f"was trained with normalization {norm.to_dict()} but the config asks "
                         f"for {asked.to_dict()}; fine-tuning needs the same "
                         "(or a background added to a network trained without one).", path)
    crop = config.crop or model.config["crop"]
    return model.at_window(crop).train()
