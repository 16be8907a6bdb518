"""``python -m dineuro.train CONFIG [--set KEY=VALUE ...] [--resume]``, also under torchrun.

Prints one line per validation and a summary from rank 0; bad input is one sentence on stderr
and exit code 2.

Examples
--------
Two processes on one machine::

    torchrun --standalone --nproc_per_node 2 -m dineuro.train configs/train_cpu.yaml \\
        --set out=runs/cpu_ddp
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from dineuro.errors import InputError
from dineuro.train.config import load_config
from dineuro.train.loop import TrainResult, train


def main(argv: Sequence[str] | None = None) -> TrainResult:
    parser = argparse.ArgumentParser(prog="python -m dineuro.train",
                                     description="Train a dineuro segmentation network.")
    parser.add_argument("config", help="YAML training config (see configs/).")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (dotted for nested, "
                        "value parsed as YAML); repeatable.")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the config's out folder from its last.pt.")
    args = parser.parse_args(argv)
    main_rank = os.environ.get("RANK", "0") == "0"

    def report(step: int, total: int, loss: float, val_dice: float | None) -> None:
        if main_rank and val_dice is not None and not math.isnan(val_dice):
            print(f"step {step}/{total}  loss {loss:.4f}  val Dice {val_dice:.4f}", flush=True)

    config = load_config(args.config, args.overrides)
    result = train(config, progress=report, resume=args.resume)
    if main_rank:
        best = ("no val split" if result.best_val_dice is None else
                f"best val Dice {result.best_val_dice:.4f} at step {result.best_step}")
        print(f"trained {result.steps} steps in {result.seconds:.1f} s on {result.world_size} "
              f"process(es); {best}; run folder {result.out}", flush=True)
    return result


if __name__ == "__main__":
    try:
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
