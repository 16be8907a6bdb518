"""The fast paths of prediction: skipping windows without signal, and the choice of bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage
from torch import nn

from dineuro.data.normalize import MAD_TO_SIGMA, NormalizationConfig
from dineuro.errors import InputError
from dineuro.predict import (
    DEFAULT_OVERLAP,
    WindowGrid,
    WindowStats,
    _precision,
    _signal,
    predict_blocks,
    resolve_precision,
    signal_windows,
    sliding_window_predict,
)
from dineuro.predict._signal import NOISE_FACTOR, SPECK_FLOOR, STRIDE, signal_level

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _structure_model() -> nn.Module:
    """Logits (0, 100 (3x3x3 mean - 0.1)): neurite where a neighbourhood is bright, so that
    background and a lone speck get probability ~0, as a trained network gives them."""
    conv = nn.Conv3d(1, 2, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1] = 100.0 / 27
        conv.bias.copy_(torch.tensor([0.0, -10.0]))
    return conv


def _sparse_stack(shape=(20, 64, 72), seed=0) -> np.ndarray:
    """Dim noise everywhere, isolated bright specks, and one blurred neurite in a corner."""
    rng = np.random.default_rng(seed)
    volume = rng.uniform(0.0, 0.02, shape).astype(np.float32)
    specks = rng.random(shape) < 2e-4
    volume[specks] = 1.0
    line = np.zeros(shape, np.float32)
    line[shape[0] // 2, 8, 4:30] = 1.0
    volume += 3 * ndimage.gaussian_filter(line, 1.0)
    return volume


def _brute_force_threshold(volume: np.ndarray) -> float:
    """The level from the whole stack's 3x3x3 mean at interior voxels of every STRIDE-th row
    and column: median + NOISE_FACTOR scaled MADs, at least the speck floor."""
    mean = ndimage.uniform_filter(volume.astype(np.float64), size=3)[1:-1, 1:-1, 1:-1]
    rows = np.arange(1, volume.shape[1] - 1) % STRIDE == 0
    cols = np.arange(1, volume.shape[2] - 1) % STRIDE == 0
    values = mean[:, rows][:, :, cols]
    background = np.median(values)
    noise = MAD_TO_SIGMA * np.median(np.abs(values - background))
    return max(background + NOISE_FACTOR * noise, SPECK_FLOOR)


def _brute_force_signal(volume: np.ndarray, crop, overlap) -> np.ndarray:
    """Per window, on its own voxels: the largest 3x3x3 mean over the positions where the
    3x3x3 neighbourhood lies inside the window, above the stack's level."""
    threshold = _brute_force_threshold(volume)
    grid = WindowGrid.of(volume.shape, crop, overlap)
    assert all(n >= c for n, c in zip(volume.shape, grid.crop, strict=True))  # no padding
    out = np.zeros(grid.counts, dtype=bool)
    for index in np.ndindex(*grid.counts):
        window = volume[tuple(slice(grid.start(axis, k), grid.start(axis, k) + c)
                              for axis, (k, c) in enumerate(zip(index, grid.crop, strict=True)))]
        mean = ndimage.uniform_filter(window.astype(np.float64), size=3, mode="constant")
        out[index] = mean[1:-1, 1:-1, 1:-1].max() > threshold
    return out


def _hazy_stack(seed=2) -> np.ndarray:
    """The sparse stack on a background of 0.2 with noise: a fixed level would run everywhere."""
    rng = np.random.default_rng(seed)
    return (_sparse_stack(seed=seed) + 0.2 + rng.normal(0, 0.03, (20, 64, 72))).astype(
        np.float32)


@pytest.mark.parametrize(("crop", "overlap"), [(16, 0.5), ((8, 24, 16), 0.25)])
@pytest.mark.parametrize("stack", [_sparse_stack, _hazy_stack])
def test_signal_windows_equal_a_brute_force_per_window_computation(crop, overlap, stack):
    volume = stack()
    expected = _brute_force_signal(volume, crop, overlap)
    assert expected.any() and not expected.all()  # the case tests something
    np.testing.assert_array_equal(signal_windows(volume, crop, overlap), expected)


def test_the_signal_level_does_not_depend_on_the_tiles_it_is_read_in(monkeypatch):
    volume = _hazy_stack()
    whole = signal_level(volume.__getitem__, volume.shape)
    monkeypatch.setattr(_signal, "TILE", (5, 7, 11))
    tiled = signal_level(volume.__getitem__, volume.shape)
    assert tiled == pytest.approx(whole, abs=1e-7) and whole.background > 0.2
    assert whole.threshold == pytest.approx(_brute_force_threshold(volume), abs=1e-6)


