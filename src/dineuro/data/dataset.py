"""The dataset folder: one layout for synthetic benchmarks and for users' own stacks.

::

    DATASET/
      images/NAME.tif        the stacks (any supported format: .tif, .v3draw, .nii.gz, ...)
      labels/NAME.tif        optional binary masks (uint8 0/1); rendered from swc/ when absent
      swc/NAME.swc           optional gold reconstructions, voxel coordinates (x, y, z)
      unlabelled/NAME.swc    optional neurites in the image that the gold leaves out on
                             purpose (``synth`` writes its clutter fragments here), so a
                             score can tell tracing them from tracing noise
      split.json             {"train": [NAME, ...], "val": [...], "test": [...]}
      meta.json              spacing (z, y, x), generator config, seed, dineuro version

A user with BigNeuron-style data (stacks + gold SWCs) only needs ``images/``, ``swc/`` and
``split.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dineuro.data.render import check_tree_in_stack, render_mask
from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file
from dineuro.io.swc import SwcTree, read_swc, write_swc
from dineuro.io.volume import SUPPORTED_EXTENSIONS, Volume, read_volume, write_volume

IMAGES, LABELS, SWC, UNLABELLED = "images", "labels", "swc", "unlabelled"
SPLIT_FILE, META_FILE = "split.json", "meta.json"
SPLITS = ("train", "val", "test")
DATASET_FORMAT = "dineuro-dataset/1"


def _volume_stem(path: Path) -> str | None:
    """File name without its volume extension (``a.nii.gz`` -> ``a``); None if not a volume."""
    if path.name.startswith("."):
        return None
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if path.name.lower().endswith(ext):
            return path.name[: -len(ext)]
    return None


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_sample(root: str | os.PathLike, name: str, image: Volume, label: np.ndarray | None,
                 tree: SwcTree | None) -> None:
    """Write one stack with its optional label mask and SWC into the dataset layout."""
    root = Path(root)
    write_volume(root / IMAGES / f"{name}.tif", image)
    if label is not None:
        write_volume(root / LABELS / f"{name}.tif", Volume(label.astype(np.uint8), image.spacing))
    if tree is not None:
        write_swc(root / SWC / f"{name}.swc", tree)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder opened for reading; see the module docstring for the layout.

    Parameters
    ----------
    root : Path
        The folder.
    images : dict of {str: Path}
        Stack path per name, in natural order of the names.
    """

    root: Path
    images: dict[str, Path]

    @property
    def names(self) -> list[str]:
        return list(self.images)

    def split(self) -> dict[str, list[str]]:
        """The train/val/test names from ``split.json``, checked against ``images/``."""
        path = self.root / SPLIT_FILE
        if not path.exists():
            raise InputError("has no split.json listing the train/val/test stacks.", self.root)
        split = _read_json(path)
        if not isinstance(split, dict) or set(split) - set(SPLITS):
            raise InputError(f"should map some of {list(SPLITS)} to lists of names.", path)
        for names in split.values():
            missing = [n for n in names if n not in self.images]
            if missing:
                raise InputError(f"names stacks that are not in {IMAGES}/: {missing[:5]}.", path)
        return {key: list(split.get(key, [])) for key in SPLITS}

    def image(self, name: str) -> Volume:
        """The stack ``name`` as stored (dtype unchanged)."""
        return read_volume(self.images[name])

    def tree(self, name: str) -> SwcTree | None:
        """The gold SWC of ``name``, or None when there is none."""
        path = self.root / SWC / f"{name}.swc"
        return read_swc(path) if path.exists() else None

    def unlabelled(self, name: str) -> SwcTree | None:
        """The neurites of ``name`` that its gold leaves out on purpose, or None."""
        path = self.root / UNLABELLED / f"{name}.swc"
        return read_swc(path) if path.exists() else None

    def label(self, name: str, image: Volume | None = None) -> np.ndarray:
        """The binary mask of ``name``: ``labels/NAME.tif`` or else rendered from its SWC.

        Parameters
        ----------
        name : str
            The stack.
        image : Volume, optional
            The already-read stack, to take shape and spacing from without re-reading.
        """
        path = self.root / LABELS / f"{name}.tif"
        image = self.image(name) if image is None else image
        if path.exists():
            label = read_volume(path).array
            if label.shape != image.array.shape:
                raise InputError(f"has shape {label.shape} but its stack has shape "
                                 f"{image.array.shape}.", path)
            return label > 0
        tree = self.tree(name)
        if tree is None:
            raise InputError(f"has neither {LABELS}/{name}.tif nor {SWC}/{name}.swc.", self.root)
        check_tree_in_stack(tree, image.array.shape, self.root / SWC / f"{name}.swc")
        return render_mask(tree, image.array.shape, image.spacing)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc}).", path) from exc


def open_dataset(root: str | os.PathLike) -> Dataset:
    """Open a dataset folder; its stacks are the supported files in ``images/``."""
    root = Path(root)
    folder = root / IMAGES
    if not folder.is_dir():
        raise InputError(f"is not a dataset folder: it has no {IMAGES}/ subfolder.", root)
    stems = ((_volume_stem(p), p) for p in sorted(folder.iterdir()) if p.is_file())
    images = {stem: p for stem, p in stems if stem is not None}
    if not images:
        raise InputError(f"has no stacks in {IMAGES}/.", root)
    return Dataset(root=root, images=images)
