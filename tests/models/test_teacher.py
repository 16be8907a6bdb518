"""Teacher loading: every file layout gives the same weights, the same network, or a clear error."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dineuro.errors import InputError
from dineuro.models.blocks import Block
from dineuro.models.teacher import infer_num_heads, load_teacher, resize_patch_kernel
from dineuro.models.vit2d import VisionTransformer2d

EMBED, DEPTH, HEADS = 48, 4, 3


@pytest.fixture(scope="module")
def tiny_state(dino_state_dict_factory):
    return dino_state_dict_factory(EMBED, DEPTH, HEADS)


def _prefixed(state, prefix):
    return {prefix + key: value for key, value in state.items()}


def _heads():
    return {"head.mlp.0.weight": torch.randn(16, EMBED), "head.mlp.0.bias": torch.randn(16),
            "head.last_layer.weight_g": torch.ones(8, 1)}


def _training_checkpoint(state):
    """Shaped like DINO's main_dino.py checkpoint.pth, with a student that differs."""
    student = {key: value + 1.0 for key, value in state.items()}
    return {"student": _prefixed({**_prefixed(student, "backbone."), **_heads()}, "module."),
            "teacher": {**_prefixed(state, "backbone."), **_heads()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1, 2]}]},
            "epoch": 100, "args": argparse.Namespace(arch="vit_small", patch_size=16),
            "dino_loss": {"center": torch.zeros(1, 16)}}


WRAPPINGS = {
    "plain.pth": lambda s: s,
    "plain.pt": lambda s: s,
    "teacher.pth": lambda s: {"teacher": s},
    "student.pth": lambda s: {"student": s},
    "model.pth": lambda s: {"model": s, "epoch": 3},
    "state_dict.pth": lambda s: {"state_dict": s},
    "nested.pth": lambda s: {"model": {"state_dict": _prefixed(s, "module.")}},
    "module.pth": lambda s: _prefixed(s, "module."),
    "backbone.pth": lambda s: _prefixed(s, "backbone."),
    "module_backbone.pth": lambda s: _prefixed(s, "module.backbone."),
    "student_module_backbone.pth": lambda s: {"student": _prefixed(s, "module.backbone.")},
    "training_checkpoint.pth": _training_checkpoint,
    "plain.safetensors": lambda s: s,
    "module_backbone.safetensors": lambda s: _prefixed(s, "module.backbone."),
}


def _save(obj, path):
    if path.suffix == ".safetensors":
        save_file(obj, path)
    else:
        torch.save(obj, path)
    return path


@pytest.mark.parametrize("name", list(WRAPPINGS))
def test_every_wrapping_loads_the_same_tensors(name, tiny_state, tmp_path):
    path = _save(WRAPPINGS[name](tiny_state), tmp_path / name)
    teacher = load_teacher(path, num_heads=HEADS)
    assert list(teacher.state_dict) == list(tiny_state)
    for key, tensor in tiny_state.items():
        assert torch.equal(teacher.state_dict[key], tensor), key
    assert (teacher.embed_dim, teacher.depth, teacher.num_heads) == (EMBED, DEPTH, HEADS)
    assert (teacher.patch_size, teacher.source_patch_size, teacher.grid) == (16, 16, 14)
    assert (teacher.in_chans, teacher.mlp_ratio, teacher.source) == (3, 4.0, str(path))


def test_training_checkpoint_drops_heads_and_says_so(tiny_state, tmp_path):
    path = _save(_training_checkpoint(tiny_state), tmp_path / "checkpoint.pth")
    teacher = load_teacher(path, num_heads=HEADS)
    assert not any(key.startswith("head") for key in teacher.state_dict)
    assert any("head" in note for note in teacher.conversions)


def test_to_vit2d_reproduces_the_original_network(dino_checkpoint):
    original = VisionTransformer2d(embed_dim=EMBED, depth=DEPTH, num_heads=HEADS)
    original.load_state_dict(torch.load(dino_checkpoint, weights_only=True))
    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    rebuilt = load_teacher(dino_checkpoint, num_heads=HEADS).to_vit2d()
    with torch.no_grad():
        assert torch.allclose(rebuilt(image), original(image), atol=1e-6, rtol=0)


