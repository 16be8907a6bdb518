"""Writing outputs safely: a crash never leaves a half-written file that looks complete.

Every stage writes through these: :func:`atomic_file` and :func:`atomic_dir` write under a hidden
``.NAME.*.partial`` name and rename when complete (a restart removes what a killed write left:
:func:`partial_files`); :func:`refuse_existing` keeps what the user has; :func:`check_writable`
fails before the work, not after it; :func:`undo_on_failure` and :func:`made_folder` remove
what a failed call created, so several files of one result are there all together or not at
all; :func:`naming` makes an ``OSError`` name the file the user asked for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
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
    that dispatch on the extension (tifffile, nibabel) still see it. A failed write (a full
    disk, say) raises an ``OSError`` that names ``path``, not the temporary file.
    """
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _partial_affixes(path)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; results should read like any new file
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` in the block re-raised naming ``path`` (the result the user asked for):
    a failed ``write()`` names no file, and a temporary file's name means nothing to a user."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _partial_affixes(path: Path) -> tuple[str, str]:
    """Prefix and suffix of the temporary names :func:`atomic_file` makes for ``path``."""
    return f".{path.stem}.", f".partial{path.suffix}"


def partial_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`atomic_file` for ``path`` that lie beside it, sorted.

    Only a writer killed inside the block (``kill -9``, power loss) leaves one behind; a
    program that restarts after such a kill removes them. ``mkstemp``'s random middle never
    holds a dot, so the leftovers of ``last.x.pt`` are not taken for those of ``last.pt``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix, suffix = _partial_affixes(path)
    name = re.compile(re.escape(prefix) + r"[^.]+" + re.escape(suffix))
    return sorted(p for p in path.parent.iterdir() if name.fullmatch(p.name))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` only if the block succeeds.

    ``path`` must not exist yet (see :func:`refuse_existing`). A failed write in the block
    raises an ``OSError`` that names ``path``, not the temporary folder.
    """
    path = refuse_existing(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def check_writable(folder: str | os.PathLike, needed: int = 0) -> None:
    """Fail now, not after the work, when outputs cannot be written into ``folder``.

    ``folder`` may not exist yet: then its nearest existing parent must let it be made. A file
    is created there and removed at once (permissions alone do not tell a read-only mount),
    and the free space must hold ``needed`` bytes.

    Raises
    ------
    OSError
        Naming ``folder``: not writable, or too little space for ``needed`` bytes.
    InputError
        A file where ``folder`` or one of its parents should be.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise InputError("is a file; a folder is needed here for the outputs.", existing)
    try:
        fd, probe = tempfile.mkstemp(prefix=".dineuro-write-check.", dir=existing)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from exc
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"No space left: the outputs need about {needed / 1e6:.1f} "
                      f"MB and the disk has {free / 1e6:.1f} MB free", str(folder))


@contextlib.contextmanager
def undo_on_failure(*paths: str | os.PathLike) -> Iterator[None]:
    """Files written together: if the block fails (an error, Ctrl-C), those of ``paths`` that
    it created are removed, so no set of outputs is left half-made where it could look
    complete. What existed before the block is never touched."""
    new = [Path(p) for p in paths if not Path(p).exists()]
    try:
        yield
    except BaseException:
        for path in new:
            path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def made_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Make ``folder`` (and missing parents) for the block's outputs; if the block fails, the
    folders it made are removed again when nothing was left in them."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in missing:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise
