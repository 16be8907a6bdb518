"""Inputs that used to pass silently or fail without naming their file, through the command line.

Each refusal must be one line on stderr naming the file, exit code 2 and nothing written:

- an SWC lying entirely outside its stack is refused by ``evaluate`` (gold or trace) in the very
  sentence ``show --swc`` uses, instead of scoring as a complete miss;
- a checkpoint with NaN or infinite weights is refused when prediction loads it, naming the
  first such tensor, instead of predicting NaN everywhere;
- a checkpoint with bad normalisation settings, or a crop that is not a multiple of its patch,
  is refused naming the checkpoint.

And a comment-only SWC (what ``dineuro trace`` writes for an empty map) is an empty
reconstruction that ``compare`` and ``evaluate`` score, with the values worked out by hand below;
an empty gold SWC is refused.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import assert_input_error, invoke, run_script, snapshot

from dineuro.checkpoint import load_checkpoint, load_for_prediction, save_checkpoint
from dineuro.data.normalize import NormalizationConfig
from dineuro.errors import InputError
from dineuro.evaluate import compare_trees
from dineuro.io import SwcTree, write_swc, write_volume
from dineuro.models.build import build_model

SHAPE = (8, 16, 16)  # (z, y, x)
CROP, PATCH = (16, 32, 32), (8, 16, 16)  # the smallest network the tiny preset builds
OUTSIDE = "lies entirely outside the stack of shape (8, 16, 16) (z, y, x)"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chain(*xyz) -> SwcTree:
    """Nodes (x, y, z) joined one after the other, the first being the root."""
    return SwcTree(np.arange(1, len(xyz) + 1), [3] * len(xyz), xyz, [1.0] * len(xyz),
                   [-1, *range(1, len(xyz))])


INSIDE = chain((2, 8, 4), (13, 8, 4))
FAR = chain((500, 500, 500), (510, 500, 500))  # e.g. physical units instead of voxels
# An L: edges of length 3 and 4, sampled at int(1 + L + 0.5) = 4 and 5 points; 2 tips.
GOLD_L = chain((2, 2, 2), (5, 2, 2), (5, 6, 2))


def box_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:6, 6:11, 2:14] = 1
    return mask


def write_stack(gold, pred, name, gold_swc, trace, prediction=True):
    """A stack of a plain gold folder (mask and SWC) with its prediction and trace."""
    write_volume(gold / f"{name}.tif", box_mask())
    write_swc(gold / f"{name}.swc", gold_swc, allow_empty=True)
    if prediction:
        write_volume(pred / f"{name}_mask.tif", box_mask())
    write_swc(pred / f"{name}.swc", trace, allow_empty=True)


def assert_refused_after_progress(result, path, *fragments: str) -> None:
    """:func:`assert_input_error` for a verb that may have drawn its progress bar on stderr
    before failing (as ``evaluate`` does): one error line, the last, and nothing else but the
    bar."""
    errors = [line for line in result.err_lines if line.startswith("error:")]
    assert len(errors) == 1 and result.err_lines[-1] == errors[0], result.err
    assert all(line.startswith("scoring stacks") for line in result.err_lines[:-1]), result.err
    assert_input_error(replace(result, err=errors[0]), path, *fragments)


def assert_nothing_written(before: dict, *folders) -> None:
    assert {str(f): snapshot(f) for f in folders} == before


# --- 6: an SWC outside its stack ---------------------------------------------------------------

@pytest.mark.parametrize("bad", ["gold", "trace", "trace without prediction"])
def test_evaluate_refuses_an_swc_outside_its_stack(tmp_path, bad):
    gold, pred, out = (tmp_path / name for name in ("gold", "pred", "out"))
    out.mkdir()
    if bad == "trace without prediction":  # read for its trace alone: another code path
        write_stack(gold, pred, "a", INSIDE, INSIDE)
        write_stack(gold, pred, "b", INSIDE, FAR, prediction=False)
        culprit = pred / "b.swc"
    else:
        write_stack(gold, pred, "a", FAR if bad == "gold" else INSIDE,
                    FAR if bad == "trace" else INSIDE)
        culprit = (gold if bad == "gold" else pred) / "a.swc"
    before = {str(f): snapshot(f) for f in (gold, pred, out)}
    result = invoke("evaluate", pred, gold, "-o", out)
    assert_refused_after_progress(result, culprit, OUTSIDE, "x 500..510")
    assert_nothing_written(before, gold, pred, out)


def test_evaluate_and_show_refuse_an_outside_swc_in_the_same_sentence(tmp_path):
    gold, pred, out = tmp_path / "gold", tmp_path / "pred", tmp_path / "out"
    write_stack(gold, pred, "a", FAR, INSIDE)
    shown = invoke("show", gold / "a.tif", "--swc", gold / "a.swc", "-o", tmp_path / "a.png")
    evaluated = invoke("evaluate", pred, gold, "-o", out)
    assert_input_error(shown, gold / "a.swc", OUTSIDE)
    assert_refused_after_progress(evaluated, gold / "a.swc", OUTSIDE)
    assert evaluated.err_lines[-1] == shown.err_lines[0]
    assert not (tmp_path / "a.png").exists() and not out.exists()


def test_evaluate_still_scores_an_swc_partly_outside_its_stack(tmp_path):
    # The rule is about SWCs with no node inside: one that leaves the stack is a real trace.
    gold, pred = tmp_path / "gold", tmp_path / "pred"
    write_stack(gold, pred, "a", INSIDE, chain((2, 8, 4), (13, 8, 4), (40, 8, 4)))
    result = invoke("evaluate", pred, gold, "-o", tmp_path)
    assert result.code == 0, result.err
    with open(tmp_path / "metrics.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    # The edge of 11 is matched (12 points); of the edge of 27 beyond the gold's end at x = 13,
    # 28 points of 27 / 28 each, those at x = 13 and 14 are within 2 of the gold.
    assert float(row["swc_precision"]) == pytest.approx((11 + 2 * 27 / 28) / (11 + 27))
    assert float(row["swc_recall"]) == 1.0


# --- 7 and 10: checkpoints that cannot predict -----------------------------------------------

def tiny_checkpoint(path, **meta):
    meta.setdefault("normalization", NormalizationConfig().to_dict())
    torch.manual_seed(0)
    return save_checkpoint(path, build_model("tiny", "scratch", crop=CROP, patch=PATCH), **meta)


def rewritten(path, edit) -> None:
    """Change a saved checkpoint's entries in place, as a damaged or diverged one would be."""
    data = load_checkpoint(path)
    edit(data)
    torch.save(data, path)


