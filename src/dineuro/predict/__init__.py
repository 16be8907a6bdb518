"""Neurite probability maps from a trained network: sliding window in memory or block by block.

The network sees windows of its training crop; their softmax class-1 probabilities are blended
with MONAI's Gaussian weights (sigma = 0.125 of the crop), which favour each window's centre,
where the network has the most context. The loop is ours (:mod:`dineuro.predict._windows`) and
computes what ``monai.inferers.sliding_window_inference(mode="gaussian")`` computes on the same
windows, except that windows without signal are not computed.

Windows lie where MONAI places them (:class:`WindowGrid`): every ``int(crop * (1 - overlap))``
voxels, the last moved back to end at the stack's edge, so that no window reads beyond the
stack (zero padding, tried before, cost accuracy: the network never saw zero slabs in
training). The grid belongs to the whole stack: a block of a large stack is predicted from the
region covered by exactly the grid windows that touch it, so every voxel gets the same windows,
weights and summation order in memory and block by block.

Much of a sparse stack can be background. :func:`signal_windows` decides which windows hold
signal, from their own voxels and the stack's background level (so in-memory and block-wise
prediction skip the same ones), and only those are computed (``skip_empty=True``, the
default); the rest get probability 0, what the network gives background. The test is
conservative: on noisy synthetic stacks, where the network finds structure almost everywhere,
it skips few windows. The network runs in bf16 where the hardware has native bf16
(``precision="auto"``, :func:`resolve_precision`), with channels-last weights on a CPU.

A background view (``background_view``, sigma in voxels; :func:`predict_raw`) applies the
network a second time, to the stack less its smooth background, and keeps the larger
probability: for hazy, widefield or unevenly lit stacks, at twice the network's time.

Test-time flips (``flips=True``) average the probabilities of all 8 combinations of flipping z,
y and x, each flipped back, inside every window: 8 times the compute for a smoother, orientation-
independent map.
"""

from dineuro.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_PROB_DTYPE,
    DEFAULT_THRESHOLD,
    PROB_DTYPES,
    TIFF_PROB_DTYPES,
)
from dineuro.outputs import output_paths, stack_name
from dineuro.predict._batch import output_bytes, pending, prepare_batch, probe_stacks
from dineuro.predict._blocks import DEFAULT_BLOCK, predict_blocks
from dineuro.predict._files import (
    checked_outputs,
    find_stacks,
    predict_file,
    predict_stack,
    write_prediction,
)
from dineuro.predict._grid import WindowGrid
from dineuro.predict._precision import PRECISIONS, native_bf16, resolve_precision
from dineuro.predict._signal import SignalLevel, signal_level, signal_windows
from dineuro.predict._stack import sliding_window_predict
from dineuro.predict._storage import UINT8_SCALE, check_choice, encode_probability
from dineuro.predict._views import predict_raw, views_of
from dineuro.predict._windows import (
    CLASSES,
    FLIP_AXES,
    NEURITE,
    SIGMA_SCALE,
    Progress,
    WindowStats,
    resolve_batch_size,
)

__all__ = [
    "CLASSES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLOCK",
    "DEFAULT_OVERLAP",
    "DEFAULT_PROB_DTYPE",
    "DEFAULT_THRESHOLD",
    "FLIP_AXES",
    "NEURITE",
    "PRECISIONS",
    "PROB_DTYPES",
    "SIGMA_SCALE",
    "TIFF_PROB_DTYPES",
    "UINT8_SCALE",
    "Progress",
    "SignalLevel",
    "WindowGrid",
    "WindowStats",
    "check_choice",
    "checked_outputs",
    "encode_probability",
    "find_stacks",
    "native_bf16",
    "output_bytes",
    "output_paths",
    "pending",
    "predict_blocks",
    "predict_file",
    "predict_raw",
    "predict_stack",
    "prepare_batch",
    "probe_stacks",
    "resolve_batch_size",
    "resolve_precision",
    "signal_level",
    "signal_windows",
    "sliding_window_predict",
    "stack_name",
    "views_of",
    "write_prediction",
]
