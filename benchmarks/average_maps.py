"""Average the probability maps of several networks: an ensemble, to be traced and scored.

Each input folder holds ``dineuro predict`` maps (``NAME_prob.tif``) of the same stacks by one
network; every stack all of them hold gets the voxel-wise mean of its maps, written as
``OUT/NAME_prob.tif`` (float32, the first folder's voxel size). Trace and score that folder as
one network's (``trace_options.py``, ``missed_gold.py``) to see whether networks that differ
only in their seed or in one option miss different neurites, which their mean would recover,
or the same ones. For example::

    dineuro predict data/noisy/images -o pred/a --model runs/a/best.pt --prob-dtype float32
    dineuro predict data/noisy/images -o pred/b --model runs/b/best.pt --prob-dtype float32
    python benchmarks/average_maps.py pred/mean pred/a pred/b
    python benchmarks/trace_options.py data/noisy --pred pred/mean --split train

A stack whose maps differ in shape is refused with the file named; the maps are written into a
hidden folder renamed to OUT when all are, and OUT must not exist.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from dineuro.errors import InputError
from dineuro.evaluate import PROB_SUFFIX, find_predictions
from dineuro.io import Volume, read_volume, write_volume
from dineuro.trace import as_probability


def common_names(folders: list[Path]) -> list[str]:
    """The stack names whose map every folder holds, sorted."""
    held = [{name for name, path in find_predictions(folder, prefer_prob=True).items()
             if path.name.endswith(PROB_SUFFIX)} for folder in folders]
    names = sorted(set.intersection(*held))
    if not names:
        raise InputError(f"these folders hold no NAME{PROB_SUFFIX} in common.", folders[0])
    return names


def mean_map(paths: list[Path]) -> Volume:
    """The voxel-wise mean of the maps, as float32 probabilities, with the first map's spacing."""
    first = read_volume(paths[0])
    total = as_probability(first.array, "probability").astype(np.float64)
    for path in paths[1:]:
        prob = as_probability(read_volume(path).array, "probability")
        if prob.shape != total.shape:
            raise InputError(f"has shape {prob.shape}, {paths[0]} has {total.shape}.", path)
        total += prob
    return Volume((total / len(paths)).astype(np.float32), first.spacing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create for the mean maps")
    parser.add_argument("folders", type=Path, nargs="+", help="prediction folders to average")
    args = parser.parse_args()
    partial = args.out.with_name(f".{args.out.name}.partial")  # renamed to OUT when complete
    try:
        if args.out.exists():
            raise InputError("exists; give a new folder for the mean maps.", args.out)
        names = common_names(args.folders)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in names:
            mean = mean_map([folder / f"{name}{PROB_SUFFIX}" for folder in args.folders])
            write_volume(partial / f"{name}{PROB_SUFFIX}", mean.array, mean.spacing)
    except InputError as error:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"error: {error}")
    partial.rename(args.out)
    print(f"{len(names)} mean maps of {len(args.folders)} folders written to {args.out}")


if __name__ == "__main__":
    main()
