"""Score traced SWC reconstructions against gold SWCs: the per-stack part of reconstruction scores.

``dineuro run`` writes a traced ``NAME.swc`` next to ``NAME_prob.tif`` and ``NAME_mask.tif``;
its gold is a dataset's ``swc/NAME.swc`` or a ``NAME.swc`` beside ``NAME.tif`` in a folder of
gold masks. Each pair is compared with :func:`dineuro.evaluate.reconstruction.compare_trees` in
raw SWC units ((x, y, z) voxels, z not scaled by the spacing), as Vaa3D's ``neuron_distance``
does, so that the scores are those of ``dineuro compare`` on the two files and compare with
published ones. HD95 in :mod:`dineuro.evaluate.folder` differs: it is in x/y voxels with z scaled
by the spacing. Where a dataset lists neurites that its gold leaves out on purpose
(``unlabelled/NAME.swc``, as ``synth`` writes its fragments of other neurons), precision is
also given with the trace on them set aside.

An empty trace (an SWC of comments only, which the tracer writes when nothing in the map is above
its threshold) matches none of the gold's length: recall and F1 are 0, and it has no distances
or cable, so ESA, DSA, PDS, precision and the hairiness ratio are left empty (as in
:class:`~dineuro.evaluate.reconstruction.ReconstructionScores`, where they are nan). A gold SWC
without nodes is refused, as is a trace or gold SWC that lies entirely outside its stack (the
rule of :func:`~dineuro.data.render.check_tree_in_stack`, which ``show`` and the rendering of
gold masks from SWCs apply too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dineuro.data.dataset import IMAGES, SWC, UNLABELLED
from dineuro.data.render import check_tree_in_stack
from dineuro.defaults import DEFAULT_SWC_THRESHOLD
from dineuro.errors import InputError
from dineuro.evaluate.reconstruction import compare_trees, labelled_precision, read_gold_swc
from dineuro.io.swc import SwcTree, read_swc
from dineuro.io.swc_units import to_voxels
from dineuro.outputs import SWC_SUFFIX

NO_TRACE, NO_GOLD_SWC, EMPTY_TRACE = "no trace", "no gold SWC", "empty trace"


@dataclass(frozen=True)
class TraceScore:
    """Reconstruction scores of one stack; None where the stack has nothing to score.

    Parameters
    ----------
    trace : str
        File name of the traced SWC ("" when there is none).
    esa, dsa : float or None
        Entire- and different-structure averages in SWC units (voxels).
    pds : float or None
        Fraction of sample points apart from the other tree, both directions averaged.
    precision, recall, f1 : float or None
        Fractions of the traced and gold lengths within the threshold of the other tree, and their
        harmonic mean; an empty trace has recall and F1 0.
    labelled_precision : float or None
        Precision with the trace on the stack's unlabelled neurites set aside (a dataset's
        ``unlabelled/NAME.swc``; :func:`~dineuro.evaluate.reconstruction.labelled_precision`);
        equal to ``precision`` where the stack has none.
    hairiness_ratio : float or None
        Terminal tips per 100 units of cable of the trace over the gold's (above 1: spurious spurs;
        below 1: lost branches); None when either has no length.
    note : str
        "" or what is special: no trace, no gold SWC, empty trace.
    """

    trace: str
    esa: float | None
    dsa: float | None
    pds: float | None
    precision: float | None
    labelled_precision: float | None
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


def find_unlabelled_swcs(gold: str | os.PathLike, names: Iterable[str]) -> dict[str, Path]:
    """``unlabelled/NAME.swc`` of each of ``names`` that has one, in a dataset folder (one with
    ``images/``; a plain folder of gold masks has none)."""
    gold = Path(gold)
    if not (gold / IMAGES).is_dir():
        return {}
    paths = {name: gold / UNLABELLED / f"{name}{SWC_SUFFIX}" for name in names}
    return {name: path for name, path in paths.items() if path.is_file()}


def read_trace(path: str | os.PathLike) -> SwcTree | None:
    """A traced SWC file, strictly read, in voxels (an SWC written with ``--units um`` is
    converted back); None when it holds comments only (an empty trace), for callers that draw
    it or not."""
    tree = _traced(path)
    return tree if len(tree) else None


def _traced(path: str | os.PathLike) -> SwcTree:
    """A traced SWC in voxels, as gold SWCs are, whatever units it was written in."""
    tree = read_swc(path, allow_empty=True)
    try:
        return to_voxels(tree)
    except InputError as exc:
        raise InputError(str(exc), path) from exc


def score_trace(trace: Path | None, gold: Path | None,
                threshold: float = DEFAULT_SWC_THRESHOLD,
                shape: Sequence[int] | None = None,
                unlabelled: Path | None = None) -> TraceScore:
    """Scores of the traced SWC file ``trace`` against the gold SWC file ``gold``.

    Parameters
    ----------
    trace, gold : Path or None
        The two files; None where a stack lacks one (a row with a note).
    threshold : float, optional
        Distance in SWC units (see :mod:`dineuro.evaluate.reconstruction`).
    shape : sequence of int, optional
        The (z, y, x) shape of their stack, to refuse an SWC that lies outside it (and would score
        as a complete miss); None to skip that check.
    unlabelled : Path, optional
        The stack's neurites that the gold leaves out on purpose, set aside in
        ``labelled_precision``.

    Raises
    ------
    InputError
        Naming the file: an unreadable or invalid SWC, an empty gold SWC, or one that lies entirely
        outside the stack.
    """
    name = "" if trace is None else trace.name
    if trace is None or gold is None:
        note = ", ".join(what for what, missing in ((NO_TRACE, trace is None),
                                                    (NO_GOLD_SWC, gold is None)) if missing)
        return TraceScore(trace=name, esa=None, dsa=None, pds=None, precision=None,
                          labelled_precision=None, recall=None, f1=None, hairiness_ratio=None,
                          note=note)
    tree, gold_tree = _traced(trace), read_gold_swc(gold)
    if shape is not None:
        check_tree_in_stack(gold_tree, shape, gold)
        check_tree_in_stack(tree, shape, trace)
    result = compare_trees(tree, gold_tree, threshold)
    aside = None if unlabelled is None else read_swc(unlabelled, allow_empty=True)
    return TraceScore(trace=name, esa=_defined(result.esa), dsa=_defined(result.dsa),
                      pds=_defined(result.pds), precision=_defined(result.precision),
                      labelled_precision=_defined(labelled_precision(tree, gold_tree, aside,
                                                                     threshold)),
                      recall=result.recall, f1=result.f1,
                      hairiness_ratio=result.hairiness_ratio,
                      note="" if len(tree) else EMPTY_TRACE)


def _defined(score: float) -> float | None:
    """None for a score that is undefined (nan: an empty trace has no points to average)."""
    return None if math.isnan(score) else score
