"""Which batch size (windows per forward pass) predicts fastest, per window shape, on this CPU?

``dineuro.defaults.PASS_VOXELS`` sets the default batch size: as many windows as hold about
that many voxels (:func:`dineuro.predict.resolve_batch_size`). This measures why: the default
model predicts one stack (``sliding_window_predict`` with its defaults: precision "auto",
windows without signal skipped, the default overlap) through each window shape at each batch
size, and prints seconds as a ratio to the default batch size of that window, timed in the same
round. Rounds interleave the batch sizes (their order rotating each round) so that a load
change on a shared machine hits all alike; a ratio is the median over rounds. Beside each time
it prints the largest difference of the map from the default batch size's (batching changes
no arithmetic, so this should be 0 or bf16 rounding) and the Dice of the map against the
stack's label when the stack comes from a dineuro dataset folder.

Usage::

    python benchmarks/batch_speed.py data/big/images/synth_001.tif --threads 2
    python benchmarks/batch_speed.py stack.tif --windows 48,48,48 --batches 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dineuro.evaluate import dice
from dineuro.io.volume import read_volume
from dineuro.predict import (
    DEFAULT_OVERLAP,
    DEFAULT_THRESHOLD,
    resolve_batch_size,
    resolve_precision,
    sliding_window_predict,
)
from dineuro.predictor import Predictor

DEVICE = "cpu"
WINDOWS = ((48, 48, 48), (48, 96, 96), (64, 128, 128))
BATCHES = (1, 2, 4, 8)


def triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"a window is z,y,x, got {text!r}")
    return values


def label_of(stack: Path) -> np.ndarray | None:
    """The label mask of a stack in a dataset folder (images/NAME.tif -> labels/NAME.tif)."""
    label = stack.parent.parent / "labels" / stack.name
    return read_volume(label).array > 0 if label.exists() else None


def measure(network, volume: np.ndarray, window, batches: list[int], rounds: int
            ) -> dict[int, dict[str, float]]:
    """Median seconds of each batch size and its ratio to the default's, plus its map."""
    model = network.at_window(window)
    auto = resolve_batch_size(None, window)
    sizes = sorted({*batches, auto})

    def predict(batch: int) -> np.ndarray:
        return sliding_window_predict(model, volume, window, batch_size=batch, device=DEVICE)

    for batch in sizes:  # oneDNN's first-call set-up for each shape is not timed
        predict(batch)
    seconds = {batch: [] for batch in sizes}
    maps = {}
    for round_ in range(rounds):
        for batch in sizes[round_ % len(sizes):] + sizes[:round_ % len(sizes)]:
            start = time.perf_counter()
            maps[batch] = predict(batch)
            seconds[batch].append(time.perf_counter() - start)
    return {batch: {"seconds": statistics.median(seconds[batch]),
                    "ratio": statistics.median(s / a for s, a in zip(seconds[batch],
                                                                   seconds[auto], strict=True)),
                    "auto": batch == auto, "map": maps[batch]} for batch in sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path, help="a stack to predict (e.g. 60x512x512)")
    parser.add_argument("--windows", type=triple, nargs="+", default=list(WINDOWS),
                        help="window shapes z,y,x (default: %(default)s)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint("default", device=DEVICE)
    volume = predictor.normalization.normalize(read_volume(args.stack).array)
    label = label_of(args.stack)
    print(f"default model (trained on {'x'.join(map(str, predictor.crop))} crops) on "
          f"{args.stack} ({'x'.join(map(str, volume.shape))}), overlap {DEFAULT_OVERLAP}, "
          f"{resolve_precision('auto', DEVICE)}, {torch.get_num_threads()} threads, median of "
          f"{args.rounds} rounds\n")
    print("| window | batch | voxels per pass | s | x default batch | max abs dp | Dice |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for window in args.windows:
        rows = measure(predictor.network, volume, window, args.batches, args.rounds)
        reference = next(row["map"] for row in rows.values() if row["auto"])
        for batch, row in rows.items():
            mark = " (default)" if row["auto"] else ""
            score = f"{dice(row['map'] > DEFAULT_THRESHOLD, label):.4f}" if label is not None \
                else "-"
            print(f"| {'x'.join(map(str, window))} | {batch}{mark} | "
                  f"{batch * int(np.prod(window)):,} | {row['seconds']:.2f} | "
                  f"{row['ratio']:.2f} | {np.abs(row['map'] - reference).max():.4f} | {score} |",
                  flush=True)


if __name__ == "__main__":
    main()
