"""Summary numbers and cells of result tables: mean ± std over finite values, CSV cells.

One place for how a table averages and prints, so that the scores of a folder
(``metrics.csv``, ``metrics.md``) and the transfer ablation over seeds (``ablation.csv``,
``ablation.md``, ``runs.csv``) summarise the same way: the population std (ddof=0), non-finite
values (an infinite HD95 of an empty mask, an undefined score) left out of the mean and counted
apart by the table, and undefined values as empty CSV cells and "n/a" in Markdown.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dineuro.io.atomic import atomic_file


class MeanStd(NamedTuple):
    """Mean and population standard deviation (ddof=0); nan when there is nothing to average."""

    mean: float
    std: float


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean and std (ddof=0) of the finite ``values``; (nan, nan) when none is finite.

    Infinite and nan values are left out rather than poisoning the mean: tables count them
    apart (infinite HD95s, empty predictions), so that the mean stays the mean of what was
    measured.

    Examples
    --------
    >>> mean_std([1.0, 3.0, math.inf])
    MeanStd(mean=2.0, std=1.0)
    """
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return MeanStd(math.nan, math.nan)
    return MeanStd(float(finite.mean()), float(finite.std()))


def plus_minus(value: MeanStd, decimals: int) -> str:
    """A Markdown cell "mean ± std" at ``decimals`` places; "n/a" when there was nothing to
    average.

    Examples
    --------
    >>> plus_minus(MeanStd(0.81234, 0.0346), 3), plus_minus(mean_std([]), 3)
    ('0.812 ± 0.035', 'n/a')
    """
    if math.isnan(value.mean):
        return "n/a"
    return f"{value.mean:.{decimals}f} ± {value.std:.{decimals}f}"


def csv_cell(value):
    """``value`` as a CSV cell: empty when missing (None) or undefined (nan), else as is (an
    infinite HD95 stays "inf", full precision otherwise)."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    return value


def write_csv(path: str | os.PathLike, columns: Sequence[str],
              rows: Iterable[Sequence]) -> Path:
    """Write a header of ``columns`` and ``rows`` (cells by :func:`csv_cell`) to ``path``,
    atomically: a crash leaves the earlier file or none, never half a table."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([csv_cell(value) for value in row] for row in rows)
    return path
