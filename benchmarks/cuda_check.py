"""The CUDA paths on a GPU: prediction in bf16 and float32, training steps of the default model
and of the paper's setting, and ``train()`` end to end, each beside a reference of the same run.

CI and the developer machines have no GPU, so no test runs these paths; run this where one is:

    python benchmarks/cuda_check.py data/noisy --stacks 4 --steps 20

- **Prediction**: the packaged model on the first ``--stacks`` test stacks, on the GPU in bf16
  and in float32 and on the CPU in float32 (the reference), with the default options otherwise:
  seconds per stack after a warm-up stack (the ratio to the CPU's), the largest probability
  difference to the CPU's map, the Dice of the masks above 0.5 against the CPU's, and the
  traced map's length F1 against the gold (threshold 2), so that speed is read beside accuracy.
- **Training steps**: :func:`~dineuro.train.optimizer.train_step` on random crops, for the
  default model's network (configs/default_model.yaml) and the paper's (configs/train_paper.yaml:
  ViT-B/16-sized, 96^3 crops, deformable transfer from a random teacher of DINO ViT-B/16's shape,
  since weights cannot be downloaded everywhere), each in bf16 autocast and in float32 on the
  GPU, and the default model's on the CPU: median seconds per step after warm-up steps, peak GPU
  memory, and the ratio to the float32 GPU step.
- **train() end to end**: ``--steps`` steps of each config on the dataset's own stacks with its
  ``amp`` setting (validation and checkpoints included), on the GPU: seconds, last loss,
  validation Dice, so that the loop's device handling, autocast and checkpointing run.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from dineuro import Predictor
from dineuro.data.dataset import open_dataset
from dineuro.evaluate import compare_trees
from dineuro.evaluate.voxels import dice
from dineuro.models.build import build_model
from dineuro.models.vit2d import VisionTransformer2d
from dineuro.trace import trace
from dineuro.train import load_config, train
from dineuro.train.losses import make_loss
from dineuro.train.optimizer import make_optimizer, train_step

CONFIGS = {"default model": Path("configs/default_model.yaml"),
           "paper": Path("configs/train_paper.yaml")}
#: DINO ViT-B/16's shape, the paper's teacher.
PAPER_TEACHER = {"embed_dim": 768, "depth": 12, "num_heads": 12}
WARMUP_STEPS = 3
#: The networks also timed on the CPU: the paper's takes seconds a step there.
CPU_STEPS = ("default model",)


def prediction_table(dataset, names: list[str]) -> str:
    """Seconds, agreement with the CPU's float32 map, and traced F1, per device and precision."""
    setups = {"CPU, float32 (reference)": ("cpu", "fp32"), "GPU, float32": ("cuda", "fp32"),
              "GPU, bf16": ("cuda", "bf16")}
    images = {name: dataset.image(name) for name in names}
    maps, seconds = {}, {}
    for label, (device, precision) in setups.items():
        predictor = Predictor.from_checkpoint("default", device=device, precision=precision)
        predictor.predict(images[names[0]].array)  # warm-up: kernels, allocator, caches
        start = time.perf_counter()
        maps[label] = {name: predictor.predict(images[name].array) for name in names}
        seconds[label] = (time.perf_counter() - start) / len(names)
    reference = maps["CPU, float32 (reference)"]
    lines = ["| setup | s / stack | x CPU | max abs. difference | Dice vs CPU | traced F1 |",
             "|---|---:|---:|---:|---:|---:|"]
    for label in setups:
        difference = max(float(np.abs(maps[label][n] - reference[n]).max()) for n in names)
        agreement = statistics.mean(dice(maps[label][n] > 0.5, reference[n] > 0.5)
                                    for n in names)
        f1 = statistics.mean(traced_f1(maps[label][n], images[n], dataset.tree(n))
                             for n in names)
        lines.append(f"| {label} | {seconds[label]:.2f} | "
                     f"{seconds['CPU, float32 (reference)'] / seconds[label]:.1f} | "
                     f"{difference:.4f} | {agreement:.4f} | {f1:.3f} |")
    return "\n".join(lines)


