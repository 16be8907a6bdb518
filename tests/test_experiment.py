"""The ablation experiment: config checks, one tiny scratch-vs-deformable run, one tiny run with
two named teachers, reuse on re-run."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from dineuro.errors import InputError
from dineuro.evaluate import evaluate_folder
from dineuro.experiment import (
    CSV_COLUMNS,
    RUN_CSV_COLUMNS,
    TEACHER_CSV_COLUMNS,
    TRANSFERS,
    ExperimentConfig,
    load_experiment,
    paired_difference,
    run_experiment,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Tiny model on crops that fit the 16-slice test stacks; 2 steps, one torch thread.
BASE = {"size": "tiny", "crop": [16, 32, 32], "model_options": {"patch": [8, 16, 16]},
        "batch_size": 1, "steps": 2, "warmup_steps": 1, "lr": 1e-3, "val_every": 2,
        "device": "cpu", "tensorboard": False, "threads": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from dineuro.data.synth import PRESETS, write_synthetic_dataset

    config = replace(PRESETS["small"], n_stacks=3, shape=(16, 48, 48), navis_fraction=0.0)
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "tiny", config)


def _write_teacher(path: Path, seed: int = 0) -> Path:
    """A random DINO-layout teacher of the tiny student's width, different per seed."""
    try:
        from tests.models.conftest import make_dino_state_dict
    except ImportError:  # tests/ is not a package on every path setup
        from dineuro.models.vit2d import VisionTransformer2d

        torch.manual_seed(seed)
        state = VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict()
    else:
        state = make_dino_state_dict(embed_dim=48, depth=4, num_heads=3, seed=seed)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return _write_teacher(tmp_path_factory.mktemp("dino") / "dino_tiny.pth")


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("teachers")
    return {name: str(_write_teacher(folder / f"teacher_{name}.pth", seed))
            for seed, name in enumerate(("photos", "mips"))}


def _config(dataset: Path, out: Path, teacher, **changes) -> ExperimentConfig:
    """``teacher``: a path, None, or what the config's ``teacher`` key holds (a mapping)."""
    data = {"base": {**BASE, "data": str(dataset)}, "out": str(out),
            "transfers": ["scratch", "deformable"], "seeds": [0],
            "teacher": str(teacher) if isinstance(teacher, Path) else teacher, **changes}
    return ExperimentConfig.from_dict(data)


