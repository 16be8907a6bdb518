"""The DINO loop end to end on a tiny ViT: files, loading as a teacher, resume, learning."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy import ndimage

from dineuro.errors import InputError
from dineuro.models.build import build_model
from dineuro.models.teacher import load_teacher
from dineuro.models.transfer import TRANSFERS
from dineuro.pretrain.augment import MultiCropAugment
from dineuro.pretrain.config import resolve_config
from dineuro.pretrain.loop import augment_batch, batch_indices, pretrain

TINY_HEADS = 3


def tiny_config(**settings):
    base = dict(arch="tiny", global_size=32, local_size=16, n_local=2, out_dim=64,
                hidden_dim=32, bottleneck_dim=16, batch_size=4, steps=6, save_every=3,
                warmup_steps=2, warmup_teacher_temp_steps=2, device="cpu", threads=1)
    return resolve_config("cpu", {**base, **settings})


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(6):
        smooth = ndimage.gaussian_filter(rng.random((3, 48, 48)), sigma=(0, 3, 3))
        smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
        out.append(smooth.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def finished(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "teacher.pth"
    return pretrain(tiny_config(), images, out, inputs=["hand-made"])


def _rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_batch_indices_visit_every_image_once_per_pass():
    seen = np.concatenate([batch_indices(step, 4, 10, seed=3) for step in range(5)])
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    np.testing.assert_array_equal(batch_indices(2, 4, 10, seed=3), seen[8:12])
    assert not np.array_equal(batch_indices(0, 4, 10, seed=4), seen[:4])


def test_writes_all_files_and_a_teacher_in_the_official_layout(finished):
    assert all(p.exists() for p in finished.all())
    raw = torch.load(finished.backbone, weights_only=True)
    assert raw["pos_embed"].shape == (1, 1 + 14 * 14, 48)  # the official 224-pixel grid
    assert not any(k.startswith(("head", "module", "backbone")) for k in raw)
    teacher = load_teacher(finished.backbone, num_heads=TINY_HEADS)
    assert (teacher.embed_dim, teacher.depth, teacher.patch_size, teacher.grid) == (48, 4, 16, 14)
    rows = _rows(finished.metrics)
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert all(np.isfinite(float(r["loss"])) for r in rows)


def test_the_released_backbone_is_the_ema_teacher(finished):
    state = torch.load(finished.state, weights_only=True)
    released = torch.load(finished.backbone, weights_only=True)
    for key, value in released.items():
        if key != "pos_embed":
            torch.testing.assert_close(value, state["teacher"][f"backbone.{key}"])
    student = state["student"]["module.backbone.blocks.0.attn.qkv.weight"]
    assert not torch.equal(student, released["blocks.0.attn.qkv.weight"])


def test_the_training_state_also_loads_as_a_teacher(finished):
    teacher = load_teacher(finished.state, num_heads=TINY_HEADS)
    released = torch.load(finished.backbone, weights_only=True)
    torch.testing.assert_close(teacher.state_dict["norm.weight"], released["norm.weight"])


@pytest.mark.parametrize("transfer", [t for t in TRANSFERS if t != "scratch"])
def test_the_teacher_builds_a_student_with_every_transfer(finished, transfer):
    model = build_model("tiny", transfer=transfer, teacher=str(finished.backbone),
                        crop=(32, 32, 32))
    released = torch.load(finished.backbone, weights_only=True)
    torch.testing.assert_close(model.encoder.blocks[2].mlp.fc1.weight,
                               released["blocks.2.mlp.fc1.weight"])


def test_resume_continues_exactly(images, finished, tmp_path):
    out = tmp_path / "teacher.pth"

    def stop_at_four(step, total, loss, entropy):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(), images, out, progress=stop_at_four)
    assert not out.exists()  # only a finished run writes the teacher
    assert torch.load(out.with_suffix(".train.pth"), weights_only=True)["step"] == 3
    pretrain(tiny_config(), images, out, resume=True)
    for key, value in torch.load(finished.backbone, weights_only=True).items():
        assert torch.equal(value, torch.load(out, weights_only=True)[key]), key
    assert _rows(out.with_suffix(".csv")) == _rows(finished.metrics)


def test_refuses_to_overwrite_and_to_resume_with_other_settings(images, finished):
    before = {p: p.read_bytes() for p in finished.all()}
    with pytest.raises(InputError, match="already exists"):
        pretrain(tiny_config(), images, finished.backbone)
    state_only = finished.backbone.parent / "other.pth"
    state_only.with_suffix(".train.pth").write_bytes(finished.state.read_bytes())
    with pytest.raises(InputError, match="other settings.*lr"):
        pretrain(tiny_config(lr=1e-2), images, state_only, resume=True)
    assert {p: p.read_bytes() for p in finished.all()} == before


def test_a_few_steps_lower_the_loss(images, tmp_path):
    """With a near-fixed teacher and a fixed temperature the student learns to match it.

    The centre is the current batch mean (momentum 0), so the teacher's targets are centred
    from step 2 on; step 1 (centre still 0) is left out of the comparison.
    """
    config = tiny_config(steps=40, batch_size=6, lr=2e-2, warmup_steps=5, save_every=40,
                         momentum_teacher=0.999, center_momentum=0.0, warmup_teacher_temp=0.04,
                         warmup_teacher_temp_steps=0, freeze_last_layer_steps=0)
    paths = pretrain(config, images, tmp_path / "t.pth")
    losses = [float(r["loss"]) for r in _rows(paths.metrics)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[1:6])


def test_standardized_crops_have_zero_mean_and_unit_variance(images):
    augment = MultiCropAugment(global_size=32, local_size=16, n_local=2, mean=(0.0,) * 3,
                               std=(1.0,) * 3)
    crops = augment_batch(images, np.arange(3), augment, step=0, seed=0, standardize=True)
    for crop in crops:
        flat = crop.flatten(1)
        torch.testing.assert_close(flat.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(flat.std(1), torch.ones(3), atol=1e-4, rtol=0)


def test_grey_and_colour_images_are_batched_together(images):
    augment = MultiCropAugment(global_size=32, local_size=16, n_local=2)
    grey = images[0][:1].copy()
    crops = augment_batch([grey, images[1]], np.array([0, 1, 0]), augment, step=0, seed=0)
    assert [tuple(c.shape) for c in crops] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 2
    rgb = augment_batch([np.repeat(grey, 3, axis=0), images[1]], np.array([0, 1, 0]), augment,
                        step=0, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(crops, rgb, strict=True))
