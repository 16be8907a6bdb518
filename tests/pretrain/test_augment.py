"""DINO multi-crop augmentation: each operation against an independent computation."""

from __future__ import annotations

import colorsys
import doctest

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image

from dineuro.errors import InputError
from dineuro.pretrain import augment as augment_module
from dineuro.pretrain.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LUMA_WEIGHTS,
    MultiCropAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    collate_crops,
    crop_box,
    gaussian_blur,
    hsv_to_rgb,
    normalize,
    resized_crop,
    rgb_to_hsv,
    solarize,
    to_grayscale,
)

SMALL = dict(global_size=32, local_size=16, n_local=3)
#: Every random step certain, grey conversion included or left out.
EVERY_STEP = dict(flip_p=1.0, jitter_p=1.0, blur_p=(1.0, 1.0, 1.0), solarize_p=1.0)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).random((3, 40, 56), dtype=np.float32))


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pil_bicubic(plane: np.ndarray, size: int) -> np.ndarray:
    """The photo library's bicubic resize of one float plane, clipped like ours."""
    resized = Image.fromarray(plane.astype(np.float32), mode="F").resize((size, size),
                                                                         Image.BICUBIC)
    return np.clip(np.asarray(resized), 0.0, 1.0)


@pytest.mark.parametrize("size", [24, 100])
def test_full_crop_with_unit_scale_and_ratio_is_a_plain_resize(size):
    square = torch.from_numpy(np.random.default_rng(1).random((3, 64, 64), dtype=np.float32))
    box = crop_box(64, 64, (1.0, 1.0), generator(), ratio=(1.0, 1.0))
    assert box == (0, 0, 64, 64)
    out = resized_crop(square, *box, size).numpy()
    for channel in range(3):
        np.testing.assert_allclose(out[channel], pil_bicubic(square[channel].numpy(), size),
                                   atol=1e-5)


def test_crop_box_falls_back_to_a_centred_crop_of_the_extreme_ratio():
    # No box of 90-100 % of a 10 x 400 image has a ratio within [3/4, 4/3].
    top, left, height, width = crop_box(10, 400, (0.9, 1.0), generator())
    assert (height, width) == (10, round(10 * 4 / 3))
    assert (top, left) == (0, (400 - width) // 2)


def test_crop_boxes_respect_scale_ratio_and_bounds():
    g = generator(3)
    for _ in range(200):
        top, left, height, width = crop_box(120, 90, (0.05, 0.4), g)
        assert 0 <= top <= 120 - height and 0 <= left <= 90 - width
        assert 0.04 <= height * width / (120 * 90) <= 0.41
        assert 3 / 4 - 0.1 <= width / height <= 4 / 3 + 0.1


def test_crop_of_a_constant_image_is_constant():
    out = resized_crop(torch.full((3, 50, 70), 0.3), 5, 7, 30, 40, 16)
    torch.testing.assert_close(out, torch.full((3, 16, 16), 0.3))


def test_grayscale_is_the_luma_weighted_sum(image):
    expected = np.tensordot(np.array(LUMA_WEIGHTS), image.numpy(), axes=1)
    out = to_grayscale(image).numpy()
    for channel in range(3):
        np.testing.assert_allclose(out[channel], expected, atol=1e-6)


def test_hsv_matches_the_standard_library(image):
    hsv = rgb_to_hsv(image).numpy().reshape(3, -1)
    expected = np.array([colorsys.rgb_to_hsv(*rgb) for rgb in image.numpy().reshape(3, -1).T]).T
    np.testing.assert_allclose(hsv, expected, atol=1e-5)


def test_rgb_hsv_round_trip_and_zero_hue_shift_are_identity(image):
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5, rtol=0)
    torch.testing.assert_close(adjust_hue(image, 0.0), image, atol=1e-5, rtol=0)


def test_hue_shift_of_a_third_turns_red_into_green_and_keeps_grey():
    red = torch.zeros(3, 4, 4)
    red[0] = 1.0
    green = torch.zeros(3, 4, 4)
    green[1] = 1.0
    torch.testing.assert_close(adjust_hue(red, 1 / 3), green, atol=1e-5, rtol=0)
    grey = torch.full((3, 4, 4), 0.4)
    torch.testing.assert_close(adjust_hue(grey, 0.2), grey)


