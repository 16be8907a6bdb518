"""The Predictor: a checkpoint loaded once, applied as the functions it wraps apply it.

Each case computes the same result a second way, from the lower-level functions (load the
checkpoint, normalise, predict, trace), and checks the object agrees with it.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from dineuro import Predictor
from dineuro.checkpoint import load_model, resolve_model
from dineuro.data.normalize import NormalizationConfig
from dineuro.data.synth import PRESETS, synthesize_stack
from dineuro.errors import InputError
from dineuro.io import read_swc, read_volume, write_volume
from dineuro.predict import WindowGrid, WindowStats, sliding_window_predict
from dineuro.trace import trace_file, traced_mask


@pytest.fixture(scope="module")
def stack():
    return synthesize_stack(PRESETS["small"], 2)


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint("default", device="cpu", precision="fp32")


def test_from_checkpoint_predicts_what_the_checkpoint_predicts(predictor, stack):
    network, meta = load_model(resolve_model("default"))
    norm = NormalizationConfig.from_dict(meta["normalization"])
    expected = sliding_window_predict(network, norm.normalize(stack.image),
                                      meta["model_config"]["crop"], precision="fp32")
    stats = WindowStats()
    prob = predictor.predict(stack.image, stats=stats)
    np.testing.assert_array_equal(prob, expected)
    assert predictor.crop == tuple(meta["model_config"]["crop"])
    assert stats.windows == WindowGrid.of(stack.image.shape, predictor.crop, 0.5).n_windows


def test_fields_change_how_it_predicts(predictor, stack):
    """Every method reads the options when called: a replaced overlap is the overlap used."""
    coarse = dataclasses.replace(predictor, overlap=0.25, skip_empty=False)
    expected = sliding_window_predict(predictor.network,
                                      predictor.normalization.normalize(stack.image),
                                      predictor.crop, overlap=0.25, precision="fp32",
                                      skip_empty=False)
    np.testing.assert_array_equal(coarse.predict(stack.image), expected)


def test_describe_names_the_weights_window_and_precision():
    wide = Predictor.from_checkpoint("default", device="cpu", window=(48, 96, 96),
                                     overlap=0.25, precision="fp32")
    line = wide.describe()
    assert line.startswith(str(resolve_model("default")))
    assert "window 48x96x96" in line and "overlap 0.25" in line and "cpu fp32" in line


def test_a_window_off_the_patch_grid_is_refused():
    with pytest.raises(InputError, match="--window"):
        Predictor.from_checkpoint("default", device="cpu", window=(40, 96, 96))


def test_run_writes_the_map_mask_and_the_trace_of_the_map(predictor, stack, tmp_path):
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    out = tmp_path / "out"
    out.mkdir()
    done = predictor.run(path, out, prob_dtype="float32")
    prob_path, mask_path, swc_path = done.outputs
    assert [p.name for p in done.outputs] == ["neuron_prob.tif", "neuron_mask.tif", "neuron.swc"]
    prob = read_volume(prob_path).array
    np.testing.assert_allclose(prob, predictor.predict(stack.image), atol=0)
    # The map traced in memory is the float32 map written, with the stack beside it: tracing
    # the file with the stack as its image gives the same SWC.
    again = trace_file(prob_path, tmp_path / "again.swc", image=path)
    written = read_swc(swc_path)
    # The mask: the pieces of the map above 0.5 that the written SWC runs through.
    mask = read_volume(mask_path).array
    np.testing.assert_array_equal(mask, traced_mask(prob > 0.5, written).astype(np.uint8))
    assert 0 < mask.sum() < (prob > 0.5).sum()
    np.testing.assert_allclose(written.xyz, again.xyz, atol=1e-3)
    np.testing.assert_allclose(done.tree.xyz, written.xyz, atol=1e-3)
    assert done.untraced is None and len(written) > 0
    assert done.stats.computed <= done.stats.windows and done.stats.precision == "fp32"


def test_run_with_the_threshold_mask_writes_every_voxel_above_it(predictor, stack, tmp_path):
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    done = predictor.run(path, tmp_path, prob_dtype="float32", mask="threshold", threshold=0.4)
    prob = read_volume(done.outputs[0]).array
    np.testing.assert_array_equal(read_volume(done.outputs[1]).array,
                                  (prob > 0.4).astype(np.uint8))


def test_run_refuses_an_unknown_mask_before_predicting(predictor, stack, tmp_path, monkeypatch):
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: pytest.fail("predicted"))
    with pytest.raises(InputError, match="mask should be one of"):
        predictor.run(path, tmp_path, mask="all")
    assert not list(tmp_path.glob("neuron_*"))


class _Everywhere(torch.nn.Module):
    """Logits that say neurite everywhere: a map that is all foreground, which no tracer can
    turn into neurites."""

    def forward(self, x):
        return torch.cat([-torch.ones_like(x), torch.ones_like(x)], dim=1)


def test_run_of_an_untraceable_map_writes_an_swc_that_says_why(stack, tmp_path):
    path = tmp_path / "flooded.tif"
    write_volume(path, stack.image, stack.spacing)
    blank = Predictor(_Everywhere(), (16, 16, 16), NormalizationConfig(), "everywhere",
                      precision="fp32", skip_empty=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = blank.run(path, tmp_path)
    assert done.untraced is not None
    assert any("not traced" in str(w.message) for w in caught)
    assert all(p.exists() for p in done.outputs)
    text = done.outputs[2].read_text()
    assert "not traced" in text and not any(line[:1].isdigit() for line in text.splitlines())
    assert read_volume(done.outputs[1]).array.min() == 1


def test_run_refuses_existing_outputs_before_predicting(predictor, stack, tmp_path,
                                                         monkeypatch):
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    (tmp_path / "neuron_mask.tif").write_bytes(b"mine")
    monkeypatch.setattr(Predictor, "predict_file", lambda *a, **k: pytest.fail("predicted"))
    with pytest.raises(InputError, match="exists"):
        predictor.run(path, tmp_path)
    assert (tmp_path / "neuron_mask.tif").read_bytes() == b"mine"
    assert not (tmp_path / "neuron_prob.tif").exists()


def test_run_of_an_array_or_a_file_is_predict_then_trace(predictor, stack, tmp_path):
    """``dineuro.run`` is the notebook form of ``dineuro run``: the map the Predictor gives,
    traced with the stack beside it and its spacing (read from a file, given for an array)."""
    import dineuro
    from dineuro.trace import trace

    expected = Predictor.from_checkpoint("default", device="cpu").predict(stack.image)
    prob, tree = dineuro.run(stack.image, spacing=stack.spacing, device="cpu", units="um")
    np.testing.assert_array_equal(prob, expected)
    reference = trace(expected, stack.spacing, kind="probability", image=stack.image,
                      units="um")
    np.testing.assert_allclose(tree.xyz, reference.xyz)
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    prob_file, tree_file = dineuro.run(path, device="cpu", units="um")
    np.testing.assert_array_equal(prob_file, expected)
    np.testing.assert_allclose(tree_file.xyz, reference.xyz, atol=1e-6)


def test_run_stores_the_map_as_uint8_by_default(predictor, stack, tmp_path):
    """By default the map is round(p * 255) in uint8: a quarter of float32's bytes, and it
    compresses (most voxels are exactly 0); traced from memory, so the SWC is the float map's."""
    path = tmp_path / "neuron.tif"
    write_volume(path, stack.image, stack.spacing)
    float_dir, byte_dir = tmp_path / "f", tmp_path / "b"
    float_dir.mkdir()
    byte_dir.mkdir()
    exact = predictor.run(path, float_dir, prob_dtype="float32")
    stored = predictor.run(path, byte_dir)
    prob = read_volume(exact.outputs[0]).array
    np.testing.assert_array_equal(read_volume(stored.outputs[0]).array,
                                  np.round(prob * 255).astype(np.uint8))
    assert stored.outputs[2].read_text() == exact.outputs[2].read_text()
    assert stored.outputs[0].stat().st_size < exact.outputs[0].stat().st_size / 4
