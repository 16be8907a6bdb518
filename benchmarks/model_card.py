"""Package a trained checkpoint as dineuro's default model, with a model card of its scores.

Exports the checkpoint slim (float16 weights, no training state;
:func:`dineuro.checkpoint.export_checkpoint`) into the package, scores the exported weights on
the test split of each evaluation set with ``benchmarks/trace_vs_peers.py`` (Dice of the map and
of the traced mask ``dineuro run`` writes, ESA/DSA/PDS, length precision/recall/F1 and
hairiness of the trace, seconds per stack for predict + trace), and writes the card into the
checkpoint (``card`` entry) and beside it (``card.json``, ``card.md``). The commands that made
the training data and the evaluation sets are recorded in the card; the numbers come from this
run.

Usage (the README's default-model table)::

    dineuro synth -o data/realistic --preset realistic --n 80 --seed 0
    dineuro train configs/default_model.yaml
    dineuro train configs/default_model_finetune.yaml
    dineuro synth -o data/hard --preset realistic --difficulty 0.9 --seed 3 --n 80
    dineuro train configs/default_model_hard.yaml
    dineuro synth -o data/bench --preset bench
    dineuro synth -o data/noisy --preset realistic --difficulty 0.9 --seed 1
    dineuro synth -o data/noisy_large --preset realistic --difficulty 0.9 --seed 2 --n 120
    dineuro synth -o data/bench_large --preset bench --seed 2 --n 120
    python benchmarks/model_card.py runs/default_model_hard/last.pt \\
        --set "bench=data/bench" --set "noisy=data/noisy" \\
        --set "noisy, large=data/noisy_large" --set "bench, large=data/bench_large"

The large sets are there because 8 test stacks are a small sample of a preset that draws each
stack's microscope and neurons at random, and the 8 of ``data/noisy`` turned out an easy draw
(the README's default-model section).

After a change to the tracer or to the sets, the shipped model is re-scored from itself: its
training config, step and validation Dice travel in the exported checkpoint, so the card is
made as before, and float16 weights exported again are the same float16 weights::

    python benchmarks/model_card.py src/dineuro/default_model/model.pt \\
        --set "bench=data/bench" --set "noisy=data/noisy" \\
        --set "noisy, large=data/noisy_large" --set "bench, large=data/bench_large"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from trace_vs_peers import (
    MASK_METRICS,
    METRICS,
    hairiness_median,
    header,
    markdown,
    metric_values,
    run,
)

from dineuro import __version__
from dineuro.checkpoint import (
    DEFAULT_CARD_FILE,
    default_model_path,
    export_checkpoint,
    load_checkpoint,
)
from dineuro.evaluate import DEFAULT_SWC_THRESHOLD

#: The commands behind the training data and the evaluation sets, as the card records them.
COMMANDS = {
    "training data": "dineuro synth -o data/realistic --preset realistic --n 80 --seed 0",
    "training": "dineuro train configs/default_model.yaml",
    "fine-tuning": "dineuro train configs/default_model_finetune.yaml",
    "harder training data": "dineuro synth -o data/hard --preset realistic --difficulty 0.9 "
                            "--seed 3 --n 80",
    "fine-tuning with harder stacks": "dineuro train configs/default_model_hard.yaml",
    "bench": "dineuro synth -o data/bench --preset bench",
    "noisy": "dineuro synth -o data/noisy --preset realistic --difficulty 0.9 --seed 1",
    "noisy, large": "dineuro synth -o data/noisy_large --preset realistic --difficulty 0.9 "
                    "--seed 2 --n 120",
    "bench, large": "dineuro synth -o data/bench_large --preset bench --seed 2 --n 120",
}
#: Rows of trace_vs_peers that the card keeps: the model's own, the raw-image floor (no
#: network) and the tracer's ceiling (the gold mask).
ROWS = {"model map, traced": "model", "raw image (percentile-normalised), traced": "raw image",
        "gold mask, traced": "gold mask"}


def shown_path(path: str | None) -> str | None:
    """A path as the card shows it: relative to the working directory when inside it, so that
    the card names the file as the training commands do, not where one machine kept it."""
    if path is None or not Path(path).is_absolute() or not Path(path).is_relative_to(Path.cwd()):
        return path
    return str(Path(path).relative_to(Path.cwd()))


def summary(result) -> dict:
    """Mean and std of every score of one row, the hairiness ratio's median, and seconds per
    stack."""
    out = {}
    for metric in MASK_METRICS + METRICS:
        values = metric_values(result, metric)
        if values:
            out[metric] = [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]
    median = hairiness_median(result)
    if median is not None:
        out["hairiness_median"] = round(median, 4)
    out["seconds_per_stack"] = round(float(np.mean(result.seconds)), 2)
    out["stacks"] = len(result.seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the checkpoint to ship (best.pt or last.pt)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="NAME=FOLDER", help="an evaluation dataset (repeatable)")
    parser.add_argument("--out", type=Path, default=default_model_path(),
                        help="the exported checkpoint (default: the packaged default model)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.sets)
    trained = load_checkpoint(args.checkpoint)
    train_config = trained.get("train_config", {})
    card = {"name": "dineuro default model", "dineuro_version": __version__,
            "network": {key: trained["model_config"].get(key)
                        for key in ("size", "transfer", "crop", "embed_dim", "depth")},
            "normalization": trained.get("normalization"),
            "training": {"steps": trained.get("step"), "val_dice": trained.get("val_dice"),
                         "loss": train_config.get("loss", "dice_ce"),
                         "seed": train_config.get("seed"),
                         "init": shown_path(train_config.get("init")),
                         "crop": train_config.get("crop"),
                         "data": [shown_path(folder) for folder in
                                  (train_config.get("data"), *train_config.get("extra_data", []))],
                         "lr": train_config.get("lr"), "schedule": train_config.get("schedule"),
                         "augment": train_config.get("augment")},
            "commands": COMMANDS, "scores": {}, "weights": "float16"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tables = []
    for name, folder in sets.items():
        with tempfile.TemporaryDirectory() as scratch:  # the shipped weights, scored
            exported = export_checkpoint(args.checkpoint, Path(scratch) / args.out.name)
            results = run(Path(folder), None, exported, args.split, DEFAULT_SWC_THRESHOLD,
                          "cpu")
        card["scores"][name] = {ROWS[r.label]: summary(r) for r in results if r.label in ROWS}
        tables.append(f"### {name}: `{COMMANDS.get(name, folder)}`\n\n"
                      + markdown(results, header(Path(folder), len(results[0].seconds),
                                                 args.split, DEFAULT_SWC_THRESHOLD)))
    export_checkpoint(args.checkpoint, args.out, card=card)
    (args.out.parent / DEFAULT_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (args.out.parent / "card.md").write_text("\n".join(tables))
    print("\n".join(tables))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and its card",
          file=sys.stderr)


if __name__ == "__main__":
    main()
