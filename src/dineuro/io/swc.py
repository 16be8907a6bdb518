"""SWC neuron trees: read, validate, write, and the one (x, y, z) <-> (z, y, x) conversion.

An SWC file has one node per line, seven whitespace-separated columns::

    id  type  x  y  z  radius  parent

with ``parent == -1`` at roots; lines starting with ``#`` are comments. Several roots (a forest)
are allowed. dineuro reads SWC coordinates as voxel indices in (x, y, z) order, with voxel centres
at integer coordinates, and radii in units of the x/y voxel size. Volumes are numpy arrays in
(z, y, x) order, so :func:`swc_to_zyx` and :func:`zyx_to_swc` are the only places the axis order
flips.

Examples
--------
>>> tree = SwcTree(ids=[1, 2], types=[1, 3], xyz=[[0, 0, 0], [3, 4, 5]],
...                radius=[2.0, 1.0], parents=[-1, 1])
>>> len(tree), tree.parent_index.tolist(), tree.zyx[1].tolist()
(2, [-1, 0], [5.0, 4.0, 3.0])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file, refuse_existing

SWC_COLUMNS = ("id", "type", "x", "y", "z", "radius", "parent")
ROOT_PARENT = -1
# Coordinates and radii are written with at most this many decimals (trailing zeros stripped):
# a thousandth of a voxel is far below any tracing accuracy and keeps files compact.
WRITE_DECIMALS = 3
_MAX_EXACT_INT = 2**53  # ids, types and parents are parsed as float64: exact up to here


def swc_to_zyx(xyz: np.ndarray) -> np.ndarray:
    """SWC (x, y, z) coordinates -> array-index (z, y, x) coordinates: the columns reversed.

    Both are in voxels; this is the one place the axis order flips (see the module docstring).

    Parameters
    ----------
    xyz : numpy.ndarray
        ``(..., 3)`` coordinates in SWC order.

    Returns
    -------
    numpy.ndarray
        A new float64 ``(..., 3)`` array in (z, y, x) order.

    Examples
    --------
    >>> swc_to_zyx([[1.0, 2.0, 3.0]]).tolist()
    [[3.0, 2.0, 1.0]]
    """
    return _reverse_columns(xyz, "xyz")


def zyx_to_swc(zyx: np.ndarray) -> np.ndarray:
    """Array-index (z, y, x) coordinates -> SWC (x, y, z) coordinates; inverse of swc_to_zyx.

    Examples
    --------
    >>> zyx_to_swc([[3.0, 2.0, 1.0]]).tolist()
    [[1.0, 2.0, 3.0]]
    """
    return _reverse_columns(zyx, "zyx")


def _reverse_columns(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 0 or points.shape[-1] != 3:
        raise ValueError(f"{name} should have 3 columns in its last axis, got {points.shape}.")
    return np.ascontiguousarray(points[..., ::-1])


def _as_int64(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    as_int = array.astype(np.int64)
    if array.dtype.kind == "f" and not np.array_equal(as_int, array):
        raise ValueError(f"{name} should hold integers.")
    return as_int.reshape(-1)


@dataclass(eq=False)
class SwcTree:
    """A neuron as parallel per-node arrays, in file order.

    Array fields are converted on construction; lengths must agree. Semantic checks (finite
    values, unique ids, existing parents, no cycles) are :func:`validate_swc`'s job.

    Parameters
    ----------
    ids : numpy.ndarray
        Node ids (int64).
    types : numpy.ndarray
        SWC structure types (int64; 1 soma, 2 axon, 3 dendrite, ...).
    xyz : numpy.ndarray
        ``(N, 3)`` float64 positions in voxels, SWC (x, y, z) order.
    radius : numpy.ndarray
        ``(N,)`` float64 radii in x/y voxels.
    parents : numpy.ndarray
        Parent *ids* (int64), ``-1`` at roots.
    comments : list of str, optional
        The ``#`` lines without the ``#`` (and one following space), in file order.
    """

    ids: np.ndarray
    types: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    parents: np.ndarray
    comments: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.ids = _as_int64("ids", self.ids)
        self.types = _as_int64("types", self.types)
        self.parents = _as_int64("parents", self.parents)
        self.radius = np.asarray(self.radius, dtype=np.float64).reshape(-1)
        self.xyz = np.asarray(self.xyz, dtype=np.float64)
        if self.xyz.size == 0:
            self.xyz = self.xyz.reshape(0, 3)
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"xyz should have shape (N, 3), got {self.xyz.shape}.")
        n = len(self.ids)
        if not (len(self.types) == len(self.xyz) == len(self.radius) == len(self.parents) == n):
            raise ValueError("ids, types, xyz, radius and parents should have the same length.")
        self.comments = [str(c) for c in self.comments]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def zyx(self) -> np.ndarray:
        """Node positions as ``(N, 3)`` (z, y, x) voxel coordinates, matching volume arrays."""
        return swc_to_zyx(self.xyz)

    @property
    def parent_index(self) -> np.ndarray:
        """Row index of each node's parent (int64), ``-1`` at roots.

        Raises
        ------
        InputError
            A parent id names no node in the tree.
        """
        index, missing = _parent_index(self.ids, self.parents)
        if missing.size:
            i = missing[0]
            raise InputError(f"node {self.ids[i]} has parent {self.parents[i]}, which does not "
                             "exist.")
        return index

    @property
    def roots(self) -> np.ndarray:
        """Row indices (not ids) of the root nodes, in file order."""
        return np.flatnonzero(self.parents == ROOT_PARENT)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Row indices ``(child, parent)`` of every edge, one per non-root node, in file order."""
        parent = self.parent_index
        child = np.flatnonzero(parent >= 0)
        return child, parent[child]

    def subset(self, keep: np.ndarray | Sequence[int]) -> SwcTree:
        """The tree restricted to the chosen nodes; children of dropped nodes become roots.

        Ids are kept, so the result lines up with the original file.

        Parameters
        ----------
        keep : numpy.ndarray or sequence of int
            Boolean mask of length ``N``, or row indices (kept in the given order).

        Examples
        --------
        >>> tree = SwcTree([1, 2, 3], [1, 3, 3], [[0, 0, 0]] * 3, [1, 1, 1], [-1, 1, 2])
        >>> tree.subset([True, False, True]).parents.tolist()
        [-1, -1]
        """
        keep = np.asarray(keep)
        if keep.dtype == bool:
            if keep.shape != (len(self),):
                raise ValueError(f"a boolean keep mask should have shape ({len(self)},).")
            rows = np.flatnonzero(keep)
        else:
            rows = _as_int64("keep", keep)
        parent = self.parent_index
        kept = np.zeros(len(self), dtype=bool)
        kept[rows] = True
        parent_kept = (parent >= 0) & kept[np.maximum(parent, 0)]
        parents = np.where(parent_kept, self.parents, ROOT_PARENT)
        return SwcTree(self.ids[rows], self.types[rows], self.xyz[rows], self.radius[rows],
                       parents[rows], list(self.comments))

    def crop(self, shape: Sequence[int]) -> SwcTree:
        """Keep the nodes whose nearest voxel lies inside a ``(z, y, x)`` volume of ``shape``.

        A node is inside when ``-0.5 <= coordinate < size - 0.5`` on every axis. Edges that
        cross the border are lost; to render labels for a stack, give the whole tree to
        :func:`dineuro.data.render.render_mask`, which clips exactly instead.
        """
        shape = np.asarray(shape, dtype=np.float64)
        if shape.shape != (3,):
            raise ValueError("shape should have 3 entries (z, y, x).")
        zyx = self.zyx
        return self.subset(np.all((zyx >= -0.5) & (zyx < shape - 0.5), axis=1))

    def to_dataframe(self):
        """The nodes as a pandas DataFrame (:func:`dineuro.io.swc_frames.to_dataframe`)."""
        from dineuro.io.swc_frames import to_dataframe

        return to_dataframe(self)

    def to_navis(self, name: str | None = None):
        """A navis TreeNeuron (:func:`dineuro.io.swc_frames.to_navis`)."""
        from dineuro.io.swc_frames import to_navis

        return to_navis(self, name)

    def renumbered(self) -> SwcTree:
        """The same tree with ids ``1..N`` and every parent listed before its children.

        Nodes come in depth-first pre-order from each root (roots and siblings in file order),
        so unbranched stretches stay contiguous, as most SWC tools write them.

        Raises
        ------
        InputError
            A parent is missing or the parents form a cycle.
        """
        parent = self.parent_index
        n = len(self)
        # Children of each node as a CSR list; a stable sort keeps siblings in file order.
        child_rows = np.flatnonzero(parent >= 0)
        child_rows = child_rows[np.argsort(parent[child_rows], kind="stable")]
        starts = np.searchsorted(parent[child_rows], np.arange(n + 1))
        starts_list, children_list = starts.tolist(), child_rows.tolist()
        order: list[int] = []
        stack = self.roots[::-1].tolist()
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(reversed(children_list[starts_list[node]:starts_list[node + 1]]))
        if len(order) != n:
            _check_cycles(self.ids, parent, None)  # raises, naming a node on the cycle
        order_arr = np.asarray(order, dtype=np.int64)
        new_id = np.empty(n, dtype=np.int64)
        new_id[order_arr] = np.arange(1, n + 1)
        old_parent = parent[order_arr]
        parents = np.where(old_parent >= 0, new_id[np.maximum(old_parent, 0)], ROOT_PARENT)
        return SwcTree(np.arange(1, n + 1), self.types[order_arr], self.xyz[order_arr],
                       self.radius[order_arr], parents, list(self.comments))


