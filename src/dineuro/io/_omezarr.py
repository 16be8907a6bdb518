"""OME-Zarr images (NGFF 0.4 and 0.5) and plain zarr arrays, through zarr.

An OME-Zarr image is a zarr group whose ``multiscales`` metadata lists its resolution levels
(``datasets``), finest first, each with the path of its array and the scale of its voxels, and
names the axes with their units. The metadata sits in the group's attributes (NGFF 0.4, zarr v2)
or under their ``ome`` key (NGFF 0.5, zarr v3). We read level 0 (full resolution) from the path
the metadata gives, never a hard-coded ``"0"``, and take the spacing from its scale (times the
image-wide scale, when there is one), in micrometres when the axes name a known unit.

A folder that is a plain zarr array (what ``predict --blocks`` reads and writes) is read as a
(z, y, x) stack with spacing 1.0, or with the ``spacing`` attribute our block-wise prediction
writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io._placeholder import placeholder
from dineuro.io._readers import Unitless, has_unit, one_time_point

#: NGFF axis names -> the axis letters the readers share (tifffile's).
_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
#: NGFF (UDUNITS-2) length units in micrometres.
_UM_PER_UNIT = {"micrometer": 1.0, "nanometer": 1e-3, "picometer": 1e-6, "angstrom": 1e-4,
                "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
#: The array of the one level in the images we write.
LEVEL_0 = "0"
#: Axes of a plain zarr array, by its number of dimensions (channels first, as we write them).
_PLAIN_AXES = {2: "YX", 3: "ZYX", 4: "CZYX"}
#: Files that mark a folder as zarr (v3: zarr.json; v2: .zgroup or .zarray).
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def is_zarr(path: Path) -> bool:
    """Whether the folder ``path`` is a zarr group or array (rather than a folder of slices).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     is_zarr(Path(folder))
    False
    """
    return any((path / marker).is_file() for marker in _ZARR_MARKERS)


def open_image(path: Path, level: int = 0):
    """The zarr array of an OME-Zarr image's resolution ``level`` (or of a plain zarr array),
    its axis letters, and its (z, y, x) spacing.

    Raises
    ------
    InputError
        Naming ``path``: not a zarr folder, a group without multiscales metadata, a level or
        array the metadata names but the folder lacks, or axes without z, y and x.
    """
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is not zarr
        raise InputError(f"cannot be opened as zarr ({exc}).", path) from exc
    if hasattr(node, "shape"):
        return node, _PLAIN_AXES.get(node.ndim, "Q" * node.ndim), _array_spacing(node)
    multiscales = _multiscales(node.attrs.asdict(), path)
    datasets = multiscales.get("datasets") or []
    if not 0 <= level < len(datasets):
        raise InputError(f"has {len(datasets)} resolution level(s); level {level} was asked "
                         "for.", path)
    dataset = datasets[level]
    try:
        array = node[dataset["path"]]
    except KeyError as exc:
        raise InputError(f"names the array {dataset['path']!r} in its multiscales metadata, "
                         "but does not hold it.", path) from exc
    axes = _axes(multiscales, array.ndim, path)
    sizes = np.ones(array.ndim)
    for entry in (dataset, multiscales):  # a level's scale, then the image-wide one
        sizes *= _scale(entry, array.ndim)
    units = [axis.get("unit") if isinstance(axis, dict) else None
             for axis in multiscales.get("axes", [])] or [None] * array.ndim
    sizes *= [_UM_PER_UNIT.get(unit, 1.0) for unit in units]
    spacing = tuple(float(sizes[axes.index(a)]) for a in "ZYX")
    named = all(units[axes.index(a)] in _UM_PER_UNIT for a in "ZYX")
    return array, axes, spacing if named else Unitless(spacing)


def ome_metadata(spacing: tuple[float, float, float], name: str,
                 factors: tuple[tuple[int, int, int], ...] = ((1, 1, 1),)) -> dict:
    """The attributes that make a zarr group with (z, y, x) arrays ``"0"``, ``"1"``, ... an
    OME-Zarr image (NGFF 0.5) of voxel size ``spacing``, in micrometres (without a unit when
    ``spacing`` is :class:`~dineuro.io._readers.Unitless`).

    ``factors`` gives, per resolution level, how many voxels of level 0 one of its voxels
    spans along (z, y, x); its scale is ``spacing`` times that.

    Examples
    --------
    >>> ome_metadata((2.0, 0.5, 0.5), "x")["ome"]["multiscales"][0]["datasets"]
    [{'path': '0', 'coordinateTransformations': [{'type': 'scale', 'scale': [2.0, 0.5, 0.5]}]}]
    >>> levels = ome_metadata((2.0, 0.5, 0.5), "x", ((1, 1, 1), (1, 2, 2)))
    >>> levels["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"]
    [2.0, 1.0, 1.0]
    """
    unit = {"unit": "micrometer"} if has_unit(spacing) else {}
    axes = [{"name": axis, "type": "space", **unit} for axis in "zyx"]
    levels = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [float(s) * f for s, f in zip(spacing, factor, strict=True)]}]}
        for k, factor in enumerate(factors)]
    return {"ome": {"version": "0.5",
                    "multiscales": [{"name": name, "axes": axes, "datasets": levels}]}}


def open_stack(path: Path):
    """Level 0 as a lazy (z, y, x) array with numpy slicing (for block-wise work), and its
    spacing; time and channel axes must have length 1 (one stack).

    Raises
    ------
    InputError
        What :func:`open_image` refuses, or an image with several channels or time points.
    """
    array, axes, spacing = open_image(path)
    extra = {a: n for a, n in zip(axes, array.shape, strict=True) if a not in "ZYX"}
    if any(n != 1 for n in extra.values()) or len(axes) - len(extra) != 3:
        raise InputError(f"has axes {axes} of shape {tuple(array.shape)}; block-wise "
                         "prediction needs one (z, y, x) stack (channels and time points of "
                         "length 1).", path)
    return (array if not extra else _Stack(array, axes)), spacing


class _Stack:
    """A zarr array with axes of length 1 besides z, y and x, seen as (z, y, x): slicing it
    reads only the slices asked for."""

    def __init__(self, array, axes: str):
        self.array, self.axes = array, axes
        self.shape = tuple(n for a, n in zip(axes, array.shape, strict=True) if a in "ZYX")
        self.dtype = array.dtype

    def __getitem__(self, index):
        index = iter(index if isinstance(index, tuple) else (index,))
        full = tuple(next(index, slice(None)) if a in "ZYX" else 0 for a in self.axes)
        return self.array[full]


def read(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Level 0 of the image: its voxels, axis letters and (z, y, x) spacing (one time point:
    a single one is dropped)."""
    array, axes, spacing = open_image(path)
    index, axes = _one_time_point(array.shape, axes, path)
    return np.asarray(array[index]), axes, spacing


