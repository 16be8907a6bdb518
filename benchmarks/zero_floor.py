"""A dataset folder's copy with every stack clipped at zero, for scoring on such stacks.

Background subtraction, or an 8-bit export of a dim confocal stack, leaves most of a real
stack's background at exactly 0 (the stack in ``../shared/real`` is mostly zeros), which
``synth`` never makes: its cameras add an offset and noise. This writes ``OUT`` with each image
of ``DATA`` less its ``--percentile``-th percentile, clipped at 0, in its own dtype
(:func:`trace_options.zero_floored`, the same as ``trace_options.py --zero-floor``), and the
labels, gold and unlabelled SWCs, ``split.json`` and ``meta.json`` copied as they are, so that
any benchmark that takes a dataset folder scores the same neurons on the clipped stacks::

    python benchmarks/zero_floor.py data/noisy data/noisy_zero --percentile 95
    python benchmarks/trace_vs_peers.py data/noisy_zero --model default
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from trace_options import zero_floored

from dineuro.data.dataset import IMAGES, open_dataset
from dineuro.io import read_volume, write_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder (dineuro synth layout)")
    parser.add_argument("out", type=Path, help="the new dataset folder (must not exist)")
    parser.add_argument("--percentile", type=float, default=95.0,
                        help="subtracted from each stack before clipping (default %(default)s)")
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new folder.")
    (args.out / IMAGES).mkdir(parents=True)
    for entry in args.data.iterdir():
        if entry.name != IMAGES:
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, args.out / entry.name)
    for name, path in dataset.images.items():
        clipped = zero_floored(read_volume(path), args.percentile)
        write_volume(args.out / IMAGES / path.name, clipped.array, clipped.spacing)
        print(f"{name}: {float((clipped.array == 0).mean()):.3f} of the voxels 0")


if __name__ == "__main__":
    main()
