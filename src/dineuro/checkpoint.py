"""Self-describing checkpoints: a trained network that predict can use with nothing else.

A checkpoint is a ``torch.save`` file of plain types only (dicts, lists, tuples, str, numbers,
None, tensors), so :func:`torch.load` reads it with ``weights_only=True`` (no code runs on
load). Its entries:

==================  ==========================================================================
format              ``"dineuro-checkpoint/1"``: tells a dineuro checkpoint from other files
dineuro_version     the version that wrote it
model_config        ``model.config``: preset, crop, patch, dimensions, patch embedding and its
                    options, transfer and teacher source; enough to rebuild the network
state_dict          the weights
normalization       :meth:`NormalizationConfig.to_dict` of training (predict must match it)
spacing             voxel size (z, y, x) of the training stacks
train_config        :meth:`TrainConfig.to_dict` of the run
step, val_dice      optimizer steps done, and the mean validation Dice at that step (or None)
resume              (``last.pt`` only) optimizer, scheduler and random states to continue
==================  ==========================================================================

The network is rebuilt from ``model_config`` alone (:func:`build_network`): transferred weights
are in the state dict, so the DINO teacher file is not needed.

dineuro ships one checkpoint as package data, the default model (``"default"`` wherever a
model is asked for; :func:`resolve_model`). It is a slim checkpoint (:func:`export_checkpoint`:
no training state, weights stored as float16) with a ``card`` entry: how it was trained and
what it scored. Its card is also ``default_model/card.json`` beside it.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dineuro import __version__
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file

CHECKPOINT_FORMAT = "dineuro-checkpoint/1"
#: Entries written by :func:`save_checkpoint` itself; ``**meta`` cannot replace them.
RESERVED = ("format", "dineuro_version", "model_config", "state_dict")
#: The name that stands for the packaged default model wherever a checkpoint is asked for.
DEFAULT_MODEL = "default"
#: Package folder of the default model: its checkpoint and its card.
DEFAULT_MODEL_DIR = "default_model"
DEFAULT_MODEL_FILE, DEFAULT_CARD_FILE = "model.pt", "card.json"
#: Entries of a training checkpoint that an exported (slim) checkpoint keeps.
EXPORTED = ("normalization", "spacing", "train_config", "step", "val_dice")


def default_model_path() -> Path:
    """Where the packaged default model lies (inside the installed package)."""
    from importlib.resources import files

    return Path(str(files("dineuro") / DEFAULT_MODEL_DIR / DEFAULT_MODEL_FILE))


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The checkpoint file meant by ``model``: a path, or None / ``"default"`` for the
    packaged default model.

    Raises
    ------
    InputError
        The default model is missing from this installation.
    """
    if model is None or str(model) == DEFAULT_MODEL:
        path = default_model_path()
        if not path.is_file():
            raise InputError("the packaged default model is missing from this installation; "
                             "reinstall dineuro or give a checkpoint with --model.", path)
        return path
    return Path(model)


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *,
                      card: Mapping[str, Any] | None = None) -> Path:
    """A slim copy of a checkpoint for shipping: the network, its normalisation and training
    config, weights as float16 (half the bytes; predict computes in float32 all the same),
    no optimizer or random state, and an optional model ``card`` (plain types).

    Raises
    ------
    InputError
        ``src`` is not a dineuro checkpoint or one :func:`load_model` refuses.
    """
    model, data = load_model(src)
    meta = {key: data[key] for key in EXPORTED if key in data}
    if card is not None:
        meta["card"] = dict(card)
    return save_checkpoint(dst, model.half(), **meta)


