"""dineuro: 3D neuron segmentation with DINO-pretrained ViTs, and SWC reconstruction."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dineuro")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
