"""dineuro.experiment.running: every run trained, predicted and scored; reused or resumed on a
re-run; a missing teacher found before any training."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import yaml

from dineuro.errors import InputError
from dineuro.experiment import load_experiment, run_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_figures_and_resolved_config_are_written(experiment):
    config, result, calls = experiment
    for path in (result.val_curves, result.overlays):
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert load_experiment(result.config) == config
    assert [(done, total) for _, done, total in calls] == [(0, 2), (1, 2), (2, 2)]
    assert not list(result.out.glob(".*partial*"))


def test_runs_differ_only_in_transfer(experiment):
    config, result, _ = experiment
    stored = [yaml.safe_load((run.folder / "config.yaml").read_text()) for run in result.runs]
    changed = {k for k in stored[0] if stored[0][k] != stored[1][k]}
    assert changed == {"transfer", "out"}
    assert stored[0]["seed"] == stored[1]["seed"] == 0 and stored[0]["steps"] == 2


def test_rerun_reuses_runs_and_predictions(experiment):
    config, result, _ = experiment
    checkpoints = [run.folder / "best.pt" for run in result.runs]
    masks = sorted(result.out.glob("runs/*/predictions/*_mask.tif"))
    before = [p.stat().st_mtime_ns for p in checkpoints + masks]
    table = result.csv.read_bytes()
    again = run_experiment(config)
    assert [p.stat().st_mtime_ns for p in checkpoints + masks] == before
    assert not any(run.trained for run in again.runs)
    assert again.csv.read_bytes() == table


def test_an_interrupted_run_is_resumed(make_config, base, dataset, tmp_path):
    from dineuro.train import train

    config = make_config(dataset, tmp_path / "exp", None, transfers=["scratch"],
                         base={**base, "data": str(dataset), "steps": 4})
    # The first half of the run, as if the experiment had stopped after step 2.
    train(replace(config.run_config("scratch", 0), steps=2))
    result = run_experiment(config)
    (run,) = result.runs
    assert run.trained and run.steps == 4
    with (run.folder / "metrics.csv").open(newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_named_teachers_train_scratch_once_and_others_per_teacher(teachers_experiment,
                                                                  two_teachers):
    config, result = teachers_experiment
    assert [run.folder.name for run in result.runs] == [
        "scratch-seed0", "center-photos-seed0", "center-mips-seed0"]
    assert all(run.trained for run in result.runs)
    stored = {run.folder.name: yaml.safe_load((run.folder / "config.yaml").read_text())
              for run in result.runs}
    assert stored["scratch-seed0"]["teacher"] is None
    assert stored["center-photos-seed0"]["teacher"] == two_teachers["photos"]
    assert stored["center-mips-seed0"]["teacher"] == two_teachers["mips"]
    assert load_experiment(result.config) == config
    assert yaml.safe_load(result.config.read_text())["teacher"] == two_teachers
    for path in (result.val_curves, result.overlays):
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_named_teachers_rerun_retrains_nothing(teachers_experiment):
    config, result = teachers_experiment
    checkpoints = [run.folder / "best.pt" for run in result.runs]
    before = [p.stat().st_mtime_ns for p in checkpoints]
    table = result.csv.read_bytes()
    again = run_experiment(config)
    assert not any(run.trained for run in again.runs)
    assert [p.stat().st_mtime_ns for p in checkpoints] == before
    assert again.csv.read_bytes() == table


def test_unfound_teacher_fails_before_training(make_config, dataset, tmp_path):
    config = make_config(dataset, tmp_path / "exp", tmp_path / "missing.pth")
    with pytest.raises(InputError, match="missing.pth"):
        run_experiment(config)
    assert not (tmp_path / "exp" / "runs").exists()
