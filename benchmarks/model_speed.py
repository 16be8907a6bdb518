"""Speed and memory of the student network per transfer strategy, as ratios to MONAI's UNETR.

For every strategy (scratch, average, center, tubular, deformable) at a preset (default
``small``: ViT-S/16, 64^3 crop, B = 1) and for MONAI's stock ``UNETR`` with the same
dim/depth/heads/feature size (qkv bias on, as DINO), this measures on CPU:

- forward: wall time of an inference forward pass (eval mode, ``torch.no_grad``);
- train step: wall time of forward + cross-entropy + backward in train mode (no optimiser step,
  which is the same for all and depends on the optimiser);
- peak memory: the increase of the process's peak resident set size over its resident size once
  the model and input are built (Linux ``VmHWM`` - ``VmRSS`` from ``/proc/self/status``, the
  peak reset through ``/proc/self/clear_refs`` so that building the model and teacher does not
  count), during two forward passes and then during two train steps. Each configuration runs
  in a fresh subprocess with glibc's mmap threshold pinned to 64 KiB, so freed tensors leave
  the resident set at once and the figure tracks the peak of live memory (activations,
  gradients, workspace, allocator overhead) rather than the allocator's history; the train
  figure includes the forward passes before it. Linux only.

Timing runs all models in one process in interleaved rounds (one warm-up round, then ``--reps``
rounds, the order rotating each round), so that a load change on a shared machine hits every
model alike; each ratio is the median over rounds of time / MONAI's time in the same round.
Transfers use a random teacher of the preset's size (speed does not depend on the values).
Prints a Markdown table.

Usage::

    python benchmarks/model_speed.py --size small --reps 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dineuro.models.build import build_model
from dineuro.models.presets import get_preset
from dineuro.models.transfer import TRANSFERS
from dineuro.models.vit2d import VisionTransformer2d

REFERENCE = "monai-unetr"
#: MONAI's UNETR fixes these; only presets that match can be compared with it.
MONAI_DEPTH, MONAI_PATCH = 12, (16, 16, 16)
KIB = 1024
#: glibc mmap threshold (bytes) of the memory workers: larger buffers are returned when freed.
MMAP_THRESHOLD = 64 * KIB


def memory_mib() -> dict[str, float]:
    """Resident set size now (``VmRSS``) and its peak (``VmHWM``) of this process, in MiB."""
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE).group(1)) / KIB
            for key in ("VmRSS", "VmHWM")}


def reset_peak() -> None:
    """Reset ``VmHWM`` to the current resident size (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def make_model(config: str, size: str) -> torch.nn.Module:
    preset = get_preset(size)
    if config == REFERENCE:
        from monai.networks.nets import UNETR

        return UNETR(in_channels=1, out_channels=2, img_size=preset.crop,
                     feature_size=preset.feature_size, hidden_size=preset.embed_dim,
                     mlp_dim=int(preset.embed_dim * preset.mlp_ratio),
                     num_heads=preset.num_heads, qkv_bias=True)
    teacher = None
    if TRANSFERS[config].needs_teacher:
        teacher = VisionTransformer2d(embed_dim=preset.embed_dim, depth=preset.depth,
                                      num_heads=preset.num_heads,
                                      mlp_ratio=preset.mlp_ratio).state_dict()
    return build_model(size, transfer=config, teacher=teacher)


def _step_functions(model: torch.nn.Module, crop) -> tuple:
    x = torch.rand(1, 1, *crop)
    target = torch.randint(0, 2, (1, *crop))

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        model.zero_grad(set_to_none=True)

    return forward, train_step


def measure_memory(config: str, size: str) -> dict[str, float]:
    """Peak-RSS increases (MiB) of one configuration; run it in a fresh process."""
    torch.manual_seed(0)
    model = make_model(config, size)
    forward, train_step = _step_functions(model, get_preset(size).crop)
    gc.collect()
    reset_peak()
    baseline = memory_mib()["VmRSS"]
    for _ in range(2):
        forward()
    forward_peak = memory_mib()["VmHWM"] - baseline
    for _ in range(2):
        train_step()
    return {"forward_peak_mib": forward_peak, "train_peak_mib": memory_mib()["VmHWM"] - baseline}


def measure_memory_in_subprocess(config: str, size: str) -> dict[str, float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    out = subprocess.run([sys.executable, __file__, "--memory-worker", config, "--size", size],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(configs: list[str], size: str, reps: int) -> dict[str, dict[str, list[float]]]:
    """Per config: forward and train-step times (s) and their ratios to the reference, per round."""
    torch.manual_seed(0)
    steps = {config: _step_functions(make_model(config, size), get_preset(size).crop)
             for config in configs}
    times = {config: {"forward": [], "train": []} for config in configs}
    for round_ in range(reps + 1):  # round 0 is the warm-up
        shift = round_ % len(configs)
        for config in configs[shift:] + configs[:shift]:
            for kind, step in zip(("forward", "train"), steps[config], strict=True):
                start = time.perf_counter()
                step()
                if round_:
                    times[config][kind].append(time.perf_counter() - start)
    ref = times[REFERENCE]
    for config in configs:
        for kind in ("forward", "train"):
            times[config][f"{kind}_ratio"] = [
                t / r for t, r in zip(times[config][kind], ref[kind], strict=True)]
    return times


def table(times, memory, params) -> str:
    median = statistics.median
    ref = memory[REFERENCE]
    lines = ["| model | params (M) | forward (s) | x MONAI | train step (s) | x MONAI | "
             "peak mem fwd (MiB) | x MONAI | peak mem train (MiB) | x MONAI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in times.items():
        m = memory[name]
        lines.append(
            f"| {name} | {params[name] / 1e6:.2f} | {median(t['forward']):.3f} | "
            f"{median(t['forward_ratio']):.2f} | {median(t['train']):.3f} | "
            f"{median(t['train_ratio']):.2f} | {m['forward_peak_mib']:.0f} | "
            f"{m['forward_peak_mib'] / ref['forward_peak_mib']:.2f} | "
            f"{m['train_peak_mib']:.0f} | {m['train_peak_mib'] / ref['train_peak_mib']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="small", help="preset: small (default) or base")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(measure_memory(args.memory_worker, args.size)))
        return
    preset = get_preset(args.size)
    if preset.depth != MONAI_DEPTH or preset.patch != MONAI_PATCH:
        parser.error(f"MONAI's UNETR has depth {MONAI_DEPTH} and patch 16; preset {args.size!r} "
                     "cannot be compared with it.")
    configs = [REFERENCE, *TRANSFERS]
    memory = {config: measure_memory_in_subprocess(config, args.size) for config in configs}
    params = {config: sum(p.numel() for p in make_model(config, args.size).parameters())
              for config in configs}
    times = measure_times(configs, args.size, args.reps)
    print(f"preset {args.size}: dim {preset.embed_dim}, depth {preset.depth}, heads "
          f"{preset.num_heads}, crop {preset.crop}, feature_size {preset.feature_size}, B = 1; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; median of {args.reps} interleaved "
          "rounds\n")
    print(table(times, memory, params))
    deformable = [d / c for d, c in zip(times["deformable"]["train"], times["center"]["train"],
                                        strict=True)]
    tubular = [t / c for t, c in zip(times["tubular"]["train"], times["center"]["train"],
                                     strict=True)]
    print(f"\ntrain step relative to center (median over rounds): tubular "
          f"{statistics.median(tubular):.2f}, deformable {statistics.median(deformable):.2f}")


if __name__ == "__main__":
    main()
