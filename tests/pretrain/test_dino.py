"""DINO's pieces against hand computations: loss, centre, EMA, schedules, head, clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dineuro.models.vit2d import VisionTransformer2d, resize_pos_embed_2d
from dineuro.pretrain.dino import (
    DINOHead,
    DINOLoss,
    MultiCropNetwork,
    WeightNormLinear,
    clip_gradients,
    cosine_schedule,
    ema_update,
    param_groups,
    teacher_entropy,
    teacher_temperatures,
)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_dino_loss_equals_a_hand_computation():
    # batch 2, 3 prototypes, crops: 2 global + 2 local
    student = np.array([[0.2, -1.0, 0.5], [1.0, 0.0, 0.3],     # global 1 (images a, b)
                        [0.1, 0.4, -0.2], [-0.5, 0.9, 0.0],    # global 2
                        [2.0, 0.0, 1.0], [0.0, 0.0, 0.0],      # local 1
                        [0.3, 0.3, -1.5], [1.2, -0.7, 0.4]])   # local 2
    teacher = np.array([[0.5, 0.1, -0.3], [0.0, 1.0, 0.2],
                        [-0.4, 0.6, 0.9], [0.8, -0.1, 0.1]])
    center = np.array([0.1, -0.2, 0.05])
    t_temp, s_temp = 0.07, 0.1
    loss_fn = DINOLoss(out_dim=3, student_temp=s_temp, center_momentum=0.9)
    loss_fn.center.copy_(torch.tensor(center)[None])

    got = loss_fn(torch.tensor(student), torch.tensor(teacher), t_temp).item()

    total, terms = 0.0, 0
    for i in range(2):
        for v in range(4):
            if v == i:
                continue
            for b in range(2):
                p = _softmax((teacher[2 * i + b] - center) / t_temp)
                q = _softmax(student[2 * v + b] / s_temp)
                total += -(p * np.log(q)).sum() / 2
            terms += 1
    assert terms == 6
    assert got == pytest.approx(total / terms, rel=1e-6)
    expected_center = 0.9 * center + 0.1 * teacher.mean(axis=0)
    np.testing.assert_allclose(loss_fn.center[0].numpy(), expected_center, rtol=1e-6)


def test_the_centre_follows_its_recursion_over_steps():
    loss_fn = DINOLoss(out_dim=4, center_momentum=0.8).double()
    rng = np.random.default_rng(0)
    center = np.zeros(4)
    for _ in range(3):
        teacher = rng.normal(size=(6, 4))
        loss_fn(torch.tensor(rng.normal(size=(12, 4))), torch.tensor(teacher), 0.04)
        center = 0.8 * center + 0.2 * teacher.mean(axis=0)
    np.testing.assert_allclose(loss_fn.center[0].numpy(), center, rtol=1e-12)


def test_loss_is_lowest_when_the_student_matches_the_sharpened_teacher():
    """Cross-entropy is minimised (down to the teacher's entropy) when q equals p."""
    teacher = torch.tensor([[0.2, 0.0, -0.1]]).repeat(2, 1)  # batch 1, two equal global crops
    p = torch.softmax(teacher[0] / 0.4, dim=-1)
    matching = torch.log(p) * 0.1  # logits whose softmax at T=0.1 is p
    loss_match = DINOLoss(3, student_temp=0.1)(matching.repeat(4, 1), teacher, 0.4)
    loss_other = DINOLoss(3, student_temp=0.1)(torch.tensor([[1.0, 0.0, 3.0]]).repeat(4, 1),
                                               teacher, 0.4)
    entropy = -(p * torch.log(p)).sum()
    assert loss_match.item() == pytest.approx(entropy.item(), rel=1e-5)
    assert loss_other.item() > loss_match.item() + 0.5


def test_teacher_entropies_tell_the_two_collapses_from_health():
    k = 16
    uniform = teacher_entropy(torch.zeros(4, k), torch.zeros(1, k), 0.04)
    assert uniform == pytest.approx((math.log(k), math.log(k)))
    same_peak = torch.zeros(4, k)
    same_peak[:, 5] = 10.0
    assert max(teacher_entropy(same_peak, torch.zeros(1, k), 0.04)) < 1e-6
    distinct = 10.0 * torch.eye(k)[:4]  # each image its own prototype
    per_image, batch = teacher_entropy(distinct, torch.zeros(1, k), 0.04)
    assert per_image < 1e-6 and batch == pytest.approx(math.log(4))


def test_ema_update_is_exact():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s, rtol=0, atol=1e-7)


