"""The packaged default model: it loads, segments a synthetic stack, and `run` uses it when no
model is given; exported (slim) checkpoints predict as their source does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke

from dineuro.checkpoint import (
    DEFAULT_CARD_FILE,
    default_model_path,
    export_checkpoint,
    load_checkpoint,
    load_model,
    resolve_model,
    save_checkpoint,
)
from dineuro.cli._common import model_and_inputs
from dineuro.data.normalize import NormalizationConfig
from dineuro.data.synth import PRESETS, synthesize_stack
from dineuro.defaults import DEFAULT_OVERLAP
from dineuro.errors import InputError
from dineuro.evaluate import dice
from dineuro.io import read_swc, read_volume, write_volume
from dineuro.models.build import build_model
from dineuro.predict import WindowGrid, sliding_window_predict
from dineuro.trace import trace_file, traced_mask

#: Dice the packaged model must reach on a stack of the small preset (it was trained on the
#: realistic preset only; an untrained network scores near 0).
DICE_FLOOR = 0.45


@pytest.fixture(scope="module")
def small_stack():
    return synthesize_stack(PRESETS["small"], 1)


def test_packaged_default_model_segments_a_synthetic_stack(small_stack):
    network, meta = load_model(resolve_model("default"))
    card = meta["card"]
    assert card["network"]["size"] == meta["model_config"]["size"]
    assert card["normalization"] == meta["normalization"]  # what predict will do, on record
    assert default_model_path().stat().st_size <= 10_000_000
    # the card beside the weights is the one inside them: re-scoring rewrites both together
    beside = json.loads((default_model_path().parent / DEFAULT_CARD_FILE).read_text())
    assert beside == card
    for scores in card["scores"].values():
        assert {"model", "gold mask", "raw image"} <= set(scores)
        assert 0 <= scores["model"]["labelled_precision"][0] <= 1
    norm = NormalizationConfig.from_dict(meta["normalization"])
    prob = sliding_window_predict(network, norm.normalize(small_stack.image),
                                  meta["model_config"]["crop"])
    assert dice(prob > 0.5, small_stack.label) >= DICE_FLOOR


def test_run_without_a_model_uses_the_default_and_writes_a_tree(small_stack, tmp_path):
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    result = invoke("run", stack, "-o", tmp_path / "out", "--device", "cpu")
    assert result.code == 0, result.err
    tree = read_swc(tmp_path / "out" / "stack.swc")
    assert len(tree) > 10


def test_run_traces_the_map_it_wrote_and_reports_its_windows(small_stack, tmp_path):
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    result = invoke("run", stack, "-o", tmp_path / "out", "--all-windows", "--precision",
                    "fp32", "--threads", "1", "--prob-dtype", "float32")
    assert result.code == 0, result.err
    crop = load_model(resolve_model(None))[1]["model_config"]["crop"]
    windows = WindowGrid.of(small_stack.image.shape, crop, DEFAULT_OVERLAP).n_windows
    assert f"network on {windows} of {windows} windows (fp32)" in result.err
    # The map traced in memory is the float32 map written, with the stack beside it: tracing
    # the file with the stack as its image gives the same SWC.
    again = trace_file(tmp_path / "out" / "stack_prob.tif", tmp_path / "again.swc", image=stack)
    written = read_swc(tmp_path / "out" / "stack.swc")
    np.testing.assert_allclose(written.xyz, again.xyz, atol=1e-3)
    assert np.array_equal(written.parent_index, again.parent_index)
    assert f"({len(written.roots)} trees)" in result.err
    prob = read_volume(tmp_path / "out" / "stack_prob.tif").array
    np.testing.assert_array_equal(read_volume(tmp_path / "out" / "stack_mask.tif").array,
                                  traced_mask(prob > 0.5, written))


def test_run_mask_threshold_writes_every_voxel_above_it(small_stack, tmp_path):
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    result = invoke("run", stack, "-o", tmp_path / "out", "--mask", "threshold", "--threads",
                    "1", "--prob-dtype", "float32", "--threshold", "0.3")
    assert result.code == 0, result.err
    prob = read_volume(tmp_path / "out" / "stack_prob.tif").array
    np.testing.assert_array_equal(read_volume(tmp_path / "out" / "stack_mask.tif").array,
                                  prob > 0.3)


def test_run_refuses_a_bad_option_before_predicting(small_stack, tmp_path):
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    result = invoke("run", stack, "-o", tmp_path / "out", "--prob-dtype", "float16")
    assert result.code == 2 and "--prob-dtype" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_old_positional_model_form_is_still_read():
    assert model_and_inputs(None, [Path("best.pt"), Path("a.tif")]) == ("best.pt",
                                                                        [Path("a.tif")])
    assert model_and_inputs(None, [Path("a.tif")]) == ("default", [Path("a.tif")])
    assert model_and_inputs("m.pt", [Path("a.tif"), Path("b.tif")]) == (
        "m.pt", [Path("a.tif"), Path("b.tif")])


def test_missing_default_model_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setattr("dineuro.checkpoint.default_model_path", lambda: tmp_path / "none.pt")
    with pytest.raises(InputError, match="default model is missing"):
        resolve_model(None)
    assert resolve_model(tmp_path / "mine.pt") == tmp_path / "mine.pt"


def test_exported_checkpoint_is_half_size_and_predicts_as_its_source(tmp_path):
    torch.manual_seed(0)
    net = build_model("tiny", transfer="scratch", crop=(32, 32, 32))
    source = save_checkpoint(tmp_path / "best.pt", net, step=5, val_dice=0.5,
                             normalization=NormalizationConfig().to_dict(),
                             resume={"optimizer": {"big": torch.zeros(1000)}})
    slim = export_checkpoint(source, tmp_path / "slim.pt", card={"name": "test"})
    data = load_checkpoint(slim)
    assert "resume" not in data and data["card"] == {"name": "test"} and data["step"] == 5
    assert all(v.dtype == torch.float16 for v in data["state_dict"].values()
               if v.is_floating_point())
    assert slim.stat().st_size < 0.6 * source.stat().st_size
    volume = np.random.default_rng(0).random((32, 40, 40), dtype=np.float32)
    original = sliding_window_predict(load_model(source)[0], volume, 32, precision="fp32")
    exported = sliding_window_predict(load_model(slim)[0], volume, 32, precision="fp32")
    assert np.abs(original - exported).max() < 5e-3  # float16 rounding of the weights only


def test_model_card_verb_prints_the_card():
    result = invoke("model-card")
    assert result.code == 0, result.err
    assert "dineuro default model" in result.out and "scores" in result.out


def test_predict_through_a_wider_window_runs_fewer_windows_and_still_segments(small_stack,
                                                                           tmp_path):
    """``--window 48,112,112 --overlap 0.25`` on a 48x128x128 stack: one window along z and
    ceil((128 - 112) / 84) + 1 = 2 along y and x, 4 in all, and the map is the network's
    through those windows, not its own crop's."""
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    assert small_stack.image.shape == (48, 128, 128)
    result = invoke("predict", stack, "-o", tmp_path / "out", "--device", "cpu", "--window",
                    "48,112,112", "--overlap", "0.25", "--batch-size", "1", "--all-windows",
                    "--prob-dtype", "float32")
    assert result.code == 0, result.err
    assert "network on 4 of 4 windows" in result.err
    network, meta = load_model(resolve_model("default"))
    norm = NormalizationConfig.from_dict(meta["normalization"])
    assert tuple(network.config["crop"]) != (48, 112, 112)  # a window that is not its own
    expected = sliding_window_predict(network.at_window((48, 112, 112)),
                                      norm.normalize(small_stack.image), (48, 112, 112),
                                      overlap=0.25, batch_size=1, skip_empty=False)
    prob = read_volume(tmp_path / "out" / "stack_prob.tif").array
    np.testing.assert_array_equal(prob, expected)
    assert dice(prob > 0.5, small_stack.label) >= DICE_FLOOR