def traced_f1(prob: np.ndarray, image, gold) -> float:
    """Length F1 of the map's trace against ``gold`` (0 for an empty trace)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = trace(prob, image.spacing, kind="probability", image=image.array)
    return compare_trees(tree, gold, 2.0).f1 if len(tree) else 0.0


def step_seconds(config, device: str, amp: bool, steps: int) -> tuple[float, float, float]:
    """Median seconds per :func:`train_step` on random crops of ``config``'s size, after
    warm-up steps; peak GPU memory (GiB; 0 on the CPU); the last loss."""
    torch.manual_seed(0)
    model = build_model(config.size, config.transfer, teacher=config.teacher, crop=config.crop,
                        **config.model_options).to(device)
    optimizer, scheduler = make_optimizer(model, config)
    loss_fn = make_loss(config.loss)
    shape = (config.batch_size, 1, *config.crop)
    images = torch.rand(shape, device=device)
    labels = (torch.rand(shape, device=device) > 0.95).float()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        loss = train_step(model, loss_fn, optimizer, scheduler, images, labels,
                          config.grad_clip, "cuda" if amp else None)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else 0.0
    return statistics.median(times[WARMUP_STEPS:]), peak, loss


def step_table(configs: dict, steps: int) -> str:
    """Seconds per training step per network, device and precision, as ratios to the GPU's
    float32 step of the same network."""
    lines = ["| network | setup | s / step | x GPU float32 | peak GPU memory (GiB) | loss |",
             "|---|---|---:|---:|---:|---:|"]
    for name, config in configs.items():
        setups = {"GPU, float32": ("cuda", False), "GPU, bf16": ("cuda", True)}
        if name in CPU_STEPS:
            setups["CPU, float32"] = ("cpu", False)
        results = {label: step_seconds(config, device, amp, steps)
                   for label, (device, amp) in setups.items()}
        reference = results["GPU, float32"][0]
        for label, (seconds, peak, loss) in results.items():
            lines.append(f"| {name} | {label} | {seconds:.4f} | {reference / seconds:.2f} | "
                         f"{peak:.2f} | {loss:.3f} |")
    return "\n".join(lines)


def train_table(configs: dict) -> str:
    """``train()`` of each config on the dataset, on the GPU with the config's own ``amp``."""
    lines = ["| config | amp | steps | s | last loss | val Dice |", "|---|---|---:|---:|---:|---:|"]
    for name, config in configs.items():
        result = train(config)
        dice_text = "-" if result.last_val_dice is None else f"{result.last_val_dice:.3f}"
        lines.append(f"| {CONFIGS[name]} | {config.amp} | {result.steps} | "
                     f"{result.seconds:.1f} | {result.loss:.3f} | {dice_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder (train, val and test stacks)")
    parser.add_argument("--stacks", type=int, default=4, help="test stacks to predict")
    parser.add_argument("--steps", type=int, default=20, help="training steps per setting")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device is visible here; this checks the GPU paths")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}, Python {platform.python_version()}, "
          f"{torch.get_num_threads()} CPU threads\n", flush=True)
    dataset = open_dataset(args.data)
    names = dataset.split()["test"][:args.stacks]
    print(f"Prediction, {len(names)} test stacks of {args.data}\n", flush=True)
    print(prediction_table(dataset, names) + "\n", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        teacher = folder / "dino_vitb16_shape.pth"
        torch.manual_seed(0)
        torch.save(VisionTransformer2d(**PAPER_TEACHER).state_dict(), teacher)
        common = [f"data={args.data}", f"steps={args.steps}", f"val_every={args.steps}",
                  "device=cuda", "tensorboard=false", "threads=null"]
        overrides = {"default model": common, "paper": [*common, f"teacher={teacher}"]}
        configs = {name: load_config(path, [*overrides[name], f"out={folder / path.stem}"])
                   for name, path in CONFIGS.items()}
        print(f"Training steps, median of {args.steps} after {WARMUP_STEPS} warm-up\n",
              flush=True)
        print(step_table(configs, args.steps) + "\n", flush=True)
        print(f"train(), {args.steps} steps on {args.data}\n", flush=True)
        print(train_table(configs), flush=True)


if __name__ == "__main__":
    main()