def test_half_precision_file_is_read_as_float32(tiny_state, tmp_path):
    path = _save({k: v.half() for k, v in tiny_state.items()}, tmp_path / "half.pth")
    teacher = load_teacher(path, num_heads=HEADS)
    assert {t.dtype for t in teacher.state_dict.values()} == {torch.float32}


def test_shallow_depth_is_detected(dino_state_dict_factory, tmp_path):
    path = _save(dino_state_dict_factory(EMBED, 2, HEADS), tmp_path / "d2.pth")
    assert load_teacher(path, num_heads=HEADS).depth == 2


def test_vit_small_width_infers_six_heads(dino_state_dict_factory, tmp_path):
    path = _save(dino_state_dict_factory(384, 1, 6), tmp_path / "vits_d1.pth")
    teacher = load_teacher(path)
    assert (teacher.embed_dim, teacher.depth, teacher.num_heads) == (384, 1, 6)
    assert teacher.to_vit2d().blocks[0].attn.num_heads == 6


@pytest.mark.parametrize(("embed_dim", "heads"),
                         [(192, 3), (384, 6), (768, 12), (1024, 16), (128, 2)])
def test_infer_num_heads_follows_the_dino_convention(embed_dim, heads):
    assert infer_num_heads(embed_dim) == heads


def test_unusual_width_needs_num_heads(dino_checkpoint):
    with pytest.raises(InputError, match="pass num_heads") as err:
        load_teacher(dino_checkpoint)
    assert str(dino_checkpoint) in str(err.value)
    with pytest.raises(InputError, match="does not divide"):
        load_teacher(dino_checkpoint, num_heads=5)


