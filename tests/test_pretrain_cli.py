"""`dineuro pretrain2d` on the command line: a tiny run, its files, and bad input."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml
from helpers import invoke

from dineuro.models.teacher import load_teacher

TINY_RUN = ["--preset", "cpu", "--steps", "2", "--batch-size", "2", "--set", "global_size=32",
            "--set", "local_size=16", "--set", "n_local=2", "--set", "out_dim=64",
            "--set", "hidden_dim=32", "--set", "bottleneck_dim=16", "--set", "threads=1"]


@pytest.fixture()
def image_folder(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        iio.imwrite(folder / f"p{i}.png", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    return folder


def test_a_tiny_run_writes_a_loadable_teacher_and_its_record(image_folder, tmp_path):
    out = tmp_path / "teacher.pth"
    result = invoke("pretrain2d", image_folder, "-o", out, *TINY_RUN, "--seed", "3")
    assert result.code == 0, result.err
    teacher = load_teacher(out, num_heads=3)
    assert (teacher.embed_dim, teacher.depth) == (48, 4)
    record = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert record["inputs"] == [str(image_folder)] and record["n_images"] == 3
    assert record["config"]["seed"] == 3 and record["config"]["global_size"] == 32
    assert torch.load(out.with_suffix(".train.pth"), weights_only=True)["step"] == 2


def test_missing_input_names_the_file_and_writes_nothing(tmp_path):
    missing = tmp_path / "nowhere.png"
    result = invoke("pretrain2d", missing, "-o", tmp_path / "t.pth", *TINY_RUN)
    assert result.code == 2
    errors = [line for line in result.err_lines if line.startswith("error")]
    assert len(errors) == 1 and str(missing) in errors[0] and "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_existing_teacher_is_not_overwritten(image_folder, tmp_path):
    out = tmp_path / "teacher.pth"
    out.write_bytes(b"mine")
    result = invoke("pretrain2d", image_folder, "-o", out, *TINY_RUN)
    assert result.code == 2 and "already exists" in result.err
    assert out.read_bytes() == b"mine"
    assert not out.with_suffix(".yaml").exists()


def test_unknown_setting_is_named(image_folder, tmp_path):
    result = invoke("pretrain2d", image_folder, "-o", tmp_path / "t.pth", *TINY_RUN,
                    "--set", "learning_rate=1")
    assert result.code == 2 and "learning_rate" in result.err


def test_a_bad_device_is_one_sentence(image_folder, tmp_path):
    result = invoke("pretrain2d", image_folder, "-o", tmp_path / "t.pth", *TINY_RUN,
                    "--set", "device=gpu0")
    assert result.code == 2 and "'device'" in result.err and "Traceback" not in result.err


def test_a_wrong_type_names_the_setting_and_the_expected_type(image_folder, tmp_path):
    result = invoke("pretrain2d", image_folder, "-o", tmp_path / "t.pth", *TINY_RUN,
                    "--set", "global_scale=big")
    assert result.code == 2 and "'global_scale' should be a list of numbers" in result.err
