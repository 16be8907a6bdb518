"""Processes, devices and random state of a training run.

- :func:`distributed`: rank, world size and device; creates the torch.distributed process group
  under torchrun (gloo on CPU, NCCL on CUDA with one GPU per local rank).
- :func:`seed_everything`, :func:`random_state`, :func:`set_random_state`: the python, numpy,
  torch (and CUDA) generators and the crop generator, as plain types a checkpoint can hold.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from dineuro.errors import InputError
from dineuro.train.data import TrainingCrops


def seed_everything(seed: int) -> None:
    """Seed the global generators: python's, numpy's (which third-party code may use) and torch's
    (weight initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global state is what is being seeded)
    torch.manual_seed(seed)


def random_state(crops: TrainingCrops) -> dict:
    """Every random state of this process, as plain types (``weights_only`` loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {"python": random.getstate(),
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state(), "crops": crops.state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict, crops: TrainingCrops) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss,  # noqa: NPY002
                         cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    crops.load_state(state["crops"])


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means in one process: "auto" is CUDA when available, else CPU.

    Raises
    ------
    InputError
        A name torch does not know, or a CUDA device asked for where CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device {name!r} is not a device name; use auto, cpu, cuda or "
                         "cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for but CUDA is not available.")
    return device


@contextlib.contextmanager
def distributed(device_name: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device) of this process; sets up torch.distributed under torchrun."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device_name == "auto" else device_name.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise InputError(f"device {device_name!r} was asked for but CUDA is not available.")
    if world == 1:
        yield 0, 1, torch.device(("cuda" if cuda else "cpu") if device_name == "auto"
                                 else device_name)
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
    finally:
        if created:
            dist.destroy_process_group()
