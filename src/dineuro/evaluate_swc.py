"""Score traced SWC reconstructions against gold SWCs: the per-stack part of reconstruction scores.

``dineuro run`` writes a traced ``NAME.swc`` next to ``NAME_prob.tif`` and ``NAME_mask.tif``;
its gold is a dataset's ``swc/NAME.swc`` or a ``NAME.swc`` beside ``NAME.tif`` in a folder of
gold masks. Each pair is compared with :func:`dineuro.neuron_distance.compare_trees` in raw SWC
units ((x, y, z) voxels, z not scaled by the spacing), as Vaa3D's ``neuron_distance`` does, so
that the scores are those of ``dineuro compare`` on the two files and compare with published
ones. HD95 in :mod:`dineuro.evaluate` differs: it is in x/y voxels with z scaled by the spacing.

An empty trace (an SWC of comments only, which the tracer writes when nothing in the map is above
its threshold) matches none of the gold's length: recall and F1 are 0, and it has no distances
or cable, so ESA, DSA, PDS, precision and the hairiness ratio are left empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dineuro.data.dataset import IMAGES, SWC
from dineuro.errors import InputError
from dineuro.io.swc import SwcTree, read_swc
from dineuro.neuron_distance import DEFAULT_THRESHOLD, compare_trees

SWC_SUFFIX = ".swc"
#: Distance in SWC units from which a point counts as apart; Vaa3D's threshold of 2.
DEFAULT_SWC_THRESHOLD = DEFAULT_THRESHOLD
NO_TRACE, NO_GOLD_SWC, EMPTY_TRACE = "no trace", "no gold SWC", "empty trace"


@dataclass(frozen=True)
class TraceScore:
    """Reconstruction scores of one stack; None where the stack has nothing to score.

    Args:
        trace: file name of the traced SWC ("" when there is none).
        esa, dsa: entire- and different-structure averages in SWC units (voxels).
        pds: fraction of sample points apart from the other tree, both directions averaged.
        precision, recall, f1: fractions of the traced and gold lengths within the threshold of
            the other tree, and their harmonic mean; an empty trace has recall and F1 0.
        hairiness_ratio: terminal tips per 100 units of cable of the trace over the gold's
            (above 1: spurious spurs; below 1: lost branches); None when either has no length.
        note: "" or what is special: no trace, no gold SWC, empty trace.
    """

    trace: str
    esa: float | None
    dsa: float | None
    pds: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    hairiness_ratio: float | None
    note: str

    @property
    def scored(self) -> bool:
        return self.f1 is not None


def find_traces(pred_dir: str | os.PathLike) -> dict[str, Path]:
    """Traced SWC per stack name: every ``NAME.swc`` in ``pred_dir`` (hidden files skipped)."""
    return {path.name[: -len(SWC_SUFFIX)]: path for path in sorted(Path(pred_dir).iterdir())
            if path.name.endswith(SWC_SUFFIX) and len(path.name) > len(SWC_SUFFIX)
            and not path.name.startswith(".") and path.is_file()}


def find_gold_swcs(gold: str | os.PathLike, names: Iterable[str]) -> dict[str, Path]:
    """Gold SWC of each of ``names`` that has one: ``swc/NAME.swc`` of a dataset folder (one
    with ``images/``), else ``NAME.swc`` in the folder ``gold`` itself."""
    gold = Path(gold)
    folder = gold / SWC if (gold / IMAGES).is_dir() else gold
    paths = {name: folder / f"{name}{SWC_SUFFIX}" for name in names}
    return {name: path for name, path in paths.items() if path.is_file()}


def read_trace(path: str | os.PathLike) -> SwcTree | None:
    """A traced SWC file, strictly read; None when it holds comments only (an empty trace)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}).", path) from None
    if all(not line.strip() or line.lstrip().startswith("#") for line in lines):
        return None
    return read_swc(path)


def score_trace(trace: Path | None, gold: Path | None,
                threshold: float = DEFAULT_SWC_THRESHOLD) -> TraceScore:
    """Scores of the traced SWC file ``trace`` against the gold SWC file ``gold``.

    Args:
        trace, gold: the two files; None where a stack lacks one (a row with a note).
        threshold: distance in SWC units (see :mod:`dineuro.neuron_distance`).

    Raises:
        InputError: naming the file: an unreadable or invalid SWC, or an empty gold SWC.
    """
    name = "" if trace is None else trace.name
    if trace is None or gold is None:
        note = ", ".join(what for what, missing in ((NO_TRACE, trace is None),
                                                    (NO_GOLD_SWC, gold is None)) if missing)
        return TraceScore(trace=name, esa=None, dsa=None, pds=None, precision=None,
                          recall=None, f1=None, hairiness_ratio=None, note=note)
    tree, gold_tree = read_trace(trace), read_swc(gold)
    if tree is None:
        return TraceScore(trace=name, esa=None, dsa=None, pds=None, precision=None,
                          recall=0.0, f1=0.0, hairiness_ratio=None, note=EMPTY_TRACE)
    result = compare_trees(tree, gold_tree, threshold)
    return TraceScore(trace=name, esa=result.esa, dsa=result.dsa, pds=result.pds,
                      precision=result.precision, recall=result.recall, f1=result.f1,
                      hairiness_ratio=result.hairiness_ratio, note="")
