"""Whole-brain scale: ``run_volume`` on a volume larger than a worker's memory, 1 vs 2 workers.

:func:`dineuro.scale.run_volume` exists for volumes that no single process can hold, so this
measures it on one: a synthetic uint8 OME-Zarr of ``--size-gb`` (default 2 GB), larger than the
``--memory-limit`` of each dask worker, predicted and traced with the packaged default model
and default options, first on 1 local worker and then on 2, each into a fresh folder. Both runs
happen in the same invocation, so the speed-up is a ratio measured on the same machine under
the same load; absolute seconds hold for this machine only.

The volume is never held in memory. A few dozen neuron stacks come from dineuro's own
generator (``dineuro synth --preset realistic``: :func:`~dineuro.data.synth.synthesize_stack`,
seeded); each is cut down to a "sprite": its voxels within a few voxels of its labelled
neurites, rescaled to a seeded contrast over the volume's background, zero elsewhere (pasting
whole stacks would paste their own backgrounds as visible boxes). The sprites are placed at
seeded offsets (and flips) so that about ``--fill`` of the volume lies in a neuron's box and the
rest is background, as in a sparsely labelled brain. Then the OME-Zarr (NGFF 0.5, array "0",
chunks :data:`CHUNKS`) is written chunk by chunk by ``dask.array.map_blocks`` +
``store``: each chunk is a low background with Gaussian noise (seeded by the chunk's index)
with the sprites that cross it pasted by maximum, so every chunk can be made alone and in any
order. The volume and the sprites are cached under ``--out`` and reused when the parameters
match (building 2 GB takes minutes).

The background's noise decides how much work there is: ``skip_empty``'s test (a window's
largest 3x3x3 mean over the volume's median + 3 noise units, see
:mod:`dineuro.predict._signal`) finds "signal" in every window of Gaussian noise, so with the
default ``--noise`` every window is computed, neurons or not: the dense case. ``--noise 0``
gives a flat background whose empty windows are skipped: the sparse case.

Per run it prints wall seconds of ``run_volume`` (starting the cluster apart), throughput in
Mvoxel/s, the speed-up over 1 worker, the peak resident memory of each worker process
(``ru_maxrss``, asked of the workers before the cluster closes; a worker that the nanny
restarted for exceeding its limit shows as a restart), blocks, windows computed out of those in
the grid, neurons found and total cable. Beside speed, accuracy: the two runs must agree (the
same number of neurons and cable, and level 0 of the probability maps equal within 1/255,
compared over the whole volume, lazily with dask), since how many workers ran a block must not
change what it computes.

Then an estimate for a 1 TB volume (1e12 uint8 voxels) on N CPU workers, from the measured
worker-seconds of the blocks per Mvoxel (the summary's ``block_seconds``) and the parts that run
once on the client (statistics, stitching; see ``_summary`` in ``dineuro/scale/run.py``). How
it is made, and what it assumes, is printed with it: the fraction of windows computed matters
most, since a skipped window costs nearly nothing. GPU workers get only a formula with an
assumed, labelled speed-up: nothing here measures a GPU.

Writes the Markdown to stdout and ``OUT/scale.md``, the numbers to ``OUT/scale.json``; progress
lines go to stderr.

The full run is long: on 2 CPU cores about 7 worker-seconds per Mvoxel were measured with
every window computed, so 2 GB takes some 4 hours on 1 worker and 2-3 more on 2.

Usage::

    python benchmarks/scale.py                            # 2 GB in runs/scale: hours
    python benchmarks/scale.py --size-gb 4 --memory-limit 2GB
    python benchmarks/scale.py --noise 0                  # empty windows skipped
    python benchmarks/scale.py --smoke --out /tmp/scale   # 10 MB end to end, 2-3 minutes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from dask.callbacks import Callback
from run_speed import cpu_name

#: Chunks (z, y, x) of the synthetic volume: the unit the builder writes and workers read.
CHUNKS = (64, 256, 256)
#: Voxel size (z, y, x) of the volume in micrometres. The generated stacks each draw their own
#: z anisotropy; the volume has one spacing, as a real acquisition does.
SPACING = (1.0, 0.5, 0.5)
#: x (and y) extent over z extent of the volume: a thick slab of a brain, as light-sheet and
#: serial-section volumes are wider than deep.
ASPECT = 10
#: Background grey level, uint8, and the default of its noise (standard deviation, grey levels).
BACKGROUND, NOISE = 12.0, 2.0
#: Sprite contrast: the median labelled voxel this many grey levels over the background.
CONTRAST = (40.0, 120.0)
#: Voxels kept around the labelled neurites of a stack (the blur of the microscope).
SPRITE_MARGIN = 2
#: A neuron stack as generated (the realistic preset's shape): the unit of ``--fill``.
STACK_SHAPE = (64, 256, 256)
#: Tries to place a sprite where it overlaps none placed before, before accepting overlap.
PLACEMENT_TRIES = 50
#: Seed streams (``SeedSequence`` spawn keys) so that no two uses share random numbers.
CHUNK_STREAM, PLACEMENT_STREAM, CONTRAST_STREAM = 1, 2, 3
#: Workers of the estimate, and the volume it is for (voxels).
ESTIMATE_WORKERS = (16, 64, 256)
TERAVOXELS = 1e12
#: The smoke setting: a volume small enough to run end to end in a couple of minutes.
SMOKE = {"size_gb": 0.01, "stacks": 2}
#: Attribute of the volume's group recording how it was built (the cache key).
BUILT = "dineuro_scale_benchmark"
MIB = 1024 * 1024
STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr with the seconds since the script started."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


# --- the synthetic volume -------------------------------------------------------------------


def volume_shape(size_gb: float) -> tuple[int, int, int]:
    """A (z, y, x) shape of about ``size_gb`` * 1e9 voxels, :data:`ASPECT` times wider than
    deep, in whole chunks along z and multiples of 64 along y and x.

    Examples
    --------
    >>> volume_shape(2), volume_shape(0.01)
    ((256, 2816, 2816), (64, 384, 384))
    """
    voxels = size_gb * 1e9
    z = max(CHUNKS[0], CHUNKS[0] * round((ASPECT * voxels) ** (1 / 3) / ASPECT / CHUNKS[0]))
    side = max(64, 64 * round(math.sqrt(voxels / z) / 64))
    return z, side, side


def short_hash(value) -> str:
    """A short, stable digest of a JSON-able value: names cache folders by their parameters."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def make_sprite(image: np.ndarray, label: np.ndarray, contrast: float) -> np.ndarray:
    """A stack's neurites as uint8 voxels to paste by maximum: the voxels within
    :data:`SPRITE_MARGIN` of the label, with the stack's median (its background) at
    :data:`BACKGROUND` and its median labelled voxel ``contrast`` above; 0 elsewhere, and cut
    to the box of what is kept.

    Each generated stack has its own camera and brightness (uint8 or uint16, dim or bright);
    rescaling puts them all on the volume's one grey scale, and keeping only what lies near
    the neurites leaves the volume's own background between them rather than each stack's.
    """
    from scipy import ndimage

    voxels = image.astype(np.float32)
    neurite = label > 0
    background = float(np.median(voxels))
    signal = float(np.median(voxels[neurite]))
    gain = contrast / max(signal - background, 1e-6)
    sprite = np.clip(BACKGROUND + (voxels - background) * gain, 0, 255)
    near = ndimage.binary_dilation(neurite, iterations=SPRITE_MARGIN)
    sprite[~near] = 0
    box = tuple(slice(int(k[0]), int(k[-1]) + 1) for k in (
        np.flatnonzero(near.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))))
    return np.rint(sprite[box]).astype(np.uint8)


