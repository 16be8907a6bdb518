"""Rules every stack reader shares: one time point per stack, and the sentence for a format
whose optional library is not installed."""

from __future__ import annotations

from pathlib import Path

from dineuro.errors import InputError

#: How to install the readers of the formats extra.
FORMATS_EXTRA = "pip install 'dineuro[formats]'"


def missing_extra(path: Path, libraries: str) -> InputError:
    """The error for a file whose reader needs the ``formats`` extra, which is not installed.

    Examples
    --------
    >>> error = missing_extra(Path("cell.czi"), "bioio and bioio-czi")
    >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
    cell.czi: reading .czi files needs the formats extra:
    pip install 'dineuro[formats]' (bioio and bioio-czi).
    """
    return InputError(f"reading {path.suffix.lower()} files needs the formats extra: "
                      f"{FORMATS_EXTRA} ({libraries}).", path)


def one_time_point(count: int, path: Path) -> None:
    """Refuse a file of several time points: a stack is one moment.

    Examples
    --------
    >>> one_time_point(1, Path("a.ome.zarr"))
    """
    if count != 1:
        raise InputError(f"holds {count} time points; one 3D stack is needed (save one time "
                         "point as its own file).", path)
