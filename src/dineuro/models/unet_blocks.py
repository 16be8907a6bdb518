"""The UNETR decoder's convolutional blocks, as MONAI defines them, without importing MONAI.

The decoder was assembled from ``monai.networks.blocks`` (``UnetResBlock``, ``UnetrBasicBlock``,
``UnetrUpBlock``, ``UnetOutBlock`` and ``get_conv_layer``). Importing any of them runs
``monai/__init__``, which loads every MONAI subpackage (transforms, data, apps; with them
matplotlib, h5py and pandas): about 1.3 s of a ``dineuro run`` of 12 s on a 60x512x512 stack,
spent before the first voxel. Prediction needs only these few blocks, so they are defined here
with MONAI's computation and its parameter names (``conv1.conv.weight``, ``transp_conv``,
``conv_block``, ...), so checkpoints load either way. ``tests/models/test_unet_blocks.py``
holds them equal to MONAI's blocks, output for output. Training still uses MONAI (losses,
transforms).

Every convolution is bias-free except the output block's, padded so that a stride-1 convolution
keeps the size and a transposed convolution with kernel = stride multiplies it by the stride.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dineuro.errors import InputError
from dineuro.models.vit3d import as_triple

#: Negative slope of the decoder's leaky ReLU (MONAI's ``UnetResBlock`` default).
LEAKY_SLOPE = 0.01
#: Decoder normalisations by name: ``norm_name`` is one of these, or (name, keyword options).
NORMS = {"instance": nn.InstanceNorm3d, "batch": nn.BatchNorm3d, "group": nn.GroupNorm}

Size = int | Sequence[int]


def norm_layer(norm_name: str | Sequence, channels: int) -> nn.Module:
    """The normalisation ``norm_name`` ("instance", "batch", or ("group", {"num_groups": G})
    and other (name, options) pairs) over ``channels`` feature maps.

    Raises
    ------
    InputError
        An unknown name, or options the normalisation does not take.
    """
    name, options = (norm_name, {}) if isinstance(norm_name, str) else tuple(norm_name)
    kind = NORMS.get(str(name).lower())
    if kind is None or not isinstance(options, Mapping):
        raise InputError(f"norm_name should be one of {list(NORMS)} or (name, {{options}}), "
                         f"got {norm_name!r}.")
    size = {"num_channels": channels} if kind is nn.GroupNorm else {"num_features": channels}
    try:
        return kind(**{**size, **options})
    except TypeError as exc:
        raise InputError(f"norm_name {norm_name!r}: {exc}.") from exc


def conv_layer(in_channels: int, out_channels: int, kernel_size: Size, stride: Size = 1,
               transposed: bool = False, bias: bool = False) -> nn.Sequential:
    """A 3D convolution inside a container whose only child is ``conv`` (MONAI's
    ``Convolution`` with ``conv_only``): padding (k - s + 1) // 2 per axis, and for a transposed
    convolution the output padding that makes the size grow exactly by the stride."""
    kernel, step = as_triple(kernel_size, "kernel_size"), as_triple(stride, "stride")
    padding = tuple((k - s + 1) // 2 for k, s in zip(kernel, step, strict=True))
    if transposed:
        extra = tuple(2 * p + s - k for p, s, k in zip(padding, step, kernel, strict=True))
        conv = nn.ConvTranspose3d(in_channels, out_channels, kernel, step, padding, extra,
                                  bias=bias)
    else:
        conv = nn.Conv3d(in_channels, out_channels, kernel, step, padding, bias=bias)
    return nn.Sequential(OrderedDict(conv=conv))


class ResBlock(nn.Module):
    """Two convolutions with normalisation and leaky ReLU, plus a residual path (a 1x1
    convolution and normalisation when the channels or the stride change); MONAI's
    ``UnetResBlock``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int or sequence of int
        Kernel of both convolutions.
    stride : int or sequence of int
        Stride of the first convolution (and of the residual path).
    norm_name : str or tuple
        See :func:`norm_layer`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: Size,
                 norm_name: str | Sequence):
        super().__init__()
        self.conv1 = conv_layer(in_channels, out_channels, kernel_size, stride)
        self.conv2 = conv_layer(out_channels, out_channels, kernel_size, 1)
        self.lrelu = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.norm1 = norm_layer(norm_name, out_channels)
        self.norm2 = norm_layer(norm_name, out_channels)
        if in_channels != out_channels or any(s != 1 for s in as_triple(stride, "stride")):
            self.conv3 = conv_layer(in_channels, out_channels, 1, stride)
            self.norm3 = norm_layer(norm_name, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if hasattr(self, "conv3"):
            x = self.norm3(self.conv3(x))
        return self.lrelu(out + x)


class BasicBlock(nn.Module):
    """The stem on the input volume: a :class:`ResBlock` held as ``layer`` (MONAI's
    ``UnetrBasicBlock`` with ``res_block=True``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: Size,
                 norm_name: str | Sequence):
        super().__init__()
        self.layer = ResBlock(in_channels, out_channels, kernel_size, stride, norm_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class UpBlock(nn.Module):
    """Up-sample by a transposed convolution, concatenate the skip, fuse by a :class:`ResBlock`
    (MONAI's ``UnetrUpBlock`` with ``res_block=True``).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the coarse input and of the output (and of the skip).
    kernel_size : int or sequence of int
        Kernel of the fusing convolutions.
    upsample_kernel_size : int or sequence of int
        Kernel and stride of the transposed convolution: the up-sampling factor per axis.
    norm_name : str or tuple
        See :func:`norm_layer`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size,
                 upsample_kernel_size: Size, norm_name: str | Sequence):
        super().__init__()
        self.transp_conv = conv_layer(in_channels, out_channels, upsample_kernel_size,
                                      upsample_kernel_size, transposed=True)
        self.conv_block = ResBlock(2 * out_channels, out_channels, kernel_size, 1, norm_name)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class OutBlock(nn.Module):
    """1x1 convolution with bias to the class logits (MONAI's ``UnetOutBlock``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = conv_layer(in_channels, out_channels, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
