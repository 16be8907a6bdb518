"""Did a setting change help? Two experiments' runs paired by (transfer, teacher, seed).

Two ``dineuro experiment`` folders that differ in one setting (e.g. ``--set
"base.model_options={encoder_input: standardize}"``) train runs that draw the same crops in the
same order seed by seed, so each run of B has a partner in A. This reads both ``runs.csv`` files
and prints a Markdown table, a row per (transfer, teacher): the mean test Dice of A and of B
over the seeds both have, and B minus A paired by seed (mean ± std, ddof=0, and in how many
seeds B was higher). Pairing removes what the seed alone changes, which on small budgets can be
larger than what the setting changes.

``FOLDER:TEACHER`` takes only the runs with that named teacher, so two teachers of one
experiment can be paired the same way (rows are then per transfer).

Usage::

    python benchmarks/paired_experiments.py runs/ablation_raw runs/ablation_standardized \\
        --names raw standardized
    python benchmarks/paired_experiments.py runs/ablation:random runs/ablation:photos \\
        --names random photos
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from dineuro.experiment import RUNS_CSV_NAME, paired_difference

Key = tuple[str, str]


def read_runs(source: str) -> dict[Key, dict[int, float]]:
    """Test Dice of each run of an experiment folder: {(transfer, teacher): {seed: dice}}; for
    ``FOLDER:TEACHER`` only that teacher's runs, keyed (transfer, "")."""
    folder, _, teacher = source.partition(":")
    path = Path(folder) / RUNS_CSV_NAME
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run `dineuro experiment` on that folder's config "
                         "(a finished experiment only re-scores) to write it.")
    runs: dict[Key, dict[int, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if teacher and row["teacher"] != teacher:
                continue
            dice = float(row["dice"]) if row["dice"] else math.nan
            key = (row["transfer"], "" if teacher else row["teacher"])
            runs.setdefault(key, {})[int(row["seed"])] = dice
    if not runs:
        raise SystemExit(f"{path}: no runs with teacher {teacher!r}.")
    return runs


def paired_rows(a: dict[Key, dict[int, float]], b: dict[Key, dict[int, float]]
                ) -> list[tuple[Key, int, float, float, float, float, int]]:
    """(key, seeds, mean A, mean B, mean B - A, std B - A, seeds B > A) for every key both have,
    over the seeds where both runs have a finite Dice."""
    rows = []
    for key in (key for key in a if key in b):
        seeds = [s for s in a[key] if s in b[key] and math.isfinite(a[key][s])
                 and math.isfinite(b[key][s])]
        if seeds:
            difference = paired_difference(b[key], a[key])
            rows.append((key, len(seeds), float(np.mean([a[key][s] for s in seeds])),
                         float(np.mean([b[key][s] for s in seeds])), *difference))
    return rows


def markdown(rows, names: tuple[str, str]) -> str:
    first, second = names
    lines = [f"| transfer | teacher | seeds | Dice {first} | Dice {second} "
             f"| {second} - {first} (paired) |", "|---|---|---:|---:|---:|---:|"]
    for (transfer, teacher), seeds, mean_a, mean_b, diff, std, above in rows:
        lines.append(f"| {transfer} | {teacher or '-'} | {seeds} | {mean_a:.3f} | {mean_b:.3f} "
                     f"| {diff:+.3f} ± {std:.3f} ({above}/{seeds} seeds) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="experiment folder A (the reference), or FOLDER:TEACHER")
    parser.add_argument("second", help="experiment folder B (the change), or FOLDER:TEACHER")
    parser.add_argument("--names", nargs=2, default=("A", "B"), help="column names of A and B")
    args = parser.parse_args()
    rows = paired_rows(read_runs(args.first), read_runs(args.second))
    if not rows:
        raise SystemExit("the two experiments have no (transfer, teacher, seed) in common.")
    print(markdown(rows, tuple(args.names)))


if __name__ == "__main__":
    main()
