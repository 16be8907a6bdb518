"""``benchmarks/average_maps.py``: the mean of hand-made maps, and what it refuses."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers import load_benchmark

from dineuro.evaluate import PROB_SUFFIX
from dineuro.io import read_volume, write_volume


def _run(bench, monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["average_maps.py", *map(str, args)])
    bench.main()


def test_each_stack_the_folders_share_gets_the_mean_of_its_maps(tmp_path, monkeypatch):
    bench = load_benchmark("average_maps")
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = rng.random((3, 4, 5)).astype(np.float32)
    second = rng.integers(0, 256, (3, 4, 5)).astype(np.uint8)  # --prob-dtype uint8: p x 255
    write_volume(a / f"s1{PROB_SUFFIX}", first, (2.0, 0.5, 0.5))
    write_volume(b / f"s1{PROB_SUFFIX}", second, (2.0, 0.5, 0.5))
    write_volume(a / f"only_a{PROB_SUFFIX}", first, (1.0, 1.0, 1.0))

    _run(bench, monkeypatch, tmp_path / "mean", a, b)

    assert sorted(p.name for p in (tmp_path / "mean").iterdir()) == [f"s1{PROB_SUFFIX}"]
    mean = read_volume(tmp_path / "mean" / f"s1{PROB_SUFFIX}")
    assert mean.array.dtype == np.float32
    np.testing.assert_allclose(mean.array, (first + second / 255.0) / 2, atol=1e-6)
    assert tuple(mean.spacing) == pytest.approx((2.0, 0.5, 0.5))


def test_maps_of_different_shapes_are_refused_and_leave_no_folder(tmp_path, monkeypatch):
    bench = load_benchmark("average_maps")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_volume(a / f"s1{PROB_SUFFIX}", np.zeros((3, 4, 5), np.float32), (1.0, 1.0, 1.0))
    write_volume(b / f"s1{PROB_SUFFIX}", np.zeros((3, 4, 6), np.float32), (1.0, 1.0, 1.0))

    with pytest.raises(SystemExit, match=r"s1_prob\.tif: has shape \(3, 4, 6\)"):
        _run(bench, monkeypatch, tmp_path / "mean", a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_an_existing_output_folder_is_not_touched(tmp_path, monkeypatch):
    bench = load_benchmark("average_maps")
    a = tmp_path / "a"
    a.mkdir()
    write_volume(a / f"s1{PROB_SUFFIX}", np.zeros((3, 4, 5), np.float32), (1.0, 1.0, 1.0))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(SystemExit, match="exists"):
        _run(bench, monkeypatch, out, a)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
