"""The background view: the network applied to the stack and to the stack less its blur, the
larger probability kept; in memory, from files, block by block and through the Predictor and
the command line, each checked against the two maps computed separately."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile
import torch
import zarr
from helpers import invoke
from scipy import ndimage
from torch import nn

from dineuro import Predictor
from dineuro.data.normalize import NormalizationConfig, percentiles_of, rescale
from dineuro.errors import InputError
from dineuro.io.volume import read_volume
from dineuro.predict import (
    WindowGrid,
    WindowStats,
    predict_blocks,
    predict_raw,
    sliding_window_predict,
    views_of,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CROP = (16, 32, 32)


def _model(seed: int = 0) -> nn.Module:
    """A small random conv net whose output depends on a voxel's neighbourhood."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, 2, 3, padding=1))


def _hazy_stack(shape=(24, 48, 56), seed=0) -> np.ndarray:
    """Noise, a bright slow ramp across x (uneven lighting) and a dim line along it."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 3000, shape[2])[None, None, :]
    stack = rng.gamma(2.0, 200.0, size=shape) + ramp
    stack[shape[0] // 2, shape[1] // 2, :] += 1500
    return stack.astype(np.uint16)


def _two_maps(model, raw, sigma, **options):
    """The plain map and that of the stack less its blur, each computed on its own: limits
    of the raw stack, then (for the second) a Gaussian blur of ``sigma`` subtracted, clip 0."""
    plain = rescale(raw, *percentiles_of(raw))
    less = np.clip(plain - ndimage.gaussian_filter(plain, sigma, truncate=4.0), 0, None)
    return (sliding_window_predict(model, plain, CROP, **options),
            sliding_window_predict(model, less.astype(np.float32), CROP, **options))


def test_views_of_adds_the_background_view_and_refuses_what_cannot_be_one():
    norm = NormalizationConfig(low=0.5, high=99.5)
    assert views_of(norm, 0) == (norm,)
    plain, view = views_of(norm, 4)
    assert plain == norm and view == dataclasses.replace(norm, background=4.0)
    for bad in (-1, float("nan"), float("inf"), "four"):
        with pytest.raises(InputError, match="background_view should be a sigma"):
            views_of(norm, bad)
    trained_with_one = NormalizationConfig(background=2)
    assert views_of(trained_with_one, 0) == (trained_with_one,)
    with pytest.raises(InputError, match="already sees each stack less its background"):
        views_of(trained_with_one, 4)


def test_in_memory_map_is_the_larger_of_the_two_maps_and_counts_both_passes():
    model, raw = _model(), _hazy_stack()
    plain, less = _two_maps(model, raw, 3.0, precision="fp32")
    stats, calls = WindowStats(), []
    prob = predict_raw(model, raw, CROP, NormalizationConfig(), background_view=3.0,
                       precision="fp32", stats=stats,
                       progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(prob, np.maximum(plain, less), atol=1e-6)
    assert (prob >= plain - 1e-6).all() and np.abs(prob - plain).max() > 1e-3  # the view adds
    windows = WindowGrid.of(raw.shape, CROP, 0.25).n_windows
    assert stats.windows == 2 * windows and stats.precision == "fp32"
    done, totals = zip(*calls, strict=True)
    assert list(done) == sorted(done) and set(totals) == {2 * windows} and done[-1] == 2 * windows
    # Without the view, the plain map exactly.
    np.testing.assert_array_equal(
        predict_raw(model, raw, CROP, NormalizationConfig(), precision="fp32"),
        sliding_window_predict(model, rescale(raw, *percentiles_of(raw)), CROP,
                               precision="fp32"))


def test_block_wise_prediction_with_the_view_equals_in_memory(tmp_path):
    model, raw = _model(seed=2), _hazy_stack((30, 70, 60), seed=3)
    norm = NormalizationConfig()
    src = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=raw.shape, chunks=(8, 32, 32),
                            dtype=raw.dtype)
    src[...] = raw
    in_memory = predict_raw(model, raw, CROP, norm, background_view=2.5, precision="fp32")
    calls = []
    blocks = predict_blocks(model, src, tmp_path / "prob.zarr", CROP, norm, block=(16, 40, 40),
                            batch_size=3, precision="fp32", prob_dtype="float32",
                            background_view=2.5,
                            progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(blocks[...], in_memory, atol=1e-5)
    assert calls[-1][0] == calls[-1][1]  # the bar ends full, over both views' windows
    attrs = zarr.open_group(str(tmp_path / "prob.zarr"), mode="r").attrs["dineuro"]
    assert attrs["background_view"] == 2.5 and attrs["normalization"] == norm.to_dict()


def test_predictor_applies_the_view_and_refuses_one_its_network_cannot_take(tmp_path):
    model, raw = _model(seed=5), _hazy_stack(seed=6)
    predictor = Predictor(model, CROP, NormalizationConfig(), "a conv net", precision="fp32",
                          background_view=3.0)
    plain, less = _two_maps(model, raw, 3.0, precision="fp32")
    np.testing.assert_allclose(predictor.predict(raw), np.maximum(plain, less), atol=1e-6)
    tifffile.imwrite(tmp_path / "hazy.tif", raw)
    np.testing.assert_allclose(predictor.predict_file(tmp_path / "hazy.tif").array,
                               np.maximum(plain, less), atol=1e-6)
    assert "a view less a background of sigma 3 voxels" in predictor.describe()
    assert "view" not in dataclasses.replace(predictor, background_view=0).describe()
    with pytest.raises(InputError, match="already sees each stack less its background"):
        Predictor(model, CROP, NormalizationConfig(background=2), "x", background_view=3.0)


def test_command_line_predict_and_run_take_the_view(tmp_path):
    stack = tmp_path / "hazy.tif"
    tifffile.imwrite(stack, _hazy_stack((24, 64, 64), seed=7))
    maps = {}
    for sigma in ("0", "4"):
        out = tmp_path / f"out{sigma}"
        result = invoke("predict", stack, "-o", out, "--device", "cpu", "--precision", "fp32",
                        "--prob-dtype", "float32", "--background-view", sigma)
        assert result.code == 0, result.err
        assert ("two views" in result.err) == (sigma == "4")
        maps[sigma] = read_volume(out / "hazy_prob.tif").array
    expected = Predictor.from_checkpoint("default", device="cpu", precision="fp32",
                                         background_view=4).predict(tifffile.imread(stack))
    np.testing.assert_allclose(maps["4"], expected, atol=1e-6)
    assert (maps["4"] >= maps["0"] - 1e-6).all()
    result = invoke("run", stack, "-o", tmp_path / "bad", "--background-view", "-1")
    assert result.code != 0 and not (tmp_path / "bad").exists()