def test_missing_block_key_is_listed(tiny_state, tmp_path):
    state = dict(tiny_state)
    del state["blocks.1.attn.qkv.weight"]
    path = _save(state, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing blocks\.1\.attn\.qkv\.weight\b") as err:
        load_teacher(path, num_heads=HEADS)
    assert str(err.value).startswith(f"{path}: ")


def test_wrong_shaped_qkv_is_listed(tiny_state, tmp_path):
    state = {**tiny_state, "blocks.0.attn.qkv.weight": torch.zeros(100, EMBED)}
    path = _save(state, tmp_path / "qkv.pth")
    with pytest.raises(InputError, match=r"wrong shape blocks\.0\.attn\.qkv\.weight "
                                         r"\(100, 48\) instead of \(144, 48\)"):
        load_teacher(path, num_heads=HEADS)


def test_unexpected_key_is_listed(tiny_state, tmp_path):
    path = _save({**tiny_state, "blocks.0.gate.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(InputError, match=r"unexpected blocks\.0\.gate\.weight"):
        load_teacher(path, num_heads=HEADS)


def test_long_key_lists_are_cut_short(tiny_state, tmp_path):
    state = {k: v for k, v in tiny_state.items() if not k.startswith(("blocks.1.", "blocks.2."))}
    path = _save(state, tmp_path / "holes.pth")
    with pytest.raises(InputError, match=r"missing blocks\.1\.norm1\.weight, .* and 16 more"):
        load_teacher(path, num_heads=HEADS)


class _Opaque:
    """A class torch.load(weights_only=True) must refuse to rebuild."""


@pytest.mark.parametrize(("content", "message"), [
    ([torch.zeros(1)], "holds a list, not a state dict"),
    ({"weights": 1, "epoch": 2}, "non-tensor entries: epoch, weights"),
    ({}, "empty dictionary"),
    ({"x": _Opaque()}, "holds Python objects other than tensors"),
])
def test_files_that_are_not_state_dicts_fail_clearly(content, message, tmp_path):
    path = _save(content, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=message):
        load_teacher(path)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("junk.pth", b"hello world", "could not be read as a PyTorch file"),
    ("junk.safetensors", b"hello world", "not a readable safetensors file"),
    ("weights.npz", b"", "unknown weights suffix"),
])
def test_unreadable_files_fail_clearly(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_teacher(path)


def test_absent_file_fails_clearly(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_teacher(tmp_path / "nope.pth")


# --- DINOv2 -------------------------------------------------------------------------------

DINOV2_GRID, REGISTERS = 37, 4


@pytest.fixture(scope="module")
def dinov2_state(dino_state_dict_factory):
    """A DINOv2-style /14 backbone: LayerScale gammas, mask and register tokens, 518 px grid."""
    state = dino_state_dict_factory(EMBED, 2, HEADS, patch_size=14, n_grid=DINOV2_GRID, seed=5)
    generator = torch.Generator().manual_seed(11)
    for i in range(2):
        for branch in ("ls1", "ls2"):
            state[f"blocks.{i}.{branch}.gamma"] = 0.1 + torch.rand(EMBED, generator=generator)
    state["mask_token"] = torch.zeros(1, EMBED)
    state["register_tokens"] = torch.randn(1, REGISTERS, EMBED, generator=generator)
    return state


@pytest.fixture(scope="module")
def dinov2_teacher(dinov2_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_tiny14_reg4_pretrain.pth"
    return load_teacher(_save(dinov2_state, path), num_heads=HEADS)


def test_dinov2_file_becomes_a_dino_shaped_16_pixel_teacher(dinov2_teacher):
    assert (dinov2_teacher.patch_size, dinov2_teacher.source_patch_size) == (16, 14)
    assert dinov2_teacher.grid == DINOV2_GRID
    assert dinov2_teacher.state_dict["patch_embed.proj.weight"].shape == (EMBED, 3, 16, 16)
    assert not any(k.endswith("gamma") or k in ("mask_token", "register_tokens")
                   for k in dinov2_teacher.state_dict)
    assert len(dinov2_teacher.conversions) == 3
    dinov2_teacher.to_vit2d()  # loads strictly


def test_layer_scale_folding_is_exact(dinov2_state, dinov2_teacher):
    block = Block(EMBED, HEADS)
    prefix = "blocks.1."
    block.load_state_dict({k[len(prefix):]: v for k, v in dinov2_state.items()
                           if k.startswith(prefix) and ".ls" not in k})
    gamma1, gamma2 = dinov2_state[prefix + "ls1.gamma"], dinov2_state[prefix + "ls2.gamma"]
    tokens = torch.randn(2, 10, EMBED, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = tokens + gamma1 * block.attn(block.norm1(tokens))
        expected = expected + gamma2 * block.mlp(block.norm2(expected))
        folded = dinov2_teacher.to_vit2d().blocks[1](tokens)
    assert torch.allclose(folded, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(block(tokens), expected, atol=1e-3)  # the gammas did matter


def test_resized_kernel_keeps_the_response_to_a_constant_image(dinov2_state, dinov2_teacher):
    colour = torch.tensor([0.3, -1.2, 2.0])[:, None, None]
    bias = dinov2_state["patch_embed.proj.bias"]
    before = F.conv2d(colour.expand(3, 14, 14)[None], dinov2_state["patch_embed.proj.weight"],
                      bias)
    after = F.conv2d(colour.expand(3, 16, 16)[None],
                     dinov2_teacher.state_dict["patch_embed.proj.weight"], bias)
    assert torch.allclose(after, before, atol=1e-5, rtol=0)


def test_resized_kernel_keeps_its_spatial_pattern():
    ramp = torch.linspace(-1, 1, 14)
    kernel = (ramp[None, :] * torch.ones(14, 1))[None, None].repeat(2, 3, 1, 1)  # edge filter
    resized = resize_patch_kernel(kernel, 16)
    bicubic = F.interpolate(kernel, size=(16, 16), mode="bicubic", align_corners=False)
    cosine = F.cosine_similarity(resized.flatten(), bicubic.flatten(), dim=0)
    assert cosine > 0.999
    assert torch.allclose(resized.sum((-2, -1)), kernel.sum((-2, -1)), atol=1e-5)
