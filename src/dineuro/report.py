"""Pictures people look at: orthogonal maximum-intensity projections with overlays.

One figure shows a stack from the top (x-y), the front (x-z) and the side (z-y), to physical
scale, with a label mask tinted over it and the SWC drawn as lines, so a glance tells whether
image, mask and reconstruction agree. Each view is drawn by :func:`draw_view`, which figures
of other layouts (the experiment's overlays, :mod:`dineuro.experiment.figures`) use as well.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen is assumed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file  # noqa: E402
from dineuro.io.swc import SwcTree  # noqa: E402

FIGURE_FORMATS = (".png", ".pdf", ".svg")
MASK_RGBA = (1.0, 0.1, 0.8, 0.4)
SWC_COLOR = "#ffd400"
#: A reference (gold) SWC drawn under the reconstruction, so the two can be told apart.
GOLD_COLOR = "#00c8ff"
#: A dark rim around SWC lines (points wider than the line): a yellow or cyan line over a
#: bright, saturated neurite is otherwise white on white, and the trace of the brightest
#: dendrite looks missing.
OUTLINE_COLOR, OUTLINE_WIDTH = "black", 1.0
#: Display range: these percentiles of a projection map to black and white.
CONTRAST_PERCENTILES = (0.5, 99.8)

# Projection views: (name, array axis collapsed, array axes shown as rows/cols,
# SWC columns (x=0, y=1, z=2) drawn along the horizontal and vertical axes).
VIEWS = {
    "xy": (0, (1, 2), (0, 1)),
    "xz": (1, (0, 2), (0, 2)),
    "zy": (2, (1, 0), (2, 1)),
}


def _extent(shape: tuple[int, int, int], spacing, rows: int, cols: int) -> list[float]:
    """imshow extent (left, right, bottom, top) in physical units, voxel centres at i * s."""
    return [-0.5 * spacing[cols], (shape[cols] - 0.5) * spacing[cols],
            (shape[rows] - 0.5) * spacing[rows], -0.5 * spacing[rows]]


def _contrast(projection: np.ndarray) -> tuple[float, float]:
    """Display range of a projection: :data:`CONTRAST_PERCENTILES`, never an empty range."""
    low, high = np.percentile(projection, CONTRAST_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def draw_view(ax, image: np.ndarray, spacing, view: str, tree: SwcTree | None = None,
              mask: np.ndarray | None = None, gold: SwcTree | None = None) -> None:
    """Draw one maximum-intensity projection of a stack into ``ax``, with its overlays.

    The projection is shown in grey to physical scale, voxel centres at index times spacing,
    its display range set by :data:`CONTRAST_PERCENTILES`; the mask is tinted over it
    (:data:`MASK_RGBA`), then the gold SWC (:data:`GOLD_COLOR`) and the SWC
    (:data:`SWC_COLOR`) are drawn as lines with a dark rim (:data:`OUTLINE_COLOR`) and dots at
    their roots. The axes are titled with the view's name on the left.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    image : numpy.ndarray
        The stack, (z, y, x), any numeric dtype.
    spacing : tuple of 3 float
        (z, y, x) voxel size; the axes are in these units.
    view : str
        "xy" (from the top), "xz" (the front) or "zy" (the side), as in :data:`VIEWS`.
    tree : SwcTree, optional
        An SWC (voxel coordinates x, y, z), projected and drawn as lines.
    mask : numpy.ndarray, optional
        A (z, y, x) bool mask of the image's shape, projected and tinted over the image.
    gold : SwcTree, optional
        A reference SWC, drawn under ``tree`` in its own colour.

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> stack = np.zeros((4, 5, 6), np.uint16)
    >>> stack[1, 2, 3] = 100
    >>> draw_view(ax, stack, (2.0, 1.0, 1.0), "zy", mask=stack > 0)
    >>> [float(limit) for limit in ax.get_xlim()]  # z runs across, voxel edges in z units
    [-1.0, 7.0]
    >>> plt.close(fig)
    """
    axis, (rows, cols), (h_col, v_col) = VIEWS[view]
    projection = image.max(axis=axis)
    if view == "zy":
        projection = projection.T  # rows y, columns z
    extent = _extent(image.shape, spacing, rows, cols)
    low, high = _contrast(projection)
    ax.imshow(projection, cmap="gray", vmin=low, vmax=high, extent=extent,
              interpolation="nearest")
    if mask is not None:
        shown = mask.max(axis=axis)
        shown = shown.T if view == "zy" else shown
        overlay = np.zeros(shown.shape + (4,))
        overlay[shown] = MASK_RGBA
        ax.imshow(overlay, extent=extent, interpolation="nearest")
    for drawn, color, width in ((gold, GOLD_COLOR, 1.2), (tree, SWC_COLOR, 0.6)):
        if drawn is not None and len(drawn):
            _draw_tree(ax, drawn, spacing, (h_col, v_col), color, width)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title(view, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)


def _draw_tree(ax, tree: SwcTree, spacing, columns: tuple[int, int], color: str,
               width: float) -> None:
    """The tree's edges as lines and its roots as dots, in physical units."""
    child, parent = tree.edges()
    # SWC columns are x, y, z; spacing is (z, y, x).
    points = tree.xyz * np.array([spacing[2], spacing[1], spacing[0]])
    segments = np.stack([points[child][:, columns], points[parent][:, columns]], axis=1)
    rim = patheffects.withStroke(linewidth=width + OUTLINE_WIDTH, foreground=OUTLINE_COLOR)
    ax.add_collection(LineCollection(segments, colors=color, linewidths=width,
                                     path_effects=[rim]))
    roots = points[tree.parents == -1]
    ax.plot(roots[:, columns[0]], roots[:, columns[1]], "o", color=color, ms=3)


