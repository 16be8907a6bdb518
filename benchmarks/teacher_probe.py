"""k-NN probe of frozen 2D teacher features: do they tell neurite from background patches?

A sanity measure for teachers made with ``dineuro pretrain2d``: patches of z-MIPs of a
synthetic dataset (``dineuro synth``), labelled "neurite" (the centre pixel is on the gold
mask's MIP) or "background" (no gold voxel within a quarter patch of the centre, so blobs,
fragments of other neurons and haze are the hard negatives). Train-split patches form the
memory bank, test-split patches are the queries; each query takes the weighted vote of its
k nearest bank features by cosine similarity (DINO's k-NN: weights exp(sim / 0.07)).

Features: the CLS token of each teacher given with ``--teacher NAME=PATH`` (its input
normalised as in its training: the ``crop_norm`` of ``PATH.yaml``, else ImageNet's), a randomly
initialised ViT of the same size as the first teacher (the reference the issue asks for), and
the raw normalised pixels (how hard the task is without any network). Prints a Markdown table
of accuracy with a bootstrap standard error over queries.

Usage::

    python benchmarks/teacher_probe.py --data data/bench --teacher photos=photos.pth \\
        --teacher mips=mips.pth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from scipy import ndimage

from dineuro.data.dataset import open_dataset
from dineuro.data.normalize import percentile_normalize
from dineuro.models.teacher import load_teacher
from dineuro.models.vit2d import VisionTransformer2d

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
KNN_TEMPERATURE = 0.07
BOOTSTRAP = 1000


def patches_of(dataset, names, size: int, per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) MIP patches in [0, 1] and labels (1 neurite, 0 background)."""
    images, labels = [], []
    half = size // 2
    for name in names:
        image = percentile_normalize(dataset.image(name).array.astype(np.float32)).max(axis=0)
        mask = dataset.label(name).max(axis=0) > 0
        far = ndimage.distance_transform_edt(~mask) > size / 4
        inner = np.zeros_like(mask)
        inner[half:-half, half:-half] = True
        for label, where in ((1, mask & inner), (0, far & inner)):
            ys, xs = np.nonzero(where)
            if len(ys) == 0:
                continue
            for i in rng.choice(len(ys), size=min(per_class, len(ys)), replace=False):
                y, x = ys[i], xs[i]
                images.append(image[y - half:y + half, x - half:x + half])
                labels.append(label)
    return np.stack(images), np.asarray(labels)


def crop_norm_of(path: str) -> str:
    """How the teacher's training normalised its input: the ``crop_norm`` in the ``.yaml``
    that ``dineuro pretrain2d`` writes beside it, else the official ImageNet statistics."""
    record = Path(path).with_suffix(".yaml")
    if record.exists():
        return yaml.safe_load(record.read_text())["config"].get("crop_norm", "imagenet")
    return "imagenet"


@torch.no_grad()
def cls_features(vit: VisionTransformer2d, patches: np.ndarray, crop_norm: str,
                 batch: int = 64) -> np.ndarray:
    vit.eval()
    out = []
    for start in range(0, len(patches), batch):
        grey = torch.from_numpy(patches[start:start + batch])[:, None].expand(-1, 3, -1, -1)
        if crop_norm == "standardize":
            mean = grey.mean(dim=(1, 2, 3), keepdim=True)
            grey = (grey - mean) / (grey.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
        else:
            grey = (grey - IMAGENET_MEAN) / IMAGENET_STD
        out.append(vit(grey)[:, 0])
    return torch.cat(out).numpy()


def centred_pixels(patches: np.ndarray) -> np.ndarray:
    """Pixels minus each patch's mean, so cosine similarity compares structure, not brightness."""
    flat = patches.reshape(len(patches), -1)
    return flat - flat.mean(axis=1, keepdims=True)


def knn_predict(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray,
                k: int) -> np.ndarray:
    bank_t = F.normalize(torch.from_numpy(bank).float(), dim=1)
    query_t = F.normalize(torch.from_numpy(queries).float(), dim=1)
    sims, idx = (query_t @ bank_t.T).topk(k, dim=1)
    weights = (sims / KNN_TEMPERATURE).exp()
    votes = torch.zeros(len(queries), 2)
    votes.scatter_add_(1, torch.from_numpy(bank_labels)[idx].long(), weights)
    return votes.argmax(dim=1).numpy()


def accuracy(correct: np.ndarray, rng) -> tuple[float, float]:
    boot = rng.choice(correct, size=(BOOTSTRAP, len(correct))).mean(axis=1)
    return float(correct.mean()), float(boot.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder made by dineuro synth")
    parser.add_argument("--teacher", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--size", type=int, default=64, help="patch side (multiple of 16)")
    parser.add_argument("--per-class", type=int, default=30, help="patches per class per stack")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-heads", type=int,
                        help="heads of teachers whose width is not a released one (tiny: 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rng = np.random.default_rng(args.seed)
    dataset = open_dataset(args.data)
    split = dataset.split()
    bank, bank_y = patches_of(dataset, split["train"], args.size, args.per_class, rng)
    query, query_y = patches_of(dataset, split["test"], args.size, args.per_class, rng)

    features = {"raw pixels (mean-centred)": (centred_pixels(bank), centred_pixels(query))}
    teachers = [(name, load_teacher(path, num_heads=args.num_heads), crop_norm_of(path))
                for name, path in (item.split("=", 1) for item in args.teacher)]
    if teachers:
        _, first, first_norm = teachers[0]
        torch.manual_seed(args.seed)
        random_vit = VisionTransformer2d(img_size=first.grid * first.patch_size,
                                         patch_size=first.patch_size, embed_dim=first.embed_dim,
                                         depth=first.depth, num_heads=first.num_heads)
        features[f"random init ({first.embed_dim}-wide, depth {first.depth}, {first_norm})"] = (
            cls_features(random_vit, bank, first_norm), cls_features(random_vit, query, first_norm))
    for name, teacher, crop_norm in teachers:
        vit = teacher.to_vit2d()
        features[f"teacher {name} ({crop_norm})"] = (cls_features(vit, bank, crop_norm),
                                                     cls_features(vit, query, crop_norm))

    print(f"k-NN (k={args.k}) neurite vs background, {args.size} px z-MIP patches: "
          f"{len(bank)} train-split bank ({bank_y.mean():.0%} neurite), {len(query)} "
          f"test-split queries ({query_y.mean():.0%} neurite)\n")
    print("| features | accuracy |\n|---|---:|")
    for name, (b, q) in features.items():
        correct = knn_predict(b, bank_y, q, args.k) == query_y
        mean, se = accuracy(correct, rng)
        print(f"| {name} | {mean:.3f} ± {se:.3f} |")


if __name__ == "__main__":
    main()