@pytest.fixture(scope="module")
def experiment(dataset, teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation") / "exp"
    config = _config(dataset, out, teacher)
    calls = []
    result = run_experiment(config, progress=lambda *args: calls.append(args))
    return config, result, calls


@pytest.fixture(scope="module")
def teachers_experiment(dataset, two_teachers, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers_ablation") / "exp"
    config = _config(dataset, out, two_teachers, transfers=["scratch", "center"])
    return config, run_experiment(config)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _same(text: str, value: float) -> bool:
    return math.isnan(value) if text == "" else float(text) == pytest.approx(value, rel=1e-12)


# -- running ---------------------------------------------------------------------------------
def test_table_has_a_row_per_transfer_with_evaluate_folder_numbers(experiment, dataset):
    config, result, _ = experiment
    rows = _read_csv(result.csv)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["transfer"] for r in rows] == ["scratch", "deformable"]
    test_names = __import__("json").loads((dataset / "split.json").read_text())["test"]
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
    test_names = __import__("json").loads((dataset / "split.json").read_text())["test"]
    for row, run in zip(rows, result.runs, strict=True):
        summary = evaluate_folder(run.folder / "predictions", dataset, names=test_names).summary()
        assert _same(row["dice"], summary.dice.mean) and _same(row["hd95"], summary.hd95.mean)
        assert int(row["stacks"]) == len(test_names) and int(row["steps"]) == 2
    summary_rows = _read_csv(result.csv)  # one seed: ablation.csv's means are the runs' values
    assert [r["dice_mean"] for r in summary_rows] == [r["dice"] for r in rows]


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
    again = run_experiment(config)
    assert [p.stat().st_mtime_ns for p in checkpoints + masks] == before
    assert not any(run.trained for run in again.runs)
    assert _read_csv(again.csv) == _read_csv(result.csv)


def test_an_interrupted_run_is_resumed(dataset, tmp_path):
    from dineuro.train import train

    config = _config(dataset, tmp_path / "exp", None, transfers=["scratch"],
                     base={**BASE, "data": str(dataset), "steps": 4})
    # The first half of the run, as if the experiment had stopped after step 2.
    train(replace(config.run_config("scratch", 0), steps=2))
    result = run_experiment(config)
    (run,) = result.runs
    assert run.trained and run.steps == 4
    assert [int(r["step"]) for r in _read_csv(run.folder / "metrics.csv")] == [1, 2, 3, 4]


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
    for path in (result.val_curves, result.overlays):
        assert path.read_bytes()[:8] == PNG_MAGIC


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


def test_named_teachers_rerun_retrains_nothing(teachers_experiment):
    config, result = teachers_experiment
    checkpoints = [run.folder / "best.pt" for run in result.runs]
    before = [p.stat().st_mtime_ns for p in checkpoints]
    again = run_experiment(config)
    assert not any(run.trained for run in again.runs)
    assert [p.stat().st_mtime_ns for p in checkpoints] == before
    assert _read_csv(again.csv) == _read_csv(result.csv)


# -- config ----------------------------------------------------------------------------------
def test_teacher_mapping_gives_a_run_per_teacher_but_for_scratch(tmp_path):
    config = load_experiment(None, ["base={data: d, size: tiny}", "out=o", "seeds=[0, 1]",
                                    "teacher={photos: p.pth, mips_2: dino_vits16}"])
    assert config.teacher == {"photos": "p.pth", "mips_2": "dino_vits16"}
    jobs = config.jobs()
    assert len(jobs) == 2 * (1 + 4 * 2)
    assert [job for job in jobs if job[0] == "scratch"] == [("scratch", 0, None),
                                                            ("scratch", 1, None)]
    assert jobs[:3] == [("scratch", 0, None), ("average", 0, "photos"), ("average", 0, "mips_2")]
    assert config.run_folder("deformable", 1, "mips_2") == Path(
        "o/runs/deformable-mips_2-seed1")
    assert config.run_folder("scratch", 1) == Path("o/runs/scratch-seed1")
    assert config.run_config("tubular", 0, "mips_2").teacher == "dino_vits16"
    assert config.run_config("scratch", 0).teacher is None
    with pytest.raises(ValueError, match="photos"):
        config.run_config("center", 0)  # a named teacher is needed


@pytest.mark.parametrize("teacher, named", [
    ({"photo-net": "p.pth"}, "'photo-net'"), ({"": "p.pth"}, "''"), ({1: "p.pth"}, "1"),
    ({"photos": 3}, "teacher.photos"), ({}, "mapping"), (["p.pth"], "mapping")])
def test_bad_teacher_mappings_are_input_errors(dataset, tmp_path, teacher, named):
    with pytest.raises(InputError, match="experiment key 'teacher") as caught:
        _config(dataset, tmp_path / "exp", teacher)
    assert named in str(caught.value)

def test_missing_teacher_is_an_input_error(dataset, tmp_path):
    with pytest.raises(InputError, match=r"need a DINO teacher.*dineuro weights fetch"):
        _config(dataset, tmp_path / "exp", None)
    _config(dataset, tmp_path / "exp", None, transfers=["scratch"])  # scratch needs none


def test_unfound_teacher_fails_before_training(dataset, tmp_path):
    config = _config(dataset, tmp_path / "exp", tmp_path / "missing.pth")
    with pytest.raises(InputError, match="missing.pth"):
        run_experiment(config)
    assert not (tmp_path / "exp" / "runs").exists()


@pytest.mark.parametrize("changes, named", [
    ({"transfer": ["scratch"]}, "transfer"),
    ({"predict": {"overlapp": 0.5}}, "predict.overlapp"),
    ({"base": {**BASE, "data": "d", "lr_rate": 0.1}}, "lr_rate"),
])
def test_unknown_keys_are_named(dataset, tmp_path, changes, named):
    with pytest.raises(InputError, match=named):
        _config(dataset, tmp_path / "exp", None, transfers=["scratch"], **changes)


@pytest.mark.parametrize("override, message", [
    ("transfers=[scratch, bogus]", "transfers"), ("seeds=[0, 0]", "seed twice"),
    ("split=holdout", "split"), ("predict.overlap=1.5", "overlap"), ("base.steps=0", "steps")])
def test_bad_values_are_input_errors(tmp_path, override, message):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"base": {"data": "d", "size": "tiny"}, "out": "o",
                                    "transfers": ["scratch"]}))
    with pytest.raises(InputError, match=message):
        load_experiment(path, [override])


def test_base_may_be_a_training_config_file(tmp_path):
    config = load_experiment(None, [f"base={CONFIGS / 'train_tiny.yaml'}", "out=o",
                                    "base.steps=7", "transfers=[scratch]"])
    run = config.run_config("scratch", 3)
    assert run.steps == 7 and run.seed == 3 and run.out == str(Path("o/runs/scratch-seed3"))
    assert "out" not in config.to_dict()["base"]


@pytest.mark.parametrize("name", ["ablation_tiny.yaml", "ablation_cpu.yaml",
                                  "ablation_paper.yaml", "ablation_teachers_tiny.yaml"])
def test_shipped_configs_load(name):
    config = load_experiment(CONFIGS / name)
    assert config.transfers == list(TRANSFERS) and config.teacher is not None
