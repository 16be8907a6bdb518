"""Does ``dineuro adapt`` close the gap to a model trained on the shifted domain's labels?

A domain-shift benchmark that the synthetic generator makes possible. For each shift (a fixed
microscope outside what the default model was trained on; :data:`SHIFTS`):

1. synthesise the shifted domain (:data:`N_STACKS` stacks; the same neurons in every shift,
   since morphology is drawn before imaging);
2. score the default model on its test split (unadapted);
3. ``adapt`` the default model on the train split's images only, no labels (adapted);
4. fine-tune it as adapt does but on the train split's gold masks, keeping the whole weight
   change (``blend`` 1; the ceiling);
5. score both on the test split, and all three on the source domain's test split (the default
   model's noisy evaluation set), to see what adapting costs there;
6. hold adapt's first-round pseudo-labels of the train stacks against their gold masks
   (:func:`label_quality`): what self-training is taught, right and wrong.

Scores are those of the README's default-model table (``benchmarks/trace_vs_peers.py``): Dice
of the map, ESA/DSA/PDS and length precision/recall/F1 of the traced SWC against the gold SWC.
"Gap closed" is (adapted - unadapted) / (ceiling - unadapted) in traced F1. Everything is
synthetic.

Usage (the README's adaptation table)::

    dineuro synth -o data/noisy --preset realistic --difficulty 0.9 --seed 1
    python benchmarks/adapt_shift.py --source data/noisy -o runs/adapt_shift

``--data-only`` writes the shifted domains (``OUT/data_SHIFT``) and stops, for other scores
of the same microscopes (the README's "A second view of the stack"). ``--background-view
SIGMA`` labels the adapted run's stacks through that second view (adapt's ``background_view``)
and predicts every model with it when scoring; its adapted model is ``SHIFT_adapted_viewSIGMA.pt``,
so one folder holds both runs and the ceiling (gold labels, no view in its training) is shared.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from trace_vs_peers import metric_values, run

from dineuro.adapt import BACKGROUND, FOREGROUND, AdaptConfig, adapt
from dineuro.adapt.run_folder import STATE_FILE
from dineuro.checkpoint import resolve_model
from dineuro.config import parse_override
from dineuro.data.dataset import open_dataset
from dineuro.data.synth import PRESETS, write_synthetic_dataset
from dineuro.data.synth.generate import SynthConfig
from dineuro.data.synth.imaging import imaging_for_difficulty
from dineuro.evaluate import DEFAULT_SWC_THRESHOLD
from dineuro.io import read_volume

#: Stacks per shifted domain: 12 to adapt on (train), 6 to score (test), 2 unused (val).
N_STACKS, SPLIT, SHAPE, SEED = 20, (0.6, 0.1, 0.3), (64, 256, 256), 3
#: Shifts: overrides of the bench image model (``imaging_for_difficulty(0.5)``), each a
#: microscope outside the realistic preset's range whose neurites stay plainly visible.
SHIFTS = {
    # a wide PSF, as in widefield or deep two-photon imaging, with the photons to show it
    "widefield": {"psf_sigma_xy": 1.8, "psf_sigma_z": 3.5, "signal_photons": 250.0},
    # bright, uneven autofluorescent background with many large out-of-focus blobs
    "haze": {"background_photons": 10.0, "background_variation": 0.8, "blob_count": 60,
             "blob_sigma": (3.0, 10.0), "blob_brightness": (0.3, 1.2), "median_level": 0.2},
    # punctate neurites: every branch beaded, swellings 8-12 voxels apart, dim in between
    "beads": {"bead_fraction": 1.0, "bead_period": (8.0, 12.0), "bead_width": 1.0,
              "bead_floor": 0.1, "signal_photons": 150.0},
}
#: Scores shown, in this order.
SCORES = ("dice", "f1", "precision", "recall", "esa", "dsa", "pds")
MODEL_ROW = "model map, traced"


def shifted_domain(name: str, out: Path) -> Path:
    """The shifted dataset ``name``, synthesised into ``out`` unless already there."""
    if not (out / "split.json").exists():
        config = SynthConfig(n_stacks=N_STACKS, shape=SHAPE, split=SPLIT, seed=SEED,
                             imaging=imaging_for_difficulty(0.5, **SHIFTS[name]))
        write_synthetic_dataset(out, config)
    return out


def scores(model: Path | str, data: Path, background_view: float) -> dict:
    """Mean scores of ``model``'s traced maps on the test split of ``data``, predicted with
    ``background_view``."""
    results = {r.label: r for r in run(data, None, model, "test", DEFAULT_SWC_THRESHOLD, "cpu",
                                       background_view=background_view)}
    row = results[MODEL_ROW]
    return {metric: float(np.mean(metric_values(row, metric))) for metric in SCORES}


def adapted(model: str, data: Path, out: Path, synthetic: Path, args, gold: bool) -> Path:
    """adapt (or, with ``gold``, the same fine-tuning on gold masks, no view) on the train
    split; an interrupted run in ``out``'s folder is continued."""
    dataset = open_dataset(data)
    names = dataset.split()["train"]
    if out.exists():
        return out
    config = AdaptConfig.from_dict(
        {"stacks": [str(dataset.images[n]) for n in names], "out": str(out), "model": model,
         "steps": args.steps, "rounds": args.rounds, "synthetic": str(synthetic),
         "seed": args.seed, "device": "cpu", **dict(map(parse_override, args.sets)),
         **({"blend": 1.0} if gold else {"background_view": args.background_view})})
    labels = {n: dataset.label(n).astype(np.uint8) for n in names} if gold else None
    adapt(config, fixed_labels=labels, resume=(config.work / STATE_FILE).exists())
    return out


