"""Sliding-window inference against closed forms, MONAI, flipped predictions and block-wise zarr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from monai.inferers import sliding_window_inference
from torch import nn

from dineuro.data.normalize import NormalizationConfig
from dineuro.defaults import PASS_VOXELS
from dineuro.errors import InputError
from dineuro.io.volume import read_volume, write_volume
from dineuro.predict import (
    WindowGrid,
    encode_probability,
    output_paths,
    predict_blocks,
    predict_stack,
    resolve_batch_size,
    sliding_window_predict,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: The exact path: float32 arithmetic and every window computed, for closed-form comparisons.
EXACT = {"precision": "fp32", "skip_empty": False}


def _voxelwise_model() -> nn.Module:
    """Logits (-x, x) for every voxel: probability sigmoid(2 x), whatever the window."""
    conv = nn.Conv3d(1, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1, 1))
    return conv


def _context_model(seed: int = 0) -> nn.Module:
    """A small random conv net: output depends on neighbours and on the window edges."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, 2, 3, padding=1))


class _BiasMap(nn.Module):
    """Ignores its input: logits (0, bias[position in window]), a fixed map over the window."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        foreground = self.bias.expand(x.shape[0], 1, *self.bias.shape) + 0 * x
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _raw_stack(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 300.0, size=shape) + 5000 * (rng.random(shape) < 0.05)).astype(
        np.uint16)


@pytest.mark.parametrize("flips", [False, True])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_voxelwise_model_gives_its_closed_form_on_any_stack_size(overlap, flips):
    # Odd sizes; the crop is larger than the stack along x and smaller along z and y.
    volume = np.random.default_rng(1).uniform(-2, 2, (37, 50, 23)).astype(np.float32)
    prob = sliding_window_predict(_voxelwise_model(), volume, crop=(16, 32, 32), overlap=overlap,
                                  batch_size=2, flips=flips, **EXACT)
    assert prob.shape == volume.shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, _sigmoid(2.0 * volume.astype(np.float64)), atol=1e-6)


def test_blending_is_the_gaussian_weighted_average_of_the_grid_windows():
    crop, size, overlap = 8, 22, 0.5
    bias = torch.linspace(-3.0, 3.0, crop) ** 2 - 2.0  # window-position dependent
    model = _BiasMap(bias.reshape(1, 1, crop))
    prob = sliding_window_predict(model, np.zeros((1, 1, size), np.float32), crop=(1, 1, crop),
                                  overlap=overlap, **EXACT)[0, 0]
    # Independently: step 4, windows needed to cover 22 voxels: 5, starting at 0, 4, 8, 12 and
    # (moved back to end at the edge) 14. MONAI's Gaussian has sigma = crop / 8 around the
    # window centre.
    starts = [0, 4, 8, 12, 14]
    offsets = np.arange(crop) - (crop - 1) / 2
    weight = np.exp(-offsets**2 / (2 * (crop / 8) ** 2))
    p_window = _sigmoid(bias.numpy().astype(np.float64))
    num, den, plain = np.zeros(size), np.zeros(size), np.zeros(size)
    for start in starts:
        for i in range(crop):
            num[start + i] += weight[i] * p_window[i]
            den[start + i] += weight[i]
            plain[start + i] += p_window[i]
    np.testing.assert_allclose(prob, num / den, atol=1e-6)
    # The weights matter: an unweighted average is far from it.
    counts = np.bincount([start + i for start in starts for i in range(crop)], minlength=size)
    assert np.abs(prob - plain / counts).max() > 0.05


@pytest.mark.parametrize("shape", [(16, 32, 40), (5, 9, 11), (13, 37, 21)])
def test_equals_monai_sliding_window_inference(shape):
    # On the grid (crop + k * step), smaller than the crop (MONAI's symmetric zero pad), and
    # neither (MONAI's last window moved back to the edge): the windows are MONAI's.
    model, crop = _context_model(), (8, 16, 16)
    volume = np.random.default_rng(2).random(shape, dtype=np.float32)
    ours = sliding_window_predict(model, volume, crop=crop, overlap=0.5, **EXACT)
    with torch.inference_mode():
        theirs = sliding_window_inference(
            torch.from_numpy(volume)[None, None], crop, 1,
            lambda w: torch.softmax(model(w), dim=1)[:, 1:2], overlap=0.5, mode="gaussian")
    np.testing.assert_allclose(ours, theirs[0, 0].numpy(), atol=1e-6)


def test_flips_average_the_eight_flipped_predictions():
    model, crop = _context_model(seed=3), 12
    volume = np.random.default_rng(3).random((crop,) * 3, dtype=np.float32)
    x = torch.from_numpy(volume)[None, None]
    expected = 0
    with torch.no_grad():
        for dims in [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]:
            flipped = torch.flip(x, dims) if dims else x
            p = torch.softmax(model(flipped), dim=1)[:, 1:2]
            expected = expected + (torch.flip(p, dims) if dims else p)
    expected = (expected / 8)[0, 0].numpy()
    with_flips = sliding_window_predict(model, volume, crop=crop, flips=True, **EXACT)
    np.testing.assert_allclose(with_flips, expected, atol=1e-6)
    assert np.abs(with_flips - sliding_window_predict(model, volume, crop=crop)).max() > 1e-4


def _zarr(path, array, chunks):
    out = zarr.create_array(store=str(path), shape=array.shape, chunks=chunks, dtype=array.dtype)
    out[...] = array
    return out


@pytest.mark.parametrize(("shape", "overlap", "flips", "as_path", "background"), [
    ((40, 70, 90), 0.5, False, False, 0.0),
    ((10, 45, 37), 0.25, True, True, 0.0),  # z smaller than the crop; flips; source by path
    ((40, 70, 90), 0.5, False, False, 2.0),  # a background to subtract: blocks need a halo
])
def test_block_wise_zarr_prediction_equals_in_memory(tmp_path, shape, overlap, flips, as_path,
                                                     background):
    model, crop = _context_model(seed=4), (16, 32, 32)
    norm = NormalizationConfig(background=background)
    raw = _raw_stack(shape, seed=5)
    src = _zarr(tmp_path / "raw.zarr", raw, chunks=(8, 32, 32))
    in_memory = sliding_window_predict(model, norm.normalize(raw), crop, overlap=overlap,
                                       flips=flips, precision="fp32")
    blocks = predict_blocks(model, tmp_path / "raw.zarr" if as_path else src,
                            tmp_path / "prob.zarr", crop, norm, block=(24, 40, 40),
                            overlap=overlap, batch_size=3, flips=flips, precision="fp32",
                            prob_dtype="float32")
    assert blocks.shape == shape and blocks.dtype == np.float32
    assert blocks.chunks == tuple(min(b, n) for b, n in zip((24, 40, 40), shape, strict=True))
    np.testing.assert_allclose(blocks[...], in_memory, atol=1e-5)
    reopened = zarr.open_group(str(tmp_path / "prob.zarr"), mode="r")
    assert reopened.attrs["dineuro"]["normalization"] == norm.to_dict()
    assert reopened.attrs["dineuro"]["precision"] == "fp32"  # as resolved, for the record
    np.testing.assert_array_equal(read_volume(tmp_path / "prob.zarr").array, blocks[...])


def test_block_wise_fills_an_existing_uint8_array_and_refuses_an_existing_path(tmp_path):
    model, crop, norm = _context_model(seed=6), (8, 16, 16), NormalizationConfig(low=0.5)
    raw = _raw_stack((20, 30, 35), seed=7)
    src = _zarr(tmp_path / "raw.zarr", raw, chunks=(20, 30, 35))
    dst = zarr.create_array(store=str(tmp_path / "p.zarr"), shape=raw.shape, dtype="uint8",
                            chunks=(10, 16, 16))
    calls = []
    out = predict_blocks(model, src, dst, crop, norm, block=(10, 16, 16), batch_size=2,
                         precision="fp32",
                         progress=lambda done, total: calls.append((done, total)))
    done, totals = zip(*calls, strict=True)  # windows, over all blocks, every one counted
    assert list(done) == sorted(set(done)) and set(totals) == {done[-1]}
    expected = encode_probability(
        sliding_window_predict(model, norm.normalize(raw), crop, precision="fp32"), "uint8")
    assert out is dst and out.dtype == np.uint8
    assert np.abs(out[...].astype(int) - expected).max() <= 1  # rounding at a .5 boundary
    assert (out[...] == expected).mean() > 0.999
    with pytest.raises(InputError, match="already exists"):
        predict_blocks(model, src, tmp_path / "p.zarr", crop, norm)


def test_block_wise_reads_the_full_resolution_array_of_an_ome_zarr_group(tmp_path):
    model, crop, norm = _context_model(seed=10), (8, 16, 16), NormalizationConfig()
    raw = _raw_stack((9, 20, 18), seed=10)
    group = zarr.open_group(str(tmp_path / "stack.ome.zarr"), mode="w")
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "full", "coordinateTransformations": [{"type": "scale", "scale": [2, 1, 1]}]},
        {"path": "half", "coordinateTransformations": [{"type": "scale", "scale": [4, 2, 2]}]}]}]}
    group.create_array("full", shape=raw.shape, dtype=raw.dtype)[...] = raw
    group.create_array("half", shape=(5, 10, 9), dtype=raw.dtype)
    out = predict_blocks(model, tmp_path / "stack.ome.zarr", tmp_path / "p.zarr", crop, norm,
                         block=(8, 8, 8), precision="fp32", prob_dtype="float32")
    # The map is an OME-Zarr image with the stack's spacing: viewers overlay it on the stack.
    written = zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert written["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 1.0, 1.0]
    assert read_volume(tmp_path / "p.zarr").spacing == (2.0, 1.0, 1.0)
    np.testing.assert_allclose(
        out[...], sliding_window_predict(model, norm.normalize(raw), crop, precision="fp32"),
        atol=1e-5)
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(InputError, match="without OME-Zarr multiscales metadata"):
        predict_blocks(model, tmp_path / "empty.zarr", tmp_path / "q.zarr", crop, norm)


def test_window_grid_reaches_every_voxel_and_blocks_see_the_same_windows():
    grid = WindowGrid.of((37, 50, 23), crop=(16, 32, 32), overlap=0.5)
    for axis in range(3):
        starts = [grid.start(axis, k) for k in range(grid.counts[axis])]
        assert starts[0] <= 0 and starts[-1] + grid.crop[axis] >= grid.shape[axis]
        assert grid.touching(axis, 0, grid.shape[axis]) == (0, grid.counts[axis] - 1)
        for v in range(grid.shape[axis]):  # a one-voxel block touches exactly the windows on v
            first, last = grid.touching(axis, v, v + 1)
            covering = [k for k, s in enumerate(starts) if s <= v < s + grid.crop[axis]]
            assert covering == list(range(first, last + 1))


def test_progress_counts_windows_after_every_batch_and_skipped_ones_at_once():
    volume = np.zeros((20, 20, 20), np.float32)
    n_windows = 4**3  # per axis: ceil((20 - 8) / 4) + 1
    for skip_empty, expected in [(False, [(done, n_windows) for done in range(4, 65, 4)]),
                                 (True, [(n_windows, n_windows)])]:  # zeros: no signal anywhere
        calls = []
        sliding_window_predict(_voxelwise_model(), volume, crop=8, overlap=0.5, batch_size=4,
                               skip_empty=skip_empty,
                               progress=lambda done, total, calls=calls: calls.append(
                                   (done, total)))
        assert calls == expected


def test_the_default_batch_holds_about_pass_voxels():
    """No batch size: 16x48x48 windows (36,864 voxels) run 12 at a time, 12 x 36,864 being
    4 x 48^3; windows of 64x128x128, more than that alone, one at a time."""
    assert PASS_VOXELS == 4 * 48**3
    volume = np.zeros((16, 144, 144), np.float32)  # 1 x 5 x 5 windows at overlap 0.5
    calls = []
    sliding_window_predict(_voxelwise_model(), volume, crop=(16, 48, 48), overlap=0.5,
                           skip_empty=False, progress=lambda done, total: calls.append(done))
    assert calls == [12, 24, 25]
    assert resolve_batch_size(None, (64, 128, 128)) == 1
    assert resolve_batch_size(3, (64, 128, 128)) == 3


def test_model_mode_is_restored_and_nothing_is_tracked():
    model = _context_model()
    model.train()
    prob = sliding_window_predict(model, np.zeros((8, 8, 8), np.float32), crop=8,
                                  skip_empty=False)
    assert model.training and isinstance(prob, np.ndarray)
    # Channels-last weights during prediction only: training goes on with the layout it had.
    assert all(p.is_contiguous() for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_bfloat16_autocast_on_cpu_stays_close():
    model, volume = _context_model(seed=8), np.random.default_rng(8).random((12, 20, 20),
                                                                             dtype=np.float32)
    exact = sliding_window_predict(model, volume, crop=(8, 16, 16), **EXACT)
    amp = sliding_window_predict(model, volume, crop=(8, 16, 16), precision="bf16",
                                 skip_empty=False)
    assert amp.dtype == np.float32
    np.testing.assert_allclose(amp, exact, atol=2e-2)


@pytest.mark.parametrize(("volume", "kwargs", "message"), [
    (np.zeros((8, 8, 8), np.uint16), {}, "normalised float"),
    (np.zeros((8, 8), np.float32), {}, "3D"),
    (np.zeros((8, 8, 8), np.float32), {"overlap": 1.0}, "overlap"),
    (np.zeros((8, 8, 8), np.float32), {"batch_size": 0}, "batch_size"),
    (np.zeros((8, 8, 8), np.float32), {"crop": (8, 8)}, "crop"),
])
def test_bad_arguments_are_refused(volume, kwargs, message):
    with pytest.raises(InputError, match=message):
        sliding_window_predict(_voxelwise_model(), volume, **{"crop": 8, **kwargs})


def test_a_model_with_the_wrong_output_is_named():
    with pytest.raises(ValueError, match="logits"):
        sliding_window_predict(nn.Conv3d(1, 1, 1), np.zeros((8, 8, 8), np.float32), crop=8,
                               skip_empty=False)


@pytest.mark.parametrize("prob_dtype", ["float32", "uint8"])
def test_predict_stack_writes_probability_and_mask_with_the_spacing(tmp_path, prob_dtype):
    model, crop, norm = _context_model(seed=9), (8, 16, 16), NormalizationConfig()
    raw, spacing = _raw_stack((12, 40, 36), seed=9), (2.0, 0.5, 0.5)
    stack = write_volume(tmp_path / "neuron.tif", raw, spacing)
    prob_path, mask_path = predict_stack(model, stack, tmp_path / "out", crop, norm,
                                         prob_dtype=prob_dtype, threshold=0.5)
    assert (prob_path.name, mask_path.name) == ("neuron_prob.tif", "neuron_mask.tif")
    prob, mask = read_volume(prob_path), read_volume(mask_path)
    expected = sliding_window_predict(model, norm.normalize(raw), crop)
    assert prob.array.dtype == np.dtype(prob_dtype) and mask.array.dtype == np.uint8
    assert prob.array.shape == mask.array.shape == raw.shape
    assert prob.spacing == pytest.approx(spacing) and mask.spacing == pytest.approx(spacing)
    np.testing.assert_allclose(prob.array, encode_probability(expected, prob_dtype), atol=1e-6)
    np.testing.assert_array_equal(mask.array, expected > 0.5)
    assert 0 < mask.array.sum() < mask.array.size  # the threshold cuts through this map

    before = prob_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        predict_stack(model, stack, tmp_path / "out", crop, norm, prob_dtype=prob_dtype)
    assert prob_path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [mask_path.name,
                                                                     prob_path.name]


def test_predict_stack_refuses_float16_tiff_and_bad_thresholds_before_reading(tmp_path):
    with pytest.raises(InputError, match="prob_dtype"):
        predict_stack(_voxelwise_model(), tmp_path / "missing.tif", tmp_path, 8,
                      NormalizationConfig(), prob_dtype="float16")
    with pytest.raises(InputError, match="threshold"):
        predict_stack(_voxelwise_model(), tmp_path / "missing.tif", tmp_path, 8,
                      NormalizationConfig(), threshold=1.5)


def test_output_names_drop_any_stack_extension(tmp_path):
    for name in ("a.tif", "a.TIFF", "a.nii.gz", "a.nii", "a.v3draw", "a"):
        assert [p.name for p in output_paths(tmp_path / name, tmp_path)] == ["a_prob.tif",
                                                                             "a_mask.tif"]
