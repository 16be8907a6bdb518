"""A batch of stacks: checked before the first is predicted, continued after an interruption.

A batch may run for hours. Two promises make that safe: a bad stack (unreadable header, wrong
shape or channel) stops the batch before any work, not after an hour; and a batch stopped
halfway (a crash, ``kill -9``, a full disk) is finished by running it again with
``skip_existing``: a stack counts as done when all its outputs exist, each having been written
through a temporary file renamed when complete, so nothing is redone or overwritten.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dineuro.defaults import TIFF_PROB_DTYPES
from dineuro.errors import InputError
from dineuro.io.atomic import check_writable, partial_files
from dineuro.io.volume import StackHeader, probe_volume
from dineuro.predict._storage import check_choice

#: How outputs already there are taken: refused, or (with skip_existing) their stack skipped.
SKIP_HINT = ("choose another output folder, remove it, or pass --skip-existing to keep the "
             "complete outputs and do only the other stacks.")


def pending(stacks: Sequence[Path], outputs_of: Callable[[Path], Sequence[Path]],
            skip_existing: bool = False) -> list[Path]:
    """The stacks still to do: those none of whose outputs exist.

    Parameters
    ----------
    stacks : sequence of Path
        The batch, in order.
    outputs_of : callable
        A stack's output files.
    skip_existing : bool, optional
        Skip stacks whose outputs all exist, instead of refusing them.

    Raises
    ------
    InputError
        An output that exists (without ``skip_existing``), or a stack with only some of its
        outputs (written by something else, or removed by hand): we neither skip it nor
        overwrite what is there.
    """
    todo = []
    for stack in stacks:
        paths = list(outputs_of(stack))
        present = [path for path in paths if path.exists()]
        if not present:
            todo.append(stack)
        elif not skip_existing:
            raise InputError(f"already exists; {SKIP_HINT}", present[0])
        elif len(present) < len(paths):
            missing = ", ".join(path.name for path in paths if not path.exists())
            raise InputError(f"exists but {missing} of the same stack does not, so {stack} is "
                             "neither done nor untouched; remove it to process that stack "
                             "again.", present[0])
    return todo


def probe_stacks(stacks: Sequence[Path], channel: int | None = None) -> list[StackHeader]:
    """Every stack's header, read and checked before any stack is processed (see
    :func:`~dineuro.io.volume.probe_volume`)."""
    return [probe_volume(stack, channel) for stack in stacks]


def output_bytes(headers: Sequence[StackHeader], bytes_per_voxel: float) -> int:
    """Disk space for outputs of ``bytes_per_voxel`` per voxel of the stacks (uncompressed).

    Examples
    --------
    >>> output_bytes([StackHeader((2, 3, 4), "uint8", (1.0, 1.0, 1.0))], 5)
    120
    """
    return int(sum(math.prod(header.shape) for header in headers) * bytes_per_voxel)


def prepare_batch(stacks: Sequence[Path], out: Path,
                  outputs_of: Callable[[Path], Sequence[Path]], *, skip_existing: bool = False,
                  channel: int | None = None, prob_dtype: str | None = None) -> list[Path]:
    """The stacks of a batch still to do, after every check that can fail before the work.

    Existing outputs are refused or skipped (:func:`pending`); with ``prob_dtype`` (TIFF
    outputs), each remaining stack's header is read and OUT is checked to take a map of that
    dtype and a uint8 mask per stack; without it, only that OUT is writable. Temporaries that
    a killed run left beside the outputs are removed; its finished files stay.

    Parameters
    ----------
    stacks : sequence of Path
        The batch, in order.
    out : Path
        The output folder (it need not exist yet).
    outputs_of : callable
        A stack's output files.
    skip_existing : bool, optional
        Skip stacks whose outputs all exist, instead of refusing them.
    channel : int, optional
        The channel taken from multi-channel stacks.
    prob_dtype : str, optional
        The probability map's dtype, one of ``TIFF_PROB_DTYPES``.

    Raises
    ------
    InputError
        An output that exists, a stack whose header cannot be read, a bad ``prob_dtype``,
        or an OUT that is a file.
    OSError
        OUT cannot be written or lacks the space.
    """
    todo = pending(stacks, outputs_of, skip_existing)
    needed = 0
    if prob_dtype is not None:
        check_choice(prob_dtype, TIFF_PROB_DTYPES, "prob_dtype")
        needed = output_bytes(probe_stacks(todo, channel), np.dtype(prob_dtype).itemsize + 1)
    check_writable(out, needed)
    for stack in todo:
        for path in outputs_of(stack):
            for leftover in partial_files(path):
                leftover.unlink()
    return todo
