"""Atomic file and folder writes: a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dineuro.errors import InputError


def refuse_existing(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path, or raise if something already exists there.

    We never overwrite what the user has: an output path that exists is an error.
    """
    path = Path(path)
    if path.exists():
        raise InputError("already exists; choose another output path or remove it first.", path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name starts with a dot and ends in ``.partial`` so it is obviously not a
    result. The suffix of ``path`` is kept at the end of the temporary name's stem so writers
    that dispatch on the extension (tifffile, nibabel) still see it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; results should read like any new file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` only if the block succeeds.

    ``path`` must not exist yet (see :func:`refuse_existing`).
    """
    path = refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
