"""Does the student's encoder see inputs of the size its teacher was trained on?

A transferred student copies the teacher's blocks, which were trained on tokens of a certain
size: the patch embedding of standardised (or ImageNet-normalised) crops. This measures the mean
L2 norm of the patch-embedding tokens of a student built with each transfer, on 32^3 crops
centred on neurites of a dataset's test stacks, with the encoder input as given
(percentile-normalised to [0, 1], ``encoder_input: raw``) and standardised per crop
(``encoder_input: standardize``), next to the teacher's own tokens on the standardised z-MIPs
of the same crops. Position embeddings are listed for scale. A Markdown table goes to stdout.

Usage::

    python benchmarks/token_scale.py --data data/bench --teacher photos=photos.pth \\
        --teacher mips=mips.pth --num-heads 3
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from dineuro.data.dataset import open_dataset
from dineuro.data.normalize import percentile_normalize
from dineuro.models.build import build_model
from dineuro.models.standardize import standardize_per_sample
from dineuro.models.teacher import load_teacher

TRANSFERS = ("average", "center", "tubular", "deformable")
CROP = 32


def neurite_crops(data: str, stacks: int, per_stack: int, seed: int) -> torch.Tensor:
    """(N, 1, 32, 32, 32) [0, 1] crops centred on random gold-mask voxels of test stacks."""
    dataset = open_dataset(data)
    rng = np.random.default_rng(seed)
    crops = []
    for name in dataset.split()["test"][:stacks]:
        volume = percentile_normalize(dataset.image(name).array)
        points = np.argwhere(dataset.label(name))
        for point in points[rng.integers(len(points), size=per_stack)]:
            start = [int(np.clip(p - CROP // 2, 0, s - CROP)) for p, s in
                     zip(point, volume.shape, strict=True)]
            crops.append(volume[tuple(slice(s, s + CROP) for s in start)])
    return torch.from_numpy(np.stack(crops))[:, None].float()


def mean_norm(tokens: torch.Tensor) -> float:
    return float(tokens.norm(dim=-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset folder (dineuro synth)")
    parser.add_argument("--teacher", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--num-heads", type=int, default=None)
    parser.add_argument("--size", default="tiny", help="student preset of the teacher's width")
    parser.add_argument("--stacks", type=int, default=4)
    parser.add_argument("--per-stack", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    crops = neurite_crops(args.data, args.stacks, args.per_stack, args.seed)
    print(f"{len(crops)} crops, mean {float(crops.mean()):.3f}, std {float(crops.std()):.3f}\n")
    print("| teacher | tokens of | raw [0, 1] input | standardised input | position embedding |")
    print("|---|---|---:|---:|---:|")
    with torch.no_grad():
        for item in args.teacher:
            name, path = item.split("=", 1)
            teacher = load_teacher(path, num_heads=args.num_heads)
            state = teacher.state_dict
            mips = standardize_per_sample(crops.amax(dim=2))
            tokens = F.conv2d(mips.expand(-1, teacher.in_chans, -1, -1),
                              state["patch_embed.proj.weight"], state["patch_embed.proj.bias"],
                              stride=teacher.patch_size).flatten(2).transpose(1, 2)
            print(f"| {name} | the 2D teacher, z-MIPs | - | {mean_norm(tokens):.2f} "
                  f"| {mean_norm(state['pos_embed'][0, 1:]):.2f} |")
            for transfer in TRANSFERS:
                model = build_model(args.size, transfer=transfer, teacher=teacher,
                                    crop=(CROP,) * 3).eval()
                encoder = model.encoder
                raw = mean_norm(encoder.patch_embed(crops))
                standard = mean_norm(encoder.patch_embed(standardize_per_sample(crops)))
                print(f"| {name} | student, {transfer} | {raw:.2f} | {standard:.2f} "
                      f"| {mean_norm(encoder.pos_embed[0]):.2f} |")


if __name__ == "__main__":
    main()