def poisonable(checkpoint) -> list[str]:
    """Names of the weight tensors with a second element, in the checkpoint's order."""
    return [name for name, tensor in load_checkpoint(checkpoint)["state_dict"].items()
            if tensor.is_floating_point() and tensor.numel() > 1]


def poison(value: float, *names: str):
    def edit(data):
        for name in names:
            data["state_dict"][name].view(-1)[1] = value
    return edit


@pytest.fixture
def stack(tmp_path):
    path = tmp_path / "stack.tif"
    write_volume(path, np.random.default_rng(0).integers(0, 1000, SHAPE, dtype=np.uint16))
    return path


def predict(checkpoint, stack, out):
    return invoke("predict", stack, "--model", checkpoint, "-o", out, "--device", "cpu")


@pytest.mark.parametrize(("value", "what"), [(math.nan, "NaN"), (math.inf, "infinite"),
                                             (-math.inf, "infinite")])
def test_predict_refuses_a_checkpoint_with_non_finite_weights(tmp_path, stack, value, what):
    checkpoint = tiny_checkpoint(tmp_path / "diverged.pt")
    names = poisonable(checkpoint)
    first, later = names[3], names[-2]  # the message names the first in the file's order
    rewritten(checkpoint, poison(value, later, first))
    out = tmp_path / "out"
    result = predict(checkpoint, stack, out)
    assert_input_error(result, checkpoint, f"its weight tensor {first!r} holds {what} values",
                       "diverged")
    assert not out.exists()


