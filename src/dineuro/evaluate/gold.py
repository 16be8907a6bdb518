"""The gold a folder of predictions is scored against: one mask reader per stack name.

Gold is either a dataset folder (see :mod:`dineuro.data.dataset`; masks from ``labels/`` or
rendered from ``swc/``) or a plain folder of ``NAME.tif`` masks. Each reader returns the mask
with its (z, y, x) spacing, the dataset's stack or the mask file's, so that HD95 can honour the
gold's anisotropy. Readers are lazy: :func:`~dineuro.evaluate.folder.evaluate_folder` reads a
stack's gold only when it has something to score against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dineuro.data.dataset import IMAGES, LABELS, SPLIT_FILE, SPLITS, SWC, open_dataset
from dineuro.errors import InputError
from dineuro.io.volume import Volume, read_volume

GOLD_EXTENSIONS = (".tif", ".tiff")

#: Reads one stack's gold: ((boolean mask, (z, y, x) spacing), the file to name in errors).
GoldReader = Callable[[], tuple[Volume, Path]]


def names_in_split(gold: str | os.PathLike, split: str) -> list[str] | None:
    """The stacks of ``split`` when ``gold`` is a dataset folder (``dineuro synth``'s layout),
    else None: every stack of the folder is scored.

    Parameters
    ----------
    gold : str or os.PathLike
        The gold folder given to :func:`~dineuro.evaluate.folder.evaluate_folder`.
    split : str
        "train", "val", "test", or "all" (None: every stack).

    Raises
    ------
    InputError
        Another split name, for a dataset folder.
    """
    gold = Path(gold)
    if split == "all" or not (gold / IMAGES).is_dir() or not (gold / SPLIT_FILE).exists():
        return None
    if split not in SPLITS:
        raise InputError(f"--split should be one of {', '.join(SPLITS)} or all, not {split!r}.")
    return open_dataset(gold).split()[split]


def gold_readers(gold: Path) -> dict[str, GoldReader]:
    """A reader per stack name of the gold at ``gold`` (dataset or folder of masks)."""
    if (gold / IMAGES).is_dir():
        return _dataset_readers(gold)
    if not gold.is_dir():
        raise InputError("is neither a dataset folder nor a folder of NAME.tif gold masks.",
                         gold)
    paths = {_stem(p): p for p in sorted(gold.iterdir())
             if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in GOLD_EXTENSIONS}
    if not paths:
        raise InputError("has no NAME.tif gold masks (and no images/ folder of a dataset).",
                         gold)

    def read(path: Path) -> tuple[Volume, Path]:
        volume = read_volume(path)
        return Volume(volume.array != 0, volume.spacing), path

    return {name: (lambda path=path: read(path)) for name, path in paths.items()}


def _dataset_readers(root: Path) -> dict[str, GoldReader]:
    """Stacks of a dataset folder that have a label mask or an SWC to render one from."""
    dataset = open_dataset(root)

    def read(name: str) -> tuple[Volume, Path]:
        image = dataset.image(name)
        return Volume(dataset.label(name, image), image.spacing), dataset.images[name]

    def has_gold(name: str) -> bool:
        return ((root / LABELS / f"{name}.tif").exists()
                or (root / SWC / f"{name}.swc").exists())

    return {name: (lambda name=name: read(name)) for name in dataset.names if has_gold(name)}


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)]