def label_quality(work: Path, data: Path) -> dict:
    """The first round's pseudo-labels of ``data``'s train stacks (in adapt's folder ``work``)
    against their gold masks: the share of labelled foreground that is neurite, the share of
    the neurite labelled background (taught as a miss), and the share of everything else
    labelled background."""
    dataset = open_dataset(data)
    fg = fg_neurite = neurite = neurite_bg = other = other_bg = 0
    for name in dataset.split()["train"]:
        label = read_volume(work / "round_1" / f"{name}_label.tif").array
        gold = dataset.label(name).astype(bool)
        fg += np.count_nonzero(label == FOREGROUND)
        fg_neurite += np.count_nonzero((label == FOREGROUND) & gold)
        neurite += np.count_nonzero(gold)
        neurite_bg += np.count_nonzero((label == BACKGROUND) & gold)
        other += np.count_nonzero(~gold)
        other_bg += np.count_nonzero((label == BACKGROUND) & ~gold)
    return {"foreground_precision": fg_neurite / max(fg, 1),
            "neurite_as_background": neurite_bg / max(neurite, 1),
            "rest_as_background": other_bg / max(other, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| shift | model | " + " | ".join(SCORES) + " | source F1 | gap closed |",
             "|---|---|" + "---:|" * (len(SCORES) + 2)]
    for row in rows:
        cells = [row["shift"], row["model"], *(f"{row['shifted'][m]:.3f}" for m in SCORES),
                 f"{row['source']['f1']:.3f}", row.get("gap_closed", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def label_table(rows: list[dict]) -> str:
    lines = ["| shift | foreground that is neurite | neurite labelled background | "
             "rest labelled background |", "|---|---:|---:|---:|"]
    for row in rows:
        if "labels" in row:
            found = row["labels"]
            lines.append(f"| {row['shift']} | {found['foreground_precision']:.3f} | "
                         f"{found['neurite_as_background']:.3f} | "
                         f"{found['rest_as_background']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="work folder")
    parser.add_argument("--source", type=Path,
                        help="the source domain's evaluation set (data/noisy); required "
                             "unless --data-only")
    parser.add_argument("--shifts", default=",".join(SHIFTS))
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=AdaptConfig.steps)
    parser.add_argument("--rounds", type=int, default=AdaptConfig.rounds)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="any other adapt setting, for both adapt and the ceiling")
    parser.add_argument("--background-view", type=float, default=0.0, metavar="SIGMA",
                        help="label adapt's stacks and predict every model through this "
                             "background view (default off)")
    parser.add_argument("--data-only", action="store_true",
                        help="only synthesise the shifted domains into OUT/data_SHIFT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data_only:
        for name in args.shifts.split(","):
            print(shifted_domain(name, args.out / f"data_{name}"))
        return
    if args.source is None:
        parser.error("--source is required unless --data-only")
    synthetic = args.out / "synthetic"
    if not (synthetic / "split.json").exists():  # the mix-in set adapt would synthesise
        write_synthetic_dataset(synthetic, replace(PRESETS[AdaptConfig.synthetic_preset],
                                                   n_stacks=AdaptConfig.synthetic_stacks,
                                                   seed=args.seed))
    model = str(resolve_model(args.model))
    view = args.background_view
    source_before = scores(model, args.source, view)
    rows, suffix = [], f"_view{view:g}" if view else ""
    for name in args.shifts.split(","):
        start = time.perf_counter()
        data = shifted_domain(name, args.out / f"data_{name}")
        models = {"unadapted": model,
                  "adapted": adapted(model, data, args.out / f"{name}_adapted{suffix}.pt",
                                     synthetic, args, gold=False),
                  "ceiling (gold labels)": adapted(model, data, args.out / f"{name}_gold.pt",
                                                   synthetic, args, gold=True)}
        found = {key: {"shift": name, "model": key, "shifted": scores(path, data, view),
                       "source": source_before if key == "unadapted"
                       else scores(path, args.source, view)}
                 for key, path in models.items()}
        low, high = found["unadapted"]["shifted"]["f1"], found["ceiling (gold labels)"][
            "shifted"]["f1"]
        gain = found["adapted"]["shifted"]["f1"] - low
        found["adapted"]["gap_closed"] = f"{gain / (high - low):.2f}" if high > low else "n/a"
        found["adapted"]["labels"] = label_quality(
            AdaptConfig(stacks=("-",), out=str(models["adapted"])).work, data)
        rows += found.values()
        # Each shift's rows as soon as they are scored: a whole run takes an hour or more.
        print(f"{name}: {time.perf_counter() - start:.0f} s\n\n{table(list(found.values()))}",
              flush=True)
    settings = "".join(f", {item}" for item in args.sets)
    if view:
        settings += f", labelled and predicted with --background-view {view:g}"
    text = (f"Adaptation to shifted synthetic domains ({N_STACKS} stacks of {SHAPE}, seed "
            f"{SEED}, train split adapted on, test split scored; adapt {args.steps} steps x "
            f"{args.rounds} round(s){settings}; source: {args.source} test split).\n\n"
            + table(rows) + "\nFirst-round pseudo-labels of the train stacks against their gold "
            "masks:\n\n" + label_table(rows))
    (args.out / f"adapt_shift{suffix}.md").write_text(text)
    (args.out / f"adapt_shift{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
