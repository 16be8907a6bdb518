"""Training images for DINO pre-training: files, stacks, datasets and photographs."""

from __future__ import annotations

import doctest
import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from dineuro.data.dataset import write_sample
from dineuro.errors import InputError
from dineuro.io.volume import Volume, write_volume
from dineuro.pretrain import images as images_module
from dineuro.pretrain.images import (
    MIN_SIDE,
    MIN_SLAB,
    collect_images,
    read_image,
    shrink,
    skimage_photos,
    stack_projections,
)


def percentile_scaled(image: np.ndarray, low: float = 1.0, high: float = 99.9) -> np.ndarray:
    """Clip to the image's percentiles and scale to [0, 1], written out independently."""
    lo, hi = np.percentile(image, [low, high])
    return np.clip((image.astype(np.float64) - lo) / (hi - lo), 0, 1)


def sparse_volume(shape=(32, 40, 48), seed=0) -> np.ndarray:
    """A dim noisy uint16 stack with bright scattered voxels, like a neuron on background."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, 200, size=shape).astype(np.uint16)
    spots = rng.random(shape) < 0.01
    volume[spots] = rng.integers(1000, 4000, size=int(spots.sum()))
    return volume


def assert_grey_image(image: np.ndarray) -> None:
    """One float32 plane in [0, 1]: how grey images are kept, a third of an RGB copy."""
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] == 1
    assert image.flags.c_contiguous
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_z_projection_is_the_normalised_maximum_along_z():
    volume = sparse_volume()
    views = stack_projections(volume, (1.0, 1.0, 1.0), np.random.default_rng(0), n_slabs=0)
    assert len(views) == 3
    assert all(view.shape[0] == 1 for view in views)
    assert_grey_image(views[0])
    np.testing.assert_allclose(views[0][0], percentile_scaled(volume.max(axis=0)), atol=1e-5)


def test_side_projections_of_an_anisotropic_stack_have_isotropic_pixels():
    volume = sparse_volume(shape=(10, 40, 48))
    z_view, y_view, x_view = stack_projections(volume, (4.0, 1.0, 1.0),
                                               np.random.default_rng(0), n_slabs=0)
    assert z_view.shape == (1, 40, 48)
    assert y_view.shape == (1, 40, 48)  # 10 slices of 4 um -> 40 rows of 1 um
    assert x_view.shape == (1, 40, 40)


def test_side_projections_too_thin_to_train_on_are_left_out():
    volume = sparse_volume(shape=(6, 40, 48))
    views = stack_projections(volume, (2.0, 1.0, 1.0), np.random.default_rng(0), n_slabs=2)
    assert [v.shape for v in views] == [(1, 40, 48)] * 3  # z MIP and two slabs
    assert MIN_SIDE > 6 * 2  # the side views: 6 slices of 2 um give 12 rows


def test_slab_projections_are_maxima_of_consecutive_slices_of_allowed_thickness():
    volume = sparse_volume(shape=(36, 36, 40), seed=2)
    depth = volume.shape[0]
    views = stack_projections(volume, (1.0, 1.0, 1.0), np.random.default_rng(4), n_slabs=5)
    slabs = views[3:]
    assert len(slabs) == 5
    candidates = {(start, thickness): percentile_scaled(volume[start:start + thickness].max(0))
                  for thickness in range(1, depth + 1) for start in range(depth - thickness + 1)}
    for slab in slabs:
        matches = [key for key, expected in candidates.items()
                   if np.allclose(slab[0], expected, atol=1e-5)]
        assert matches, "a slab is not the projection of any run of slices"
        assert any(MIN_SLAB <= thickness <= depth // 2 for _, thickness in matches)
        assert slab.max() <= 1.0


def test_grey_png_reads_as_one_plane_scaled_by_255(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, size=(40, 50), dtype=np.uint8)
    iio.imwrite(tmp_path / "grey.png", grey)
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (1, 40, 50)
    assert_grey_image(image)
    np.testing.assert_allclose(image[0], grey / 255.0, atol=1e-6)


def test_rgba_png_drops_alpha_and_grey_alpha_keeps_grey(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, size=(40, 50, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgba.png", rgba)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"),
                               np.moveaxis(rgba[..., :3], -1, 0) / 255.0, atol=1e-6)
    iio.imwrite(tmp_path / "la.png", rgba[..., :2])
    image = read_image(tmp_path / "la.png")
    assert_grey_image(image)
    np.testing.assert_allclose(image[0], rgba[..., 0] / 255.0, atol=1e-6)


def test_uint16_tiff_is_scaled_by_65535_and_rgb_tiff_keeps_colours(tmp_path):
    plane = np.random.default_rng(2).integers(0, 65536, size=(36, 44), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    image = read_image(tmp_path / "plane.tif")
    assert_grey_image(image)
    np.testing.assert_allclose(image[0], plane / 65535.0, atol=1e-6)
    rgb = np.random.default_rng(3).integers(0, 256, size=(36, 44, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.tif"),
                               np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-6)


def test_float_tiff_is_scaled_by_its_percentiles(tmp_path):
    plane = np.random.default_rng(4).normal(100.0, 30.0, size=(40, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "float.tif", plane)
    image = read_image(tmp_path / "float.tif")
    assert_grey_image(image)
    np.testing.assert_allclose(image[0], percentile_scaled(plane), atol=1e-5)


def test_3d_tiff_is_not_an_image_unless_from_stacks(tmp_path):
    path = tmp_path / "stack.tif"
    write_volume(path, sparse_volume(), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(InputError, match="stack.tif.*--from-stacks"):
        read_image(path)
    with pytest.raises(InputError, match="stack.tif.*--from-stacks"):
        collect_images([path])
    images = collect_images([path], from_stacks=True, n_slabs=2)
    assert len(images) == 3 + 2
    assert images[1].shape == (1, 64, 48)  # 32 slices of 2 um, x of 1 um


def test_unreadable_and_tiny_images_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    iio.imwrite(tmp_path / "tiny.png", np.zeros((MIN_SIDE - 1, 64), np.uint8))
    with pytest.raises(InputError, match="tiny.png.*pixels"):
        read_image(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="missing.png"):
        collect_images([tmp_path / "missing.png"])


def test_folder_is_read_in_natural_order_without_subfolders(tmp_path):
    for index in (10, 2, 1):
        iio.imwrite(tmp_path / f"img{index}.png", np.full((40, 40), index, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    iio.imwrite(tmp_path / "sub" / "deep.png", np.zeros((40, 40), np.uint8))
    calls = []
    images = collect_images([tmp_path], progress=lambda done, total: calls.append((done, total)))
    assert [round(float(image[0, 0, 0]) * 255) for image in images] == [1, 2, 10]
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_grey_inputs_are_collected_as_one_plane_with_the_values_of_each_old_channel(tmp_path):
    """Grey files and projections: one plane holding what every channel of the RGB copy held."""
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    deep = rng.integers(0, 65536, size=(36, 44), dtype=np.uint16)
    rgb = rng.integers(0, 256, size=(34, 38, 3), dtype=np.uint8)
    volume = sparse_volume(shape=(40, 48, 56), seed=6)
    iio.imwrite(tmp_path / "grey.png", grey)
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    write_volume(tmp_path / "stack.tif", volume, spacing=(1.0, 1.0, 1.0))
    images = collect_images([tmp_path / name for name in ("grey.png", "deep.tif", "rgb.png",
                                                          "stack.tif")],
                            from_stacks=True, n_slabs=1)
    assert [image.shape for image in images] == [(1, 40, 50), (1, 36, 44), (3, 34, 38),
                                                 (1, 48, 56), (1, 40, 56), (1, 40, 48),
                                                 (1, 48, 56)]
    assert all(image.dtype == np.float32 for image in images)
    # float32 of the exact quotient: what x / 255 in float32 gives, correctly rounded.
    np.testing.assert_array_equal(images[0][0], (grey / 255.0).astype(np.float32))
    np.testing.assert_array_equal(images[1][0], (deep / 65535.0).astype(np.float32))
    np.testing.assert_array_equal(images[2], (np.moveaxis(rgb, -1, 0) / 255.0).astype(np.float32))
    np.testing.assert_allclose(images[3][0], percentile_scaled(volume.max(axis=0)), atol=1e-5)
    np.testing.assert_allclose(images[4][0], percentile_scaled(volume.max(axis=1)), atol=1e-5)
    np.testing.assert_allclose(images[5][0], percentile_scaled(volume.max(axis=2)), atol=1e-5)


def test_projections_of_a_stack_take_a_third_of_the_memory_of_rgb_copies(tmp_path):
    z, y, x = 40, 48, 56
    n_slabs = 3
    write_volume(tmp_path / "stack.tif", sparse_volume(shape=(z, y, x)), spacing=(1.0, 1.0, 1.0))
    images = collect_images([tmp_path / "stack.tif"], from_stacks=True, n_slabs=n_slabs)
    # The z MIP and every slab are (y, x), the y MIP (z, x), the x MIP (z, y); float32 RGB.
    rgb_bytes = 3 * 4 * ((1 + n_slabs) * y * x + z * x + z * y)
    assert 3 * sum(image.nbytes for image in images) == rgb_bytes


def test_a_grey_image_shrinks_to_one_plane_holding_each_channel_of_its_rgb_copy():
    grey = np.random.default_rng(1).random((1, 100, 130), dtype=np.float32)
    small = shrink(grey, 48)
    assert small.shape == (1, 48, 62) and small.dtype == np.float32
    rgb = shrink(np.repeat(grey, 3, axis=0), 48)
    assert all(np.array_equal(small[0], channel) for channel in rgb)
    assert shrink(grey, 200) is grey  # never enlarged


def test_images_are_shrunk_as_they_are_read_to_what_training_would_shrink_them_to(tmp_path):
    write_volume(tmp_path / "stack.tif", sparse_volume(shape=(40, 96, 120)), spacing=(2.0, 1, 1))
    iio.imwrite(tmp_path / "big.png", np.random.default_rng(2).integers(0, 256, (90, 200, 3),
                                                                         dtype=np.uint8))
    iio.imwrite(tmp_path / "small.png", np.full((40, 50), 9, np.uint8))
    inputs = [tmp_path / "stack.tif", tmp_path / "big.png", tmp_path / "small.png"]
    full = collect_images(inputs, from_stacks=True, n_slabs=2)
    shrunk = collect_images(inputs, from_stacks=True, n_slabs=2, short_side=45)
    assert len(shrunk) == len(full) == 3 + 2 + 2
    for big, small in zip(full, shrunk, strict=True):
        np.testing.assert_array_equal(small, shrink(big, 45))
        assert min(small.shape[1:]) == min(45, *big.shape[1:])
    assert shrunk[-1].shape == (1, 40, 50)  # never enlarged


def test_dataset_folder_gives_projections_of_train_stacks_only(tmp_path):
    root = tmp_path / "dataset"
    volumes = {name: sparse_volume(seed=seed) for seed, name in enumerate(("a", "b", "c"))}
    for name, volume in volumes.items():
        write_sample(root, name, Volume(volume, (1.0, 1.0, 1.0)), None, None)
    (root / "split.json").write_text(json.dumps({"train": ["b"], "val": ["a"], "test": ["c"]}))
    with pytest.raises(InputError, match="--from-stacks"):
        collect_images([root])
    images = collect_images([root], from_stacks=True, n_slabs=1)
    assert len(images) == 4
    np.testing.assert_allclose(images[0][0], percentile_scaled(volumes["b"].max(axis=0)),
                               atol=1e-5)


def test_photos_are_many_grey_and_colour_images_in_the_unit_range():
    photos = skimage_photos()
    assert len(photos) >= 10
    assert len({name for name, _ in photos}) == len(photos)
    channels = {name: image.shape[0] for name, image in photos}
    assert channels["camera"] == 1 and channels["astronaut"] == 3
    for _, image in photos:
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] in (1, 3)
        assert min(image.shape[1:]) >= MIN_SIDE
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > image.min()


def test_collection_is_deterministic_given_the_seed(tmp_path):
    path = tmp_path / "stack.tif"
    write_volume(path, sparse_volume(shape=(40, 40, 40)))
    iio.imwrite(tmp_path / "picture.png", np.full((40, 40), 7, np.uint8))
    inputs = [path, tmp_path / "picture.png", "photos"]
    first = collect_images(inputs, from_stacks=True, seed=3)
    again = collect_images(inputs, from_stacks=True, seed=3)
    other = collect_images(inputs, from_stacks=True, seed=4)
    assert len(first) == len(again) == 3 + 4 + 1 + len(skimage_photos())
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_no_inputs_is_an_error():
    with pytest.raises(InputError, match="no training images"):
        collect_images([])


def test_docstring_examples_run():
    result = doctest.testmod(images_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
