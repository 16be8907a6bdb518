"""train -> predict -> evaluate through the command line, and how predict finds its stacks."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SYNTH_ARGS, invoke

from dineuro.errors import InputError
from dineuro.io import read_volume, write_volume
from dineuro.predict import find_stacks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data, run = root / "data", root / "run"
    assert invoke(*SYNTH_ARGS[:-2], "--n", "3", "--shape", "16,48,48", "-o", data).code == 0
    result = invoke("train", "configs/train_tiny.yaml", "--set", f"data={data}", "--set",
                    f"out={run}", "--set", "steps=2", "--set", "val_every=2", "--set",
                    "crop=[16, 32, 32]", "--set", "threads=1")
    assert result.code == 0, result.err
    return data, run


def test_train_predict_evaluate(trained, tmp_path):
    data, run = trained
    assert {"best.pt", "last.pt", "metrics.csv", "config.yaml"} <= {
        p.name for p in run.iterdir()}
    test = json.loads((data / "split.json").read_text())["test"]
    stack = data / "images" / f"{test[0]}.tif"
    result = invoke("predict", run / "best.pt", stack, "-o", tmp_path / "pred",
                    "--prob-dtype", "uint8")
    assert result.code == 0, result.err
    assert f"{test[0]}.tif: network on " in result.err  # windows computed, precision
    prob = read_volume(tmp_path / "pred" / f"{test[0]}_prob.tif")
    mask = read_volume(tmp_path / "pred" / f"{test[0]}_mask.tif")
    image = read_volume(stack)
    assert prob.array.shape == mask.array.shape == image.array.shape
    assert prob.array.dtype == np.uint8 and prob.spacing == pytest.approx(image.spacing)
    # mask = p > 0.5 and uint8 = round(255 p): 128 and up where masked, 128 and below where
    # not (p = 0.5 exactly, frequent in bf16, is stored as 128 and not masked).
    masked = mask.array > 0
    assert (prob.array[masked] >= 128).all() and (prob.array[~masked] <= 128).all()

    again = invoke("predict", run / "best.pt", stack, "-o", tmp_path / "pred")
    assert again.code == 2 and "already exists" in again.err  # nothing overwritten

    scored = invoke("evaluate", tmp_path / "pred", data)
    assert scored.code == 0, scored.err
    assert f"| {test[0]} |" in scored.out and "mean ± std" in scored.out
    assert (tmp_path / "pred" / "metrics.csv").is_file()


def test_train_rejects_unknown_keys_and_missing_data(tmp_path):
    bad = invoke("train", "configs/train_tiny.yaml", "--set", "bogus=1")
    assert bad.code == 2 and "bogus" in bad.err
    missing = invoke("train", "--set", f"data={tmp_path / 'none'}", "--set",
                     f"out={tmp_path / 'run'}")
    assert missing.code == 2 and "none" in missing.err
    assert not (tmp_path / "run").exists()


def test_predict_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"not a checkpoint")
    write_volume(tmp_path / "a.tif", np.zeros((4, 8, 8), np.uint8))
    result = invoke("predict", fake, tmp_path / "a.tif", "-o", tmp_path / "pred")
    assert result.code == 2 and "model.pt" in result.err
    assert not (tmp_path / "pred").exists()


def test_find_stacks(tmp_path):
    stacks = tmp_path / "stacks"
    for name in ("b10", "b2", "a"):
        write_volume(stacks / f"{name}.tif", np.zeros((3, 4, 4), np.uint8))
    write_volume(stacks / "c.nii.gz", np.zeros((3, 4, 4), np.uint8))
    (stacks / "notes.txt").write_text("not a stack")
    slices = tmp_path / "slices"
    slices.mkdir()
    import tifffile

    for i in (1, 2, 10):
        tifffile.imwrite(slices / f"{i}.tif", np.zeros((4, 4), np.uint8))
    found = find_stacks([stacks, slices])
    assert [p.name for p in found] == ["a.tif", "b2.tif", "b10.tif", "c.nii.gz", "slices"]
    with pytest.raises(InputError, match="same name"):
        find_stacks([stacks / "a.tif", tmp_path / "stacks" / "a.tif"])
    with pytest.raises(InputError, match="does not exist"):
        find_stacks([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no stacks"):
        find_stacks([Path(tmp_path / "empty")])


def test_predict_blocks_matches_in_memory(trained, tmp_path):
    import zarr

    data, run = trained
    stack = data / "images" / "synth_000.tif"
    image = read_volume(stack).array
    source = zarr.create_array(str(tmp_path / "synth_000.zarr"), shape=image.shape,
                               dtype=image.dtype, chunks=(8, 24, 24))
    source[:] = image
    blocks = invoke("predict", run / "best.pt", tmp_path / "synth_000.zarr", "-o",
                    tmp_path / "pred", "--blocks", "--block", "8,24,24")
    assert blocks.code == 0, blocks.err
    memory = invoke("predict", run / "best.pt", stack, "-o", tmp_path / "pred")
    assert memory.code == 0, memory.err
    expected = read_volume(tmp_path / "pred" / "synth_000_prob.tif").array
    written = read_volume(tmp_path / "pred" / "synth_000_prob.zarr").array
    assert np.allclose(written, expected, atol=1e-5)


def test_train_with_a_teacher_file(trained, tmp_path):
    import torch

    from dineuro.checkpoint import load_model
    from dineuro.models.vit2d import VisionTransformer2d

    data, _ = trained
    teacher = tmp_path / "dino_tiny.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in VisionTransformer2d(
        embed_dim=48, depth=4, num_heads=3).state_dict().items()}}, teacher)
    result = invoke("train", "configs/train_tiny.yaml", "--teacher", teacher, "--set",
                    "transfer=center", "--set", f"data={data}", "--set", f"out={tmp_path / 'r'}",
                    "--set", "steps=1", "--set", "crop=[16, 32, 32]", "--set", "threads=1")
    assert result.code == 0, result.err
    _, meta = load_model(tmp_path / "r" / "last.pt")
    assert meta["model_config"]["transfer"] == "center"
    assert meta["model_config"]["teacher"] == str(teacher)


def test_experiment_without_a_teacher_says_how_to_get_one(trained, tmp_path):
    data, _ = trained
    result = invoke("experiment", "configs/ablation_tiny.yaml", "--set", "teacher=null",
                    "--set", f"out={tmp_path / 'x'}", "--set", f"base.data={data}")
    assert result.code == 2, result.err
    assert "weights fetch" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "x").exists()
