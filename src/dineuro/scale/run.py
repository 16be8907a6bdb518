"""A whole volume to a probability map and SWCs, block by block on a dask cluster.

:func:`run_volume` is ``dineuro run --workers N`` (or ``--scheduler ADDRESS``):

1. The whole volume's statistics, once, on the client: normalisation limits (a strided
   subsample) and the signal level that decides which windows hold signal (a bounded sample
   of tiles; one per view, with a background view), so every block normalises and skips
   alike, as in-memory prediction would.
2. :func:`~dineuro.scale.block.run_block` mapped over the blocks by the scheduler: each
   predicts its region on the fixed window grid (so the map equals the in-memory one),
   writes its own chunks of the map and traces its centre-line fragments to a file.
3. The fragments stitched (:func:`~dineuro.scale.fragments.stitch`) and finished into one tree
   per neuron (:mod:`dineuro.scale.neurons`).
4. The mask, once more block by block: the pieces of the map above the threshold that the
   trace runs through, as ``dineuro run`` writes for a stack (:mod:`dineuro.scale.mask`);
   coarser levels of the map and of the mask added (:mod:`dineuro.scale.pyramid`).

Resuming: the work happens in a hidden ``OUT/.NAME.partial`` folder holding the settings, the
statistics, the map being filled and a fragment file per finished block. Running the same
command again skips the finished blocks (other settings are refused, naming the difference);
a block that fails (bad data in it) is reported while the others finish, and is tried again
next time. Only when every block is done are the outputs moved into ``OUT``, so nothing there
looks complete before it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dineuro.data.normalize import NonFiniteError
from dineuro.data.render import spacing_in_x_voxels
from dineuro.defaults import (
    BEAD_REACH,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLOCK,
    DEFAULT_FOLLOW_CONTRAST,
    DEFAULT_FOLLOW_GAP,
    DEFAULT_FOLLOW_LINE_GAP,
    DEFAULT_GAP_FLOOR,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_PIECE_LENGTH,
    DEFAULT_MIN_TREE_LENGTH,
    DEFAULT_NEURITE_TYPE,
    DEFAULT_NODE_STEP,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    DEFAULT_PRUNE_LENGTH,
    DEFAULT_RUN_MASK,
    DEFAULT_SMOOTH,
    DEFAULT_SPUR_RADII,
    DEFAULT_SWC_UNITS,
    DEFAULT_THRESHOLD,
    NEURITE_TYPES,
    PROB_DTYPES,
    RUN_MASKS,
)
from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file, refuse_existing, undo_on_failure
from dineuro.scale.block import RunSpec, fragment_path, run_block
from dineuro.scale.cluster import dashboard_link, dask_client
from dineuro.scale.fragments import Fragments, stitch
from dineuro.scale.mask import write_mask
from dineuro.scale.neurons import (
    NEURON_NAME,
    cable_length,
    graph_trees,
    neurons,
    write_neurons,
)
from dineuro.scale.plan import BlockPlan, halo_for
from dineuro.scale.pyramid import add_levels
from dineuro.trace._mask import cable_segments

Progress = Callable[[int, int], None]
#: Inside the partial folder: the settings and statistics, the map, the fragment files, the
#: mask (written after the stitch).
CONFIG, MAP, FRAGMENTS, FAILED, MASK = ("config.json", "prob.ome.zarr", "fragments",
                                        "failed.json", "mask.ome.zarr")


class BlocksFailed(InputError):
    """Some blocks could not be done; the others are, and a rerun tries the failed again."""


@dataclass
class VolumeRun:
    """What :func:`run_volume` wrote and did.

    Attributes
    ----------
    prob : Path
        The probability map (OME-Zarr, NGFF 0.5, several levels).
    mask : Path
        The mask (OME-Zarr, uint8 0/1, the same levels).
    swc : Path
        Every neuron in one SWC.
    neurons : Path
        A folder of one SWC per neuron (``neuron_00001.swc``, largest first).
    summary : Path
        The summary (JSON): neurons, cable, blocks, windows, seconds, settings.
    facts : dict
        The summary's contents.
    """

    prob: Path
    mask: Path
    swc: Path
    neurons: Path
    summary: Path
    facts: dict


def volume_outputs(volume: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """The paths :func:`run_volume` writes for ``volume`` in ``out_dir`` (and its work folder).

    Examples
    --------
    >>> sorted((k, p.name) for k, p in volume_outputs("brain.ome.zarr", "out").items())
    ... # doctest: +NORMALIZE_WHITESPACE
    [('mask', 'brain_mask.ome.zarr'), ('neurons', 'brain_neurons'),
     ('partial', '.brain.partial'), ('prob', 'brain_prob.ome.zarr'),
     ('summary', 'brain_summary.json'), ('swc', 'brain.swc')]
    """
    from dineuro.outputs import stack_name

    name, out_dir = stack_name(volume), Path(out_dir)
    return {"prob": out_dir / f"{name}_prob.ome.zarr", "mask": out_dir / f"{name}_mask.ome.zarr",
            "swc": out_dir / f"{name}.swc",
            "neurons": out_dir / f"{name}_neurons", "summary": out_dir / f"{name}_summary.json",
            "partial": out_dir / f".{name}.partial"}


def run_volume(volume: str | os.PathLike, out_dir: str | os.PathLike,
               model: str | os.PathLike | None = "default", *,
               block: Sequence[int] = DEFAULT_BLOCK, workers: int | None = None,
               scheduler: str | None = None, client=None, memory_limit: str | int = "auto",
               threads: int | None = None, device: str = "auto",
               window: Sequence[int] | None = None,
               overlap: float = DEFAULT_OVERLAP, batch_size: int | None = DEFAULT_BATCH_SIZE,
               flips: bool = False, precision: str = "auto", skip_empty: bool = True,
               background_view: float = 0.0,
               prob_dtype: str = DEFAULT_PROB_DTYPE, threshold: float = DEFAULT_THRESHOLD,
               mask: str = DEFAULT_RUN_MASK, high: float = DEFAULT_HIGH,
               low: float = DEFAULT_LOW, max_gap: float = DEFAULT_MAX_GAP,
               gap_floor: float = DEFAULT_GAP_FLOOR, follow_gap: float = DEFAULT_FOLLOW_GAP,
               follow_contrast: float = DEFAULT_FOLLOW_CONTRAST,
               follow_line_gap: float = DEFAULT_FOLLOW_LINE_GAP,
               prune_length: float = DEFAULT_PRUNE_LENGTH,
               spur_radii: float = DEFAULT_SPUR_RADII,
               min_piece_length: float = DEFAULT_MIN_PIECE_LENGTH,
               min_tree_length: float = DEFAULT_MIN_TREE_LENGTH,
               smooth: float = DEFAULT_SMOOTH, node_step: float = DEFAULT_NODE_STEP,
               keep_fragments: bool = False, link_beads: bool = True,
               units: str = DEFAULT_SWC_UNITS,
               neurite_type: str = DEFAULT_NEURITE_TYPE, progress: Progress | None = None,
               notify: Callable[[str], None] | None = None) -> VolumeRun:
    """Predict and trace a volume too large for one machine's memory, on a dask cluster.

    Parameters
    ----------
    volume : str or os.PathLike
        An OME-Zarr image (or zarr array) every worker can read.
    out_dir : str or os.PathLike
        Output folder; see :func:`volume_outputs` for the names, none of which may exist
        (except an unfinished run's work folder, which is continued).
    model : str or os.PathLike or None
        A checkpoint; "default" or None for the packaged model.
    block : sequence of int
        Block (z, y, x) per task, and the map's chunks.
    workers, scheduler, memory_limit
        A local cluster of ``workers`` processes with ``memory_limit`` each, or the scheduler
        at this address (see :func:`~dineuro.scale.cluster.dask_client`).
    client : distributed.Client, optional
        An existing client to use instead (then ``workers`` and ``scheduler`` are ignored).
    threads : int, optional
        torch threads per worker; default: a local cluster's workers share the machine's
        cores, a scheduler's workers get 1 each (give more when its workers have them).
    device, window, overlap, batch_size, flips, precision, skip_empty, background_view
        As for :meth:`dineuro.Predictor.from_checkpoint`.
    prob_dtype : {"uint8", "float16", "float32"}
        How the map is stored.
    threshold, mask
        As for :meth:`dineuro.Predictor.run`: the mask is the map (as stored) above
        ``threshold``, "traced" keeping only the pieces the trace runs through.
    high, low, max_gap, gap_floor, follow_gap, follow_contrast, follow_line_gap, prune_length, \
spur_radii, min_piece_length, min_tree_length, smooth, node_step, keep_fragments, link_beads, \
units, neurite_type
        As for :func:`dineuro.trace.trace` (centre lines by thinning; each block's raw image
        is the ``image``).
    progress : callable, optional
        ``progress(done, total)`` in blocks.
    notify : callable, optional
        Receives a line for the user: the dashboard's address, blocks already done.

    Returns
    -------
    VolumeRun

    Raises
    ------
    InputError
        Bad input or options, outputs that exist, an unfinished run with other settings in
        the work folder.
    BlocksFailed
        Some blocks failed; the rest are done and kept, and the same call continues.
    """
    import zarr

    from dineuro.io._omezarr import is_zarr, open_stack
    from dineuro.predict import check_choice
    from dineuro.predict._signal import signal_level
    from dineuro.predictor import Predictor
    from dineuro.trace._trace import _check_options

    started = time.perf_counter()
    volume, say = Path(volume), notify or (lambda line: None)
    paths = volume_outputs(volume, out_dir)
    if not volume.is_dir() or not is_zarr(volume):
        raise InputError("is not an OME-Zarr image or zarr array; a distributed run reads the "
                         "volume block by block from zarr, which every worker opens.", volume)
    for key in ("prob", "mask", "swc", "neurons", "summary"):
        refuse_existing(paths[key])
    check_choice(mask, RUN_MASKS, "mask")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold should be a probability in [0, 1], got {threshold}.")
    if prob_dtype not in PROB_DTYPES:
        raise InputError(f"prob_dtype should be one of {', '.join(PROB_DTYPES)}, not "
                         f"{prob_dtype!r}.")
    if neurite_type not in NEURITE_TYPES:
        raise InputError(f"neurite_type should be one of {', '.join(NEURITE_TYPES)}, not "
                         f"{neurite_type!r}.")
    trace_options = {"high": high, "low": low, "min_piece_length": min_piece_length,
                     "max_gap": max_gap, "gap_floor": gap_floor, "follow_gap": follow_gap,
                     "follow_contrast": follow_contrast, "follow_line_gap": follow_line_gap}
    finish_options = {"prune_length": prune_length, "spur_radii": spur_radii,
                      "min_tree_length": min_tree_length, "smooth": smooth,
                      "node_step": node_step}
    _check_options(**trace_options, **finish_options, root_snap=0.0)
    source, spacing = open_stack(volume)
    options = {"overlap": overlap, "batch_size": batch_size, "flips": flips,
               "precision": precision, "skip_empty": skip_empty,
               "background_view": background_view}
    predictor = Predictor.from_checkpoint(model, device=device, window=window, **options)
    plan = BlockPlan(source.shape, tuple(int(b) for b in block),
                     halo_for(max(max_gap, follow_gap, follow_line_gap,
                                  BEAD_REACH if link_beads else 0.0),
                              spacing_in_x_voxels(spacing)))
    settings = {"volume": str(volume.resolve()), "shape": list(source.shape),
                "dtype": str(source.dtype), "spacing": [float(s) for s in spacing],
                "model": predictor.source, "model_sha256": _sha256(predictor.source),
                "device": predictor.device, "window": list(predictor.crop), **options,
                "block": list(plan.block), "halo": list(plan.halo), "prob_dtype": prob_dtype,
                "threshold": threshold, "mask": mask,
                "trace": {**trace_options, **finish_options, "keep_fragments": keep_fragments,
                          "link_beads": link_beads, "units": units,
                          "neurite_type": neurite_type}}
    partial = paths["partial"]
    stats_started = time.perf_counter()
    config = _open_partial(partial, settings, say)
    if config is None:
        try:
            limits = predictor.normalization.limits(source)
            signal = [signal_level(lambda region, view=view: view.normalize_region(
                source, region, limits), source.shape)
                for view in (predictor.views if skip_empty else ())]
        except NonFiniteError as exc:
            raise InputError(str(exc), volume) from exc
        config = {"settings": settings, "limits": list(limits),
                  "levels": [[level.background, level.noise] for level in signal]
                  if skip_empty else None}
        _new_partial(partial, config, plan, prob_dtype, spacing, predictor, volume)
    stats_seconds = time.perf_counter() - stats_started
    if threads is None:
        local = client is None and scheduler is None
        threads = max(1, (os.cpu_count() or 1) // (workers or 1)) if local else 1
    spec = RunSpec(volume=str(volume.resolve()), prob=str(partial / MAP / "0"),
                   fragments=str(partial / FRAGMENTS), model=predictor.source,
                   device=predictor.device, window=tuple(predictor.crop), threads=threads,
                   options=options, limits=tuple(config["limits"]),
                   levels=None if config["levels"] is None else tuple(
                       tuple(level) for level in config["levels"]),
                   spacing=tuple(float(s) for s in spacing),
                   trace={**trace_options, "link_beads": link_beads})
    blocks = list(plan.blocks())
    todo = [b for b in blocks if not fragment_path(spec, b).exists()]
    if len(todo) < len(blocks):
        say(f"{len(blocks) - len(todo)} of {len(blocks)} blocks were done by an earlier run; "
            "continuing with the rest.")
    with (contextlib.nullcontext(client) if client is not None
          else dask_client(workers, scheduler, memory_limit)) as dask:
        blocks_started = time.perf_counter()
        workers_info = dask.scheduler_info().get("workers", {}).values()
        memory_limits = sorted(int(w.get("memory_limit") or 0) for w in workers_info)
        link = dashboard_link(dask)
        if link:
            say(f"dask dashboard: {link}")
        failed = _run_blocks(dask, spec, todo, len(blocks), progress)
        blocks_seconds = time.perf_counter() - blocks_started
        if failed:
            with atomic_file(partial / FAILED) as tmp:
                tmp.write_text(json.dumps(failed, indent=2))
            first = next(iter(failed.items()))
            raise BlocksFailed(f"{len(failed)} of {len(blocks)} blocks failed (block {first[0]}: "
                               f"{first[1]}); the others are done. Every failure is listed in "
                               f"{partial / FAILED}; run the same command again to retry them.")
        stitch_started = time.perf_counter()
        parts = [Fragments.load(fragment_path(spec, b)) for b in blocks]
        graph = stitch(parts, spacing_in_x_voxels(spacing), min_piece_length)
        tree = graph_trees(graph, spacing, source.shape, **finish_options,
                           keep_fragments=keep_fragments, units=units,
                           neurite_type=NEURITE_TYPES[neurite_type],
                           comments=_header(spacing, units, settings))
        stitch_seconds = time.perf_counter() - stitch_started
        mask_started = time.perf_counter()
        mask_group = _new_mask(partial, plan, spacing, threshold, mask, paths["mask"].name)
        mask_voxels = write_mask(dask, str(partial / MAP / "0"), str(partial / MASK / "0"),
                                 plan, threshold,
                                 cable_segments(tree) if mask == "traced" else None)
        mask_seconds = time.perf_counter() - mask_started
        pyramid_started = time.perf_counter()
        levels = add_levels(zarr.open_group(str(partial / MAP), mode="r+"), spacing,
                            plan.block, paths["prob"].name)
        add_levels(mask_group, spacing, plan.block, paths["mask"].name)
        pyramid_seconds = time.perf_counter() - pyramid_started
    facts = _summary(settings, parts, graph, tree, spacing, levels, {
        "statistics": stats_seconds, "blocks": blocks_seconds, "stitch": stitch_seconds,
        "mask": mask_seconds, "pyramid": pyramid_seconds,
        "total": time.perf_counter() - started},
        blocks_now=len(todo), memory_limits=memory_limits)
    facts["mask_voxels"] = mask_voxels
    with undo_on_failure(paths["swc"], paths["summary"]):
        try:
            write_neurons(tree, paths["swc"], paths["neurons"])
        except BaseException:
            shutil.rmtree(paths["neurons"], ignore_errors=True)
            raise
        os.replace(partial / MAP, paths["prob"])
        os.replace(partial / MASK, paths["mask"])
        with atomic_file(paths["summary"]) as tmp:
            tmp.write_text(json.dumps(facts, indent=2))
    shutil.rmtree(partial)
    return VolumeRun(paths["prob"], paths["mask"], paths["swc"], paths["neurons"],
                     paths["summary"], facts)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open_partial(partial: Path, settings: dict, say) -> dict | None:
    """The config of an unfinished run in ``partial`` with the same settings, or None when
    there is none (a work folder without its config, left by a run killed while starting, is
    removed: nothing in it was finished)."""
    config_path = partial / CONFIG
    if not config_path.is_file():
        if partial.exists():
            shutil.rmtree(partial)
        return None
    try:
        config = json.loads(config_path.read_text())
        stored = config["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"holds an unreadable run record ({exc}); remove the folder to start "
                         "again.", partial) from exc
    if stored != settings:
        key = next(k for k in sorted({*stored, *settings}) if stored.get(k) != settings.get(k))
        raise InputError(f"holds an unfinished run with other settings ({key}: "
                         f"{stored.get(key)!r} there, {settings.get(key)!r} now); rerun with "
                         "the same options to continue it, or remove the folder to start "
                         "again.", partial)
    say(f"continuing the unfinished run in {partial}")
    return config


def _new_partial(partial: Path, config: dict, plan: BlockPlan, prob_dtype: str, spacing,
                 predictor, volume: Path) -> None:
    """The work folder: an empty map (chunks = blocks), the fragment folder, then the config,
    written last so that a folder with a config is one a run can continue."""
    import zarr

    from dineuro.io._omezarr import ome_metadata
    from dineuro.predict._storage import encoding_note

    partial.mkdir(parents=True)
    group = zarr.open_group(str(partial / MAP), mode="w")
    group.attrs.update({"dineuro": {
        "content": "probability of neurite (class 1)", "encoding": encoding_note(prob_dtype),
        "source": str(volume), "model": predictor.source,
        "normalization": predictor.normalization.to_dict(), "limits": config["limits"],
        "crop": list(predictor.crop), **{k: config["settings"][k] for k in (
            "overlap", "flips", "precision", "skip_empty", "background_view")}},
        **ome_metadata(spacing, volume.name)})
    group.create_array("0", shape=plan.shape, dtype=prob_dtype, fill_value=0,
                       chunks=plan.chunks)
    (partial / FRAGMENTS).mkdir()
    with atomic_file(partial / CONFIG) as tmp:
        tmp.write_text(json.dumps(config, indent=2))


def _new_mask(partial: Path, plan: BlockPlan, spacing, threshold: float, mask: str, name: str):
    """The mask's zarr group in the work folder, level 0 empty (chunks = blocks); written
    anew by a run that continues one stopped while writing it."""
    import zarr

    from dineuro.io._omezarr import ome_metadata

    group = zarr.open_group(str(partial / MASK), mode="w")
    group.attrs.update({"dineuro": {
        "content": "mask: probability of neurite above the threshold"
                   + (", the pieces the trace runs through" if mask == "traced" else ""),
        "threshold": threshold, "mask": mask}, **ome_metadata(spacing, name)})
    group.create_array("0", shape=plan.shape, dtype="uint8", fill_value=0,
                       chunks=plan.chunks)
    return group


def _run_blocks(client, spec: RunSpec, todo, total: int, progress) -> dict[str, str]:
    """Run the blocks on the cluster as they come free; returns the failures, by block."""
    from distributed import as_completed

    done = total - len(todo)
    if progress is not None:
        progress(done, total)
    futures = client.map(run_block, [spec] * len(todo), todo, pure=False,
                         key=[f"dineuro-block-{b.name}-{os.getpid()}-{time.time_ns()}"
                              for b in todo])
    name_of = {future.key: block.name for future, block in zip(futures, todo, strict=True)}
    failed = {}
    try:
        for future in as_completed(futures):
            if future.status != "finished":
                exc = future.exception()
                failed[name_of[future.key]] = f"{type(exc).__name__}: {exc}"
            future.release()
            done += 1
            if progress is not None:
                progress(done, total)
    except BaseException:  # Ctrl-C, say: stop the cluster's work; finished blocks are kept
        client.cancel(futures)
        raise
    return failed


def _header(spacing, units: str, settings: dict) -> list[str]:
    where = ("voxels (x, y, z), radii in x voxels" if units == "voxel"
             else "micrometres (x, y, z), radii in micrometres")
    trace = settings["trace"]
    return [f"spacing (z, y, x): {tuple(float(s) for s in spacing)}; coordinates in {where}",
            f"traced by dineuro block by block (blocks {tuple(settings['block'])}, halo "
            f"{tuple(settings['halo'])}) from {settings['volume']}: "
            + ", ".join(f"{k} {v:g}" for k, v in trace.items() if not isinstance(v, (bool, str)))
            + f", keep_fragments {trace['keep_fragments']}"
            + f", link_beads {trace['link_beads']}"]


def _summary(settings, parts, graph, tree, spacing, levels, seconds, *, blocks_now,
             memory_limits) -> dict:
    """The facts of a finished run, for ``NAME_summary.json``."""
    from dineuro.io._readers import has_unit

    units = settings["trace"]["units"]
    per_neuron = [cable_length(n, spacing, units) for n in neurons(tree)]
    unit = "micrometre" if units == "um" else "x voxel"
    voxels = int(np.prod(settings["shape"]))
    return {
        "complete": True,
        "neurons": len(per_neuron),
        "nodes": len(tree),
        "cable_length": {"total": round(sum(per_neuron), 2), "per_neuron": [
            round(c, 2) for c in per_neuron], "unit": unit},
        "files": [NEURON_NAME.format(k) for k in range(1, len(per_neuron) + 1)],
        "blocks": {"total": len(parts), "run_now": blocks_now, "failed": 0},
        "windows": {"in_grid": int(sum(p.meta.get("windows", 0) for p in parts)),
                    "computed": int(sum(p.meta.get("computed", 0) for p in parts))},
        "seams": {"joined_exactly": graph.joined, "snapped": graph.snapped,
                  "dropped": graph.unmatched},
        "map_levels": levels,
        "voxels": voxels,
        "spacing_has_unit": has_unit(spacing),
        "workers": len(memory_limits),
        "worker_memory_limits": memory_limits,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "mvoxel_per_second": round(voxels / 1e6 / max(seconds["total"], 1e-9), 3),
        "settings": settings,
        "block_seconds": {p.meta["block"]: p.meta["seconds"] for p in parts if p.meta},
        "block_windows": {p.meta["block"]: [p.meta["computed"], p.meta["windows"]]
                          for p in parts if p.meta},
    }