def test_hue_shift_matches_the_standard_library(image):
    expected = []
    for r, g, b in image.numpy().reshape(3, -1).T:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        expected.append(colorsys.hsv_to_rgb((h - 0.07) % 1.0, s, v))
    out = adjust_hue(image, -0.07).numpy().reshape(3, -1)
    np.testing.assert_allclose(out, np.array(expected).T, atol=1e-5)


def test_brightness_is_a_clipped_product(image):
    torch.testing.assert_close(adjust_brightness(image, 1.3), (image * 1.3).clamp(0, 1))
    torch.testing.assert_close(adjust_brightness(image, 0.0), torch.zeros_like(image))


def test_contrast_blends_with_the_mean_grey_value(image):
    torch.testing.assert_close(adjust_contrast(image, 1.0), image)
    mean = np.tensordot(np.array(LUMA_WEIGHTS), image.numpy(), axes=1).mean()
    expected = np.clip(0.6 * image.numpy() + 0.4 * mean, 0, 1)
    np.testing.assert_allclose(adjust_contrast(image, 0.6).numpy(), expected, atol=1e-6)


def test_saturation_blends_with_the_grey_image(image):
    grey = np.tensordot(np.array(LUMA_WEIGHTS), image.numpy(), axes=1)
    expected = np.clip(1.2 * image.numpy() - 0.2 * grey, 0, 1)
    np.testing.assert_allclose(adjust_saturation(image, 1.2).numpy(), expected, atol=1e-6)


def test_solarize_inverts_values_at_or_above_one_half():
    values = torch.tensor([0.0, 0.2, 0.49, 0.5, 0.8, 1.0]).view(1, 1, -1)
    expected = torch.tensor([0.0, 0.2, 0.49, 0.5, 0.2, 0.0]).view(1, 1, -1)
    torch.testing.assert_close(solarize(values), expected)
    at_threshold = torch.tensor([0.39, 0.4, 0.41]).view(1, 1, -1)
    torch.testing.assert_close(solarize(at_threshold, threshold=0.4),
                               torch.tensor([0.39, 0.6, 0.59]).view(1, 1, -1))


def test_normalize_closed_form(image):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(normalize(image), (image - mean) / std)
    out = normalize(torch.ones(3, 2, 2))
    for channel in range(3):
        assert out[channel, 0, 0].item() == pytest.approx(
            (1 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel], rel=1e-6)


def test_blur_keeps_a_constant_image_constant():
    torch.testing.assert_close(gaussian_blur(torch.full((3, 20, 30), 0.7), 1.7),
                               torch.full((3, 20, 30), 0.7))


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blur_of_a_centred_impulse_keeps_its_sum_and_has_variance_sigma_squared(sigma):
    impulse = torch.zeros(3, 41, 41)
    impulse[:, 20, 20] = 1.0
    out = gaussian_blur(impulse, sigma)[0].numpy().astype(np.float64)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    offsets = np.arange(41) - 20
    assert (out.sum(axis=1) * offsets**2).sum() == pytest.approx(sigma**2, rel=0.02)
    assert (out.sum(axis=0) * offsets**2).sum() == pytest.approx(sigma**2, rel=0.02)


def test_blur_matches_a_mirrored_gaussian_filter(image):
    expected = ndi.gaussian_filter(image.numpy(), (0, 1.5, 1.5), mode="mirror", truncate=4.0)
    np.testing.assert_allclose(gaussian_blur(image, 1.5).numpy(), expected, atol=1e-5)


def test_crops_have_the_published_count_and_shapes(image):
    crops = MultiCropAugment(**SMALL)(image, generator())
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert all(c.dtype == torch.float32 and torch.isfinite(c).all() for c in crops)