def _parent_index(ids: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of each parent (-1 at roots) and the rows whose parent id names no node."""
    is_root = parents == ROOT_PARENT
    if len(ids) == 0:
        return np.full(len(parents), -1, dtype=np.int64), np.flatnonzero(~is_root)
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], parents), len(ids) - 1)
    found = ids[order[pos]] == parents
    index = np.where(found & ~is_root, order[pos], -1).astype(np.int64)
    return index, np.flatnonzero(~found & ~is_root)


def _check_cycles(ids: np.ndarray, parent: np.ndarray, path) -> None:
    """Raise naming a node on a parent cycle, if any.

    Following parents from any node either reaches a root or enters a cycle. Pointer jumping
    (``up = up[up]``, log2(N) rounds) follows at least N steps, after which every node that does
    not hang below a root sits on its cycle.
    """
    n = len(parent)
    up = np.where(parent >= 0, parent, np.arange(n))
    steps = 1
    while steps < n:
        up = up[up]
        steps *= 2
    bad = np.flatnonzero(parent[up] >= 0)
    if bad.size:
        on_cycle = ids[up[bad[0]]]
        raise InputError(f"node {on_cycle} is on a cycle of parent links; an SWC tree must not "
                         "contain cycles.", path)


def _where(i: int, lines: np.ndarray | None) -> str:
    return "" if lines is None else f" (line {lines[i]})"


def _check(tree: SwcTree, path, lines: np.ndarray | None, allow_empty: bool = False) -> None:
    """:func:`validate_swc`, naming the file line of the offending node when it is known."""
    if len(tree) == 0 and not allow_empty:
        raise InputError("contains no nodes.", path)
    for i, comment in enumerate(tree.comments):
        if "\n" in comment or "\r" in comment:
            raise InputError(f"comment {i + 1} contains a line break.", path)
    bad = np.flatnonzero(~np.isfinite(tree.xyz).all(axis=1))
    if bad.size:
        i = bad[0]
        raise InputError(f"node {tree.ids[i]}{_where(i, lines)} has a NaN or infinite "
                         "coordinate.", path)
    bad = np.flatnonzero(~np.isfinite(tree.radius))
    if bad.size:
        i = bad[0]
        raise InputError(f"node {tree.ids[i]}{_where(i, lines)} has a NaN or infinite radius.",
                         path)
    bad = np.flatnonzero(tree.radius < 0)
    if bad.size:
        i = bad[0]
        raise InputError(f"node {tree.ids[i]}{_where(i, lines)} has a negative radius "
                         f"({tree.radius[i]:g}).", path)
    bad = np.flatnonzero(tree.ids < 0)
    if bad.size:
        i = bad[0]
        raise InputError(f"node id {tree.ids[i]}{_where(i, lines)} is negative; ids must be "
                         ">= 0 since -1 marks a root's parent.", path)
    order = np.argsort(tree.ids, kind="stable")
    dup = np.flatnonzero(tree.ids[order][1:] == tree.ids[order][:-1])
    if dup.size:
        first, second = order[dup[0]], order[dup[0] + 1]
        where = "" if lines is None else f" (lines {lines[first]} and {lines[second]})"
        raise InputError(f"node id {tree.ids[first]} appears more than once{where}.", path)
    parent, missing = _parent_index(tree.ids, tree.parents)
    if missing.size:
        i = missing[0]
        raise InputError(f"node {tree.ids[i]}{_where(i, lines)} has parent {tree.parents[i]}, "
                         "which does not exist.", path)
    _check_cycles(tree.ids, parent, path)


def validate_swc(tree: SwcTree, path: str | os.PathLike | None = None, *,
                 allow_empty: bool = False) -> None:
    """Check that ``tree`` is a valid SWC forest; raise :class:`InputError` otherwise.

    Checks: at least one node (unless ``allow_empty``); finite coordinates and radii; radii >= 0;
    ids >= 0 and unique; every parent id is ``-1`` or an existing id; no cycles of parent links;
    no line breaks in comments. :func:`read_swc` and :func:`write_swc` call it.

    Parameters
    ----------
    tree : SwcTree
        The tree to check.
    path : str or os.PathLike, optional
        The file the tree came from or goes to, named in the error.
    allow_empty : bool, optional
        Accept a tree without nodes (an empty reconstruction).
    """
    _check(tree, path, None, allow_empty)


def _parse_line_values(path: Path, fields: list[list[str]], lines: list[int]) -> np.ndarray:
    """Parse all data fields as float64, naming the first bad token and its line on failure."""
    try:
        return np.array(fields, dtype=np.float64)
    except ValueError:
        pass
    for row, lineno in zip(fields, lines, strict=True):
        for name, token in zip(SWC_COLUMNS, row, strict=True):
            try:
                float(token)
            except ValueError:
                raise InputError(f"line {lineno}: {name} {token!r} is not a number.",
                                 path) from None
    raise AssertionError("numpy refused a value that float() accepts")  # pragma: no cover


def read_swc(path: str | os.PathLike, *, allow_empty: bool = False) -> SwcTree:
    """Read an SWC file into an :class:`SwcTree`, strictly.

    Seven whitespace-separated columns per node line; ``#`` lines are kept as comments; blank
    lines are ignored; several roots are allowed. Node order is kept as in the file. The text is
    UTF-8 (a byte-order mark is skipped); files that are not fall back to Latin-1, which only
    changes how non-ASCII comment characters read.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.swc`` file.
    allow_empty : bool, optional
        Return a tree without nodes for a file without node lines (what a tracer writes for a stack
        with nothing in it, see :func:`write_swc`) instead of refusing it; for reading
        reconstructions to be scored, where that is an empty result.

    Returns
    -------
    SwcTree
        The tree, validated with :func:`validate_swc`.

    Raises
    ------
    InputError
        Naming the file (and the line, where there is one) for an unreadable file, a line without
        exactly 7 columns, a non-numeric or non-integer value, non-finite or negative values,
        duplicate ids, missing parents, cycles, or no nodes at all (unless ``allow_empty``).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("does not exist.", path) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}).", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Old files carry Latin-1 comments ("\xb5m"); node lines are ASCII either way.
        text = raw.decode("latin-1")
    comments: list[str] = []
    fields: list[list[str]] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped[1:]
            comments.append(comment[1:] if comment.startswith(" ") else comment)
            continue
        row = stripped.split()
        if len(row) != len(SWC_COLUMNS):
            raise InputError(f"line {lineno}: expected {len(SWC_COLUMNS)} columns "
                             f"({' '.join(SWC_COLUMNS)}), found {len(row)}.", path)
        fields.append(row)
        lines.append(lineno)
    values = _parse_line_values(path, fields, lines).reshape(-1, len(SWC_COLUMNS))
    for column in (0, 1, 6):
        column_values = values[:, column]
        bad = np.flatnonzero((column_values != np.round(column_values))
                             | (np.abs(column_values) > _MAX_EXACT_INT))
        if bad.size:
            i = bad[0]
            raise InputError(f"line {lines[i]}: {SWC_COLUMNS[column]} {fields[i][column]!r} is "
                             "not an integer.", path)
    tree = SwcTree(ids=values[:, 0], types=values[:, 1], xyz=values[:, 2:5],
                   radius=values[:, 5], parents=values[:, 6], comments=comments)
    _check(tree, path, np.asarray(lines), allow_empty)
    return tree


