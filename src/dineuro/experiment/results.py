"""What one run of an experiment produced: the record the tables and figures are made from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dineuro.evaluate import EvaluationTable

#: The folder of a run folder that holds its predictions of the evaluation split.
PREDICTIONS = "predictions"


@dataclass(frozen=True)
class RunResult:
    """One trained, predicted and scored run.

    Attributes
    ----------
    transfer : str
        The run's transfer.
    seed : int
        The run's seed.
    teacher : str or None
        The teacher's name when the experiment names teachers (None for scratch and for a
        single teacher).
    folder : Path
        Its run folder; ``folder / PREDICTIONS`` holds the evaluation predictions.
    checkpoint : Path
        The checkpoint that predicted (``best.pt``; ``last.pt`` without a val split).
    table : EvaluationTable
        :func:`~dineuro.evaluate.evaluate_folder` of the predictions.
    train_seconds : float
        Wall-clock training time from ``metrics.csv`` (across resumes).
    steps : int
        Optimizer steps done.
    trained : bool
        Whether this call trained (or resumed) it; False when it was complete.
    curve : tuple of tuple of (int, float)
        (step, val_dice) of every validation.
    """

    transfer: str
    seed: int
    teacher: str | None
    folder: Path
    checkpoint: Path
    table: EvaluationTable
    train_seconds: float
    steps: int
    trained: bool
    curve: tuple[tuple[int, float], ...]


def named_teachers(items: Sequence) -> list[str]:
    """The teacher names of runs or table rows, in their order of appearance.

    Parameters
    ----------
    items : sequence of RunResult or TransferRow
        Anything with a ``teacher`` (a name, or None for scratch and a single teacher).

    Returns
    -------
    list of str
        The names, each once; empty with a single teacher.

    Examples
    --------
    >>> from types import SimpleNamespace as Run
    >>> named_teachers([Run(teacher=None), Run(teacher="photos"), Run(teacher="mips"),
    ...                 Run(teacher="photos")])
    ['photos', 'mips']
    """
    return [name for name in dict.fromkeys(item.teacher for item in items) if name is not None]