def model_card(model: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """How a model was made and what it scored.

    Parameters
    ----------
    model : str or os.PathLike, optional
        A checkpoint; "default" or None for the packaged default model.

    Returns
    -------
    tuple of (Path, dict)
        The checkpoint's path, and its card (written by the script that made the default
        model), or, for a checkpoint without one, its dineuro version, step and val Dice.

    Raises
    ------
    InputError
        Not a dineuro checkpoint (naming the file).
    """
    path = resolve_model(model)
    data = load_checkpoint(path)
    card = data.get("card") or {key: data.get(key)
                                for key in ("dineuro_version", "step", "val_dice")}
    return path, card


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> Path:
    """Write ``model`` (its ``config`` and weights) and ``meta`` to ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists, as ``last.pt`` is during training).
    model : torch.nn.Module
        A network with a ``config`` dict (:func:`dineuro.models.build.build_model`); a
        ``DistributedDataParallel`` wrapper is unwrapped.
    **meta
        Further plain-typed entries, e.g. ``normalization``, ``spacing``, ``train_config``,
        ``step``, ``val_dice``, ``resume``.

    Returns
    -------
    pathlib.Path
        ``path`` as a Path.

    Raises
    ------
    ValueError
        A model without ``config``, a reserved key in ``meta``.
    TypeError
        A ``meta`` value that is not a plain type (it would need ``weights_only=False`` to
        load).

    Examples
    --------
    >>> import tempfile
    >>> from dineuro.models.build import build_model
    >>> net = build_model("tiny", transfer="scratch")
    >>> path = save_checkpoint(Path(tempfile.mkdtemp()) / "net.pt", net, step=0)
    >>> model, meta = load_model(path)
    >>> meta["model_config"]["size"], meta["step"]
    ('tiny', 0)
    """
    model = getattr(model, "module", model)
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise ValueError("the model has no config dict; build it with build_model().")
    clash = sorted(set(meta) & set(RESERVED))
    if clash:
        raise ValueError(f"save_checkpoint writes {clash} itself; do not pass them as meta.")
    _check_plain(dict(config), "model.config")
    for key, value in meta.items():
        _check_plain(value, key)
    payload = {"format": CHECKPOINT_FORMAT, "dineuro_version": __version__,
               "model_config": dict(config),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               **meta}
    return save_atomically(payload, path)


def save_atomically(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file renamed when complete (:func:`atomic_file`).

    Serialised in memory first, then written by Python: torch's writer reports a full disk
    as a ``RuntimeError`` about stream positions (also through a file object), Python as an
    ``OSError`` (ENOSPC), which the command line turns into one sentence naming ``path``.
    The copy in memory is as large as the file, which the weights in memory already are.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a dineuro checkpoint as a dict (every entry, including ``state_dict``).

    Raises
    ------
    InputError
        A missing file, a file torch cannot read with ``weights_only=True``, or a PyTorch file
        that is not a dineuro checkpoint (e.g. a DINO teacher).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("does not exist." if not path.exists() else "is not a file.", path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, ...)
        raise InputError(f"is not a dineuro checkpoint: torch.load cannot read it "
                         f"({type(exc).__name__}: {_first_line(exc)}).", path) from exc
    if not isinstance(data, Mapping) or "format" not in data:
        what = "a state dict or another PyTorch file" if isinstance(data, Mapping) else \
            f"a {type(data).__name__}"
        raise InputError(f"is not a dineuro checkpoint (it holds {what} without a 'format' "
                         "entry; a DINO teacher goes to --teacher, not here).", path)
    if data["format"] != CHECKPOINT_FORMAT:
        raise InputError(f"has checkpoint format {data['format']!r}; this dineuro "
                         f"({__version__}) reads {CHECKPOINT_FORMAT!r}.", path)
    missing = [key for key in ("model_config", "state_dict") if key not in data]
    if missing:
        raise InputError(f"is a damaged dineuro checkpoint: it lacks {missing}.", path)
    return dict(data)


def build_network(model_config: Mapping[str, Any]) -> nn.Module:
    """A fresh :class:`~dineuro.models.unetr.ViTUNETR` from a stored ``model.config``.

    The constructor's parameters are taken from the config; the remaining entries (preset
    name, transfer, teacher source) are kept in ``model.config``. No teacher is loaded.

    Raises
    ------
    InputError
        The config lacks a constructor argument or holds an invalid value.
    """
    from dineuro.models.unetr import ViTUNETR

    parameters = inspect.signature(ViTUNETR).parameters
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    missing = [name for name in required if name not in model_config]
    if missing:
        raise InputError(f"the stored model config lacks {missing}.")
    try:
        model = ViTUNETR(**{name: model_config[name] for name in parameters
                            if name in model_config})
    except (TypeError, ValueError) as exc:
        raise InputError(f"the stored model config cannot build a network: {exc}") from exc
    model.config = {**model.config, **dict(model_config)}
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict]:
    """Rebuild the network of a checkpoint and load its weights (strictly).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_checkpoint` (``best.pt``, ``last.pt``).
    device : str or torch.device, optional
        Where the model goes.

    Returns
    -------
    model : torch.nn.Module
        The network in eval mode on ``device``.
    meta : dict
        Every entry of the checkpoint except ``state_dict`` and ``resume`` (``model_config``,
        ``normalization``, ``spacing``, ``train_config``, ``step``, ``val_dice``,
        ``dineuro_version``, ...).

    Raises
    ------
    InputError
        Not a dineuro checkpoint, weights that are not finite (a diverged training) or that do
        not fit the stored config.
    """
    data = load_checkpoint(path)
    _check_finite(data["state_dict"], path)
    try:
        model = build_network(data["model_config"])
    except InputError as exc:
        raise InputError(str(exc), path) from exc
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        raise InputError(f"holds weights that do not fit its own model config "
                         f"({_first_line(exc)}).", path) from exc
    meta = {key: value for key, value in data.items() if key not in ("state_dict", "resume")}
    return model.to(device).eval(), meta


def load_for_prediction(path: str | os.PathLike, device: str | torch.device = "cpu",
                        window: Sequence[int] | None = None
                        ) -> tuple[nn.Module, Any, NormalizationConfig]:
    """All that prediction needs from a checkpoint: the network (:func:`load_model`), its input
    window (z, y, x), and the normalisation it was trained with.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.
    device : str or torch.device, optional
        Where the network runs.
    window : sequence of int, optional
        Predict through windows of this size instead of the training crop
        (``ViTUNETR.at_window``); None keeps the crop.

    Raises
    ------
    InputError
        Naming ``path``: what :func:`load_model` refuses, and a checkpoint without
        normalisation settings or with invalid ones (predict must normalise as training did,
        so it does not guess); a window that is not a multiple of the patch.
    """
    model, meta = load_model(path, device)
    if window is not None:
        try:
            model = model.at_window(window)
        except InputError as exc:  # say which option, as the user gave it
            raise InputError(f"--window: {exc}") from exc
        meta = {**meta, "model_config": model.config}
    if "normalization" not in meta:
        raise InputError("lacks the 'normalization' entry that prediction needs; it was not "
                         "written by dineuro train.", path)
    try:
        norm = NormalizationConfig.from_dict(meta["normalization"])
    except InputError as exc:
        raise InputError(str(exc), path) from exc
    return model, meta["model_config"]["crop"], norm


def _check_finite(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse weights with NaN or inf values, naming the first such tensor: a network with them
    predicts NaN everywhere, silently."""
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            what = "NaN" if torch.isnan(tensor).any() else "infinite"
            raise InputError(f"its weight tensor {name!r} holds {what} values: the training "
                             "that wrote it diverged; use an earlier checkpoint or train again.",
                             path)


_PLAIN = (type(None), bool, int, float, str, torch.Tensor)


def _check_plain(value, where: str) -> None:
    """Raise TypeError unless ``value`` is built of types ``weights_only`` loading accepts."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint entry {where!r} has a key of type "
                                f"{type(key).__name__}; use str keys.")
            _check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint entry {where!r} is a {type(value).__name__}; store plain types "
                    "(dict, list, str, numbers, None, tensors) so it loads with "
                    "weights_only=True.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
