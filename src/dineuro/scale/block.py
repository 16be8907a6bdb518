"""The one task the scheduler maps over the blocks: read the block and its halo, normalise with
the whole volume's limits, predict, write the owned probability, trace the fragments.

:func:`run_block` is pure in the sense that matters to a distributed scheduler: everything it
needs is in its arguments (paths, not arrays), it writes only its own chunks of the map and its
own fragment file, and running it twice gives the same files. So a worker lost mid-block is
harmless: dask runs the block again elsewhere, and a killed run is continued by running the
blocks whose fragment files are missing.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dineuro.data.normalize import NonFiniteError
from dineuro.errors import InputError
from dineuro.predict._signal import SignalLevel
from dineuro.scale.fragments import block_fragments
from dineuro.scale.plan import Block


@dataclass(frozen=True)
class RunSpec:
    """What every block of a run shares: inputs, outputs, the model and its options, the whole
    volume's statistics and the tracing options. Plain values, so it travels to workers.

    Attributes
    ----------
    volume : str
        The OME-Zarr image (or zarr array) read, a path every worker can open.
    prob : str
        The probability array (zarr) the blocks write into.
    fragments : str
        Folder of the blocks' fragment files (the run's record of finished blocks).
    model : str
        Checkpoint path, as :meth:`dineuro.Predictor.from_checkpoint` takes it.
    device, window, threads
        Where and how each worker runs the network; ``threads`` is torch's thread count.
    options : dict
        The predictor's window options (overlap, batch_size, flips, precision, skip_empty,
        background_view).
    limits : tuple of float
        The whole volume's normalisation limits.
    levels : tuple of (float, float), or None
        The whole volume's signal level (background, noise) in each view the network sees it
        through (:attr:`dineuro.Predictor.views`); None to compute every window.
    spacing : tuple of float
        (z, y, x) voxel size.
    trace : dict
        high, low, min_piece_length, max_gap, gap_floor, follow_gap, follow_contrast,
        follow_line_gap (as :func:`dineuro.trace.trace`).
    """

    volume: str
    prob: str
    fragments: str
    model: str
    device: str
    window: tuple[int, int, int] | None
    threads: int
    options: dict = field(hash=False)
    limits: tuple[float, float]
    levels: tuple[tuple[float, float], ...] | None
    spacing: tuple[float, float, float]
    trace: dict = field(hash=False)


def fragment_path(spec: RunSpec, block: Block) -> Path:
    """Where ``block``'s fragments are written; it exists once the block is done."""
    return Path(spec.fragments) / f"{block.name}.npz"


@functools.lru_cache(maxsize=2)
def _predictor(model: str, device: str, window: tuple | None, options: tuple):
    """The network, loaded once per worker process and kept for its later blocks."""
    from dineuro.predictor import Predictor

    return Predictor.from_checkpoint(model, device=device, window=window, **dict(options))


def run_block(spec: RunSpec, block: Block) -> dict:
    """Predict and trace one block; writes its chunks of the map and its fragment file.

    Returns
    -------
    dict
        The block's name, the windows touching its region and how many were computed, the
        precision, the centre-line nodes it owns, and seconds.

    Raises
    ------
    InputError
        Naming the volume: NaN or infinite voxels in the block (the whole volume's limits come
        from a sample, which may miss them). The run reports a block that raises, whatever
        the error, and goes on with the others.
    """
    import torch
    import zarr

    from dineuro.data.render import spacing_in_x_voxels
    from dineuro.io._omezarr import open_stack
    from dineuro.predict._blocks import box_windows, predict_box
    from dineuro.predict._grid import WindowGrid
    from dineuro.predict._precision import resolve_precision
    from dineuro.predict._storage import encode_probability
    from dineuro.predict._views import strongest
    from dineuro.predict._windows import (
        WindowPredictor,
        WindowStats,
        inference,
        resolve_batch_size,
    )

    start = time.perf_counter()
    torch.set_num_threads(spec.threads)
    predictor = _predictor(spec.model, spec.device, spec.window,
                           tuple(sorted(spec.options.items())))
    source, _ = open_stack(Path(spec.volume))
    grid = WindowGrid.of(source.shape, predictor.crop, predictor.overlap)
    stats = WindowStats()
    views = predictor.views
    windows = WindowPredictor(predictor.network, grid.crop, predictor.flips, predictor.device,
                              resolve_precision(predictor.precision, predictor.device),
                              len(views) * box_windows(grid, block.region_begin,
                                                       block.region_end), None, stats)
    levels = ([None] * len(views) if spec.levels is None
              else [SignalLevel(*level) for level in spec.levels])
    try:
        with inference(predictor.network, windows.device):
            prob = strongest([predict_box(source, grid, block.region_begin, block.region_end,
                                          view, spec.limits,
                                          resolve_batch_size(predictor.batch_size, grid.crop),
                                          windows, level)
                              for view, level in zip(views, levels, strict=True)])
    except NonFiniteError as exc:
        raise InputError(f"block {block.name} holds NaN or infinite voxels.", spec.volume) from exc
    out = zarr.open_array(spec.prob, mode="r+")
    out[block.box] = encode_probability(prob[block.owned], np.dtype(out.dtype).name)
    region = block.region
    fragments = block_fragments(prob, block.region_begin, block.begin, block.end, source.shape,
                                spacing_in_x_voxels(spec.spacing), image=np.asarray(source[region]),
                                **spec.trace)
    fragments.meta = {"block": block.name, "windows": stats.windows, "computed": stats.computed,
                      "precision": stats.precision, "nodes": len(fragments.zyx),
                      "seconds": round(time.perf_counter() - start, 3)}
    fragments.save(fragment_path(spec, block))
    return fragments.meta
