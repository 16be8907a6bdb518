"""The UNETR decoder: skip indices from the depth, per-axis up-sampling, MONAI cross-check, and
the public ``build_model``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.nets import UNETR

from dineuro.errors import InputError
from dineuro.models.build import build_model
from dineuro.models.presets import PRESETS, get_preset
from dineuro.models.standardize import STANDARDIZE_EPS
from dineuro.models.unetr import ViTUNETR, decoder_levels, level_strides, skip_blocks
from dineuro.models.vit2d import VisionTransformer2d

TINY = dict(embed_dim=48, depth=4, num_heads=3)


def test_skip_blocks_are_evenly_spaced_and_end_at_the_last_block():
    assert skip_blocks(12, 4) == [3, 6, 9, 12]
    assert skip_blocks(4, 4) == [1, 2, 3, 4]
    assert skip_blocks(8, 4) == [2, 4, 6, 8]
    for depth in (2, 6):
        with pytest.raises(InputError, match=f"depth {depth} should be a positive multiple"):
            skip_blocks(depth, 4)


def test_each_axis_is_upsampled_log2_patch_times():
    strides = level_strides((8, 16, 16))
    assert len(strides) == decoder_levels((8, 16, 16)) == 4
    assert [math.prod(s[axis] for s in strides) for axis in range(3)] == [8, 16, 16]
    assert strides[0] == (1, 2, 2)  # the finest level skips the short axis
    with pytest.raises(InputError, match="powers of 2"):
        decoder_levels((12, 16, 16))


def test_decoder_takes_the_skip_blocks_outputs():
    net = ViTUNETR(crop=32, patch=16, feature_size=4, embed_dim=24, depth=8, num_heads=2).eval()
    outputs, inputs = {}, {}
    for i, block in enumerate(net.encoder.blocks, start=1):
        block.register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
    for j, project in enumerate(net.skips):
        project.register_forward_hook(lambda m, a, out, j=j: inputs.__setitem__(j, a[0]))
    net(torch.rand(1, 1, 32, 32, 32))
    assert net.skip_blocks == [2, 4, 6, 8]
    for j, block in enumerate([2, 4, 6]):
        torch.testing.assert_close(inputs[j], net._token_volume(outputs[block]))


def _encoder_and_stem_inputs(net: ViTUNETR, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    net.encoder.register_forward_pre_hook(lambda m, a: seen.__setitem__("encoder", a[0]))
    net.stem.register_forward_pre_hook(lambda m, a: seen.__setitem__("stem", a[0]))
    net(x)
    return seen["encoder"], seen["stem"]


def test_standardized_encoder_input_is_each_window_in_its_own_statistics():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 32, 32) * torch.tensor([0.2, 3.0]).view(2, 1, 1, 1, 1)
    net = ViTUNETR(crop=(16, 32, 32), patch=(8, 16, 16), feature_size=4,
                   encoder_input="standardize", **TINY).eval()
    encoder_in, stem_in = _encoder_and_stem_inputs(net, x)
    values = x.double().numpy().reshape(2, -1)
    expected = ((values - values.mean(1, keepdims=True))
                / (values.std(1, ddof=1, keepdims=True) + STANDARDIZE_EPS))
    torch.testing.assert_close(encoder_in.double().reshape(2, -1),
                               torch.from_numpy(expected), atol=1e-5, rtol=1e-5)
    assert torch.equal(stem_in, x)  # the decoder's full-resolution path keeps the intensities
    # so the encoder is blind to gain and offset, and a copied teacher sees what it was made on
    again, _ = _encoder_and_stem_inputs(net, 7.0 * x + 0.3)
    torch.testing.assert_close(again, encoder_in, atol=1e-5, rtol=1e-5)
    raw = ViTUNETR(crop=(16, 32, 32), patch=(8, 16, 16), feature_size=4, **TINY).eval()
    assert raw.config["encoder_input"] == "raw"
    assert torch.equal(_encoder_and_stem_inputs(raw, x)[0], x)


def test_encoder_input_survives_a_checkpoint_and_old_checkpoints_stay_raw():
    from dineuro.checkpoint import build_network

    model = build_model("tiny", transfer="scratch", encoder_input="standardize")
    assert build_network(model.config).encoder_input == "standardize"
    older = {k: v for k, v in model.config.items() if k != "encoder_input"}
    assert build_network(older).encoder_input == "raw"
    with pytest.raises(InputError, match="encoder_input should be one of"):
        build_model("tiny", transfer="scratch", encoder_input="zscore")


def test_parameter_count_matches_monai_unetr():
    dims = dict(feature_size=8, hidden_size=48, mlp_dim=192, num_heads=3)
    monai = UNETR(in_channels=1, out_channels=2, img_size=32, qkv_bias=True, **dims)
    ours = ViTUNETR(crop=32, patch=16, embed_dim=48, depth=12, num_heads=3, feature_size=8)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    # MONAI's TransformerBlock always owns an unused ``norm_cross_attn`` LayerNorm (2 * D
    # parameters per block); everything else is the same architecture, parameter for parameter.
    unused = sum(p.numel() for name, p in monai.named_parameters() if "norm_cross_attn" in name)
    assert unused == 12 * 2 * 48
    assert count(ours) == count(monai) - unused


@pytest.mark.parametrize("transfer", ["center", "deformable"])
def test_anisotropic_patch_runs_forward_and_backward(transfer):
    teacher = VisionTransformer2d(img_size=224, **TINY).state_dict()
    model = build_model("tiny", transfer=transfer, teacher=teacher, crop=(16, 32, 32),
                        patch=(8, 16, 16))
    logits = model(torch.rand(1, 1, 16, 32, 32))
    assert logits.shape == (1, 2, 16, 32, 32)
    logits.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_build_model_validates_its_arguments():
    with pytest.raises(InputError, match="multiple of the patch"):
        build_model("tiny", transfer="scratch", crop=(32, 32, 40))
    with pytest.raises(InputError, match="dineuro weights fetch dino_vits16"):
        build_model("small", transfer="center")
    with pytest.raises(InputError, match="--teacher PATH"):
        build_model("tiny", transfer="deformable")
    with pytest.raises(InputError, match="does not take .*extend_scope"):
        build_model("tiny", transfer="tubular", teacher={}, extend_scope=2.0)
    with pytest.raises(InputError, match="size should be one of"):
        build_model("huge", transfer="scratch")
    with pytest.raises(ValueError, match="should equal the configured crop"):
        build_model("tiny", transfer="scratch")(torch.zeros(1, 1, 32, 32, 16))


def test_build_model_from_a_checkpoint_file_is_self_describing(dino_checkpoint,
                                                               dino_state_dict_factory):
    model = build_model("tiny", transfer="tubular", teacher=dino_checkpoint, gate_init=0.5,
                        feature_size=4)
    config = model.config
    assert config["size"] == "tiny" and config["teacher"] == str(dino_checkpoint)
    assert config["embed_dim"] == 48 and config["crop"] == [32, 32, 32]
    assert config["patch"] == [16, 16, 16] and config["feature_size"] == 4
    assert config["embedding_options"] == {"gate_init": 0.5}
    state = dino_state_dict_factory(48, 4, 3)
    torch.testing.assert_close(model.encoder.blocks[2].mlp.fc2.weight,
                               state["blocks.2.mlp.fc2.weight"])
    assert model.encoder.patch_embed.gate.tolist() == pytest.approx([0.5] * 3)
    scratch = build_model("tiny", transfer="scratch", teacher=dino_checkpoint)
    assert scratch.config["teacher"] is None


def test_presets_match_the_dino_teachers():
    assert (PRESETS["small"].embed_dim, PRESETS["small"].num_heads) == (384, 6)
    assert (PRESETS["base"].embed_dim, PRESETS["base"].crop) == (768, (96, 96, 96))
    assert get_preset("tiny", patch=(8, 16, 16)).patch == (8, 16, 16)
    with pytest.raises(AttributeError):
        PRESETS["tiny"].depth = 8
    with pytest.raises(InputError, match="unknown preset fields"):
        get_preset("tiny", heads=4)


def test_docstring_examples_run():
    import doctest

    from dineuro.models import build, presets, standardize, tubular, unetr, vit3d

    for module in (vit3d, tubular, unetr, presets, build, standardize):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__


# -- predicting through another window ---------------------------------------------------------
def _tiny_unetr(**overrides) -> ViTUNETR:
    torch.manual_seed(0)
    return ViTUNETR(**{"crop": (16, 32, 32), "patch": 16, "embed_dim": 24, "depth": 4,
                       "num_heads": 3, "feature_size": 4, **overrides}).eval()


def _expected_ramp(n_in: int, n_out: int) -> np.ndarray:
    """Token index i of a grid of n_in resized to n_out, trilinear with align_corners=False:
    the source coordinate (i + 0.5) * n_in / n_out - 0.5, clamped to the grid; a linear
    interpolation of a ramp is the ramp there."""
    return np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)


def test_the_position_embedding_is_resized_trilinearly_over_the_token_grid():
    from dineuro.models.vit3d import resize_pos_embed_3d

    grid, new = (2, 3, 2), (2, 6, 5)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in grid), indexing="ij")
    ramps = np.stack([z, 10 * y, 100 * x], axis=-1).reshape(1, -1, 3)  # one ramp per channel
    resized = resize_pos_embed_3d(torch.tensor(ramps, dtype=torch.float32), grid, new)
    assert resized.shape == (1, math.prod(new), 3)
    got = resized.numpy().reshape(*new, 3)
    ez, ey, ex = np.meshgrid(*(_expected_ramp(a, b) for a, b in zip(grid, new, strict=True)),
                             indexing="ij")
    np.testing.assert_allclose(got, np.stack([ez, 10 * ey, 100 * ex], axis=-1), atol=1e-4)


def test_at_window_keeps_every_weight_but_the_position_embedding():
    net = _tiny_unetr()
    wide = net.at_window((16, 64, 48))
    assert wide.config["crop"] == [16, 64, 48] and wide.encoder.grid == (1, 4, 3)
    assert net.config["crop"] == [16, 32, 32]  # the original is untouched
    before, after = net.state_dict(), wide.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        if key != "encoder.pos_embed":
            assert torch.equal(after[key], value), key
    assert after["encoder.pos_embed"].shape == (1, 12, 24)
    with torch.no_grad():
        assert wide(torch.rand(2, 1, 16, 64, 48)).shape == (2, 2, 16, 64, 48)
    assert not wide.training


def test_at_window_of_its_own_crop_is_the_network_itself():
    net = _tiny_unetr()
    assert net.at_window((16, 32, 32)) is net and net.at_window([16, 32, 32]) is net


def test_a_constant_position_embedding_stays_constant_and_a_window_must_fit_the_patch():
    net = _tiny_unetr()
    with torch.no_grad():
        net.encoder.pos_embed.copy_(torch.arange(24.0).expand(1, 4, 24))
    wide = net.at_window((32, 64, 64))
    assert torch.equal(wide.encoder.pos_embed, torch.arange(24.0).expand(1, 32, 24))
    with pytest.raises(InputError, match="multiple of the patch"):
        net.at_window((16, 40, 32))