def probe(path: Path) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """What :func:`read` returns, with a placeholder for the voxels: the metadata only."""
    array, axes, spacing = open_image(path)
    index, axes = _one_time_point(array.shape, axes, path)
    return placeholder(array.shape, array.dtype)[index], axes, spacing


#: Chunks (z, y, x) of the OME-Zarr images :func:`write` makes: the blocks a distributed run
#: reads (:data:`dineuro.predict.DEFAULT_BLOCK`) hold whole chunks of this shape.
WRITE_CHUNKS = (64, 256, 256)
#: What :func:`write` stores, as zarr does: every integer and float dtype.
DTYPES = tuple(np.dtype(name) for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32",
                                           "uint64", "int64", "float32", "float64"))


def write(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """A new OME-Zarr image (NGFF 0.5) in the folder ``path``: array "0" chunked by
    :data:`WRITE_CHUNKS`, its scale ``spacing`` in micrometres (none when unitless)."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(ome_metadata(spacing, path.name))
    group.create_array(LEVEL_0, data=array, chunks=tuple(
        min(c, n) for c, n in zip(WRITE_CHUNKS, array.shape, strict=True)))


def _one_time_point(shape: tuple[int, ...], axes: str, path: Path) -> tuple[tuple, str]:
    """The index that drops a time axis of length 1, and the remaining axes; more time
    points are refused (a stack is one moment)."""
    if "T" not in axes:
        return (), axes
    one_time_point(shape[axes.index("T")], path)
    return tuple(0 if a == "T" else slice(None) for a in axes), axes.replace("T", "")


def _multiscales(attrs: dict, path: Path) -> dict:
    """The first multiscales entry, from NGFF 0.5 (``ome``) or 0.4 (top-level) attributes."""
    entries = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if not entries:
        raise InputError("is a zarr group without OME-Zarr multiscales metadata; give the path "
                         "of the array to read, or an OME-Zarr image.", path)
    return entries[0]


def _axes(multiscales: dict, ndim: int, path: Path) -> str:
    """The axis letters of the multiscales ``axes`` (names, or dicts with a name), checked to
    hold z, y and x; NGFF 0.3 and older have no axes and are (t, c,) z, y, x."""
    names = [axis["name"] if isinstance(axis, dict) else axis
             for axis in multiscales.get("axes", [])] or list("tczyx")[-ndim:]
    letters = "".join(_AXIS_LETTERS.get(str(name).lower(), "Q") for name in names)
    if len(letters) != ndim or not set("ZYX") <= set(letters):
        raise InputError(f"has axes {names} for an array of {ndim} dimensions; an image with z, "
                         "y and x axes is needed.", path)
    return letters


def _scale(entry: dict, ndim: int) -> np.ndarray:
    """The product of the ``scale`` transformations of a dataset or multiscales entry (ones
    when it has none)."""
    scale = np.ones(ndim)
    for transform in entry.get("coordinateTransformations", []):
        if transform.get("type") == "scale" and len(transform.get("scale", ())) == ndim:
            scale *= np.asarray(transform["scale"], float)
    return scale


def _array_spacing(array) -> tuple[float, float, float]:
    """The ``spacing`` attribute block-wise prediction writes, else 1.0 per axis."""
    spacing = array.attrs.get("spacing")
    if spacing and len(spacing) == 3:
        return tuple(float(s) for s in spacing)
    return Unitless((1.0, 1.0, 1.0))