def _three_views(fig: Figure, cell, image, spacing, tree, mask, heading: str,
                 gold: SwcTree | None = None) -> None:
    """x-y top-left, x-z below it, z-y to its right, inside one cell of the figure's grid."""
    z, y, x = (n * s for n, s in zip(image.shape, spacing, strict=True))
    grid = cell.subgridspec(2, 2, width_ratios=[x, z], height_ratios=[y, z])
    for view, sub in (("xy", grid[0, 0]), ("xz", grid[1, 0]), ("zy", grid[0, 1])):
        draw_view(fig.add_subplot(sub), image, spacing, view, tree, mask, gold)
    ax = fig.add_subplot(grid[1, 1])
    ax.axis("off")
    ax.text(0, 1, heading, va="top", fontsize=8, transform=ax.transAxes)


def mip_figure(image: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
               tree: SwcTree | None = None, mask: np.ndarray | None = None,
               title: str | None = None, mask_name: str = "label mask",
               gold: SwcTree | None = None, tree_name: str = "SWC") -> Figure:
    """Orthogonal maximum-intensity projections of a (z, y, x) stack, to physical scale.

    With an SWC or a mask, the projections appear twice: plain on the left, with the
    overlays on the right, so the image itself is not hidden by what is drawn over it.

    Parameters
    ----------
    image : numpy.ndarray
        The stack, (z, y, x), any numeric dtype.
    spacing : tuple of 3 float, optional
        (z, y, x) voxel size; axes are labelled in these units.
    tree : SwcTree, optional
        An SWC (voxel coordinates x, y, z) drawn as lines over every view.
    mask : numpy.ndarray, optional
        A (z, y, x) bool mask, projected and tinted over the image.
    title : str, optional
        Figure title.
    mask_name : str, optional
        What the mask is, for the legend (a label mask, a prediction, ...).
    gold : SwcTree, optional
        A reference SWC drawn under ``tree`` in another colour.
    tree_name : str, optional
        What ``tree`` is, for the legend (an SWC, a trace, ...).

    Returns
    -------
    matplotlib.figure.Figure
        The figure; each set of views has x-y top-left, x-z below it and z-y to its right.

    Raises
    ------
    InputError
        ``mask`` has another shape than ``image``.

    Examples
    --------
    >>> stack = np.zeros((4, 5, 6), np.uint16)
    >>> stack[1, 2, 3] = 100
    >>> fig = mip_figure(stack, (2.0, 1.0, 1.0), mask=stack > 0, title="one bright voxel")
    >>> len(fig.axes)  # plain and with the mask: three views and a legend each
    8
    >>> plt.close(fig)
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise InputError(f"mask shape {mask.shape} differs from image shape {image.shape}.")
    z, y, x = (n * s for n, s in zip(image.shape, spacing, strict=True))
    overlays = tree is not None or mask is not None or gold is not None
    width = 14.0 if overlays else 7.5
    height = width / (2 if overlays else 1) * (y + z) / (x + z) + 0.5
    fig = plt.figure(figsize=(width, height), layout="constrained")
    grid = fig.add_gridspec(1, 2 if overlays else 1)
    _three_views(fig, grid[0], image, spacing, None, None, "image MIP\n(grey)")
    if overlays:
        legend = ["image MIP (grey)"]
        if mask is not None:
            legend.append(f"{mask_name} (magenta)")
        if tree is not None:
            legend.append(f"{tree_name} (yellow)")
        if gold is not None:
            legend.append("gold SWC (cyan)")
        _three_views(fig, grid[1], image, spacing, tree, mask, "\n".join(legend), gold)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def stack_figure(stack: str | os.PathLike, swc: str | os.PathLike | None = None,
                 mask: str | os.PathLike | None = None, channel: int | None = None) -> Figure:
    """:func:`mip_figure` of a stack file, with an SWC file and a mask file drawn over it:
    what ``dineuro show`` draws.

    Parameters
    ----------
    stack : str or os.PathLike
        Any stack :func:`~dineuro.io.volume.read_volume` reads.
    swc : str or os.PathLike, optional
        An SWC in the stack's voxel coordinates.
    mask : str or os.PathLike, optional
        A label stack of the same shape; nonzero voxels are tinted.
    channel : int, optional
        The channel of a multi-channel stack.

    Raises
    ------
    InputError
        Naming the file: an unreadable stack, SWC or mask, an SWC that lies outside the stack,
        or a mask of another shape.
    """
    from dineuro.data.render import check_tree_in_stack
    from dineuro.io.swc import read_swc
    from dineuro.io.volume import read_volume

    volume = read_volume(stack, channel=channel)
    tree = None if swc is None else read_swc(swc)
    if tree is not None:
        check_tree_in_stack(tree, volume.array.shape, swc)
    label = None if mask is None else read_volume(mask).array > 0
    if label is not None and label.shape != volume.array.shape:
        raise InputError(f"has shape {label.shape} but the stack has shape "
                         f"{volume.array.shape}.", mask)
    return mip_figure(volume.array, volume.spacing, tree, label, title=Path(stack).name)


def check_figure_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if its extension is one of :data:`FIGURE_FORMATS`.

    Raises
    ------
    InputError
        Another extension, naming ``path``.

    Examples
    --------
    >>> check_figure_path("a.png").name
    'a.png'
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise InputError(f"should end in one of {', '.join(FIGURE_FORMATS)}.", path)
    return path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> None:
    """Save a figure atomically and release its memory.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is closed, even when saving fails.
    path : str or os.PathLike
        The file; its extension, one of :data:`FIGURE_FORMATS`, sets the format.
    dpi : int, optional
        Resolution of a PNG, in dots per inch.

    Raises
    ------
    InputError
        ``path`` has another extension.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_figure(plt.figure(), Path(folder) / "empty.png")
    ...     (Path(folder) / "empty.png").read_bytes()[:4]
    b'\\x89PNG'
    """
    path = check_figure_path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower())
    finally:
        plt.close(fig)
