"""The decoder blocks against MONAI's own (the independent implementation they re-state).

Each pair is built with the same arguments; ours loads MONAI's state dict strictly (the same
parameter and buffer names, so checkpoints load either way) and must give the same output.
"""

import subprocess
import sys

import pytest
import torch
from monai.data.utils import compute_importance_map
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from monai.networks.blocks.dynunet_block import UnetResBlock

from dineuro.errors import InputError
from dineuro.models.unet_blocks import (
    BasicBlock,
    OutBlock,
    ResBlock,
    UpBlock,
    conv_layer,
    norm_layer,
)
from dineuro.predict._windows import importance_map

NORMS = ["instance", "batch", ("group", {"num_groups": 2}), ("instance", {"affine": True})]


def randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` with every parameter and float buffer drawn at random (norm affines and
    running statistics included, so a mix-up of names or roles shows)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
    return module


def same_output(ours, theirs, *inputs, train: bool = False):
    ours.load_state_dict(randomized(theirs, 0).state_dict(), strict=True)
    ours.train(train)
    theirs.train(train)
    with torch.no_grad():
        torch.testing.assert_close(ours(*inputs), theirs(*inputs), rtol=1e-5, atol=1e-6)


def volume(channels, shape, seed=1):
    return torch.randn(2, channels, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(("channels", "stride"), [((4, 4), 1), ((1, 4), 1), ((4, 4), (1, 2, 2))])
def test_res_block_equals_monai(norm, channels, stride):
    theirs = UnetResBlock(3, *channels, kernel_size=3, stride=stride, norm_name=norm)
    ours = ResBlock(*channels, 3, stride, norm)
    same_output(ours, theirs, volume(channels[0], (4, 6, 6)))
    assert hasattr(ours, "conv3") == (channels[0] != channels[1] or stride != 1)


@pytest.mark.parametrize("train", [False, True])
def test_basic_block_equals_monai(train):
    theirs = UnetrBasicBlock(3, 1, 8, kernel_size=3, stride=1, norm_name="batch", res_block=True)
    same_output(BasicBlock(1, 8, 3, 1, "batch"), theirs, volume(1, (5, 6, 7)), train=train)


@pytest.mark.parametrize("factor", [2, (1, 2, 2), (2, 1, 2)])
def test_up_block_equals_monai(factor):
    theirs = UnetrUpBlock(3, 16, 8, kernel_size=3, upsample_kernel_size=factor,
                          norm_name="instance", res_block=True)
    scale = (factor,) * 3 if isinstance(factor, int) else factor
    coarse = volume(16, (2, 3, 3))
    skip = volume(8, tuple(n * s for n, s in zip((2, 3, 3), scale, strict=True)), 2)
    out = UpBlock(16, 8, 3, factor, "instance")
    same_output(out, theirs, coarse, skip)
    assert out(coarse, skip).shape == (2, 8, *skip.shape[2:])


def test_out_block_equals_monai():
    same_output(OutBlock(8, 2), UnetOutBlock(3, 8, 2), volume(8, (3, 4, 5)))


@pytest.mark.parametrize("stride", [(1, 2, 2), (2, 2, 2), (4, 1, 2)])
def test_transposed_conv_multiplies_the_size_by_the_stride(stride):
    layer = conv_layer(3, 5, stride, stride, transposed=True)
    assert layer(volume(3, (2, 3, 4))).shape == (2, 5, 2 * stride[0], 3 * stride[1], 4 * stride[2])
    assert layer.conv.bias is None


@pytest.mark.parametrize("bad", ["layer", ("group", "num_groups=2"), ("batch", {"groups": 3})])
def test_unknown_norms_are_refused_in_one_sentence(bad):
    with pytest.raises(InputError, match="norm_name"):
        norm_layer(bad, 4)


@pytest.mark.parametrize("crop", [(48, 96, 96), (16, 48, 48), (5, 7, 33), (1, 2, 3)])
def test_importance_map_equals_monai(crop):
    torch.testing.assert_close(importance_map(crop),
                               compute_importance_map(crop, "gaussian", sigma_scale=0.125),
                               rtol=0, atol=0)


def test_predicting_with_the_default_model_does_not_import_monai():
    """``monai/__init__`` loads every MONAI subpackage (over a second): prediction and
    tracing must not pay it."""
    code = ("import sys, numpy as np\n"
            "from dineuro.predictor import run\n"
            "stack = 0.1 * np.random.default_rng(0).random((16, 48, 48), np.float32)\n"
            "stack[7:10, 23:26, 5:40] = 1.0  # a fibre in a dim background, not noise alone\n"
            "prob, tree = run(stack, device='cpu')\n"
            "assert prob.shape == (16, 48, 48)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