def test_the_signal_level_of_a_huge_volume_reads_a_bounded_spread_sample(monkeypatch):
    """Above MAX_LEVEL_SAMPLES the level is measured on a seeded draw of tiles spread over the
    volume (a whole brain is not read twice); below it, on every tile as before."""
    monkeypatch.setattr(_signal, "TILE", (4, 8, 8))
    monkeypatch.setattr(_signal, "MAX_LEVEL_SAMPLES", 300)  # about 28 samples per tile
    reads = []

    def read(region):
        reads.append(region)
        noise = np.random.default_rng(len(reads)).normal(0.1, 0.01, [s.stop - s.start
                                                                     for s in region])
        return noise.astype(np.float32)

    level = signal_level(read, (34, 66, 66))  # 8 x 8 x 8 = 512 tiles
    tiles = 300 * STRIDE**2 // (4 * 8 * 8)
    assert len(reads) == tiles < 512
    corners = np.array([[s.start for s in region] for region in reads])
    assert len({tuple(c) for c in corners}) == tiles and np.ptp(corners[:, 0]) > 16
    assert level.background == pytest.approx(0.1, abs=0.002)
    reads.clear()
    signal_level(read, (10, 18, 18))  # interior 8 x 16 x 16: 2 x 2 x 2 tiles, all read
    assert len(reads) == 8


def test_a_lone_speck_is_no_signal_but_a_dim_blurred_neurite_is():
    speck = np.zeros((16, 16, 16), np.float32)
    speck[8, 8, 8] = 1.0  # saturated, but alone: its 3x3x3 mean is 1/27
    assert not signal_windows(speck, 16, 0.5).any()
    line = np.zeros((16, 16, 16), np.float32)
    line[8, 8, :] = 1.0
    dim = 0.3 * ndimage.gaussian_filter(line, 1.0) / ndimage.gaussian_filter(line, 1.0).max()
    assert signal_windows(dim.astype(np.float32), 16, 0.5).all()


def test_skipping_gives_the_full_map_when_the_network_sees_background_as_background():
    volume, model = _sparse_stack(), _structure_model()
    stats = WindowStats()
    fast = sliding_window_predict(model, volume, crop=16, precision="fp32", stats=stats)
    full = sliding_window_predict(model, volume, crop=16, precision="fp32", skip_empty=False)
    run = signal_windows(volume, 16, DEFAULT_OVERLAP)
    assert stats.windows == run.size and stats.computed == run.sum() < run.size
    assert stats.precision == "fp32"
    np.testing.assert_allclose(fast, full, atol=1e-2)  # what a lone speck got: < 0.01
    assert (fast > 0.5).sum() > 20 and np.array_equal(fast > 0.5, full > 0.5)


def test_block_wise_prediction_skips_the_same_windows_as_in_memory(tmp_path):
    # A model whose background probability is far from 0: any window skipped in one mode and
    # computed in the other would show.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, 2, 3, padding=1))
    norm = NormalizationConfig(low=0.0, high=100.0)
    raw = (_sparse_stack(seed=1) * 1000).astype(np.uint16)
    src = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=raw.shape, dtype=raw.dtype,
                            chunks=(10, 32, 32))
    src[...] = raw
    memory_stats, block_stats = WindowStats(), WindowStats()
    in_memory = sliding_window_predict(model, norm.normalize(raw), (8, 16, 16), precision="fp32",
                                       stats=memory_stats)
    blocks = predict_blocks(model, src, tmp_path / "p.zarr", (8, 16, 16), norm,
                            block=(10, 24, 40), precision="fp32", stats=block_stats,
                            prob_dtype="float32")
    assert memory_stats.computed < memory_stats.windows  # something was skipped
    assert block_stats.computed < block_stats.windows
    np.testing.assert_allclose(blocks[...], in_memory, atol=1e-5)


@pytest.mark.parametrize(("flags", "expected"), [
    ({"fpu", "avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"fpu", "amx_bf16", "amx_tile"}, "bf16"),
    ({"fpu", "avx2", "avx512f"}, "fp32"),  # bf16 would be emulated: slower than float32
    (set(), "fp32"),  # no /proc/cpuinfo: we cannot tell
])
def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(_precision, "_cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16\n\nprocessor\t: 1\n")
    monkeypatch.setattr(_precision, "CPUINFO", cpuinfo)
    _precision._cpu_flags.cache_clear()
    try:
        assert _precision._cpu_flags() == {"fpu", "sse", "avx512_bf16"}
    finally:
        _precision._cpu_flags.cache_clear()


def test_an_unknown_precision_is_refused():
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp16", "cpu")