def test_the_installed_script_refuses_a_nan_checkpoint_in_one_line(tmp_path, stack):
    checkpoint = tiny_checkpoint(tmp_path / "diverged.pt")
    name = poisonable(checkpoint)[0]
    rewritten(checkpoint, poison(math.nan, name))
    result = run_script("predict", stack, "--model", checkpoint, "-o", tmp_path / "out",
                        "--device", "cpu")
    assert_input_error(result, checkpoint, f"{name!r} holds NaN values")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_whose_crop_is_not_a_multiple_of_its_patch_is_named(tmp_path, stack):
    checkpoint = tiny_checkpoint(tmp_path / "odd_crop.pt")
    rewritten(checkpoint, lambda data: data["model_config"].update(crop=[20, 32, 32]))
    result = predict(checkpoint, stack, tmp_path / "out")
    assert_input_error(result, checkpoint, "crop (20, 32, 32) should be a multiple of the "
                                           "patch (8, 16, 16)")
    assert not (tmp_path / "out").exists()


BAD_NORMALIZATION = [
    ({"method": "percentile", "low": 99.0, "high": 1.0}, "invalid normalisation settings"),
    ({"method": "percentile", "low": 1.0}, "missing ['high']"),
    ("percentile", "should be a mapping"),
]


@pytest.mark.parametrize(("settings", "fragment"), BAD_NORMALIZATION)
def test_load_for_prediction_names_the_checkpoint_of_bad_normalisation(tmp_path, settings,
                                                                       fragment):
    checkpoint = tiny_checkpoint(tmp_path / "bad_norm.pt", normalization=settings)
    with pytest.raises(InputError, match=re.escape(fragment)) as info:
        load_for_prediction(checkpoint)
    assert str(info.value).startswith(f"{checkpoint}: ") and "\n" not in str(info.value)


def test_load_for_prediction_names_a_checkpoint_without_normalisation(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "no_norm.pt")
    rewritten(checkpoint, lambda data: data.pop("normalization"))
    with pytest.raises(InputError, match="lacks the 'normalization' entry") as info:
        load_for_prediction(checkpoint)
    assert str(info.value).startswith(f"{checkpoint}: ")


def test_load_for_prediction_gives_what_predict_needs(tmp_path):
    norm = NormalizationConfig(low=0.5, high=99.0)
    checkpoint = tiny_checkpoint(tmp_path / "good.pt", normalization=norm.to_dict())
    network, crop, loaded = load_for_prediction(checkpoint)
    assert (tuple(crop), loaded, network.training) == (CROP, norm, False)


@pytest.mark.parametrize(("settings", "fragment"), BAD_NORMALIZATION)
def test_predict_names_the_checkpoint_of_bad_normalisation(tmp_path, stack, settings, fragment):
    checkpoint = tiny_checkpoint(tmp_path / "bad_norm.pt", normalization=settings)
    result = predict(checkpoint, stack, tmp_path / "out")
    assert_input_error(result, checkpoint, fragment)
    assert not (tmp_path / "out").exists()


# --- 9: an empty reconstruction ------------------------------------------------------------

def refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture
def empty_trace(tmp_path):
    """What ``dineuro trace`` writes for a map with nothing in it."""
    write_volume(tmp_path / "pred" / "a_prob.tif", np.zeros(SHAPE, np.float32))
    result = invoke("trace", tmp_path / "pred" / "a_prob.tif", "-o", tmp_path / "pred" / "a.swc")
    assert result.code == 0, result.err
    text = (tmp_path / "pred" / "a.swc").read_text()
    assert text.startswith("#") and all(line.startswith("#") for line in text.splitlines())
    return tmp_path / "pred" / "a.swc"