def test_cosine_schedule_closed_form():
    values = cosine_schedule(1.0, 0.1, steps=12, warmup_steps=2, warmup_start=0.0)
    assert len(values) == 12
    np.testing.assert_allclose(values[:2], [0.0, 0.5])
    t = np.arange(10) / 9
    np.testing.assert_allclose(values[2:], 0.1 + 0.45 * (1 + np.cos(np.pi * t)))
    assert values[2] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)


def test_teacher_temperature_warms_up_linearly_then_stays():
    temps = teacher_temperatures(0.04, 0.07, warmup_steps=4, steps=6)
    np.testing.assert_allclose(temps, [0.04, 0.05, 0.06, 0.07, 0.07, 0.07])


def test_weight_norm_rows_have_norm_g_and_a_fixed_norm_is_not_trained():
    layer = WeightNormLinear(5, 7, fixed_norm=False)
    with torch.no_grad():
        layer.weight_g.copy_(torch.arange(1.0, 8.0)[:, None])
    eye = torch.eye(5)
    weight = layer(eye).T  # rows of the effective weight
    torch.testing.assert_close(weight.norm(dim=1), torch.arange(1.0, 8.0))
    fixed = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4)
    trained = {id(p) for group in param_groups(fixed) for p in group["params"]}
    assert id(fixed.last_layer.weight_g) not in trained
    assert id(fixed.last_layer.weight_v) in trained


def test_head_output_is_invariant_to_the_scale_of_its_bottleneck():
    """The L2 normalisation before the last layer: doubling the MLP output changes nothing."""
    head = DINOHead(6, out_dim=9, hidden_dim=12, bottleneck_dim=5, n_layers=1)
    x = torch.randn(4, 6)
    with torch.no_grad():
        out = head(x)
        head.mlp[0].weight.mul_(2.0)
        head.mlp[0].bias.mul_(2.0)
        torch.testing.assert_close(head(x), out)


def test_multicrop_network_equals_one_pass_per_crop():
    torch.manual_seed(0)
    backbone = VisionTransformer2d(img_size=32, patch_size=16, embed_dim=24, depth=2,
                                   num_heads=2)
    net = MultiCropNetwork(backbone, DINOHead(24, out_dim=11, hidden_dim=16, bottleneck_dim=8))
    crops = [torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16)]
    with torch.no_grad():
        joint = net(crops)
        separate = torch.cat([net.head(backbone(c)[:, 0]) for c in crops])
    torch.testing.assert_close(joint, separate, rtol=1e-5, atol=1e-6)


def test_pos_embed_resize_keeps_cls_and_a_constant_grid():
    pos = torch.randn(1, 1 + 16, 5)
    assert resize_pos_embed_2d(pos, (4, 4)) is pos
    constant = torch.cat([pos[:, :1], torch.full((1, 16, 5), 0.3)], dim=1)
    resized = resize_pos_embed_2d(constant, (2, 3))
    assert resized.shape == (1, 7, 5)
    torch.testing.assert_close(resized[:, :1], pos[:, :1])
    torch.testing.assert_close(resized[:, 1:], torch.full((1, 6, 5), 0.3))


def test_clip_gradients_caps_each_tensor_and_keeps_directions():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 4.0, 0.0])    # norm 5
    b.grad = torch.tensor([0.3, 0.4])         # norm 0.5
    clip_gradients([a, b], max_norm=1.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8, 0.0]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))


def test_param_groups_exempt_biases_and_norms_from_weight_decay():
    vit = VisionTransformer2d(img_size=32, patch_size=16, embed_dim=24, depth=1, num_heads=2)
    decayed, plain = param_groups(vit)
    names = {id(p): n for n, p in vit.named_parameters()}
    plain_names = {names[id(p)] for p in plain["params"]}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert plain["weight_decay"] == 0.0
    assert "blocks.0.norm1.weight" in plain_names and "blocks.0.attn.qkv.bias" in plain_names
    assert "blocks.0.attn.qkv.weight" in decayed_names and "pos_embed" in decayed_names
    assert len(plain_names) + len(decayed_names) == len(names)
