"""Percentile normalisation: limits vs numpy, degenerate stacks, subsampling, config round trip."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import zarr

from dineuro.data import normalize
from dineuro.data.normalize import (
    NormalizationConfig,
    percentile_normalize,
    percentiles_of,
    rescale,
    subsample_strides,
)
from dineuro.errors import InputError


def _stack(shape=(9, 20, 31), seed=0, dtype=np.uint16, high=60_000):
    """A camera-like stack: dim background, a few neurite voxels, saturated blobs."""
    rng = np.random.default_rng(seed)
    stack = rng.gamma(2.0, 200.0, size=shape)
    stack[rng.random(shape) < 0.02] = high * 0.3
    stack[rng.random(shape) < 0.002] = high
    return np.clip(stack, 0, high).astype(dtype)


@pytest.mark.parametrize(("low", "high"), [(1.0, 99.9), (0.0, 100.0), (5.0, 50.0)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentiles_equal_numpy(low, high, dtype):
    stack = _stack(dtype=dtype, high=255 if dtype == np.uint8 else 60_000)
    assert percentiles_of(stack, low, high) == pytest.approx(np.percentile(stack, [low, high]),
                                                             rel=1e-12)


def test_uint16_stack_is_clipped_and_scaled_to_unit_range():
    stack = _stack()
    lo, hi = np.percentile(stack, [1.0, 99.9])
    out = percentile_normalize(stack)
    assert out.dtype == np.float32 and out.shape == stack.shape
    np.testing.assert_allclose(out, np.clip((stack - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0
    assert stack.dtype == np.uint16  # the input is not modified or cast in place


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_stack_maps_to_zeros_without_dividing_by_zero(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = percentile_normalize(np.full((3, 4, 5), 7, dtype))
    assert out.dtype == np.float32 and not out.any()


def test_sparse_neuron_on_zero_background_keeps_its_voxels():
    # 2 of 3000 voxels are bright: the 99.9th percentile is still 0, so the upper limit falls
    # back to the maximum instead of wiping the neuron out.
    stack = np.zeros((10, 10, 30), np.uint8)
    stack[5, 5, 10:12] = (200, 100)
    assert np.percentile(stack, 99.9) == 0
    out = percentile_normalize(stack)
    assert out[5, 5, 10:12].tolist() == [1.0, 0.5]
    assert out.sum() == pytest.approx(1.5)


@pytest.mark.parametrize(("shape", "max_samples", "strides"), [
    ((4, 50, 60), 12_000, (1, 1, 1)),
    ((4, 50, 60), 1000, (1, 4, 4)),  # 4 * 13 * 15 = 780 <= 1000 < 4 * 17 * 20
    ((50, 2, 2), 10, (5, 2, 2)),  # more slices than samples: strided in z as well
])
def test_subsample_strides(shape, max_samples, strides):
    assert subsample_strides(shape, max_samples) == strides
    sz, sy, sx = strides
    assert len(range(0, shape[0], sz)) * len(range(0, shape[1], sy)) \
        * len(range(0, shape[2], sx)) <= max_samples


def test_large_stack_uses_a_deterministic_strided_subsample(monkeypatch):
    stack = _stack(shape=(4, 50, 60))
    monkeypatch.setattr(normalize, "MAX_PERCENTILE_SAMPLES", 1000)
    expected = np.percentile(stack[:, ::4, ::4], [1.0, 99.9])
    assert percentiles_of(stack) == pytest.approx(expected, rel=1e-12)
    assert percentiles_of(stack) != pytest.approx(np.percentile(stack, [1.0, 99.9]))


def test_zarr_stack_read_in_slabs_gives_the_numpy_limits(monkeypatch, tmp_path):
    stack = _stack(shape=(13, 50, 60), seed=3)
    array = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=stack.shape,
                              chunks=(4, 16, 16), dtype=stack.dtype)
    array[...] = stack
    monkeypatch.setattr(normalize, "SLAB_SAMPLES", 300)  # several slabs of z
    for max_samples in (None, 2000):  # whole stack, then strided (1, 4, 4)
        assert percentiles_of(array, 2.0, 98.0, max_samples) == \
            percentiles_of(stack, 2.0, 98.0, max_samples)


def test_a_huge_stack_is_sampled_in_seeded_whole_tiles_read_alone(monkeypatch, tmp_path):
    """Above TILE_SAMPLING_VOXELS the limits come from LIMIT_TILES whole tiles (strided within
    to the budget), the same from zarr and numpy, read without touching the other chunks."""
    monkeypatch.setattr(normalize, "TILE_SAMPLING_VOXELS", 10_000)
    monkeypatch.setattr(normalize, "LIMIT_TILE", (4, 16, 16))
    monkeypatch.setattr(normalize, "LIMIT_TILES", 5)
    stack = _stack(shape=(16, 64, 64), seed=5)  # 4 x 4 x 4 = 64 tiles, 5 drawn
    array = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=stack.shape,
                              chunks=(4, 16, 16), dtype=stack.dtype)
    array[...] = stack
    corners = [(z, y, x) for z in range(0, 16, 4) for y in range(0, 64, 16)
               for x in range(0, 64, 16)]
    chosen = np.sort(np.random.default_rng(0).permutation(64)[:5])
    stride = int(np.ceil(np.sqrt(4 * 16 * 16 / (1000 // 5))))  # 2: 4*8*8 = 256 per tile
    by_hand = np.concatenate([stack[z:z + 4, y:y + 16, x:x + 16][:, ::stride, ::stride].ravel()
                              for z, y, x in (corners[k] for k in chosen)])
    expected = tuple(np.percentile(by_hand, [1.0, 99.9]))
    assert percentiles_of(stack, max_samples=1000) == pytest.approx(expected, rel=1e-12)
    reads = []
    original = array.__class__.__getitem__
    monkeypatch.setattr(array.__class__, "__getitem__",
                        lambda self, key: reads.append(key) or original(self, key))
    assert percentiles_of(array, max_samples=1000) == pytest.approx(expected, rel=1e-12)
    assert len(reads) == 5


def test_rescale_is_clip_then_linear():
    out = rescale(np.array([[[0, 5, 10, 15, 20]]], np.uint16), 5.0, 15.0)
    assert out.tolist() == [[[0.0, 0.0, 0.5, 1.0, 1.0]]]


def test_non_finite_values_are_refused():
    stack = _stack(dtype=np.float32).astype(np.float32)
    stack[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        percentile_normalize(stack)


@pytest.mark.parametrize(("low", "high"), [(50.0, 50.0), (-1.0, 99.0), (1.0, 100.5)])
def test_bad_percentiles_are_refused(low, high):
    with pytest.raises(InputError, match="percentiles"):
        percentile_normalize(_stack(), low, high)
    with pytest.raises(InputError, match="percentiles"):
        NormalizationConfig(low=low, high=high)


def test_config_round_trips_through_a_checkpoint_dict():
    config = NormalizationConfig(low=0.5, high=99.0)
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored == {"method": "percentile", "low": 0.5, "high": 99.0, "background": 0.0}
    assert NormalizationConfig.from_dict(stored) == config
    with_background = NormalizationConfig(background=3)
    assert NormalizationConfig.from_dict(with_background.to_dict()) == with_background
    assert NormalizationConfig.from_dict(NormalizationConfig().to_dict()) == NormalizationConfig()


@pytest.mark.parametrize("stored", [
    {"method": "percentile", "low": 1.0},
    {"method": "percentile", "low": 1.0, "high": 99.9, "clip": True},
    {"method": "zscore", "low": 1.0, "high": 99.9},
    {"method": "percentile", "low": 99.9, "high": 1.0},
    {"method": "percentile", "low": 1.0, "high": 99.9, "background": -1.0},
    {"method": "percentile", "low": 1.0, "high": 99.9, "background": "wide"},
    {"method": "percentile", "low": 1.0, "high": 99.9, "background": float("nan")},
    ["percentile", 1.0, 99.9],
])
def test_config_from_a_bad_dict_is_an_input_error(stored):
    with pytest.raises(InputError):
        NormalizationConfig.from_dict(stored)


def test_config_normalizes_like_the_function_and_blocks_with_given_limits():
    stack, config = _stack(), NormalizationConfig(low=2.0, high=98.0)
    np.testing.assert_array_equal(config.normalize(stack), percentile_normalize(stack, 2.0, 98.0))
    limits = config.limits(stack)
    np.testing.assert_array_equal(config.normalize(stack[2:5, 3:9], limits),
                                  config.normalize(stack)[2:5, 3:9])


def test_a_checkpoint_from_before_the_background_option_normalises_without_one():
    stored = {"method": "percentile", "low": 1.0, "high": 99.9}  # as checkpoints stored it
    config = NormalizationConfig.from_dict(stored)
    assert config.background == 0.0 and config.halo() == 0
    stack = _stack()
    np.testing.assert_array_equal(config.normalize(stack), percentile_normalize(stack))


def _blur_weights(sigma: float) -> np.ndarray:
    """The normalised 1D Gaussian the background takes, written out: out to 4 sigma."""
    reach = int(normalize.BACKGROUND_TRUNCATE * sigma + 0.5)
    x = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def test_background_of_a_point_and_of_a_ramp_by_hand():
    sigma = 1.5
    centre = _blur_weights(sigma)[len(_blur_weights(sigma)) // 2]
    point = np.zeros((21, 21, 21), np.float32)
    point[10, 10, 10] = 0.8  # far from every face: the blur is the kernel itself
    out = normalize.subtract_background(point.copy(), sigma)
    assert out[10, 10, 10] == pytest.approx(0.8 * (1 - centre**3), rel=1e-5)
    assert np.count_nonzero(out) == 1  # around the point the blur is above the image: 0
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, 40, dtype=np.float32), (12, 12, 40)).copy()
    inner = normalize.subtract_background(ramp, sigma)[..., 8:-8]  # a blur keeps a line
    np.testing.assert_allclose(inner, 0.0, atol=1e-6)


def test_background_is_taken_after_the_limits_and_blocks_read_with_the_halo_match():
    stack, config = _stack(shape=(20, 40, 50)), NormalizationConfig(background=2.0)
    plain = percentile_normalize(stack)
    blur = plain.copy()
    for axis in range(3):  # the Gaussian, axis by axis, with the faces mirrored as scipy does
        weights = _blur_weights(2.0)
        reach = len(weights) // 2
        padded = np.pad(blur, [(reach, reach) if a == axis else (0, 0) for a in range(3)],
                        mode="symmetric")
        blur = sum(w * np.take(padded, np.arange(k, k + stack.shape[axis]), axis=axis)
                   for k, w in enumerate(weights))
    whole = config.normalize(stack)
    np.testing.assert_allclose(whole, np.clip(plain - blur, 0, None), atol=1e-5)
    assert config.halo() == 8
    limits = config.limits(stack)
    for region in [(slice(3, 9), slice(10, 30), slice(0, 7)),
                   (slice(0, 20), slice(35, 40), slice(20, 50))]:
        np.testing.assert_array_equal(config.normalize_region(stack, region, limits),
                                      whole[region])
    # without the halo a block's background is its own, not the stack's
    assert not np.array_equal(config.normalize(stack[3:9, 10:30, 0:7], limits),
                              whole[3:9, 10:30, 0:7])
