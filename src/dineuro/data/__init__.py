"""Data: SWC -> label masks, the dataset-folder layout, and the synthetic benchmark."""

from dineuro.data.dataset import Dataset, open_dataset
from dineuro.data.render import render_mask

__all__ = ["Dataset", "open_dataset", "render_mask"]
