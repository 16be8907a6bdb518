"""dineuro.experiment.tables: ablation.csv and ablation.md hold evaluate_folder's numbers over
seeds with the paired comparison to scratch, runs.csv each run's own."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from dineuro.evaluate import evaluate_folder
from dineuro.experiment import (
    CSV_COLUMNS,
    RUN_CSV_COLUMNS,
    TEACHER_CSV_COLUMNS,
    paired_difference,
)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _same(text: str, value: float) -> bool:
    return math.isnan(value) if text == "" else float(text) == pytest.approx(value, rel=1e-12)


def _test_names(dataset: Path) -> list[str]:
    return json.loads((dataset / "split.json").read_text())["test"]


def test_table_has_a_row_per_transfer_with_evaluate_folder_numbers(experiment, dataset):
    config, result, _ = experiment
    rows = _read_csv(result.csv)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["transfer"] for r in rows] == ["scratch", "deformable"]
    test_names = _test_names(dataset)
    for row in rows:
        folder = config.run_folder(row["transfer"], 0)
        summary = evaluate_folder(folder / "predictions", dataset, names=test_names).summary()
        assert _same(row["dice_mean"], summary.dice.mean)
        assert _same(row["hd95_mean"], summary.hd95.mean)
        assert float(row["dice_std"]) == 0.0  # one seed
        assert int(row["empty_predictions"]) == summary.n_empty_prediction
        assert int(row["stacks"]) == summary.n_scored == len(test_names)
        assert int(row["steps"]) == 2
        metrics = _read_csv(folder / "metrics.csv")
        assert float(row["train_seconds"]) == float(metrics[-1]["seconds"]) > 0
    scratch, deformable = rows
    assert scratch["dice_vs_scratch_mean"] == "" and scratch["seeds_above_scratch"] == "0"
    assert _same(deformable["dice_vs_scratch_mean"],
                 float(deformable["dice_mean"]) - float(scratch["dice_mean"]))
    assert float(deformable["dice_vs_scratch_std"]) == 0.0  # one seed
    assert int(deformable["seeds_above_scratch"]) == int(
        float(deformable["dice_mean"]) > float(scratch["dice_mean"]))
    markdown = result.markdown.read_text()
    assert "| scratch |" in markdown and "| deformable |" in markdown
    difference = float(deformable["dice_vs_scratch_mean"])
    assert (f"| {difference:+.3f} ± 0.000 ({deformable['seeds_above_scratch']}/1 seeds) |"
            in markdown)


def test_runs_table_has_each_runs_own_scores(teachers_experiment, dataset):
    config, result = teachers_experiment
    rows = _read_csv(result.runs_csv)
    assert list(rows[0]) == list(RUN_CSV_COLUMNS)
    assert [(r["transfer"], r["teacher"], r["seed"], r["run"]) for r in rows] == [
        ("scratch", "", "0", "scratch-seed0"), ("center", "photos", "0", "center-photos-seed0"),
        ("center", "mips", "0", "center-mips-seed0")]
    test_names = _test_names(dataset)
    for row, run in zip(rows, result.runs, strict=True):
        summary = evaluate_folder(run.folder / "predictions", dataset, names=test_names).summary()
        assert _same(row["dice"], summary.dice.mean) and _same(row["hd95"], summary.hd95.mean)
        assert int(row["stacks"]) == len(test_names) and int(row["steps"]) == 2
    summary_rows = _read_csv(result.csv)  # one seed: ablation.csv's means are the runs' values
    assert [r["dice_mean"] for r in summary_rows] == [r["dice"] for r in rows]


def test_named_teachers_table_has_a_column_group_per_teacher(teachers_experiment):
    _, result = teachers_experiment
    rows = _read_csv(result.csv)
    assert list(rows[0]) == list(TEACHER_CSV_COLUMNS)
    assert [(r["transfer"], r["teacher"]) for r in rows] == [
        ("scratch", ""), ("center", "photos"), ("center", "mips")]
    by_folder = {run.folder.name: run.table.summary().dice.mean for run in result.runs}
    assert _same(rows[1]["dice_mean"], by_folder["center-photos-seed0"])
    assert _same(rows[2]["dice_mean"], by_folder["center-mips-seed0"])
    assert all(float(r["train_seconds"]) > 0 for r in rows)
    lines = result.markdown.read_text().splitlines()
    assert lines[0] == ("| transfer | seeds | Dice (photos) | HD95 (photos) "
                        "| Dice vs scratch (photos) | Dice (mips) | HD95 (mips) "
                        "| Dice vs scratch (mips) | train time | steps | empty predictions |")
    assert [line.split(" | ")[0] for line in lines[2:4]] == ["| scratch", "| center"]
    scratch_cells = lines[2].split(" | ")[2:8]
    assert scratch_cells[:3] == scratch_cells[3:]  # the same scratch runs under each teacher
    assert scratch_cells[2] == "baseline"
    for row in rows[1:]:  # each teacher's runs are paired with the one scratch run
        assert _same(row["dice_vs_scratch_mean"],
                     float(row["dice_mean"]) - float(rows[0]["dice_mean"]))


def test_paired_difference_by_hand():
    transfer = {0: 0.70, 1: 0.60, 2: 0.50, 3: 0.9}
    scratch = {0: 0.68, 1: 0.65, 2: 0.50, 4: 0.1}  # seed 3 and 4 have no partner
    mean, std, above = paired_difference(transfer, scratch)
    # differences +0.02, -0.05, 0.00: mean -0.01; deviations 0.03, 0.04, 0.01
    assert mean == pytest.approx(-0.01)
    assert std == pytest.approx(math.sqrt((0.03 ** 2 + 0.04 ** 2 + 0.01 ** 2) / 3))
    assert above == 1
    assert paired_difference({0: math.nan, 1: 0.5}, {0: 0.4, 1: 0.6}) == (
        pytest.approx(-0.1), 0.0, 0)
    nothing = paired_difference({0: 0.5}, {1: 0.5})
    assert math.isnan(nothing[0]) and math.isnan(nothing[1]) and nothing[2] == 0