def _format_decimals(values: np.ndarray) -> list[str]:
    out = []
    for v in values.tolist():
        s = f"{v:.{WRITE_DECIMALS}f}".rstrip("0").rstrip(".")
        out.append("0" if s == "-0" else s)
    return out


def write_swc(path: str | os.PathLike, tree: SwcTree, *, allow_empty: bool = False) -> Path:
    """Write ``tree`` to a new SWC file, atomically.

    Comments come first as ``# ...`` lines, then one node per line in the tree's order.
    Coordinates and radii keep up to ``WRITE_DECIMALS`` (3) decimals with trailing zeros
    stripped, so a round trip through a file is exact to 0.0005 voxel.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; must not exist yet.
    tree : SwcTree
        The tree; validated first with :func:`validate_swc`.
    allow_empty : bool, optional
        Write a tree without nodes as a file of comments only (what a tracer writes for a stack with
        nothing in it, so that a batch does not stop), instead of refusing it. :func:`read_swc`
        reads such a file back only with ``allow_empty``.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    InputError
        The path exists or the tree is invalid.
    """
    path = refuse_existing(path)
    _check(tree, path, None, allow_empty)
    x, y, z, r = (_format_decimals(column) for column in (*tree.xyz.T, tree.radius))
    body = [" ".join(row) for row in zip(map(str, tree.ids.tolist()),
                                          map(str, tree.types.tolist()), x, y, z, r,
                                          map(str, tree.parents.tolist()), strict=True)]
    header = [f"# {c}" if c else "#" for c in tree.comments]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    return path
