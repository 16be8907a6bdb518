"""The stacks an adaptation run reads: the lab's, some held back, and the synthetic ones.

Every lab stack is read and checked before any work starts (:func:`read_lab_stacks`), so a bad
file fails the run at once and not after hours of training. A share of them is held back from
training to measure agreement (:func:`holdout_names`; see :mod:`dineuro.adapt.guards`). The
synthetic dataset mixed in is the given one or the one synthesised into the run folder; its
train split gives crops and its val and test splits the guard rails (:func:`synthetic_names`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dineuro.adapt.config import AdaptConfig
from dineuro.adapt.run_folder import SYNTHETIC_DIR
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.io.volume import read_volume


@dataclass(frozen=True)
class LabStack:
    """One of the lab's stacks in memory: as stored, its normalisation limits and spacing."""

    raw: np.ndarray
    limits: tuple[float, float]
    spacing: tuple[float, float, float]


def read_lab_stacks(paths, norm: NormalizationConfig) -> dict[str, LabStack]:
    """Every stack read and checked before any work starts, by name (the file's stem)."""
    from dineuro.outputs import stack_name

    stacks = {}
    for path in paths:
        name = stack_name(path)
        if name in stacks:
            raise InputError(f"has the same name ({name}) as another stack; rename one.", path)
        volume = read_volume(path)
        if volume.array.ndim != 3:
            raise InputError(f"should be a 3D (z, y, x) stack, got shape {volume.array.shape}.",
                             path)
        try:
            limits = norm.limits(volume.array)
        except InputError as exc:  # name the stack
            raise InputError(f"cannot be normalised: {exc}", path) from exc
        stacks[name] = LabStack(np.ascontiguousarray(volume.array), limits,
                                tuple(float(s) for s in volume.spacing))
    return stacks


def holdout_names(names: list[str], share: float, seed: int) -> list[str]:
    """The names held back from training: ``round(share * n)``, at least one when ``share``
    is positive and there are 3 or more stacks, never all of them; chosen by ``seed``.

    Examples
    --------
    >>> holdout_names(["a", "b"], 0.2, 0), len(holdout_names(list("abcdefghij"), 0.2, 0))
    ([], 2)
    """
    if share <= 0 or len(names) < 2:
        return []
    count = min(max(round(share * len(names)), 1 if len(names) >= 3 else 0), len(names) - 1)
    chosen = np.random.default_rng([seed, len(names)]).choice(len(names), count, replace=False)
    return sorted(names[i] for i in chosen)


def synthetic_names(dataset) -> tuple[list[str], list[str]]:
    """(train names, check names: val and test) of the synthetic dataset."""
    split = dataset.split()
    if not split["train"]:
        raise InputError("has no train split to mix in.", dataset.root)
    return split["train"], split["val"] + split["test"]


def synthetic_dataset(work: Path, config: AdaptConfig):
    from dineuro.data.dataset import open_dataset

    return open_dataset(config.synthetic if config.synthetic is not None
                        else work / SYNTHETIC_DIR)