def test_same_seed_gives_identical_crops_and_another_seed_different_ones(image):
    augment = MultiCropAugment(**SMALL)
    first, again = augment(image, generator(5)), augment(image, generator(5))
    other = augment(image, generator(6))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_without_random_steps_a_crop_is_the_normalised_resize(image):
    augment = MultiCropAugment(global_size=24, local_size=12, n_local=1,
                               global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), flip_p=0.0,
                               jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0, 0.0),
                               solarize_p=0.0)
    square = image[:, :40, :40]
    crops = augment(square, generator())
    for crop, size in zip(crops, (24, 24, 12), strict=True):
        resized = np.stack([pil_bicubic(plane, size) for plane in square.numpy()])
        expected = (resized - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(
            IMAGENET_STD)[:, None, None]
        np.testing.assert_allclose(crop.numpy(), expected, atol=1e-4)


def test_certain_flip_grey_and_solarize_act_on_the_second_global_crop_only(image):
    always = MultiCropAugment(global_size=24, local_size=12, n_local=1,
                              global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), flip_p=1.0,
                              jitter_p=0.0, grayscale_p=1.0, blur_p=(0.0, 0.0, 0.0),
                              solarize_p=1.0)
    square = image[:, :40, :40]
    first, second, local = always(square, generator())
    grey = np.tensordot(np.array(LUMA_WEIGHTS),
                        np.stack([pil_bicubic(p, 24) for p in square.numpy()]), axes=1)[:, ::-1]
    std = np.array(IMAGENET_STD)[:, None, None]
    mean = np.array(IMAGENET_MEAN)[:, None, None]
    np.testing.assert_allclose(first.numpy() * std + mean, np.broadcast_to(grey, (3, 24, 24)),
                               atol=1e-4)
    solarised = np.where(grey >= 0.5, 1 - grey, grey)
    np.testing.assert_allclose(second.numpy() * std + mean,
                               np.broadcast_to(solarised, (3, 24, 24)), atol=1e-4)
    assert local.shape == (3, 12, 12)


def test_collate_stacks_crop_k_of_every_image(image):
    augment = MultiCropAugment(**SMALL)
    views = [augment(image, generator(seed)) for seed in range(4)]
    batch = collate_crops(views)
    assert [tuple(b.shape) for b in batch] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
    assert torch.equal(batch[3][2], views[2][3])


@pytest.mark.parametrize("bad", [dict(global_scale=(0.0, 1.0)), dict(local_scale=(0.5, 0.2)),
                                 dict(flip_p=1.5), dict(hue=0.6), dict(blur_p=(1.0, 0.1)),
                                 dict(n_local=-1), dict(blur_sigma=(0.0, 2.0))])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(InputError):
        MultiCropAugment(**bad)


@pytest.mark.parametrize("settings", [{}, dict(EVERY_STEP, grayscale_p=1.0),
                                      dict(EVERY_STEP, grayscale_p=0.0)],
                         ids=["default", "every-step", "every-step-but-grey"])
def test_a_grey_image_gives_exactly_the_crops_of_its_three_channel_copy(settings):
    grey = torch.from_numpy(np.random.default_rng(7).random((1, 40, 56), dtype=np.float32))
    augment = MultiCropAugment(**SMALL, **settings)
    for seed in range(4):
        g_grey, g_rgb = generator(seed), generator(seed)
        from_grey = augment(grey, g_grey)
        from_rgb = augment(grey.repeat(3, 1, 1), g_rgb)
        assert len(from_grey) == 2 + SMALL["n_local"]
        assert all(torch.equal(a, b) for a, b in zip(from_grey, from_rgb, strict=True))
        assert torch.equal(g_grey.get_state(), g_rgb.get_state())  # the same draws, no more


@pytest.mark.parametrize("bad", [torch.rand(2, 40, 40), torch.rand(4, 40, 40),
                                 torch.rand(40, 40), torch.ones(1, 40, 40, dtype=torch.uint8)])
def test_other_than_a_float_grey_or_rgb_image_is_refused(bad):
    with pytest.raises(ValueError, match=r"float \(1, H, W\) or \(3, H, W\) tensor"):
        MultiCropAugment(**SMALL)(bad, generator())


def test_docstring_examples_run():
    result = doctest.testmod(augment_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