def make_sprites(count: int, seed: int, folder: Path) -> list[tuple[int, int, int]]:
    """Sprites of stacks 0 .. ``count``-1 of the realistic preset at ``seed``, as
    ``folder/NNN.npy`` (kept when there); returns their shapes.

    Saved as .npy so that chunk tasks read them memory-mapped, only the part they need.
    """
    from dineuro.data.synth import preset_config, synthesize_stack

    folder.mkdir(parents=True, exist_ok=True)
    config = preset_config("realistic", seed=seed, n_stacks=count)
    shapes = []
    for index in range(count):
        path = folder / f"{index:03d}.npy"
        if not path.exists():
            log(f"neuron stack {index + 1}/{count}: synthesising (realistic preset, seed {seed})")
            stack = synthesize_stack(config, index)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(
                CONTRAST_STREAM, index)))
            sprite = make_sprite(stack.image, stack.label, float(rng.uniform(*CONTRAST)))
            partial = path.with_suffix(".partial.npy")
            np.save(partial, sprite)
            os.replace(partial, path)
        shapes.append(tuple(int(n) for n in np.load(path, mmap_mode="r").shape))
    return shapes


def place_sprites(shape, sprite_shapes, fill: float, seed: int) -> list[dict]:
    """Where each pasted sprite goes: enough placements for about ``fill`` of the volume to lie
    in a neuron's stack (every sprite at least once), each at a seeded offset, flipped along a
    seeded choice of axes, and away from earlier ones when it can be.

    Returns
    -------
    list of dict
        ``sprite`` (index), ``begin`` and ``end`` (the box in the volume, z, y, x) and ``flip``
        (per axis).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PLACEMENT_STREAM,)))
    count = max(len(sprite_shapes), round(fill * math.prod(shape) / math.prod(STACK_SHAPE)))
    placed = []
    for k in range(count):
        which = k % len(sprite_shapes)
        size = [min(s, n) for s, n in zip(sprite_shapes[which], shape, strict=True)]
        for _ in range(PLACEMENT_TRIES):
            begin = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, shape, strict=True)]
            end = [b + s for b, s in zip(begin, size, strict=True)]
            if not any(boxes_meet(begin, end, p["begin"], p["end"]) for p in placed):
                break
        placed.append({"sprite": which, "begin": begin, "end": end,
                       "flip": [bool(f) for f in rng.integers(0, 2, 3)]})
    return placed


def boxes_meet(begin_a, end_a, begin_b, end_b) -> bool:
    """Whether the boxes [begin_a, end_a) and [begin_b, end_b) share a voxel."""
    return all(b0 < e1 and b1 < e0 for b0, e0, b1, e1 in zip(begin_a, end_a, begin_b, end_b,
                                                               strict=True))


def fill_chunk(block_info=None, *, placements, sprites: str, seed: int,
               noise: float) -> np.ndarray:
    """One chunk of the volume: background with noise seeded by the chunk's index, and every
    placed sprite that crosses it pasted by maximum (``dask.array.map_blocks`` calls it with
    the chunk's location in ``block_info``).

    A chunk depends on nothing but its index and the placements, so chunks are made in any
    order, in parallel, and the same on a rebuild.
    """
    info = block_info[None]
    location = [tuple(int(v) for v in axis) for axis in info["array-location"]]
    begin = [b for b, _ in location]
    end = [e for _, e in location]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(
        CHUNK_STREAM, *info["chunk-location"])))
    chunk = np.full([e - b for b, e in location], BACKGROUND, np.float32)
    if noise:
        chunk += noise * rng.standard_normal(chunk.shape, dtype=np.float32)
    chunk = np.clip(np.rint(chunk), 0, 255).astype(np.uint8)
    for placement in placements:
        if not boxes_meet(begin, end, placement["begin"], placement["end"]):
            continue
        sprite = np.load(Path(sprites) / f"{placement['sprite']:03d}.npy", mmap_mode="r")
        sprite = sprite[tuple(slice(None, None, -1) if f else slice(None)
                              for f in placement["flip"])]
        lo = [max(b, p) for b, p in zip(begin, placement["begin"], strict=True)]
        hi = [min(e, p) for e, p in zip(end, placement["end"], strict=True)]
        into = tuple(slice(a - b, z - b) for a, z, b in zip(lo, hi, begin, strict=True))
        take = tuple(slice(a - p, z - p) for a, z, p in zip(lo, hi, placement["begin"],
                                                             strict=True))
        np.maximum(chunk[into], sprite[take], out=chunk[into])
    return chunk


class LoggedTasks(Callback):
    """A dask (local scheduler) callback that logs how many tasks are done every ``every``
    seconds, so that a build of minutes shows it is alive."""

    def __init__(self, what: str, every: float = 15.0):
        super().__init__()
        self.what, self.every = what, every
        self.total, self.last = 0, 0.0

    def _start_state(self, dsk, state):
        self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.last = time.perf_counter()

    def _posttask(self, key, result, dsk, state, worker_id):
        if time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            log(f"{self.what}: {len(state['finished'])}/{self.total} tasks")


def build_volume(args, out: Path) -> tuple[Path, dict, float | None]:
    """The synthetic volume for ``args`` under ``out``: built, or reused when one with the same
    parameters is there. Returns its path, its build record (parameters and placements) and
    the seconds building took (None when reused).

    Built into a hidden folder and renamed when complete, so a volume that exists is whole; a
    volume of the same name with other parameters (another ``--fill``) is rebuilt.
    """
    import dask
    import dask.array as da
    import zarr

    from dineuro.io._omezarr import ome_metadata

    shape = volume_shape(args.size_gb)
    params = {"shape": list(shape), "chunks": list(CHUNKS), "spacing": list(SPACING),
              "seed": args.seed, "stacks": args.stacks, "fill": args.fill,
              "background": BACKGROUND, "noise": args.noise, "contrast": list(CONTRAST),
              "sprite_margin": SPRITE_MARGIN, "preset": "realistic"}
    path = out / (f"brain_{math.prod(shape) // 10**6}M_seed{args.seed}_noise{args.noise:g}"
                  ".ome.zarr")
    if path.exists():
        try:
            record = zarr.open_group(str(path), mode="r").attrs.asdict().get(BUILT)
        except Exception:  # not a zarr group we can read: not ours to replace
            record = None
        if record is None:
            raise SystemExit(f"{path} exists and was not built by this benchmark; move it away.")
        if record["params"] == params:
            log(f"reusing the volume {path} ({'x'.join(map(str, shape))})")
            return path, record, None
        log(f"{path} was built with other parameters; building it again")
        shutil.rmtree(path)
    started = time.perf_counter()
    sprite_key = {k: params[k] for k in ("seed", "contrast", "sprite_margin", "background")}
    sprites = out / f"sprites_{short_hash(sprite_key)}"
    sprite_shapes = make_sprites(args.stacks, args.seed, sprites)
    placements = place_sprites(shape, sprite_shapes, args.fill, args.seed)
    log(f"writing {path.name}: {'x'.join(map(str, shape))} uint8 ({math.prod(shape) / 1e9:.2f} "
        f"GB), {len(placements)} neurons placed, chunks {CHUNKS}")
    building = path.with_name(f".{path.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    group = zarr.open_group(str(building), mode="w", zarr_format=3)
    array = group.create_array("0", shape=shape, dtype="uint8", chunks=CHUNKS, fill_value=0)
    volume = da.map_blocks(fill_chunk, dtype=np.uint8, chunks=da.core.normalize_chunks(
        CHUNKS, shape), meta=np.empty((0, 0, 0), np.uint8), placements=placements,
        sprites=str(sprites), seed=args.seed, noise=args.noise)
    with LoggedTasks("writing the volume"), dask.config.set(scheduler="threads"):
        da.store(volume, array, lock=False)  # chunk for chunk: no rechunking, no lock
    record = {"params": params, "placements": placements, "sprites": str(sprites)}
    group.attrs.update({**ome_metadata(SPACING, path.name.split(".")[0]), BUILT: record})
    os.replace(building, path)
    seconds = time.perf_counter() - started
    log(f"built {path} in {seconds:.0f} s")
    return path, record, seconds


# --- the runs -------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB


def run_on_cluster(volume: Path, out_dir: Path, workers: int, memory_limit: str) -> dict:
    """``run_volume`` with defaults on a new local cluster of ``workers`` single-threaded
    processes of ``memory_limit`` each, into a fresh ``out_dir``; what the run did and cost.

    The cluster is the one ``run_volume(workers=...)`` starts (:func:`dask_client`), opened
    here so that its workers can be asked their peak memory before it closes.
    """
    from dineuro.scale import run_volume
    from dineuro.scale.cluster import dask_client

    shutil.rmtree(out_dir, ignore_errors=True)
    log(f"{workers} worker(s): starting a local cluster (memory limit {memory_limit} each)")
    started = time.perf_counter()
    with dask_client(workers=workers, memory_limit=memory_limit) as client:
        client.wait_for_workers(workers)
        first = set(client.scheduler_info()["workers"])
        cluster_seconds = time.perf_counter() - started
        run_started = last = time.perf_counter()

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.perf_counter()
            if done in (0, total) or now - last >= 15:
                last = now
                spent = now - run_started
                eta = f", about {spent / done * (total - done):.0f} s to go" if done else ""
                log(f"{workers} worker(s): blocks {done}/{total} after {spent:.0f} s{eta}")

        result = run_volume(volume, out_dir, client=client, progress=progress,
                            notify=lambda line: log(f"{workers} worker(s): {line}"))
        wall = time.perf_counter() - run_started
        peaks = client.run(peak_rss_mib)
        restarted = len(set(peaks) - first)
    facts = result.facts
    log(f"{workers} worker(s): {wall:.0f} s, {facts['neurons']} neurons, peak worker memory "
        f"{max(peaks.values()):.0f} MiB")
    return {"workers": workers, "memory_limit": memory_limit, "wall_seconds": wall,
            "cluster_seconds": cluster_seconds,
            "mvoxel_per_second": facts["voxels"] / 1e6 / wall,
            "peak_rss_mib": sorted(peaks.values()), "workers_restarted": restarted,
            "prob": str(result.prob), "summary": facts}


def compare_maps(a: Path, b: Path) -> dict:
    """Level 0 of two probability maps compared over the whole volume, chunk by chunk: the
    largest absolute difference (in probability) and how many voxels differ at all."""
    import dask
    import dask.array as da

    first, second = da.from_zarr(str(a / "0")), da.from_zarr(str(b / "0"))
    scale = 255.0 if first.dtype == np.uint8 else 1.0
    difference = abs(first.astype(np.float32) - second.astype(np.float32)) / scale
    with LoggedTasks("comparing the maps"), dask.config.set(scheduler="threads"):
        largest, differing = dask.compute(difference.max(), (difference > 0).sum())
    return {"max_abs_dp": float(largest), "voxels_differing": int(differing)}


def agreement(one: dict, two: dict) -> dict:
    """Whether two runs of the same volume found the same thing: neurons, cable, the map."""
    maps = compare_maps(Path(one["prob"]), Path(two["prob"]))
    cable = [run["summary"]["cable_length"]["total"] for run in (one, two)]
    neurons = [run["summary"]["neurons"] for run in (one, two)]
    return {**maps, "neurons": neurons, "cable": cable,
            "agree": neurons[0] == neurons[1] and maps["max_abs_dp"] <= 1 / 255 + 1e-6}


# --- the 1 TB estimate ----------------------------------------------------------------------


def statistics_mvoxels(voxels: int) -> float:
    """Mvoxels the client reads for a volume's statistics: all of a volume up to
    ``TILE_SAMPLING_VOXELS``, else a bounded sample of whole tiles whatever its size (the
    normalisation limits' and the signal level's), so a terabyte costs what 2 GB do."""
    from dineuro.data import normalize
    from dineuro.predict import _signal

    if voxels <= normalize.TILE_SAMPLING_VOXELS:
        return voxels / 1e6
    limits = normalize.LIMIT_TILES * math.prod(normalize.LIMIT_TILE)
    level = _signal.MAX_LEVEL_SAMPLES * _signal.STRIDE**2
    return (limits + level) / 1e6


def estimate(run: dict, workers: tuple[int, ...], price: float, gpu_speedup: float) -> dict:
    """Hours and CPU cost of a :data:`TERAVOXELS` volume on N workers, from one measured run.

    The model: the blocks' worker-seconds per Mvoxel measured here (sum of ``block_seconds``
    over the volume's Mvoxels, at the fraction of windows computed here), and the pyramid's
    (its seconds times the run's workers), both spread over N workers. The client's work runs
    once in one process and is not divided: stitching, scaled with the volume (the same
    density of neurons), and the statistics, at the measured seconds per Mvoxel they read here
    times what they read of a terabyte (:func:`statistics_mvoxels`: a bounded sample). Each
    worker is one core (``threads=1``); the client's core is counted.
    """
    facts = run["summary"]
    mvoxels = facts["voxels"] / 1e6
    seconds = facts["seconds"]
    block_seconds = list(facts["block_seconds"].values())
    per_mvoxel = {"blocks": sum(block_seconds) / mvoxels,
                  "pyramid": seconds["pyramid"] * facts["workers"] / mvoxels,
                  "stitch": seconds["stitch"] / mvoxels}
    statistics_seconds = (seconds["statistics"] / statistics_mvoxels(facts["voxels"])
                          * statistics_mvoxels(TERAVOXELS))
    scale = TERAVOXELS / 1e6
    parallel = scale * (per_mvoxel["blocks"] + per_mvoxel["pyramid"])  # worker-seconds
    serial = statistics_seconds + scale * per_mvoxel["stitch"]  # client seconds
    rows = []
    for n in workers:
        hours = (parallel / n + serial) / 3600
        core_hours = hours * (n + 1)
        rows.append({"workers": n, "parallel_hours": parallel / n / 3600,
                     "client_hours": serial / 3600, "hours": hours, "core_hours": core_hours,
                     "cost": core_hours * price})
    windows = facts["windows"]
    return {"per_mvoxel_seconds": per_mvoxel, "computed_fraction":
            windows["computed"] / max(windows["in_grid"], 1),
            "block_seconds": {"median": statistics.median(block_seconds),
                              "max": max(block_seconds), "count": len(block_seconds)},
            "statistics_seconds": seconds["statistics"],
            "statistics_terabyte_seconds": statistics_seconds,
            "parallel_worker_seconds": parallel, "client_seconds": serial, "rows": rows,
            "core_hour_price": price, "assumed_gpu_speedup": gpu_speedup}


# --- the report -----------------------------------------------------------------------------


def run_table(runs: list[dict]) -> list[str]:
    """The runs as Markdown rows, the speed-up relative to the first (1 worker)."""
    lines = ["| workers | wall s | Mvoxel/s | x 1 worker | peak RSS per worker (MiB) | "
             "restarts | blocks | windows computed / in grid | neurons | total cable | "
             "s: statistics / blocks / stitch / pyramid | cluster start s |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for run in runs:
        facts, seconds = run["summary"], run["summary"]["seconds"]
        cable = facts["cable_length"]
        lines.append(
            f"| {run['workers']} | {run['wall_seconds']:.1f} | {run['mvoxel_per_second']:.3f} | "
            f"{runs[0]['wall_seconds'] / run['wall_seconds']:.2f} | "
            f"{', '.join(f'{m:.0f}' for m in run['peak_rss_mib'])} | "
            f"{run['workers_restarted']} | {facts['blocks']['total']} | "
            f"{facts['windows']['computed']} / {facts['windows']['in_grid']} | "
            f"{facts['neurons']} | {cable['total']:.0f} {cable['unit']} | "
            f"{seconds['statistics']:.1f} / {seconds['blocks']:.1f} / {seconds['stitch']:.1f} / "
            f"{seconds['pyramid']:.1f} | {run['cluster_seconds']:.1f} |")
    return lines


def estimate_text(est: dict, measured_on: int) -> list[str]:
    """The 1 TB estimate as Markdown: how it is made, the CPU table, the GPU formula."""
    per = est["per_mvoxel_seconds"]
    fraction = est["computed_fraction"]
    blocks = est["block_seconds"]
    skipped = ("none was skipped" if fraction >= 1 else
               f"the other {1 - fraction:.1%} were skipped as background")
    lines = [
        "### Estimate for 1 TB (1e12 uint8 voxels) on N CPU workers", "",
        f"Made from the {measured_on}-worker run on this CPU ({cpu_name()}), one core per "
        f"worker. On the workers: the blocks took {per['blocks']:.3f} worker-seconds per "
        f"Mvoxel (the summary's `block_seconds` summed over the volume's Mvoxels; "
        f"{blocks['count']} blocks, median {blocks['median']:.1f} s, longest "
        f"{blocks['max']:.1f} s, the first block on each worker including loading the model) "
        f"and the pyramid {per['pyramid']:.4f} worker-s/Mvoxel, divided over N workers as if "
        f"they scaled perfectly (compare the speed-up measured above). On the client, once "
        f"and not divided: stitching ({per['stitch']:.4f} s/Mvoxel, scaled with the volume) "
        f"and the statistics ({est['statistics_seconds']:.1f} s here; for a terabyte "
        f"{est['statistics_terabyte_seconds']:.1f} s, since above 1 G voxels they read a "
        f"bounded sample of whole tiles, {statistics_mvoxels(TERAVOXELS):.0f} Mvoxels, whatever "
        f"the size). This serial part "
        f"is what more workers do not shorten.", "",
        f"**The fraction of windows computed decides most of the cost**: here {fraction:.1%} "
        f"of the windows in the grid were computed ({skipped}). A volume on which a fraction "
        f"f' is computed costs, for the blocks, between {per['blocks']:.3f} x "
        f"f'/{fraction:.2f} worker-s/Mvoxel (if all block time were network time) and "
        f"{per['blocks']:.3f} (if none were); the table is for the fraction measured here, that "
        f"is for a volume with this density of neurons and this background. Cost at a stated "
        f"price of {est['core_hour_price']:g} per CPU-core-hour (`--core-hour-price`, a "
        f"parameter, not a quoted price) for N + 1 cores (the client's too) over the whole "
        f"run.", "",
        "| N workers | hours on workers | hours on the client (serial) | hours in all | "
        "core-hours | cost |",
        "|---:|---:|---:|---:|---:|---:|"]
    for row in est["rows"]:
        lines.append(f"| {row['workers']} | {row['parallel_hours']:.2f} | "
                     f"{row['client_hours']:.2f} | {row['hours']:.2f} | "
                     f"{row['core_hours']:.0f} | {row['cost']:.2f} |")
    gpu = est["assumed_gpu_speedup"]
    parallel_h = est["parallel_worker_seconds"] / 3600
    serial_h = est["client_seconds"] / 3600
    example = ", ".join(f"N = {n}: {parallel_h / (gpu * n) + serial_h:.2f} h"
                        for n in (row["workers"] for row in est["rows"]))
    lines += [
        "", "GPU workers (nothing measured: no GPU here). With G the speed-up of one GPU "
        "worker over one CPU worker on whole blocks, T_gpu(N) ~ "
        f"{parallel_h:.0f} h / (G x N) + {serial_h:.2f} h (the client's part, unchanged), "
        "costing N x T_gpu x (price of a GPU worker-hour). G is an assumption: only the "
        "network runs on the GPU (reading, normalising and tracing a block stay on its CPU), "
        "so G for whole blocks is below the network's own speed-up. Only as an example, with "
        f"an ASSUMED G = {gpu:g} (`--assumed-gpu-speedup`): {example}."]
    return lines


def report(args, volume: Path, record: dict, build_seconds: float | None, runs: list[dict],
           agreed: dict, est: dict, load: tuple[float, float]) -> str:
    """The whole Markdown report."""
    import torch

    params = record["params"]
    shape = params["shape"]
    blocks_speedup = (runs[0]["summary"]["seconds"]["blocks"]
                      / runs[-1]["summary"]["seconds"]["blocks"])
    gb = math.prod(shape) / 1e9
    facts = runs[0]["summary"]
    settings = facts["settings"]
    built = ("reused from the cache" if build_seconds is None
             else f"built in {build_seconds:.0f} s")
    note = "" if gb * 1e9 > parse_bytes(args.memory_limit) else (
        " **The volume is smaller than the memory limit: a smoke run, not a scale test.**")
    lines = [
        f"## dineuro.scale.run_volume on a {gb:.2f} GB synthetic volume", "",
        f"Volume `{volume}`: {'x'.join(map(str, shape))} uint8 ({gb:.2f} GB), chunks "
        f"{tuple(params['chunks'])}, spacing {tuple(params['spacing'])} um, background "
        f"{params['background']:g} +- {params['noise']:g} grey levels, "
        f"{len(record['placements'])} neurons placed from {params['stacks']} realistic-preset "
        f"stacks (seed {params['seed']}, about {params['fill']:.0%} of the volume in a neuron's "
        f"box); {built}. Workers: local processes, 1 thread each, memory limit "
        f"{args.memory_limit} each, started as run_volume starts them.{note} Default model "
        f"and options: window "
        f"{tuple(settings['window'])}, overlap {settings['overlap']}, batch "
        f"{settings['batch_size']}, precision {settings['precision']}, skip empty "
        f"{settings['skip_empty']}, blocks {tuple(settings['block'])} with halo "
        f"{tuple(settings['halo'])}, map {settings['prob_dtype']}. {cpu_name()} "
        f"({os.cpu_count()} cores), torch {torch.__version__}; 1-minute load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after.", "",
        *run_table(runs), "",
        f"Speed-up of {runs[-1]['workers']} workers over {runs[0]['workers']}: "
        f"{runs[0]['wall_seconds'] / runs[-1]['wall_seconds']:.2f}x in wall time "
        f"({blocks_speedup:.2f}x in the blocks stage alone). Windows are counted per block (a "
        "window on a seam by each block that computes it); peak RSS is each worker process's "
        "`ru_maxrss`; restarts are workers the nanny replaced (killed for exceeding the limit, "
        "say).", "",
        f"Agreement of the two runs (accuracy beside speed): neurons {agreed['neurons'][0]} and "
        f"{agreed['neurons'][1]}, total cable {agreed['cable'][0]:g} and {agreed['cable'][1]:g}; "
        f"level 0 of the maps: largest |dp| {agreed['max_abs_dp']:.4f} (tolerance 1/255 = "
        f"{1 / 255:.4f}), {agreed['voxels_differing']} voxels differ; "
        f"**{'agree' if agreed['agree'] else 'DISAGREE'}**.", "",
        *estimate_text(est, runs[0]["workers"])]
    return "\n".join(lines) + "\n"


def parse_bytes(value: str) -> int:
    """A dask memory size ("1.5GB", "800MiB", bytes) in bytes."""
    from dask.utils import parse_bytes as parse

    return int(parse(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0,
                        help="volume size in GB of uint8 voxels (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/scale"),
                        help="work folder: the cached volume, the runs, scale.md and scale.json "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything drawn "
                                                            "(default %(default)s)")
    parser.add_argument("--stacks", type=int, default=24,
                        help="distinct neuron stacks generated (default %(default)s)")
    parser.add_argument("--fill", type=float, default=0.1,
                        help="share of the volume in a neuron's stack box; the rest is "
                             "background (default %(default)s)")
    parser.add_argument("--noise", type=float, default=NOISE,
                        help="standard deviation of the background's noise in grey levels "
                             "(default %(default)s; 0: a flat background, on which windows "
                             "without neurites are skipped)")
    parser.add_argument("--memory-limit", default="1.5GB",
                        help="memory limit of each dask worker (default %(default)s); the "
                             "volume should be larger")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to run, the first the reference (default 1 2)")
    parser.add_argument("--core-hour-price", type=float, default=0.05,
                        help="price of one CPU-core-hour for the estimate, a parameter "
                             "(default %(default)s)")
    parser.add_argument("--assumed-gpu-speedup", type=float, default=20.0,
                        help="ASSUMED speed-up of a GPU worker over a CPU worker, for the "
                             "example under the GPU formula (default %(default)s)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"a tiny run to check the script end to end: --size-gb "
                             f"{SMOKE['size_gb']} --stacks {SMOKE['stacks']}")
    args = parser.parse_args()
    if args.smoke:
        args.size_gb, args.stacks = SMOKE["size_gb"], SMOKE["stacks"]
    if len(args.workers) < 2:
        parser.error("--workers needs at least two counts to compare")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]

    volume, record, build_seconds = build_volume(args, out)
    if math.prod(record["params"]["shape"]) <= parse_bytes(args.memory_limit):
        log(f"note: the volume is smaller than the memory limit {args.memory_limit}: this "
            "checks the script, it does not test scale")
    runs = [run_on_cluster(volume, out / "runs" / f"{volume.name.split('.')[0]}_{n}workers",
                           n, args.memory_limit)
            for n in args.workers]
    log("comparing the runs")
    agreed = agreement(runs[0], runs[-1])
    est = estimate(runs[0], ESTIMATE_WORKERS, args.core_hour_price,
                   args.assumed_gpu_speedup)
    text = report(args, volume, record, build_seconds, runs, agreed, est,
                  (load_before, os.getloadavg()[0]))
    print(text)
    (out / "scale.md").write_text(text)
    (out / "scale.json").write_text(json.dumps({
        "volume": str(volume), "build": {**record, "seconds": build_seconds},
        "memory_limit": args.memory_limit, "runs": runs, "agreement": agreed,
        "estimate": est, "client_peak_rss_mib": peak_rss_mib(), "cpu": cpu_name(),
        "cores": os.cpu_count()}, indent=2))
    log(f"wrote {out / 'scale.md'} and {out / 'scale.json'}")


if __name__ == "__main__":
    main()
