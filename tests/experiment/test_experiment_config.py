"""dineuro.experiment.config: the experiment's keys checked, resolved and turned into runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dineuro.errors import InputError
from dineuro.experiment import TRANSFERS, load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_teacher_mapping_gives_a_run_per_teacher_but_for_scratch():
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
    with pytest.raises(InputError, match="photos"):
        config.run_config("center", 0)  # a named teacher is needed


@pytest.mark.parametrize("teacher, named", [
    ({"photo-net": "p.pth"}, "'photo-net'"), ({"": "p.pth"}, "''"), ({1: "p.pth"}, "1"),
    ({"photos": 3}, "teacher.photos"), ({}, "mapping"), (["p.pth"], "mapping")])
def test_bad_teacher_mappings_are_input_errors(make_config, dataset, tmp_path, teacher, named):
    with pytest.raises(InputError, match="experiment key 'teacher") as caught:
        make_config(dataset, tmp_path / "exp", teacher)
    assert named in str(caught.value)


def test_missing_teacher_is_an_input_error(make_config, dataset, tmp_path):
    with pytest.raises(InputError, match=r"need a DINO teacher.*dineuro weights fetch"):
        make_config(dataset, tmp_path / "exp", None)
    make_config(dataset, tmp_path / "exp", None, transfers=["scratch"])  # scratch needs none


@pytest.mark.parametrize("changes, named", [
    ({"transfer": ["scratch"]}, "transfer"),
    ({"predict": {"overlapp": 0.5}}, "predict.overlapp"),
    ({"base": {"data": "d", "lr_rate": 0.1}}, "lr_rate"),
])
def test_unknown_keys_are_named(make_config, dataset, tmp_path, changes, named):
    with pytest.raises(InputError, match=named):
        make_config(dataset, tmp_path / "exp", None, transfers=["scratch"], **changes)


@pytest.mark.parametrize("override, message", [
    ("transfers=[scratch, bogus]", "transfers"), ("seeds=[0, 0]", "seed twice"),
    ("split=holdout", "split"), ("predict.overlap=1.5", "overlap"), ("base.steps=0", "steps")])
def test_bad_values_are_input_errors(tmp_path, override, message):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"base": {"data": "d", "size": "tiny"}, "out": "o",
                                    "transfers": ["scratch"]}))
    with pytest.raises(InputError, match=message):
        load_experiment(path, [override])


def test_base_may_be_a_training_config_file():
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
