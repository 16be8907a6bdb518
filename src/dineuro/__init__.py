"""dineuro: 3D neuron segmentation with DINO-pretrained ViTs, and SWC reconstruction.

The public API: ``build_model`` (a 3D ViT-UNETR student filled from a DINO teacher by one of
five transfer strategies), ``load_teacher`` (a DINO checkpoint in any official layout),
``Predictor`` (a trained checkpoint, or the packaged default model, ready to predict and trace
stacks) and ``run`` (one stack, array or file, to its probability map and SWC trees). They are
imported on first use, so ``import dineuro`` and the command line stay quick without torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dineuro")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

_LAZY = {"build_model": "dineuro.models.build", "load_teacher": "dineuro.models.teacher",
         "Predictor": "dineuro.predictor", "run": "dineuro.predictor"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dineuro' has no attribute {name!r}")
