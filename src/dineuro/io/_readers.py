"""Rules every stack reader shares: one time point per stack, the sentence for a format whose
optional library is not installed, and the mark on a spacing that has no unit."""

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


class Unitless(tuple):
    """A (z, y, x) spacing from a file that named no length unit (its numbers as given, 1.0
    where it gave none).

    It equals the plain tuple, so every computation treats it alike; only writers look at the
    type, and then record no unit, so a viewer does not show micrometres the microscope never
    reported. Copies that rebuild the tuple lose the mark, and their outputs say micrometres.

    Examples
    --------
    >>> spacing = Unitless((1.0, 1.0, 1.0))
    >>> spacing == (1.0, 1.0, 1.0), has_unit(spacing), has_unit((1.0, 1.0, 1.0))
    (True, False, True)
    """


def has_unit(spacing) -> bool:
    """Whether a spacing is in micrometres (anything but :class:`Unitless`)."""
    return not isinstance(spacing, Unitless)
