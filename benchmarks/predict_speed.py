"""Speed and peak memory of ``sliding_window_predict`` as ratios to plain MONAI, on one network.

Modes, all with the same network, crop, overlap (default 0.5), Gaussian blending and batch size:

- ``monai`` (the reference): ``monai.inferers.sliding_window_inference`` on the whole normalised
  stack, then softmax and class 1, as a plain MONAI user would write it;
- ``dineuro``: :func:`dineuro.predict.sliding_window_predict` (its own window loop over MONAI's
  window placement, class-1 probabilities blended instead of 2-channel logits), on the exact
  path (float32, every window) so that the comparison is of the implementation; the fast paths
  (bf16, skipping windows without signal) are measured by ``benchmarks/run_speed.py``;
- ``dineuro-blocks`` (only with ``--block``): :func:`dineuro.predict.predict_blocks` from a raw
  uint16 zarr stack on disk to a float32 zarr array, including the whole-stack percentiles.

Speed: voxels of the stack per second of wall time. Modes run in one process in interleaved
rounds (the order rotating each round) after a warm-up forward pass, so that a load change on a
shared machine hits every mode alike; each ratio is the median over rounds of the mode's time
over MONAI's time in the same round.

Memory: each mode runs once more in a fresh subprocess, and we report the increase of the
process's peak resident set size (``ru_maxrss``) over its value after the network, the input
and a warm-up forward pass existed. The in-memory modes hold the normalised float32 stack in the
baseline; ``dineuro-blocks`` reads it from disk, so its figure is what a stack that does not fit
in memory costs. It counts everything the process touched (buffers, allocator caches), not only
live tensors.

The network is ``dineuro.models.build_model(size, transfer="scratch")`` (speed does not depend
on weights) or, where that does not exist, MONAI's ``UNETR`` of the same width. Prints a
Markdown table.

Usage::

    python benchmarks/predict_speed.py --shape 64x256x256 --model tiny --reps 3
    python benchmarks/predict_speed.py --model small --block 64x256x256   # 128x512x512 stack
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dineuro.data.normalize import NormalizationConfig
from dineuro.predict import DEFAULT_BATCH_SIZE, predict_blocks, sliding_window_predict

REFERENCE = "monai"
KIB = 1024
#: MONAI UNETR stand-ins for the presets when dineuro.models.build_model does not exist.
FALLBACK_UNETR = {"tiny": dict(crop=32, feature_size=8, hidden_size=48, num_heads=3),
                  "small": dict(crop=64, feature_size=16, hidden_size=384, num_heads=6)}
RAW_MAX = 4095  # a 12-bit camera in a uint16 stack
#: The exact prediction path, as MONAI computes it: float32, every window.
EXACT = {"precision": "fp32", "skip_empty": False}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB


def parse_triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.lower().split("x"))
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected ZxYxX positive ints, got {text!r}")
    return values


def make_model(size: str) -> tuple[torch.nn.Module, tuple[int, int, int], str]:
    """The network, its crop and a one-line description."""
    torch.manual_seed(0)
    try:
        from dineuro.models.build import build_model
    except ImportError:
        from monai.networks.nets import UNETR

        spec = FALLBACK_UNETR[size]
        crop = (spec["crop"],) * 3
        model = UNETR(in_channels=1, out_channels=2, img_size=crop,
                      feature_size=spec["feature_size"], hidden_size=spec["hidden_size"],
                      mlp_dim=4 * spec["hidden_size"], num_heads=spec["num_heads"])
        return model.eval(), crop, f"MONAI UNETR hidden {spec['hidden_size']}"
    model = build_model(size, transfer="scratch").eval()
    config = model.config
    return model, tuple(config["crop"]), (f"dineuro {size}: dim {config['embed_dim']}, depth "
                                          f"{config['depth']}, patch {config['patch'][0]}")


def make_volume(shape) -> np.ndarray:
    """A normalised stack; the content does not change the speed."""
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def write_raw_zarr(path: Path, shape) -> None:
    """A raw uint16 stack on disk, written slab by slab (never whole in memory)."""
    import zarr

    rng = np.random.default_rng(0)
    raw = zarr.create_array(store=str(path), shape=shape, dtype="uint16",
                            chunks=(min(32, shape[0]), min(256, shape[1]), min(256, shape[2])))
    for z in range(0, shape[0], raw.chunks[0]):
        slab = (shape[0] - z if z + raw.chunks[0] > shape[0] else raw.chunks[0],) + shape[1:]
        raw[z:z + slab[0]] = rng.integers(0, RAW_MAX, size=slab, dtype=np.uint16)


def runner(mode: str, model, crop, shape, args, workdir: Path):
    """A function that runs ``mode`` once; inputs are built before it is returned."""
    if mode == "dineuro-blocks":
        src = workdir / "raw.zarr"
        if not src.exists():
            write_raw_zarr(src, shape)
        counter = iter(range(10**9))

        def run():
            dst = workdir / f"prob{next(counter)}.zarr"
            predict_blocks(model, src, dst, crop, NormalizationConfig(), block=args.block,
                           overlap=args.overlap, batch_size=args.batch_size, **EXACT)
        return run

    volume = make_volume(shape)
    if mode == "dineuro":
        return lambda: sliding_window_predict(model, volume, crop, overlap=args.overlap,
                                              batch_size=args.batch_size, **EXACT)

    from monai.inferers import sliding_window_inference

    def run():
        with torch.inference_mode():
            logits = sliding_window_inference(torch.from_numpy(volume)[None, None], crop,
                                              args.batch_size, model, overlap=args.overlap,
                                              mode="gaussian")
            return torch.softmax(logits, dim=1)[0, 1].numpy()
    return run


def warm_up(model, crop) -> None:
    with torch.inference_mode():
        for _ in range(2):
            model(torch.rand(1, 1, *crop))


def measure_memory(mode: str, args) -> float:
    """Peak-RSS increase (MiB) of one run of ``mode``; call it in a fresh process."""
    model, crop, _ = make_model(args.model)
    with tempfile.TemporaryDirectory() as workdir:
        run = runner(mode, model, crop, args.shape, args, Path(workdir))
        warm_up(model, crop)
        baseline = peak_rss_mib()
        run()
        return peak_rss_mib() - baseline


def measure_memory_in_subprocess(mode: str, argv: list[str]) -> float:
    out = subprocess.run([sys.executable, __file__, *argv, "--memory-worker", mode],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(modes: list[str], args) -> dict[str, list[float]]:
    """Wall times (s) per mode, one per round, interleaved."""
    model, crop, _ = make_model(args.model)
    warm_up(model, crop)
    with tempfile.TemporaryDirectory() as workdir:
        runs = {mode: runner(mode, model, crop, args.shape, args, Path(workdir))
                for mode in modes}
        times = {mode: [] for mode in modes}
        for round_ in range(args.reps):
            shift = round_ % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                start = time.perf_counter()
                runs[mode]()
                times[mode].append(time.perf_counter() - start)
    return times


def table(times, memory, voxels: int) -> str:
    median, ref = statistics.median, times[REFERENCE]
    lines = ["| mode | time (s) | Mvoxels/s | time x MONAI | peak RSS increase (MiB) | "
             "x MONAI |", "|---|---:|---:|---:|---:|---:|"]
    for mode, t in times.items():
        ratio = median(a / b for a, b in zip(t, ref, strict=True))
        lines.append(f"| {mode} | {median(t):.1f} | {voxels / median(t) / 1e6:.3f} | "
                     f"{ratio:.2f} | {memory[mode]:.0f} | "
                     f"{memory[mode] / memory[REFERENCE]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=parse_triple, default=(128, 512, 512),
                        help="stack size ZxYxX (default 128x512x512)")
    parser.add_argument("--model", choices=("tiny", "small"), default="small")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--block", type=parse_triple,
                        help="also time predict_blocks with this block ZxYxX")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(measure_memory(args.memory_worker, args)))
        return
    modes = [REFERENCE, "dineuro"] + (["dineuro-blocks"] if args.block else [])
    memory = {mode: measure_memory_in_subprocess(mode, argv) for mode in modes}
    times = measure_times(modes, args)
    _, crop, description = make_model(args.model)
    steps = [max(int(c * (1 - args.overlap)), 1) for c in crop]
    windows = math.prod(math.ceil(max(n - c, 0) / s) + 1
                        for n, c, s in zip(args.shape, crop, steps, strict=True))
    print(f"stack {'x'.join(map(str, args.shape))}, {description}, crop {crop}, overlap "
          f"{args.overlap}, batch {args.batch_size}, {windows} windows"
          f"{f', block {args.block}' if args.block else ''}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"median of {args.reps} interleaved rounds\n")
    print(table(times, memory, math.prod(args.shape)))


if __name__ == "__main__":
    main()