def test_a_window_that_does_not_fit_the_patch_is_one_sentence(small_stack, tmp_path):
    stack = tmp_path / "stack.tif"
    write_volume(stack, small_stack.image, small_stack.spacing)
    result = invoke("run", stack, "-o", tmp_path / "out", "--window", "48,100,96")
    assert result.code == 2 and "Traceback" not in result.err
    assert "--window" in result.err and "multiple of the patch" in result.err
    assert not (tmp_path / "out").exists()


def test_re_exporting_a_shipped_checkpoint_in_place_keeps_its_weights(tmp_path):
    """How the shipped model is re-scored (``benchmarks/model_card.py`` given the packaged
    file): exported onto itself with a new card, its float16 weights come back bit for bit and
    its step and validation Dice stay."""
    torch.manual_seed(1)
    net = build_model("tiny", transfer="scratch", crop=(32, 32, 32))
    source = save_checkpoint(tmp_path / "best.pt", net, step=7, val_dice=0.25,
                             normalization=NormalizationConfig().to_dict())
    slim = export_checkpoint(source, tmp_path / "slim.pt", card={"scores": "old"})
    before = load_checkpoint(slim)["state_dict"]
    export_checkpoint(slim, slim, card={"scores": "new"})
    after = load_checkpoint(slim)
    assert after["card"] == {"scores": "new"} and after["step"] == 7
    assert after["val_dice"] == 0.25
    assert before.keys() == after["state_dict"].keys()
    assert all(torch.equal(before[k], after["state_dict"][k]) for k in before)