#: compare's JSON for the empty trace against GOLD_L, by hand: no test points, so what averages
#: over them is undefined (null); every gold point is apart (inf distance: null too); nothing of
#: the gold's 3 + 4 = 7 units of length is matched.
EMPTY_VS_L = {
    "threshold": 2.0, "esa": None, "dsa": None, "pds": None, "precision": None, "recall": 0.0,
    "f1": 0.0, "esa_test_to_gold": None, "esa_gold_to_test": None, "dsa_test_to_gold": None,
    "dsa_gold_to_test": None, "pds_test_to_gold": None, "pds_gold_to_test": 1.0,
    "test_length": 0.0, "gold_length": 7.0, "test_nodes": 0, "gold_nodes": 3, "test_points": 0,
    "gold_points": 4 + 5, "test_tips": 0, "gold_tips": 2, "test_hairiness": None,
    "gold_hairiness": pytest.approx(100 * 2 / 7), "hairiness_ratio": None,
}


def test_compare_scores_an_empty_trace_as_an_empty_reconstruction(tmp_path, empty_trace):
    gold = write_swc(tmp_path / "gold.swc", GOLD_L)
    result = invoke("compare", empty_trace, gold, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out, parse_constant=refuse_constant) == EMPTY_VS_L
    table = invoke("compare", empty_trace, gold)
    assert table.code == 0, table.err
    rows = {cells[0]: cells[1:] for cells in (
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in table.out.splitlines() if line.startswith("│"))}
    assert rows["ESA"] == rows["DSA"] == ["nan", "inf", "nan"]  # test -> gold, gold -> test, both
    assert rows["PDS"] == ["nan", "1.0000", "nan"]
    assert rows["precision, recall; F1"] == ["nan", "0.0000", "0.0000"]
    assert (rows["length"], rows["nodes"]) == (["0.0", "7.0"], ["0", "3"])


def test_the_empty_scores_in_memory_keep_nan_and_inf():
    empty = SwcTree([], [], np.zeros((0, 3)), [], [])
    result = compare_trees(empty, GOLD_L)
    assert all(math.isnan(getattr(result, key)) for key in (
        "esa", "dsa", "pds", "precision", "esa_test_to_gold", "dsa_test_to_gold",
        "pds_test_to_gold"))
    assert result.esa_gold_to_test == result.dsa_gold_to_test == math.inf
    assert (result.recall, result.f1, result.pds_gold_to_test) == (0.0, 0.0, 1.0)


def test_evaluate_scores_an_empty_trace(tmp_path, empty_trace):
    gold = tmp_path / "gold"
    write_volume(gold / "a.tif", box_mask())
    write_swc(gold / "a.swc", GOLD_L)
    write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
    result = invoke("evaluate", tmp_path / "pred", gold, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert {key: row[key] for key in ("trace", "esa", "dsa", "pds", "swc_precision",
                                      "swc_recall", "swc_f1", "swc_hairiness_ratio", "note")} \
        == {"trace": "a.swc", "esa": "", "dsa": "", "pds": "", "swc_precision": "",
            "swc_recall": "0.0", "swc_f1": "0.0", "swc_hairiness_ratio": "", "note": "empty trace"}
    assert "1 empty trace(s)" in (tmp_path / "out" / "metrics.md").read_text()


@pytest.mark.parametrize("verb", ["compare", "evaluate"])
def test_an_empty_gold_swc_is_refused(tmp_path, empty_trace, verb):
    gold = tmp_path / "gold"
    write_swc(gold / "a.swc", SwcTree([], [], np.zeros((0, 3)), [], [], ["no nodes"]),
              allow_empty=True)
    write_swc(tmp_path / "trace.swc", INSIDE)
    out = tmp_path / "out"
    out.mkdir()
    if verb == "compare":
        result = invoke("compare", tmp_path / "trace.swc", gold / "a.swc", "--json")
        assert result.out == ""
    else:
        write_volume(gold / "a.tif", box_mask())
        write_volume(tmp_path / "pred" / "a_mask.tif", box_mask())
        before = {str(f): snapshot(f) for f in (gold, tmp_path / "pred", out)}
        result = invoke("evaluate", tmp_path / "pred", gold, "-o", out)
        assert_nothing_written(before, gold, tmp_path / "pred", out)
    assert_refused_after_progress(result, gold / "a.swc", "contains no nodes, so there is no "
                                                          "gold reconstruction to score against")
